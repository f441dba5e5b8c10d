"""Reports of scores the bench scripts have already computed, by newstagger.metrics' own rules.

A benchmark scores its articles in its own way (a timed run, the naive pipeline, a classical baseline that is
no Predictor), then wants the report newstagger gives. ``Scored`` hands those scores to
``metrics.evaluate_articles`` in place of a Predictor, so that the one rule of what a file labels lives in
metrics.score_split: articles without topics are left out of the topic metrics, articles without flags out
of the boilerplate metrics, and a task the file does not label at all is None ("not_measured"), never 0.
``cell`` prints such a None as ``n/a``.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


class Scored:
    """What evaluate_articles reads of a Predictor, with the scores of one list of articles already known.

    scores: one per article, in the order of the articles it will be asked about: a Predictor's
    ArticleScores, or (topic probabilities [labels], boilerplate probabilities [paragraphs], ...), whose flags
    are then decoded here at ``boilerplate_threshold`` and ``boilerplate_transition_penalty``
    (newstagger.decoding, as the Predictor decodes); thresholds: one per label, or one for all."""

    def __init__(self, scores, labels, thresholds, boilerplate_threshold,
                 problem_type: str = "multi_label_classification", boilerplate_transition_penalty: float = 0.0):
        self.scores = list(scores)
        self.labels = list(labels)
        self.thresholds = thresholds
        self.boilerplate_threshold = boilerplate_threshold
        self.boilerplate_transition_penalty = boilerplate_transition_penalty
        self.config = SimpleNamespace(problem_type=problem_type)

    @classmethod
    def of(cls, predictor, scores) -> "Scored":
        """``scores`` judged at ``predictor``'s labels, thresholds and problem type."""
        return cls(scores, predictor.labels, predictor.thresholds, predictor.boilerplate_threshold,
                   predictor.config.problem_type, predictor.boilerplate_transition_penalty)

    def score(self, articles):
        if len(articles) != len(self.scores):
            raise ValueError(f"{len(self.scores)} scores for {len(articles)} articles")
        return [self._article_scores(s) for s in self.scores]

    def _article_scores(self, s):
        from newstagger.decoding import decode_flags
        from newstagger.predictor import ArticleScores

        if isinstance(s, ArticleScores):
            return s
        bp = np.asarray(s[1], dtype=np.float32)
        present = np.ones(len(bp), dtype=bool)
        flags = decode_flags(bp, self.boilerplate_threshold, self.boilerplate_transition_penalty, present)
        return ArticleScores(np.asarray(s[0]), bp, s[2] if len(s) > 2 else None, flags, present)

    def report(self, articles) -> dict:
        """metrics.evaluate_articles' report of these scores of ``articles``: a task the articles do not label
        has None values."""
        from newstagger.metrics import evaluate_articles

        return evaluate_articles(self, articles)


def report(predictor, articles, scores) -> dict:
    """The report of ``scores`` (computed for ``articles``) at ``predictor``'s thresholds (see Scored.report)."""
    return Scored.of(predictor, scores).report(articles)


def cell(value, spec: str = ".3f", width: int = 0) -> str:
    """``value`` formatted with ``spec``, None (a task not measured) as ``n/a``; right-aligned in ``width``."""
    return f"{'n/a' if value is None else format(value, spec):>{width}}"
