"""Shared fixtures. Most tests use a tiny randomly initialised BERT (configs/tiny.yaml); tests marked
`integration` use the real packaged base model."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REAL_DEV = SHARED / "eval" / "real_dev.jsonl"


@pytest.fixture(scope="session", autouse=True)
def _own_graph_cache(tmp_path_factory):
    """The int8 graph cache lives in the session's tmp folder unless NEWSTAGGER_CACHE is set: a cache in
    the user's home, left by another version, must not decide what a test measures."""
    if "NEWSTAGGER_CACHE" not in os.environ:
        os.environ["NEWSTAGGER_CACHE"] = str(tmp_path_factory.mktemp("graph-cache"))
    yield


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def real_dev() -> Path:
    if not REAL_DEV.exists():
        pytest.skip(f"{REAL_DEV} is absent (../shared not beside the checkout)")
    return REAL_DEV


def _tiny_config(tmp: Path, **overrides):
    from newstagger.config import load_config

    values = [f"output_dir={tmp / 'model'}"] + [f"{k}={v}" for k, v in overrides.items()]
    return load_config(ROOT / "configs" / "tiny.yaml", values)


@pytest.fixture(scope="session")
def tiny_config():
    """``tiny_config(tmp, **overrides)``: configs/tiny.yaml with output_dir under ``tmp`` and overrides."""
    return _tiny_config


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny model trained briefly on data/ (a few seconds), saved as a complete folder."""
    from newstagger.training import train

    tmp = tmp_path_factory.mktemp("tiny")
    cwd = os.getcwd()
    os.chdir(ROOT)  # configs name data/ relative to the repository root
    try:
        return train(_tiny_config(tmp, max_steps=12, keep_checkpoints=True))  # test_cli resumes from them
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="session")
def onnx_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """A copy of tiny_model_dir with its default ONNX export (about 15 s: the heads' torch.export)."""
    import shutil

    from newstagger.onnx_export import export_onnx

    folder = tmp_path_factory.mktemp("onnx") / "model"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("onnx"))
    export_onnx(folder)
    return folder


def load_bench(name: str):
    """A script of bench/ as a module (bench/ is not a package the tests import from)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
