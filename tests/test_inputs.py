"""newstagger.inputs: the one reader (every format, folders, URIs), the one record rule, Limits, and fuzz
tests: for any bytes, one item per record, no exception, bounded memory."""

import gzip
import io
import json
import math
import os
import threading
import tracemalloc

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newstagger.inputs import (Article, ArticleError, Columns, InputError, Limits, Position, article_from_record,
                               as_article, check_inputs, iter_articles, iter_records, parse_labels, read_csv,
                               read_jsonl, read_parquet, read_txt, split_paragraphs)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def items(reader, data: bytes, **kw):
    return list(reader(io.BytesIO(data), "f", **kw))


def messages(found) -> list:
    return [str(i) if isinstance(i, ArticleError) else i for _, i in found]


# -- the record rule ------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    (101, "101"), (101.0, "101"), (1.5, "1.5"), ("a-1", "a-1"), ("", "f.csv:7"), ("  ", "f.csv:7"),
    (None, "f.csv:7"), (float("nan"), "f.csv:7"), (10 ** 30, str(10 ** 30)),
])
def test_ids_numbers_become_strings_and_missing_ones_the_position(value, expected):
    article = article_from_record({"id": value, "text": "Hello."}, Position("dir/f.csv", 7))
    assert article.id == expected


@pytest.mark.parametrize("value, words", [(True, "got bool"), ([1], "got list"), ({"a": 1}, "got dict"),
                                          (float("inf"), "got inf")])
def test_ids_that_cannot_be_ids_are_errors(value, words):
    with pytest.raises(ArticleError, match=f"^id: expected a string or a number, {words}"):
        article_from_record({"id": value, "text": "Hello."}, Position("f.jsonl", 1))


def test_paragraphs_keep_every_index_and_text_is_split_like_the_predictor():
    record = {"id": "x", "title": None, "paragraphs": ["One.", "", "  ", "Two."]}
    assert article_from_record(record).paragraphs == ["One.", "", "  ", "Two."]
    text = "One.\n\n  \n\nTwo\nlines."
    assert article_from_record({"text": text}).paragraphs == split_paragraphs(text) == ["One.", "Two lines."]
    assert as_article(text).paragraphs == split_paragraphs(text)
    assert as_article({"text": text}).paragraphs == split_paragraphs(text)
    assert article_from_record({"body": text}, columns=Columns(text="body")).paragraphs == ["One.", "Two lines."]
    assert article_from_record({"paragraphs": '["a", "b"]'}).paragraphs == ["a", "b"]  # a CSV cell


@pytest.mark.parametrize("record, columns, message", [
    ({"title": "t"}, Columns(), "text: missing (the record has neither 'paragraphs' nor 'text')"),
    ({"text": "x"}, Columns(text="body"), "body: missing"),
    ({"body": None}, Columns(text="body"), "body: null"),
    ({"text": None}, Columns(), "text: null; give the article's text as a string, or paragraphs"),
    ({"text": float("nan")}, Columns(), "text: NaN; give the article's text as a string, or paragraphs"),
    ({"paragraphs": "not a list"}, Columns(), "paragraphs: expected a list of paragraph strings, got str"),
    ({"paragraphs": "[1, 2"}, Columns(), "paragraphs: expected a JSON list"),
    ({"text": 5}, Columns(), "text: expected a text or a list of paragraph strings, got int"),
    ({"text": " \n\n "}, Columns(), "text: the article has no non-empty paragraph"),
    ({"body": ""}, Columns(text="body"), "body: the article has no non-empty paragraph"),
    ({"paragraphs": ["", " "]}, Columns(), "paragraphs: the article has no non-empty paragraph"),
    ({"text": "x", "title": 3}, Columns(), "title: expected a string, got int"),
    ({"text": "half \ud800 a pair"}, Columns(), "text: holds an unpaired UTF-16 surrogate"),
    ([1, 2], Columns(), "record: expected a JSON object, got list"),
])
def test_each_bad_record_names_its_field(record, columns, message):
    with pytest.raises(ArticleError) as e:
        article_from_record(record, Position("f.jsonl", 3), columns)
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("value, labels", [
    (["a", "b"], ["a", "b"]), ('["a", "b"]', ["a", "b"]), ("a, b", ["a", "b"]), ("a;b", ["a", "b"]),
    ("a | b", ["a", "b"]), ("single", ["single"]), ("", []), (None, None), (float("nan"), None), ([3], ["3"]),
])
def test_labels_as_users_store_them(value, labels):
    assert parse_labels(value) == labels


