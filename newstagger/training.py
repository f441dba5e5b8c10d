"""The training run: data -> Trainer -> thresholds tuned on validation -> test report -> model folder.

Built on transformers Trainer, which brings the loop, checkpoints, resume, early stopping, logging,
progress bars and distributed data parallel (torchrun / accelerate launch) for free.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit  # the sigmoid without overflow (an article with no content has logits -1e4)
from transformers import (AutoConfig, AutoTokenizer, EarlyStoppingCallback, PrinterCallback, Trainer,
                          TrainerCallback, TrainingArguments, set_seed)

from .config import NOT_THE_MODEL, ConfigError, TrainingConfig, resolve_base_model
from .data import (Article, BoilerplateAugmenter, DataError, crop_to_brief, echo_title, load_articles, load_bank,
                   mix_articles, oversample_rare_structures, run_in_credit)
from .metrics import evaluate_articles, evaluation_report, format_report, single_label_report, tune_thresholds
from .model import NewsTaggerModel, pack_articles, pack_vectors, set_attention_dropout
from .model_card import encoder_origin, write_model_card
from .model_folder import read_model_folder
from .inputs import Columns, is_uri
from .predictor import Predictor
from .vectors import VectorCache

logger = logging.getLogger("newstagger")
FINGERPRINT_FILE = "training_config.json"


class ArticleDataset(torch.utils.data.Dataset):
    """Training or evaluation articles; for training, optionally cut to a brief or mixed with another
    article's reporting, re-dressed with bank boilerplate, with its title echoed as a boilerplate paragraph,
    and with a photo credit run into a short reporting paragraph (see data.crop_to_brief, data.mix_articles,
    data.BoilerplateAugmenter, data.echo_title and data.run_in_credit)."""

    def __init__(self, articles: list[Article], augment=None, mix_probability: float = 0.0, seed: int = 0,
                 seen_ids_file: str | None = None, title_echo_probability: float = 0.0,
                 mix_partners: list[Article] | None = None, caption_credit_probability: float = 0.0,
                 brief_probability: float = 0.0):
        self.articles = articles
        # whose reporting is mixed in: the training articles themselves, not the flags-only copies of
        # oversample_rare_structures (a copy has no topics, so a mix with it would have none either)
        self.mix_partners = mix_partners or articles
        self.augment = augment
        self.mix_probability = mix_probability
        self.title_echo_probability = title_echo_probability
        self.caption_credit_probability = caption_credit_probability
        self.brief_probability = brief_probability
        self.rng = random.Random(seed)
        self.seen_ids_file = seen_ids_file  # when set, every id read is appended (to check DDP sharding)

    def __len__(self):
        return len(self.articles)

    def __getitem__(self, i):
        article = self.articles[i]
        if self.seen_ids_file:
            with open(self.seen_ids_file, "a", encoding="utf-8") as f:
                f.write(article.id + "\n")
        if self.brief_probability and self.rng.random() < self.brief_probability:
            article = crop_to_brief(article, self.rng)  # a brief is not mixed: it stays short
        elif self.mix_probability and self.rng.random() < self.mix_probability:
            article = mix_articles(article, self.rng.choice(self.mix_partners), self.rng)
        article = self.augment(article) if self.augment else article
        if self.title_echo_probability and self.rng.random() < self.title_echo_probability:
            article = echo_title(article, self.rng)
        if self.caption_credit_probability and self.augment and self.rng.random() < self.caption_credit_probability:
            article = run_in_credit(article, self.augment.credits, self.rng)
        return article


@dataclasses.dataclass
class ArticleCollator:
    """Packs variable-length articles into one batch: tokens (model.pack_articles), or, with a frozen
    encoder, their cached paragraph vectors (model.pack_vectors)."""
    tokenizer: object
    labels: list[str]
    max_paragraph_tokens: int
    vectors: object = None  # a vectors.VectorCache in the frozen mode

    def __call__(self, articles):
        if self.vectors is not None:
            return pack_vectors(self.vectors, articles, self.labels)
        return pack_articles(self.tokenizer, articles, self.labels, self.max_paragraph_tokens)


def make_compute_metrics(labels, single_label: bool = False):
    def compute_metrics(eval_pred):
        bp_logits, topic_logits = eval_pred.predictions
        bp_labels, topic_labels, topic_mask = eval_pred.label_ids
        known = bp_labels >= 0
        rows = topic_mask.astype(bool)
        # Each paragraph at 0.5 on its own: the decoding penalty is tuned after training (tune_thresholds)
        report = evaluation_report(topic_labels[rows], expit(topic_logits[rows]), bp_labels[known],
                                   bp_logits[known] >= 0, labels, 0.5)
        if single_label and rows.any():  # the likeliest label, as the single-label Predictor decides
            report["topics"] = single_label_report(topic_labels[rows], topic_logits[rows], labels)
        # One number for early stopping and best-model selection: the tasks the validation split labels,
        # counted equally (a split without flags, or without topics, is scored on the other task alone).
        # A task it does not label is left out of the logged metrics too (None there, never a 0 F1).
        scored = {name: f1 for name, f1 in (("topic_macro_f1", report["topics"]["macro_f1"]),
                                            ("boilerplate_f1", report["boilerplate"]["f1"])) if f1 is not None}
        return {**scored, "score": float(np.mean(list(scored.values()) or [0.0]))}
    return compute_metrics


class NewsTaggerTrainer(Trainer):
    """Trainer with two learning rates: a gentle one for the pretrained encoder, a larger one for the
    freshly initialised context layer and heads."""

    def __init__(self, *args, head_learning_rate: float = 1e-3, **kwargs):
        self.head_learning_rate = head_learning_rate
        super().__init__(*args, **kwargs)

    def create_optimizer(self, model=None):
        if self.optimizer is None:
            model = model or self.model
            encoder, heads = [], []
            for name, p in model.named_parameters():
                if p.requires_grad:
                    (encoder if name.startswith("encoder.") else heads).append(p)
            decay = self.args.weight_decay
            self.optimizer = torch.optim.AdamW([
                {"params": encoder, "lr": self.args.learning_rate, "weight_decay": decay},
                {"params": heads, "lr": self.head_learning_rate, "weight_decay": decay},
            ])
        return self.optimizer


class LogLines(TrainerCallback):
    """Trainer's logs as plain log lines, for a log that is not a terminal (there Trainer's tqdm bar would
    write carriage returns and control codes, and its PrinterCallback raw dicts): one line per logging step
    (loss), per evaluation (the validation metrics) and at the end of training."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        logs = {key: value for key, value in logs.items() if key not in ("total_flos", "epoch")}
        what = "evaluation" if any(key.startswith("eval_") for key in logs) else \
            "training done" if "train_runtime" in logs else "training"
        values = ", ".join(f"{key.removeprefix('eval_')} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                           for key, value in logs.items())
        logger.warning("%s (step %d/%d, epoch %.2f): %s", what, state.global_step, state.max_steps,
                       state.epoch or 0, values)


def infer_labels(articles: list[Article], source: str = "train_file") -> list[str]:
    """The labels of a training set, most frequent first; prints their counts. Raises DataError for two
    labels that differ only in case or spaces ("Climate", "climate "): almost surely one label spelt two ways,
    which would train as two (labels=[...] given explicitly takes them as written)."""
    from collections import Counter

    counts = Counter(t for a in articles for t in (a.topics or []))
    if not counts:
        return []
    spellings = {}
    for label in counts:
        spellings.setdefault(" ".join(label.split()).casefold(), []).append(label)
    clashes = [names for names in spellings.values() if len(names) > 1]
    if clashes:
        raise DataError([f"{source}: topics: labels {' and '.join(map(repr, names))} differ only in case or spaces "
                         f"({', '.join(f'{counts[n]} article' + 's' * (counts[n] != 1) for n in names)}): spell "
                         "them one way, or name both in labels=[...] if they are two labels" for names in clashes])
    print(f"labels inferred from the training data ({len(counts)}):")
    for label, n in counts.most_common():
        print(f"  {label:<30}{n:>7}")
    return [label for label, _ in counts.most_common()]


def resolve_problem_type(problem_type: str, articles: list[Article], labels: Sequence[str]) -> str:
    """multi_label_classification or single_label_classification ("auto": single-label when every
    labelled article has exactly one topic and there are at least two labels to choose from; with one label
    the model is a yes/no tagger, which is multi-label). Raises DataError for single-label with fewer than
    two labels, or a problem type that is neither."""
    choices = ("multi_label_classification", "single_label_classification")
    if problem_type == "auto":
        labelled = [a for a in articles if a.topics is not None]
        other = [a for a in labelled if len(a.topics) != 1]
        problem_type = choices[1] if labelled and not other and len(labels) > 1 else choices[0]
        # Say why: one empty label cell in a single-label CSV is enough to make the whole model multi-label.
        why = (f"every one of the {len(labelled)} labelled articles has exactly one topic" if problem_type == choices[1]
               else "no article has topics" if not labelled else
               f"one label only ({', '.join(labels)}): a yes/no tagger" if not other else
               f"{len(other)} of {len(labelled)} labelled articles have no topic or several, e.g. "
               + ", ".join(f"{a.id} ({len(a.topics)})" for a in other[:3]))
        logger.warning("problem_type auto: %s (%s)", problem_type, why)
    if problem_type not in choices:
        raise DataError([f"problem_type: {problem_type!r} is not one of {', '.join(choices)} or 'auto'"])
    if problem_type == choices[1] and len(labels) < 2:
        raise DataError([f"problem_type: single_label_classification picks one of several labels, and there "
                         f"{'is only one' if labels else 'are none'} ({', '.join(labels) or 'no topics'}): "
                         "use multi_label_classification (a yes/no tagger for one label)"])
    return problem_type


def carve_validation(articles: list[Article], share: float, seed: int) -> tuple[list[Article], list[Article], str]:
    """(train, validation, how): a seeded split stratified by label combination, or plain seeded when a
    combination is too rare to stratify; ``how`` says which, for the log. Raises DataError for fewer than 2
    articles, which cannot be split."""
    from sklearn.model_selection import train_test_split

    if len(articles) < 2:
        raise DataError([f"validation_file: none given, and {len(articles)} training article cannot be split into "
                         "train and validation: give a validation_file or more articles"])
    keys = ["|".join(sorted(a.topics)) if a.topics is not None else "?" for a in articles]
    try:
        train, validation = train_test_split(articles, test_size=share, random_state=seed, stratify=keys)
        how = "stratified by label combination"
    except ValueError:  # a combination with a single article
        train, validation = train_test_split(articles, test_size=share, random_state=seed)
        how = "not stratified: a label combination has too few articles"
    return list(train), list(validation), how


def check_output_dir(output_dir: Path) -> None:
    """Refuse an output_dir that exists and is not a newstagger model folder: saving replaces the folder
    whole, and a user's folder (or file) must never be replaced."""
    if not output_dir.exists():
        return
    config = output_dir / "config.json"
    ours = output_dir.is_dir() and config.is_file() and '"newstagger"' in config.read_text(errors="replace")
    if not ours and (output_dir.is_file() or any(output_dir.iterdir())):
        raise ConfigError(f"output_dir {output_dir}: exists and is not a newstagger model folder; "
                          "choose another output_dir (training replaces the folder whole)")
    if ours:  # as Trainer-based tools do, a new run replaces its model; say so before hours of training
        export = " (with its onnx/ export)" if (output_dir / "onnx").is_dir() else ""
        logger.warning("output_dir %s holds a model: it will be replaced%s when this run saves; the old one "
                       "stays until then", output_dir, export)


def check_trainable(config: TrainingConfig, train: list[Article], validation: list[Article]) -> None:
    """Refuse, before any epoch, a corpus that cannot train what the config asks."""
    from .data import DataError

    problems = []
    if config.max_steps <= 0 and config.epochs <= 0:
        problems.append(f"epochs: {config.epochs} trains nothing (give epochs > 0 or max_steps > 0)")
    for name, split in (("train", train), ("validation", validation)):
        if not split:
            problems.append(f"{getattr(config, name + '_file')}: {name} split is empty")
    if train:
        if all(a.topics is None for a in train) and all(a.boilerplate is None for a in train):
            problems.append(f"{config.train_file}: no record has topics or boilerplate flags")
        teaches_flags = config.init_from or (config.augment and config.boilerplate_bank)
        if all(a.boilerplate is None for a in train) and not teaches_flags:
            # Found by a user trial: the boilerplate head stayed random, flagged paragraphs at random and so
            # kept them out of the topics, while the run finished as if all were well.
            problems.append(f"{config.train_file}: no paragraph flags, and nothing else to learn boilerplate from "
                            "(no init_from, no boilerplate_bank): the boilerplate head would stay random and hide "
                            "random paragraphs from the topics. Give init_from=runs/default (keeps a trained "
                            "model's boilerplate judgement), boilerplate_bank=PATH (augmentation with an outlet "
                            "furniture bank teaches it), or boilerplate flags in the data")
        if any(a.topics is not None for a in train):
            for label in config.labels:
                if not any(label in (a.topics or []) for a in train):
                    problems.append(f"{config.train_file}: topics: label {label!r} has no positive example "
                                    "(drop it from labels, or add articles about it)")
    if problems:
        raise DataError(problems)


def check_paths(config: TrainingConfig) -> None:
    """Refuse, before any data is read, a config naming a data file, model folder or bank that is not there, or
    (fast mode) a vector cache folder that cannot be made or written. Relative paths are read from the current
    folder (not the config file's): the message says which."""
    if config.init_from:
        read_model_folder(config.init_from)  # ModelFolderError (exit 2) for a folder that is not a trained model
    if config.augment and config.boilerplate_bank and not Path(config.boilerplate_bank).is_file():
        raise ConfigError(
            f"boilerplate_bank {config.boilerplate_bank}: no such file (augmentation re-dresses training articles "
            "with these outlets' furniture; the default names data/source/boilerplate_bank.jsonl of a newstagger "
            "checkout, relative to the current folder: give its path, or boilerplate_bank=null to train without "
            "augmentation)")
    for key in ("train_file", "validation_file", "test_file"):
        path = getattr(config, key)
        if path and not is_uri(path) and not Path(path).exists():
            where = "" if Path(path).is_absolute() else \
                f" (relative paths are read from the current folder, {os.getcwd()})"
            raise ConfigError(f"{key}: {path}: no such file{where}")
    if config.encoder_mode == "frozen" and config.vector_cache_dir:  # checked before minutes of encoding
        cache = Path(config.vector_cache_dir)
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"vector_cache_dir: {cache}: cannot be made a folder ({e.strerror or e}): give a "
                              "writable folder, or vector_cache_dir=null to keep the vectors in memory only") from None
        if not os.access(cache, os.W_OK | os.X_OK):
            raise ConfigError(f"vector_cache_dir: {cache}: not writable: give a writable folder, or "
                              "vector_cache_dir=null to keep the vectors in memory only")


