"""Batch tagging with Ray Data (newstagger.ray_tagging) on a real local Ray instance of 2 CPUs, 2 actors.

Inputs are several JSONL and Parquet shards holding good records, records without an id and bad records;
the output must hold every input record exactly once, the good ones tagged exactly as the single-process
Predictor tags them, the bad ones as error rows. About 40-50 s on 2 cores (Ray start, actor start-up x2).
"""

import json
import math
import os
import shutil
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'newstagger[ray]' (ray[data]==2.60.0)")
pytest.importorskip("ray.data", reason="ray[data] is not installed: pip install 'newstagger[ray]'")

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from newstagger.cli import main as cli_main  # noqa: E402
from newstagger.inputs import Limits  # noqa: E402
from newstagger.predictor import ArticleError, Predictor  # noqa: E402
from newstagger.ray_tagging import RAY_PATH_PROBLEM, SUCCESS_FILE, connect, read_output  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv) -> int:
    """``newstagger tag --engine ray ...`` in-process."""
    return cli_main(["tag", "--engine", "ray", *argv])


@pytest.fixture(scope="module")
def ray_instance():
    """A private local Ray instance with 2 CPUs, started the way the tagger starts one."""
    if ray.is_initialized():
        ray.shutdown()
    assert connect(num_cpus=2)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Input shards (2 JSONL + 1 Parquet) and, per (file name, row), what must come out."""
    folder = tmp_path_factory.mktemp("ray_inputs")
    records = [json.loads(line) for line in (ROOT / "data" / "validation.jsonl").read_text().splitlines() if line]
    records = records[:24]
    expected = {}  # (file name, row) -> ("ok", id, article for Predictor) or ("error", id, words in message)

    lines_a = []
    for r in records[:8]:
        lines_a.append(json.dumps(r))
        expected[("a.jsonl", len(lines_a))] = ("ok", r["id"], {"id": r["id"], "title": r["title"],
                                                               "paragraphs": r["paragraphs"]})
    lines_a.append("")  # a blank line: no record, but it counts for line numbers
    lines_a.append(json.dumps({"id": "bad-empty", "title": "t", "paragraphs": []}))
    expected[("a.jsonl", len(lines_a))] = ("error", "bad-empty", "paragraphs: the article has no non-empty")
    lines_a.append("{not json")
    expected[("a.jsonl", len(lines_a))] = ("error", f"a.jsonl:{len(lines_a)}", "record: invalid JSON")
    lines_a.append(json.dumps({"id": "bad-type", "paragraphs": "one string, not a list"}))
    expected[("a.jsonl", len(lines_a))] = ("error", "bad-type", "paragraphs: expected a list of paragraph strings")
    (folder / "a.jsonl").write_text("\n".join(lines_a) + "\n", encoding="utf-8")

    lines_b = []
    for r in records[8:16]:  # no id, text instead of paragraphs: id from file and line
        lines_b.append(json.dumps({"title": r["title"], "text": "\n\n".join(r["paragraphs"])}))
        rid = f"b.jsonl:{len(lines_b)}"
        expected[("b.jsonl", len(lines_b))] = ("ok", rid, {"id": rid, "title": r["title"],
                                                           "text": "\n\n".join(r["paragraphs"])})
    lines_b.append(json.dumps({"id": "bad-missing", "title": "no text at all"}))
    expected[("b.jsonl", len(lines_b))] = ("error", "bad-missing", "text: missing")
    (folder / "b.jsonl").write_text("\n".join(lines_b) + "\n", encoding="utf-8")

    rows = []
    for i, r in enumerate(records[16:24]):
        rid = None if i % 3 == 0 else r["id"]  # some rows without id: id from file and row
        rows.append({"id": rid, "title": r["title"], "paragraphs": r["paragraphs"], "outlet": "x"})
        rid = rid or f"c.parquet:{len(rows)}"
        expected[("c.parquet", len(rows))] = ("ok", rid, {"id": rid, "title": r["title"],
                                                          "paragraphs": r["paragraphs"]})
    rows.append({"id": "bad-blank", "title": "t", "paragraphs": ["   ", ""], "outlet": "x"})
    expected[("c.parquet", len(rows))] = ("error", "bad-blank", "paragraphs: the article has no non-empty")
    pq.write_table(pa.Table.from_pylist(rows), folder / "c.parquet")
    return folder, expected


def reference(model_dir, expected):
    """What the single-process Predictor makes of each good record: to_record() by (file, row)."""
    predictor = Predictor.from_pretrained(model_dir, limits=Limits())  # the limits both engines use
    keys = [k for k, v in expected.items() if v[0] == "ok"]
    results = predictor.predict_batch_safe([expected[k][2] for k in keys])
    assert not any(isinstance(r, ArticleError) for r in results)
    return {k: r.to_record() for k, r in zip(keys, results)}


def assert_same_record(got: dict, want: dict, where):
    assert got["id"] == want["id"], where
    assert got["error"] is None, (where, got["error"])
    assert got["topics"] == want["topics"], where
    assert set(got["topic_scores"]) == set(want["topic_scores"]), where
    for label, score in want["topic_scores"].items():
        assert math.isclose(got["topic_scores"][label], score, abs_tol=1e-5), (where, label)
    assert len(got["paragraphs"]) == len(want["paragraphs"]), where
    for g, w in zip(got["paragraphs"], want["paragraphs"]):
        assert (g["index"], g["boilerplate"]) == (w["index"], w["boilerplate"]), where
        assert math.isclose(g["score"], w["score"], abs_tol=1e-5), where
    assert got["evidence"] == want["evidence"], where
    assert got["clean_text"] == want["clean_text"], where


def check_output(output: Path, corpus_folder: Path, expected: dict, model_dir, named: str | None = None):
    """``named``: the input folder as the command named it (default: its absolute path)."""
    rows = read_output(output)
    keys = [(Path(r["source_path"]).name, r["source_row"]) for r in rows]
    assert sorted(keys) == sorted(expected), "every input record must come out exactly once"
    assert {Path(r["source_path"]).parent for r in rows} == {corpus_folder.resolve()}
    want = reference(model_dir, expected)
    by_key = dict(zip(keys, rows))
    for key, (kind, rid, detail) in expected.items():
        got = by_key[key]
        if kind == "ok":
            assert_same_record(got, want[key], key)
        else:
            assert got["id"] == rid, key
            # the file as the user named it, as the local engine writes it; source_path is what Ray opened
            assert got["error"].startswith(f"{named or corpus_folder}/{key[0]}:{key[1]}: "), got["error"]
            assert detail in got["error"], (key, got["error"])
            assert all(got[f] is None for f in ("topics", "topic_scores", "paragraphs", "evidence", "clean_text"))
    success = json.loads((output / SUCCESS_FILE).read_text())
    assert success["records"] == len(expected)
    assert success["errors"] == sum(1 for v in expected.values() if v[0] == "error")
    assert success["blank_lines"] == 1  # a.jsonl's blank line: not a record, but counted
    assert success["options"]["num_actors"] == 2
    return rows


def test_a_local_ray_run_prints_only_the_summary(corpus, tiny_model_dir, tmp_path):
    """`newstagger tag --engine ray` without --ray-address, stderr not a terminal: the run summary and nothing
    of Ray's (a new user saw a token-authentication note, a core_worker.cc "E" line about max_restarts and
    165 INFO progress lines for 564 articles). First in this file: it starts its own Ray, as a user's does."""
    import os
    import subprocess
    import sys

    folder, expected = corpus
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(HF_HUB_OFFLINE="1", PYTHONWARNINGS="ignore::DeprecationWarning")
    done = subprocess.run([sys.executable, "-m", "newstagger.cli", "tag", "--engine", "ray", "--model",
                           str(tiny_model_dir), str(folder), "--output", str(tmp_path / "tags"), "--num-actors", "1"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr  # some records of the corpus are error rows
    errors = sum(1 for kind, _, _ in expected.values() if kind == "error")
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"records: {len(expected)}, tagged: {len(expected) - errors}, errors: {errors}, ")
    assert len(read_output(tmp_path / "tags")) == len(expected)


def test_ray_tags_parquet_and_jsonl_shards_like_the_predictor(ray_instance, corpus, tiny_model_dir, tmp_path,
                                                              monkeypatch, capsys):
    folder, expected = corpus
    assert ray.nodes()[0]["NodeManagerAddress"] == "127.0.0.1", "the local instance must stay on loopback"
    assert ray.cluster_resources()["CPU"] == 2
    output = tmp_path / "tags"
    monkeypatch.chdir(folder.parent)  # inputs named by relative paths, as a user types them
    argv = ["--model", str(tiny_model_dir), f"{folder.name}/a.jsonl", f"{folder.name}/b.jsonl",
            f"{folder.name}/c.parquet", "--output", str(output), "--num-actors", "2", "--num-threads", "1",
            "--chunk-size", "4", "--output-format", "parquet"]
    assert main(argv) == 1  # the job completes; 1 says some records are error rows
    shards = sorted(p.name for p in output.iterdir())
    assert shards and all(n.endswith(".parquet") for n in shards if n != SUCCESS_FILE)
    schema = pq.read_schema(next(output.glob("*.parquet")))
    assert schema.names == ["id", "topics", "topic_scores", "paragraphs", "evidence", "clean_text", "error",
                            "source_path", "source_row"]
    check_output(output, folder, expected, tiny_model_dir, named=folder.name)

    # A complete output folder is skipped on a re-run (no job), with the exit status of the run that wrote it
    # (its error rows), so `|| echo failed` still sees them; --overwrite would redo it.
    before = {p.name: p.stat().st_mtime_ns for p in output.iterdir()}
    capsys.readouterr()
    assert main(argv) == 1
    errors = sum(1 for kind, _, _ in expected.values() if kind == "error")
    assert f"already complete: nothing to do ({len(expected)} records, {errors} errors)" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in output.iterdir()} == before

    # ... but not when it was written with another model, backend, limits, columns or inputs: refused, as
    # --resume refuses a local output of other settings
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other, ignore=shutil.ignore_patterns("onnx"))
    config = json.loads((other / "config.json").read_text())
    config["boilerplate_threshold"] = 0.9  # same weights, other thresholds: other rows
    (other / "config.json").write_text(json.dumps(config))
    changed = {"model config (labels, thresholds)": ["--model", str(other), *argv[2:]],
               "backend": [*argv, "--backend", "onnx"], "limits": [*argv, "--max-paragraphs", "5"],
               "columns": [*argv, "--id-column", "id"], "inputs": [*argv[:3], *argv[5:]],  # a.jsonl only
               "output-format": [*argv, "--output-format", "jsonl"],
               "inputs (files, or their size or modification time)": argv}  # b.jsonl touched since
    for what, args in changed.items():
        if what.startswith("inputs ("):  # the same files, one of them since rewritten (here: only touched)
            b = folder / "b.jsonl"
            os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 1_000_000_000))
        assert main(args) == 2, what
        err = capsys.readouterr().err.strip()
        assert "finished with other settings: " in err and what in err and "use --overwrite" in err, err
        assert len(err.splitlines()) == 1, err
    assert {p.name: p.stat().st_mtime_ns for p in output.iterdir()} == before


