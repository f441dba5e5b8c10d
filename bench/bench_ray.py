"""Throughput of Ray Data batch tagging against the single-process Predictor, and what Ray's start-up costs.

    python bench/bench_ray.py --model runs/default [--input ../shared/eval/real_dev.jsonl] [--articles 1000]
                              [--shards 4] [--ray "1x2,2x1"] [--json bench/results/ray.json]

The input's records are repeated (with fresh ids) to --articles records, written as --shards JSONL files
in a temporary folder. Rows of the table:

  single 1xT       Predictor.from_pretrained(num_threads=T).predict_batch(all articles), T = 1 and all cores
  ray AxT          newstagger.ray_tagging on a fresh local Ray instance: A actors of T threads each

Columns: start-up (model load; for Ray: ray.init), job (single process: predict_batch; Ray: the whole Ray
Data job: read, actor start and model load, tagging, write), articles/s counting start-up and job, articles/s
of the job alone, and for Ray the steady-state rate, the job without its fixed cost. The fixed cost per job
(actor start-up, model load, pipeline set-up, about constant whatever the input size) is measured by a second
job of --probe articles on the same instance, after the full job.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_INPUT = ROOT.parent / "shared" / "eval" / "real_dev.jsonl"


def make_corpus(source: Path, n_articles: int, n_shards: int, folder: Path) -> tuple[list[dict], list[Path]]:
    records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    articles = []
    for i in range(n_articles):
        r = records[i % len(records)]
        articles.append({"id": f"{r.get('id', i)}#{i // len(records)}", "title": r.get("title") or "",
                         "paragraphs": r["paragraphs"]})
    shards = []
    per_shard = -(-n_articles // n_shards)
    for s in range(n_shards):
        path = folder / f"shard-{s:05d}.jsonl"
        chunk = articles[s * per_shard:(s + 1) * per_shard]
        if chunk:
            path.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in chunk), encoding="utf-8")
            shards.append(path)
    return articles, shards


def bench_single(model: str, articles: list[dict], threads: int) -> dict:
    import torch

    from newstagger.predictor import Predictor

    torch.set_num_threads(threads)
    start = time.perf_counter()
    predictor = Predictor.from_pretrained(model, num_threads=threads)
    loaded = time.perf_counter()
    results = predictor.predict_batch(articles)
    done = time.perf_counter()
    assert len(results) == len(articles)
    return {"engine": f"single 1x{threads}", "actors": 1, "threads": threads, "startup_s": loaded - start,
            "job_s": done - loaded, "fixed_s": None}


def bench_ray(model: str, shards: list[Path], n_articles: int, actors: int, threads: int, probe: Path,
              n_probe: int, work: Path) -> dict:
    import ray

    from newstagger.ray_tagging import connect, tag_files

    start = time.perf_counter()
    connect(num_cpus=actors * threads)
    up = time.perf_counter()
    try:
        summary = tag_files(model, [str(p) for p in shards], str(work / f"out-{actors}x{threads}"),
                            num_actors=actors, threads_per_actor=threads, output_format="parquet")
        assert summary.records == n_articles and summary.errors == 0, summary.summary()
        probe_summary = tag_files(model, [str(probe)], str(work / f"probe-{actors}x{threads}"),
                                  num_actors=actors, threads_per_actor=threads, output_format="parquet")
        assert probe_summary.records == n_probe, probe_summary.summary()
    finally:
        ray.shutdown()
    # The probe's time is the fixed cost plus tagging n_probe articles at the steady rate: solve for both.
    steady_per_article = max(1e-9, (summary.seconds - probe_summary.seconds) / max(1, n_articles - n_probe))
    fixed = max(0.0, probe_summary.seconds - n_probe * steady_per_article)
    return {"engine": f"ray {actors}x{threads}", "actors": actors, "threads": threads, "startup_s": up - start,
            "job_s": summary.seconds, "fixed_s": fixed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(ROOT / "runs" / "default"), help="saved model folder")
    parser.add_argument("--input", default=str(DEFAULT_INPUT), help="JSONL of articles, repeated to --articles")
    parser.add_argument("--articles", type=int, default=1000)
    parser.add_argument("--shards", type=int, default=4, help="input JSONL files the articles are split into")
    parser.add_argument("--ray", default=None,
                        help="Ray configurations, actors x threads per actor, comma-separated "
                             "(default: 1x1, 1xC and 2x(C/2) for C cores)")
    parser.add_argument("--single-threads", default=None,
                        help="thread counts of the single-process rows, comma-separated (default: 1 and C)")
    parser.add_argument("--probe", type=int, default=16, help="articles of the fixed-cost probe job")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    source = Path(args.input)
    if not source.exists():
        print(f"skipped: {source} is absent (../shared not beside the checkout); pass --input", file=sys.stderr)
        return 0
    if not (Path(args.model) / "config.json").is_file():
        print(f"error: {args.model} is not a model folder (train one, or pass --model)", file=sys.stderr)
        return 2
    try:
        import ray  # noqa: F401
    except ImportError:
        print("skipped: ray is not installed (pip install 'newstagger[ray]')", file=sys.stderr)
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cores = os.cpu_count() or 1
    configs = args.ray or f"1x1,1x{cores},2x{max(1, cores // 2)}"
    configs = list(dict.fromkeys(tuple(int(x) for x in c.lower().split("x"))
                                 for c in configs.split(",") if c.strip()))
    single_threads = list(dict.fromkeys(int(t) for t in (args.single_threads or f"1,{cores}").split(",")))

    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        articles, shards = make_corpus(source, args.articles, args.shards, work)
        probe = work / "probe" / "probe.jsonl"
        probe.parent.mkdir()
        probe.write_text("".join(json.dumps(a, ensure_ascii=False) + "\n" for a in articles[:args.probe]))
        print(f"{len(articles)} articles ({sum(len(a['paragraphs']) for a in articles)} paragraphs) from "
              f"{source.name} in {len(shards)} shards; model {args.model}; {cores} cores", file=sys.stderr)
        rows = [bench_single(args.model, articles, t) for t in single_threads]
        for actors, threads in configs:
            rows.append(bench_ray(args.model, shards, len(articles), actors, threads, probe,
                                  min(args.probe, len(articles)), work))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    n = len(articles)
    print(f"\n{'engine':<16}{'start-up s':>11}{'job s':>8}{'fixed s':>9}{'art/s incl. start-up':>22}"
          f"{'art/s job':>11}{'art/s steady':>14}")
    for r in rows:
        r["articles"] = n
        r["rate_incl_startup"] = n / (r["startup_s"] + r["job_s"])
        r["rate_job"] = n / r["job_s"]
        r["rate_steady"] = n / max(1e-9, r["job_s"] - r["fixed_s"]) if r["fixed_s"] is not None else r["rate_job"]
        fixed = f"{r['fixed_s']:.1f}" if r["fixed_s"] is not None else "-"
        print(f"{r['engine']:<16}{r['startup_s']:>11.1f}{r['job_s']:>8.1f}{fixed:>9}"
              f"{r['rate_incl_startup']:>22.1f}{r['rate_job']:>11.1f}{r['rate_steady']:>14.1f}")
    singles = [r for r in rows if r["fixed_s"] is None]
    single = max(singles, key=lambda r: r["rate_job"])  # the best single process is the one to beat
    print(f"\nbaseline: {single['engine']} ({single['rate_job']:.1f} articles/s, "
          f"model load {single['startup_s']:.1f} s)")
    for r in rows:
        if r["fixed_s"] is None:
            continue
        overhead = r["startup_s"] + r["fixed_s"]
        line = (f"{r['engine']}: overhead {overhead:.1f} s (Ray start-up {r['startup_s']:.1f} s + per-job "
                f"{r['fixed_s']:.1f} s for actors, model load, read/write set-up) = "
                f"{100 * overhead / (r['startup_s'] + r['job_s']):.0f}% of its total time here; "
                f"steady state {r['rate_steady'] / single['rate_job']:.2f}x the baseline")
        gain = 1 / single["rate_job"] - 1 / r["rate_steady"]  # seconds saved per article at steady state
        if gain > 0:
            line += f": Ray pays off above ~{max(0.0, overhead - single['startup_s']) / gain:.0f} articles"
        else:
            line += ": no gain on this machine (Ray pays off with more cores or nodes than one process uses)"
        print(line)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
