"""Export a saved model to ONNX: the encoder in int8, the context layer and heads in fp32.

    newstagger export --onnx --model runs/default       # (the CLI calls export_onnx)

writes ``<model>/onnx/`` atomically:
  encoder-int8.onnx   input_ids, attention_mask [chunks, tokens] int64 -> token_sum [chunks, hidden]
  heads.onnx          vectors [articles, slots, hidden], segment_mask [articles, slots] bool,
                      content [articles, slots - 1] bool -> boilerplate_logits, topic_logits, evidence
  manifest.json       the SHA-256 of model.safetensors the graphs were built from, the quantization,
                      the micro-batch the encoder graph must run at, versions

after which ``Predictor.from_pretrained(model, backend="onnx")`` needs only onnxruntime, tokenizers and
numpy. Nothing is written when a model is loaded; the int8 backend (ONNX encoder, torch heads) of a folder
without this export builds its encoder graph into a cache keyed by the weights (see encoder_graph).

The int8 encoder (chosen by measurement, bench/bench_predict.py and ../shared/notes/performance.md):
  * the legacy TorchScript exporter (dynamo=False) with eager attention, so ONNX Runtime's BERT optimizer
    fuses attention, LayerNorm and GELU into single kernels; quant_pre_process before quantizing;
  * per-channel int8 weights (per-tensor loses too much accuracy), the embedding layer left in fp32;
  * batch invariance. Dynamic quantization computes each activation scale over the whole tensor it is
    given, so a chunk's result depends on the chunks batched with it (and on their padding). Measured on
    real_dev against torch fp32 (bench/bench_fidelity.py, runs/default of 2026-11-30):
      "per-token-mixed" (default): every MatMul quantizes each token's activations with its own scale
        (quantize_per_token), except the feed-forward down-projections, which stay fp32: any micro-batch
        gives the same result; topic macro-F1 0.8967 (fp32 0.8923), boilerplate F1 0.9048 (0.9083), 98.89%
        identical topic decisions, 99.74% identical flags;
      "per-token": all MatMuls per-token int8: about 1.3x faster, but topic F1 0.8684, boilerplate F1 0.8999;
      "per-chunk": ONNX Runtime's dynamic quantization, the runtime giving the graph one chunk per call so
        each scale is the chunk's own: the fastest, but one scale for a whole paragraph ([CLS] and [SEP]
        outliers included) cost 0.04 topic F1 on a fully fine-tuned model.
    The manifest says which; the runtime obeys (a per-chunk graph always runs one chunk per call).
  * SmoothQuant-style smoothing (Xiao et al. 2023), tried 2026-11-30 and not adopted: per-token int8 with
    x' = x / s (an explicit Mul) and W' = diag(s) W, s_j = max|x_j|^a / max|W_j,:|^(1-a), max|x_j| from 512
    texts of the training file; the code is on branch smoothquant-wip. On real_dev against torch fp32
    (topic F1 0.8923, boilerplate F1 0.9083), paragraphs/s of the onnx backend relative to per-token-mixed:
      recipe                          max Δtopic  decisions  flags   topic F1  bp F1   speed
      per-token-mixed (default)       0.107       98.89%     99.74%  0.8967    0.9048  1.00
      smoothed, down-proj fp32, a=0.5 0.048       99.17%     99.85%  0.8978    0.9064  0.995
      smoothed, all int8, a=0.5       0.054       99.44%     99.36%  0.8807    0.8949  1.08*
      smoothed, all int8, a=0.75      0.130       98.89%     99.77%  0.8875    0.9041  -
      smoothed, down-proj, Q, K fp32  0.035       99.17%     99.81%  0.8913    0.9052  0.94*
    (*: a training run held both cores, ~65 paragraphs/s; a first run at lighter load gave 0.63 for both.)
    Smoothing halves the largest score difference (the mean one drops 40% on data/validation.jsonl), but no
    recipe reaches issue 12's 0.02, not even with Q and K in fp32 (a quarter of the int8 MatMul work back
    in fp32). Ablations on data/validation.jsonl: the Q and K projections (attention logits) cause most of
    the score error; the down-projections stay too coarse even when smoothed (their GELU inputs
    are one-sided: per-token asymmetric quantization, a zero point per row, is the next thing to try).
  * Q/K/V in fp32, tried 2026-12-01 and not adopted: the fused Attention op (QKV projection inside) left
    fp32, O, FFN up and down per-token int8; the down-projection's one-sided GELU input asymmetric per token
    (uint8, a zero point per row; ORT's MatMulIntegerToFloat takes only a scalar zero point, so x_q W minus
    zp * colsum(W)), or with a fixed zero point 16 and scale max(row max / 239, 0.17 / 16) (no correction).
    Single-op ablations on validation (mean |Δtopic|, everything else fp32): int8 *weights* alone (fp32
    activations) already give most of the up/down error (down 0.00056 vs 0.00065 with asymmetric int8
    activations; sym activations 0.00113); up's LayerNorm input has ~8 outlier channels (|x| 28 vs 4) holding
    40% of the energy. So also tried: GPTQ rounding of the int8 weights (Frantar et al. 2022; X^T X of 512
    training texts) and LLM.int8()-style decomposition: the 16 input channels of largest calibration |x| of
    up (layers 0-4) and down (0-3) in an fp32 side MatMul (Gemm), the rest per-token int8. On real_dev
    (torch fp32: topic F1 0.8923, bp F1 0.9083); speed: paragraphs/s of the onnx backend relative to
    per-token-mixed, interleaved in one process, load 2-3.5 on 2 cores (so +-5%):
      recipe                                      max Δtopic  decisions  flags   topic F1  bp F1   speed
      per-token-mixed (default)                   0.107       98.89%     99.74%  0.8967    0.9048  1.00
      R3: QKV fp32, rest int8 symmetric           0.072       99.72%     99.59%  0.8891    0.9048  0.84-1.00
      R1: QKV fp32, down asymmetric (zp per row)  0.062       100.00%    99.74%  0.8923    0.9050  1.04-1.07
      R1, down fixed zero point 16                0.056       99.72%     99.77%  0.8891    0.9039  1.06-1.09
      R1, down offset x+0.17 (zero point 0)       0.038       99.44%     99.81%  0.8998    0.9050  1.14*
      R2: R1 + smoothing (a=0.5) on up            0.038       99.72%     99.81%  0.8891    0.9027  1.21*
      R2 + GPTQ weights                           0.038       99.44%     99.85%  0.8998    0.9060  -
      R1 + GPTQ + 16 outlier channels fp32 (all)  0.021       99.44%     99.77%  0.8778    0.9041  0.92-0.95
      R4: zp16 + GPTQ + outliers up 0-4, down 0-3 0.025       99.44%     99.81%  0.8727    0.9052  -
    (*: one run at load 2.5; -: not measured at a usable load.) Nothing meets 0.02 with F1 within 0.005;
    the default, R1, R3, R2 and R4 were checked batch-invariant (<= 3e-7 alone vs batched). R1 meets
    every bar but the 0.02 (it is the only one at 100% decisions), at the old default's speed or better: it
    is the quantization "per-token-qkv-fp32", the default since. Who needs scores within 0.02 of torch
    takes "fp32" (no quantization): every fidelity bar met (max topic-score change < 1e-4), 267 against 437
    paragraphs/s (bench/bench_predict.py, quiet machine, 2026-12-01). Also tried then: Q/K/V and down fp32,
    O and up per-token int8: max change 0.045; Q/K/V and up fp32, O and down int8: 0.050. With
    outliers and GPTQ the mean |Δtopic| falls to a third (val 0.00042 vs 0.00164 for the default) but the
    fp32 side path costs ~10% and two topic decisions of a small label flip (macro-F1 -0.02). Smoothing only
    the outlier channels (instead of splitting them off) was worse than none (val mean 0.0010).
  * One whole layer in fp32, tried 2026-12-02 and not adopted (the speed budget to 300 paragraphs/s allows
    about one layer's O, up and down back in fp32). On data/validation.jsonl, runs/default of 2026-12-02,
    largest / mean |Δtopic| against torch fp32: default 0.037 / 0.00081; layer 0 in fp32 0.045 / 0.00101,
    1: 0.079 / 0.00126, 2: 0.032 / 0.00096, 3: 0.038 / 0.00086, 4: 0.029 / 0.00090, 5: 0.036 / 0.00082.
    No layer holds the error: removing one layer's rounding moves the largest change as much as any other
    perturbation does, so the 0.02 bar needs the whole encoder in fp32 (quantization "fp32").
  * Finer weight scales, tried 2026-12-02 and not adopted (data/validation.jsonl, runs/default of 2026-12-02;
    largest / mean |Δtopic| against torch fp32; paragraphs/s of the onnx backend in the same process). The
    default's validation maximum, 0.235, is one article whose flags changed (a flipped flag moves the
    paragraphs its topics rest on); its mean is 0.00130; on real_dev no article over 0.02 has a changed flag.
      ONNX Runtime's MatMulNBits (onnxruntime.quantization.MatMulNBitsQuantizer, 8 bits, symmetric, a scale
      per block of K rows), QKV fp32 in the fused Attention, accuracy_level 4 (blockwise int8 activations):
      block 32: 0.021 / 0.00044 at 248 paragraphs/s; block 128: 0.029 / 0.00078 at 289; all MatMuls, QKV
      included, block 32: 0.025 at 239; block 128: 0.040 at 293; block 32 weight-only (accuracy_level 0):
      0.013 / 0.00023 at 226. The unquantized graph ran at 285 in the same process: on x86 these 8-bit
      kernels are no faster than ONNX Runtime's fp32 GEMM.
      The default recipe with a per-column weight scale per group of 128 K rows (one MatMulIntegerToFloat
      per group, summed; the token's activation scale kept): 0.038 / 0.00077, but 250 paragraphs/s on
      real_dev against 349; groups of 64: 0.047 at 177.
    The fp32 encoder already runs at one core's peak (about 5,000 tokens/s a core, 21 MFLOP a token: about
    107 GFLOP/s), about 220 paragraphs/s on real_dev at micro-batch 8 (196 at 32): no runtime setting brings
    the unquantized graph to 300 on two cores.
  * Looked at 2026-12-02 (later), not built: fp16 weights (the Xeon has AVX512-FP16): ONNX Runtime 1.32's
    fp16 MatMul ran a [2048, 384] x [384, 1536] product at 117 GFLOP/s on one core against 125 for fp32, so
    no gain. A cascade (the int8 encoder first, the fp32 one again for each article with a topic score in
    [0.15, 0.85], where the sigmoid is steep enough for int8's logit error to move a score by 0.02): on
    real_dev with runs/default, 31 of 120 articles, 28% of the paragraphs, would be encoded twice, and the
    largest change outside the band is 0.015; at the measured speeds (int8 about 350, fp32 about 220
    paragraphs/s) that is about 240 paragraphs/s, under 300 (21% of paragraphs with a band of [0.2, 0.8]: about 265).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .model_folder import read_model_folder, weights_digest
from .runtime import load_model

ONNX_DIR = "onnx"
ENCODER = "encoder-int8.onnx"
ENCODER_FP32 = "encoder-fp32.onnx"  # quantization "fp32": the fused graph, not quantized
HEADS = "heads.onnx"
MANIFEST = "manifest.json"
QUANTIZATIONS = ("per-token", "per-token-mixed", "per-token-qkv-fp32", "per-chunk", "fp32")
# Bumped whenever the recipe that builds a graph changes (fusions, which ops are quantized, how): a cached
# graph is reused only if it was built by the same recipe, the same quantization and the same weights.
# (A cache entry left by an older recipe under the same weights once cost 0.024 topic F1 in CI.)
GRAPH_RECIPE = 2
# The heads graph's inputs and rules. 2: the decoded content flags (newstagger.decoding), where 1 took the
# boilerplate threshold and thresholded inside the graph; 3: a flagged paragraph is no topic segment at all
# (model._top2_topics), where 2 let it be the second of a one-paragraph brief's two. An export of another
# format must be written again.
HEADS_FORMAT = 3
DEFAULT_QUANTIZATION = "per-token-qkv-fp32"
MICRO_BATCH_OF = {"per-token": None, "per-token-mixed": None, "per-token-qkv-fp32": None, "per-chunk": 1,
                  "fp32": None}  # the micro-batch a graph must run at (None: any)
# The embedding layer stays fp32: quantizing it too was 5% faster on real_dev but moved topic macro-F1 by
# 0.012 (4 decisions of 360 flipped); without it, 2 flipped.
QUANTIZED_OPS = ["MatMul", "Attention"]
OPSET = 17


class ExportError(RuntimeError):
    """The ONNX export is missing, stale or cannot be built; the message says what to run."""


def check_quantization(quantization: str, name: str = "quantization") -> None:
    """ValueError ``NAME: must be one of ...`` for a quantization that is not one of QUANTIZATIONS."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"{name}: must be one of {', '.join(QUANTIZATIONS)}, not {quantization!r}")


