"""bench/bench_own_labels.py: its corpus is what a user exports, and newstagger trains on it and tags."""

import csv
import dataclasses
import json

import pytest
from conftest import load_bench


@pytest.fixture(scope="module")
def bench():
    return load_bench("bench_own_labels")


@pytest.fixture(scope="module")
def corpus(bench, tmp_path_factory):
    """A tiny slice: 24 training articles of about 12 paragraphs."""
    return bench.build_corpus(tmp_path_factory.mktemp("own_labels"), articles=24, paragraphs=12, max_test=8)


def _rows(path):
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _paragraphs(rows):
    return {p for r in rows for p in r["body"].split("\n\n")}


def test_the_corpus_is_a_users_csv_export(bench, corpus, root):
    from newstagger.data import load_bank

    splits = {name: _rows(corpus[name]["path"]) for name in ("train", "validation", *bench.TESTS)}
    ids = []
    for name, (header, rows) in splits.items():
        assert header == ["id", "title", "body", "topic"], name  # text only: no paragraphs, no flags
        assert len(rows) == corpus[name]["articles"] > 0
        ids += [int(r["id"]) for r in rows]  # numeric ids
        assert all(r["topic"] in bench.LABELS for r in rows)  # one label, as a plain string
        assert all(r["body"].strip() and "\n\n" in r["body"] for r in rows)  # paragraphs split by blank lines
    assert len(ids) == len(set(ids))
    train, validation, test, written, furnished = (splits[name][1] for name in ("train", "validation", *bench.TESTS))
    assert {r["topic"] for r in train} == set(bench.LABELS)
    assert 9 <= corpus["train"]["paragraphs_mean"] <= 15  # joined written articles, about 12 paragraphs
    # no written article in two splits, and none of the bank's furniture in any body
    assert not _paragraphs(train) & _paragraphs(test) and not _paragraphs(train) & _paragraphs(validation)
    assert not _paragraphs(train) & _paragraphs(written)
    bank = {e.text for e in load_bank(root / "data" / "source" / "boilerplate_bank.jsonl")}
    assert not bank & (_paragraphs(train) | _paragraphs(test) | _paragraphs(written))
    # the furnished test articles carry furniture of outlets that training's augmentation bank lacks
    furniture = _paragraphs(furnished) - _paragraphs(written)
    bank_train = {json.loads(line)["text"] for line in open(corpus["bank"]["path"], encoding="utf-8")}
    assert furniture and not furniture & bank_train


@pytest.mark.parametrize("vector_encoder", ["torch", "int8"])
def test_newstagger_trains_on_the_csv_and_tags(bench, corpus, root, tmp_path, monkeypatch, vector_encoder):
    from newstagger.config import load_config
    from newstagger.predictor import Predictor
    from newstagger.training import train

    monkeypatch.chdir(root)  # the config names the boilerplate bank relative to the repository root
    config = load_config(root / "configs" / "tiny.yaml", [
        f"train_file={corpus['train']['path']}", f"validation_file={corpus['validation']['path']}",
        f"test_file={corpus['test']['path']}", "text_column=body", "label_column=topic", "id_column=id",
        "problem_type=single_label_classification", "encoder_mode=frozen", "max_steps=3",
        f"vector_cache_dir={tmp_path / 'vectors'}", f"output_dir={tmp_path / 'model'}",
        f"vector_encoder={vector_encoder}"])
    folder = train(dataclasses.replace(config, labels=[]))  # labels inferred from the topic column

    tagger = Predictor.from_pretrained(folder)
    assert sorted(tagger.labels) == sorted(bench.LABELS)
    _, test = _rows(corpus["test"]["path"])
    result = tagger.predict(test[0]["body"])
    # single-label: one topic, the likeliest; none only when every paragraph is flagged (a 3-step tiny
    # model's boilerplate head sits near its threshold, so either can happen)
    assert len(result.topics) == (1 if not all(result.boilerplate) else 0)
    assert set(result.topics) <= set(bench.LABELS)
    assert len(result.boilerplate) == len(test[0]["body"].split("\n\n"))
    report = json.loads((folder / "eval_report.json").read_text())["test"]["topics"]
    assert sum(map(sum, report["confusion"])) == len(test) and 0 <= report["accuracy"] <= 1
    # the benchmark's cost of the repeats it did not encode: each repeat once more, with the run's encoder
    distinct = list(dict.fromkeys(p for row in test[:2] for p in row["body"].split("\n\n") if p.strip()))
    assert bench.encode_repeats(folder, distinct + distinct[:3], vector_encoder, 8)[1] == 3
    assert list((tmp_path / "vectors").glob("*.npz"))[0].stem.endswith("-int8") == (vector_encoder == "int8")
