"""The local engine (newstagger.batch.tag_files) on every input format, on malformed input, on resume
and --site-repeat.

All tests tag with the tiny model of conftest.py; they check ids, order, error messages and that the
tagged records are the Predictor's own results, not just that something was written.
"""

import io
import json
import os
import re
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from newstagger.batch import InputError, tag_files
from newstagger.inputs import Limits
from newstagger.predictor import Predictor, split_paragraphs

ROOT = Path(__file__).resolve().parent.parent
TEST_JSONL = ROOT / "data" / "test.jsonl"
RECORD_KEYS = {"id", "topics", "topic_scores", "paragraphs", "evidence", "clean_text"}


@pytest.fixture(scope="module")
def predictor(tiny_model_dir) -> Predictor:
    return Predictor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def source_records() -> list[dict]:
    return [json.loads(line) for line in TEST_JSONL.read_text(encoding="utf-8").splitlines()]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def tag(model, inputs, tmp_path: Path, **options) -> tuple[object, list[dict]]:
    out = tmp_path / "out.jsonl"
    counts = tag_files(model, [str(i) for i in inputs], out, overwrite=True, progress=False, **options)
    return counts, read_jsonl(out)


def write_lines(path: Path, lines: list) -> Path:
    """Each item a dict (written as JSON) or raw bytes (written as they are), one per line."""
    with open(path, "wb") as f:
        for item in lines:
            f.write(item if isinstance(item, bytes) else json.dumps(item).encode("utf-8"))
            f.write(b"\n")
    return path


def assert_tagged(record: dict, n_paragraphs: int) -> None:
    assert set(record) == RECORD_KEYS, record.get("error")
    assert [p["index"] for p in record["paragraphs"]] == list(range(n_paragraphs))


# -- formats --------------------------------------------------------------------------------------


def test_jsonl_in_our_schema_gives_the_predictors_results_in_order(predictor, source_records, tmp_path):
    articles = source_records[:15]  # labelled records of data/test.jsonl, extra keys and all
    counts, out = tag(predictor, [write_lines(tmp_path / "ours.jsonl", articles)], tmp_path, chunk_size=4)
    assert [r["id"] for r in out] == [r["id"] for r in articles]
    assert (counts.records, counts.tagged, counts.errors, counts.exit_status) == (15, 15, 0, 0)
    expected = [r.to_record() for r in predictor.predict_batch(articles)]
    for got, want in zip(out, expected):
        assert_tagged(got, len(want["paragraphs"]))
        assert got["topics"] == want["topics"] and got["clean_text"] == want["clean_text"]
        for label, p in want["topic_scores"].items():
            assert got["topic_scores"][label] == pytest.approx(p, abs=1e-5)


def test_jsonl_records_with_text_get_line_ids(predictor, tmp_path):
    texts = ["Talks resumed in Geneva.\n\nBoth sides said progress was made.",
             "One line\nanother line\nand a third",
             "Sanctions were extended on Monday."]
    path = write_lines(tmp_path / "plain.jsonl", [{"text": texts[0]}, {"id": "given", "text": texts[1]}])
    with open(path, "ab") as f:
        f.write(b"\n" + json.dumps({"text": texts[2], "title": "Extended"}).encode() + b"\n")  # blank line 3
    counts, out = tag(predictor, [path], tmp_path)
    assert [r["id"] for r in out] == ["plain.jsonl:1", "given", "plain.jsonl:4"]
    assert counts.blank_lines == 1 and "; 1 blank line skipped (not records" in counts.summary()
    for record, text in zip(out, texts):
        assert_tagged(record, len(split_paragraphs(text)))
    assert [len(r["paragraphs"]) for r in out] == [2, 3, 1]


def test_summary_says_when_ids_repeat(predictor, tmp_path):
    """Found by a user trial: train, check and evaluate refuse a repeated id, tag kept it silently. Tagging
    keeps every record (one output per input), and the summary says a join by id would mix them."""
    table = tmp_path / "dup.csv"
    table.write_text("id,text\na1,One.\na2,Two.\na1,Three.\na2,Four.\n,Five.\n", encoding="utf-8")
    counts, out = tag(predictor, [table], tmp_path)
    assert [r["id"] for r in out] == ["a1", "a2", "a1", "a2", "dup.csv:6"]
    assert counts.duplicate_ids == 2
    assert "; 2 records repeat an earlier record's id (the first: 'a1'): a join of outputs to inputs by id" \
        in counts.summary()
    table.write_text("id,text\na1,One.\na2,Two.\n", encoding="utf-8")
    counts, _ = tag(predictor, [table], tmp_path)
    assert counts.duplicate_ids == 0 and "repeat" not in counts.summary()


def test_summary_says_how_many_blank_lines_were_skipped(predictor, source_records, tmp_path):
    """Blank JSONL lines are not records: the summary says how many there were, so that an output with fewer
    records than its input has lines is explained (a resumed run counts the earlier run's part too)."""
    first, second = (json.dumps(r).encode() for r in source_records[:2])
    spaced = tmp_path / "spaced.jsonl"
    spaced.write_bytes(b"\n" + first + b"\n\n \t \n" + second + b"\n")  # lines 1, 3 and 4 are blank
    plain = write_lines(tmp_path / "plain.jsonl", [source_records[2]])
    table = tmp_path / "table.csv"
    table.write_text('id,text\nc1,"One paragraph.\n\nAnother paragraph."\n', encoding="utf-8")  # not JSONL
    counts, out = tag(predictor, [spaced, plain, table], tmp_path)
    assert len(out) == counts.records == 4
    assert counts.blank_lines == 3
    assert "; 3 blank lines skipped (not records: join outputs to inputs by id)" in counts.summary()
    none, _ = tag(predictor, [plain, table], tmp_path)
    assert none.blank_lines == 0 and "blank" not in none.summary()

    reference = tmp_path / "reference.jsonl"
    tag_files(predictor, [str(spaced), str(plain)], reference, progress=False)
    output = tmp_path / "resumed.jsonl"
    output.write_bytes(reference.read_bytes().splitlines(keepends=True)[0])  # stopped after the first record
    resumed = tag_files(predictor, [str(spaced), str(plain)], output, resume=True, progress=False)
    assert (resumed.resumed, resumed.records, resumed.blank_lines) == (1, 3, 3)


