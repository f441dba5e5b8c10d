"""Checking a saved model folder before anything in it is used, without torch.

A model folder is data from somewhere else: it must not run code, load pickles or load into a model that
tags garbage. ``read_model_folder`` checks what every backend relies on and raises ModelFolderError naming
the file and the key of the first problem:

  * ``model.safetensors`` present (weights are never read from ``pytorch_model.bin``: a pickle);
  * ``config.json``: ``model_type`` newstagger, no ``auto_map`` (newstagger never runs a folder's code),
    labels a non-empty list of distinct names (``id2label``/``label2id``, when present, the same labels
    in the same order), a threshold in [0, 1] for every label (``topic_thresholds``) and for boilerplate
    (``boilerplate_threshold``: a trained folder always has them, so a missing one is an error, never a
    silent 0.5), ``boilerplate_transition_penalty`` (newstagger.decoding; optional, 0 in folders saved
    before it existed) a finite number >= 0, and with a penalty over 0 a threshold strictly inside (0, 1),
    ``max_paragraph_tokens`` within [8, the encoder's max_position_embeddings];
  * ``model.safetensors`` whole (its header read with safetensors' safe_open, no torch) and shaped as
    ``config.json``'s ``encoder`` says: the word embeddings [vocab_size, hidden_size] and
    num_hidden_layers layers (a mismatch would otherwise load with freshly initialised layers);
  * ``tokenizer.json`` present, no ``auto_map`` in ``tokenizer_config.json``, and its vocabulary the
    encoder's (no larger than the embedding table, and not a stub a fraction of its size).

Nothing here reads standard input or the network.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path

from .decoding import is_penalty, pairing_problem

WEIGHTS = "model.safetensors"
MIN_PARAGRAPH_TOKENS = 8


class ModelFolderError(ValueError):
    """A model folder that cannot be used; the message is ``path: key: problem``."""


@dataclass
class FolderConfig:
    """What the Predictor reads from config.json (the same attribute names as NewsTaggerConfig)."""
    labels: list[str]
    topic_thresholds: dict[str, float]
    boilerplate_threshold: float
    max_paragraph_tokens: int
    problem_type: str | None
    values: dict  # the whole config.json
    tokenizer: object = None  # the checked ParagraphTokenizer (None when not checked)
    boilerplate_transition_penalty: float = 0.0


def is_unit_number(value) -> bool:
    """Whether ``value`` is a threshold: a real number in [0, 1] (not a bool, not NaN). The one rule for
    config.json and the Predictor's setters."""
    return (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            and 0.0 <= value <= 1.0)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ModelFolderError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ModelFolderError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value


