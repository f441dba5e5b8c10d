"""Evaluation in one place: scoring a labelled split with a Predictor, quality metrics for both tasks
(scikit-learn underneath), threshold tuning, and the printed table.

The report format, used by train.py's eval_report.json and ``python -m newstagger.evaluate --json``:

    {"topics": {"macro_f1", "micro_f1", "per_label": {label: {"precision", "recall", "f1", "support"}},
                [labels_without_support]},
     "boilerplate": {"precision", "recall", "f1", "support"}}

macro-F1 is the mean F1 of the labels the split has examples of (``labels_without_support`` lists the others,
when there are any); micro-F1 counts every decision.

A task the split has no labels for (no paragraph flags in a topic-only corpus, no topics in a flags-only one)
is not measured: its values are null (None), never 0, and ``"not_measured"`` says why; the printed table
shows it as ``n/a``.
"""

from __future__ import annotations

import logging
from typing import NamedTuple, Sequence

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

from .decoding import PENALTIES, decode_flags

logger = logging.getLogger("newstagger")
# A tuned threshold outside this range means validation cannot calibrate the model (see tune_thresholds).
EDGE = (0.05, 0.95)
# Why a task has no scores: 0.000 would read as "F1 zero", so such a task reports None and says this.
NO_TOPICS = "no topic labels in this file"
NO_FLAGS = "no paragraph flags in this file"


def topic_report(y_true: np.ndarray, y_prob: np.ndarray, labels: Sequence[str],
                 thresholds: Sequence[float] | float = 0.5) -> dict:
    """y_true and y_prob: [articles, labels]. Without articles (a flags-only file) nothing is measured: every
    value is None and "not_measured" says so."""
    if len(y_true) == 0:
        return {"macro_f1": None, "micro_f1": None, "not_measured": NO_TOPICS,
                "per_label": {label: {"precision": None, "recall": None, "f1": None, "support": 0} for label in labels}}
    y_pred = (y_prob >= np.asarray(thresholds, dtype=float)).astype(int)
    y_true = y_true.astype(int)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0,
                                                 labels=list(range(len(labels))))
    return {
        **_macro_f1(f, s, labels),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "per_label": {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])} for i, label in enumerate(labels)},
    }


def _macro_f1(f1: np.ndarray, support: np.ndarray, labels: Sequence[str]) -> dict:
    """{"macro_f1"[, "labels_without_support"]}: the mean F1 of the labels the split has examples of. A label
    with none has no recall to measure, and counting its F1 as 0 would make a test set without press_freedom
    articles cost a third of the score; its false positives still count in micro-F1 and its own row."""
    present = [i for i in range(len(labels)) if support[i] > 0]
    out = {"macro_f1": float(np.mean([f1[i] for i in present])) if present else 0.0}
    if len(present) < len(labels):
        out["labels_without_support"] = [labels[i] for i in range(len(labels)) if support[i] == 0]
    return out