def test_labels_and_flags_are_read_only_for_labelled_records():
    record = {"id": 1, "text": "A.\n\nB.", "boilerplate": "[0, 1]", "topic": "x|y", "outlet": "o"}
    article = article_from_record(record, columns=Columns(label="topic"), labelled=True)
    assert (article.boilerplate, article.topics, article.extra) == ([0, 1], ["x", "y"], {"outlet": "o"})
    assert article_from_record(record, columns=Columns(label="topic")).topics is None
    with pytest.raises(ArticleError, match="^boilerplate: 3 flags for 2 paragraphs"):
        article_from_record({**record, "boilerplate": [0, 0, 1]}, labelled=True)


def test_limits_cover_paragraphs_their_length_and_the_title():
    limits = Limits(max_paragraphs=3, max_paragraph_chars=10, max_title_chars=5)
    limits.check(Article("a", ["x" * 10] * 3, title="12345"))
    for article, words in [(Article("a", ["x"] * 4), "paragraphs: 4 paragraphs, over the limit of 3"),
                           (Article("a", ["x" * 11]), "paragraphs: a paragraph of 11 characters"),
                           (Article("a", ["x"], title="x" * 300_000), "title: 300000 characters")]:
        with pytest.raises(ArticleError, match=f"^{words}"):
            limits.check(article)
    with pytest.raises(InputError, match="max_paragraphs must be"):
        Limits(max_paragraphs=0)
    # the field named is the one the text came from (a batch user's trial: a long `text` was "paragraphs")
    for record, columns, field in [({"text": "x" * 11}, Columns(), "text"), ({"body": "x" * 11}, Columns(text="body"), "body"),
                                   ({"paragraphs": ["x" * 11]}, Columns(), "paragraphs")]:
        with pytest.raises(ArticleError, match=f"^{field}: a paragraph of 11 characters"):
            article_from_record(record, columns=columns, limits=limits)
    with pytest.raises(ArticleError, match="^text: a paragraph of 11 characters"):
        as_article("x" * 11, limits=limits)


# -- readers ------------------------------------------------------------------------------------


def test_jsonl_positions_blank_lines_gzip_and_the_hostile_cases(tmp_path):
    lines = [b'{"id": "a", "text": "x"}', b"", b'{"id": ' + b"1" * 5000 + b"}", b"[" * 100_000 + b"]" * 100_000,
             b'{"id": "b", "text": "y"}', b"\xff\xfe", b'{"id": NaN, "text": "z"}', b'"just a string"']
    path = tmp_path / "c.jsonl.gz"
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    found = list(iter_articles([str(path)], limits=Limits(max_line_bytes=150_000)))
    assert [p.row for p, _ in found] == [1, 3, 4, 5, 6, 7, 8]
    got = [i.id if isinstance(i, Article) else str(i) for _, i in found]
    assert got[0] == "a" and got[3] == "b" and got[5] == "c.jsonl.gz:7"  # NaN id: the position
    assert got[1].startswith(f"{path}:3: record: invalid JSON (Exceeds the limit (4300 digits)")
    assert got[2].startswith(f"{path}:4: record: a line of 200000 bytes, over the limit")
    assert got[4].startswith(f"{path}:6: record: not valid UTF-8")
    assert got[6] == f"{path}:8: record: expected a JSON object, got str"
    deep = items(read_jsonl, b"[" * 50_000 + b"]" * 50_000)
    assert str(deep[0][1]) == "record: JSON nested too deeply"


def test_pretty_printed_json_gets_one_clear_hint(tmp_path):
    path = tmp_path / "array.json"
    path.write_text(json.dumps([{"id": "a", "text": "x"}, {"id": "b", "text": "y"}], indent=2))
    with pytest.raises(InputError, match=r"array\.json:1: record: invalid JSON .* JSON Lines .*jq -c"):
        check_inputs([str(path)])
    one_line = tmp_path / "one.json"
    one_line.write_text(json.dumps([{"id": "a", "text": "x"}]))
    with pytest.raises(InputError, match="got list; the input looks like a JSON array"):
        check_inputs([str(one_line)])


