"""Apply a saved newstagger model: the Predictor, for batch jobs and for services.

    from newstagger import Predictor
    tagger = Predictor.from_pretrained("runs/default")                  # torch, fp32
    tagger = Predictor.from_pretrained("runs/default", backend="onnx")  # no torch: after `newstagger export --onnx`
    result = tagger.predict("First paragraph.\\n\\nSecond paragraph.")
    result.topics, result.clean_text, result.to_record()

An article may be a string (paragraphs split on blank lines, or on newlines when there are none), a list
of paragraphs, a dict with ``id``, ``title`` and ``paragraphs`` or ``text``, or a newstagger Article
(newstagger.inputs.as_article: the same rule and Limits as the CLI). One Predictor may be shared by many
threads. Backends (newstagger.runtime): ``torch`` (fp32, CPU or CUDA), ``int8`` (ONNX Runtime int8 encoder,
torch heads) and ``onnx`` (int8 encoder and fp32 heads in ONNX Runtime: imports neither torch nor
transformers). Every backend gives an article the same result whatever other articles it is tagged with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import numpy as np

from .decoding import decode_flags, is_penalty, pairing_problem
from .inputs import Article, ArticleError, Limits, as_article, record_id, split_paragraphs  # noqa: F401 (re-exported)
from .model_folder import is_unit_number, read_model_folder, weights_digest
from .hub import resolve_model
from .packing import ParagraphTokenizer, pool_segments
from .runtime import BACKENDS, DEFAULT_MICRO_BATCH, Backend, check_whole_numbers, load_backend, torch_backend


@dataclass
class TaggingResult:
    """One tagged article (Predictor.predict, predict_batch; ``newstagger tag`` writes ``to_record()``).

    ``topics``: the labels tagged, in the model's label order (none when no paragraph is content);
    ``topic_scores``: label -> probability in [0, 1], every label (0 for all when no paragraph is content);
    ``boilerplate`` and ``paragraph_scores``: one flag and one boilerplate probability per input paragraph,
    at its index (an empty paragraph is flagged, score 1.0); ``evidence``: per tagged topic, the 0-based
    indices of the content paragraphs that carry it most; ``clean_text``: the content paragraphs joined by
    blank lines; ``paragraphs``: the article's paragraphs as read."""
    id: str | None
    topics: list[str]
    topic_scores: dict[str, float]
    boilerplate: list[bool]  # per paragraph
    paragraph_scores: list[float]  # per paragraph: probability of boilerplate
    evidence: dict[str, list[int]]  # per tagged topic: its top content paragraphs (0-based indices)
    clean_text: str
    paragraphs: list[str] = field(repr=False, default_factory=list)

    def to_record(self) -> dict:
        """The JSON-ready output record: id, topics, topic_scores (rounded to 6 places), paragraphs as
        ``{"index", "boilerplate", "score"}`` in input order, evidence and clean_text."""
        return {
            "id": self.id,
            "topics": self.topics,
            "topic_scores": {k: round(v, 6) for k, v in self.topic_scores.items()},
            "paragraphs": [{"index": i, "boilerplate": flag, "score": round(score, 6)}
                           for i, (flag, score) in enumerate(zip(self.boilerplate, self.paragraph_scores))],
            "evidence": self.evidence,
            "clean_text": self.clean_text,
        }


class ArticleScores(NamedTuple):
    """What the model says about one article (Predictor.score), before topic thresholds."""
    topics: np.ndarray  # [labels] probabilities
    boilerplate: np.ndarray  # [paragraphs] probability of boilerplate (1.0 for an empty paragraph)
    evidence: np.ndarray  # [labels, paragraphs] each paragraph's share of a label's score (~0 where flagged)
    flags: np.ndarray  # [paragraphs] bool, boilerplate as decoded (newstagger.decoding)
    present: np.ndarray  # [paragraphs] bool, False for an empty paragraph (never encoded, always flagged)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -x.astype(np.float64))).astype(np.float32)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x.astype(np.float64) - x.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def _article_list(articles) -> list:
    """The articles of a batch call; a single article where a list belongs is a TypeError with a hint."""
    if isinstance(articles, (str, bytes, dict, Article)):
        raise TypeError(f"articles: expected a list of articles, got a single {type(articles).__name__}; "
                        "use predict(article) for one article, or predict_batch([article])")
    try:
        return list(articles)
    except TypeError:
        raise TypeError(f"articles: expected a list of articles, got {type(articles).__name__}") from None