def test_csv_with_text_and_id_columns(predictor, tmp_path):
    path = tmp_path / "news.csv"
    path.write_bytes(b'doc,body,outlet\n'
                     b'd1,"Ministers met in Vienna.\n\nThey agreed to meet again.",X\n'  # a cell over three lines
                     b',Single paragraph without an id,X\n'
                     b'd3,"Third article, one paragraph",Y\n')
    counts, out = tag(predictor, [path], tmp_path, text_column="body", id_column="doc")
    assert [r["id"] for r in out] == ["d1", "news.csv:5", "d3"]  # the line the row starts on
    assert [len(r["paragraphs"]) for r in out] == [2, 1, 1]
    assert counts.errors == 0
    # a .txt file given with it has no columns: it is one text, its id is its name
    story = tmp_path / "story.txt"
    story.write_text("A text file of two lines.\nThe second line.\n", encoding="utf-8")
    counts, out = tag(predictor, [path, story], tmp_path, text_column="body", id_column="doc")
    assert [r["id"] for r in out] == ["d1", "news.csv:5", "d3", "story.txt"]
    assert counts.errors == 0 and len(out[3]["paragraphs"]) == 2


def test_parquet_with_text_and_id_columns(predictor, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "news.parquet"
    pq.write_table(pa.table({"key": [101, None, 103], "content": ["A.\n\nB.\n\nC.", "Only one.", "X\n\nY"],
                             "other": ["a", "b", "c"]}), path)
    lists = tmp_path / "lists.parquet"  # a list column is taken as the paragraphs
    pq.write_table(pa.table({"key": ["L"], "content": [["first", "second", "third", "fourth"]]}), lists)
    counts, out = tag(predictor, [path, lists], tmp_path, text_column="content", id_column="key")
    assert [r["id"] for r in out] == ["101", "news.parquet:2", "103", "L"]
    assert [len(r["paragraphs"]) for r in out] == [3, 1, 2, 4]
    assert counts.tagged == 4


def test_txt_files_and_folders(predictor, tmp_path):
    folder = tmp_path / "examples"
    folder.mkdir()
    (folder / "b.txt").write_text("Second file.\n\nTwo paragraphs.\n", encoding="utf-8")
    (folder / "a.txt").write_text("First file, lines\nsplit on newlines\nthree of them\n", encoding="utf-8")
    (folder / "expected.json").write_text('{"a.txt": ["diplomacy"]}')  # not an article: must be ignored
    (folder / "notes.md").write_text("not an article either")  # not skipped in silence: an error record
    (folder / "sub.txt").mkdir()  # an (empty) sub-folder named like a file
    single = tmp_path / "c.txt"
    single.write_text("\ufeffWith a byte order mark.\r\n\r\nAnd Windows line ends.\r\n", encoding="utf-8")
    counts, out = tag(predictor, [folder, single], tmp_path)
    assert [r["id"] for r in out] == ["a.txt", "b.txt", "notes.md", "c.txt"]
    assert out[2]["error"] == f"{folder / 'notes.md'}: file: not a .txt/.jsonl/.ndjson/.csv/.parquet file (optionally .gz)"
    assert [len(r["paragraphs"]) for r in out if "error" not in r] == [3, 2, 2]
    result = predictor.predict(single.read_text(encoding="utf-8-sig"))
    assert out[3]["topics"] == result.topics
    assert [p["score"] for p in out[3]["paragraphs"]] == pytest.approx(result.paragraph_scores, abs=1e-5)


MISSING_TEXT = "text: missing (the record has neither 'paragraphs' nor 'text')"


def test_null_paragraphs_say_what_to_give(predictor, tmp_path):
    """"paragraphs": null was told "neither 'paragraphs' nor 'text'", sending the user looking for a field
    that is there; with text beside it, the text is read."""
    inputs = write_lines(tmp_path / "in.jsonl", [{"id": "n", "paragraphs": None},
                                                 {"id": "t", "paragraphs": None, "text": "Talks resumed."},
                                                 {"id": "m", "title": "no text"}])
    _, out = tag(predictor, [inputs], tmp_path)
    assert out[0]["error"] == f"{inputs}:1: paragraphs: null; give a list of strings, or text"
    assert_tagged(out[1], 1)
    assert out[2]["error"] == f"{inputs}:3: {MISSING_TEXT}"


def test_same_named_files_in_sub_folders_get_distinct_ids(predictor, tmp_path):
    """A record without an id is named by its file's path inside the input folder: two 2024.jsonl in two
    sub-folders, or two story.txt, gave the same ids. A file named directly keeps its file name, and
    errors name the full path."""
    corpus = tmp_path / "corpus"
    for sub in ("a", "b", "a/deep"):
        (corpus / sub).mkdir(parents=True)
        write_lines(corpus / sub / "2024.jsonl", [{"text": f"Talks in {sub}."}, {"title": "no text"}])
    for sub in ("x", "y"):
        (corpus / sub).mkdir()
        (corpus / sub / "story.txt").write_text(f"Story {sub}.", encoding="utf-8")
    (corpus / "y" / "gone.txt").symlink_to(tmp_path / "nowhere.txt")  # an error record, named the same way
    counts, out = tag(predictor, [corpus, corpus / "b" / "2024.jsonl"], tmp_path)
    assert [r["id"] for r in out] == ["a/2024.jsonl:1", "a/2024.jsonl:2", "a/deep/2024.jsonl:1",
                                      "a/deep/2024.jsonl:2", "b/2024.jsonl:1", "b/2024.jsonl:2", "x/story.txt",
                                      "y/gone.txt", "y/story.txt", "2024.jsonl:1", "2024.jsonl:2"]
    b = corpus / "b" / "2024.jsonl"
    assert [r["error"] for r in out if "error" in r] == [
        f"{corpus / 'a' / '2024.jsonl'}:2: {MISSING_TEXT}", f"{corpus / 'a' / 'deep' / '2024.jsonl'}:2: {MISSING_TEXT}",
        f"{b}:2: {MISSING_TEXT}", f"{corpus / 'y' / 'gone.txt'}: file: a dangling symbolic link (its target is missing)",
        f"{b}:2: {MISSING_TEXT}"]
    assert (counts.records, counts.errors) == (11, 5)


def test_a_file_name_with_a_newline_is_quoted_in_its_one_line_error(predictor, tmp_path):
    """A path in an error line is quoted (Python's escapes) when it holds a newline or another character
    that would split or blur the line, and only then: a name with an inner space prints as it is."""
    folder = tmp_path / "odd"
    folder.mkdir()
    broken = write_lines(folder / "bad\nname.jsonl", [{"title": "no text"}])
    tabbed = write_lines(folder / "tab\tname.jsonl", [{"title": "no text"}])
    spaced = write_lines(folder / "two words.jsonl", [{"title": "no text"}])
    counts, out = tag(predictor, [folder], tmp_path)
    assert [r["error"] for r in out] == [f"{str(broken)!r}:1: {MISSING_TEXT}", f"{str(tabbed)!r}:1: {MISSING_TEXT}",
                                         f"{spaced}:1: {MISSING_TEXT}"]
    assert all(len(r["error"].splitlines()) == 1 and "\t" not in r["error"] for r in out)
    assert [r["id"] for r in out] == ["bad\nname.jsonl:1", "tab\tname.jsonl:1", "two words.jsonl:1"]  # JSON strings
    assert len(counts.summary().splitlines()) == 1  # the summary line quotes the first error


def test_stdin_jsonl(predictor, source_records, tmp_path, monkeypatch):
    lines = [json.dumps(source_records[0]), json.dumps({"text": "No id here.\n\nSecond paragraph."}),
             json.dumps(source_records[1])]
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\n".join(lines).encode() + b"\n")))
    counts, out = tag(predictor, ["-"], tmp_path)
    assert [r["id"] for r in out] == [source_records[0]["id"], "<stdin>:2", source_records[1]["id"]]
    assert counts.tagged == 3


# -- malformed input ------------------------------------------------------------------------------


def test_each_malformed_record_gives_an_error_record_and_nothing_is_lost(tiny_model_dir, source_records, tmp_path):
    good = source_records[:3]
    lines = [
        good[0],
        b'{"id": "cut", "paragraphs": ["never clo',                                     # 2
        {"id": "no-text", "title": "A title but no text"},                              # 3
        {"id": "blank", "text": "   \n\n \t "},                                          # 4
        {"id": "zero", "paragraphs": []},                                                # 5
        good[1],
        {"id": "huge", "paragraphs": [f"Paragraph {i}." for i in range(5000)]},          # 7
        {"id": "long", "paragraphs": ["Short.", "x" * 200_000]},                         # 8
        b'{"id": "latin1", "text": "caf\xe9 cr\xe8me"}',                                 # 9
        b'["not", "an", "object"]',                                                     # 10
        {"id": "wrong-type", "paragraphs": "a string, not a list"},                      # 11
        {"id": "mixed-items", "paragraphs": ["fine", 42]},                               # 12
        b'{"id": "surrogate", "text": "half a pair: \\ud800"}',                         # 13
        good[2],
    ]
    path = write_lines(tmp_path / "messy.jsonl", lines)
    counts, out = tag(tiny_model_dir, [path], tmp_path)  # loads the model with the CLI's default limits

    expected_ids = [good[0]["id"], "messy.jsonl:2", "no-text", "blank", "zero", good[1]["id"], "huge", "long",
                    "messy.jsonl:9", "messy.jsonl:10", "wrong-type", "mixed-items", "surrogate", good[2]["id"]]
    assert [r["id"] for r in out] == expected_ids
    errors = {r["id"]: r["error"] for r in out if "error" in r}
    expected_errors = {
        "messy.jsonl:2": "2: record: invalid JSON",
        "no-text": "3: text: missing",
        "blank": "4: text: the article has no non-empty paragraph",
        "zero": "5: paragraphs: the article has no non-empty paragraph",
        "huge": "7: paragraphs: 5000 paragraphs, over the limit of 1000",
        "long": "8: paragraphs: a paragraph of 200000 characters, over the limit of 50000",
        "messy.jsonl:9": "9: record: not valid UTF-8",
        "messy.jsonl:10": "10: record: expected a JSON object, got list",
        "wrong-type": "11: paragraphs: expected a list of paragraph strings, got str",
        "mixed-items": "12: paragraphs: expected a list of strings",
        "surrogate": "13: text: holds an unpaired UTF-16 surrogate",
    }
    assert set(errors) == set(expected_errors)
    for rid, message in expected_errors.items():
        assert errors[rid].startswith(f"{path}:{message}"), errors[rid]
    for record, source in zip([out[0], out[5], out[13]], good):
        assert_tagged(record, len(source["paragraphs"]))
    assert (counts.records, counts.tagged, counts.errors, counts.exit_status) == (14, 3, 11, 1)
    assert counts.first_error == errors["messy.jsonl:2"]


def test_bad_txt_files_and_csv_rows_spoil_only_their_own_record(predictor, tmp_path):
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "1-good.txt").write_text("Fine.\n\nAlso fine.", encoding="utf-8")
    (folder / "2-latin1.txt").write_bytes("Line one is fine.\n\nLine three: café".encode("latin-1"))
    (folder / "3-good.txt").write_text("Still fine.", encoding="utf-8")
    table = tmp_path / "t.csv"
    table.write_bytes(b'id,text\nr1,ok\nr2,caf\xe9\nr3,"two\n\nparagraphs"\nr4,one,too many\nr5,' + b"y" * 200_000
                      + b"\nr6,also ok\nr\xe97,fine\n")
    counts, out = tag(predictor, [folder, table], tmp_path)
    # r2 keeps its id (its id cell is sound; only its text is not UTF-8); the last row's id cell is not UTF-8
    assert [r["id"] for r in out] == ["1-good.txt", "2-latin1.txt", "3-good.txt",
                                      "r1", "r2", "r3", "t.csv:7", "r5", "r6", "t.csv:10"]
    assert out[9]["error"] == f"{table}:10: id: not valid UTF-8"
    assert out[1]["error"].startswith(f"{folder / '2-latin1.txt'}: text: not valid UTF-8 (line 3:")
    assert out[4]["error"] == f"{table}:3: text: not valid UTF-8"
    assert out[6]["error"] == f"{table}:7: record: 3 fields, but the header has 2 columns"
    assert out[7]["error"].startswith(f"{table}:8: text: a paragraph of 200000 characters")
    assert counts.tagged == 5 and counts.errors == 5


