"""Fidelity of the int8 and onnx backends to torch fp32, and their batch invariance, on real news.

    python bench/bench_fidelity.py [--model runs/default] [--eval ../shared/eval/real_dev.jsonl] [--check]

For each backend: the largest topic-score difference from torch fp32, the share of identical article-label
decisions and of identical paragraph flags, topic macro-F1 and boilerplate F1 next to fp32's (n/a, and no
F1 bar, for a task the evaluation file does not label); then batch invariance: each article tagged alone
against all at once, in fives, and resumed half-way (largest score difference, topics and flags that changed).
A folder without an ONNX export is exported into a temporary copy (the model folder is not written).
``--check`` exits 1 when a bar of issue 12 is missed: scores within 0.02, decisions >= 99%, flags >= 99.5%, F1
not lower by more than 0.005, invariance within 1e-3 with no changed topic or flag.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import scored  # noqa: E402

BARS = {"max_topic_diff": 0.02, "decisions": 0.99, "flags": 0.995, "f1_drop": 0.005, "invariance": 1e-3}


def decisions(predictor, scores):
    topics = np.stack([s.topics for s in scores]) >= predictor.thresholds
    flags = np.concatenate([s.flags for s in scores])  # as decoded (newstagger.decoding)
    return topics, flags


def report(predictor, articles, scores):
    """(topic macro-F1, boilerplate F1); None for a task the file does not label."""
    r = scored.report(predictor, articles, scores)
    return r["topics"]["macro_f1"], r["boilerplate"]["f1"]


def f1_cells(row) -> str:
    return scored.cell(row["topic_macro_f1"], ".4f", 10) + scored.cell(row["boilerplate_f1"], ".4f", 8)


def invariance(predictor, articles, all_at_once) -> dict:
    """``all_at_once``: the backend's scores of ``articles`` in one call (already computed by the caller)."""
    alone = [predictor.score([a])[0] for a in articles]
    half = len(articles) // 2
    runs = {"all at once": all_at_once,
            "in fives": [s for i in range(0, len(articles), 5) for s in predictor.score(articles[i:i + 5])],
            "resumed half-way": predictor.score(articles[:half]) + predictor.score(articles[half:])}
    t0, f0 = decisions(predictor, alone)
    out = {}
    for name, batched in runs.items():
        t1, f1 = decisions(predictor, batched)
        diff = max(max(np.abs(a[0] - b[0]).max(), np.abs(a[1] - b[1]).max()) for a, b in zip(alone, batched))
        out[name] = {"max_diff": float(diff), "changed_topics": int((t0 != t1).sum()), "changed_flags": int((f0 != f1).sum())}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "runs" / "default"))
    parser.add_argument("--eval", default=str(ROOT.parent / "shared" / "eval" / "real_dev.jsonl"))
    parser.add_argument("--backends", default="int8,onnx")
    parser.add_argument("--quantization", default=None,
                        help="export into a temporary copy with this quantization (per-token, per-chunk); "
                             "default: the folder's export, else a temporary one of the default kind")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--invariance-articles", type=int, default=None,
                        help="check batch invariance on the first N articles only (default: all; quicker tests)")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not Path(args.eval).exists():
        print(f"skipped: {args.eval} not found (the real-news evaluation set lives in ../shared)")
        return 0
    from newstagger.data import load_articles
    from newstagger.onnx_export import export_onnx
    from newstagger.predictor import Predictor

    model = Path(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        if not (model / "onnx" / "manifest.json").exists() or args.quantization:
            copy = Path(tmp) / model.name
            copy.mkdir()
            for item in model.iterdir():
                if item.is_file():
                    (copy / item.name).symlink_to(item.resolve())
            start = time.perf_counter()
            export_onnx(copy, **({"quantization": args.quantization} if args.quantization else {}))
            print(f"exported {args.quantization or 'default'} ONNX into a temporary copy in {time.perf_counter() - start:.0f} s",
                  file=sys.stderr)
            model = copy
        fp32 = Predictor.from_pretrained(model, backend="torch", num_threads=args.threads)
        articles = load_articles(args.eval, fp32.labels).articles
        reference = fp32.score(articles)
        ref_topics, ref_flags = decisions(fp32, reference)
        ref_f1 = report(fp32, articles, reference)
        rows = {"torch": {"topic_macro_f1": ref_f1[0], "boilerplate_f1": ref_f1[1]}}
        for backend in args.backends.split(","):
            predictor = Predictor.from_pretrained(model, backend=backend, num_threads=args.threads)
            scores = predictor.score(articles)
            topics, flags = decisions(predictor, scores)
            f1 = report(predictor, articles, scores)
            rows[backend] = {
                "max_topic_diff": float(max(np.abs(a[0] - b[0]).max() for a, b in zip(reference, scores))),
                "max_paragraph_diff": float(max(np.abs(a[1] - b[1]).max() for a, b in zip(reference, scores))),
                "topic_within_bar": float((np.abs(np.stack([a[0] for a in reference]) - np.stack([b[0] for b in scores]))
                                           <= BARS["max_topic_diff"]).mean()),
                "decisions": float((topics == ref_topics).mean()), "flags": float((flags == ref_flags).mean()),
                "topic_macro_f1": f1[0], "boilerplate_f1": f1[1],
                "invariance": invariance(predictor, articles[:args.invariance_articles], scores[:args.invariance_articles])}
    failed = []
    for backend, r in rows.items():
        if backend == "torch":
            continue
        if r["max_topic_diff"] > BARS["max_topic_diff"]:
            failed.append(f"{backend}: topic score differs by {r['max_topic_diff']:.4f}")
        if r["decisions"] < BARS["decisions"]:
            failed.append(f"{backend}: {r['decisions']:.2%} identical decisions")
        if r["flags"] < BARS["flags"]:
            failed.append(f"{backend}: {r['flags']:.2%} identical flags")
        for key, i in (("topic_macro_f1", 0), ("boilerplate_f1", 1)):  # only a task the file labels
            if r[key] is not None and r[key] < ref_f1[i] - BARS["f1_drop"]:
                failed.append(f"{backend}: {key} {r[key]:.4f} vs fp32 {ref_f1[i]:.4f}")
        for name, v in r["invariance"].items():
            if v["max_diff"] > BARS["invariance"] or v["changed_topics"] or v["changed_flags"]:
                failed.append(f"{backend}: {name}: {v}")
    if args.json:
        print(json.dumps({"rows": rows, "failed": failed}))
    else:
        print(f"{args.eval}: {len(articles)} articles, {len(ref_flags)} paragraphs; model {args.model}")
        print(f"{'backend':<8}{'max Δtopic':>11}{'max Δpara':>10}{'decisions':>10}{'flags':>8}{'topic F1':>10}{'bp F1':>8}")
        for backend, r in rows.items():
            if backend == "torch":
                print(f"{backend:<8}{'-':>11}{'-':>10}{'-':>10}{'-':>8}{f1_cells(r)}")
                continue
            print(f"{backend:<8}{r['max_topic_diff']:>11.4f}{r['max_paragraph_diff']:>10.4f}{r['decisions']:>10.2%}"
                  f"{r['flags']:>8.2%}{f1_cells(r)}"
                  f"   ({r['topic_within_bar']:.2%} of topic scores within {BARS['max_topic_diff']})")
            for name, v in r["invariance"].items():
                print(f"    alone vs {name}: max diff {v['max_diff']:.2e}, changed topics {v['changed_topics']}, "
                      f"changed flags {v['changed_flags']}")
        print("all bars met" if not failed else "missed: " + "; ".join(failed))
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.exit(main())
