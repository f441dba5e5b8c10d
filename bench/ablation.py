"""Ablation of the design levers of issue 8, measured on real news (the development benchmark).

    python bench/ablation.py [--variants full,no_relation,...] [--eval ../shared/eval/real_dev.jsonl]

Each variant is the default config (configs/default.yaml) with one lever switched off, trained from scratch
into runs/ablation/<variant> (a variant already trained there from the same config and data is reused), then
scored on the evaluation file at the thresholds tuned on our own validation split: nothing is fitted to the
evaluation file. Prints one Markdown table row per variant and writes bench/results/ablation/<variant>.json.

Levers:
  full              the default config
  old_corpus        the corpus of version 1 (data/ before the structural and passing-mention articles and the
                    new outlets; read from git, commit 2eb8f82) with the new model
  no_relation       no relation features (cosines to title, rest of article, neighbours)
  attention_topics  version 1's attention pooling instead of the two-segment topic rule
  no_freeze         the whole encoder fine-tuned (freeze_encoder_layers=0)
  no_augment        no outlet re-dressing and no article mixing
  no_oversample     articles of rare structural kinds seen once an epoch like the rest
  frozen_encoder    the fast mode: the encoder frozen, vectors cached, only context layer and heads trained
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

V1_COMMIT = "2eb8f82"
VARIANTS = {
    "full": [],
    "old_corpus": ["train_file={old}/train.jsonl", "validation_file={old}/validation.jsonl",
                   "test_file={old}/test.jsonl", "boilerplate_bank={old}/boilerplate_bank.jsonl"],
    "no_relation": ["relation_features=false"],
    "attention_topics": ["topic_pooling=attention"],
    "no_freeze": ["freeze_encoder_layers=0"],
    "no_augment": ["augment=false"],
    "no_oversample": ["oversample_rare_structures=0"],
    "frozen_encoder": ["encoder_mode=frozen", "epochs=30", "learning_rate=1e-3", "early_stopping_patience=5"],
}


def old_corpus(folder: Path) -> Path:
    """data/ of version 1, written out of git into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in (("train.jsonl", "data/train.jsonl"), ("validation.jsonl", "data/validation.jsonl"),
                       ("test.jsonl", "data/test.jsonl"),
                       ("boilerplate_bank.jsonl", "data/source/boilerplate_bank.jsonl")):
        target = folder / name
        if not target.exists():
            target.write_bytes(subprocess.run(["git", "show", f"{V1_COMMIT}:{path}"], cwd=ROOT, check=True,
                                              capture_output=True).stdout)
    return folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--eval", default=str(ROOT.parent / "shared" / "eval" / "real_dev.jsonl"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "ablation"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides for every variant (e.g. num_threads=1 to run two variants side by side)")
    args = parser.parse_args(argv)
    if not Path(args.eval).exists():
        print(f"{args.eval} is absent: nothing to measure on", file=sys.stderr)
        return 2

    from bench.scored import cell
    from newstagger.config import load_config
    from newstagger.data import load_articles
    from newstagger.metrics import evaluate_articles
    from newstagger.predictor import Predictor
    from newstagger.training import train

    os.chdir(ROOT)
    results_dir = ROOT / "bench" / "results" / "ablation"  # one file per variant: runs may go side by side
    old = old_corpus(Path(args.out) / "v1-data")
    print("| variant | boilerplate P | R | F1 | topics macro-F1 | diplomacy | sanctions | press_freedom "
          "| bp threshold | bp penalty | train time |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.variants.split(","):
        overrides = [o.format(old=old) for o in VARIANTS[name]] + [f"output_dir={args.out}/{name}", *args.set]
        config = load_config(args.config, overrides)
        start = time.time()
        folder = train(config, skip_if_trained=True)
        seconds = time.time() - start
        predictor = Predictor.from_pretrained(folder)
        report = evaluate_articles(predictor, load_articles(args.eval, predictor.labels).articles)
        results_file = results_dir / f"{name}.json"
        previous = json.loads(results_file.read_text()) if results_file.exists() else {}
        row = {"report": report, "boilerplate_threshold": predictor.boilerplate_threshold,
               "boilerplate_transition_penalty": predictor.boilerplate_transition_penalty,
               "topic_thresholds": dict(zip(predictor.labels, map(float, predictor.thresholds))),
               "train_seconds": seconds if seconds > 60 else previous.get("train_seconds", seconds),
               "overrides": overrides}
        bp, topics = report["boilerplate"], report["topics"]  # None (n/a) for a task the file does not label
        per = topics["per_label"]
        cells = [bp["precision"], bp["recall"], bp["f1"], topics["macro_f1"],
                 *(per.get(k, {}).get("f1") for k in ("diplomacy", "sanctions", "press_freedom"))]
        print(f"| {name} | " + " | ".join(map(cell, cells))
              + f" | {predictor.boilerplate_threshold:.3f} | {predictor.boilerplate_transition_penalty:g}"
              f" | {row['train_seconds'] / 60:.1f} min |", flush=True)
        results_dir.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