def _versions() -> dict:
    import onnxruntime

    from . import __version__

    return {"newstagger": __version__, "graph_recipe": GRAPH_RECIPE, "onnxruntime": onnxruntime.__version__}


@contextlib.contextmanager
def _quiet_exporter():
    """Hide what torch's exporters say about their own internals (tracer notes on transformers' masking
    code, optional torchvision ops, deprecations, axis names): nothing a user of `newstagger export` can
    act on, and ours are checked by the tests (the graphs' results against torch)."""
    import torch

    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=FutureWarning)
            # the legacy TorchScript exporter is chosen on purpose: see "the int8 encoder" above
            warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=r"Exporting aten::index operator", category=UserWarning)
            warnings.filterwarnings("ignore", message=r"# The axis name: .* will not be used", category=UserWarning)
            yield
    finally:
        registration.setLevel(level)


# -- the encoder ----------------------------------------------------------------------------------


def _pooled_encoder(encoder):
    import torch

    class PooledEncoder(torch.nn.Module):
        """The encoder plus the masked token sum: the graph returns [chunks, hidden], not every token."""

        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask):
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return (states * attention_mask.unsqueeze(-1).to(states.dtype)).sum(dim=1)

    return PooledEncoder().eval()


def export_encoder(model, target: Path, quantization: str = DEFAULT_QUANTIZATION) -> Path:
    """Export, fuse and quantize the model's encoder into ``target`` (written atomically)."""
    import onnx
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    check_quantization(quantization)
    encoder = model.encoder
    previous = encoder.config._attn_implementation
    encoder.set_attn_implementation("eager")  # sdpa does not export to a fusable graph
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            raw, fused, prepared = (Path(tmp) / n for n in ("raw.onnx", "fused.onnx", "prepared.onnx"))
            ids = torch.ones((2, 16), dtype=torch.long)
            with torch.no_grad(), _quiet_exporter():
                torch.onnx.export(_pooled_encoder(encoder), (ids, torch.ones_like(ids)), str(raw),
                                  input_names=["input_ids", "attention_mask"], output_names=["token_sum"],
                                  dynamic_axes={"input_ids": {0: "chunks", 1: "tokens"},
                                                "attention_mask": {0: "chunks", 1: "tokens"},
                                                "token_sum": {0: "chunks"}},
                                  opset_version=OPSET, dynamo=False)
            cfg = encoder.config
            options = FusionOptions("bert")
            # per-token quantization rewrites MatMuls: keep Q, K and V projections as MatMuls, except for
            # "per-token-qkv-fp32", whose fused Attention op (QKV projection inside) stays fp32
            options.use_multi_head_attention = quantization in ("per-token", "per-token-mixed")
            optimizer.optimize_model(str(raw), model_type="bert", num_heads=cfg.num_attention_heads,
                                     hidden_size=cfg.hidden_size, optimization_options=options
                                     ).save_model_to_file(str(fused))
            partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
            if quantization == "fp32":
                shutil.copyfile(fused, partial)
            elif quantization.startswith("per-token"):
                skip = ("Gelu", "BiasGelu", "FastGelu") if quantization == "per-token-mixed" else ()
                gelu = ("Gelu", "BiasGelu", "FastGelu")
                asym = gelu if quantization == "per-token-qkv-fp32" else ()
                onnx.save(quantize_per_token(onnx.load(str(fused)), fp32_after=skip, asymmetric_after=asym),
                          str(partial))
            else:
                quant_pre_process(str(fused), str(prepared), skip_symbolic_shape=True)
                # Fused contrib ops hide some tensor types from shape inference; they are all float.
                quantize_dynamic(str(prepared), str(partial), weight_type=QuantType.QInt8, per_channel=True,
                                 op_types_to_quantize=QUANTIZED_OPS,
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            os.replace(partial, target)
    finally:
        encoder.set_attn_implementation(previous)
    return target


def quantize_per_token(model, fp32_after: tuple[str, ...] = (), asymmetric_after: tuple[str, ...] = ()):
    """Every MatMul with a constant weight [K, N] becomes int8 with per-token activation scales:
    x [.., K] -> rows [M, K], scale = max|row| / 127 per row, uint8 (zero point 128), MatMulIntegerToFloat
    with per-column int8 weights, times the row's scale. A token's result depends on that token only.
    ``fp32_after``: MatMuls whose input comes from a node of these types stay fp32 ("per-token-mixed" keeps
    the feed-forward down-projections, whose GELU inputs have the widest range, in fp32).
    ``asymmetric_after``: MatMuls whose input comes from a node of these types quantize each row over its own
    [min(row, 0), max(row, 0)]: scale = range / 255, a zero point per row (GELU outputs are one-sided, so
    symmetric scales waste half the codes); MatMulIntegerToFloat takes one zero point only, so the rows
    go in with zero point 0 and zp * colsum(W) is subtracted after."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    consts = {"pt_inv127": np.float32(1 / 127), "pt_tiny": np.float32(1e-12), "pt_one": np.float32(1),
              "pt_zp": np.uint8(128), "pt_zp1": np.array([128], np.uint8), "pt_last": np.array([-1], np.int64),
              "pt_first": np.array([0], np.int64), "pt_inv255": np.float32(1 / 255), "pt_zero": np.float32(0),
              "pt_zp0": np.uint8(0)}
    added = [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()]
    nodes, rows_of = [], {}
    producer = {out: n.op_type for n in graph.node for out in n.output}
    for node in graph.node:
        if not (node.op_type == "MatMul" and node.input[1] in weights) or producer.get(node.input[0]) in fp32_after:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
        k_in, n_out = w.shape
        w_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127
        w_int8 = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
        p = f"{node.name or node.output[0]}_pt_"
        added += [numpy_helper.from_array(w_int8, p + "w"),
                  numpy_helper.from_array(w_scale.astype(np.float32), p + "w_scale"),
                  numpy_helper.from_array(np.array([-1, k_in], np.int64), p + "rows_shape"),
                  numpy_helper.from_array(np.array([n_out], np.int64), p + "n")]
        x = node.input[0]
        asymmetric = producer.get(x) in asymmetric_after
        if x not in rows_of:  # Q, K and V share their input: quantize it once
            q = f"{x}_pt_"
            nodes.append(helper.make_node("Reshape", [x, p + "rows_shape"], [q + "rows"]))
            if asymmetric:
                nodes += [helper.make_node("ReduceMax", [q + "rows"], [q + "hi"], axes=[1], keepdims=0),
                          helper.make_node("ReduceMin", [q + "rows"], [q + "lo"], axes=[1], keepdims=0),
                          helper.make_node("Max", [q + "hi", "pt_zero"], [q + "hi0"]),
                          helper.make_node("Min", [q + "lo", "pt_zero"], [q + "lo0"]),
                          helper.make_node("Sub", [q + "hi0", q + "lo0"], [q + "range"]),
                          helper.make_node("Max", [q + "range", "pt_tiny"], [q + "range1"]),
                          helper.make_node("Mul", [q + "range1", "pt_inv255"], [q + "scale"]),
                          helper.make_node("Div", [q + "lo0", q + "scale"], [q + "lo_codes"]),
                          helper.make_node("Neg", [q + "lo_codes"], [q + "zp_float0"]),
                          helper.make_node("Round", [q + "zp_float0"], [q + "zp_float"]),
                          helper.make_node("Cast", [q + "zp_float"], [q + "zero_points"], to=onnx.TensorProto.UINT8),
                          helper.make_node("Unsqueeze", [q + "zp_float", "pt_last"], [q + "zp_col"])]
            else:
                nodes += [helper.make_node("Abs", [q + "rows"], [q + "abs"]),
                          helper.make_node("ReduceMax", [q + "abs"], [q + "max"], axes=[1], keepdims=0),
                          helper.make_node("Max", [q + "max", "pt_tiny"], [q + "max1"]),
                          helper.make_node("Mul", [q + "max1", "pt_inv127"], [q + "scale"]),
                          helper.make_node("Shape", [q + "scale"], [q + "n_rows"]),
                          helper.make_node("Expand", ["pt_zp1", q + "n_rows"], [q + "zero_points"])]
            nodes += [helper.make_node("QuantizeLinear", [q + "rows", q + "scale", q + "zero_points"], [q + "q"], axis=0),
                      helper.make_node("Unsqueeze", [q + "scale", "pt_last"], [q + "scale_col"]),
                      helper.make_node("Shape", [x], [q + "shape"]),
                      helper.make_node("Slice", [q + "shape", "pt_first", "pt_last"], [q + "lead"])]
            rows_of[x] = q
        q = rows_of[x]
        if asymmetric:  # (x_q - zp) W = x_q W - zp * colsum(W)
            colsum = (w_int8.astype(np.int64).sum(axis=0) * w_scale).astype(np.float32)
            added.append(numpy_helper.from_array(colsum, p + "colsum"))
            nodes += [helper.make_node("MatMulIntegerToFloat", [q + "q", p + "w", "pt_one", p + "w_scale", "pt_zp0"],
                                       [p + "y0"], domain="com.microsoft"),
                      helper.make_node("Mul", [q + "zp_col", p + "colsum"], [p + "shift"]),
                      helper.make_node("Sub", [p + "y0", p + "shift"], [p + "y"])]
        else:
            nodes.append(helper.make_node("MatMulIntegerToFloat", [q + "q", p + "w", "pt_one", p + "w_scale", "pt_zp"],
                                          [p + "y"], domain="com.microsoft"))
        nodes += [helper.make_node("Mul", [p + "y", q + "scale_col"], [p + "scaled"]),
                  helper.make_node("Concat", [q + "lead", p + "n"], [p + "out_shape"], axis=0),
                  helper.make_node("Reshape", [p + "scaled", p + "out_shape"], [node.output[0]])]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(added)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.checker.check_model(model)
    return model


# -- the context layer and heads ------------------------------------------------------------------


def export_heads(model, target: Path) -> Path:
    """NewsTaggerModel.heads as an fp32 graph. The content flags (the paragraphs not flagged, which the
    topics rest on) are an input: the Predictor decodes them from the boilerplate logits of a first call
    (newstagger.decoding), so a Predictor's threshold and penalty apply without a new export."""
    import torch

    class Heads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, vectors, segment_mask, content):
            out = self.model.heads(vectors, segment_mask, return_evidence=True, content=content)
            return out.boilerplate_logits, out.topic_logits, out.evidence

    hidden = model.config.encoder_config().hidden_size
    vectors = torch.randn(3, 5, hidden)
    mask = torch.tensor([[True, True, True, False, True], [False, True, True, True, True],
                         [True, True, False, False, False]])
    content = torch.tensor([[True, False, True, True], [True, True, False, True], [True, False, False, False]])
    articles, slots = torch.export.Dim("articles", min=1), torch.export.Dim("slots", min=2)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    # torch.export (dynamo) keeps the articles and slots dimensions symbolic through the context layer's
    # attention; the legacy tracer bakes the slot count of the example into its reshapes.
    with torch.no_grad(), _quiet_exporter():  # e.g. "articles" and "slots" of two inputs are one axis: true
        program = torch.onnx.export(Heads().eval(), (vectors, mask, content),
                                    input_names=["vectors", "segment_mask", "content"],
                                    output_names=["boilerplate_logits", "topic_logits", "evidence"],
                                    dynamic_shapes={"vectors": {0: articles, 1: slots},
                                                    "segment_mask": {0: articles, 1: slots},
                                                    "content": {0: articles, 1: slots - 1}},
                                    opset_version=18, dynamo=True, optimize=True, verbose=False)
    program.save(str(partial))
    os.replace(partial, target)
    return target


