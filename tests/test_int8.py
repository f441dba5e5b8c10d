"""The int8 backend (ONNX Runtime dynamic quantization of the encoder)."""

import numpy as np
import pytest

from newstagger.data import load_articles
from newstagger.predictor import Predictor

from conftest import ROOT


def test_int8_backend_tracks_fp32_and_caches_its_graph(tiny_model_dir):
    articles = load_articles(ROOT / "data" / "validation.jsonl").articles[:12]
    fp32 = Predictor.from_pretrained(tiny_model_dir, backend="torch")
    int8 = Predictor.from_pretrained(tiny_model_dir, backend="int8")
    assert (tiny_model_dir / "onnx" / "encoder-int8.onnx").exists()
    assert int8.model.encoder is None  # the fp32 encoder is gone: the ONNX graph does the encoding
    for (t32, b32, _), (t8, b8, _) in zip(fp32.score(articles), int8.score(articles)):
        assert np.abs(t32 - t8).max() < 0.05 and np.abs(b32 - b8).max() < 0.05
    again = Predictor.from_pretrained(tiny_model_dir, backend="int8")  # loads the cached graph
    one = articles[0]
    assert again.predict(one).to_record() == int8.predict(one).to_record()


def test_unknown_backend_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="backend must be"):
        Predictor.from_pretrained(tiny_model_dir, backend="fp16")
