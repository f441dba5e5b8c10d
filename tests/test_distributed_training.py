"""Multi-process training: train.py under torchrun (and accelerate launch + mpirun when installed) runs
CPU DDP over gloo through Trainer. Each rank reads a different shard, only rank 0 writes the model folder,
and the folder it writes is a complete model that the Predictor loads.

These launch real subprocesses (2 ranks, 1 thread each) on the tiny config: about 20 s per launcher.
"""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from newstagger.data import load_articles

ROOT = Path(__file__).resolve().parent.parent
STEPS = 6
BATCH = 8  # configs/tiny.yaml batch_size: articles per step and rank


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_command(launcher: str, tmp: Path) -> list[str]:
    port = str(free_port())
    script = ["train.py", "--config", "configs/tiny.yaml", f"output_dir={tmp / 'model'}", f"max_steps={STEPS}",
              "keep_checkpoints=true"]  # the last checkpoint's trainer_state is read below
    if launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
                "--master_addr=127.0.0.1", f"--master_port={port}", *script]
    # accelerate's multi-CPU launch goes through mpirun (without it, `--cpu` starts one process only)
    hostfile = tmp / "hostfile"
    hostfile.write_text("localhost slots=2\n")
    return [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
            "--num_machines", "1", "--mpirun_hostfile", str(hostfile), "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_ip", "127.0.0.1", "--main_process_port", port, *script]


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate-cpu-mpirun"])
def test_two_process_cpu_ddp_training(tmp_path, launcher):
    if launcher != "torchrun" and shutil.which("mpirun") is None:
        pytest.skip("mpirun is not installed: accelerate launch --cpu needs it to start several processes "
                    "(apt-get install openmpi-bin)")
    seen = tmp_path / "seen"
    seen.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "NEWSTAGGER_SEEN_IDS_DIR": str(seen), "PYTHONUNBUFFERED": "1",
           # mpirun refuses root without these (CI and containers run as root)
           "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           # mpirun starts `python` from PATH: make it this interpreter
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "ACCELERATE_USE_CPU"):
        env.pop(name, None)
    proc = subprocess.run(launch_command(launcher, tmp_path), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{launcher} failed:\n{log[-6000:]}"

    # Only rank 0 evaluated and wrote the folder, whole, exactly once.
    assert log.count("model saved to") == 1, log[-6000:]
    n_validation = len(load_articles(ROOT / "data" / "validation.jsonl").articles)
    assert log.count(f"validation ({n_validation} articles") == 1, log[-6000:]
    model_dir = tmp_path / "model"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "eval_report.json", "training_config.json",
                 "README.md"):
        assert (model_dir / name).is_file(), f"{name} missing from {sorted(os.listdir(model_dir))}"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model.")], "a partial folder was left behind"
    report = json.loads((model_dir / "eval_report.json").read_text())
    assert set(report["thresholds"]["topics"]) == {"diplomacy", "sanctions", "press_freedom"}
    state = json.loads((tmp_path / "model-checkpoints" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["global_step"] == STEPS
    # Two ranks of BATCH articles per step: an epoch is half as many steps as in a single process.
    train_ids = {a.id for a in load_articles(ROOT / "data" / "train.jsonl").articles}
    assert state["epoch"] == pytest.approx(STEPS / math.ceil(len(train_ids) / (2 * BATCH)), abs=1e-3)

    # Every rank read its own shard of the training set.
    rank0 = (seen / "rank0.txt").read_text().split()
    rank1 = (seen / "rank1.txt").read_text().split()
    assert sorted(p.name for p in seen.iterdir()) == ["rank0.txt", "rank1.txt"]
    assert len(rank0) >= STEPS * BATCH and len(rank1) >= STEPS * BATCH
    assert set(rank0) <= train_ids and set(rank1) <= train_ids
    assert not set(rank0) & set(rank1), f"ranks read the same articles: {sorted(set(rank0) & set(rank1))[:5]}"

    # The folder is a working model.
    from newstagger.predictor import Predictor

    predictor = Predictor.from_pretrained(model_dir)
    article = load_articles(ROOT / "data" / "validation.jsonl").articles[0]
    result = predictor.predict(article)
    assert result.id == article.id
    assert len(result.boilerplate) == len(article.paragraphs) == len(result.paragraph_scores)
    assert set(result.topic_scores) == {"diplomacy", "sanctions", "press_freedom"}
    assert all(0.0 <= p <= 1.0 for p in [*result.topic_scores.values(), *result.paragraph_scores])
    assert set(result.topics) <= set(result.topic_scores)
