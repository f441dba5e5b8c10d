"""bench/bench_train_step.py: times a training step per variant of a config, each in its own process, on the
batches training itself builds (training.new_model, training.training_dataset)."""

import json
import os
import subprocess
import sys


def test_bench_train_step_times_a_variant_of_the_tiny_config(root, tmp_path):
    out = tmp_path / "train_step.json"
    done = subprocess.run(
        [sys.executable, "bench/bench_train_step.py", "--config", "configs/tiny.yaml", "--steps", "2", "--warmup", "0",
         "--variant", "fixed embeddings=freeze_embeddings=true,attention_dropout=0", "--out", str(out)],
        cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert list(rows) == ["fixed embeddings"]
    row = rows["fixed embeddings"]
    assert row["overrides"] == ["freeze_embeddings=true", "attention_dropout=0"]
    assert row["step"] > 0 and abs(row["step"] - row["forward"] - row["backward"] - row["optimiser"]) < 0.01
    assert row["steps_an_epoch"] > 1
    assert "| fixed embeddings |" in done.stdout