# -- the folder export and the int8 cache ---------------------------------------------------------


def export_onnx(model_dir: str | Path, quantization: str = DEFAULT_QUANTIZATION, model=None) -> Path:
    """Write ``<model_dir>/onnx/`` (see the module docstring), replacing an older export atomically.
    Returns the folder. ``quantization``: one of QUANTIZATIONS (ValueError otherwise); "fp32" writes the
    encoder unquantized. ``model``: the loaded NewsTaggerModel, if the caller has it."""
    check_quantization(quantization)
    model_dir = Path(model_dir)
    read_model_folder(model_dir)
    digest = weights_digest(model_dir)
    model = model if model is not None else load_model(model_dir)
    final = model_dir / ONNX_DIR
    partial = model_dir / f".{ONNX_DIR}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        encoder_file = ENCODER_FP32 if quantization == "fp32" else ENCODER
        export_encoder(model, partial / encoder_file, quantization)
        export_heads(model, partial / HEADS)
        manifest = {"weights_sha256": digest, "encoder": encoder_file, "heads": HEADS, "heads_format": HEADS_FORMAT,
                    "quantization": quantization,
                    "encoder_micro_batch": MICRO_BATCH_OF[quantization],
                    "hidden_size": model.config.encoder_config().hidden_size, "opset": OPSET, **_versions()}
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        old = model_dir / f".{ONNX_DIR}.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(partial, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final