def test_csv_unterminated_quote_spoils_only_its_row():
    data = b'id,text\n1,ok\n2,"never closed\n3,fine\n\n4,"two\n\nlines"\n5,"a"b\n6,end'
    found = items(read_csv, data)
    assert [p.row for p, _ in found] == [2, 3, 4, 6, 9, 10]
    assert [r["id"] if isinstance(r, dict) else None for _, r in found] == ["1", None, "3", "4", None, "6"]
    assert str(found[1][1]).startswith("record: cannot parse the CSV row")
    assert found[3][1]["text"] == "two\n\nlines"
    last = items(read_csv, b'id,text\n1,ok\n2,"open to the end\n3,x\n')  # the quote never closes at all
    assert [p.row for p, _ in last] == [2, 3, 4] and [r["id"] for _, r in last if isinstance(r, dict)] == ["1", "3"]


def test_csv_row_over_the_size_limit_and_bad_bytes():
    data = b"id,text\r\n1,ok\r\n2," + b"x" * 500 + b"\r\n3,caf\xe9\r\n4,fine\r\n"
    found = items(read_csv, data, limits=Limits(max_line_bytes=100))
    assert [p.row for p, _ in found] == [2, 3, 4, 5]
    assert messages(found) == [{"id": "1", "text": "ok"},
                               "record: a row of 503 bytes, over the limit of 100 (max_line_bytes)",
                               {"id": "3", "text": "caf\udce9"}, {"id": "4", "text": "fine"}]
    # the record rule refuses the cell that is not UTF-8, and the record keeps its (sound) id
    with pytest.raises(ArticleError, match="^text: not valid UTF-8$") as bad:
        article_from_record(found[2][1], found[2][0])
    assert bad.value.record_id == "3"


def test_parquet_bad_row_keeps_the_rows_around_it_and_names_its_number(tmp_path):
    texts = [f"Article {i}.".encode() for i in range(600)]
    texts[300] = b"caf\xe9"  # not UTF-8 in a string column
    table = pa.table({"id": pa.array(range(600)), "text": pa.array(texts, pa.binary()).view(pa.string())})
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=200)
    found = list(iter_articles([str(tmp_path / "t.parquet")]))
    assert [p.row for p, _ in found] == list(range(1, 601))
    bad = [(p.row, str(i)) for p, i in found if isinstance(i, ArticleError)]
    assert len(bad) == 1 and bad[0][0] == 301
    assert bad[0][1].startswith(f"{tmp_path / 't.parquet'}:301: record: cannot read the row (UnicodeDecodeError")
    assert found[299][1].id == "299" and found[301][1].id == "301"


def test_folders_report_broken_links_skip_subfolders_and_the_output(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("First.")
    (folder / "b.jsonl").write_text('{"id": "b1", "text": "x"}\n')
    (folder / "c.csv").write_text("id,text\nc1,y\n")
    (folder / "expected.json").write_text("{}")  # a .json file in a folder is not an input
    (folder / "sub.txt").mkdir()
    (folder / "dangling.txt").symlink_to(folder / "gone.txt")
    (folder / "loop.txt").symlink_to(folder / "loop.txt")
    (folder / "out.jsonl").write_text('{"id": "written by the run"}\n')
    output = os.stat(folder / "out.jsonl")
    found = list(iter_articles([str(folder)], exclude={(output.st_dev, output.st_ino)}))
    got = [(p.default_id, i.id if isinstance(i, Article) else i.message) for p, i in found]
    assert got == [("a.txt", "a.txt"), ("b.jsonl:1", "b1"), ("c.csv:2", "c1"),
                   ("dangling.txt", "file: a dangling symbolic link (its target is missing)"),
                   ("loop.txt", "file: a symbolic link loop")]


def test_txt_uri_and_stdin(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"\xef\xbb\xbfOne.\r\n\r\nTwo.")
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n')
    found = list(iter_articles([(tmp_path / "a.txt").as_uri(), str(tmp_path / "b.jsonl"), "-"],
                               stdin=io.BytesIO(b'{"text": "from stdin"}\n')))
    assert [i.paragraphs for _, i in found] == [["One.", "Two."], ["x"], ["from stdin"]]
    assert [p.default_id for p, _ in found] == ["a.txt", "b.jsonl:1", "<stdin>:1"]


def test_a_runaway_line_costs_bounded_memory(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"id": "before", "text": "x"}\n{"id": "huge", "text": "')
        for _ in range(50):
            f.write(b"y" * (1 << 20))
        f.write(b'"}\n{"id": "after", "text": "z"}\n')
    tracemalloc.start()
    try:
        found = list(iter_records([str(path)]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [p.row for p, _ in found] == [1, 2, 3] and isinstance(found[1][1], ArticleError)
    assert "over the limit of 8388608" in str(found[1][1])
    assert peak < 40 << 20, f"reading a 50 MB line peaked at {peak >> 20} MB"


# -- fuzz: any bytes, one item per record, no exception -------------------------------------------


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=60), st.sampled_from([b'{"id": 1, "text": "a"}', b"[", b"{", b"\xff",
                                                                  b'{"text": "\\ud800"}', b"   "])), max_size=12))
