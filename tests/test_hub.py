"""newstagger.hub: Hub ids load from the local Hub cache when offline and fail clearly otherwise; pushing is
refused offline and for a folder that cannot be used, before anything is sent. (The Hub itself is not
reachable from CI: these are the offline halves of both paths.)"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from newstagger import cli
from newstagger.hub import HubError, is_hub_id, resolve_model
from newstagger.predictor import Predictor


def test_hub_ids_and_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("someone/newstagger-news") and not is_hub_id("runs") and not is_hub_id("../x/y")
    (tmp_path / "someone" / "local").mkdir(parents=True)
    assert not is_hub_id("someone/local")  # an existing path is always the local folder
    assert resolve_model("someone/local") == tmp_path / "someone" / "local" or \
        resolve_model("someone/local").resolve() == (tmp_path / "someone" / "local").resolve()


def test_an_uncached_hub_id_offline_fails_with_what_to_do():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(HubError, match=r"someone/not-cached: no such model folder; read as a Hugging Face Hub id, HF_HUB_OFFLINE=1 forbids"):
        Predictor.from_pretrained("someone/not-cached")


def test_tag_with_an_uncached_hub_id_offline_is_a_usage_error(tmp_path, capsys):
    text = tmp_path / "a.txt"
    text.write_text("One paragraph.\n\nAnother.")
    assert cli.main(["tag", "--model", "someone/not-cached", str(text)]) == cli.EXIT_USAGE
    assert "HF_HUB_OFFLINE=1 forbids fetching it" in capsys.readouterr().err


LOAD = """
import sys
from newstagger import Predictor
print(",".join(Predictor.from_pretrained(sys.argv[1]).labels))
"""


def test_a_hub_id_in_the_local_cache_loads_offline(tiny_model_dir, tmp_path):
    """The Hub cache's own layout (models--owner--name/{refs,snapshots}), as snapshot_download leaves it."""
    repo = tmp_path / "hub" / "models--someone--tagger"
    commit = "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
    out = subprocess.run([sys.executable, "-c", LOAD, "someone/tagger"], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    labels = json.loads((tiny_model_dir / "config.json").read_text())["labels"]
    assert out.stdout.strip() == ",".join(labels)


def test_push_to_hub_is_refused_offline_and_for_a_broken_folder(tiny_model_dir, tmp_path, capsys):
    assert cli.main(["export", "--model", str(tiny_model_dir), "--push-to-hub", "someone/tagger"]) == cli.EXIT_USAGE
    assert "HF_HUB_OFFLINE=1 forbids reaching the Hugging Face Hub" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken, ignore=shutil.ignore_patterns("onnx"))
    (broken / "model.safetensors").unlink()
    assert cli.main(["export", "--model", str(broken), "--push-to-hub", "someone/tagger"]) == cli.EXIT_USAGE
    assert "model.safetensors: missing" in capsys.readouterr().err
    assert cli.main(["export", "--model", str(tiny_model_dir), "--push-to-hub", "not a repo"]) == cli.EXIT_USAGE
    assert "expected a Hub repository id" in capsys.readouterr().err