def boilerplate_report(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """y_true and y_pred (the flags as decided: newstagger.decoding): flat, one entry per paragraph, 1 or True
    for boilerplate, the positive class. Without paragraphs (a topic-only file) nothing is measured: the
    values are None and "not_measured" says so."""
    if len(y_true) == 0:
        return {"precision": None, "recall": None, "f1": None, "support": 0, "not_measured": NO_FLAGS}
    y_pred = np.asarray(y_pred).astype(int)
    p, r, f, s = precision_recall_fscore_support(np.asarray(y_true, dtype=int), y_pred, average="binary",
                                                 zero_division=0)
    return {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(np.sum(y_true))}


def best_threshold(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """The threshold nearest 0.5 among those whose F1 is within one decision of the best. 0.5 when there is
    no positive.

    Every cut between two neighbouring distinct scores is a candidate (``sklearn.metrics.precision_recall_curve``
    gives the exact optimum). A validation split with n positives cannot tell apart F1 values closer than
    about 1/n: one article more or less. Taking the exact optimum there fits the threshold to a single
    validation score (a label with 30 positives can be pushed to 0.94 by one negative scored 0.937); among the
    cuts within 1/n of the best, the one nearest 0.5 is the choice that transfers to new text."""
    y_true, y_prob = np.asarray(y_true, dtype=int), np.asarray(y_prob, dtype=float)
    if len(y_true) == 0 or y_true.sum() == 0:
        return 0.5
    scores = np.unique(y_prob)
    cuts = np.concatenate([[scores[0] / 2], (scores[1:] + scores[:-1]) / 2, [(scores[-1] + 1) / 2], [0.5]])
    predicted = y_prob[None, :] >= cuts[:, None]
    tp = (predicted & (y_true[None, :] == 1)).sum(1)
    f1 = 2 * tp / np.maximum(predicted.sum(1) + y_true.sum(), 1)
    near = cuts[f1 >= f1.max() - 1.0 / y_true.sum()]
    return float(near[np.argmin(np.abs(near - 0.5))])


def best_transition_penalty(articles, threshold: float, penalties: Sequence[float] = PENALTIES) -> float:
    """The smallest transition penalty (newstagger.decoding) whose boilerplate F1 at ``threshold`` is within
    one decision of the best: ``articles`` is a list of (true flags [n], probabilities [n], encoded [n] bool),
    one per article. 0 when there is no positive or the threshold is at 0 or 1 (nothing to decode around).
    Why within one decision, as in best_threshold: F1 values closer than 1/positives are one paragraph apart,
    and the smaller penalty changes fewer of the model's own decisions."""
    positives = sum(int(np.sum(t)) for t, _, _ in articles)
    if positives == 0 or not 0 < threshold < 1:
        return 0.0
    true = np.concatenate([t for t, _, _ in articles]).astype(bool)
    f1 = []
    for penalty in penalties:
        pred = np.concatenate([decode_flags(p, threshold, penalty, m) for _, p, m in articles])
        f1.append(2 * np.sum(pred & true) / max(int(np.sum(pred)) + positives, 1))
    f1 = np.array(f1)
    return float(min(p for p, f in zip(penalties, f1) if f >= f1.max() - 1.0 / positives))


def evaluation_report(topic_true, topic_prob, bp_true, bp_pred, labels, topic_thresholds) -> dict:
    """Both tasks: topics from probabilities [articles, labels] at ``topic_thresholds``, boilerplate from the
    flags as decided, [paragraphs] (see boilerplate_report)."""
    return {"topics": topic_report(topic_true, topic_prob, labels, topic_thresholds),
            "boilerplate": boilerplate_report(bp_true, bp_pred)}


def format_report(report: dict, title: str = "") -> str:
    lines = [title] if title else []
    if "accuracy" in report["topics"]:
        lines.append(f"{'topics accuracy':<16}{'':>20}{report['topics']['accuracy']:>10.3f}")
    lines.append(f"{'task':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    if "not_measured" in report["topics"]:
        lines.append(f"{'topics':<16}n/a ({report['topics']['not_measured']})")
    else:
        for label, m in report["topics"]["per_label"].items():
            lines.append(f"{label:<16}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>10d}")
        lines.append(f"{'topics micro':<16}{'':>20}{report['topics']['micro_f1']:>10.3f}")
        lines.append(f"{'topics macro':<16}{'':>20}{report['topics']['macro_f1']:>10.3f}")
    if report["topics"].get("labels_without_support"):
        lines.append("  (macro over labels with examples; none of: "
                     + ", ".join(report["topics"]["labels_without_support"]) + ")")
    if "confusion" in report["topics"]:
        names = list(report["topics"]["per_label"])
        lines.append("confusion (rows: true, columns: predicted): " + " ".join(n[:10] for n in names))
        for name, row in zip(names, report["topics"]["confusion"]):
            lines.append(f"  {name[:14]:<14}" + "".join(f"{v:>8d}" for v in row))
    bp = report["boilerplate"]
    lines.append(f"{'boilerplate':<16}n/a ({bp['not_measured']})" if "not_measured" in bp else
                 f"{'boilerplate':<16}{bp['precision']:>10.3f}{bp['recall']:>10.3f}{bp['f1']:>10.3f}{bp['support']:>10d}")
    return "\n".join(lines)



# ---------------------------------------------------------------------------------------------
# Scoring a labelled split with a Predictor
# ---------------------------------------------------------------------------------------------


class SplitScores(NamedTuple):
    """A labelled split as the Predictor scores it (score_split)."""
    topic_true: np.ndarray  # [articles with topics, labels] 0/1
    topic_prob: np.ndarray  # [articles with topics, labels]
    bp_true: np.ndarray  # [paragraphs of articles with flags] 0/1
    bp_prob: np.ndarray  # [paragraphs], probability of boilerplate
    bp_pred: np.ndarray  # [paragraphs] bool, the flags as decoded at the Predictor's threshold and penalty
    flagged_articles: list  # per article with flags: (true [n], probability [n], encoded [n] bool)


def score_split(predictor, articles) -> SplitScores:
    """Labels, probabilities and decisions of a labelled split, for thresholds and reports (SplitScores).
    Articles without topics or flags are left out of that task."""
    scores = predictor.score(articles)
    labels = predictor.labels
    with_topics = [i for i, a in enumerate(articles) if a.topics is not None]
    topic_true = np.array([[1 if label in articles[i].topics else 0 for label in labels] for i in with_topics],
                          dtype=int).reshape(-1, len(labels))
    topic_prob = np.stack([scores[i][0] for i in with_topics]) if with_topics else np.zeros((0, len(labels)))
    flagged = [i for i, a in enumerate(articles) if a.boilerplate is not None]
    per_article = [(np.asarray(articles[i].boilerplate, dtype=int), scores[i].boilerplate, scores[i].present)
                   for i in flagged]
    bp_true = np.concatenate([t for t, _, _ in per_article] or [np.zeros(0, dtype=int)])
    bp_prob = np.concatenate([p for _, p, _ in per_article] or [np.zeros(0)])
    bp_pred = np.concatenate([scores[i].flags for i in flagged] or [np.zeros(0, dtype=bool)])
    return SplitScores(topic_true, topic_prob, bp_true, bp_prob, bp_pred, per_article)


def single_label_report(y_true: np.ndarray, y_prob: np.ndarray, labels: Sequence[str]) -> dict:
    """One topic per article: y_true [articles, labels] one-hot, y_prob [articles, labels]; the prediction
    is the likeliest label. Accuracy, macro-F1, per-label precision/recall/F1 and the confusion table
    (rows: true label, columns: predicted)."""
    from sklearn.metrics import accuracy_score, confusion_matrix

    true, pred = np.asarray(y_true).argmax(axis=1), np.asarray(y_prob).argmax(axis=1)
    ids = list(range(len(labels)))
    p, r, f, n = precision_recall_fscore_support(true, pred, labels=ids, zero_division=0)
    return {"accuracy": float(accuracy_score(true, pred)),
            **_macro_f1(f, n, labels),
            "micro_f1": float(f1_score(true, pred, labels=ids, average="micro", zero_division=0)),
            "per_label": {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                                  "support": int(n[i])} for i, label in enumerate(labels)},
            "confusion": confusion_matrix(true, pred, labels=ids).tolist()}


def evaluate_articles(predictor, articles) -> dict:
    """The report (see the module docstring) of a Predictor on labelled articles, at its thresholds."""
    split = score_split(predictor, articles)
    report = evaluation_report(split.topic_true, split.topic_prob, split.bp_true, split.bp_pred, predictor.labels,
                               predictor.thresholds)
    if predictor.config.problem_type == "single_label_classification" and len(split.topic_true):
        report["topics"] = single_label_report(split.topic_true, split.topic_prob, predictor.labels)
    return report


def tune_thresholds(predictor, validation) -> list[str]:
    """Set the boilerplate threshold, then the boilerplate transition penalty, then per-label topic
    thresholds, that maximise F1 on validation.

    In that order. The threshold first, each paragraph on its own (best_threshold), then the penalty at that
    threshold (best_transition_penalty): searched jointly, validation drove the threshold towards the edge of
    its range (0.075 for one model of 2026-12-02), where it does not transfer to real text. Topics last:
    flagged paragraphs are kept out of the topics, so topic scores depend on the flags. Everything is stored
    in the model's config (saved in config.json).
    Returns warnings for thresholds at the edge of (0.05, 0.95): validation that far from 0.5 cannot
    calibrate the model for real text (the split is too easy or too unlike it), which is a problem to fix,
    not a result."""
    split = score_split(predictor, validation)
    named = {}
    if split.bp_true.sum() > 0:  # without flags in validation, a model started from a trained one keeps its own
        predictor.boilerplate_transition_penalty = 0.0  # the penalty of an init_from model must not veto a threshold at 0 or 1
        predictor.boilerplate_threshold = named["boilerplate"] = best_threshold(split.bp_true, split.bp_prob)
        predictor.boilerplate_transition_penalty = best_transition_penalty(split.flagged_articles,
                                                                           predictor.boilerplate_threshold)
    topic_true, topic_prob = score_split(predictor, validation)[:2]
    if predictor.config.problem_type != "single_label_classification" and len(topic_true):
        predictor.thresholds = [best_threshold(topic_true[:, i], topic_prob[:, i]) for i in range(len(predictor.labels))]
        named.update(zip(predictor.labels, predictor.thresholds))
    warnings = [f"threshold for {name} is {value:.3f}, at the edge of ({EDGE[0]}, {EDGE[1]}): validation "
                "cannot calibrate it" for name, value in named.items() if not EDGE[0] <= value <= EDGE[1]]
    for w in warnings:
        logger.warning(w)
    return warnings