def read_model_folder(folder: str | Path, check_tokenizer: bool = True) -> FolderConfig:
    """Validate a model folder (see the module docstring) and return its config. Raises ModelFolderError."""
    folder = Path(folder)
    if folder.is_file():
        raise ModelFolderError(f"{folder}: a file, not a model folder: give the folder that holds it ({folder.parent})")
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: no such model folder")
    if not (folder / WEIGHTS).is_file():
        bin_note = " (pytorch_model.bin is a pickle and is never loaded)" if (folder / "pytorch_model.bin").exists() else ""
        raise ModelFolderError(f"{folder / WEIGHTS}: missing: newstagger loads weights from safetensors only{bin_note}")
    path = folder / "config.json"
    config = _read_json(path)
    if config.get("model_type") != "newstagger":
        raise ModelFolderError(f"{path}: model_type: {config.get('model_type')!r}, expected 'newstagger'")
    if "auto_map" in config:
        raise ModelFolderError(f"{path}: auto_map: custom code is not supported (newstagger never runs code "
                               "from a model folder)")
    labels = config.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x.strip() for x in labels):
        raise ModelFolderError(f"{path}: labels: expected a non-empty list of label names, got {labels!r}")
    duplicates = sorted({x for x in labels if labels.count(x) > 1})
    if duplicates:
        raise ModelFolderError(f"{path}: labels: duplicate label {duplicates[0]!r}")
    _check_label_maps(path, config, labels)
    if "topic_thresholds" not in config:
        raise ModelFolderError(f"{path}: topic_thresholds: missing (a trained model folder has a threshold "
                               "for each label)")
    thresholds = config["topic_thresholds"]
    if not isinstance(thresholds, dict):
        raise ModelFolderError(f"{path}: topic_thresholds: expected an object of label: threshold")
    for label, value in thresholds.items():
        if label not in labels:
            raise ModelFolderError(f"{path}: topic_thresholds.{label}: not one of the labels {labels}")
        if not is_unit_number(value):
            raise ModelFolderError(f"{path}: topic_thresholds.{label}: {value!r} is not a number in [0, 1]")
    missing = [label for label in labels if label not in thresholds]
    if missing:
        raise ModelFolderError(f"{path}: topic_thresholds.{missing[0]}: missing (a trained model folder has a "
                               "threshold for each label)")
    if "boilerplate_threshold" not in config:
        raise ModelFolderError(f"{path}: boilerplate_threshold: missing (a trained model folder has one)")
    bp = config["boilerplate_threshold"]
    if not is_unit_number(bp):
        raise ModelFolderError(f"{path}: boilerplate_threshold: {bp!r} is not a number in [0, 1]")
    penalty = config.get("boilerplate_transition_penalty", 0.0)
    if not is_penalty(penalty):
        raise ModelFolderError(f"{path}: boilerplate_transition_penalty: {penalty!r} is not a finite number >= 0")
    problem = pairing_problem(bp, penalty)
    if problem:
        raise ModelFolderError(f"{path}: boilerplate_threshold: {problem}")
    encoder = config.get("encoder")
    if not isinstance(encoder, dict):
        raise ModelFolderError(f"{path}: encoder: expected the encoder's config (an object)")
    if "auto_map" in encoder:
        raise ModelFolderError(f"{path}: encoder.auto_map: custom code is not supported")
    positions = encoder.get("max_position_embeddings", 512)
    tokens = config.get("max_paragraph_tokens", 256)
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not MIN_PARAGRAPH_TOKENS <= tokens <= positions:
        raise ModelFolderError(f"{path}: max_paragraph_tokens: {tokens!r} is not a whole number in "
                               f"[{MIN_PARAGRAPH_TOKENS}, {positions}] (the encoder's max_position_embeddings)")
    check_weights(folder / WEIGHTS, encoder, path)
    return FolderConfig(labels=list(labels), topic_thresholds={x: float(thresholds[x]) for x in labels},
                        boilerplate_threshold=float(bp), max_paragraph_tokens=tokens,
                        boilerplate_transition_penalty=float(penalty),
                        problem_type=config.get("problem_type"), values=config,
                        tokenizer=_check_tokenizer(folder, encoder) if check_tokenizer else None)


def _check_label_maps(path: Path, config: dict, labels: list[str]) -> None:
    """id2label / label2id (written by transformers beside ``labels``) must say the same thing: a folder
    whose maps were edited apart from its labels would name topics differently in different tools."""
    want_id2label = {str(i): label for i, label in enumerate(labels)}
    want_label2id = {label: i for i, label in enumerate(labels)}
    for key, want in (("id2label", want_id2label), ("label2id", want_label2id)):
        if key not in config:
            continue
        got = config[key]
        if not isinstance(got, dict) or {str(k): v for k, v in got.items()} != want:
            raise ModelFolderError(f"{path}: {key}: {got!r} does not match labels {labels} (expected {want})")


_LAYER = re.compile(r"\.layers?\.(\d+)\.")