def read_manifest(folder: Path, digest: str) -> dict | None:
    """The manifest of an export in ``folder`` if it was built from weights ``digest``; None if there is
    no export. Raises ExportError for an export of other weights."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ExportError(f"{path}: not valid JSON ({e}): export again") from None
    if manifest.get("weights_sha256") != digest:
        raise ExportError(f"{path}: built from other weights than {folder.parent / 'model.safetensors'} "
                          "(sha256 differs): export again")
    return manifest


def cache_dir(digest: str, quantization: str = DEFAULT_QUANTIZATION) -> Path:
    """The cache entry of the int8 encoder graph for weights ``digest``, built with ``quantization`` by this
    GRAPH_RECIPE: $NEWSTAGGER_CACHE, else ~/.cache/newstagger."""
    root = os.environ.get("NEWSTAGGER_CACHE") or Path.home() / ".cache" / "newstagger"
    return Path(root) / f"{digest[:32]}-{quantization}-r{GRAPH_RECIPE}"


def _cached(cache: Path, digest: str, quantization: str) -> dict | None:
    """The manifest of a usable graph in ``cache``, else None (absent, half-written or another recipe)."""
    try:
        manifest = read_manifest(cache, digest)
    except ExportError:
        return None
    if (manifest is None or manifest.get("quantization") != quantization
            or manifest.get("graph_recipe") != GRAPH_RECIPE or not (cache / manifest.get("encoder", "")).is_file()):
        return None
    return manifest


def _int8_backend_runs(manifest: dict | None) -> bool:
    """Whether the int8 backend runs a folder's export (an fp32 one it leaves to the onnx backend)."""
    return manifest is not None and manifest.get("quantization") != "fp32"