@pytest.mark.parametrize("name, content, message", [
    ("absent.jsonl", None, "absent.jsonl: no such file or folder"),
    ("notes.docx", b"x", "notes.docx: unsupported file type '.docx'"),
    ("empty", "folder", "empty: folder holds no files newstagger reads"),
    ("c.csv", b"a,b\n1,2\n", "c.csv: no 'text' or 'paragraphs' column"),
    ("p.parquet", b"PAR1 not a parquet file", "p.parquet: cannot read as PARQUET"),
])
def test_unreadable_inputs_are_refused_naming_the_file(tiny_model_dir, tmp_path, name, content, message):
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=re.escape(message)):
        tag_files(tiny_model_dir, [str(path)], tmp_path / "out.jsonl", progress=False)
    assert not (tmp_path / "out.jsonl").exists()


def test_wrong_text_column_is_refused(tiny_model_dir, tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("id,body\n1,hello\n")
    with pytest.raises(InputError, match=r"c\.csv: no column 'content' \(the text column: text_column, --text-column\); its columns: id, body"):
        tag_files(tiny_model_dir, [str(path)], None, text_column="content", progress=False)


# -- output file and resume -----------------------------------------------------------------------


def assert_same_records(got: list[dict], want: list[dict]) -> None:
    assert [r["id"] for r in got] == [r["id"] for r in want]
    for a, b in zip(got, want):
        assert set(a) == set(b)
        if "error" in b:
            assert a["error"] == b["error"]
            continue
        assert (a["topics"], a["evidence"], a["clean_text"]) == (b["topics"], b["evidence"], b["clean_text"])
        assert a["topic_scores"] == pytest.approx(b["topic_scores"], abs=1e-5)
        assert [p["boilerplate"] for p in a["paragraphs"]] == [p["boilerplate"] for p in b["paragraphs"]]
        assert [p["score"] for p in a["paragraphs"]] == pytest.approx([p["score"] for p in b["paragraphs"]], abs=1e-5)


@pytest.mark.parametrize("torn_tail", [b'{"id": "tor', b'\x00\x00\x00\x00\n\x00\x00', b""])
def test_resume_repairs_a_torn_tail_and_matches_an_uninterrupted_run(predictor, source_records, tmp_path,
                                                                     torn_tail):
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:12] + [b"{broken"] + source_records[12:20])
    reference = tmp_path / "reference.jsonl"
    full = tag_files(predictor, [str(inputs)], reference, chunk_size=4, progress=False)
    assert full.records == 21 and full.errors == 1

    output = tmp_path / "resumed.jsonl"
    kept = reference.read_bytes().splitlines(keepends=True)[:15]  # the bad line 13 is among them
    output.write_bytes(b"".join(kept) + torn_tail)
    counts = tag_files(predictor, [str(inputs)], output, resume=True, chunk_size=4, progress=False)
    assert (counts.resumed, counts.records, counts.tagged, counts.errors) == (15, 21, 20, 1)
    assert counts.exit_status == 1  # the error record of the earlier run still counts
    assert_same_records(read_jsonl(output), read_jsonl(reference))

    again = tag_files(predictor, [str(inputs)], output, resume=True, progress=False)  # nothing left to do
    assert (again.resumed, again.records) == (21, 21)
    assert_same_records(read_jsonl(output), read_jsonl(reference))


