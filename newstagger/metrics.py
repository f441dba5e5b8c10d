"""Quality metrics for both tasks (scikit-learn underneath), threshold tuning, and the printed table.

The report format, used by train.py's eval_report.json and ``python -m newstagger.evaluate --json``:

    {"topics": {"macro_f1", "micro_f1", "per_label": {label: {"precision", "recall", "f1", "support"}}},
     "boilerplate": {"precision", "recall", "f1", "support"}}
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import f1_score, precision_recall_fscore_support

THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)


def topic_report(y_true: np.ndarray, y_prob: np.ndarray, labels: Sequence[str],
                 thresholds: Sequence[float] | float = 0.5) -> dict:
    """y_true and y_prob: [articles, labels]."""
    y_pred = (y_prob >= np.asarray(thresholds, dtype=float)).astype(int)
    y_true = y_true.astype(int)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=0,
                                                 labels=list(range(len(labels))))
    return {
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y_true, y_pred, average="micro", zero_division=0)),
        "per_label": {label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                              "support": int(s[i])} for i, label in enumerate(labels)},
    }


def boilerplate_report(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict:
    """y_true and y_prob: flat, one entry per paragraph; boilerplate is the positive class."""
    y_pred = (np.asarray(y_prob) >= threshold).astype(int)
    p, r, f, s = precision_recall_fscore_support(np.asarray(y_true, dtype=int), y_pred, average="binary",
                                                 zero_division=0)
    return {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(np.sum(y_true))}


def best_threshold(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """The grid threshold that maximises F1; ties go to the one nearest 0.5 (least extreme)."""
    y_true = np.asarray(y_true, dtype=int)
    if y_true.sum() == 0:
        return 0.5
    scores = [(f1_score(y_true, (y_prob >= t).astype(int), zero_division=0), -abs(t - 0.5), t)
              for t in THRESHOLD_GRID]
    return float(max(scores)[2])


def evaluation_report(topic_true, topic_prob, bp_true, bp_prob, labels, topic_thresholds,
                      boilerplate_threshold) -> dict:
    return {"topics": topic_report(topic_true, topic_prob, labels, topic_thresholds),
            "boilerplate": boilerplate_report(bp_true, bp_prob, boilerplate_threshold)}


def format_report(report: dict, title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'task':<16}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}")
    for label, m in report["topics"]["per_label"].items():
        lines.append(f"{label:<16}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['f1']:>10.3f}{m['support']:>10d}")
    lines.append(f"{'topics micro':<16}{'':>20}{report['topics']['micro_f1']:>10.3f}")
    lines.append(f"{'topics macro':<16}{'':>20}{report['topics']['macro_f1']:>10.3f}")
    bp = report["boilerplate"]
    lines.append(f"{'boilerplate':<16}{bp['precision']:>10.3f}{bp['recall']:>10.3f}{bp['f1']:>10.3f}{bp['support']:>10d}")
    return "\n".join(lines)