def check_weights(weights: Path, encoder: dict | None = None, config_path: Path | None = None) -> None:
    """Raise ModelFolderError unless ``weights`` is a whole safetensors file and, when ``encoder`` (the
    encoder's config, from config.json at ``config_path``) is given, its encoder tensors (``encoder.*``)
    have that config's shapes: the word embeddings [vocab_size, hidden_size] and num_hidden_layers layers
    (checked for encoders whose layers are named ``layer.N``/``layers.N``). Reads only the header."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(weights), framework="numpy") as f:
            shapes = {name: f.get_slice(name).get_shape() for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelFolderError(f"{weights}: cannot be read: truncated or not a safetensors file ({e})") from None
    if encoder is None:
        return
    where = config_path or weights.with_name("config.json")
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "intermediate_size"):
        value = encoder.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ModelFolderError(f"{where}: encoder.{key}: expected a whole number, got {value!r}")
    names = [n for n in shapes if n.startswith("encoder.")]
    if not names:
        raise ModelFolderError(f"{weights}: holds no encoder weights (encoder.*): not a newstagger model")
    embeddings = next((n for n in names if n.endswith("word_embeddings.weight")), None)
    vocab, hidden = encoder.get("vocab_size"), encoder.get("hidden_size")
    if embeddings is not None and isinstance(vocab, int) and isinstance(hidden, int) \
            and list(shapes[embeddings]) != [vocab, hidden]:
        raise ModelFolderError(
            f"{where}: encoder: vocab_size {vocab} and hidden_size {hidden}, but {weights.name} holds "
            f"{embeddings} of shape {list(shapes[embeddings])}: the config does not describe these weights")
    intermediate = encoder.get("intermediate_size")
    wrong = next((n for n in names if n.endswith("intermediate.dense.weight") and isinstance(intermediate, int)
                  and isinstance(hidden, int) and list(shapes[n]) != [intermediate, hidden]), None)
    if wrong is not None:  # BERT-style names (the base model's); the torch load checks every tensor of any kind
        raise ModelFolderError(
            f"{where}: encoder: intermediate_size {intermediate}, but {weights.name} holds {wrong} of shape "
            f"{list(shapes[wrong])}: the config does not describe these weights")
    layers = {int(m.group(1)) for m in map(_LAYER.search, names) if m}
    count = encoder.get("num_hidden_layers")
    if layers and isinstance(count, int) and layers != set(range(count)):
        raise ModelFolderError(
            f"{where}: encoder.num_hidden_layers: {count}, but {weights.name} holds {len(layers)} encoder "
            "layers: the config does not describe these weights")


def _check_tokenizer(folder: Path, encoder: dict):
    from .packing import ParagraphTokenizer

    path = folder / "tokenizer.json"
    if not path.is_file():
        raise ModelFolderError(f"{path}: missing: the model's tokenizer is required (newstagger never builds "
                               "one from other files)")
    tokenizer_config = folder / "tokenizer_config.json"
    if tokenizer_config.exists() and "auto_map" in _read_json(tokenizer_config):
        raise ModelFolderError(f"{tokenizer_config}: auto_map: custom code is not supported")
    try:
        tokenizer = ParagraphTokenizer.from_folder(folder)
    except Exception as e:  # a damaged tokenizer.json: the tokenizers library says why
        raise ModelFolderError(f"{path}: cannot be read ({e})") from None
    vocab = encoder.get("vocab_size")
    size = tokenizer.vocab_size
    if isinstance(vocab, int) and not vocab // 2 < size <= vocab:
        raise ModelFolderError(f"{path}: vocabulary: {size} tokens, but the encoder's embedding table has "
                               f"{vocab} (config.json encoder.vocab_size): not this encoder's tokenizer")
    return tokenizer


def check_checkpoint(checkpoint: str | Path) -> None:
    """Raise ModelFolderError naming the file when a Trainer checkpoint folder cannot be resumed from: its
    config.json and model.safetensors as a model folder's (whole, and shaped as the config says), a
    readable trainer_state.json, and optimizer/scheduler/RNG states that are whole torch archives (a kill
    during a save leaves them truncated)."""
    import zipfile

    checkpoint = Path(checkpoint)
    if not checkpoint.is_dir():
        raise ModelFolderError(f"{checkpoint}: no such checkpoint folder")
    if not (checkpoint / WEIGHTS).is_file():
        raise ModelFolderError(f"{checkpoint / WEIGHTS}: missing: the checkpoint is incomplete")
    config = _read_json(checkpoint / "config.json")
    check_weights(checkpoint / WEIGHTS, config.get("encoder") if isinstance(config.get("encoder"), dict) else None,
                  checkpoint / "config.json")
    state = _read_json(checkpoint / "trainer_state.json")
    if not isinstance(state.get("global_step"), int):
        raise ModelFolderError(f"{checkpoint / 'trainer_state.json'}: global_step: missing")
    for path in sorted(checkpoint.glob("*.pt")) + sorted(checkpoint.glob("*.pth")):
        if not zipfile.is_zipfile(path):
            raise ModelFolderError(f"{path}: truncated or damaged (not a whole torch archive)")


def weights_digest(folder: str | Path) -> str:
    """SHA-256 of model.safetensors: the key of every ONNX graph and cache built from these weights."""
    with open(Path(folder) / WEIGHTS, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
