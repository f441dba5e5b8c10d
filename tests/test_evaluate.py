"""``newstagger evaluate`` (newstagger.evaluate) as a user runs it, in-process: what it says about a file it
cannot score, and what its --json report holds."""

import json

from newstagger import cli


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


ARTICLE = {"title": "Talks", "paragraphs": ["Diplomats met in Geneva.", "Subscribe to our newsletter."]}


def test_a_file_without_labels_is_refused_in_evaluation_terms(tiny_model_dir, tmp_path, capsys):
    """A new user evaluated an unlabelled file and was told it had "nothing to learn from" (training's
    wording): evaluation has nothing to score against."""
    data = write_jsonl(tmp_path / "plain.jsonl", [{"id": "a", **ARTICLE}, {"id": "b", **ARTICLE}])
    assert cli.main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == (f"newstagger evaluate: error: {data}: no topics or boilerplate flags to score against (no "
                   "record has either; labels in a column of another name: --label-column NAME)")

    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"id": "a", **ARTICLE, "topics": ["diplomacy"]},
                                                  {"id": "b", **ARTICLE}])
    assert cli.main(["evaluate", "--model", str(tiny_model_dir), "--data", str(mixed), "--label-column",
                     "topics"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip().endswith(
        f"{mixed}: 1 of its 2 records (the first: 'b') have no topics or boilerplate flags to score against")


def test_json_report_says_what_was_measured(tiny_model_dir, tmp_path, capsys):
    """--json names the number of articles, the model folder and the backend, as the table's title does."""
    data = write_jsonl(tmp_path / "labelled.jsonl", [
        {"id": "a", **ARTICLE, "topics": ["diplomacy"], "boilerplate": [0, 1]},
        {"id": "b", **ARTICLE, "topics": []},  # topics only: scored on what it has
        {"id": "c", **ARTICLE, "boilerplate": [0, 1]}])
    assert cli.main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--json"]) == cli.EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert (report["articles"], report["model"], report["backend"]) == (3, str(tiny_model_dir), "torch")
    assert report["boilerplate"]["support"] == 2  # the flagged paragraphs of a and c
    assert set(report["topics"]["per_label"]) >= {"diplomacy"}


def test_the_file_is_given_as_tag_takes_it_or_with_data(tiny_model_dir, tmp_path, capsys):
    """`newstagger tag` takes its input as a plain argument; a new user typed evaluate the same way."""
    data = write_jsonl(tmp_path / "labelled.jsonl", [{"id": "a", **ARTICLE, "topics": ["diplomacy"], "boilerplate": [0, 1]}])
    reports = []
    for how in ([str(data)], ["--data", str(data)]):
        assert cli.main(["evaluate", "--model", str(tiny_model_dir), *how, "--json"]) == cli.EXIT_OK
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0] == reports[1] and reports[0]["articles"] == 1
    for how in ([], [str(data), "--data", str(data)]):  # neither, or both
        assert cli.main(["evaluate", "--model", str(tiny_model_dir), *how]) == cli.EXIT_USAGE
        assert "give the labelled file once" in capsys.readouterr().err
