"""Start-up of the torch-free runtime: a fresh venv with `pip install '.[onnx]'` (no torch, no transformers),
then the wall time and peak RSS of a whole process that imports newstagger and loads a model with the onnx
backend, as a service would at start.

    python bench/bench_start.py [--model runs/default] [--venv .cache/venv-onnx] [--runs 5] [--reinstall]

The model folder needs its ONNX export first (`newstagger export --onnx --model DIR`, where torch is).
Wall time is measured around the child process (process start, imports, model load); peak RSS is the child's
ru_maxrss. The venv is made once and reused (--reinstall to rebuild it from this checkout). Issue 12's bar:
<= 1.0 s and <= 350 MB on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOAD = ("from newstagger import Predictor; import sys; "
        "Predictor.from_pretrained(sys.argv[1], backend='onnx'); "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")


def make_venv(venv: Path, reinstall: bool) -> Path:
    python = venv / "bin" / "python"
    if reinstall or not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", f"{ROOT}[onnx]"], check=True)
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], capture_output=True, text=True,
                            check=True).stdout
    names = {p["name"].lower() for p in json.loads(listed)}
    if names & {"torch", "transformers"}:
        raise SystemExit(f"{venv} has {sorted(names & {'torch', 'transformers'})}: not a torch-free install")
    return python


def one_run(python: Path, model: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one process: os.wait4 gives that child's own rusage."""
    start = time.perf_counter()
    # cwd outside the checkout, so the installed package is imported, not ./newstagger
    child = subprocess.Popen([str(python), "-c", LOAD, str(model)], stderr=subprocess.PIPE, cwd="/",
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(child.stderr.read().decode()[-2000:])
    return wall, usage.ru_maxrss / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "runs" / "default"))
    parser.add_argument("--venv", default=str(ROOT / ".cache" / "venv-onnx"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reinstall", action="store_true")
    args = parser.parse_args(argv)
    model = Path(args.model).resolve()
    python = make_venv(Path(args.venv), args.reinstall)
    one_run(python, model)  # warm the page cache: a service's second start, not a cold disk
    walls, rss = [], []
    for _ in range(args.runs):
        wall, peak = one_run(python, model)
        walls.append(wall)
        rss.append(peak)
    result = {"model": str(model), "runs": args.runs, "wall_s_median": round(statistics.median(walls), 3),
              "wall_s_max": round(max(walls), 3), "wall_s_min": round(min(walls), 3),
              "peak_rss_mb_max": round(max(rss), 1),
              "load_average": os.getloadavg()}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
