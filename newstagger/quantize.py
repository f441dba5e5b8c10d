"""The int8 backend: the paragraph encoder as a dynamically quantized ONNX Runtime graph.

Only the encoder (over 99% of the arithmetic) runs in int8; the context layer and heads stay in torch.
Chosen by measurement on the 2-core CPU (bench/bench_predict.py, ../shared/notes/performance.md):
ONNX Runtime int8 on a fully fused graph is faster and closer to fp32 than torch's quantize_dynamic.
What makes it work:
  * the legacy TorchScript exporter (dynamo=False) with eager attention, so ONNX Runtime's BERT optimizer
    can fuse attention, LayerNorm and GELU into single kernels;
  * quant_pre_process on the fused graph before quantizing (quantizing a fused graph fails without it);
  * per-channel weight scales (per-tensor int8 loses too much accuracy on this encoder);
  * the embedding layer left in fp32 (see QUANTIZED_OPS).

The quantized graph is written once into the model folder (``onnx/encoder-int8.onnx``) or, when the
folder is read-only, into a cache folder keyed by the weights' hash.

    python -m newstagger.quantize --model runs/default     # prepare it ahead of time
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

ONNX_NAME = "encoder-int8.onnx"
# The embedding layer stays fp32: quantizing it too was 5% faster on real_dev but moved topic macro-F1 by
# 0.012 (4 decisions of 360 flipped); without it, 2 flipped and F1 stayed within 0.01 of fp32.
QUANTIZED_OPS = ["MatMul", "Attention"]


class _PooledEncoder(torch.nn.Module):
    """The encoder plus the masked token sum, so the graph returns [chunks, hidden] instead of every token."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return (states * attention_mask.unsqueeze(-1).to(states.dtype)).sum(dim=1)


def export_int8(model, target: Path) -> Path:
    """Export, fuse and quantize the model's encoder into ``target`` (written atomically)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from onnxruntime.transformers import optimizer

    encoder = model.encoder
    previous = encoder.config._attn_implementation
    encoder.set_attn_implementation("eager")  # sdpa does not export to a fusable graph
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            raw, fused, prepared = (Path(tmp) / n for n in ("raw.onnx", "fused.onnx", "prepared.onnx"))
            ids = torch.ones((2, 16), dtype=torch.long)
            with torch.no_grad():
                torch.onnx.export(_PooledEncoder(encoder).eval(), (ids, torch.ones_like(ids)), str(raw),
                                  input_names=["input_ids", "attention_mask"], output_names=["token_sum"],
                                  dynamic_axes={"input_ids": {0: "chunks", 1: "tokens"},
                                                "attention_mask": {0: "chunks", 1: "tokens"},
                                                "token_sum": {0: "chunks"}},
                                  opset_version=17, dynamo=False)
            cfg = encoder.config
            optimizer.optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                                     hidden_size=cfg.hidden_size).save_model_to_file(str(fused))
            quant_pre_process(str(fused), str(prepared), skip_symbolic_shape=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
            # Fused contrib ops hide some tensor types from shape inference; they are all float.
            quantize_dynamic(str(prepared), str(partial), weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=QUANTIZED_OPS,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            os.replace(partial, target)
    finally:
        encoder.set_attn_implementation(previous)
    return target


def int8_path(model_dir: Path) -> Path:
    """Where the quantized graph lives: in the model folder if writable, else in a cache keyed by hash."""
    in_folder = model_dir / "onnx" / ONNX_NAME
    if in_folder.exists() or os.access(model_dir, os.W_OK):
        return in_folder
    digest = hashlib.sha256((model_dir / "model.safetensors").read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("NEWSTAGGER_CACHE", Path.home() / ".cache" / "newstagger"))
    return cache / digest / ONNX_NAME


class OnnxInt8Encoder:
    """Drop-in for NewsTaggerModel.encode_chunks: (token sums, token counts) per chunk, via ONNX Runtime."""

    def __init__(self, path: Path, num_threads: int | None = None, micro_batch: int = 32):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.micro_batch = micro_batch
        self._lock = threading.Lock()  # one run at a time: the session already uses every thread given

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        lengths = attention_mask.sum(dim=1)
        order = torch.argsort(lengths, descending=True).numpy()
        ids, mask, lens = input_ids.numpy(), attention_mask.numpy(), lengths.numpy()
        parts = []
        for start in range(0, len(order), self.micro_batch):
            idx = order[start:start + self.micro_batch]
            width = int(lens[idx].max())
            feed = {"input_ids": ids[idx, :width], "attention_mask": mask[idx, :width]}
            with self._lock:
                parts.append(self.session.run(None, feed)[0])
        sums = np.empty((len(order), parts[0].shape[1]), dtype=np.float32)
        sums[order] = np.concatenate(parts)  # back from length order to chunk order
        return torch.from_numpy(sums), lengths


def quantize_encoder(model, model_dir: str | Path, num_threads: int | None = None) -> None:
    """Swap the model's encoder for the int8 ONNX Runtime graph (exported on first use)."""
    path = int8_path(Path(model_dir))
    if not path.exists():
        export_int8(model, path)
    model.encode_chunks = OnnxInt8Encoder(path, num_threads, model.config.encoder_micro_batch)
    model.encoder = None  # the fp32 encoder weights are no longer needed: free their memory


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write the int8 ONNX encoder of a saved model.")
    parser.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    from .model import NewsTaggerModel

    model = NewsTaggerModel.from_pretrained(args.model).eval()
    path = int8_path(Path(args.model))
    print(export_int8(model, path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
