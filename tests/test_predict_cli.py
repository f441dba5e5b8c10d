"""predict.py and ``newstagger tag`` as a user runs them: a real subprocess killed with SIGKILL and resumed,
exit statuses, --pretty over a folder, byte-identical output of both commands, and agreement with the
Python API."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from newstagger.cli import main as cli_main
from newstagger.predictor import Predictor

ROOT = Path(__file__).resolve().parent.parent
PREDICT = ROOT / "predict.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
CORPUS_SIZE = 400


def predict_cmd(model, *args) -> list[str]:
    # One thread: the test machine is small and shared, and it keeps the run slow enough to kill midway.
    return [sys.executable, str(PREDICT), "--model", str(model), "--num-threads", "1", "--quiet", *map(str, args)]


def run_predict(model, *args, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(predict_cmd(model, *args), input=stdin, capture_output=True, cwd=ROOT, env=ENV,
                          timeout=300)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def assert_same_records(got: list[dict], want: list[dict]) -> None:
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for a, b in zip(got, want):
        assert set(a) == set(b)
        assert (a["topics"], a["evidence"], a["clean_text"]) == (b["topics"], b["evidence"], b["clean_text"])
        assert a["topic_scores"] == pytest.approx(b["topic_scores"], abs=1e-5)
        assert [p["boilerplate"] for p in a["paragraphs"]] == [p["boilerplate"] for p in b["paragraphs"]]
        assert [p["score"] for p in a["paragraphs"]] == pytest.approx([p["score"] for p in b["paragraphs"]], abs=1e-5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """400 articles: data/test.jsonl repeated with new ids."""
    records = [json.loads(line) for line in (ROOT / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    path = tmp_path_factory.mktemp("cli") / "corpus.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(CORPUS_SIZE):
            f.write(json.dumps({**records[i % len(records)], "id": f"art-{i:04d}"}) + "\n")
    return path


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, corpus) -> list[dict]:
    output = corpus.with_name("uninterrupted.jsonl")
    # Chunks of 16 here, of 2 in the killed and resumed runs: the results must not depend on chunking.
    done = run_predict(tiny_model_dir, corpus, "--output", output, "--chunk-size", "16")
    assert done.returncode == 0, done.stderr.decode()
    assert f"records: {CORPUS_SIZE}, tagged: {CORPUS_SIZE}, errors: 0" in done.stderr.decode()
    return read_jsonl(output)


def test_sigkill_then_resume_equals_an_uninterrupted_run(tiny_model_dir, corpus, uninterrupted, tmp_path):
    output = tmp_path / "killed.jsonl"
    proc = subprocess.Popen(predict_cmd(tiny_model_dir, corpus, "--output", output, "--chunk-size", "2"),
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        give_up = time.monotonic() + 300  # a guard against hanging, not an assertion on speed
        while proc.poll() is None and count_lines(output) < 20 and time.monotonic() < give_up:
            time.sleep(0.005)
        if proc.poll() is not None:
            pytest.fail(f"predict.py ended (status {proc.returncode}) before it could be killed mid-run")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    written = count_lines(output)
    assert 20 <= written < CORPUS_SIZE
    with open(output, "ab") as f:  # as if the kill had torn the record being written
        f.write(b'{"id": "art-9999", "topics": ["dipl')

    resumed = run_predict(tiny_model_dir, corpus, "--output", output, "--chunk-size", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert "of a torn last line" in resumed.stderr.decode()
    assert f"records: {CORPUS_SIZE} ({written} from the earlier run), tagged: {CORPUS_SIZE}, errors: 0" \
        in resumed.stderr.decode()
    assert_same_records(read_jsonl(output), uninterrupted)


def test_cli_gives_the_same_results_as_the_python_api(tiny_model_dir, corpus, uninterrupted):
    articles = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()[:50]]
    expected = [r.to_record() for r in Predictor.from_pretrained(tiny_model_dir).predict_batch(articles)]
    assert_same_records(uninterrupted[:50], expected)


def test_exit_status_is_1_when_a_record_fails_and_stdin_works(tiny_model_dir, corpus):
    lines = corpus.read_bytes().splitlines(keepends=True)[:3]
    stdin = lines[0] + b'{"id": "no-text"}\n' + lines[1] + b"\xff\xfe not json\n" + lines[2]
    done = run_predict(tiny_model_dir, "-", stdin=stdin)
    assert done.returncode == 1, done.stderr.decode()
    out = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [r["id"] for r in out] == ["art-0000", "no-text", "art-0001", "<stdin>:4", "art-0002"]
    assert out[1]["error"] == "<stdin>:2: text: missing (the record has neither 'paragraphs' nor 'text')"
    assert out[3]["error"].startswith("<stdin>:4: record: not valid UTF-8")
    assert "records: 5, tagged: 3, errors: 2" in done.stderr.decode()


def test_newstagger_tag_and_predict_py_write_the_same_bytes(tiny_model_dir, corpus, tmp_path):
    small = tmp_path / "small.jsonl"
    small.write_bytes(b"".join(corpus.read_bytes().splitlines(keepends=True)[:20]) + b'{"id": "bad"}\n')
    by_predict = tmp_path / "predict.jsonl"
    assert run_predict(tiny_model_dir, small, "-o", by_predict).returncode == 1
    by_cli = tmp_path / "cli.jsonl"
    done = subprocess.run([str(Path(sys.executable).parent / "newstagger"), "tag", "--model", str(tiny_model_dir),
                           "--num-threads", "1", "-q", str(small), "-o", str(by_cli)],
                          capture_output=True, cwd=ROOT, env=ENV, timeout=300)
    assert done.returncode == 1, done.stderr.decode()
    assert by_cli.read_bytes() == by_predict.read_bytes()
    assert by_cli.read_bytes().count(b"\n") == 21


def test_loading_a_model_prints_no_progress_bar_of_transformers(tiny_model_dir, corpus, tmp_path):
    """transformers 5 draws a "Loading weights" bar on every from_pretrained: noise in each tagging run's log."""
    small = tmp_path / "two.jsonl"
    small.write_bytes(b"".join(corpus.read_bytes().splitlines(keepends=True)[:2]))
    done = subprocess.run([str(Path(sys.executable).parent / "newstagger"), "tag", "--model", str(tiny_model_dir),
                           "--backend", "torch", "--num-threads", "1", str(small), "-o", str(tmp_path / "o.jsonl")],
                          capture_output=True, cwd=ROOT, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert "records: 2, tagged: 2" in done.stderr.decode() and "Loading weights" not in done.stderr.decode()


# The tests below call the CLI's main() in-process: the same code, without a subprocess's start-up time.

def tag_main(*argv) -> int:
    return cli_main(["tag", *map(str, argv)], prog="predict.py")


def test_usage_errors_exit_with_status_2(tiny_model_dir, corpus, tmp_path, capsys):
    existing = tmp_path / "out.jsonl"
    existing.write_text("earlier results\n")
    cases = [
        (["--model", str(tiny_model_dir), str(corpus), "--output", str(existing)], "already exists"),
        (["--model", str(tmp_path / "no-model"), str(corpus)], "not a model folder"),
        (["--model", str(tiny_model_dir), str(tmp_path / "missing.jsonl")], "missing.jsonl: no such file"),
        (["--model", str(tiny_model_dir), str(corpus), "--resume"], "stdout cannot be resumed"),
        (["--model", str(tiny_model_dir), "-", "--site-repeat"], "stdin cannot do"),
        (["--model", str(tiny_model_dir), str(corpus), "--site-repeat-min", "5"], "works with --site-repeat only"),
        (["--model", str(tiny_model_dir), str(corpus), "--batch-size", "0"], "--batch-size must be at least 1"),
        (["--model", str(tiny_model_dir), str(corpus), "--chunk-size", "-3"], "--chunk-size must be at least 1"),
        (["--model", str(tiny_model_dir), str(corpus), "--max-paragraphs", "0"], "max_paragraphs must be"),
        (["--model", str(tiny_model_dir), str(corpus), "-o", str(tmp_path / "no" / "out.jsonl")],
         "its folder " + str(tmp_path / "no") + " does not exist"),
        (["--model", str(tiny_model_dir), str(corpus), "--engine", "ray", "--resume", "-o", str(tmp_path / "r")],
         "--resume works with --engine local only"),
    ]
    for argv, message in cases:
        assert tag_main(*argv) == 2, argv
        assert message in capsys.readouterr().err
    assert existing.read_text() == "earlier results\n"


def test_pretty_reads_only_the_txt_files_of_a_folder(tiny_model_dir, tmp_path, capsysbinary):
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "moscow.txt").write_text("Foreign ministers met in Moscow.\n\nSupport independent journalism: "
                                       "donate today.\n", encoding="utf-8")
    (folder / "brief.txt").write_text("Sanctions were extended for six months.", encoding="utf-8")
    (folder / "expected.json").write_text(json.dumps({"moscow.txt": ["diplomacy"]}))
    assert tag_main("--model", tiny_model_dir, folder, "--pretty") == 0  # as `make run` does
    blocks = capsysbinary.readouterr().out.decode().strip().split("\n\n")
    assert [b.split()[0] for b in blocks] == ["brief.txt", "moscow.txt"]
    assert blocks[1].splitlines()[0] == "moscow.txt  (2 paragraphs)"
    assert all("topics:" in b and "content paragraphs:" in b for b in blocks)


