"""Prediction speed and quality per backend, end to end, on real news.

    python bench/bench_predict.py [--model runs/default] [--eval ../shared/eval/real_dev.jsonl] [--threads 2]

Rows, each measured in its own subprocess (so peak RSS is the backend's own):
  naive   a transformers feature-extraction pipeline over the same fine-tuned encoder, one paragraph per
          call, then the same context layer and heads: what a first implementation would do;
  torch   Predictor, fp32: paragraphs of many articles pooled, sorted by length, padded per micro-batch;
  int8    Predictor, ONNX Runtime int8 encoder (one chunk per call: batch-invariant), torch heads;
  onnx    Predictor, ONNX Runtime int8 encoder and fp32 heads (`newstagger export --onnx` first): no torch.
Each prints paragraphs/s (best of --repeat runs after a warm-up, model load excluded), the ratio to naive,
peak RSS, and topic macro-F1 / boilerplate F1 on the evaluation file (n/a for a task the file does not
label). --profile adds where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import scored  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def naive_scores(predictor, articles):
    """One pipeline call per paragraph (mean-pooled), then the model's own context layer and heads."""
    import torch
    from transformers import pipeline

    model = predictor.model
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(predictor_folder(predictor), trust_remote_code=False)
    extract = pipeline("feature-extraction", model=model.encoder, tokenizer=tokenizer, device=-1)
    results = []
    for article in articles:
        texts = ([article.title] if article.title.strip() else []) + article.paragraphs
        vectors = [torch.tensor(extract(t, truncation=True, max_length=512)[0]).mean(dim=0) for t in texts]
        with torch.inference_mode():
            results.append(heads_from_vectors(model, torch.stack(vectors), bool(article.title.strip())))
    return results


def heads_from_vectors(model, vectors, has_title):
    """Run the context layer and heads on precomputed paragraph vectors (same maths as model.forward)."""
    import torch

    n_slots = len(vectors) + (0 if has_title else 1)
    seg = torch.zeros((1, n_slots, vectors.shape[1]))
    seg[0, n_slots - len(vectors):] = vectors
    mask = torch.zeros((1, n_slots), dtype=torch.bool)
    mask[0, n_slots - len(vectors):] = True
    out = model.heads(seg, mask)
    return model.topic_probabilities(out.topic_logits)[0].numpy(), torch.sigmoid(out.boilerplate_logits[0]).numpy()


def predictor_folder(predictor) -> str:
    return predictor.model.name_or_path


def measure(backend: str, model_dir: str, eval_file: str, threads: int, repeat: int, profile: bool) -> dict:
    from newstagger.data import load_articles
    from newstagger.predictor import Predictor

    predictor = Predictor.from_pretrained(model_dir, backend="torch" if backend == "naive" else backend,
                                          num_threads=threads)
    articles = load_articles(eval_file, predictor.labels).articles
    n_paragraphs = sum(len(a.paragraphs) for a in articles)

    def run():
        if backend == "naive":
            return naive_scores(predictor, articles)
        return predictor.score(articles)  # ArticleScores: the flags as the Predictor decoded them

    if backend != "naive":
        predictor.score(articles[:4])  # warm-up: first-call allocations and graph set-up
    times, scores = [], None
    for _ in range(1 if backend == "naive" else repeat):
        start = time.perf_counter()
        scores = run()
        times.append(time.perf_counter() - start)
    where = None
    if profile and backend != "naive":
        profiler = cProfile.Profile()
        profiler.enable()
        run()
        profiler.disable()
        where = time_by_stage(pstats.Stats(profiler))
    report = scored.report(predictor, articles, scores)  # None for a task the file does not label
    return {"backend": backend, "paragraphs": n_paragraphs, "seconds": min(times),
            "paragraphs_per_s": n_paragraphs / min(times), "peak_rss_mb": peak_rss_mb(),
            "topic_macro_f1": report["topics"]["macro_f1"], "boilerplate_f1": report["boilerplate"]["f1"],
            "profile": where}


def time_by_stage(stats: pstats.Stats) -> dict:
    """Cumulative seconds in the stages of Predictor.score, from a cProfile run."""
    stages = {"total (score)": ("score", "predictor.py"), "tokenize + pack": ("pack", "packing.py"),
              "encoder": ("encode", "runtime.py"), "encoder (onnx)": ("__call__", "runtime.py"),
              "pool": ("pool_segments", "packing.py"), "context + heads": ("heads", "runtime.py")}
    found = {}
    for (filename, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        for label, (func, wanted_file) in stages.items():
            if name == func and wanted_file in filename:
                found[label] = max(found.get(label, 0.0), cumulative)
    return {k: round(v, 3) for k, v in found.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "runs" / "default"))
    parser.add_argument("--eval", default=str(ROOT.parent / "shared" / "eval" / "real_dev.jsonl"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="naive,torch,int8,onnx")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # internal: measure one backend in this process
    args = parser.parse_args(argv)
    if not Path(args.eval).exists():
        print(f"skipped: {args.eval} not found (the real-news evaluation set lives in ../shared)")
        return 0
    if not (Path(args.model) / "config.json").exists():
        print(f"no model at {args.model}: run `make run` (or train.py) first", file=sys.stderr)
        return 2
    if args.only:
        print(json.dumps(measure(args.only, args.model, args.eval, args.threads, args.repeat, args.profile)))
        return 0

    rows = []
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--only", backend, "--model", args.model, "--eval", args.eval,
               "--threads", str(args.threads), "--repeat", str(args.repeat)] + (["--profile"] if args.profile else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{backend}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    naive = next((r["paragraphs_per_s"] for r in rows if r["backend"] == "naive"), None)
    print(f"{args.eval}: {rows[0]['paragraphs'] if rows else '?'} paragraphs, model {args.model}, {args.threads} threads")
    print(f"{'backend':<8}{'para/s':>9}{'x naive':>9}{'peak RSS MB':>13}{'topic macro-F1':>16}{'bp F1':>8}")
    for r in rows:
        ratio = f"{r['paragraphs_per_s'] / naive:.1f}" if naive else "-"
        print(f"{r['backend']:<8}{r['paragraphs_per_s']:>9.1f}{ratio:>9}{r['peak_rss_mb']:>13.0f}"
              f"{scored.cell(r['topic_macro_f1'], '.4f', 16)}{scored.cell(r['boilerplate_f1'], '.4f', 8)}")
    for r in rows:
        if r.get("profile"):
            print(f"profile {r['backend']}: {r['profile']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
