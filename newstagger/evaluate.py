"""Evaluate a saved model on any file of the newstagger schema.

    python -m newstagger.evaluate --model runs/default --data ../shared/eval/real_dev.jsonl [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

from .data import load_articles
from .metrics import format_report
from .predictor import Predictor
from .training import evaluate_articles


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", required=True, help="saved model folder")
    parser.add_argument("--data", required=True, help="JSONL, CSV or Parquet file with labels")
    parser.add_argument("--backend", default="torch", choices=["torch", "int8"])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--num-threads", type=int, default=None)
    args = parser.parse_args(argv)
    predictor = Predictor.from_pretrained(args.model, backend=args.backend, num_threads=args.num_threads)
    articles = load_articles(args.data, predictor.labels).articles
    report = evaluate_articles(predictor, articles)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report, f"{args.data}: {len(articles)} articles, model {args.model} ({args.backend})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