def graph_identity(model_dir: str | Path, backend: str) -> dict | None:
    """What, beside the weights, decides the results of ``backend`` on a model folder: the quantization and
    GRAPH_RECIPE of the encoder graph it would run (None for torch). Read without loading anything, for the
    run record that keeps one output from mixing two exports (newstagger.batch.run_signature)."""
    if backend == "torch":
        return None
    try:
        manifest = json.loads((Path(model_dir) / ONNX_DIR / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = None  # none, or unreadable: loading the backend says which
    if manifest is not None and (backend == "onnx" or _int8_backend_runs(manifest)):
        return {"quantization": manifest.get("quantization"), "graph_recipe": manifest.get("graph_recipe")}
    return {"quantization": DEFAULT_QUANTIZATION, "graph_recipe": GRAPH_RECIPE} if backend == "int8" else None


def encoder_graph(model_dir: Path, digest: str, model) -> tuple[Path, dict]:
    """(encoder graph, manifest) for the int8 backend: the folder's export when it matches the weights,
    else a graph in the cache keyed by the weights' SHA-256, the quantization and GRAPH_RECIPE (built on
    first use; the model folder itself is never written). A stale export in the folder is an error, not
    silently used; a cache entry that does not match is rebuilt."""
    try:
        manifest = read_manifest(model_dir / ONNX_DIR, digest)
    except ExportError as e:
        raise ExportError(f"{e} with `newstagger export --onnx --model {model_dir}`, or delete "
                          f"{model_dir / ONNX_DIR}") from None
    if _int8_backend_runs(manifest):
        return model_dir / ONNX_DIR / manifest["encoder"], manifest
    return cached_encoder_graph(model, digest)


def cached_encoder_graph(model, key: str) -> tuple[Path, dict]:
    """(encoder graph, manifest) of ``model``'s encoder with DEFAULT_QUANTIZATION, in the cache entry for
    ``key`` (cache_dir: the weights' SHA-256 for a model folder, the encoder's fingerprint for the vector
    cache of training's fast mode), built on first use."""
    cache = cache_dir(key)
    manifest = _cached(cache, key, DEFAULT_QUANTIZATION)
    if manifest is None:
        cache.mkdir(parents=True, exist_ok=True)
        export_encoder(model, cache / ENCODER, DEFAULT_QUANTIZATION)
        manifest = {"weights_sha256": key, "encoder": ENCODER, "quantization": DEFAULT_QUANTIZATION,
                    "encoder_micro_batch": MICRO_BATCH_OF[DEFAULT_QUANTIZATION], **_versions()}
        partial = cache / f".{MANIFEST}.{os.getpid()}.partial"
        partial.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, cache / MANIFEST)
    return cache / manifest["encoder"], manifest