def is_trained(config: TrainingConfig, record: dict | None = None) -> bool:
    """True when output_dir holds a complete model trained from this very config and data (``record``: the
    run_record of ``config``, when already made)."""
    marker = Path(config.output_dir) / FINGERPRINT_FILE
    if not marker.exists() or not (Path(config.output_dir) / "model.safetensors").exists():
        return False
    saved = json.loads(marker.read_text()).get("fingerprint")
    return saved == (record or run_record(config))["fingerprint"]


def run_record(config: TrainingConfig) -> dict:
    """What a run is made from: {"fingerprint": of the config and the bytes of its data files, "config": the
    config as given (labels [] when inferred)}. Written as FINGERPRINT_FILE into the checkpoints folder when a
    run starts (--resume compares it) and into the saved model (--skip-if-trained compares it)."""
    digests = {path: hashlib.sha256(Path(path).read_bytes()).hexdigest()
               for path in data_files(config) if path and Path(path).is_file()}  # each file read once
    return json.loads(json.dumps({"fingerprint": config.fingerprint(digests.values()), "config": config.as_record(),
                                  "data": {path: digest[:16] for path, digest in digests.items()}}))  # as read back


def checkpoints_dir(config: TrainingConfig) -> Path:
    """Where a run keeps its Trainer checkpoints: <output_dir>-checkpoints beside the model folder."""
    output_dir = Path(config.output_dir)
    return output_dir.with_name(output_dir.name + "-checkpoints")


