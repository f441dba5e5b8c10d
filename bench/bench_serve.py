"""Load test of the HTTP service on loopback: starts `python -m newstagger.serve`, measures, stops it.

    python bench/bench_serve.py [--model runs/default] [--backend onnx] [--concurrency 1,8,32]
                                [--seconds 60] [--soak 10000]

For each concurrency level, that many client threads (keep-alive connections) post one real_dev article per
request, for at most --requests-per-level requests or --seconds: requests/s, paragraphs/s, p50/p95/p99
latency, errors. Then the in-process batch path (Predictor.predict_batch on the same articles) for
comparison, and a soak of --soak small requests (one or two paragraphs each, concurrency 8) with the
server's RSS before, after the first 1,000 and at the end. Everything is bounded in requests and time, and
the server is stopped at the end (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


class Client:
    """One keep-alive connection; post() returns (status, seconds)."""

    def __init__(self, port: int):
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, body: bytes) -> tuple[int, float]:
        start = time.perf_counter()
        try:
            self.connection.request("POST", "/tag", body, {"Content-Type": "application/json"})
            response = self.connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            status = 0
        return status, time.perf_counter() - start


def load(port: int, bodies: list[tuple[bytes, int]], concurrency: int, max_requests: int, seconds: float) -> dict:
    """Post bodies round-robin from ``concurrency`` threads until max_requests or seconds."""
    lock = threading.Lock()
    counter = iter(range(max_requests))
    latencies, errors, paragraphs = [], [0], [0]
    deadline = time.perf_counter() + seconds

    def worker():
        client = Client(port)
        while time.perf_counter() < deadline:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            body, n_paragraphs = bodies[n % len(bodies)]
            status, took = client.post(body)
            with lock:
                latencies.append(took)
                if status == 200:
                    paragraphs[0] += n_paragraphs
                else:
                    errors[0] += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = sorted(latencies)

    def pct(p):
        return lat[min(len(lat) - 1, int(p / 100 * len(lat)))] * 1000 if lat else float("nan")

    return {"concurrency": concurrency, "requests": len(lat), "seconds": wall, "req_per_s": len(lat) / wall,
            "paragraphs_per_s": paragraphs[0] / wall, "p50_ms": pct(50), "p95_ms": pct(95), "p99_ms": pct(99),
            "errors": errors[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "runs" / "default"))
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--eval", default=str(ROOT.parent / "shared" / "eval" / "real_dev.jsonl"))
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests-per-level", type=int, default=480)
    parser.add_argument("--seconds", type=float, default=60, help="at most this long per level")
    parser.add_argument("--soak", type=int, default=10_000, help="small requests for the RSS check (0: none)")
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument("--threads", type=int, default=None, help="the server's --num-threads")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0)
    parser.add_argument("--max-batch", type=int, default=64)
    args = parser.parse_args(argv)
    if not Path(args.eval).exists():
        print(f"skipped: {args.eval} not found (the real-news evaluation set lives in ../shared)")
        return 0
    records = [json.loads(line) for line in open(args.eval, encoding="utf-8") if line.strip()]
    articles = [{"id": r["id"], "title": r.get("title", ""), "paragraphs": r["paragraphs"]} for r in records]
    bodies = [(json.dumps(a).encode(), len(a["paragraphs"])) for a in articles]
    small = [(json.dumps({"id": f"s{i}", "paragraphs": a["paragraphs"][:1 + i % 2]}).encode(), 1 + i % 2)
             for i, a in enumerate(articles)]

    port = free_port()
    command = [sys.executable, "-m", "newstagger.serve", "--model", args.model, "--backend", args.backend,
               "--port", str(port), "--batch-wait-ms", str(args.batch_wait_ms), "--max-batch", str(args.max_batch)]
    if args.threads:
        command += ["--num-threads", str(args.threads)]
    started = time.perf_counter()
    server = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        while True:
            if server.poll() is not None:
                print("the server exited before it was ready", file=sys.stderr)
                return 2
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.perf_counter() - started > 300:
                print("the server did not start within 300 s", file=sys.stderr)
                return 2
            time.sleep(0.2)
        ready = time.perf_counter() - started
        print(f"{args.eval}: {len(articles)} articles, {sum(n for _, n in bodies)} paragraphs; model {args.model}, "
              f"backend {args.backend}; server ready in {ready:.1f} s, RSS {rss_mb(server.pid):.0f} MB")
        load(port, bodies[:8], 2, 8, 60)  # warm-up
        print(f"{'conc.':>5}{'requests':>10}{'req/s':>8}{'para/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
        for level in (int(c) for c in args.concurrency.split(",")):
            r = load(port, bodies, level, args.requests_per_level, args.seconds)
            print(f"{r['concurrency']:>5}{r['requests']:>10}{r['req_per_s']:>8.1f}{r['paragraphs_per_s']:>9.1f}"
                  f"{r['p50_ms']:>9.0f}{r['p95_ms']:>9.0f}{r['p99_ms']:>9.0f}{r['errors']:>8}", flush=True)
        if args.soak:
            before = rss_mb(server.pid)
            first = load(port, small, 8, 1000, args.soak_seconds)
            after_first = rss_mb(server.pid)
            rest = load(port, small, 8, max(0, args.soak - 1000), args.soak_seconds)
            after = rss_mb(server.pid)
            total = first["requests"] + rest["requests"]
            print(f"soak: {total} small requests, {first['errors'] + rest['errors']} errors; server RSS "
                  f"{before:.0f} MB before, {after_first:.0f} MB after 1,000, {after:.0f} MB after {total} "
                  f"({(after - after_first) / after_first * 100:+.1f}%)")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()

    # The in-process batch path on the same articles, for comparison (server stopped: it has the CPU).
    from newstagger.predictor import Predictor

    predictor = Predictor.from_pretrained(args.model, backend=args.backend, num_threads=args.threads)
    predictor.predict_batch(articles[:4])
    start = time.perf_counter()
    predictor.predict_batch(articles)
    took = time.perf_counter() - start
    print(f"in-process predict_batch: {sum(n for _, n in bodies) / took:.1f} paragraphs/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
