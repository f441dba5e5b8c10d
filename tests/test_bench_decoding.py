"""bench/bench_decoding.py: each penalty's row is what newstagger evaluate gives at that penalty, with the
encoder run once."""

import json

import pytest
from conftest import load_bench


@pytest.fixture(scope="module")
def bench_decoding():
    return load_bench("bench_decoding")


def test_each_row_is_the_evaluation_at_that_penalty(bench_decoding, tiny_model_dir, root, tmp_path):
    import numpy as np

    from newstagger.data import load_articles
    from newstagger.metrics import evaluate_articles
    from newstagger.predictor import Predictor

    records = [json.loads(line) for line in (root / "data" / "test.jsonl").read_text().splitlines()][:12]
    small = tmp_path / "small.jsonl"
    small.write_text("".join(json.dumps(r) + "\n" for r in records))
    folder = tmp_path / "model"
    import shutil

    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    predictor = Predictor.from_pretrained(folder)
    articles = load_articles(small, predictor.labels).articles
    # a threshold among the tiny model's scores, so that decoding has something to decide
    config["boilerplate_threshold"] = float(np.median(np.concatenate([s.boilerplate for s in predictor.score(articles)])))
    config["boilerplate_transition_penalty"] = 1.25  # not one of decoding.PENALTIES: it gets its own row
    (folder / "config.json").write_text(json.dumps(config))

    result = bench_decoding.measure(str(folder), str(small))
    assert result["tuned"] == 1.25 and 1.25 in result["rows"] and result["rows"][0.0]["changed"] == 0
    assert any(r["changed"] > 0 for r in result["rows"].values())
    for penalty in (0.0, 1.25, 4.0):
        predictor = Predictor.from_pretrained(folder)
        predictor.boilerplate_transition_penalty = penalty
        report = evaluate_articles(predictor, articles)
        row = result["rows"][penalty]
        assert row["f1"] == pytest.approx(report["boilerplate"]["f1"])
        assert row["precision"] == pytest.approx(report["boilerplate"]["precision"])
        assert row["topic_macro_f1"] == pytest.approx(report["topics"]["macro_f1"])
