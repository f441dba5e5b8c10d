"""bench/bench_train_step.py: times a training step per variant of a config, each in its own process, on the
batches training itself builds (training.new_model, training.training_dataset)."""

import json
import os
import subprocess
import sys


def test_bench_train_step_times_each_variant_on_the_tiny_config(root, tmp_path):
    out = tmp_path / "train_step.json"
    done = subprocess.run(
        [sys.executable, "bench/bench_train_step.py", "--config", "configs/tiny.yaml", "--steps", "2", "--warmup", "1",
         "--variant", "as given=", "--variant", "fixed embeddings=freeze_embeddings=true,attention_dropout=0",
         "--out", str(out)],
        cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    assert list(rows) == ["as given", "fixed embeddings"]
    assert rows["fixed embeddings"]["overrides"] == ["freeze_embeddings=true", "attention_dropout=0"]
    for row in rows.values():
        assert row["step"] > 0 and abs(row["step"] - row["forward"] - row["backward"] - row["optimiser"]) < 0.01
        assert row["steps_an_epoch"] > 1
    assert "| fixed embeddings |" in done.stdout


def test_a_variant_that_cannot_train_fails_naming_it(root, tmp_path):
    done = subprocess.run(
        [sys.executable, "bench/bench_train_step.py", "--config", "configs/tiny.yaml", "--steps", "1", "--warmup", "0",
         "--variant", "bad=attention_dropout=2", "--out", str(tmp_path / "x.json")],
        cwd=root, capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode != 0 and "variant bad: failed" in done.stderr
    assert "attention_dropout: must be in [0, 1]" in done.stderr