def resume_checkpoint(config: TrainingConfig, resume: bool | str) -> Path | None:
    """The checkpoint folder ``resume`` names: a path, True for the last one in checkpoints_dir, or None when
    not resuming. Raises ConfigError when there is none to resume from."""
    if not resume:
        return None
    if resume is not True:
        if not Path(resume).is_dir():
            raise ConfigError(f"--resume {resume}: no such checkpoint folder")
        return Path(resume)
    from transformers.trainer_utils import get_last_checkpoint

    folder = checkpoints_dir(config)
    checkpoint = get_last_checkpoint(str(folder)) if folder.is_dir() else None
    if checkpoint is None:
        raise ConfigError(f"--resume: no checkpoint in {folder}; train without --resume to start")
    return Path(checkpoint)


def check_resume(checkpoint: Path, record: dict) -> None:
    """Refuse to resume from a checkpoint whose run had another config or data (its folder's run record):
    Trainer would carry on (or stop at once) with the other run's weights, saved under this run's config."""
    saved_file = checkpoint.parent / FINGERPRINT_FILE
    if not saved_file.is_file():
        logger.warning("--resume: %s has no record of the config and data it was made with (%s): resuming on "
                       "the word of the command line", checkpoint, saved_file)
        return
    saved = json.loads(saved_file.read_text())
    if saved.get("fingerprint") == record["fingerprint"]:
        return
    then, now = saved.get("config") or {}, record["config"]
    differing = [key for key in now if then.get(key) != now[key] and key not in NOT_THE_MODEL][:3]

    def shown(values):
        return ", ".join(f"{key}={_as_yaml(values.get(key))}" for key in differing)

    changed = [path for path, digest in record.get("data", {}).items() if (saved.get("data") or {}).get(path) != digest]
    what = (f"was made with {shown(then)} (this run: {shown(now)})" if differing else
            f"was made from other data ({', '.join(changed)} changed since)" if changed else
            "was made from other data (train_file, validation_file, test_file, boilerplate_bank or init_from's "
            "weights changed since)")
    raise ConfigError(f"--resume: {checkpoint} {what}: run without --resume")