def test_existing_output_needs_resume_or_overwrite(predictor, source_records, tmp_path):
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:3])
    output = tmp_path / "out.jsonl"
    output.write_text("precious\n")
    with pytest.raises(InputError, match="already exists; pass --resume .* or --overwrite"):
        tag_files(predictor, [str(inputs)], output, progress=False)
    assert output.read_text() == "precious\n"
    with pytest.raises(InputError, match="is also an input"):
        tag_files(predictor, [str(inputs)], inputs, overwrite=True, progress=False)
    tag_files(predictor, [str(inputs)], output, overwrite=True, progress=False)
    assert [r["id"] for r in read_jsonl(output)] == [r["id"] for r in source_records[:3]]


def test_an_existing_device_or_pipe_is_written_as_a_stream(predictor, source_records, tmp_path):
    # /dev/null and a named pipe exist but hold nothing to protect or resume: written like stdout
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:3])
    counts = tag_files(predictor, [str(inputs)], Path(os.devnull), progress=False)
    assert (counts.records, counts.errors) == (3, 0)
    assert not Path(os.devnull + ".run.json").exists()  # no run record beside a device
    with pytest.raises(InputError, match="not a regular file .*nothing to resume"):
        tag_files(predictor, [str(inputs)], Path(os.devnull), resume=True, progress=False)

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = {}
    reader = threading.Thread(target=lambda: got.setdefault("data", fifo.read_bytes()))
    reader.start()
    tag_files(predictor, [str(inputs)], fifo, progress=False)
    reader.join(60)
    assert [json.loads(line)["id"] for line in got["data"].splitlines()] == [r["id"] for r in source_records[:3]]


def test_resume_refuses_an_output_of_other_inputs(predictor, source_records, tmp_path):
    first = write_lines(tmp_path / "first.jsonl", source_records[:4])
    other = write_lines(tmp_path / "other.jsonl", source_records[10:20])
    output = tmp_path / "out.jsonl"
    tag_files(predictor, [str(first)], output, progress=False)
    before = output.read_bytes()
    with pytest.raises(InputError, match=r"written with other settings: inputs \(files, or their size or modification"):
        tag_files(predictor, [str(other)], output, resume=True, progress=False)
    # Without the run record (an older output), the ids at both ends are checked
    Path(str(output) + ".run.json").unlink()
    with pytest.raises(InputError, match=f"its first record is '{source_records[0]['id']}' but input record 1 is"):
        tag_files(predictor, [str(other)], output, resume=True, progress=False)
    same_start = write_lines(tmp_path / "same_start.jsonl", source_records[:3] + source_records[10:12])
    with pytest.raises(InputError, match="its last record is .* but input record 4 is"):
        tag_files(predictor, [str(same_start)], output, resume=True, progress=False)
    shorter = write_lines(tmp_path / "short.jsonl", source_records[:2])
    with pytest.raises(InputError, match="holds 4 records but the inputs have only 2"):
        tag_files(predictor, [str(shorter)], output, resume=True, progress=False)
    assert output.read_bytes() == before
    with pytest.raises(InputError, match="stdout cannot be resumed"):
        tag_files(predictor, [str(first)], None, resume=True, progress=False)


