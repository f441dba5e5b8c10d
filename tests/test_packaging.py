"""The built wheel: the default config ships inside it, the console script is declared, and the core
dependencies (what tagging with the ONNX backend needs) have no torch; the torch-free runtime is exercised in
tests/test_onnx_export.py."""

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # a copy of the tracked files, so the build leaves no build/ or egg-info in the checkout
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        source, target = ROOT / name, build / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        elif source.is_file():
            target.write_bytes(source.read_bytes())
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(build)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    (path,) = out.glob("newstagger-*.whl")
    return path


def test_the_wheel_ships_the_default_config_and_the_console_script(wheel):
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert "newstagger/configs/default.yaml" in names
        shipped = z.read("newstagger/configs/default.yaml")
        entry_points = next(z.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert shipped == (ROOT / "configs" / "default.yaml").read_bytes()
    assert "newstagger = newstagger.cli:entry_point" in entry_points


def test_core_dependencies_have_no_torch(wheel):
    with zipfile.ZipFile(wheel) as z:
        metadata = Parser().parsestr(next(z.read(n).decode() for n in z.namelist() if n.endswith(".dist-info/METADATA")))
    requires = metadata.get_all("Requires-Dist")
    core = [r for r in requires if "extra ==" not in r]
    names = {r.split(">")[0].split("=")[0].split("<")[0].split("[")[0].strip().lower() for r in core}
    assert {"onnxruntime", "tokenizers", "numpy", "pyarrow"} <= names
    assert not names & {"torch", "transformers", "accelerate", "scikit-learn"}
    torch_extra = [r for r in requires if "extra == \"torch\"" in r]
    torch_pins = [r.split(";")[0] for r in torch_extra if r.startswith("torch")]
    assert torch_pins and not any("==" in pin for pin in torch_pins)  # the Makefile pins this machine's wheel