def _as_yaml(value) -> str:
    """A config value as a user writes it (epochs=2, test_file=null)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value) if value is None or isinstance(value, (bool, list, dict)) else str(value)


def start_checkpoints(folder: Path, record: dict) -> None:
    """A new run (not resuming) starts from an empty checkpoints folder holding its run record: an earlier
    run's checkpoints would otherwise be what a later --resume picks up (the highest step wins)."""
    if folder.exists():
        old = sorted(p.name for p in folder.glob("checkpoint-*"))
        shutil.rmtree(folder)
        if old:
            logger.warning("%s: removed %d checkpoint(s) of an earlier run (%s): a new run starts from none",
                           folder, len(old), ", ".join(old))
    folder.mkdir(parents=True)
    (folder / FINGERPRINT_FILE).write_text(json.dumps(record, indent=2))


def data_files(config: TrainingConfig):
    init = str(Path(config.init_from) / "model.safetensors") if config.init_from else None
    return [config.train_file, config.validation_file, config.test_file, config.boilerplate_bank, init]


def save_folder_atomically(output_dir: Path, write) -> None:
    """Call write(tmp_dir), then swap tmp_dir into place: the folder appears whole or not at all."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.with_name(f".{output_dir.name}.partial-{uuid.uuid4().hex[:8]}")
    # folders of saves interrupted by a crash or kill (never the folder itself)
    for stale in output_dir.parent.glob(f".{output_dir.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in output_dir.parent.glob(f".{output_dir.name}.old-*"):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        write(tmp)
        _readable_as_umask_allows(tmp)
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(output_dir, old)
            os.replace(tmp, output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _readable_as_umask_allows(folder: Path) -> None:
    """Files written through temporary files can be 0600; give them the mode a plain write would have,
    so a service running as another user can read the model."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for path in folder.rglob("*"):
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def build_augmenter(config: TrainingConfig, train: list[Article], seed: int):
    if not config.augment or not config.boilerplate_bank:
        return None
    entries = load_bank(config.boilerplate_bank)
    # Only outlets seen in training: validation and test outlets must stay unseen.
    train_outlets = {a.extra.get("outlet") for a in train} - {None}
    if train_outlets:
        entries = [e for e in entries if e.outlet in train_outlets]
    return BoilerplateAugmenter(entries, config.augment_probability, seed=seed)