def test_resume_refuses_inputs_changed_under_the_same_ids(predictor, source_records, tmp_path):
    """The records already written must be those of the records resume skips: an input rewritten since (the
    same ids, other texts) is refused by its size or modification time (found by a batch user's trial)."""
    records = source_records[:6]
    inputs = write_lines(tmp_path / "in.jsonl", records)
    output = tmp_path / "out.jsonl"
    tag_files(predictor, [str(inputs)], output, progress=False)
    lines = output.read_bytes().splitlines(keepends=True)
    output.write_bytes(b"".join(lines[:3]))  # a run killed half-way
    swapped = [{**a, "title": b["title"], "paragraphs": b["paragraphs"]} for a, b in zip(records, records[1:] + records[:1])]
    write_lines(inputs, swapped)
    with pytest.raises(InputError, match=r"written with other settings: inputs \(files"):
        tag_files(predictor, [str(inputs)], output, resume=True, progress=False)
    assert output.read_bytes() == b"".join(lines[:3])
    write_lines(inputs, records)  # the same content again, but touched: still refused (size and time, no hash)
    os.utime(inputs, ns=(0, 0))
    with pytest.raises(InputError, match="inputs"):
        tag_files(predictor, [str(inputs)], output, resume=True, progress=False)


def test_two_runs_on_one_output_cannot_interleave(predictor, source_records, tmp_path):
    """A second run on an output another run is writing is refused (found by a batch user's trial: both
    exited 0 with 129 records written twice); the lock goes with the run, even a killed one."""
    import fcntl

    inputs = write_lines(tmp_path / "in.jsonl", source_records[:3])
    output = tmp_path / "out.jsonl"
    lock = tmp_path / ".out.jsonl.lock"
    with open(lock, "w") as held:  # what a running `newstagger tag -o out.jsonl` holds
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for resume in (False, True):
            with pytest.raises(InputError, match=r"out.jsonl: another newstagger run is writing it"):
                tag_files(predictor, [str(inputs)], output, resume=resume, progress=False)
        link = tmp_path / "link.jsonl"  # the same output by another name
        link.symlink_to(output)
        with pytest.raises(InputError, match=r"link.jsonl: another newstagger run is writing it"):
            tag_files(predictor, [str(inputs)], link, progress=False)
        link.unlink()
    assert not output.exists()
    # a run that ends removes its lock file while still holding it; the next run locks the file of that name
    from newstagger.batch import OutputLock

    first = OutputLock(output).__enter__()
    fd = os.open(lock, os.O_RDWR)  # a second run opened the file of that name before the first ended...
    first.__exit__(None, None, None)  # ...which removes it: locking the removed file would let two runs in
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    with OutputLock(output) as again:
        assert os.stat(lock).st_ino == os.fstat(again.fd).st_ino
    # released (as when a killed run's process ends): the lock file left behind does not block
    assert tag_files(predictor, [str(inputs)], output, progress=False).records == 3
    assert not lock.exists()


def test_repeated_ids_are_counted_across_a_resume(predictor, source_records, tmp_path):
    records = source_records[:8]
    records[6] = {**records[6], "id": records[1]["id"]}
    inputs = write_lines(tmp_path / "in.jsonl", records)
    output = tmp_path / "out.jsonl"
    whole = tag_files(predictor, [str(inputs)], output, progress=False, chunk_size=2)
    assert (whole.duplicate_ids, whole.first_duplicate) == (1, records[1]["id"])
    output.write_bytes(b"".join(output.read_bytes().splitlines(keepends=True)[:4]))
    resumed = tag_files(predictor, [str(inputs)], output, resume=True, progress=False, chunk_size=2)
    assert (resumed.resumed, resumed.duplicate_ids, resumed.first_duplicate) == (4, 1, records[1]["id"])


# -- --pretty and --site-repeat -------------------------------------------------------------------


def test_pretty_output_shows_topics_boilerplate_and_content_count(predictor, source_records, tmp_path):
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:4] + [{"id": "empty", "paragraphs": []}])
    _, records = tag(predictor, [inputs], tmp_path)
    pretty = tmp_path / "pretty.txt"
    tag_files(predictor, [str(inputs)], pretty, pretty=True, progress=False)
    blocks = pretty.read_text(encoding="utf-8").strip().split("\n\n")
    assert len(blocks) == 5
    for block, record in zip(blocks, records):
        lines = block.splitlines()
        assert lines[0].startswith(record["id"])
        if "error" in record:
            assert lines[1] == f"  error: {record['error']}"
            continue
        flagged = [p for p in record["paragraphs"] if p["boilerplate"]]
        for topic in record["topics"]:
            assert f"{topic} {record['topic_scores'][topic]:.2f}" in lines[1]
        shown = [line for line in lines if line.startswith("    [")]
        assert [int(line.split("]")[0].strip(" [")) for line in shown] == [p["index"] for p in flagged]
        assert lines[-1] == f"  content paragraphs: {len(record['paragraphs']) - len(flagged)}"


def test_site_repeat_min_needs_site_repeat_and_options_survive_replace():
    """--site-repeat-min alone is refused; the Ray engine copies options with dataclasses.replace, which
    checks them again, so the default filled in must not make a valid run invalid."""
    import dataclasses

    from newstagger.batch import SITE_REPEAT_MIN, TagOptions

    with pytest.raises(InputError, match="--site-repeat-min works with --site-repeat only"):
        TagOptions(model="m", inputs=["a.jsonl"], site_repeat_min=5)
    assert dataclasses.replace(TagOptions(model="m", inputs=["a.jsonl"]), num_threads=1).site_repeat_min is None
    repeat = TagOptions(model="m", inputs=["a.jsonl"], site_repeat=True)
    assert dataclasses.replace(repeat, num_threads=1).site_repeat_min == SITE_REPEAT_MIN == 3


