"""The newstagger model: paragraph encoder, relation features, context layer, boilerplate head, topic head.

    title, paragraph 1..n ──encoder (each on its own, long ones in chunks)──> one mean-pooled vector each
        │                                          (or vectors computed once and cached: frozen encoder)
        ├─ relation features (cosine to the title, to the article's centroid, to each neighbour) +
        │  context layer (transformer over the article's paragraph vectors, with position-from-start and
        │  position-from-end embeddings) ──> boilerplate head: one logit per paragraph
        │
        └─ topic head: one logit per (segment, label) from each vector on its own; an article's logit for a
           label is the mean of its two highest content segments ("top2": a topic needs two segments that
           report on it, as the labelling guide's "main subject or about two paragraphs" asks), or
           attention pooling ("attention", the design of version 1: one paragraph can carry a label), or the
           content-weighted mean ("mean": labels of the article as a whole, such as a user's single-label
           categories)

Why the pieces are there:
  * furniture is about the outlet, reporting is about the story: a paragraph's similarity to the title and
    to the rest of the article says which, whatever an outlet's wording;
  * the topic head reads the paragraph vectors from *before* the context layer, so a reporting paragraph's
    vector carries nothing of the appeal next to it;
  * paragraphs judged boilerplate are kept out of the topics (soft weight in training, hard mask at the
    tuned threshold at inference), so an outlet's press-freedom appeal never makes a summit story
    press_freedom.

The model is a transformers PreTrainedModel: save_pretrained/from_pretrained give a folder with
config.json (labels, thresholds, the encoder's config, paragraph limits) and model.safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers.utils import ModelOutput

from .configuration import TOPIC_POOLING, NewsTaggerConfig  # noqa: F401 (re-exported)
from .decoding import decode_flags

N_RELATION_FEATURES = 5


@dataclass
class NewsTaggerOutput(ModelOutput):
    loss: torch.Tensor | None = None
    boilerplate_logits: torch.Tensor | None = None  # [articles, max paragraphs]
    topic_logits: torch.Tensor | None = None  # [articles, labels]
    evidence: torch.Tensor | None = None  # [articles, labels, max paragraphs]: each paragraph's share of a topic


def relation_features(vectors: torch.Tensor, segment_mask: torch.Tensor) -> torch.Tensor:
    """[articles, segments, 5] cosine similarities of each segment to the title, to the mean of the
    article's other paragraphs, to its previous and next paragraph, and whether the article has a title.
    Slot 0 is the title; padding slots get zeros."""
    n = F.normalize(vectors.float(), dim=-1) * segment_mask.unsqueeze(-1)
    has_title = segment_mask[:, :1].float()  # [B, 1]
    to_title = (n * n[:, :1]).sum(-1)
    paragraphs = n.clone()
    paragraphs[:, 0] = 0
    count = segment_mask[:, 1:].sum(1, keepdim=True).float()  # [B, 1]
    others = (paragraphs.sum(1, keepdim=True) - paragraphs) / (count - 1).clamp(min=1).unsqueeze(-1)
    to_rest = (n * others).sum(-1)
    # Neighbours are the nearest *present* paragraphs: an empty paragraph (a scraper artefact, kept at its
    # index but not encoded) must not make its neighbours look isolated. As [S, S] masks, so it exports to ONNX.
    slots = n.shape[1]
    index = torch.arange(slots, device=n.device)
    is_paragraph = segment_mask & (index > 0)  # [B, S]
    before = (index[None, :] < index[:, None])  # [S(i), S(j)]: j before i
    candidates = is_paragraph[:, None, :] & before[None]  # [B, i, j]
    prev_index = ((index + 1) * candidates).amax(-1) - 1  # -1: none
    candidates = is_paragraph[:, None, :] & before.T[None]
    next_index = slots - ((slots - index) * candidates).amax(-1)  # slots: none

    def at(where, valid):  # the unit vector of slot where[b, i], zero where not valid
        picked = torch.gather(n, 1, where.clamp(0, slots - 1).unsqueeze(-1).expand_as(n))
        return picked * valid.unsqueeze(-1)

    prev = at(prev_index, (prev_index >= 1) & is_paragraph)
    nxt = at(next_index, (next_index < slots) & is_paragraph)
    to_prev, to_next = (n * prev).sum(-1), (n * nxt).sum(-1)
    feats = torch.stack([to_title, to_rest, to_prev, to_next, has_title.expand_as(to_title)], dim=-1)
    return feats * segment_mask.unsqueeze(-1)


class NewsTaggerModel(PreTrainedModel):
    config_class = NewsTaggerConfig
    base_model_prefix = "newstagger"
    main_input_name = "input_ids"

    def __init__(self, config: NewsTaggerConfig):
        super().__init__(config)
        self.encoder = AutoModel.from_config(config.encoder_config())
        hidden = self.encoder.config.hidden_size
        n_labels = len(config.labels)

        # Context layer over an article's paragraph vectors.
        self.position_from_start = nn.Embedding(config.max_positions, hidden)
        self.position_from_end = nn.Embedding(config.max_positions, hidden)
        self.segment_type = nn.Embedding(2, hidden)  # 0 = title, 1 = paragraph
        self.relation = nn.Linear(N_RELATION_FEATURES, hidden) if config.relation_features else None
        self.context_norm = nn.LayerNorm(hidden)
        layer = nn.TransformerEncoderLayer(hidden, config.context_heads, dim_feedforward=2 * hidden,
                                           dropout=config.dropout, batch_first=True, norm_first=True)
        self.context = nn.TransformerEncoder(layer, config.context_layers, enable_nested_tensor=False)
        self.boilerplate_head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(hidden, 1))

        # Topic head over the (context-free) segment vectors. Its parameter names all start with "topic_":
        # starting from a trained model for new labels (from_trained) replaces exactly these.
        self.topic_norm = nn.LayerNorm(hidden)
        self.topic_dropout = nn.Dropout(config.dropout)
        if config.topic_pooling == "attention":
            self.topic_attention = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, n_labels))
            self.topic_weight = nn.Parameter(torch.zeros(n_labels, hidden))
            self.topic_bias = nn.Parameter(torch.zeros(n_labels))
        else:
            self.topic_segment = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(config.dropout),
                                               nn.Linear(hidden, n_labels))
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif module is self and self.config.topic_pooling == "attention":
            nn.init.normal_(self.topic_weight, std=0.02)
            nn.init.zeros_(self.topic_bias)

    @classmethod
    def from_base(cls, base_path: str, labels: Sequence[str], random_encoder: dict | None = None,
                  attention_dropout: float | None = None, **config_values) -> "NewsTaggerModel":
        """A new model around a local Hugging Face encoder (pretrained weights unless random_encoder).
        ``attention_dropout``: the encoder's dropout on attention probabilities while training (None: the
        base model's; ValueError for an encoder whose config names none)."""
        base_config = AutoConfig.from_pretrained(base_path, trust_remote_code=False)
        encoder_values = base_config.to_dict()
        encoder_values.update(random_encoder or {})
        set_attention_dropout(encoder_values, attention_dropout)
        for key in ("architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype", "auto_map"):
            encoder_values.pop(key, None)
        config = NewsTaggerConfig(labels=labels, encoder=encoder_values, **config_values)
        model = cls(config)
        if random_encoder is None:
            model.encoder = AutoModel.from_pretrained(base_path, config=config.encoder_config(),
                                                      trust_remote_code=False, use_safetensors=True)
        return model

    # What a model started from a trained one (from_trained) may set anew: the fresh topic head's pooling
    # and the training-time settings (loss weights, dropout). Everything else describes the kept weights.
    SETTABLE_ON_INIT = ("topic_pooling", "dropout", "boilerplate_loss_weight", "topic_loss_weight",
                        "boilerplate_pos_weight", "topic_pos_weight")

    @classmethod
    def from_trained(cls, folder: str, labels: Sequence[str], problem_type: str | None = None,
                     attention_dropout: float | None = None, **settings) -> "NewsTaggerModel":
        """A model for new ``labels`` that keeps a trained model's encoder, context layer and boilerplate
        head (and its boilerplate threshold) and gets a freshly initialised topic head. ``settings``: any of
        SETTABLE_ON_INIT (e.g. ``topic_pooling="mean"`` for the new head); ValueError for another key.
        ``attention_dropout``: as in from_base (None: the trained model's)."""
        other = set(settings) - set(cls.SETTABLE_ON_INIT)
        if other:
            raise ValueError(f"from_trained: {', '.join(sorted(other))} describe the kept weights and cannot be "
                             f"changed (settable: {', '.join(cls.SETTABLE_ON_INIT)})")
        trained = cls.from_pretrained(folder, use_safetensors=True, trust_remote_code=False)
        values = trained.config.to_dict()
        for key in ("labels", "topic_thresholds", "id2label", "label2id", "problem_type", "architectures",
                    "transformers_version", "model_type", "dtype", "torch_dtype"):
            values.pop(key, None)
        values.update(settings)
        values["encoder"] = dict(values["encoder"])
        set_attention_dropout(values["encoder"], attention_dropout)
        model = cls(NewsTaggerConfig(labels=labels, problem_type=problem_type, **values))
        kept = {k: v for k, v in trained.state_dict().items() if not k.startswith("topic_")}
        missing, unexpected = model.load_state_dict(kept, strict=False)
        assert not unexpected and all(k.startswith("topic_") for k in missing), (missing, unexpected)
        return model

    def single_label(self) -> bool:
        """One topic per article (softmax over labels) rather than independent labels (sigmoid each)."""
        return self.config.problem_type == "single_label_classification"

    def topic_probabilities(self, topic_logits: torch.Tensor) -> torch.Tensor:
        """[articles, labels]: softmax for single-label models, sigmoid otherwise."""
        logits = topic_logits.float()
        return torch.softmax(logits, dim=-1) if self.single_label() else torch.sigmoid(logits)

    # -- encoder ------------------------------------------------------------------------------

    def encode_chunks(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, micro_batch: int = 32):
        """Sum of token vectors [chunks, hidden] and token count [chunks] per chunk, in length-sorted
        micro-batches of ``micro_batch`` chunks.

        Sorting by length and trimming each micro-batch to its own longest chunk avoids most padding
        work (roughly 2x faster than padding everything to the batch maximum on CPU).
        """
        lengths = attention_mask.sum(dim=1)
        order = torch.argsort(lengths, descending=True)
        hidden = self.encoder.config.hidden_size
        sums = input_ids.new_zeros((input_ids.shape[0], hidden), dtype=self.dtype)
        step = max(1, micro_batch)
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            width = int(lengths[idx].max())
            mask = attention_mask[idx, :width]
            states = self.encoder(input_ids=input_ids[idx, :width], attention_mask=mask).last_hidden_state
            sums = sums.index_copy(0, idx, (states * mask.unsqueeze(-1).to(states.dtype)).sum(dim=1).to(sums.dtype))
        return sums, lengths

    @staticmethod
    def pool_segments(sums: torch.Tensor, counts: torch.Tensor, chunk_segment: torch.Tensor,
                      shape: tuple[int, int]) -> torch.Tensor:
        """Mean-pooled vector per segment [articles, segments, hidden] from per-chunk token sums and counts,
        pooling all chunks of a long paragraph (the torch twin of newstagger.packing.pool_segments, kept
        in torch so that gradients reach the encoder in training)."""
        batch, n_segments = shape
        seg_sum = sums.new_zeros((batch * n_segments, sums.shape[1])).index_add(0, chunk_segment, sums)
        seg_count = counts.new_zeros(batch * n_segments).index_add(0, chunk_segment, counts)
        vectors = seg_sum / seg_count.clamp(min=1).unsqueeze(-1).to(seg_sum.dtype)
        return vectors.view(batch, n_segments, -1)

    # -- forward ------------------------------------------------------------------------------

    def forward(self, input_ids=None, attention_mask=None, chunk_segment=None, segment_mask=None,
                segment_vectors=None, boilerplate_labels=None, topic_labels=None, topic_mask=None,
                return_evidence: bool = False, encoder_micro_batch: int = 32, **unused):
        """Either token inputs (``input_ids``, ``attention_mask`` [chunks, tokens], ``chunk_segment``
        [chunks]) or precomputed ``segment_vectors`` [articles, segments, hidden] (frozen encoder), with
        ``segment_mask`` [articles, segments] (slot 0: the title). Labels are optional and partial:
        ``boilerplate_labels`` [articles, segments - 1] with -100 where unknown, ``topic_labels``
        [articles, labels] counted only where ``topic_mask`` [articles] is true."""
        segment_mask = segment_mask.bool()
        if segment_vectors is None:
            sums, counts = self.encode_chunks(input_ids, attention_mask, encoder_micro_batch)
            segment_vectors = self.pool_segments(sums, counts, chunk_segment, tuple(segment_mask.shape))
        return self.heads(segment_vectors.to(self.dtype), segment_mask, boilerplate_labels, topic_labels,
                          topic_mask, return_evidence)

    def heads(self, vectors, segment_mask, boilerplate_labels=None, topic_labels=None, topic_mask=None,
              return_evidence: bool = False, content=None) -> NewsTaggerOutput:
        """Context layer and both heads on segment vectors [articles, segments, hidden].

        ``content`` [articles, segments - 1] bool (optional, inference only): the paragraphs the topics may
        rest on, i.e. those not flagged as boilerplate. The Predictor decodes the flags from this call's
        boilerplate logits (newstagger.decoding) and passes them back in, so the ONNX graph of this method
        needs no decoder; without it, evaluation mode decodes them here with the config's threshold and
        transition penalty. The boilerplate logits never depend on it."""
        present = segment_mask.long()
        from_start = (present.cumsum(dim=1) - 1).clamp(min=0)
        from_end = (present.flip(1).cumsum(dim=1).flip(1) - 1).clamp(min=0)
        limit = self.config.max_positions - 1
        kinds = torch.ones_like(present)
        kinds[:, 0] = 0
        x = (vectors + self.position_from_start(from_start.clamp(max=limit))
             + self.position_from_end(from_end.clamp(max=limit)) + self.segment_type(kinds))
        if self.relation is not None:
            x = x + self.relation(relation_features(vectors, segment_mask).to(x.dtype))
        x = self.context(self.context_norm(x), src_key_padding_mask=~segment_mask)
        boilerplate_logits = self.boilerplate_head(x).squeeze(-1)[:, 1:]  # the title is never boilerplate

        # Content weight per segment; detached so the topic loss cannot bend the boilerplate head.
        # Training uses the soft probability; at inference a paragraph flagged as boilerplate (decoded at the
        # tuned threshold and penalty) is out of the topics altogether, so what the user sees flagged never
        # drives a topic.
        boilerplate_prob = torch.sigmoid(boilerplate_logits.detach().float())
        paragraphs = segment_mask[:, 1:]
        if self.training:
            weight = 1 - boilerplate_prob
        elif content is not None:
            weight = content.to(paragraphs.device).bool().float()
        else:
            weight = (~self.boilerplate_flags(boilerplate_prob, paragraphs)).float()
        content = torch.cat([segment_mask[:, :1].float(), paragraphs.float() * weight], dim=1)
        values = self.topic_dropout(self.topic_norm(vectors))
        if self.config.topic_pooling == "attention":
            topic_logits, shares = self._attention_topics(values, content, segment_mask)
        elif self.config.topic_pooling == "mean":
            topic_logits, shares = self._mean_topics(values, content, segment_mask)
        else:
            topic_logits, shares = self._top2_topics(values, content, segment_mask)
        if not self.training:
            # An article without a content paragraph (all flagged) has nothing a topic could rest on: every
            # label's probability is 0, as the predictor tags none (mean pooling gave 0.5 here, at the threshold).
            empty = content[:, 1:].sum(1) == 0  # [batch]; the title alone is not content enough
            topic_logits = topic_logits.masked_fill(empty.unsqueeze(-1), -1e4)

        loss = None
        if boilerplate_labels is not None or topic_labels is not None:
            loss = self.loss(boilerplate_logits, topic_logits, boilerplate_labels, topic_labels, topic_mask)
        evidence = shares[:, 1:, :].transpose(1, 2) if return_evidence else None
        return NewsTaggerOutput(loss=loss, boilerplate_logits=boilerplate_logits,
                                topic_logits=topic_logits, evidence=evidence)

    def boilerplate_flags(self, boilerplate_prob: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Flags [articles, paragraphs] bool from probabilities [articles, paragraphs] and the mask of encoded
        paragraphs: newstagger.decoding.decode_flags per article, at the config's threshold and penalty."""
        threshold = float(self.config.boilerplate_threshold)
        penalty = float(getattr(self.config, "boilerplate_transition_penalty", 0.0))
        prob, mask = boilerplate_prob.detach().float().cpu().numpy(), present.bool().cpu().numpy()
        flags = np.stack([decode_flags(p, threshold, penalty, m) for p, m in zip(prob, mask)]) if len(prob) \
            else np.zeros(prob.shape, dtype=bool)
        return torch.from_numpy(flags.reshape(prob.shape)).to(boilerplate_prob.device)

    def _attention_topics(self, values, content, segment_mask):
        scores = self.topic_attention(values) + torch.log(content.clamp(min=1e-4)).unsqueeze(-1)
        scores = scores.masked_fill(~segment_mask.unsqueeze(-1), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores.float(), dim=1).to(values.dtype)  # [batch, segments, labels]
        pooled = torch.einsum("bsk,bsh->bkh", weights, values)
        return (pooled * self.topic_weight).sum(-1) + self.topic_bias, weights

    def _top2_topics(self, values, content, segment_mask):
        """Mean of the two highest content-weighted segment logits per label; an article with a single
        content segment counts it twice. Evidence: each segment's logit, softmaxed over the article."""
        segment_logits = self.topic_segment(values).float()  # [batch, segments, labels]
        scores = segment_logits + torch.log(content.clamp(min=1e-4)).unsqueeze(-1)
        usable = segment_mask
        if not self.training:
            # A paragraph flagged as boilerplate (content weight 0) is no segment at all, like padding: as the
            # second of two it pulled a one-paragraph brief's topic down by half its logit less 4.6 (a
            # copyright line after a lone paragraph took its press_freedom from 1.0 to 0.01).
            usable = segment_mask & (content > 0)
        scores = scores.masked_fill(~usable.unsqueeze(-1), -1e4)
        k = min(2, scores.shape[1])
        top = scores.topk(k, dim=1).values  # [batch, k, labels]
        if k == 2:
            second = torch.where(top[:, 1] <= -1e3, top[:, 0], top[:, 1])
            logits = (top[:, 0] + second) / 2
        else:
            logits = top[:, 0]
        shares = torch.softmax(scores, dim=1)
        return logits.to(values.dtype), shares.to(values.dtype)

    def _mean_topics(self, values, content, segment_mask):
        """Content-weighted mean of the segment logits per label: the whole article's reporting decides,
        for labels that describe an article as a whole (a user's single-label categories), where the
        two-segment rule would let two paragraphs decide. Evidence as for top2."""
        segment_logits = self.topic_segment(values).float()  # [batch, segments, labels]
        weights = (content * segment_mask.float()).unsqueeze(-1)
        logits = (segment_logits * weights).sum(1) / weights.sum(1).clamp(min=1e-4)
        scores = (segment_logits + torch.log(content.clamp(min=1e-4)).unsqueeze(-1)).masked_fill(
            ~segment_mask.unsqueeze(-1), -1e4)
        return logits.to(values.dtype), torch.softmax(scores, dim=1).to(values.dtype)

    def loss(self, boilerplate_logits, topic_logits, boilerplate_labels=None, topic_labels=None, topic_mask=None):
        """Weighted sum of the two binary cross-entropies, each over what the batch labels (a batch without
        boilerplate flags or without topics contributes zero to that term)."""
        c = self.config
        total = (boilerplate_logits.sum() + topic_logits.sum()) * 0.0  # keeps every head in the graph (DDP)
        if boilerplate_labels is not None:
            known = boilerplate_labels >= 0  # -100 marks padding and unlabelled articles
            if known.any():
                bp_pos = torch.tensor(c.boilerplate_pos_weight, device=boilerplate_logits.device)
                total = total + c.boilerplate_loss_weight * F.binary_cross_entropy_with_logits(
                    boilerplate_logits[known].float(), boilerplate_labels[known].float(), pos_weight=bp_pos)
        if topic_labels is not None:
            rows = topic_mask.bool() if topic_mask is not None else torch.ones(
                topic_labels.shape[0], dtype=torch.bool, device=topic_labels.device)
            if rows.any() and self.single_label():
                total = total + c.topic_loss_weight * F.cross_entropy(
                    topic_logits[rows].float(), topic_labels[rows].argmax(dim=-1))
            elif rows.any():
                topic_pos = torch.tensor(c.topic_pos_weight, device=topic_logits.device)
                total = total + c.topic_loss_weight * F.binary_cross_entropy_with_logits(
                    topic_logits[rows].float(), topic_labels[rows].float(), pos_weight=topic_pos)
        return total


# where encoder configs keep their dropout on attention probabilities (BERT, RoBERTa, MPNet, DeBERTa; DistilBERT,
# ModernBERT)
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout")


def set_attention_dropout(encoder_values: dict, probability: float | None) -> None:
    """Set an encoder config's (a dict, changed in place) attention dropout; None leaves it as it is.
    ValueError, naming attention_dropout, for a config without one (ATTENTION_DROPOUT_KEYS)."""
    if probability is None:
        return
    keys = [key for key in ATTENTION_DROPOUT_KEYS if key in encoder_values]
    if not keys:
        raise ValueError(f"attention_dropout: the {encoder_values.get('model_type', 'base')} encoder's config has "
                         f"no attention dropout to set ({' or '.join(ATTENTION_DROPOUT_KEYS)})")
    for key in keys:
        encoder_values[key] = float(probability)


def label_tensors(articles, labels: Sequence[str], n_slots: int) -> dict:
    """Partial labels: ``boilerplate_labels`` [articles, n_slots - 1] (-100 where unknown or padding),
    ``topic_labels`` [articles, labels] and ``topic_mask`` [articles] (false where topics are unknown)."""
    bp = torch.full((len(articles), n_slots - 1), -100.0)
    topics = torch.zeros((len(articles), len(labels)))
    topic_mask = torch.zeros(len(articles), dtype=torch.bool)
    for b, article in enumerate(articles):
        if article.boilerplate is not None:
            for i, (flag, paragraph) in enumerate(zip(article.boilerplate, article.paragraphs)):
                if paragraph.strip():  # an empty paragraph is not encoded, so it has no logit to train
                    bp[b, i] = float(flag)
        if article.topics is not None:
            topic_mask[b] = True
            for t in article.topics:
                topics[b, labels.index(t)] = 1.0
    return {"boilerplate_labels": bp, "topic_labels": topics, "topic_mask": topic_mask}


def _packer(tokenizer):
    """The torch-free packer (newstagger.packing) for a transformers tokenizer, made once per tokenizer."""
    from .packing import ParagraphTokenizer

    if isinstance(tokenizer, ParagraphTokenizer):
        return tokenizer
    if getattr(tokenizer, "_newstagger_packer", None) is None:
        tokenizer._newstagger_packer = ParagraphTokenizer.from_transformers(tokenizer)
    return tokenizer._newstagger_packer


def pack_articles(tokenizer, articles, labels: Sequence[str] | None = None,
                  max_paragraph_tokens: int = 256) -> dict:
    """Token inputs for the model as torch tensors: newstagger.packing's layout and chunking (the same as
    every Predictor backend's), plus label tensors when ``labels`` is given (see label_tensors).

    ``input_ids``, ``attention_mask`` [chunks, tokens], ``chunk_segment`` [chunks] and ``segment_mask``
    [articles, 1 + max paragraphs] (slot 0 the title, slot i paragraph i; no article is ever truncated)."""
    packed = _packer(tokenizer).pack(articles, max_paragraph_tokens)
    batch = {name: torch.from_numpy(value) for name, value in packed.as_dict().items()}
    if labels is not None:
        batch.update(label_tensors(articles, labels, batch["segment_mask"].shape[1]))
    return batch


def pack_vectors(vectors_of, articles, labels: Sequence[str] | None = None) -> dict:
    """Like pack_articles, but with precomputed segment vectors: ``vectors_of(texts)`` returns
    [len(texts), hidden] (a frozen encoder's cache, see newstagger.vectors)."""
    from .packing import layout

    texts, owners, n_slots = layout(articles)
    found = vectors_of(texts)
    vectors = torch.zeros((len(articles) * n_slots, found.shape[1]), dtype=torch.float32)
    mask = torch.zeros(len(articles) * n_slots, dtype=torch.bool)
    if owners:
        vectors[torch.tensor(owners)] = found
        mask[torch.tensor(owners)] = True
    batch = {"segment_vectors": vectors.view(len(articles), n_slots, -1), "segment_mask": mask.view(len(articles), n_slots)}
    if labels is not None:
        batch.update(label_tensors(articles, labels, n_slots))
    return batch


AutoConfig.register("newstagger", NewsTaggerConfig, exist_ok=True)
AutoModel.register(NewsTaggerConfig, NewsTaggerModel, exist_ok=True)