def set_trainable(model: NewsTaggerModel, config: TrainingConfig, has_flags: bool) -> None:
    """Fix the parameters that config.trained_parts says do not train (the rule the model card states).
    ``has_flags``: some training article has paragraph flags."""
    part, fixed_layers, fixed_embeddings = config.trained_parts(has_flags)
    if part == "topic head":
        # No flags to learn from: the boilerplate judgement stays exactly as trained, and topic pooling
        # still ignores what it flags, so this corpus's outlet appeals never leak into its topics.
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name.startswith("topic_"))
    elif part == "context and heads":
        model.encoder.requires_grad_(False)
    if fixed_embeddings:
        model.encoder.embeddings.requires_grad_(False)
    if fixed_layers:
        for layer in model.encoder.encoder.layer[:fixed_layers]:
            layer.requires_grad_(False)


def new_model(config: TrainingConfig, labels: list[str], problem_type: str, base: str | None,
              has_flags: bool) -> NewsTaggerModel:
    """The model a run starts from, its parameters set trainable or fixed (set_trainable): a trained model's
    encoder, context layer and boilerplate head with a fresh topic head (config.init_from), or a new model
    around the base encoder folder ``base``. ConfigError for a base that cannot load."""
    if config.init_from:
        # Keep a trained model's encoder, context layer and boilerplate head; a fresh topic head for these labels.
        wanted = config.model_kwargs()
        settable = NewsTaggerModel.SETTABLE_ON_INIT
        model = NewsTaggerModel.from_trained(config.init_from, labels, problem_type, config.attention_dropout,
                                             **{k: v for k, v in wanted.items() if k in settable})
        kept = {k: getattr(model.config, k) for k in wanted if k not in settable and hasattr(model.config, k)}
        differing = [f"{k}={kept[k]!r} (config: {wanted[k]!r})" for k in kept if kept[k] != wanted[k]]
        origin = encoder_origin(config.base_model, config.init_from)
        if origin != config.base_model:  # the encoder is the trained model's, whatever base_model says
            differing.append(f"the encoder, built on {origin} (config: base_model={config.base_model!r})")
        if differing:  # the kept weights were built for these; the config's values cannot apply
            logger.warning("init_from %s: kept from the trained model: %s", config.init_from, ", ".join(differing))
    else:
        try:
            model = NewsTaggerModel.from_base(base, random_encoder=config.random_encoder,
                                              attention_dropout=config.attention_dropout,
                                              problem_type=problem_type, **config.model_kwargs())
        except (OSError, ValueError) as e:
            raise _unloadable(base, e) from None
    # The encoder's pooler (BERT's [CLS] dense layer) runs but never reaches the loss (paragraphs are
    # mean-pooled), so it never gets a gradient: freeze it, or DDP (find_unused_parameters=False) fails.
    if getattr(model.encoder, "pooler", None) is not None:
        model.encoder.pooler.requires_grad_(False)
    set_trainable(model, config, has_flags)
    return model