def test_site_repeat_pushes_paragraphs_repeated_within_a_source(predictor, source_records, tmp_path):
    promo = "Subscribe to our newsletter for the day's top stories."
    rows = []
    for i, outlet in enumerate(["A", "A", "A", "B", "B"]):
        # whitespace and case do not matter; B has the promo in two articles only, plus a verbatim repost
        text = promo.upper() if i == 1 else promo.replace(" ", "   ") if i == 2 else promo
        rows.append({"id": f"{outlet}{i}", "outlet": outlet, "title": source_records[i]["title"],
                     "paragraphs": source_records[i]["paragraphs"] + [text]})
    rows.append(dict(rows[4], id="B4-repost"))
    inputs = write_lines(tmp_path / "in.jsonl", rows)
    _, plain = tag(predictor, [inputs], tmp_path)
    counts, pushed = tag(predictor, [inputs], tmp_path, site_repeat=True, site_repeat_min=3)
    assert counts.tagged == 6
    for row, before, after in zip(rows, plain, pushed):
        last = len(row["paragraphs"]) - 1
        assert [q["score"] for q in after["paragraphs"]] == [p["score"] for p in before["paragraphs"]]  # the model's
        # the article's flags are decoded with the repeated line fixed as boilerplate
        scores = np.array([q["score"] for q in after["paragraphs"]])
        encoded = np.array([bool(text.strip()) for text in row["paragraphs"]])
        forced = np.arange(len(scores)) == (last if row["outlet"] == "A" else -1)
        assert [q["boilerplate"] for q in after["paragraphs"]] == predictor.decode(scores, encoded, forced).tolist()
        if row["outlet"] == "A":
            assert after["paragraphs"][last]["boilerplate"]
        else:
            assert after["paragraphs"] == before["paragraphs"]
        content = [row["paragraphs"][q["index"]] for q in after["paragraphs"] if not q["boilerplate"]]
        assert after["clean_text"] == "\n\n".join(content)
        # the topics are those of the article with these flags (as the Predictor gives them), each with evidence
        direct = predictor.predict_batch_safe([row], forced=[forced])[0]
        assert after["topics"] == direct.topics and after["topic_scores"] == direct.to_record()["topic_scores"]
        for label, indices in after["evidence"].items():
            assert indices and not any(after["paragraphs"][i]["boilerplate"] for i in indices)


def test_site_repeat_flags_a_lone_repeated_line_and_an_article_left_without_content_gets_no_topic(
        predictor, source_records, tmp_path):
    """A repeated line amid reporting is flagged whatever the transition penalty (a lone paragraph would
    otherwise need a score near 1), and an article whose every paragraph recurs across the source ends with
    no topic and topic scores of 0, as the Predictor tags an article without content."""
    saved, predictor.boilerplate_transition_penalty = predictor.boilerplate_transition_penalty, 4.0
    try:
        shared = source_records[0]["paragraphs"][:3]
        rows = [{"id": f"r{i}", "outlet": "A", "title": source_records[i]["title"],
                 "paragraphs": shared + source_records[i]["paragraphs"][:2]} for i in range(1, 4)]
        rows.append({"id": "all-repeated", "outlet": "A", "title": source_records[0]["title"], "paragraphs": shared})
        rows[0]["paragraphs"].insert(4, "Story continues below.")  # a lone line, repeated in three articles
        rows[1]["paragraphs"].insert(4, "Story continues below.")
        rows[2]["paragraphs"].insert(4, "Story continues below.")
        inputs = write_lines(tmp_path / "in.jsonl", rows)
        _, plain = tag(predictor, [inputs], tmp_path)
        _, pushed = tag(predictor, [inputs], tmp_path, site_repeat=True, site_repeat_min=3)
        for row, before, record in zip(rows, plain, pushed[:3]):
            # the topics are scored on the paragraphs left, not kept from the article before (where a topic
            # could rest on the repeated lines and be left with empty evidence: a user's trial)
            forced = np.isin(np.arange(len(row["paragraphs"])), [0, 1, 2, 4])
            direct = predictor.predict_batch_safe([row], forced=[forced])[0].to_record()
            assert record["topic_scores"] == direct["topic_scores"] != before["topic_scores"]
            assert record["topics"] == direct["topics"] and all(record["evidence"].values())
    finally:
        predictor.boilerplate_transition_penalty = saved
    for record in pushed[:3]:  # the shared reporting (0-2) and the lone line (4), between two own paragraphs
        flags = [p["boilerplate"] for p in record["paragraphs"]]
        assert flags[:3] == [True] * 3 and flags[4], flags
    last = pushed[3]
    assert all(p["boilerplate"] for p in last["paragraphs"]) and last["clean_text"] == ""
    assert last["topics"] == [] and last["evidence"] == {} and set(last["topic_scores"].values()) == {0.0}


# -- output safety (nothing is destroyed, nothing is read back) -----------------------------------


def test_output_that_is_an_input_by_device_and_inode_is_refused(tiny_model_dir, source_records, tmp_path,
                                                                 monkeypatch):
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:3])
    before = inputs.read_bytes()
    hard_link = tmp_path / "hard.jsonl"
    hard_link.hardlink_to(inputs)
    symlink = tmp_path / "sym.jsonl"
    symlink.symlink_to(inputs)
    for output in (hard_link, symlink):
        with pytest.raises(InputError, match=r"is also an input \(.*in\.jsonl\): the same file, by device and inode"):
            tag_files(tiny_model_dir, [str(inputs)], output, overwrite=True, progress=False)
    with open(inputs, "rb") as stdin:  # `newstagger tag - -o in.jsonl --overwrite < in.jsonl`
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(stdin))
        with pytest.raises(InputError, match="is also an input \\(standard input\\)"):
            tag_files(tiny_model_dir, ["-"], inputs, overwrite=True, progress=False)
    assert inputs.read_bytes() == before


@pytest.mark.parametrize("content", [b"id,text\n1,Hello\n", b'{"title": "a corpus, not our output"}\n',
                                     b'{"id": "x"}\n{"id": "y", "tex'])