def test_fuzz_jsonl_one_item_per_non_blank_line(lines):
    data = b"\n".join(line.replace(b"\n", b"") for line in lines)
    expected = [n for n, line in enumerate(data.split(b"\n"), start=1) if line.strip()]
    found = list(iter_articles(["-"], stdin=io.BytesIO(data), limits=Limits(max_line_bytes=40)))
    assert [p.row for p, _ in found] == expected
    assert all(isinstance(i, (Article, ArticleError)) for _, i in found)


@FUZZ
@given(st.binary(max_size=300), st.booleans())
def test_fuzz_csv_never_raises_and_keeps_positions_increasing(data, with_header):
    if with_header:
        data = b"id,text\n" + data
    found = items(read_csv, data, limits=Limits(max_line_bytes=64))
    rows = [p.row for p, _ in found]
    assert rows == sorted(set(rows)) and all(1 <= r <= data.count(b"\n") + 1 for r in rows)
    for _, item in found:
        if not isinstance(item, ArticleError):
            article_or_error(item)
    if b'"' not in data and b"\r" not in data and with_header:  # no quoting: one item per non-blank row
        assert len(found) == sum(1 for line in data.split(b"\n")[1:] if line)


def article_or_error(record):
    try:
        return article_from_record(record, Position("f", 1), labelled=True, limits=Limits())
    except ArticleError as e:
        return e


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_txt_is_always_exactly_one_item(data):
    found = items(read_txt, data, limits=Limits(max_line_bytes=100))
    assert len(found) == 1


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
record_keys = st.sampled_from(["id", "title", "text", "paragraphs", "boilerplate", "topics", "body"])


@FUZZ
@given(st.dictionaries(record_keys, json_values, max_size=6), st.sampled_from([None, "body"]))
def test_fuzz_the_record_rule_gives_an_article_or_a_clear_error(record, text_column):
    try:
        result = article_from_record(record, Position("f", 1), Columns(text=text_column), labelled=True,
                                     limits=Limits())
    except ArticleError as e:
        result = e
    if isinstance(result, ArticleError):
        assert ": " in result.message and result.field in (
            "id", "title", "text", "paragraphs", "boilerplate", "topics", "body", "record")
    else:
        assert isinstance(result.id, str) and all(isinstance(p, str) for p in result.paragraphs)
        assert any(p.strip() for p in result.paragraphs)


@FUZZ
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(-5, 5), st.floats(allow_nan=True)),
                          st.one_of(st.none(), st.binary(max_size=12))), min_size=1, max_size=30),
       st.integers(1, 7))
def test_fuzz_parquet_one_item_per_row(rows, group):
    ids = pa.array([r[0] if not isinstance(r[0], float) or math.isfinite(r[0]) or math.isnan(r[0]) else None
                    for r in rows], pa.float64())
    texts = pa.array([r[1] for r in rows], pa.binary()).view(pa.string())  # any bytes, valid UTF-8 or not
    sink = io.BytesIO()
    pq.write_table(pa.table({"id": ids, "text": texts}), sink, row_group_size=group)
    found = items(read_parquet, sink.getvalue())
    assert [p.row for p, _ in found] == list(range(1, len(rows) + 1))
    for _, item in found:
        if not isinstance(item, ArticleError):
            article_or_error(item)


def test_closed_stdin_is_an_input_error(monkeypatch):
    import sys

    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(InputError, match="standard input is closed"):
        check_inputs(["-"])


# -- issue 10, the defects a hostile run still found ----------------------------------------------