def training_dataset(config: TrainingConfig, train_articles: list[Article], rank: int = 0,
                     seen_ids_file: str | None = None) -> ArticleDataset:
    """What one process trains on for an epoch: the training articles (with oversample_rare_structures'
    copies), augmented as the config says, seeded by seed + rank."""
    epoch_articles = oversample_rare_structures(train_articles, config.oversample_rare_structures)
    if len(epoch_articles) > len(train_articles) and rank == 0:
        logger.warning("oversample_rare_structures %d: %d training articles, %d seen an epoch (copies of articles "
                       "of rare structural kinds, for the boilerplate task)", config.oversample_rare_structures,
                       len(train_articles), len(epoch_articles))
    augment = config.augment
    return ArticleDataset(epoch_articles, build_augmenter(config, train_articles, config.seed + rank),
                          mix_probability=config.mix_probability if augment else 0.0,
                          seed=config.seed + rank, seen_ids_file=seen_ids_file,
                          title_echo_probability=config.title_echo_probability if augment else 0.0,
                          mix_partners=train_articles,
                          caption_credit_probability=config.caption_credit_probability if augment else 0.0,
                          brief_probability=config.brief_probability if augment else 0.0)


def train(config: TrainingConfig, resume: bool | str = False, skip_if_trained: bool = False) -> Path:
    """Train a model as ``config`` says and save it to its output_dir (the steps are in _train)."""
    from .runtime import no_transformers_bars

    # Trainer rotates checkpoints by modification time and, when two were saved within a second (a quick
    # run), says "mtime may not be reliable on this filesystem" and orders them by step: the right order
    # here, as a new run starts from an empty checkpoints folder. Nothing for the user to act on.
    trainer_utils = logging.getLogger("transformers.trainer_utils")
    notice = _Without("mtime may not be reliable")
    trainer_utils.addFilter(notice)
    try:
        with no_transformers_bars():  # a training log shows Trainer's bar, not one per load and checkpoint
            return _train(config, resume, skip_if_trained)
    finally:
        trainer_utils.removeFilter(notice)


class _Without(logging.Filter):
    """Drops the log records whose message contains ``words``."""

    def __init__(self, words: str):
        super().__init__()
        self.words = words

    def filter(self, record: logging.LogRecord) -> bool:
        return self.words not in record.getMessage()


def drop_if_no_checkpoint(folder: Path) -> None:
    """Remove a new run's checkpoints folder when no checkpoint was written (it holds only the run record)."""
    if folder.is_dir() and not any(folder.glob("checkpoint-*")):
        (folder / FINGERPRINT_FILE).unlink(missing_ok=True)
        try:
            folder.rmdir()  # only when nothing else is in it
        except OSError:
            pass


def _unloadable(base, error: Exception) -> ConfigError:
    """A base_model folder that is not a Hugging Face model (no config, no tokenizer...)."""
    return ConfigError(f"base_model {base}: cannot load it as a model ({str(error).splitlines()[0]})")


