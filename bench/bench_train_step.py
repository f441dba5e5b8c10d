"""Where a fine-tuning step's time goes, per training option, on the default corpus's own batches.

    python bench/bench_train_step.py [--config configs/default.yaml] [--steps 8] [--warmup 2]
                                     [--variant NAME=key=value,key=value ...] [--out FILE]

Each variant is the config with its overrides (the default variants: the config as it is, and with the two
speed options, freeze_embeddings and attention_dropout=0, one at a time and together; both were measured on
real_dev and are off in configs/default.yaml, see README, Results). The model and the epoch's dataset are built as training builds them
(training.new_model, training.training_dataset, the Trainer's optimiser: NewsTaggerTrainer.create_optimizer),
the same --warmup + --steps batches of 8 articles for every variant, forward, backward and optimiser step
timed apart (wall clock, seconds a step, mean over --steps), on the config's num_threads. An epoch's time is
steps a full epoch takes x seconds a step (evaluation excluded). Each variant runs in its own subprocess, so
one's allocator and thread pool do not time the next. Prints a Markdown table; writes --out
(bench/results/train_step.json).
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPEED_OPTIONS = {
    "config as given": [],
    "+ freeze_embeddings": ["freeze_embeddings=true"],
    "+ attention_dropout 0": ["attention_dropout=0"],
    "+ both": ["freeze_embeddings=true", "attention_dropout=0"],
}


def measure(config_path: str, overrides: list[str], steps: int, warmup: int) -> dict:
    """One variant, in this process: seconds a step for forward, backward and the optimiser step."""
    import random

    import torch
    from transformers import AutoTokenizer, TrainingArguments

    from newstagger.config import load_config, resolve_base_model
    from newstagger.data import load_articles
    from newstagger.training import (ArticleCollator, NewsTaggerTrainer, new_model, resolve_problem_type,
                                     training_dataset)

    config = load_config(config_path, overrides)
    torch.set_num_threads(config.num_threads or torch.get_num_threads())
    torch.manual_seed(config.seed)
    train = load_articles(config.train_file, list(config.labels)).articles
    base = resolve_base_model(config.base_model)
    tokenizer = AutoTokenizer.from_pretrained(base, trust_remote_code=False)
    has_flags = any(a.boilerplate is not None for a in train)
    model = new_model(config, list(config.labels), resolve_problem_type(config.problem_type, train, list(config.labels)), base,
                      has_flags).train()
    dataset = training_dataset(config, train)
    collate = ArticleCollator(tokenizer, list(config.labels), config.max_paragraph_tokens)
    order = list(range(len(dataset)))
    random.Random(0).shuffle(order)
    batches = [collate([dataset[i] for i in order[b * config.batch_size:(b + 1) * config.batch_size]])
               for b in range(warmup + steps)]
    args = TrainingArguments(output_dir="/tmp/bench_train_step", learning_rate=config.learning_rate,
                             weight_decay=config.weight_decay, use_cpu=True, report_to=[])
    trainer = NewsTaggerTrainer(model=model, args=args, head_learning_rate=config.head_learning_rate)
    optimizer = trainer.create_optimizer()
    times = {"forward": 0.0, "backward": 0.0, "optimiser": 0.0}
    for k, batch in enumerate(batches):
        t0 = time.perf_counter()
        loss = model(**batch, encoder_micro_batch=config.encoder_micro_batch).loss
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad()
        t3 = time.perf_counter()
        if k >= warmup:
            for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[key] += seconds / steps
    steps_an_epoch = math.ceil(len(dataset) / config.batch_size)
    total = sum(times.values())
    return {**{k: round(v, 3) for k, v in times.items()}, "step": round(total, 3),
            "steps_an_epoch": steps_an_epoch, "epoch_minutes": round(total * steps_an_epoch / 60, 1),
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/default.yaml")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=key=value,key=value (repeatable); default: the speed options one by one")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "train_step.json"))
    parser.add_argument("--one", help=argparse.SUPPRESS)  # a variant's overrides as JSON, run in this process
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure(args.config, json.loads(args.one), args.steps, args.warmup)))
        return
    variants = dict(SPEED_OPTIONS)
    if args.variant:
        variants = {v.split("=", 1)[0]: [o for o in v.split("=", 1)[1].split(",") if o] if "=" in v else []
                    for v in args.variant}
    rows = {}
    for name, overrides in variants.items():
        done = subprocess.run([sys.executable, __file__, "--config", args.config, "--steps", str(args.steps),
                               "--warmup", str(args.warmup), "--one", json.dumps(overrides)],
                              cwd=ROOT, capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"variant {name}: failed\n{done.stderr[-3000:]}")
        rows[name] = {"overrides": overrides, **json.loads(done.stdout.strip().splitlines()[-1])}
        print(f"{name}: {rows[name]}", file=sys.stderr)
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"config": args.config, "steps": args.steps, "rows": rows}, indent=1) + "\n")
    print("| variant | forward s | backward s | optimiser s | s/step | epoch (min, no eval) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['forward']} | {r['backward']} | {r['optimiser']} | {r['step']} | {r['epoch_minutes']} |")
    print(f"\n{args.config}, {args.steps} steps after {args.warmup} of warm-up, {rows[next(iter(rows))]['threads']} "
          f"threads; written {out}")


if __name__ == "__main__":
    main()
