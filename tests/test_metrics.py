"""Metrics, exact thresholds and the single-label report against scikit-learn on hand-made cases."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from newstagger.metrics import (best_threshold, boilerplate_report, evaluation_report, format_report,
                                single_label_report, topic_report)


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
    bp = boilerplate_report(flags, probs >= 0.5)
    assert bp["f1"] == pytest.approx(f1_score(flags, probs >= 0.5)) and bp["support"] == 3
    # 0.3 catches all three at one false positive (F1 0.857); every cut up to 0.6 reaches 0.8, within one
    # decision (1/3) of the best, and 0.5 is the one nearest 0.5
    assert best_threshold(flags, probs) == pytest.approx(0.5)


def test_best_threshold_is_within_one_decision_of_the_exact_optimum_and_nearest_half():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.3 + rng.normal(0.35, 0.2, 400), 0, 1)
    t = best_threshold(y, p)
    every = {c: f1_score(y, p >= c) for c in np.unique(p)}
    best = max(every.values())
    assert f1_score(y, p >= t) >= best - 1 / y.sum()
    # 0.5 itself is chosen whenever it is within one decision of the best
    assert t == 0.5 or f1_score(y, p >= 0.5) < best - 1 / y.sum()
    assert best_threshold(np.zeros(5), np.linspace(0, 1, 5)) == 0.5  # nothing to tune on


def test_one_validation_negative_does_not_drag_the_threshold_to_the_edge():
    """30 positives at 0.94-1.0 and one negative at 0.937: the exact optimum is 0.94, but 0.5 costs one
    decision only, so 0.5 it is."""
    y = np.array([1] * 30 + [0] * 60)
    p = np.concatenate([np.linspace(0.94, 1.0, 30), np.linspace(0.0, 0.3, 59), [0.937]])
    assert best_threshold(y, p) == 0.5


def test_single_label_report_matches_scikit_learn():
    true = np.eye(3)[[0, 1, 2, 2, 1, 0]]
    prob = np.array([[.7, .2, .1], [.1, .8, .1], [.3, .3, .4], [.5, .1, .4], [.2, .5, .3], [.1, .1, .8]])
    report = single_label_report(true, prob, ["a", "b", "c"])
    pred = prob.argmax(1)
    assert report["accuracy"] == pytest.approx(accuracy_score(true.argmax(1), pred))
    assert report["macro_f1"] == pytest.approx(f1_score(true.argmax(1), pred, average="macro"))
    assert report["confusion"] == [[1, 0, 1], [0, 2, 0], [1, 0, 1]]




def test_macro_f1_leaves_out_a_label_the_split_has_no_example_of():
    """A test set without any article of label c: its F1 cannot be measured, so it is not counted as 0."""
    y_true = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    y_prob = np.array([[.9, .2, .6], [.6, .7, .1], [.8, .4, .2], [.1, .1, .1]])
    report = topic_report(y_true, y_prob, ["a", "b", "c"])
    y_pred = (y_prob >= 0.5).astype(int)
    assert report["macro_f1"] == pytest.approx(f1_score(y_true[:, :2], y_pred[:, :2], average="macro"))
    assert report["labels_without_support"] == ["c"]
    assert report["micro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="micro"))  # c's false positive
    single = single_label_report(np.eye(3)[[0, 1, 0]], np.array([[.7, .2, .1], [.1, .8, .1], [.2, .3, .5]]),
                                 ["a", "b", "c"])
    assert single["labels_without_support"] == ["c"]
    assert single["macro_f1"] == pytest.approx(f1_score([0, 1, 0], [0, 1, 2], labels=[0, 1], average="macro"))


def test_a_task_the_file_does_not_label_is_not_measured_rather_than_zero():
    """A topic-only file has no boilerplate scores and a flags-only file no topic scores: null in JSON and
    n/a in the table, never 0.000 (which reads as "F1 zero")."""
    import json

    labels = ["a", "b"]
    topic_true, topic_prob = np.array([[1, 0], [0, 1]]), np.array([[.9, .2], [.1, .8]])
    topic_only = json.loads(json.dumps(evaluation_report(topic_true, topic_prob, np.zeros(0), np.zeros(0), labels,
                                                         0.5)))
    assert topic_only["boilerplate"]["f1"] is None and topic_only["boilerplate"]["precision"] is None
    assert topic_only["boilerplate"]["not_measured"] == "no paragraph flags in this file"
    assert topic_only["topics"]["macro_f1"] == pytest.approx(1.0)
    table = format_report(topic_only).splitlines()
    assert [line.split() for line in table if line.startswith("boilerplate")] == [
        ["boilerplate", "n/a", "(no", "paragraph", "flags", "in", "this", "file)"]]

    flags_only = json.loads(json.dumps(evaluation_report(np.zeros((0, 2)), np.zeros((0, 2)), np.array([1, 0]),
                                                         np.array([True, False]), labels, 0.5)))
    assert flags_only["topics"]["macro_f1"] is None and flags_only["topics"]["micro_f1"] is None
    assert flags_only["topics"]["per_label"]["a"]["f1"] is None
    assert flags_only["topics"]["not_measured"] == "no topic labels in this file"
    assert flags_only["boilerplate"]["f1"] == pytest.approx(1.0)
    table = format_report(flags_only)
    assert "topics          n/a (no topic labels in this file)" in table
    assert "topics macro" not in table and "0.000" not in table