def _train(config: TrainingConfig, resume: bool | str, skip_if_trained: bool) -> Path:
    output_dir = Path(config.output_dir)
    record = run_record(config)  # the config as given and its data, before anything is read or inferred
    if skip_if_trained and is_trained(config, record):
        logger.warning("%s already holds a model trained from this config and data: skipping training", output_dir)
        return output_dir
    checkpoint = resume_checkpoint(config, resume)
    if checkpoint is not None:
        check_resume(checkpoint, record)
    check_output_dir(output_dir)
    check_paths(config)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    set_seed(config.seed)

    if not config.init_from:  # a base model that cannot load is refused before a large corpus is read
        base = resolve_base_model(config.base_model)
        try:
            tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
            base_config = AutoConfig.from_pretrained(base, trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise _unloadable(base, e) from None
        try:  # the rule from_base applies, tried on a copy before any data is read
            set_attention_dropout(base_config.to_dict(), config.attention_dropout)
        except ValueError as e:
            raise ConfigError(f"config key {e}") from None

    labels = list(config.labels) or None  # none configured: inferred from the training data
    columns = Columns.from_config(config)  # a user's own column names (text_column, label_column, id_column)
    single = config.problem_type == "single_label_classification"
    train_articles = load_articles(config.train_file, labels, columns=columns, single_label=single).articles
    if not train_articles:
        raise DataError([f"{config.train_file}: no articles (an empty file, or a header or blank lines only)"])
    if labels is None:
        labels = infer_labels(train_articles, config.train_file)
        config = dataclasses.replace(config, labels=labels)
    problem_type = resolve_problem_type(config.problem_type, train_articles, labels)
    single = problem_type == "single_label_classification"
    if config.validation_file:
        validation = load_articles(config.validation_file, labels, columns=columns, single_label=single).articles
    else:
        train_articles, validation, how = carve_validation(train_articles, config.validation_share, config.seed)
        logger.warning("no validation_file: %d articles of %s carved out as validation (%s, seed %d)",
                       len(validation), config.train_file, how, config.seed)
    test = load_articles(config.test_file, labels, columns=columns, single_label=single).articles \
        if config.test_file else []
    logger.warning("data: %d train, %d validation, %d test articles", len(train_articles), len(validation), len(test))
    check_trainable(config, train_articles, validation)

    model = new_model(config, labels, problem_type, None if config.init_from else base,
                      any(a.boilerplate is not None for a in train_articles))
    if config.init_from:
        tokenizer = AutoTokenizer.from_pretrained(config.init_from, trust_remote_code=False)
    vectors = None
    if config.encoder_mode == "frozen":
        # Fast mode: every text training can see (articles, and the bank entries augmentation adds) is
        # encoded once; the encoder (fixed by trained_parts) then takes no part in training.
        vectors = VectorCache(model, tokenizer, config.max_paragraph_tokens, config.encoder_micro_batch,
                              config.vector_cache_dir, encoder=config.vector_encoder)
        bank = load_bank(config.boilerplate_bank) if config.augment and config.boilerplate_bank else []
        vectors.add([t for a in train_articles + validation for t in (a.title, *a.paragraphs)] +
                    [e.text for e in bank])

    checkpoints = checkpoints_dir(config)
    # Launched by torchrun / accelerate launch (WORLD_SIZE > 1) on a machine without CUDA: tell Trainer to
    # use CPU DDP over gloo. Without use_cpu, accelerate finds no GPU backend and each process would train
    # alone on the whole data set and write the model folder.
    cpu_ddp = _launched_world_size() > 1 and not torch.cuda.is_available()
    bf16 = mixed_precision(config)
    args = TrainingArguments(**{**dict(
        output_dir=str(checkpoints),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size,
        learning_rate=config.learning_rate,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        eval_strategy="epoch" if config.max_steps <= 0 else "steps",
        save_strategy="epoch" if config.max_steps <= 0 else "steps",
        eval_steps=max(1, config.max_steps // 2) if config.max_steps > 0 else None,
        save_steps=max(1, config.max_steps // 2) if config.max_steps > 0 else None,
        save_total_limit=config.save_total_limit,
        load_best_model_at_end=True,
        metric_for_best_model="score",
        greater_is_better=True,
        logging_steps=config.logging_steps,
        seed=config.seed,
        bf16=bf16,
        remove_unused_columns=False,
        label_names=["boilerplate_labels", "topic_labels", "topic_mask"],
        report_to=[],
        dataloader_pin_memory=False,
        save_only_model=False,
        ddp_find_unused_parameters=False,
        use_cpu=cpu_ddp or (bf16 and not torch.cuda.is_available()),  # bf16 autocast on a CPU
        ddp_backend="gloo" if cpu_ddp else None,
        disable_tqdm=not _is_terminal(sys.stderr),  # a bar on a terminal; plain log lines (LogLines) in a log file
    ), **config.trainer})  # any other TrainingArguments option (or a different value), from the config's trainer:
    rank = args.process_index  # set up by TrainingArguments (torchrun, accelerate launch or mpirun)
    if checkpoint is None:
        with args.main_process_first(local=False):  # rank 0 clears and records; the others wait for it
            if rank == 0:
                start_checkpoints(checkpoints, record)
    seen_ids = os.environ.get("NEWSTAGGER_SEEN_IDS_DIR")
    try:
        trainer = NewsTaggerTrainer(
            model=model,
            args=args,
            train_dataset=training_dataset(config, train_articles, rank,
                                           f"{seen_ids}/rank{rank}.txt" if seen_ids else None),
            eval_dataset=ArticleDataset(validation),
            data_collator=ArticleCollator(tokenizer, labels, config.max_paragraph_tokens, vectors),
            compute_metrics=make_compute_metrics(labels, problem_type == "single_label_classification"),
            callbacks=[EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)],
            head_learning_rate=config.head_learning_rate,
        )
        if args.disable_tqdm:  # Trainer then prints each log as a raw dict: plain log lines instead
            trainer.remove_callback(PrinterCallback)
            trainer.add_callback(LogLines())
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except BaseException:  # Ctrl-C, or a failure before the first checkpoint: leave no empty checkpoints folder
        if checkpoint is None and rank == 0:
            drop_if_no_checkpoint(checkpoints)
        raise

    # Thresholds, reports and the model folder are rank 0's work alone (the predictor uses the unwrapped
    # model: no collective). The other ranks wait for it at one final barrier, then all leave together:
    # a rank that tore down its process group while rank 0 (which hosts torchrun's rendezvous store) was
    # still working hung at exit now and then, on a busy machine.
    if not trainer.is_world_process_zero():
        _leave_process_group()
        return output_dir
    # The Predictor packs its batches on the CPU: bring a model trained on a GPU back there (a no-op on CPU).
    model = trainer.model.cpu().eval()
    # fast mode: validation is scored from the cached vectors (its texts were encoded before training)
    predictor = Predictor(model, tokenizer, batch_size=config.encoder_micro_batch, paragraph_vectors=vectors)
    threshold_warnings = tune_thresholds(predictor, validation)
    reports = {"validation": evaluate_articles(predictor, validation)}
    if test:
        if vectors is not None:
            vectors.add([t for a in test for t in (a.title, *a.paragraphs)])
        reports["test"] = evaluate_articles(predictor, test)
    for split, report in reports.items():
        print(format_report(report, f"\n{split} ({len(validation if split == 'validation' else test)} articles, "
                                    "thresholds tuned on validation)"))
    def write(folder: Path):
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "eval_report.json").write_text(json.dumps(
            {**reports, "thresholds": {"topics": model.config.topic_thresholds,
                                       "boilerplate": model.config.boilerplate_threshold,
                                       "boilerplate_transition_penalty": model.config.boilerplate_transition_penalty},
             "threshold_warnings": threshold_warnings}, indent=2))
        (folder / FINGERPRINT_FILE).write_text(json.dumps(record, indent=2))
        label_counts = {label: sum(label in (a.topics or []) for a in train_articles) for label in labels}
        write_model_card(folder, output_dir, model.config, config, reports,
                         {"train": len(train_articles), "validation": len(validation), "test": len(test),
                          "label_counts": label_counts,
                          "flagged_train": sum(a.boilerplate is not None for a in train_articles),
                          "precision": "bf16 mixed precision" if args.bf16 else "fp32"}, trainer.state)

    save_folder_atomically(output_dir, write)
    logger.warning("model saved to %s", output_dir)
    if not config.keep_checkpoints:  # the model is safe in output_dir: a finished run has nothing to resume
        shutil.rmtree(checkpoints, ignore_errors=True)
    _leave_process_group()
    return output_dir


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced by an object without isatty, or closed
        return False


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 matrix products in hardware: AVX512-BF16 or AMX on x86 (as torch.cpu
    reports them), the BF16 extension on Arm (``bf16`` in /proc/cpuinfo's features). Elsewhere torch's bf16
    autocast emulates them: a training step of the base model took 22 s in bf16 against 1.5 s in fp32 on an
    AVX2-only CPU (2026-12-01, one thread, 16 paragraphs of 80 tokens)."""
    if any(getattr(torch.cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")):
        return True
    if os.uname().machine in ("aarch64", "arm64"):
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as f:
                return any(line.startswith("Features") and "bf16" in line.split() for line in f)
        except OSError:
            return False
    return False


def mixed_precision(config: TrainingConfig) -> bool:
    """Whether training runs in bf16: ``config.bf16`` where the hardware has it (CUDA, or a CPU with bf16
    instructions); on a CPU without them it trains in fp32 and says so, rather than 15x slower."""
    if not config.bf16 or torch.cuda.is_available():  # Trainer itself refuses bf16 on a GPU without it
        return config.bf16
    if cpu_has_bf16():
        return True
    logger.warning("bf16: this CPU has no bf16 instructions (AVX512-BF16, AMX or Arm BF16), where torch emulates "
                   "them about 15x slower than fp32: training in fp32 instead (set bf16=false to silence this)")
    return False


def _launched_world_size() -> int:
    """Number of processes the launcher started (torchrun and accelerate set WORLD_SIZE; MPI its own)."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(name):
            return int(os.environ[name])
    return 1


def _leave_process_group() -> None:
    """Close the DDP process group of a torchrun / accelerate launch run: every rank first waits at a barrier
    for rank 0 to finish its work (thresholds, reports, the saved folder), so all ranks tear the group down
    together and each exits cleanly."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()