def test_a_broken_first_jsonl_line_is_one_error_not_a_pretty_printed_file(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"id": "a", "title": "x"\n{"id": "b", "text": "Fine."}\n{"id": "c", "text": "Also fine."}\n')
    assert check_inputs([str(path)]) == [str(path)]  # not refused as a whole
    found = list(iter_articles([str(path)]))
    assert [p.row for p, _ in found] == [1, 2, 3]
    assert str(found[0][1]).startswith(f"{path}:1: record: invalid JSON") and "JSON Lines" not in str(found[0][1])
    assert [i.id for _, i in found[1:]] == ["b", "c"]
    spread = tmp_path / "spread.jsonl"  # one JSON array over several lines, its first line not "[" alone
    spread.write_text('[{"id": "a",\n  "text": "x"},\n {"id": "b", "text": "y"}]\n')
    with pytest.raises(InputError, match=r"spread\.jsonl:1: record: invalid JSON .*JSON Lines .*"
                                         r"jq -c '\.\[\]' \S*spread\.jsonl > \S*spread\.lines\.jsonl$"):
        check_inputs([str(spread)])
    objects = tmp_path / "objects.jsonl"  # objects written over several lines, one after another: jq -c .
    objects.write_text(json.dumps({"id": "a", "text": "x"}, indent=2) + "\n" + json.dumps({"id": "b", "text": "y"}, indent=2))
    with pytest.raises(InputError, match=r"objects\.jsonl:1: .*JSON Lines .*jq -c \. \S*objects\.jsonl > "):
        check_inputs([str(objects)])


def test_the_jq_hint_does_not_pass_a_file_name_as_an_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-n.json").write_text(json.dumps([{"id": "a", "text": "x"}], indent=2))
    with pytest.raises(InputError, match=r"jq -c '\.\[\]' \./-n\.json > \./-n\.lines\.jsonl$"):
        check_inputs(["-n.json"])


def test_a_first_record_longer_than_what_the_check_peeks_at_is_read(tmp_path):
    """A valid JSONL file of one 70 KB record was refused as 'pretty-printed JSON' (the check read the
    first 64 KiB of its line); found by a batch user's trial."""
    path = tmp_path / "one.jsonl"
    record = {"id": "L", "paragraphs": ["The minister said talks would continue next week. " * 20] * 70}
    path.write_text(json.dumps(record) + "\n")
    assert path.stat().st_size > 1 << 16
    assert check_inputs([str(path)]) == [str(path)]
    [(_, article)] = list(iter_articles([str(path)]))
    assert article.id == "L" and len(article.paragraphs) == 70


def test_a_named_id_column_that_a_record_lacks_is_an_error_record(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "a", "text": "One."}\n{"url": "u2", "text": "Two."}\n{"url": null, "text": "Three."}\n')
    found = list(iter_articles([str(path)], Columns(id="url")))
    assert isinstance(found[0][1], ArticleError)
    assert str(found[0][1]) == f"{path}:1: url: missing (the id field named by --id-column / id_column)"
    assert found[0][1].record_id == "c.jsonl:1"  # the error record keeps the fallback id
    assert [i.id for _, i in found[1:]] == ["u2", "c.jsonl:3"]  # a null id: a record without an id
    assert [i.id for _, i in iter_articles([str(path)])] == ["a", "c.jsonl:2", "c.jsonl:3"]  # no column named
    table = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["p1"], "text": ["x"]}), table)
    with pytest.raises(InputError, match=r"t\.parquet: no column 'url' \(the id column: id_column, --id-column\)"):
        check_inputs([str(table)], Columns(id="url"))
    (tmp_path / "t.csv").write_text("id,text\nc1,x\n")
    with pytest.raises(InputError, match=r"t\.csv: no column 'url' \(the id column"):
        check_inputs([str(tmp_path / "t.csv")], Columns(id="url"))


def test_folders_recurse_and_report_files_of_other_types(tmp_path):
    folder = tmp_path / "in"
    (folder / "2024" / "06").mkdir(parents=True)
    (folder / "a.txt").write_text("First.")
    (folder / "2024" / "b.jsonl").write_text('{"id": "b1", "text": "x"}\n')
    (folder / "2024" / "06" / "c.txt").write_text("Third.")
    (folder / "2024" / "notes.md").write_text("# not an article")
    (folder / ".hidden.txt").write_text("left out: hidden")
    (folder / "2024" / "06" / "up").symlink_to(folder, target_is_directory=True)  # a loop through a folder link
    found = list(iter_articles([str(folder)]))
    got = [(str(p), i.id if isinstance(i, Article) else i.message) for p, i in found]
    assert got == [(f"{folder}/2024/06/c.txt", "2024/06/c.txt"),  # the path inside the folder: ids stay distinct
                   (f"{folder}/2024/06/up", "file: a symbolic link loop (a folder already read)"),
                   (f"{folder}/2024/b.jsonl:1", "b1"),
                   (f"{folder}/2024/notes.md", "file: not a .txt/.jsonl/.ndjson/.csv/.parquet file (optionally .gz)"),
                   (f"{folder}/a.txt", "a.txt")]
    only_other = tmp_path / "other"
    only_other.mkdir()
    (only_other / "README.md").write_text("x")
    with pytest.raises(InputError, match="folder holds no files newstagger reads"):
        check_inputs([str(only_other)])