def _per_article(values, count: int, name: str, what: str) -> list:
    """An argument of predict_batch_safe that gives one value per article, as a list. Raises TypeError for
    no list (a string, a dict, a number), ValueError for another length."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name}: expected a list of {what}, one per article, got {type(values).__name__}")
    values = list(values)
    if len(values) != count:
        raise ValueError(f"{name}: {len(values)} values for {count} articles")
    return values


def _id_list(ids, count: int) -> list[str | None]:
    """``ids`` as strings (or None) by the record rule's id rule (a number as its digits); ValueError for a
    bad id."""
    out = []
    for i, given in enumerate(_per_article(ids, count, "ids", "ids")):
        try:
            out.append(record_id({"id": given}, None))
        except ArticleError as e:
            raise ValueError(f"ids: item {i}: {e.message.partition(': ')[2]}") from None
    return out


def _mask_list(forced, count: int) -> list[np.ndarray | None]:
    """``forced`` as bool arrays [paragraphs] (or None); TypeError for a mask that is not booleans."""
    masks = [None if mask is None else np.asarray(mask) for mask in
             _per_article(forced, count, "forced", "boolean masks")]
    for i, array in enumerate(masks):
        if array is not None and (array.dtype != bool or array.ndim != 1):
            raise TypeError(f"forced: item {i}: expected booleans, one per paragraph (or None), got {array.dtype} "
                            f"of shape {array.shape}")
    return masks


class Predictor:
    """Tags articles with a saved model. Thread-safe; use one per process and share it.

    ``Predictor(model, tokenizer)`` wraps an in-memory NewsTaggerModel and transformers tokenizer (the torch
    backend; training uses this); ``Predictor.from_pretrained(folder, backend=...)`` loads a folder.
    Runtime knobs live here, not in the model: ``batch_size`` (paragraph chunks per encoder call),
    ``num_threads``, ``device``, ``limits`` (newstagger.inputs.Limits, the CLI's by default: a service
    should pass tighter ones, since one article is one call that cannot be interrupted), ``paragraphs_per_pass``
    (paragraphs of many articles pooled and sorted by length per pass) and ``evidence_per_topic`` (both whole
    numbers >= 1; ValueError otherwise).
    ``paragraph_vectors`` (optional): a callable, texts -> torch tensor [len(texts), hidden] float32, that
    replaces the encoder (newstagger.vectors.VectorCache of a frozen encoder): training's fast mode scores its
    validation articles from the vectors it already holds instead of encoding them again.
    """

    def __init__(self, model, tokenizer, batch_size: int = 32, limits: Limits | None = None,
                 paragraphs_per_pass: int = 4096, evidence_per_topic: int = 3, device: str = "cpu",
                 backend: Backend | None = None, config=None, paragraph_vectors=None):
        check_whole_numbers(paragraphs_per_pass=paragraphs_per_pass, evidence_per_topic=evidence_per_topic)
        if limits is not None and not isinstance(limits, Limits):
            raise TypeError(f"limits: expected a newstagger.inputs.Limits, got {type(limits).__name__} "
                            "(Limits(max_paragraphs=..., ...))")
        if backend is None:  # an in-memory NewsTaggerModel
            backend, config = torch_backend(model, device, batch_size), model.config
        if not isinstance(tokenizer, ParagraphTokenizer):
            tokenizer = ParagraphTokenizer.from_transformers(tokenizer)
        self.engine = backend
        self.backend = backend.name
        self.model = backend.model  # the NewsTaggerModel (torch and int8 backends), else None
        self.tokenizer = tokenizer
        self.config = config  # labels, thresholds, max_paragraph_tokens, problem_type (the model's own config)
        self.labels = list(config.labels)
        self.micro_batch = batch_size
        self.device = device
        self.limits = limits or Limits()
        self.paragraphs_per_pass = int(paragraphs_per_pass)
        self.evidence_per_topic = int(evidence_per_topic)
        self.paragraph_vectors = paragraph_vectors

    @classmethod
    def from_pretrained(cls, path: str | Path, backend: str = "torch", batch_size: int | None = None,
                        num_threads: int | None = None, device: str = "cpu", **kwargs) -> "Predictor":
        """Load a model folder (checked first: newstagger.model_folder), or a Hub id ``owner/name`` that is not
        a local path (newstagger.hub.resolve_model; only the local cache when HF_HUB_OFFLINE=1), with one of
        BACKENDS.

        ``batch_size``: paragraph chunks per encoder call (default: the backend's, runtime.DEFAULT_MICRO_BATCH).
        ``num_threads``: CPU threads (torch's process-wide count is set only when given; ONNX Runtime's
        are this Predictor's, default all cores). ``device``: cpu, cuda or cuda:N (torch and onnx).
        Raises ModelFolderError for a folder that cannot be used, ExportError when backend "onnx" finds
        no export of these weights, HubError for a Hub id that cannot be fetched, ValueError for an unknown
        backend or device, an empty ``path`` or a runtime knob out of range, TypeError for a ``path`` that is
        no str or Path."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path: expected a model folder or a Hub id (a str or Path), got {type(path).__name__}")
        if not str(path).strip():  # Path("") is the current folder: never loaded by accident
            raise ValueError("path: empty (give a model folder or a Hub id)")
        folder = resolve_model(path)  # a local folder, or a Hub id fetched when asked (newstagger.hub)
        folder_config = read_model_folder(folder)
        tokenizer = folder_config.tokenizer
        digest = weights_digest(folder) if backend != "torch" else ""
        engine = load_backend(folder, backend, digest, micro_batch=batch_size, threads=num_threads, device=device)
        config = engine.model.config if engine.model is not None else folder_config
        return cls(None, tokenizer, batch_size=batch_size or DEFAULT_MICRO_BATCH[backend], device=device,
                   backend=engine, config=config, **kwargs)

    # Thresholds live in the model's config (saved in config.json): training tunes them through here.
    @property
    def thresholds(self) -> np.ndarray:
        """Topic thresholds [labels] float, in the order of ``labels``: a label is tagged at a score >= its
        threshold. Set with one number in [0, 1] per label (a list or array in label order), or a dict of
        label -> number for some labels (the others keep theirs); anything else is a ValueError (a
        TypeError for a value that is no list or dict) and changes nothing."""
        return np.array([self.config.topic_thresholds.get(label, 0.5) for label in self.labels])

    @thresholds.setter
    def thresholds(self, values) -> None:
        if callable(getattr(values, "keys", None)):  # a dict, or a pandas Series indexed by label: by label
            given = {label: values[label] for label in values.keys()}
            unknown = [label for label in given if label not in self.labels]
            if unknown:
                raise ValueError(f"thresholds: {unknown[0]!r} is not a label of this model ({', '.join(self.labels)})")
        else:
            if isinstance(values, (str, bytes, set, frozenset)) or not hasattr(values, "__len__"):  # (a set has no order)
                raise TypeError(f"thresholds: expected one number per label ({', '.join(self.labels)}) or a "
                                f"dict of label: number, got {type(values).__name__}")
            if len(values) != len(self.labels):
                raise ValueError(f"thresholds: {len(values)} values for {len(self.labels)} labels "
                                 f"({', '.join(self.labels)})")
            given = dict(zip(self.labels, values))
        for label, value in given.items():
            if not is_unit_number(value):
                raise ValueError(f"thresholds: {label}: must be a number in [0, 1], not {value!r}")
        self.config.topic_thresholds = {**{label: float(t) for label, t in zip(self.labels, self.thresholds)},
                                        **{label: float(v) for label, v in given.items()}}

    @property
    def boilerplate_threshold(self) -> float:
        """A paragraph scored at or above it leans boilerplate (newstagger.decoding); a number in [0, 1], inside
        (0, 1) when the transition penalty is over 0 (else a ValueError, and nothing changes)."""
        return float(self.config.boilerplate_threshold)

    @boilerplate_threshold.setter
    def boilerplate_threshold(self, value: float) -> None:
        if not is_unit_number(value):
            raise ValueError(f"boilerplate_threshold: must be in [0, 1], not {value!r}")
        problem = pairing_problem(value, self.boilerplate_transition_penalty)
        if problem:
            raise ValueError(f"boilerplate_threshold: {problem}")
        self.config.boilerplate_threshold = float(value)

    @property
    def boilerplate_transition_penalty(self) -> float:
        """Log-odds cost of switching between content and boilerplate from one paragraph to the next
        (newstagger.decoding); 0 decides each paragraph on its own. Over 0 only with a boilerplate threshold
        inside (0, 1) (else a ValueError, and nothing changes)."""
        return float(getattr(self.config, "boilerplate_transition_penalty", 0.0))

    @boilerplate_transition_penalty.setter
    def boilerplate_transition_penalty(self, value: float) -> None:
        if not is_penalty(value):
            raise ValueError(f"boilerplate_transition_penalty: must be a finite number >= 0, not {value!r}")
        problem = pairing_problem(self.boilerplate_threshold, value)
        if problem:
            raise ValueError(f"boilerplate_transition_penalty: {value!r} needs a boilerplate_threshold inside "
                             f"(0, 1), not {self.boilerplate_threshold!r}: set the threshold first")
        self.config.boilerplate_transition_penalty = float(value)

    def decode(self, boilerplate_prob, present=None, forced=None) -> np.ndarray:
        """Flags [paragraphs] bool of one article from its boilerplate probabilities [paragraphs], the mask
        of encoded paragraphs and that of paragraphs known to be boilerplate (newstagger.decoding.decode_flags),
        at this Predictor's threshold and transition penalty."""
        return decode_flags(boilerplate_prob, self.boilerplate_threshold, self.boilerplate_transition_penalty,
                            present, forced)

    @property
    def single_label(self) -> bool:
        return getattr(self.config, "problem_type", None) == "single_label_classification"

    # -- core: probabilities ------------------------------------------------------------------

    def article(self, obj, default_id: str | None = None) -> Article:
        """Any accepted article form as a checked Article (the record rule and this Predictor's limits).
        Raises ArticleError ("field: problem")."""
        return as_article(obj, default_id=default_id, limits=self.limits)

    def articles(self, articles: Sequence) -> list[Article]:
        """A list of articles as checked Articles; raises ArticleError ``article N: field: problem`` for the
        first bad one, TypeError for a single article where a list belongs."""
        valid = []
        for n, raw in enumerate(_article_list(articles)):
            try:
                valid.append(self.article(raw))
            except ArticleError as e:
                raise e.in_batch(n) from None
        return valid

    def _passes(self, articles: Sequence[Article]) -> Iterable[list[int]]:
        """Group articles of similar size so each pass holds about paragraphs_per_pass paragraphs."""
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

    def score(self, articles: Sequence[Article], forced: Sequence | None = None) -> list[ArticleScores]:
        """ArticleScores (topic probabilities, boilerplate probabilities and flags, evidence) for each
        article, in order. Articles must already be valid (see article()). ``forced`` (optional, one per
        article): a bool array [paragraphs] of paragraphs known to be boilerplate whatever their score (or
        None), decoded as such (newstagger.decoding), so that their neighbours and the topics follow."""
        results = [None] * len(articles)
        for group in self._passes(articles):
            if self.paragraph_vectors is not None:
                vectors, segment_mask = self._cached([articles[i] for i in group])
            else:
                packed = self.tokenizer.pack([articles[i] for i in group], self.config.max_paragraph_tokens)
                sums = self.engine.encode(packed.input_ids, packed.attention_mask)
                segment_mask = packed.segment_mask
                vectors = pool_segments(sums, packed.attention_mask.sum(axis=1), packed.chunk_segment,
                                        segment_mask.shape)
            present = segment_mask[:, 1:].astype(bool)
            # Two calls of the heads: the boilerplate logits first, then, with the flags decoded from them over
            # each whole article, the topics on the paragraphs left (boilerplate logits ignore ``content``).
            bp_logits, _, _ = self.engine.heads(vectors, segment_mask, present)
            bp = _sigmoid(bp_logits)
            known = np.zeros_like(present)
            for row, i in enumerate(group if forced is not None else ()):
                if forced[i] is not None:
                    known[row, :len(articles[i].paragraphs)] = forced[i]
            flags = np.stack([self.decode(bp[row], present[row], known[row]) for row in range(len(group))])
            _, topic_logits, evidence = self.engine.heads(vectors, segment_mask, present & ~flags)
            topic = _softmax(topic_logits) if self.single_label else _sigmoid(topic_logits)
            if self.single_label:  # the heads give an article without content -1e4 for every label, which a
                topic[~(present & ~flags).any(axis=1)] = 0  # softmax spreads evenly: no content, no topic, score 0
            for row, i in enumerate(group):
                n = len(articles[i].paragraphs)
                # an empty or whitespace-only paragraph is not encoded: it is boilerplate (a scraper artefact)
                results[i] = ArticleScores(topic[row], np.where(present[row, :n], bp[row, :n], 1.0).astype(np.float32),
                                           evidence[row, :, :n] * present[row, :n], flags[row, :n].copy(),
                                           present[row, :n].copy())
        return results

    def _cached(self, articles: Sequence[Article]) -> tuple[np.ndarray, np.ndarray]:
        """Segment vectors [articles, slots, hidden] and mask [articles, slots] from paragraph_vectors, in
        the layout the encoder path pools into (model.pack_vectors, as training packs them; only training
        passes paragraph_vectors, so torch is there)."""
        from .model import pack_vectors

        batch = pack_vectors(self.paragraph_vectors, articles)
        return batch["segment_vectors"].numpy(), batch["segment_mask"].numpy()

    # -- public API ---------------------------------------------------------------------------

    def predict(self, article) -> TaggingResult:
        """Tag one article: a string (paragraphs split at blank lines, else at newlines), a list of paragraph
        strings, a record dict (``paragraphs`` or ``text``, optional ``id`` and ``title``) or an Article.
        Raises ArticleError ("field: problem") for a bad or oversized article (the Predictor's limits)."""
        valid = self.article(article)
        return self._result(valid, *self.score([valid])[0])

    def predict_batch(self, articles: Sequence) -> list[TaggingResult]:
        """Tag many articles at once (their paragraphs share encoder batches). Raises ArticleError for the
        first bad article (``article N: field: problem``), TypeError for a single article where a list
        belongs; predict_batch_safe keeps going instead."""
        valid = self.articles(articles)
        return [self._result(a, *scores) for a, scores in zip(valid, self.score(valid))]

    def predict_batch_safe(self, articles: Sequence, ids: Sequence[str | None] | None = None,
                           forced: Sequence | None = None) -> list[TaggingResult | ArticleError]:
        """Like predict_batch, but each bad article yields its ArticleError in place and the rest are
        tagged: one result per article, in order. ``ids`` (optional, one per article) are the ids of
        articles that have none; an ArticleError's ``record_id`` is the article's id (its own, else the
        given one). ``forced`` (optional, one per article): bool [paragraphs] of paragraphs known to be
        boilerplate, or None (see score; ``newstagger tag --site-repeat``). Raises only for a call that is
        wrong as a whole (TypeError, or ValueError for ids or forced of another length)."""
        articles = _article_list(articles)
        if ids is not None:
            ids = _id_list(ids, len(articles))
        if forced is not None:
            forced = _mask_list(forced, len(articles))
        out: list = [None] * len(articles)
        good = []
        for i, raw in enumerate(articles):
            given = ids[i] if ids is not None else None
            try:
                good.append((i, self.article(raw, default_id=given)))
            except ArticleError as e:  # an error carries its id: the article's own, else the given one
                out[i] = e if e.record_id is not None else e.at(e.where, given)
            except Exception as e:  # what the record rule did not foresee (a deeply nested value...)
                out[i] = ArticleError(f"article: cannot be read ({type(e).__name__})", record_id=given)
        known = [forced[i] if forced is not None else None for i, _ in good]
        for (i, article), mask in zip(good, known):
            if mask is not None and len(mask) != len(article.paragraphs):
                raise ValueError(f"forced: item {i}: {len(mask)} values for {len(article.paragraphs)} paragraphs")
        try:
            scored = self.score([a for _, a in good], known) if good else []
        except Exception:  # something in one article broke the batch: tag one by one, so only it fails
            scored = []
            for (_, article), mask in zip(good, known):
                try:
                    scored.append(self.score([article], [mask])[0])
                except Exception as e:
                    scored.append(ArticleError(f"article: cannot be tagged ({type(e).__name__}: {e})",
                                               record_id=article.id))
        for (i, article), scores in zip(good, scored):
            out[i] = scores if isinstance(scores, ArticleError) else self._result(article, *scores)
        return out

    def predict_proba(self, articles: Sequence) -> np.ndarray:
        """Topic probabilities, [articles, labels] in the order of ``self.labels``; the same checks and
        errors as predict_batch."""
        valid = self.articles(articles)
        if not valid:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return np.stack([s.topics for s in self.score(valid)])

    def _result(self, article: Article, topic_prob, bp_prob, evidence, flags, present) -> TaggingResult:
        flags = [bool(f) for f in flags]
        content = [i for i, f in enumerate(flags) if not f]
        # Topics are judged on content paragraphs only: an article whose paragraphs are all boilerplate
        # gets none, and every tagged topic names the content paragraphs it rests on.
        if not content:
            topics = []
        elif self.single_label:
            topics = [self.labels[int(np.argmax(topic_prob))]]  # one topic per article, always the likeliest
        else:
            topics = [label for label, p, t in zip(self.labels, topic_prob, self.thresholds) if p >= t]
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
