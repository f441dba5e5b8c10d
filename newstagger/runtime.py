"""The Predictor's backends: one small interface, three engines.

A backend turns packed articles (newstagger.packing) into logits in two steps, both on numpy arrays:

    encode(input_ids, attention_mask)  [chunks, tokens] int64 -> token sums [chunks, hidden] float32
    heads(vectors, segment_mask, content)
        [articles, slots, hidden], [articles, slots], [articles, slots - 1] bool -> boilerplate logits
        [articles, slots - 1], topic logits [articles, labels], evidence [articles, labels, slots - 1]

``content`` marks the paragraphs the topics may rest on. The Predictor calls heads twice: once for the
boilerplate logits (which never depend on ``content``), then, after decoding the flags
(newstagger.decoding), with the paragraphs not flagged, for the topics.

  torch  the NewsTaggerModel in fp32 (CPU or a CUDA device): encoder and heads
  int8   the int8 ONNX Runtime encoder and the torch heads (CPU)
  onnx   the int8 ONNX Runtime encoder and the fp32 ONNX heads: no torch, no transformers

Runtime knobs (micro-batch, threads, device) are the backend's, never written into the model or its config;
torch's global thread count is set only when threads are asked for.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

BACKENDS = ("torch", "int8", "onnx")
# Chunks per encoder call when none is asked for. ONNX Runtime: each of the worker threads runs small
# micro-batches on one core (on real_dev, 2 cores: 8 chunks ~250 chunks/s, 32 ~240, 64 ~190); torch: 32.
DEFAULT_MICRO_BATCH = {"torch": 32, "int8": 8, "onnx": 8}


@dataclass
class Backend:
    name: str
    encode: Callable[[np.ndarray, np.ndarray], np.ndarray]
    heads: Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
    model: object | None = None  # the NewsTaggerModel, for backends that hold one


def check_whole_numbers(**values) -> None:
    """Raise ValueError naming the first of ``values`` that is not None and not a whole number >= 1 (a bool
    is not; a numpy integer is): the runtime knobs of load_backend and the Predictor."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def length_sorted_batches(lengths: np.ndarray, micro_batch: int) -> list[np.ndarray]:
    """Chunk indices in micro-batches of similar length (longest first), so each is padded only to its
    own longest chunk."""
    order = np.argsort(-lengths, kind="stable")
    return [order[i:i + micro_batch] for i in range(0, len(order), max(1, micro_batch))]


# -- torch ----------------------------------------------------------------------------------------


def torch_heads(model, device):
    import torch

    def heads(vectors, segment_mask, content):
        with torch.inference_mode():
            out = model.heads(torch.from_numpy(vectors).to(device, model.dtype),
                              torch.from_numpy(segment_mask).to(device), return_evidence=True,
                              content=torch.from_numpy(np.asarray(content, dtype=bool)).to(device))
        return tuple(t.float().cpu().numpy() for t in (out.boilerplate_logits, out.topic_logits, out.evidence))

    return heads


def torch_backend(model, device: str = "cpu", micro_batch: int = 32) -> Backend:
    """The model in fp32 on ``device`` (moved there once)."""
    import torch

    model = model.to(device).eval()

    def encode(input_ids, attention_mask):
        with torch.inference_mode():
            sums, _ = model.encode_chunks(torch.from_numpy(input_ids).to(device),
                                          torch.from_numpy(attention_mask).to(device), micro_batch)
        return sums.float().cpu().numpy()

    return Backend("torch", encode, torch_heads(model, device), model)


# -- ONNX Runtime ---------------------------------------------------------------------------------


def _session(path: Path, threads: int, device: str, memory_arena: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = memory_arena
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # warnings about unused initializers are not the user's business
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise ValueError(f"device {device}: this onnxruntime has no CUDA provider (pip install onnxruntime-gpu)")
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": int(device.partition(":")[2] or 0)}))
    return ort.InferenceSession(str(path), options, providers=providers)


class OnnxEncoder:
    """Token sums per chunk from the int8 encoder graph.

    Chunks run in length-sorted micro-batches spread over ``threads`` worker threads, each running the
    session on one core (ONNX Runtime runs one session from many threads). ``micro_batch`` is forced to
    what the graph's manifest demands: 1 for "per-chunk" quantization, whose activation scales would
    otherwise mix the chunks of a micro-batch (and the result of an article would depend on its neighbours).
    """

    def __init__(self, path: Path, manifest: dict, threads: int | None = None, micro_batch: int = 32,
                 device: str = "cpu"):
        self.threads = threads or default_threads()
        self.micro_batch = manifest.get("encoder_micro_batch") or micro_batch
        on_gpu = device.startswith("cuda")
        self.session = _session(path, self.threads if on_gpu else 1, device)
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="newstagger-encoder") \
            if self.threads > 1 and not on_gpu else None

    def _run(self, ids, mask, idx):
        width = int(mask[idx].sum(axis=1).max())
        return self.session.run(None, {"input_ids": ids[idx, :width], "attention_mask": mask[idx, :width]})[0]

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        batches = length_sorted_batches(attention_mask.sum(axis=1), self.micro_batch)
        if self.pool is None or len(batches) == 1:
            parts = [self._run(input_ids, attention_mask, idx) for idx in batches]
        else:
            parts = list(self.pool.map(lambda idx: self._run(input_ids, attention_mask, idx), batches))
        sums = np.empty((len(input_ids), parts[0].shape[1]), dtype=np.float32)
        for idx, part in zip(batches, parts):
            sums[idx] = part
        return sums