def test_ray_jsonl_output_is_to_record(ray_instance, corpus, tiny_model_dir, tmp_path, capsys):
    folder, expected = corpus
    output = tmp_path / "tags"
    # An unfinished earlier run left a shard behind: it is cleared, not mixed in.
    output.mkdir()
    (output / "stale_000000.jsonl").write_text('{"id": "stale"}\n')
    status = main(["--model", str(tiny_model_dir), str(folder), "--output", str(output), "--num-actors", "2",
                   "--output-format", "jsonl", "--chunk-size", "8"])
    assert status == 1
    err = capsys.readouterr().err
    assert "errors: 5" in err and "; 1 blank line skipped (not records: join outputs to inputs by id)" in err
    assert not (output / "stale_000000.jsonl").exists()
    rows = check_output(output, folder, expected, tiny_model_dir)
    ok = [r for r in rows if r["error"] is None]
    assert list(ok[0]) == ["id", "topics", "topic_scores", "paragraphs", "evidence", "clean_text", "error",
                           "source_path", "source_row"]


def test_an_output_folder_another_run_writes_is_refused(tiny_model_dir, corpus, tmp_path, capsys):
    """Two Ray runs into one folder both succeeded and mixed their shards (a hostile trial): the folder is
    locked as the local engine's output file is (newstagger.batch.OutputLock), before Ray starts."""
    import fcntl

    folder, _ = corpus
    output = tmp_path / "tags"
    with open(tmp_path / ".tags.lock", "w") as held:  # what a running `--engine ray -o tags` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(["--model", str(tiny_model_dir), str(folder), "--output", str(output)]) == 2
    assert "tags: another newstagger run is writing it" in capsys.readouterr().err
    assert not output.exists()
    from newstagger.batch import OutputLock

    nested = tmp_path / "new" / "deeper" / "tags"  # a new output folder's parents are made, as Ray makes them
    with OutputLock(nested, folder=True) as lock:
        assert lock.fd is not None and (tmp_path / "new" / "deeper" / ".tags.lock").exists()