def test_stdout_redirected_to_a_file_is_tagged_and_gets_no_run_record(tiny_model_dir, tmp_path):
    """`predict.py ... > out.jsonl` (what `make run` does with --pretty into a log): stdout is then a regular
    file, but not an --output, so no run record is written (a run crashed trying to write one for it)."""
    article = tmp_path / "a.txt"
    article.write_text("Talks resumed in Geneva on Monday.\n\nBoth delegations met for six hours.")
    out = tmp_path / "out.jsonl"
    with open(out, "wb") as stdout:
        done = subprocess.run(predict_cmd(tiny_model_dir, article), stdout=stdout, stderr=subprocess.PIPE,
                              cwd=ROOT, env=ENV, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert [r["id"] for r in read_jsonl(out)] == ["a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "out.jsonl"]


def test_a_file_name_with_a_newline_stays_on_its_one_error_line(tiny_model_dir, tmp_path, capsys):
    """`newstagger check` prints one problem per line and `tag` refuses an input in one line: a path holding
    a newline is quoted there (a name with a space is not)."""
    folder = tmp_path / "odd"
    folder.mkdir()
    odd, spaced = folder / "bad\nname.jsonl", folder / "two words.jsonl"
    for path in (odd, spaced):
        path.write_text(json.dumps({"id": path.stem, "title": "no text"}) + "\n", encoding="utf-8")
    assert cli_main(["check", str(folder)]) == 1
    missing = "text: missing (the record has neither 'paragraphs' nor 'text')"
    assert capsys.readouterr().err.splitlines() == [f"{str(odd)!r}:1: {missing}", f"{spaced}:1: {missing}"]
    absent = folder / "no\nsuch.jsonl"
    assert tag_main("--model", tiny_model_dir, absent) == 2
    assert capsys.readouterr().err.splitlines() == [f"predict.py: error: {str(absent)!r}: no such file or folder"]


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.csv"])
def test_an_empty_input_is_not_an_error_but_the_summary_says_so(tiny_model_dir, tmp_path, capsys, name):
    (tmp_path / name).write_text("")  # an empty CSV has no header either: no records, not "no text column"
    assert tag_main("--model", str(tiny_model_dir), str(tmp_path / name), "-o", str(tmp_path / "o.jsonl")) == 0
    err = capsys.readouterr().err
    assert "records: 0," in err and "the inputs held no records" in err
    assert (tmp_path / "o.jsonl").read_text() == ""
