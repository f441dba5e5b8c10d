"""The newstagger model: paragraph encoder, context layer, boilerplate head and topic head.

    title, paragraph 1..n ──encoder (each on its own, long ones in chunks)──> one mean-pooled vector each
        │
        ├─ context layer (transformer over the article's paragraph vectors, with position-from-start and
        │  position-from-end embeddings) ──> boilerplate head: one logit per paragraph
        │
        └─ topic head: per label, attention pooling over the paragraph vectors, weighted by each
           paragraph's predicted content probability ──> one logit per label

Two design points matter for the Moscow Times trap (a diplomacy story followed by a donation appeal
about press freedom):
  * the topic head reads the paragraph vectors from *before* the context layer, so a reporting
    paragraph's vector carries nothing of the appeal next to it;
  * its attention adds log P(content) to every paragraph's score, so a paragraph judged boilerplate
    gets (almost) no weight. The attention weights are returned as each topic's evidence.

The model is a transformers PreTrainedModel: save_pretrained/from_pretrained give a folder with
config.json (labels, thresholds, the encoder's config, paragraph limits) and model.safetensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput


class NewsTaggerConfig(PretrainedConfig):
    model_type = "newstagger"

    def __init__(
        self,
        labels: Sequence[str] = ("diplomacy", "sanctions", "press_freedom"),
        encoder: dict | None = None,
        topic_thresholds: dict | None = None,
        boilerplate_threshold: float = 0.5,
        max_paragraph_tokens: int = 256,
        max_positions: int = 64,
        context_layers: int = 1,
        context_heads: int = 4,
        dropout: float = 0.1,
        boilerplate_loss_weight: float = 1.0,
        topic_loss_weight: float = 1.0,
        boilerplate_pos_weight: float = 1.0,
        topic_pos_weight: float = 1.0,
        encoder_micro_batch: int = 32,
        **kwargs,
    ):
        self.labels = list(labels)
        self.encoder = dict(encoder or {"model_type": "bert"})  # the base encoder's own config.json
        self.topic_thresholds = {label: 0.5 for label in self.labels}
        self.topic_thresholds.update(topic_thresholds or {})
        self.boilerplate_threshold = boilerplate_threshold
        self.max_paragraph_tokens = max_paragraph_tokens
        self.max_positions = max_positions
        self.context_layers = context_layers
        self.context_heads = context_heads
        self.dropout = dropout
        self.boilerplate_loss_weight = boilerplate_loss_weight
        self.topic_loss_weight = topic_loss_weight
        self.boilerplate_pos_weight = boilerplate_pos_weight
        self.topic_pos_weight = topic_pos_weight
        self.encoder_micro_batch = encoder_micro_batch
        kwargs.setdefault("id2label", dict(enumerate(self.labels)))
        kwargs.setdefault("label2id", {label: i for i, label in enumerate(self.labels)})
        super().__init__(**kwargs)

    def encoder_config(self) -> PretrainedConfig:
        values = dict(self.encoder)
        return AutoConfig.for_model(values.pop("model_type"), **values)


@dataclass
class NewsTaggerOutput(ModelOutput):
    loss: torch.Tensor | None = None
    boilerplate_logits: torch.Tensor | None = None  # [articles, max paragraphs]
    topic_logits: torch.Tensor | None = None  # [articles, labels]
    evidence: torch.Tensor | None = None  # [articles, labels, max paragraphs]: topic attention weights


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
        self.context_norm = nn.LayerNorm(hidden)
        layer = nn.TransformerEncoderLayer(hidden, config.context_heads, dim_feedforward=2 * hidden,
                                           dropout=config.dropout, batch_first=True, norm_first=True)
        self.context = nn.TransformerEncoder(layer, config.context_layers, enable_nested_tensor=False)
        self.boilerplate_head = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(hidden, 1))

        # Topic head: label-specific attention pooling over the (context-free) paragraph vectors.
        self.topic_norm = nn.LayerNorm(hidden)
        self.topic_attention = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, n_labels))
        self.topic_dropout = nn.Dropout(config.dropout)
        self.topic_weight = nn.Parameter(torch.zeros(n_labels, hidden))
        self.topic_bias = nn.Parameter(torch.zeros(n_labels))
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
        elif module is self:
            nn.init.normal_(self.topic_weight, std=0.02)
            nn.init.zeros_(self.topic_bias)

    @classmethod
    def from_base(cls, base_path: str, labels: Sequence[str], random_encoder: dict | None = None,
                  **config_values) -> "NewsTaggerModel":
        """A new model around a local Hugging Face encoder (pretrained weights unless random_encoder)."""
        base_config = AutoConfig.from_pretrained(base_path)
        encoder_values = base_config.to_dict()
        encoder_values.update(random_encoder or {})
        for key in ("architectures", "_name_or_path", "transformers_version", "torch_dtype", "dtype"):
            encoder_values.pop(key, None)
        config = NewsTaggerConfig(labels=labels, encoder=encoder_values, **config_values)
        model = cls(config)
        if random_encoder is None:
            model.encoder = AutoModel.from_pretrained(base_path, config=config.encoder_config())
        return model

    # -- encoder ------------------------------------------------------------------------------

    def encode_chunks(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """Sum of token vectors and token count per chunk, in length-sorted micro-batches.

        Sorting by length and trimming each micro-batch to its own longest chunk avoids most padding
        work (roughly 2x faster than padding everything to the batch maximum on CPU).
        """
        lengths = attention_mask.sum(dim=1)
        order = torch.argsort(lengths, descending=True)
        hidden = self.encoder.config.hidden_size
        sums = input_ids.new_zeros((input_ids.shape[0], hidden), dtype=self.dtype)
        step = max(1, self.config.encoder_micro_batch)
        for start in range(0, len(order), step):
            idx = order[start:start + step]
            width = int(lengths[idx].max())
            mask = attention_mask[idx, :width]
            states = self.encoder(input_ids=input_ids[idx, :width], attention_mask=mask).last_hidden_state
            sums = sums.index_copy(0, idx, (states * mask.unsqueeze(-1).to(states.dtype)).sum(dim=1).to(sums.dtype))
        return sums, lengths

    def segment_vectors(self, input_ids, attention_mask, chunk_segment, segment_mask):
        """Mean-pooled vector per segment (title or paragraph), pooling all chunks of long paragraphs."""
        batch, n_segments = segment_mask.shape
        sums, counts = self.encode_chunks(input_ids, attention_mask)
        seg_sum = sums.new_zeros((batch * n_segments, sums.shape[1])).index_add(0, chunk_segment, sums)
        seg_count = counts.new_zeros(batch * n_segments).index_add(0, chunk_segment, counts)
        vectors = seg_sum / seg_count.clamp(min=1).unsqueeze(-1).to(seg_sum.dtype)
        return vectors.view(batch, n_segments, -1)

    # -- forward ------------------------------------------------------------------------------

    def forward(self, input_ids, attention_mask, chunk_segment, segment_mask,
                boilerplate_labels=None, topic_labels=None, return_evidence: bool = False, **unused):
        segment_mask = segment_mask.bool()
        vectors = self.segment_vectors(input_ids, attention_mask, chunk_segment, segment_mask)
        batch, n_segments, _ = vectors.shape

        # Positions counted over the segments an article really has (slot 0 is the title slot).
        present = segment_mask.long()
        from_start = (present.cumsum(dim=1) - 1).clamp(min=0)
        from_end = (present.flip(1).cumsum(dim=1).flip(1) - 1).clamp(min=0)
        limit = self.config.max_positions - 1
        kinds = torch.ones_like(present)
        kinds[:, 0] = 0
        x = (vectors + self.position_from_start(from_start.clamp(max=limit))
             + self.position_from_end(from_end.clamp(max=limit)) + self.segment_type(kinds))
        x = self.context(self.context_norm(x), src_key_padding_mask=~segment_mask)
        boilerplate_logits = self.boilerplate_head(x).squeeze(-1)[:, 1:]  # the title is never boilerplate

        # Content weight per segment; detached so the topic loss cannot bend the boilerplate head.
        # Training uses the soft probability; at inference a paragraph flagged as boilerplate (at the tuned
        # threshold) is out of the topics altogether, so what the user sees flagged never drives a topic.
        boilerplate_prob = torch.sigmoid(boilerplate_logits.detach().float())
        content = torch.ones_like(vectors[..., 0])
        if self.training:
            content[:, 1:] = (1 - boilerplate_prob).to(content.dtype)
        else:
            content[:, 1:] = (boilerplate_prob < self.config.boilerplate_threshold).to(content.dtype)
        values = self.topic_norm(vectors)
        scores = self.topic_attention(values) + torch.log(content.clamp(min=1e-4)).unsqueeze(-1)
        scores = scores.masked_fill(~segment_mask.unsqueeze(-1), torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores.float(), dim=1).to(values.dtype)  # [batch, segments, labels]
        pooled = torch.einsum("bsk,bsh->bkh", weights, values)
        topic_logits = (self.topic_dropout(pooled) * self.topic_weight).sum(-1) + self.topic_bias

        loss = None
        if boilerplate_labels is not None and topic_labels is not None:
            loss = self.loss(boilerplate_logits, topic_logits, boilerplate_labels, topic_labels)
        evidence = weights[:, 1:, :].transpose(1, 2) if return_evidence else None
        return NewsTaggerOutput(loss=loss, boilerplate_logits=boilerplate_logits,
                                topic_logits=topic_logits, evidence=evidence)

    def loss(self, boilerplate_logits, topic_logits, boilerplate_labels, topic_labels):
        c = self.config
        known = boilerplate_labels >= 0  # -100 marks padding
        bp_pos = torch.tensor(c.boilerplate_pos_weight, device=boilerplate_logits.device)
        bp_loss = F.binary_cross_entropy_with_logits(
            boilerplate_logits[known].float(), boilerplate_labels[known].float(), pos_weight=bp_pos)
        topic_pos = torch.tensor(c.topic_pos_weight, device=topic_logits.device)
        topic_loss = F.binary_cross_entropy_with_logits(topic_logits.float(), topic_labels.float(),
                                                        pos_weight=topic_pos)
        return c.boilerplate_loss_weight * bp_loss + c.topic_loss_weight * topic_loss


def pack_articles(tokenizer, articles, labels: Sequence[str] | None = None,
                  max_paragraph_tokens: int = 256) -> dict:
    """Tokenize a batch of articles into the model's inputs.

    Every title and paragraph becomes one or more chunks of at most ``max_paragraph_tokens`` tokens
    (special tokens included); ``chunk_segment`` says which article slot each chunk belongs to
    (slot 0 of an article is its title, slot i its paragraph i). No article is ever truncated.
    ``articles`` are newstagger.data.Article objects. With ``labels``, label tensors are added
    for articles that carry them.
    """
    n_slots = 1 + max(len(a.paragraphs) for a in articles)
    texts, owners = [], []
    for b, article in enumerate(articles):
        if article.title.strip():
            texts.append(article.title)
            owners.append(b * n_slots)
        for i, paragraph in enumerate(article.paragraphs, start=1):
            texts.append(paragraph)
            owners.append(b * n_slots + i)
    body = max_paragraph_tokens - 2
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    chunks, chunk_segment = [], []
    for ids, owner in zip(encoded, owners):
        pieces = [ids[i:i + body] for i in range(0, len(ids), body)] or [[]]
        for piece in pieces:
            chunks.append([tokenizer.cls_token_id, *piece, tokenizer.sep_token_id])
            chunk_segment.append(owner)
    width = max(len(c) for c in chunks)
    input_ids = torch.full((len(chunks), width), tokenizer.pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(chunks), width), dtype=torch.long)
    for row, chunk in enumerate(chunks):
        input_ids[row, :len(chunk)] = torch.tensor(chunk)
        attention_mask[row, :len(chunk)] = 1
    segment_mask = torch.zeros((len(articles), n_slots), dtype=torch.bool)
    segment_mask.view(-1)[torch.tensor(owners)] = True
    batch = {"input_ids": input_ids, "attention_mask": attention_mask,
             "chunk_segment": torch.tensor(chunk_segment, dtype=torch.long), "segment_mask": segment_mask}
    if labels is not None and all(a.boilerplate is not None and a.topics is not None for a in articles):
        bp = torch.full((len(articles), n_slots - 1), -100.0)
        topics = torch.zeros((len(articles), len(labels)))
        for b, article in enumerate(articles):
            bp[b, :len(article.boilerplate)] = torch.tensor(article.boilerplate, dtype=torch.float)
            for t in article.topics:
                topics[b, labels.index(t)] = 1.0
        batch["boilerplate_labels"] = bp
        batch["topic_labels"] = topics
    return batch


AutoConfig.register("newstagger", NewsTaggerConfig)
AutoModel.register(NewsTaggerConfig, NewsTaggerModel)
