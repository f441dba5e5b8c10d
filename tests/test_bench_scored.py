"""bench/scored.py: the bench scripts report a task the evaluation file does not label as None (n/a), by the
library's own rule, instead of crashing on it."""

import json

import pytest
from conftest import load_bench


@pytest.fixture(scope="module")
def bench_predict():
    return load_bench("bench_predict")


@pytest.mark.parametrize("dropped", ["boilerplate", "topics"])
def test_bench_predict_measures_only_the_task_a_file_labels(bench_predict, tiny_model_dir, root, tmp_path, dropped):
    from newstagger.data import load_articles
    from newstagger.metrics import evaluate_articles
    from newstagger.predictor import Predictor

    records = [json.loads(line) for line in (root / "data" / "test.jsonl").read_text().splitlines() if line.strip()]
    partial = tmp_path / f"no_{dropped}.jsonl"
    partial.write_text("".join(json.dumps({k: v for k, v in r.items() if k != dropped}) + "\n" for r in records[:6]))

    row = bench_predict.measure("torch", str(tiny_model_dir), str(partial), threads=1, repeat=1, profile=False)
    predictor = Predictor.from_pretrained(tiny_model_dir)
    expected = evaluate_articles(predictor, load_articles(partial, predictor.labels).articles)
    measured, missing = (("topic_macro_f1", "boilerplate_f1") if dropped == "boilerplate"
                         else ("boilerplate_f1", "topic_macro_f1"))
    assert row[missing] is None
    assert row[measured] == pytest.approx(expected["topics"]["macro_f1"] if dropped == "boilerplate"
                                          else expected["boilerplate"]["f1"])
    assert bench_predict.scored.cell(row[missing], ".4f", 8) == "     n/a"
    assert bench_predict.scored.cell(row[measured], ".4f", 8) == f"{row[measured]:>8.4f}"