# -- hostile run (issue 10, second helper) --------------------------------------------------------


def test_a_named_pipe_in_a_folder_is_an_error_record_not_a_hang(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("First.")
    os.mkfifo(folder / "pipe.txt")  # opening it would wait for a writer forever
    unblock = threading.Timer(10, lambda: os.close(os.open(folder / "pipe.txt", os.O_WRONLY)))
    unblock.start()  # so that a reader that opens it fails this test instead of hanging the suite
    try:
        found = list(iter_articles([str(folder)]))
    finally:
        unblock.cancel()
    got = [(str(p), i.id if isinstance(i, Article) else i.message) for p, i in found]
    assert got == [(f"{folder}/a.txt", "a.txt"),
                   (f"{folder}/pipe.txt", "file: not a regular file (a named pipe, socket or device)")]


def test_csv_header_with_a_column_twice_is_refused_not_half_read(tmp_path):
    data = b"id,text,text\nc1,first,second\nc2,third,fourth\n"
    found = items(read_csv, data)
    assert messages(found) == ["record: the CSV header names column 'text' twice"]
    path = tmp_path / "dup.csv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=r"dup.csv: the header names column 'text' twice"):
        check_inputs([str(path)])


def test_truncated_gzip_keeps_its_readable_records(tmp_path):
    lines = b"".join(json.dumps({"id": f"r{i}", "text": "Some words."}).encode() + b"\n" for i in range(50))
    packed = gzip.compress(lines)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(packed[: len(packed) // 2])  # a download cut short
    assert check_inputs([str(path)]) == [str(path)]
    found = list(iter_articles([str(path)]))
    good = [i.id for _, i in found if isinstance(i, Article)]
    assert good and good == [f"r{i}" for i in range(len(good))]
    assert isinstance(found[-1][1], ArticleError) and "cannot read from here on" in found[-1][1].message
    tiny = tmp_path / "cut-in-line-1.jsonl.gz"  # cut inside its first record
    tiny.write_bytes(packed[:30])
    assert check_inputs([str(tiny)]) == [str(tiny)]
    assert all(isinstance(i, ArticleError) for _, i in iter_articles([str(tiny)]))


def test_json_error_messages_read_plainly():
    cr_only = b'{"id": "a", "text": "x"}\r{"id": "b", "text": "y"}\r'
    assert messages(items(read_jsonl, cr_only)) == [
        "record: invalid JSON (Extra data at column 26) (lines end in CR alone; JSON Lines needs LF or CRLF line ends)"]
    control = items(read_jsonl, b'{"id": "a", "text": "raw\x01byte"}\n')
    assert messages(control) == ["record: invalid JSON (Invalid control character at column 25)"]
    with pytest.raises(ArticleError, match=r"^id: expected a string or a number, got inf \(not a finite number\)$"):
        article_from_record({"id": math.inf, "text": "Hello."}, Position("f.jsonl", 1))


def test_a_utf16_jsonl_file_is_one_clear_error_not_one_per_half_line(tmp_path):
    data = ('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n').encode("utf-16")
    found = items(read_jsonl, data)  # one item per line still, each saying why
    assert [p.row for p, _ in found] == [1, 2, 3]
    assert all(i.message.startswith("record: UTF-16 or UTF-32 text") for _, i in found)
    path = tmp_path / "wide.jsonl"
    path.write_bytes(data)
    with pytest.raises(InputError, match=r"wide.jsonl: UTF-16 or UTF-32 text .* iconv -f UTF-16 -t UTF-8"):
        check_inputs([str(path)])


def test_csv_on_standard_input_says_so_once():
    """Found by a user trial: `cat my.csv | newstagger tag -` gave one bare invalid-JSON error per line."""
    import io

    found = [str(item) for _, item in iter_articles(["-"], stdin=io.BytesIO(b'id,text\na1,"Hello, world."\n'))]
    assert found[0].startswith("<stdin>:1: record: invalid JSON (Expecting value at column 1); the first line looks "
                               "like a CSV header") and "give a CSV file by its name" in found[0]
    assert "CSV" not in found[1]
    broken = [str(item) for _, item in iter_articles(["-"], stdin=io.BytesIO(b'{"id": "a", "text": "x",\n'))]
    assert "CSV" not in broken[0]  # a broken JSON line is not taken for CSV