def test_output_folder_with_other_files_is_refused(tiny_model_dir, corpus, tmp_path, capsys):
    folder, _ = corpus
    output = tmp_path / "tags"
    output.mkdir()
    (output / "notes.txt").write_text("mine")
    status = main(["--model", str(tiny_model_dir), str(folder), "--output", str(output)])
    assert status == 2
    assert "notes.txt" in capsys.readouterr().err
    assert (output / "notes.txt").read_text() == "mine"


def test_ray_gives_the_local_engines_ids_for_same_named_files_in_sub_folders(ray_instance, tiny_model_dir,
                                                                             tmp_path, monkeypatch):
    """A record without an id is named by its file's path inside the input folder, on both engines alike:
    two 2024.jsonl and two 2024.parquet in sub-folders, two story.txt, a dangling link. Error lines name the
    file as the user named it (here a relative folder), on both engines alike. A file name holding a newline,
    which Ray Data cannot open (it drops the newline from the path and read another file or crashed), is one
    error row, its path quoted so the error stays on one line."""
    monkeypatch.chdir(tmp_path)
    corpus = Path("corpus")
    for sub in ("a", "b"):
        (corpus / sub).mkdir(parents=True)
        lines = [json.dumps({"text": f"Talks resumed in {sub}."}), json.dumps({"title": "no text"})]
        (corpus / sub / "2024.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        pq.write_table(pa.Table.from_pylist([{"id": None, "text": f"Sanctions in {sub}."},
                                             {"id": "kept", "text": "An id of its own."}]),
                       corpus / sub / "2024.parquet")
    for sub in ("x", "y"):
        (corpus / sub).mkdir()
        (corpus / sub / "story.txt").write_text(f"A story from {sub}.", encoding="utf-8")
    (corpus / "y" / "gone.txt").symlink_to(tmp_path / "nowhere.txt")
    ids = ["a/2024.jsonl:1", "a/2024.jsonl:2", "a/2024.parquet:1", "kept", "b/2024.jsonl:1", "b/2024.jsonl:2",
           "b/2024.parquet:1", "kept", "x/story.txt", "y/gone.txt", "y/story.txt"]

    local = tmp_path / "local.jsonl"
    assert cli_main(["tag", "--model", str(tiny_model_dir), str(corpus), "--output", str(local)]) == 1
    local_rows = [json.loads(line) for line in local.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in local_rows] == ids

    (corpus / "z").mkdir()
    odd = corpus / "z" / "new\nline.jsonl"
    odd.write_text(json.dumps({"text": "An odd file name."}) + "\n", encoding="utf-8")
    (corpus / "z" / "newline.jsonl").write_text(json.dumps({"text": "What Ray read instead."}) + "\n")
    output = tmp_path / "tags"
    assert main(["--model", str(tiny_model_dir), str(corpus), "--output", str(output), "--num-actors", "1",
                 "--output-format", "jsonl"]) == 1
    rows = read_output(output)
    assert sorted(r["id"] for r in rows) == sorted(ids + ["z/new\nline.jsonl:1", "z/newline.jsonl:1"])
    # Errors name the path as given (here relative, on both engines), quoted when it holds a newline;
    # source_path is the absolute path Ray's workers opened
    errors = {r["id"]: r["error"] for r in rows if r["error"]}
    assert errors.pop("z/new\nline.jsonl:1") == f"{str(odd)!r}:1: {RAY_PATH_PROBLEM}"
    assert errors == {r["id"]: r["error"] for r in local_rows if "error" in r}
    assert errors["y/gone.txt"].startswith("corpus/y/gone.txt: file: ")
    assert {Path(r["source_path"]).is_absolute() for r in rows} == {True}
    by_id = {r["id"]: r for r in rows if r["error"] is None}
    for record in local_rows:
        if "error" not in record and record["id"] != "kept":
            assert (by_id[record["id"]]["clean_text"], by_id[record["id"]]["topics"]) == (record["clean_text"],
                                                                                         record["topics"])


def test_an_actor_leaves_no_copy_of_the_shipped_model_behind(ray_instance, tiny_model_dir, tmp_path, monkeypatch):
    """A model small enough is shipped through the object store and written to a temporary folder on each
    node for loading; the folder is removed once the Predictor is loaded (one per actor per run would fill
    the nodes' temp space)."""
    import tempfile

    from newstagger.batch import TagOptions
    from newstagger.ray_tagging import TaggingActor, _ship_model

    shipped = _ship_model(str(tiny_model_dir))
    assert isinstance(shipped, dict)  # the tiny model goes by the object store, not by path
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the actor's temporary folder goes
    actor = TaggingActor(shipped, TagOptions(model=str(tiny_model_dir), inputs=[], output=None))
    assert list(tmp_path.iterdir()) == []
    article = {"id": "a", "paragraphs": ["Diplomats met in Geneva on Monday.", "Subscribe to our newsletter."]}
    want = Predictor.from_pretrained(tiny_model_dir).predict(article)
    got = actor.predictor.predict(article)
    assert got.topic_scores == pytest.approx(want.topic_scores, abs=1e-5)