def onnx_heads(path: Path, threads: int | None, device: str):
    # Without ONNX Runtime's memory arena: a pass of the heads holds about 150 MB of intermediates for real_dev
    # (120 articles, 58 slots), which the arena would keep, and grow again on the second call of a pass
    # (peak RSS of bench_predict 662 MB with it, 466 without; the heads' time, 0.3 s a call, is the same).
    session = _session(path, threads or default_threads(), device, memory_arena=False)

    def heads(vectors, segment_mask, content):
        feed = {"vectors": vectors.astype(np.float32), "segment_mask": segment_mask.astype(bool),
                "content": np.asarray(content, dtype=bool)}
        return tuple(session.run(None, feed))

    return heads


# -- loading --------------------------------------------------------------------------------------


@contextlib.contextmanager
def no_transformers_bars():
    """Hide transformers' own progress bars ("Loading weights" on every load, "Writing model shards" on
    every save): noise in a tagging or training log. Trainer's training bar is its own tqdm and stays."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def load_model(folder: Path):
    """The NewsTaggerModel of a validated folder, in eval mode. Raises ModelFolderError when the weights do
    not fill the model config.json describes exactly: transformers would otherwise only log the missing
    (randomly initialised), unexpected or mismatched tensors and the model would tag garbage."""
    from transformers.utils import logging as hf_logging

    from .model import NewsTaggerModel
    from .model_folder import WEIGHTS, ModelFolderError

    weights = Path(folder) / WEIGHTS
    # Tensors of other shapes load as "mismatched" (and the model is refused below) rather than raising, so
    # that the one-line error can name them; transformers' own load report (a table on stderr) is silenced.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with no_transformers_bars():
            model, info = NewsTaggerModel.from_pretrained(str(folder), use_safetensors=True, trust_remote_code=False,
                                                          output_loading_info=True, ignore_mismatched_sizes=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(f"{k[0]} ({list(k[1])} in the file, {list(k[2])} in config.json)" if isinstance(k, tuple)
                      else str(k) for k in info.get(kind) or ())
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise ModelFolderError(f"{weights}: does not match config.json: {kind.replace('_', ' ')}: {shown}")
    return model.eval()


def load_backend(folder: Path, name: str, digest: str, *, micro_batch: int | None = None,
                 threads: int | None = None, device: str = "cpu") -> Backend:
    """The backend ``name`` for a validated model folder whose weights have SHA-256 ``digest``. Raises
    ValueError for an unknown backend, a micro-batch or thread count under 1, or a device not here."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    check_whole_numbers(batch_size=micro_batch, num_threads=threads)
    micro_batch, threads = (None if v is None else int(v) for v in (micro_batch, threads))  # numpy integers too
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ValueError(f"device must be cpu, cuda or cuda:N, not {device!r}")
    micro_batch = micro_batch or DEFAULT_MICRO_BATCH[name]
    if name == "int8" and device != "cpu":
        raise ValueError(f"backend int8 runs on the CPU, not {device!r} (use the torch backend on a GPU)")
    if name == "onnx":
        from .onnx_export import ENCODER, HEADS_FORMAT, ExportError, ONNX_DIR, read_manifest

        export = folder / ONNX_DIR
        try:
            manifest = read_manifest(export, digest)
        except ExportError as e:
            raise ExportError(f"{e} with `newstagger export --onnx --model {folder}`") from None
        if manifest is None or not (export / manifest.get("heads", "")).is_file():
            raise ExportError(f"{export}: no ONNX export of this model: run `newstagger export --onnx "
                              f"--model {folder}` first (exporting needs torch; the onnx backend then runs "
                              "without it), or use the torch backend")
        heads_format = manifest.get("heads_format", 1)  # exports before the key took the threshold: format 1
        if heads_format != HEADS_FORMAT or isinstance(heads_format, bool):
            by = ("an older newstagger" if isinstance(heads_format, int) and heads_format < HEADS_FORMAT
                  else "another newstagger")
            raise ExportError(f"{export / manifest['heads']}: written by {by} (heads format {heads_format!r}, this "
                              f"one reads {HEADS_FORMAT}): run `newstagger export --onnx --model {folder}` again")
        encoder = OnnxEncoder(export / manifest.get("encoder", ENCODER), manifest, threads, micro_batch, device)
        return Backend("onnx", encoder, onnx_heads(export / manifest["heads"], threads, device))

    try:
        import torch

        from .model import NewsTaggerModel  # noqa: F401 (imported here to say what is missing)
    except ImportError as e:
        raise ImportError(f"backend {name} needs torch and transformers ({e}): pip install 'newstagger[torch]'"
                          f"{'' if name == 'torch' else ' onnx'}, or tag with backend onnx after "
                          "`newstagger export --onnx` (which runs where torch is)") from None

    if name == "torch" and device.startswith("cuda"):  # before the model is loaded, in words, not an assert
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = device.partition(":")[2]
        if count == 0 or (index.isdigit() and int(index) >= count):
            raise ValueError(f"device {device}: " + (f"this machine has {count} CUDA device(s)" if count
                                                     else "no CUDA device is available here"))
    if threads:
        torch.set_num_threads(threads)  # process-wide: only when asked
    model = load_model(folder)
    if name == "torch":
        return torch_backend(model, device, micro_batch)
    from .onnx_export import encoder_graph

    path, manifest = encoder_graph(folder, digest, model)
    return Backend("int8", OnnxEncoder(path, manifest, threads, micro_batch), torch_heads(model, "cpu"), model)
