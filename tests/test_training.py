"""Training end to end on the tiny config, resume, metrics, the evaluate CLI and the real base model."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import f1_score, precision_score, recall_score

from conftest import ROOT, tiny_config
from newstagger.metrics import best_threshold, boilerplate_report, topic_report
from newstagger.predictor import Predictor
from newstagger.training import is_trained, save_folder_atomically, train


def test_training_writes_a_complete_folder_that_loads(tiny_model_dir):
    names = {p.name for p in tiny_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "eval_report.json",
            "training_config.json"} <= names
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["labels"] == ["diplomacy", "sanctions", "press_freedom"]
    assert set(config["topic_thresholds"]) == set(config["labels"]) and 0 < config["boilerplate_threshold"] < 1
    assert config["encoder"]["hidden_size"] == 32 and config["max_paragraph_tokens"] == 64
    report = json.loads((tiny_model_dir / "eval_report.json").read_text())
    assert set(report["test"]["topics"]["per_label"]) == set(config["labels"])
    assert "## Evaluation" in (tiny_model_dir / "README.md").read_text()
    # no partial or backup folder is left beside it
    assert [p.name for p in tiny_model_dir.parent.iterdir() if p.name.startswith(".")] == []
    result = Predictor.from_pretrained(tiny_model_dir).predict("One paragraph.\n\nAnother paragraph.")
    assert len(result.boilerplate) == 2


def test_skip_if_trained_compares_config_and_data(tiny_model_dir, tmp_path):
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


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    os.chdir(ROOT)
    config = tiny_config(tmp_path, max_steps=4, logging_steps=1)
    train(config)
    checkpoints = tmp_path / "model-checkpoints"
    assert (checkpoints / "checkpoint-4").exists()
    config.max_steps = 8
    train(config, resume=True)
    state = json.loads((checkpoints / "checkpoint-8" / "trainer_state.json").read_text())
    steps = [entry["step"] for entry in state["log_history"] if "loss" in entry]
    # the resumed run logged steps 5..8 once each after the first run's 1..4: it did not start over
    assert steps == list(range(1, 9))


def test_metrics_equal_scikit_learn_on_a_hand_made_case():
    y_true = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0], [1, 0, 1]])
    y_prob = np.array([[.9, .2, .4], [.6, .7, .1], [.8, .4, .2], [.1, .1, .9], [.3, .2, .8]])
    report = topic_report(y_true, y_prob, ["a", "b", "c"], [0.5, 0.5, 0.3])
    y_pred = (y_prob >= [0.5, 0.5, 0.3]).astype(int)
    assert report["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert report["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"))
    assert report["per_label"]["c"]["precision"] == pytest.approx(precision_score(y_true[:, 2], y_pred[:, 2]))
    assert report["per_label"]["a"]["recall"] == pytest.approx(recall_score(y_true[:, 0], y_pred[:, 0]))
    assert report["per_label"]["b"]["support"] == 2
    flags, probs = np.array([1, 0, 1, 1, 0, 0]), np.array([.8, .6, .3, .9, .1, .2])
    bp = boilerplate_report(flags, probs, 0.5)
    assert bp["f1"] == pytest.approx(f1_score(flags, probs >= 0.5)) and bp["support"] == 3
    assert best_threshold(flags, probs) == pytest.approx(0.3)  # 0.3 catches all three at one false positive


def test_evaluate_cli_prints_the_report_as_json(tiny_model_dir):
    out = subprocess.run([sys.executable, "-m", "newstagger.evaluate", "--model", str(tiny_model_dir),
                          "--data", str(ROOT / "data" / "validation.jsonl"), "--json"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    report = json.loads(out.stdout)
    assert set(report) == {"topics", "boilerplate"}
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
        "augment=false"])
    os.chdir(ROOT)
    folder = train(config)
    state = json.loads((tmp_path / "model-checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    config_json = json.loads((folder / "config.json").read_text())
    assert config_json["encoder"]["num_hidden_layers"] == 6 and config_json["encoder"]["hidden_size"] == 384
    assert Predictor.from_pretrained(folder).predict(["Talks opened in Vienna.", "Subscribe now."]).id is None
