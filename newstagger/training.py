"""The training run: data -> Trainer -> thresholds tuned on validation -> test report -> model folder.

Built on transformers Trainer, which brings the loop, checkpoints, resume, early stopping, logging,
progress bars and distributed data parallel (torchrun / accelerate launch) for free.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, EarlyStoppingCallback, Trainer, TrainingArguments, set_seed

from .config import TrainingConfig, resolve_base_model
from .data import Article, BoilerplateAugmenter, load_articles, load_bank, mix_articles
from .metrics import best_threshold, evaluation_report, format_report
from .model import NewsTaggerModel, pack_articles
from .model_card import write_model_card
from .predictor import Predictor

logger = logging.getLogger("newstagger")
FINGERPRINT_FILE = "training_config.json"


class ArticleDataset(torch.utils.data.Dataset):
    """Training or evaluation articles; for training, optionally mixed with another article's reporting
    and re-dressed with bank boilerplate (see data.mix_articles and data.BoilerplateAugmenter)."""

    def __init__(self, articles: list[Article], augment=None, mix_probability: float = 0.0, seed: int = 0,
                 seen_ids_file: str | None = None):
        self.articles = articles
        self.augment = augment
        self.mix_probability = mix_probability
        self.rng = random.Random(seed)
        self.seen_ids_file = seen_ids_file  # when set, every id read is appended (to check DDP sharding)

    def __len__(self):
        return len(self.articles)

    def __getitem__(self, i):
        article = self.articles[i]
        if self.seen_ids_file:
            with open(self.seen_ids_file, "a", encoding="utf-8") as f:
                f.write(article.id + "\n")
        if self.mix_probability and self.rng.random() < self.mix_probability:
            article = mix_articles(article, self.rng.choice(self.articles), self.rng)
        return self.augment(article) if self.augment else article


@dataclasses.dataclass
class ArticleCollator:
    """Packs variable-length articles into one batch (see model.pack_articles)."""
    tokenizer: object
    labels: list[str]
    max_paragraph_tokens: int

    def __call__(self, articles):
        return pack_articles(self.tokenizer, articles, self.labels, self.max_paragraph_tokens)


def make_compute_metrics(labels):
    def compute_metrics(eval_pred):
        bp_logits, topic_logits = eval_pred.predictions
        bp_labels, topic_labels = eval_pred.label_ids
        known = bp_labels >= 0
        report = evaluation_report(topic_labels, 1 / (1 + np.exp(-topic_logits)), bp_labels[known],
                                   1 / (1 + np.exp(-bp_logits[known])), labels, 0.5, 0.5)
        topic_f1, bp_f1 = report["topics"]["macro_f1"], report["boilerplate"]["f1"]
        # One number for early stopping and best-model selection: both tasks count equally.
        return {"topic_macro_f1": topic_f1, "boilerplate_f1": bp_f1, "score": (topic_f1 + bp_f1) / 2}
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


def score_split(predictor: Predictor, articles: list[Article]):
    """Stacked labels and probabilities of a labelled split, for thresholds and reports."""
    scores = predictor.score(articles)
    labels = predictor.labels
    topic_true = np.array([[1 if label in a.topics else 0 for label in labels] for a in articles])
    topic_prob = np.stack([s[0] for s in scores])
    bp_true = np.concatenate([np.asarray(a.boilerplate) for a in articles])
    bp_prob = np.concatenate([s[1] for s in scores])
    return topic_true, topic_prob, bp_true, bp_prob


def evaluate_articles(predictor: Predictor, articles: list[Article]) -> dict:
    topic_true, topic_prob, bp_true, bp_prob = score_split(predictor, articles)
    return evaluation_report(topic_true, topic_prob, bp_true, bp_prob, predictor.labels,
                             predictor.thresholds, predictor.boilerplate_threshold)


def tune_thresholds(predictor: Predictor, validation: list[Article]) -> None:
    """The boilerplate threshold, then per-label topic thresholds, that maximise F1 on validation.

    In that order: flagged paragraphs are kept out of the topics, so topic scores depend on the
    boilerplate threshold. The thresholds are stored in the model's config (saved in config.json).
    """
    _, _, bp_true, bp_prob = score_split(predictor, validation)
    predictor.boilerplate_threshold = best_threshold(bp_true, bp_prob)
    topic_true, topic_prob, _, _ = score_split(predictor, validation)
    predictor.thresholds = [best_threshold(topic_true[:, i], topic_prob[:, i]) for i in range(len(predictor.labels))]


def is_trained(config: TrainingConfig) -> bool:
    """True when output_dir holds a complete model trained from this very config and data."""
    marker = Path(config.output_dir) / FINGERPRINT_FILE
    if not marker.exists() or not (Path(config.output_dir) / "model.safetensors").exists():
        return False
    saved = json.loads(marker.read_text()).get("fingerprint")
    return saved == config.fingerprint(data_files(config))


def data_files(config: TrainingConfig):
    return [config.train_file, config.validation_file, config.test_file, config.boilerplate_bank]


def save_folder_atomically(output_dir: Path, write) -> None:
    """Call write(tmp_dir), then swap tmp_dir into place: the folder appears whole or not at all."""
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.with_name(f".{output_dir.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        write(tmp)
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}")
            os.replace(output_dir, old)
            os.replace(tmp, output_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def build_augmenter(config: TrainingConfig, train: list[Article], seed: int):
    if not config.augment or not config.boilerplate_bank or not Path(config.boilerplate_bank).exists():
        return None
    entries = load_bank(config.boilerplate_bank)
    # Only outlets seen in training: validation and test outlets must stay unseen.
    train_outlets = {a.extra.get("outlet") for a in train} - {None}
    if train_outlets:
        entries = [e for e in entries if e.outlet in train_outlets]
    return BoilerplateAugmenter(entries, config.augment_probability, seed=seed)


def train(config: TrainingConfig, resume: bool | str = False, skip_if_trained: bool = False) -> Path:
    output_dir = Path(config.output_dir)
    if skip_if_trained and is_trained(config):
        logger.warning("%s already holds a model trained from this config and data: skipping training", output_dir)
        return output_dir
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    set_seed(config.seed)

    labels = list(config.labels)
    train_articles = load_articles(config.train_file, labels).articles
    validation = load_articles(config.validation_file, labels).articles
    test = load_articles(config.test_file, labels).articles if config.test_file else []
    logger.warning("data: %d train, %d validation, %d test articles", len(train_articles), len(validation), len(test))

    base = resolve_base_model(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = NewsTaggerModel.from_base(
        base, labels, random_encoder=config.random_encoder,
        max_paragraph_tokens=config.max_paragraph_tokens, max_positions=config.max_positions,
        context_layers=config.context_layers, context_heads=config.context_heads, dropout=config.dropout,
        boilerplate_loss_weight=config.boilerplate_loss_weight, topic_loss_weight=config.topic_loss_weight,
        boilerplate_pos_weight=config.boilerplate_pos_weight, topic_pos_weight=config.topic_pos_weight,
        encoder_micro_batch=config.encoder_micro_batch)
    # The encoder's pooler (BERT's [CLS] dense layer) runs but never reaches the loss (paragraphs are
    # mean-pooled), so it never gets a gradient: freeze it, or DDP (find_unused_parameters=False) fails.
    if getattr(model.encoder, "pooler", None) is not None:
        model.encoder.pooler.requires_grad_(False)

    checkpoints = output_dir.with_name(output_dir.name + "-checkpoints")
    # Launched by torchrun / accelerate launch (WORLD_SIZE > 1) on a machine without CUDA: tell Trainer to
    # use CPU DDP over gloo. Without use_cpu, accelerate finds no GPU backend and each process would train
    # alone on the whole data set and write the model folder.
    cpu_ddp = _launched_world_size() > 1 and not torch.cuda.is_available()
    args = TrainingArguments(
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
        bf16=config.bf16,
        remove_unused_columns=False,
        label_names=["boilerplate_labels", "topic_labels"],
        report_to=[],
        dataloader_pin_memory=False,
        save_only_model=False,
        ddp_find_unused_parameters=False,
        use_cpu=cpu_ddp,
        ddp_backend="gloo" if cpu_ddp else None,
    )
    rank = args.process_index  # set up by TrainingArguments (torchrun, accelerate launch or mpirun)
    seen_ids = os.environ.get("NEWSTAGGER_SEEN_IDS_DIR")
    trainer = NewsTaggerTrainer(
        model=model,
        args=args,
        train_dataset=ArticleDataset(train_articles, build_augmenter(config, train_articles, config.seed + rank),
                                     mix_probability=config.mix_probability if config.augment else 0.0,
                                     seed=config.seed + rank, seen_ids_file=f"{seen_ids}/rank{rank}.txt" if seen_ids else None),
        eval_dataset=ArticleDataset(validation),
        data_collator=ArticleCollator(tokenizer, labels, config.max_paragraph_tokens),
        compute_metrics=make_compute_metrics(labels),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=config.early_stopping_patience)],
        head_learning_rate=config.head_learning_rate,
    )
    trainer.train(resume_from_checkpoint=resume or None)

    # Thresholds, reports and the model folder are rank 0's work alone; the other ranks are done. Nothing
    # below runs a collective (the predictor uses the unwrapped model), so no rank waits on another.
    if not trainer.is_world_process_zero():
        _leave_process_group()
        return output_dir
    # The Predictor packs its batches on the CPU: bring a model trained on a GPU back there (a no-op on CPU).
    model = trainer.model.cpu().eval()
    predictor = Predictor(model, tokenizer, batch_size=config.encoder_micro_batch)
    tune_thresholds(predictor, validation)
    reports = {"validation": evaluate_articles(predictor, validation)}
    if test:
        reports["test"] = evaluate_articles(predictor, test)
    for split, report in reports.items():
        print(format_report(report, f"\n{split} ({len(validation if split == 'validation' else test)} articles, "
                                    "thresholds tuned on validation)"))
    fingerprint = {"fingerprint": config.fingerprint(data_files(config)), "config": dataclasses.asdict(config)}

    def write(folder: Path):
        model.config.encoder_micro_batch = config.encoder_micro_batch
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        (folder / "eval_report.json").write_text(json.dumps(
            {**reports, "thresholds": {"topics": model.config.topic_thresholds,
                                       "boilerplate": model.config.boilerplate_threshold}}, indent=2))
        (folder / FINGERPRINT_FILE).write_text(json.dumps(fingerprint, indent=2))
        write_model_card(folder, model.config, config, reports,
                         {"train": len(train_articles), "validation": len(validation), "test": len(test)},
                         trainer.state)

    save_folder_atomically(output_dir, write)
    logger.warning("model saved to %s", output_dir)
    _leave_process_group()
    return output_dir


def _launched_world_size() -> int:
    """Number of processes the launcher started (torchrun and accelerate set WORLD_SIZE; MPI its own)."""
    for name in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        if os.environ.get(name):
            return int(os.environ[name])
    return 1


def _leave_process_group() -> None:
    """Close the DDP process group of a torchrun / accelerate launch run, so each rank exits cleanly."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

