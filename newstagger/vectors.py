"""Paragraph vectors of a frozen encoder, computed once per distinct text and cached on disk.

The fast training mode (``encoder_mode: frozen``) trains only the context layer and the heads; the encoder's
mean-pooled vector of every title, paragraph and bank entry is computed once here (the only costly part),
after which an epoch takes seconds. The cache file is keyed by the encoder's weights, the paragraph token
limit and the vector encoder, so a changed encoder never reuses stale vectors.

Vector encoders (config ``vector_encoder``): "torch", the fp32 encoder (what the torch backend computes);
"int8", the ONNX Runtime int8 graph the onnx and int8 backends run (onnx_export.DEFAULT_QUANTIZATION, built
once per encoder into the newstagger cache), about 2.5x faster on a 2-core AVX2 CPU. Heads trained on
int8 vectors see exactly what those backends give them; the torch backend's fp32 vectors differ slightly.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import Article

VECTOR_ENCODERS = ("torch", "int8")


def encoder_fingerprint(model, max_paragraph_tokens: int) -> str:
    """Hash of the encoder's weights and the token limit: the cache key."""
    h = hashlib.sha256(str(max_paragraph_tokens).encode())
    for name, tensor in sorted(model.encoder.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


class VectorCache:
    """text -> mean-pooled encoder vector [hidden], float32.

    ``add(texts)`` encodes the texts not seen yet (length-sorted micro-batches, with a progress bar);
    calling the cache with a list of texts returns a tensor [len(texts), hidden] (KeyError for a text
    never added). ``cache_dir`` (optional) keeps the vectors across runs in one .npz file per encoder.
    ``encoder``: one of VECTOR_ENCODERS (ValueError otherwise); ``threads``: ONNX Runtime's threads for
    "int8" (default: every core; its graph gives each text the same vector whatever the threads or batch,
    so a training run that keeps torch to one thread for reproducibility still encodes on all cores)."""

    def __init__(self, model, tokenizer, max_paragraph_tokens: int, micro_batch: int = 64,
                 cache_dir: str | Path | None = None, texts_per_pass: int = 512, encoder: str = "torch",
                 threads: int | None = None, save_every: float = 120.0):
        if encoder not in VECTOR_ENCODERS:
            raise ValueError(f"vector_encoder must be one of {', '.join(VECTOR_ENCODERS)}, not {encoder!r}")
        self.model, self.tokenizer = model, tokenizer
        self.max_paragraph_tokens = max_paragraph_tokens
        self.micro_batch, self.texts_per_pass = micro_batch, texts_per_pass
        self.encoder, self.threads, self._onnx = encoder, threads, None
        self.save_every = save_every
        self.index: dict[str, int] = {}
        self.vectors = np.zeros((0, model.encoder.config.hidden_size), dtype=np.float32)
        self.path = None
        self.key = encoder_fingerprint(model, max_paragraph_tokens)
        if cache_dir:
            suffix = "" if encoder == "torch" else f"-{encoder}"  # fp32 caches keep their old names
            self.path = Path(cache_dir) / f"vectors-{self.key}{suffix}.npz"
            if self.path.exists():
                with np.load(self.path, allow_pickle=False) as saved:
                    self.vectors = saved["vectors"]
                    self.index = {t: i for i, t in enumerate(saved["texts"].tolist())}

    def add(self, texts: Iterable[str], progress: bool | None = None) -> int:
        """Encode every new non-empty text; returns how many were encoded. ``progress``: a bar (None: when
        stderr is a terminal). With a ``cache_dir``, what is
        encoded is saved every ``save_every`` seconds, at the end, and when the call is interrupted (Ctrl-C,
        an error), so the next run of a large corpus resumes from there (a killed process keeps the last
        periodic save)."""
        from .model import pack_articles

        todo = sorted({t for t in texts if t.strip() and t not in self.index}, key=len)
        if not todo:
            return 0
        done, found, saved_at = 0, [], time.monotonic()
        encode = self._encoder()
        if progress is None:  # a bar on a terminal; in a log file its frames (carriage returns) are noise
            try:
                progress = sys.stderr.isatty()
            except (AttributeError, ValueError):
                progress = False
        bar = tqdm(total=len(todo), desc="encoding paragraphs", unit="para", disable=not progress)
        self.model.eval()
        try:
            with torch.inference_mode():
                for start in range(0, len(todo), self.texts_per_pass):
                    part = todo[start:start + self.texts_per_pass]
                    # each text as the title of an article of its own: one segment, chunked like any paragraph
                    batch = pack_articles(self.tokenizer, [Article(id="", paragraphs=[], title=t) for t in part],
                                          None, self.max_paragraph_tokens)
                    sums, counts = encode(batch["input_ids"], batch["attention_mask"])
                    vectors = self.model.pool_segments(sums, counts, batch["chunk_segment"],
                                                       tuple(batch["segment_mask"].shape))
                    found.append(vectors[:, 0].float().numpy())
                    bar.update(len(part))
                    if self.path is not None and time.monotonic() - saved_at > self.save_every:
                        done += self._keep(todo[done:start + len(part)], found)
                        found, saved_at = [], time.monotonic()
        finally:  # also on Ctrl-C or an error: what was encoded is kept (and saved) for the next run
            bar.close()
            self._keep(todo[done:done + sum(len(f) for f in found)], found)
        return len(todo)

    def _keep(self, texts: list[str], found: list[np.ndarray]) -> int:
        """Append ``texts`` and their vectors (``found``, in the same order) to the cache, and save it."""
        if not texts:
            return 0
        start = len(self.vectors)
        self.vectors = np.concatenate([self.vectors, *found])
        self.index.update({t: start + i for i, t in enumerate(texts)})
        if self.path is not None:
            self._save()
        return len(texts)

    def _encoder(self):
        """(input_ids, attention_mask) [chunks, tokens] -> (token sums [chunks, hidden], token counts [chunks])."""
        if self.encoder == "torch":
            return lambda ids, mask: self.model.encode_chunks(ids, mask, self.micro_batch)
        if self._onnx is None:  # the graph is built (or found in the cache) only when there is work for it
            from .onnx_export import cached_encoder_graph
            from .runtime import OnnxEncoder

            path, manifest = cached_encoder_graph(self.model, self.key)
            self._onnx = OnnxEncoder(path, manifest, threads=self.threads, micro_batch=self.micro_batch)
        return lambda ids, mask: (torch.from_numpy(self._onnx(ids.numpy(), mask.numpy())), mask.sum(dim=1))

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial.npz")
        texts = np.array(sorted(self.index, key=self.index.get))
        np.savez(partial, texts=texts, vectors=self.vectors)
        os.replace(partial, self.path)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(self.vectors[[self.index[t] for t in texts]]) if texts else \
            torch.zeros((0, self.vectors.shape[1]))
