"""Apply a saved newstagger model: the Predictor, for batch jobs and for services.

    from newstagger import Predictor
    tagger = Predictor.from_pretrained("runs/default")
    result = tagger.predict("First paragraph.\\n\\nSecond paragraph.")
    result.topics, result.clean_text, result.to_record()

An article may be a string (paragraphs split on blank lines, or on newlines when there are none), a list
of paragraphs, a dict with ``id``, ``title`` and ``paragraphs`` or ``text``, or a newstagger Article.
One Predictor may be shared by many threads.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from .data import Article


class ArticleError(ValueError):
    """An article that cannot be tagged (empty, too large, wrong type); the message says why."""


@dataclass
class TaggingResult:
    id: str | None
    topics: list[str]
    topic_scores: dict[str, float]
    boilerplate: list[bool]  # per paragraph
    paragraph_scores: list[float]  # per paragraph: probability of boilerplate
    evidence: dict[str, list[int]]  # per tagged topic: its top content paragraphs (0-based indices)
    clean_text: str
    paragraphs: list[str] = field(repr=False, default_factory=list)

    def to_record(self) -> dict:
        return {
            "id": self.id,
            "topics": self.topics,
            "topic_scores": {k: round(v, 6) for k, v in self.topic_scores.items()},
            "paragraphs": [{"index": i, "boilerplate": flag, "score": round(score, 6)}
                           for i, (flag, score) in enumerate(zip(self.boilerplate, self.paragraph_scores))],
            "evidence": self.evidence,
            "clean_text": self.clean_text,
        }


def split_paragraphs(text: str) -> list[str]:
    """Blank lines separate paragraphs; a text without blank lines is split on newlines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    parts = re.split(r"\n\s*\n", text) if re.search(r"\n\s*\n", text) else text.split("\n")
    return [" ".join(p.split()) for p in parts if p.strip()]


def as_article(obj, default_id: str | None = None) -> Article:
    """Coerce any accepted article form into an Article, or raise ArticleError saying what is wrong."""
    if isinstance(obj, Article):
        article = obj
    elif isinstance(obj, str):
        article = Article(id=default_id, paragraphs=split_paragraphs(obj))
    elif isinstance(obj, (list, tuple)):
        if not all(isinstance(p, str) for p in obj):
            raise ArticleError("paragraphs: every paragraph must be a string")
        article = Article(id=default_id, paragraphs=[p for p in obj if p.strip()])
    elif isinstance(obj, dict):
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise ArticleError("title: expected a string")
        if obj.get("paragraphs") is not None:
            paragraphs = obj["paragraphs"]
            if not isinstance(paragraphs, list) or not all(isinstance(p, str) for p in paragraphs):
                raise ArticleError("paragraphs: expected a list of strings")
            paragraphs = [p for p in paragraphs if p.strip()]
        elif obj.get("text") is not None:
            if not isinstance(obj["text"], str):
                raise ArticleError("text: expected a string")
            paragraphs = split_paragraphs(obj["text"])
        else:
            raise ArticleError("paragraphs: the record has neither 'paragraphs' nor 'text'")
        rid = obj.get("id", default_id)
        article = Article(id=None if rid is None else str(rid), paragraphs=paragraphs, title=title)
    else:
        raise ArticleError(f"article: expected a string, a list of paragraphs or a dict, got {type(obj).__name__}")
    if not article.paragraphs:
        raise ArticleError("paragraphs: the article has no non-empty paragraph")
    return article


