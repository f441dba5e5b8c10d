"""Checking a saved model folder before anything in it is used, without torch.

A model folder is data from somewhere else: it must not run code, load pickles or load into a model that
tags garbage. ``read_model_folder`` checks what every backend relies on and raises ModelFolderError naming
the file and the key of the first problem:

  * ``model.safetensors`` present (weights are never read from ``pytorch_model.bin``: a pickle);
  * ``config.json``: ``model_type`` newstagger, no ``auto_map`` (newstagger never runs a folder's code),
    labels a non-empty list of distinct names, thresholds numbers in [0, 1], ``max_paragraph_tokens``
    within [8, the encoder's max_position_embeddings];
  * ``tokenizer.json`` present, no ``auto_map`` in ``tokenizer_config.json``, and its vocabulary the
    encoder's (no larger than the embedding table, and not a stub a fraction of its size).

Nothing here reads standard input or the network.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

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


def _number_in_unit(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
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
    thresholds = config.get("topic_thresholds") or {}
    if not isinstance(thresholds, dict):
        raise ModelFolderError(f"{path}: topic_thresholds: expected an object of label: threshold")
    for label, value in thresholds.items():
        if label not in labels:
            raise ModelFolderError(f"{path}: topic_thresholds.{label}: not one of the labels {labels}")
        if not _number_in_unit(value):
            raise ModelFolderError(f"{path}: topic_thresholds.{label}: {value!r} is not a number in [0, 1]")
    bp = config.get("boilerplate_threshold", 0.5)
    if not _number_in_unit(bp):
        raise ModelFolderError(f"{path}: boilerplate_threshold: {bp!r} is not a number in [0, 1]")
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
    return FolderConfig(labels=list(labels), topic_thresholds={x: float(thresholds.get(x, 0.5)) for x in labels},
                        boilerplate_threshold=float(bp), max_paragraph_tokens=tokens,
                        problem_type=config.get("problem_type"), values=config,
                        tokenizer=_check_tokenizer(folder, encoder) if check_tokenizer else None)


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


def weights_digest(folder: str | Path) -> str:
    """SHA-256 of model.safetensors: the key of every ONNX graph and cache built from these weights."""
    with open(Path(folder) / WEIGHTS, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
