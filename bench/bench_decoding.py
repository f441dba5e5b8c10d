"""What decoding the boilerplate flags over a whole article does, per transition penalty, at a model's own threshold.

    python bench/bench_decoding.py [--model runs/default] [--eval ../shared/eval/real_dev.jsonl data/test.jsonl]
                                   [--backend onnx] [--out bench/results/decoding.json]

newstagger.decoding takes the flags that best agree with the paragraphs' scores at the tuned threshold, at a
cost (the transition penalty) for each switch between content and boilerplate; training tunes the penalty on
the validation split after the threshold. This re-scores each evaluation file at every penalty of
decoding.PENALTIES and at the model's own, keeping the model's threshold and topic thresholds (flagged
paragraphs are out of the topics, so topic F1 moves with the flags): boilerplate precision, recall and F1,
topic macro-F1, paragraphs whose flag differs from the per-paragraph rule. Nothing is tuned here: the model's
tuned penalty is marked, the other rows say what it was chosen among. The encoder runs once per file (the
scores are reused; only the heads run per penalty).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scored import cell, report  # noqa: E402


def measure(model: str, eval_file: str, backend: str = "torch") -> dict:
    """{penalty: {precision, recall, f1, topic_macro_f1, changed}} on ``eval_file`` at the model's threshold;
    "tuned": the model's own penalty."""
    import numpy as np

    from newstagger.data import load_articles
    from newstagger.decoding import PENALTIES
    from newstagger.predictor import Predictor

    predictor = Predictor.from_pretrained(model, backend=backend)
    tuned = predictor.boilerplate_transition_penalty
    articles = load_articles(eval_file, predictor.labels).articles
    score = _encoding_once(predictor, articles)
    rows = {}
    plain = None  # the flags at penalty 0, the first of the sorted penalties
    for penalty in sorted(set(PENALTIES) | {tuned}):
        predictor.boilerplate_transition_penalty = penalty
        scores = score()
        flags = np.concatenate([s.flags for s in scores]) if scores else np.zeros(0, dtype=bool)
        plain = flags if plain is None else plain
        r = report(predictor, articles, scores)  # metrics' own rules, at the predictor's thresholds
        bp = r["boilerplate"]
        rows[penalty] = {"precision": bp["precision"], "recall": bp["recall"], "f1": bp["f1"],
                         "topic_macro_f1": r["topics"]["macro_f1"], "changed": int(np.sum(flags != plain))}
    return {"model": model, "eval": eval_file, "threshold": predictor.boilerplate_threshold, "tuned": tuned,
            "rows": rows}


def _encoding_once(predictor, articles):
    """A function () -> the predictor's ArticleScores of ``articles``, whose encoder passes are computed on
    the first call and reused: the heads and the decoding run again at the predictor's current penalty."""
    encode = predictor.engine.encode
    cache = {}

    def cached(input_ids, attention_mask):
        key = (input_ids.shape, input_ids.tobytes(), attention_mask.tobytes())
        if key not in cache:
            cache[key] = encode(input_ids, attention_mask)
        return cache[key]

    def run():
        predictor.engine.encode = cached
        try:
            return predictor.score(articles)
        finally:
            predictor.engine.encode = encode

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(ROOT / "runs" / "default"))
    parser.add_argument("--eval", nargs="+", default=[str(ROOT.parent / "shared" / "eval" / "real_dev.jsonl"),
                                                      str(ROOT / "data" / "test.jsonl")])
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "decoding.json"))
    args = parser.parse_args()
    results = []
    for eval_file in args.eval:
        if not Path(eval_file).exists():
            print(f"{eval_file}: absent, skipped", file=sys.stderr)
            continue
        result = measure(args.model, eval_file, args.backend)
        results.append(result)
        print(f"\n{eval_file} (threshold {result['threshold']:.3f}, tuned penalty {result['tuned']:g})\n")
        print("| penalty | boilerplate P | R | F1 | topic macro-F1 | flags changed |")
        print("|---|---|---|---|---|---|")
        for penalty, r in result["rows"].items():
            mark = " (tuned)" if penalty == result["tuned"] else ""
            print(f"| {penalty:g}{mark} | {cell(r['precision'])} | {cell(r['recall'])} | {cell(r['f1'])} | "
                  f"{cell(r['topic_macro_f1'])} | {r['changed']} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