class Predictor:
    """Tags articles with a saved model. Thread-safe; use one per process and share it."""

    def __init__(self, model, tokenizer, backend: str = "torch", batch_size: int = 32,
                 max_paragraphs: int = 2000, max_paragraph_chars: int = 100_000,
                 paragraphs_per_pass: int = 4096, evidence_per_topic: int = 3):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = model.config
        self.labels = list(model.config.labels)
        self.backend = backend
        self.model.config.encoder_micro_batch = batch_size
        self.max_paragraphs = max_paragraphs
        self.max_paragraph_chars = max_paragraph_chars
        self.paragraphs_per_pass = paragraphs_per_pass
        self.evidence_per_topic = evidence_per_topic
        self._tokenizer_lock = threading.Lock()  # a fast tokenizer's Rust object is not re-entrant

    # Thresholds live in the model's config (saved in config.json); the model itself reads the boilerplate
    # threshold too, to keep flagged paragraphs out of the topics.
    @property
    def thresholds(self) -> np.ndarray:
        return np.array([self.config.topic_thresholds.get(label, 0.5) for label in self.labels])

    @thresholds.setter
    def thresholds(self, values) -> None:
        self.config.topic_thresholds = {label: float(v) for label, v in zip(self.labels, values)}

    @property
    def boilerplate_threshold(self) -> float:
        return float(self.config.boilerplate_threshold)

    @boilerplate_threshold.setter
    def boilerplate_threshold(self, value: float) -> None:
        self.config.boilerplate_threshold = float(value)

    @classmethod
    def from_pretrained(cls, path: str | Path, backend: str = "torch", batch_size: int = 32,
                        num_threads: int | None = None, **kwargs) -> "Predictor":
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        from .model import NewsTaggerModel

        if num_threads:
            torch.set_num_threads(num_threads)
        if backend not in ("torch", "int8"):
            raise ValueError(f"backend must be 'torch' or 'int8', not {backend!r}")
        hf_logging.disable_progress_bar()
        model = NewsTaggerModel.from_pretrained(str(path))  # safetensors only, never a pickle
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        if backend == "int8":
            from .quantize import quantize_encoder

            quantize_encoder(model, path, num_threads)
        return cls(model, tokenizer, backend=backend, batch_size=batch_size, **kwargs)

    # -- core: probabilities ------------------------------------------------------------------

    def _check(self, article: Article) -> None:
        if len(article.paragraphs) > self.max_paragraphs:
            raise ArticleError(f"paragraphs: {len(article.paragraphs)} paragraphs, over the limit of "
                               f"{self.max_paragraphs} (Predictor max_paragraphs)")
        longest = max(len(p) for p in article.paragraphs)
        if longest > self.max_paragraph_chars:
            raise ArticleError(f"paragraphs: a paragraph of {longest} characters, over the limit of "
                               f"{self.max_paragraph_chars} (Predictor max_paragraph_chars)")

    def _passes(self, articles: Sequence[Article]) -> Iterable[list[int]]:
        """Group articles of similar size so each forward pass holds about paragraphs_per_pass paragraphs."""
        order = sorted(range(len(articles)), key=lambda i: len(articles[i].paragraphs))
        group, size = [], 0
        for i in order:
            n = len(articles[i].paragraphs) + 1
            if group and size + n > self.paragraphs_per_pass:
                yield group
                group, size = [], 0
            group.append(i)
            size += n
        if group:
            yield group

    def score(self, articles: Sequence[Article]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(topic probabilities [labels], boilerplate probabilities [paragraphs], evidence [labels, paragraphs])
        for each article, in order. Articles must already be valid (see as_article)."""
        from .model import pack_articles

        results = [None] * len(articles)
        for group in self._passes(articles):
            batch_articles = [articles[i] for i in group]
            with self._tokenizer_lock:
                batch = pack_articles(self.tokenizer, batch_articles, None, self.config.max_paragraph_tokens)
            with torch.inference_mode():
                out = self.model(**batch, return_evidence=True)
            topic = torch.sigmoid(out.topic_logits.float()).numpy()
            bp = torch.sigmoid(out.boilerplate_logits.float()).numpy()
            evidence = out.evidence.float().numpy()
            for row, i in enumerate(group):
                n = len(articles[i].paragraphs)
                results[i] = (topic[row], bp[row, :n], evidence[row, :, :n])
        return results

    # -- public API ---------------------------------------------------------------------------

    def predict_batch(self, articles: Sequence) -> list[TaggingResult]:
        """Tag many articles at once (their paragraphs share encoder batches). Raises ArticleError
        for the first bad article; the CLI uses predict_batch_safe to keep going instead."""
        valid = [as_article(a) for a in articles]
        for a in valid:
            self._check(a)
        return [self._result(a, *scores) for a, scores in zip(valid, self.score(valid))]

    def predict_batch_safe(self, articles: Sequence, ids: Sequence[str | None] | None = None
                           ) -> list[TaggingResult | ArticleError]:
        """Like predict_batch, but a bad article yields its ArticleError in place and the rest go on."""
        ids = ids or [None] * len(articles)
        out: list = [None] * len(articles)
        good = []
        for i, (raw, rid) in enumerate(zip(articles, ids)):
            try:
                article = as_article(raw, default_id=rid)
                self._check(article)
                good.append((i, article))
            except ArticleError as e:
                out[i] = e
        if good:
            scored = self.score([a for _, a in good])
            for (i, article), scores in zip(good, scored):
                out[i] = self._result(article, *scores)
        return out

    def predict(self, article) -> TaggingResult:
        return self.predict_batch([article])[0]

    def predict_proba(self, articles: Sequence) -> np.ndarray:
        """Topic probabilities, [articles, labels] in the order of ``self.labels``."""
        valid = [as_article(a) for a in articles]
        return np.stack([s[0] for s in self.score(valid)])

    def _result(self, article: Article, topic_prob, bp_prob, evidence) -> TaggingResult:
        flags = [bool(p >= self.boilerplate_threshold) for p in bp_prob]
        topics = [label for label, p, t in zip(self.labels, topic_prob, self.thresholds) if p >= t]
        content = [i for i, f in enumerate(flags) if not f]
        evidence_by_topic = {}
        for label in topics:
            weights = evidence[self.labels.index(label)]
            ranked = sorted(content, key=lambda i: -weights[i])[:self.evidence_per_topic]
            evidence_by_topic[label] = [int(i) for i in ranked]
        return TaggingResult(
            id=article.id,
            topics=topics,
            topic_scores={label: float(p) for label, p in zip(self.labels, topic_prob)},
            boilerplate=flags,
            paragraph_scores=[float(p) for p in bp_prob],
            evidence=evidence_by_topic,
            clean_text="\n\n".join(article.paragraphs[i] for i in content),
            paragraphs=list(article.paragraphs),
        )