def test_resume_onto_a_file_that_is_not_our_output_leaves_it_alone(tiny_model_dir, source_records, tmp_path,
                                                                   content):
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:3])
    output = tmp_path / "precious.out"
    output.write_bytes(content)
    with pytest.raises(InputError, match="not a newstagger output record|was it written from other inputs"):
        tag_files(tiny_model_dir, [str(inputs)], output, resume=True, progress=False)
    assert output.read_bytes() == content


def test_resume_onto_a_copy_of_the_input_is_refused(tiny_model_dir, source_records, tmp_path):
    """Input records in our schema begin as output records do ({"id": ...}): a user who gave the first lines
    of the corpus as --output must not get tags appended after them."""
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:4])
    output = tmp_path / "out.jsonl"
    output.write_bytes(b"".join(inputs.read_bytes().splitlines(keepends=True)[:2]))
    assert output.read_bytes().startswith(b'{"id": ')
    before = output.read_bytes()
    with pytest.raises(InputError, match=r"out\.jsonl:1: not a newstagger output record"):
        tag_files(tiny_model_dir, [str(inputs)], output, resume=True, progress=False)
    assert output.read_bytes() == before


def test_output_inside_an_input_folder_is_not_read_back(predictor, source_records, tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write_lines(folder / "a.jsonl", source_records[:3])
    output = folder / "tags.jsonl"
    counts = tag_files(predictor, [str(folder)], output, progress=False)
    assert counts.records == 3 and [r["id"] for r in read_jsonl(output)] == [r["id"] for r in source_records[:3]]
    counts = tag_files(predictor, [str(folder)], output, resume=True, progress=False)  # and not on resume
    assert (counts.resumed, counts.records) == (3, 3)


def test_empty_paragraphs_keep_their_index(predictor, tmp_path):
    paragraphs = ["Talks resumed in Geneva on Monday.", "", "Both sides said progress was made.", "   ",
                  "Subscribe to our newsletter."]
    counts, out = tag(predictor, [write_lines(tmp_path / "gaps.jsonl", [{"id": "g", "paragraphs": paragraphs}])],
                      tmp_path)
    assert_tagged(out[0], len(paragraphs))
    assert [p["boilerplate"] for p in out[0]["paragraphs"]][1::2] == [True, True]  # the empty ones
    content = [paragraphs[p["index"]] for p in out[0]["paragraphs"] if not p["boilerplate"]]
    assert out[0]["clean_text"] == "\n\n".join(content) and all(c.strip() for c in content)


def test_shared_empty_paragraphs_case(predictor, tmp_path):
    case = ROOT.parent / "shared" / "cases" / "11-empty-paragraphs.jsonl"
    if not case.exists():
        pytest.skip(f"{case} is absent (../shared not beside the checkout)")
    record = json.loads(case.read_text(encoding="utf-8"))
    _, out = tag(predictor, [case], tmp_path)
    assert_tagged(out[0], len(record["paragraphs"]))
    blank = [i for i, p in enumerate(record["paragraphs"]) if not p.strip()]
    assert all(out[0]["paragraphs"][i]["boilerplate"] for i in blank)


def test_hostile_records_each_give_one_error_record(predictor, tmp_path):
    lines = [b'{"id": "deep", "text": "x", "extra": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
             b'{"id": ' + b"9" * 5000 + b', "text": "x"}',
             b'{"id": true, "text": "True is not an id"}',
             b'{"id": NaN, "text": "NaN is no id either"}',
             b'{"id": "title", "title": "' + b"t" * 300_000 + b'", "text": "x"}',
             b'{"id": "fine", "text": "A good article."}']
    counts, out = tag(predictor, [write_lines(tmp_path / "hostile.jsonl", lines)], tmp_path)
    assert [r["id"] for r in out] == ["hostile.jsonl:1", "hostile.jsonl:2", "hostile.jsonl:3", "hostile.jsonl:4",
                                      "title", "fine"]
    errors = [r.get("error", "") for r in out]
    assert errors[0].endswith(":1: record: JSON nested too deeply")
    assert ":2: record: invalid JSON (Exceeds the limit (4300 digits)" in errors[1]
    assert errors[2].endswith(":3: id: expected a string or a number, got bool")
    assert "error" not in out[3] and "error" not in out[5]
    assert ":5: title: 300000 characters, over the limit of 2000" in errors[4]
    assert (counts.records, counts.errors) == (6, 4)


def test_fuzz_every_line_gives_one_output_record(predictor, source_records, tmp_path):
    """Seeded junk between good records: one output record per non-blank input line, in order."""
    import random

    rng = random.Random(7)
    lines = []
    for i in range(60):
        if i % 4 == 0:
            lines.append(json.dumps(source_records[i % len(source_records)]).encode())
        else:
            junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))).replace(b"\n", b"")
            lines.append(rng.choice([junk, b"{" + junk, b'{"text": "' + junk + b'"}', b'{"id": 1, "paragraphs": ["'
                                     + junk + b'", ""]}']))
    path = write_lines(tmp_path / "junk.jsonl", lines)
    counts, out = tag(predictor, [path], tmp_path, chunk_size=7)
    expected = [n for n, line in enumerate(path.read_bytes().split(b"\n"), start=1) if line.strip()]
    assert counts.records == len(out) == len(expected)
    assert counts.blank_lines == expected[-1] - len(expected)  # whitespace-only junk before the last record
    for record, line in zip(out, expected):
        assert "error" not in record or record["error"].startswith(f"{path}:{line}: ")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to stand for a full disk")
def test_output_on_a_full_disk_is_one_error_line_not_a_crash(predictor, source_records, tmp_path):
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:2])
    with pytest.raises(InputError, match=r"^/dev/full: cannot write \(No space left on device\)$"):
        tag_files(predictor, [str(inputs)], Path("/dev/full"), overwrite=True, progress=False)


