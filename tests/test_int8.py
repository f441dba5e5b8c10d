"""The int8 backend (ONNX Runtime int8 encoder, torch heads): its encoder graph comes from the folder's
export or from a cache keyed by the weights, never written into the model folder on load."""

import json
import shutil

import numpy as np
import pytest

from newstagger.data import load_articles
from newstagger.predictor import Predictor


def test_int8_builds_its_encoder_in_a_cache_keyed_by_the_weights(tiny_model_dir, tmp_path, monkeypatch, root):
    monkeypatch.setenv("NEWSTAGGER_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("onnx"))
    articles = load_articles(root / "data" / "validation.jsonl").articles[:12]
    fp32 = Predictor.from_pretrained(folder, backend="torch")
    int8 = Predictor.from_pretrained(folder, backend="int8")
    assert not (folder / "onnx").exists()  # the model folder is not written
    (entry,) = (tmp_path / "cache").iterdir()
    assert (entry / "encoder-int8.onnx").exists()
    for (t32, b32, *_), (t8, b8, *_) in zip(fp32.score(articles), int8.score(articles)):
        assert np.abs(t32 - t8).max() < 0.05 and np.abs(b32 - b8).max() < 0.05
    again = Predictor.from_pretrained(folder, backend="int8")  # the cached graph
    assert again.predict(articles[0]).to_record() == int8.predict(articles[0]).to_record()
    # new weights: a new cache entry, never the old graph
    from safetensors.numpy import load_file, save_file

    weights = load_file(folder / "model.safetensors")
    name = next(k for k in weights if k.endswith("attention.self.query.weight"))
    weights[name] = weights[name] * 0.5
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    changed = Predictor.from_pretrained(folder, backend="int8")
    assert len(list((tmp_path / "cache").iterdir())) == 2
    packed = int8.tokenizer.pack(articles[:2], 64)
    assert not np.allclose(changed.engine.encode(packed.input_ids, packed.attention_mask),
                           int8.engine.encode(packed.input_ids, packed.attention_mask))


def test_a_cache_entry_of_another_recipe_or_quantization_is_rebuilt_not_used(tiny_model_dir, tmp_path,
                                                                              monkeypatch):
    """CI once tagged with a graph an older recipe had cached under the same weights (training is
    deterministic, so the weights digest matched): 0.024 topic F1 lost without a word."""
    from newstagger import onnx_export

    monkeypatch.setenv("NEWSTAGGER_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("onnx"))
    article = {"title": "Talks", "paragraphs": ["The ministers met in Geneva.", "Subscribe to our newsletter."]}
    first = Predictor.from_pretrained(folder, backend="int8").predict(article).to_record()
    (entry,) = (tmp_path / "cache").iterdir()
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["quantization"] == onnx_export.DEFAULT_QUANTIZATION
    assert manifest["graph_recipe"] == onnx_export.GRAPH_RECIPE
    for stale in ({"graph_recipe": onnx_export.GRAPH_RECIPE - 1}, {"quantization": "per-token"}):
        (entry / "encoder-int8.onnx").write_bytes(b"not a graph")  # what a stale entry holds is not ours to run
        (entry / "manifest.json").write_text(json.dumps({**manifest, **stale}))
        again = Predictor.from_pretrained(folder, backend="int8").predict(article).to_record()
        assert again == first
        assert json.loads((entry / "manifest.json").read_text())["graph_recipe"] == onnx_export.GRAPH_RECIPE


def test_unknown_backend_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="backend must be one of torch, int8, onnx"):
        Predictor.from_pretrained(tiny_model_dir, backend="fp16")
