"""Articles to encoder inputs, without torch: tokenizing, chunking long paragraphs, pooling chunks back.

Every backend of the Predictor (torch, int8, onnx) packs articles here, with the ``tokenizers`` library
alone, so that the ONNX backend runs without torch or transformers and all backends see the same ids.

    tokenizer = ParagraphTokenizer.from_folder("runs/default")
    packed = tokenizer.pack(articles, max_paragraph_tokens=256)
    packed.input_ids        # [chunks, tokens] int64, each chunk [CLS] piece [SEP], padded with [PAD]
    packed.segment_mask     # [articles, 1 + max paragraphs] bool: slot 0 the title, slot i paragraph i

The one layout of the project (model.pack_articles packs through it too): an empty title or an empty or whitespace-only paragraph keeps its
slot but takes no text, so output paragraph i is always input paragraph i.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np


@dataclass
class Packed:
    """The encoder inputs of a group of articles (numpy arrays)."""
    input_ids: np.ndarray  # [chunks, tokens] int64
    attention_mask: np.ndarray  # [chunks, tokens] int64, 1 on real tokens
    chunk_segment: np.ndarray  # [chunks] int64: flat slot (article * n_slots + slot) of each chunk
    segment_mask: np.ndarray  # [articles, n_slots] bool: which slots hold text

    def as_dict(self) -> dict:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask,
                "chunk_segment": self.chunk_segment, "segment_mask": self.segment_mask}


def encoded(text: str) -> bool:
    """Whether a title or paragraph is encoded: an empty or whitespace-only one is not (its slot stays empty)."""
    return bool(text.strip())


def layout(articles) -> tuple[list[str], list[int], int]:
    """(texts to encode, flat slot of each, slots per article): slot 0 the title, slot i paragraph i."""
    n_slots = 1 + max(len(a.paragraphs) for a in articles)
    texts, owners = [], []
    for b, article in enumerate(articles):
        for i, text in enumerate([article.title, *article.paragraphs]):
            if encoded(text):
                texts.append(text)
                owners.append(b * n_slots + i)
    return texts, owners, n_slots


def _special(config: dict, name: str, default: str) -> str:
    value = config.get(name, default)
    return value.get("content", default) if isinstance(value, dict) else (value or default)


class ParagraphTokenizer:
    """A WordPiece/BPE tokenizer from ``tokenizer.json`` (the ``tokenizers`` library), with the special
    tokens the encoder was trained with. Thread-safe: encoding does not change the tokenizer's state."""

    def __init__(self, tokenizer, cls_token: str = "[CLS]", sep_token: str = "[SEP]", pad_token: str = "[PAD]"):
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        ids = {name: tokenizer.token_to_id(token) for name, token in
               (("cls_token", cls_token), ("sep_token", sep_token), ("pad_token", pad_token))}
        missing = [f"{name} {token!r}" for (name, token_id), token in zip(ids.items(), (cls_token, sep_token, pad_token))
                   if token_id is None]
        if missing:
            raise ValueError(f"tokenizer.json: the vocabulary has no {', '.join(missing)}")
        self.cls_id, self.sep_id, self.pad_id = ids["cls_token"], ids["sep_token"], ids["pad_token"]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ParagraphTokenizer":
        """From a model folder's tokenizer.json and tokenizer_config.json (special token names)."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        config = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            path = folder / name
            if path.exists():
                config.update(json.loads(path.read_text(encoding="utf-8")))
        return cls(Tokenizer.from_file(str(folder / "tokenizer.json")),
                   _special(config, "cls_token", "[CLS]"), _special(config, "sep_token", "[SEP]"),
                   _special(config, "pad_token", "[PAD]"))

    @classmethod
    def from_transformers(cls, tokenizer) -> "ParagraphTokenizer":
        """From a transformers fast tokenizer (a private copy of its Rust tokenizer)."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(tokenizer.backend_tokenizer.to_str()),
                   tokenizer.cls_token, tokenizer.sep_token, tokenizer.pad_token)

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        return [e.ids for e in self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)]

    def pack(self, articles, max_paragraph_tokens: int) -> Packed:
        """Tokenize articles into chunks of at most ``max_paragraph_tokens`` tokens (special tokens
        included); a long paragraph becomes several chunks of the same slot, never truncated."""
        texts, owners, n_slots = layout(articles)
        body = max_paragraph_tokens - 2
        chunks, chunk_segment = [], []
        for ids, owner in zip(self.ids(texts) if texts else [], owners):
            for start in range(0, max(len(ids), 1), body):
                chunks.append([self.cls_id, *ids[start:start + body], self.sep_id])
                chunk_segment.append(owner)
        width = max((len(c) for c in chunks), default=2)
        input_ids = np.full((len(chunks), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(chunks), width), dtype=np.int64)
        for row, chunk in enumerate(chunks):
            input_ids[row, :len(chunk)] = chunk
            attention_mask[row, :len(chunk)] = 1
        segment_mask = np.zeros(len(articles) * n_slots, dtype=bool)
        segment_mask[owners] = True
        return Packed(input_ids, attention_mask, np.array(chunk_segment, dtype=np.int64),
                      segment_mask.reshape(len(articles), n_slots))


def pool_segments(sums: np.ndarray, counts: np.ndarray, chunk_segment: np.ndarray,
                  shape: tuple[int, int]) -> np.ndarray:
    """Mean-pooled vector per slot [articles, slots, hidden] from per-chunk token sums [chunks, hidden]
    and token counts [chunks] (all chunks of a long paragraph pooled together); empty slots are zero."""
    n_articles, n_slots = shape
    seg_sum = np.zeros((n_articles * n_slots, sums.shape[1]), dtype=np.float32)
    np.add.at(seg_sum, chunk_segment, sums.astype(np.float32))
    seg_count = np.zeros(n_articles * n_slots, dtype=np.float32)
    np.add.at(seg_count, chunk_segment, counts.astype(np.float32))
    return (seg_sum / np.maximum(seg_count, 1)[:, None]).reshape(n_articles, n_slots, -1)