def test_resume_refuses_to_mix_two_models_or_backends_in_one_output(tiny_model_dir, source_records, tmp_path):
    """OUTPUT.run.json records the model (weights and config digests), backend, limits and columns of the run
    that started the output; --resume with anything else is refused, so one output never mixes two runs
    (a hostile run resumed a tiny model's output with another model, and got exit 1 and a mixed file)."""
    import shutil

    inputs = write_lines(tmp_path / "in.jsonl", source_records[:6])
    output = tmp_path / "out.jsonl"
    tag_files(str(tiny_model_dir), [str(inputs)], output, progress=False)
    record = json.loads((tmp_path / "out.jsonl.run.json").read_text())
    assert record["backend"] == "torch" and len(record["weights_sha256"]) == 64
    kept = output.read_bytes().splitlines(keepends=True)[:3]
    output.write_bytes(b"".join(kept))

    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other, ignore=shutil.ignore_patterns("onnx"))
    config = json.loads((other / "config.json").read_text())
    config["boilerplate_threshold"] = 0.9  # same weights, other thresholds: other answers
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=r"written with other settings: model config .*start over with --overwrite"):
        tag_files(str(other), [str(inputs)], output, resume=True, progress=False)
    # which value differs, both ways (a user trial found "other settings: columns" alone hard to act on)
    with pytest.raises(InputError, match=r"written with other settings: limits \(max_paragraphs: 1000, now 5\)"):
        tag_files(str(tiny_model_dir), [str(inputs)], output, resume=True, progress=False,
                  limits=Limits(max_paragraphs=5))
    with pytest.raises(InputError) as info:  # another backend runs another graph: not "the export was redone"
        tag_files(str(tiny_model_dir), [str(inputs)], output, resume=True, progress=False, backend="int8")
    assert f"written with other settings: backend (torch, now int8) (see {output}.run.json)" in str(info.value)
    assert output.read_bytes() == b"".join(kept)  # refused before anything is written

    moved = tmp_path / "moved-model"  # the same model elsewhere is the same model
    shutil.copytree(tiny_model_dir, moved, ignore=shutil.ignore_patterns("onnx"))
    done = tag_files(str(moved), [str(inputs)], output, resume=True, progress=False)
    assert (done.resumed, done.records) == (3, 6)


def test_resume_refuses_an_output_of_another_onnx_export(onnx_dir, source_records, tmp_path):
    """The weights alone do not decide an onnx run's scores: the export's quantization does too. A new user
    re-exported with --quantization fp32 and resumed an int8 output: half of it came from each export."""
    import shutil

    from newstagger.onnx_export import export_onnx

    model = tmp_path / "model"
    shutil.copytree(onnx_dir, model)  # with its default (int8) export
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:6])
    output = tmp_path / "out.jsonl"
    tag_files(str(model), [str(inputs)], output, backend="onnx", progress=False)
    assert json.loads((tmp_path / "out.jsonl.run.json").read_text())["encoder_graph"]["quantization"]
    kept = b"".join(output.read_bytes().splitlines(keepends=True)[:3])
    output.write_bytes(kept)
    export_onnx(model, "fp32")
    with pytest.raises(InputError, match=r"written with other settings: ONNX encoder graph .*--overwrite"):
        tag_files(str(model), [str(inputs)], output, backend="onnx", resume=True, progress=False)
    assert output.read_bytes() == kept
    # the int8 backend never runs an fp32 export, so its outputs are not held to it
    tag_files(str(model), [str(inputs)], tmp_path / "int8.jsonl", backend="int8", progress=False)
    assert json.loads((tmp_path / "int8.jsonl.run.json").read_text())["encoder_graph"]["quantization"] != "fp32"


def test_resumed_summary_names_the_outputs_first_error(predictor, source_records, tmp_path):
    inputs = write_lines(tmp_path / "in.jsonl", [source_records[0], {"id": "bad"}, *source_records[1:5]])
    output = tmp_path / "out.jsonl"
    first = tag_files(predictor, [str(inputs)], output, progress=False)
    assert first.errors == 1 and "in.jsonl:2" in first.first_error
    output.write_bytes(b"".join(output.read_bytes().splitlines(keepends=True)[:4]))
    resumed = tag_files(predictor, [str(inputs)], output, resume=True, progress=False)
    assert (resumed.resumed, resumed.records, resumed.errors) == (4, 6, 1)
    assert "first error: " + first.first_error in resumed.summary()


@pytest.mark.parametrize("name", ["out.parquet", "out.csv", "out.jsonl.gz"])
def test_local_output_named_as_another_format_is_refused(predictor, source_records, tmp_path, name):
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:2])
    with pytest.raises(InputError, match=r"the local engine writes plain JSONL .*--engine ray --output-format parquet"):
        tag_files(predictor, [str(inputs)], tmp_path / name, progress=False)
    assert not (tmp_path / name).exists()


def test_an_output_whose_name_ends_in_jsonl_is_written_whatever_comes_before(predictor, source_records, tmp_path):
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:2])
    for name in ("o.csv.jsonl", "run.gz.jsonl"):  # only the last suffix says the format (a batch user's trial)
        assert tag_files(predictor, [str(inputs)], tmp_path / name, progress=False).records == 2
    for name in ("o.jsonl.bz2", "o.jsonl.xz", "o.jsonl.zst"):  # a compression it is not
        with pytest.raises(InputError, match="the local engine writes plain JSONL"):
            tag_files(predictor, [str(inputs)], tmp_path / name, progress=False)


def test_resume_takes_an_input_named_another_way(predictor, source_records, tmp_path, monkeypatch):
    """The run record names input files by their real path: ./in.jsonl, in.jsonl and its absolute path are
    one input (a hostile trial: the resume of a killed run was refused as 'inputs changed')."""
    inputs = write_lines(tmp_path / "in.jsonl", source_records[:6])
    output = tmp_path / "out.jsonl"
    monkeypatch.chdir(tmp_path)
    tag_files(predictor, ["in.jsonl"], output, progress=False)
    whole = output.read_bytes()
    output.write_bytes(b"".join(whole.splitlines(keepends=True)[:2]))
    resumed = tag_files(predictor, [f"./{inputs.name}"], output, resume=True, progress=False)
    assert resumed.resumed == 2 and output.read_bytes() == whole
    output.write_bytes(b"".join(whole.splitlines(keepends=True)[:3]))
    assert tag_files(predictor, [str(inputs)], output, resume=True, progress=False).resumed == 3
