"""Reading articles: one reader for every input, one rule from record to Article, one set of limits.

Everything newstagger reads goes through here: training, evaluation and ``check`` (newstagger.data),
the local tagging engine (newstagger.batch) and the Ray datasource (newstagger.ray_tagging).

    for position, item in iter_articles(["corpus.jsonl", "news.csv", "texts/", "-"], Columns(text="body")):
        print(position, item)         # "news.csv:12", an Article or an ArticleError ("text: missing")

Inputs: JSON Lines (.jsonl, .ndjson, .json; optionally .gz), CSV (.csv, .csv.gz: header row, one record
per row), Parquet (.parquet), text (.txt, .txt.gz: one article per file), folders of such files (sorted,
sub-folders read in their place; a file of another type is one error record; hidden files and .json files
are left out, so a folder of .txt articles may hold expected.json),
"-" (JSON Lines on standard input), and URIs pyarrow's filesystems open (``s3://``, ``gs://``, ``file://``).

Every record gives exactly one item, in input order, at its Position (``file:line``: a JSONL line, the line
a CSV row starts on, a Parquet row number; a .txt file has no line; a file name holding a newline or another
character that would break the line is quoted, ``'a\\nb.jsonl':3``). A record that cannot be read is an
ArticleError at that position, and reading goes on: nothing is skipped in silence. Blank JSONL lines and
blank CSV lines are not records (they still count for line numbers).

The record rule (article_from_record): the text is ``paragraphs`` (a list, kept as it is, so output
paragraph i is input paragraph i, empty ones included) or ``text`` (a string split into paragraphs by
split_paragraphs; ``paragraphs`` when a record has both), or the column named by ``Columns.text`` (not for a
.txt file, which is one text); ``title`` is optional; the id is the id column's
value (strings, and numbers such as a CSV's ``101``) or, when missing, ``<file name>:<line>``, a file found
in an input folder being named by its path inside that folder (``2024/a.jsonl:3``: Position.default_id).
Labelled records may add ``boilerplate`` (0/1 per paragraph) and topics (``Columns.label``, default
``topics``): a list, a JSON list, a delimited string (``a, b``, ``a; b``, ``a | b``) or a single label.
"""

from __future__ import annotations

import csv
import errno
import gzip
import io
import json
import math
import numbers
import os
import re
import shlex
import stat
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import IO, Iterable, Iterator, Sequence

STDIN = "-"
STDIN_NAME = "<stdin>"
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")  # an explicit .json file is read as JSON lines
FOLDER_SUFFIXES = (".txt", ".jsonl", ".ndjson", ".csv", ".parquet")  # what a folder's listing reads
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet",
           ".txt": "txt"}
SOURCE_FIELDS = ("source", "site", "outlet", "domain")  # where an article comes from (--site-repeat)
LIST_FIELDS = ("paragraphs", "boilerplate")
UNDECODED_BYTE = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of a byte that is not UTF-8
_READ_CHUNK = 1 << 20


@dataclass
class Article:
    """One article: ``paragraphs`` in input order (empty ones keep their index), optional labels."""
    id: str
    paragraphs: list[str]
    title: str = ""
    boilerplate: list[int] | None = None  # one 0/1 flag per paragraph; None when unlabelled
    topics: list[str] | None = None  # None when unlabelled
    extra: dict = field(default_factory=dict)  # the record's other fields (outlet, source, url...)

    def to_record(self) -> dict:
        record = {"id": self.id, "title": self.title, "paragraphs": self.paragraphs}
        if self.boilerplate is not None:
            record["boilerplate"] = self.boilerplate
        if self.topics is not None:
            record["topics"] = self.topics
        record.update(self.extra)
        return record


class ArticleError(ValueError):
    """One record that cannot be read or tagged. ``str(e)`` is ``file:line: field: problem`` once the
    record's place is known (``where``), ``field: problem`` before. ``record_id``: the record's id when it
    could be read, for the error record of the output."""

    def __init__(self, message: str, where: object = None, record_id: str | None = None):
        self.message = message  # "field: problem"
        self.where = where
        self.record_id = record_id
        super().__init__(f"{where}: {message}" if where is not None else message)

    @property
    def field(self) -> str:
        return self.message.split(": ", 1)[0]

    def at(self, where: object, record_id: str | None = None) -> "ArticleError":
        return ArticleError(self.message, where, record_id if record_id is not None else self.record_id)

    def in_batch(self, n: int) -> "ArticleError":
        """This error as that of the n-th (0-based) article of a list given to the Predictor or the service:
        ``article 2 (id 'a7'): text: missing``, the id shown when the article has one."""
        return self.at(f"article {n}" + (f" (id {self.record_id!r})" if self.record_id is not None else ""))


class InputError(ValueError):
    """A problem with a run itself (an input, the output, an option), found before any record is written:
    the CLI prints it on one line and exits with status 2."""


@dataclass(frozen=True)
class Limits:
    """What one article may hold. Real news articles have tens of paragraphs of at most a few thousand
    characters; beyond these limits a "record" is a scraping accident (a whole site, a page without
    paragraph breaks), and tagging it would stall a run or exhaust its memory. Shared by the Predictor,
    the CLI's engines and training, so a service and a batch job accept the same articles.

    max_line_bytes caps one record before it is parsed (a JSONL line, a CSV row, a .txt file), so a
    runaway line costs at most this much memory: a bound for readers of files (and, as --max-body-bytes, of
    the service's requests), not for the objects a Predictor is given, which are parsed already."""
    max_paragraphs: int = 1000
    max_paragraph_chars: int = 50_000
    max_title_chars: int = 2_000
    max_line_bytes: int = 8 << 20

    def __post_init__(self):
        for name in ("max_paragraphs", "max_paragraph_chars", "max_title_chars", "max_line_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a whole number of at least 1, not {value!r}")

    def check(self, article: Article, field: str = "paragraphs") -> None:
        """Raise ArticleError when ``article`` is over a limit; ``field``: where its paragraphs came from, as
        the record named it (``text``, a --text-column), for the message."""
        if len(article.paragraphs) > self.max_paragraphs:
            raise ArticleError(f"{field}: {len(article.paragraphs)} paragraphs, over the limit of "
                               f"{self.max_paragraphs} (max_paragraphs)")
        longest = max((len(p) for p in article.paragraphs), default=0)
        if longest > self.max_paragraph_chars:
            raise ArticleError(f"{field}: a paragraph of {longest} characters, over the limit of "
                               f"{self.max_paragraph_chars} (max_paragraph_chars)")
        if len(article.title) > self.max_title_chars:
            raise ArticleError(f"title: {len(article.title)} characters, over the limit of "
                               f"{self.max_title_chars} (max_title_chars)")


@dataclass(frozen=True)
class Columns:
    """Which record fields hold the text, the id and the topic labels. None: the defaults
    (``paragraphs``, else ``text``; ``id``; ``topics``)."""
    text: str | None = None
    id: str | None = None
    label: str | None = None

    @classmethod
    def from_config(cls, config) -> "Columns":
        """From a training config's text_column / id_column / label_column (absent keys: defaults)."""
        return cls(getattr(config, "text_column", None), getattr(config, "id_column", None),
                   getattr(config, "label_column", None))

    @property
    def label_field(self) -> str:
        return self.label or "topics"

    def wanted(self) -> set[str]:
        """The fields a tagging run reads (Parquet reads only these columns)."""
        return {self.text or "text", "paragraphs", "title", self.id or "id", *SOURCE_FIELDS}


def show_path(path: str) -> str:
    """A path as one-line messages (``file:line: field: problem``) show it: as it is, or, when it holds
    something that would break or blur the line, quoted with Python's escapes (``'a\\nb.jsonl'``). Quoted:
    a character that is not printable (a newline or another control character, whitespace other than a
    space, a byte that is not UTF-8), a space at either end, an opening quote, or ": " (the separator)."""
    if (path.isprintable() and path == path.strip() and not path.startswith(("'", '"'))
            and ": " not in path):
        return path
    return repr(path)


@dataclass(frozen=True)
class Position:
    """Where a record was read: ``source`` (the input as named, or <stdin>; a file found in an input
    folder: that folder's path joined with the file's path inside it), ``row`` (1-based line or row; None
    for a .txt file, which is one record), and ``name``: the file's path inside the input folder it was
    found in (POSIX separators, e.g. ``2024/a.jsonl``), None for a file named directly or stdin."""
    source: str
    row: int | None = None
    name: str | None = None

    def __str__(self) -> str:
        """``file:line`` for messages: the full source, quoted when it needs to be (see show_path)."""
        return show_path(self.source) if self.row is None else f"{show_path(self.source)}:{self.row}"

    @property
    def default_id(self) -> str:
        """The id of a record that has none: ``<name>:<line or row>`` (a .txt file: its name), where the
        name is the file's path inside its input folder (``2024/a.jsonl:3``, ``x/story.txt``), so that
        same-named files in two sub-folders do not share ids, or, for a file named directly, its file
        name (``a.jsonl:3``; the folders above it are left out, so an id does not depend on where the
        corpus lies). Both engines build ids here, so local and Ray runs give the same ids."""
        name = self.name or PurePosixPath(self.source.replace("\\", "/")).name or self.source
        return name if self.row is None else f"{name}:{self.row}"


# ---------------------------------------------------------------------------------------------
# The record rule
# ---------------------------------------------------------------------------------------------


def split_paragraphs(text: str) -> list[str]:
    """Blank lines separate paragraphs; a text without blank lines is split on newlines. Whitespace inside
    a paragraph is collapsed, and empty parts are dropped (a text has no paragraph indices to keep)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    parts = re.split(r"\n\s*\n", text) if re.search(r"\n\s*\n", text) else text.split("\n")
    return [" ".join(p.split()) for p in parts if p.strip()]


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _type(value) -> str:
    return type(value).__name__


def _text(value: str, name: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # JSON may escape half of a UTF-16 pair ("\ud800"): not Unicode text
        raise ArticleError(f"{name}: holds an unpaired UTF-16 surrogate (not valid Unicode)") from None
    return value


def record_id(record: dict, position: Position | None, columns: Columns = Columns()) -> str | None:
    """The record's id as a string: a string as it is, an integral number without a decimal point
    (``101``, ``101.0`` -> ``"101"``), else the position's default id. Raises ArticleError for a value
    that cannot be an id (true/false, a list, infinity), and, when the id column was named (``Columns.id``:
    --id-column, id_column), for a record that lacks the field altogether (its record_id the default id):
    a misspelt column name must not pass as records without ids. A null or empty value is a record
    without an id (CSV and Parquet rows always hold every column; check_inputs refuses a table without
    the named one)."""
    name = columns.id or "id"
    if columns.id is not None and name not in record:
        raise ArticleError(f"{name}: missing (the id field named by --id-column / id_column)",
                           record_id=position.default_id if position is not None else None)
    value = record.get(name)
    fallback = position.default_id if position is not None else None
    if _missing(value) or (isinstance(value, str) and not value.strip()):
        return fallback
    if isinstance(value, bool) or not isinstance(value, (str, numbers.Real)):  # (numpy's bool is no number)
        raise ArticleError(f"{name}: expected a string or a number, got {_type(value)}")
    if isinstance(value, numbers.Integral):  # numpy integers too (a pandas column of ids)
        return str(int(value))
    if not isinstance(value, str):
        value = float(value)
        if not math.isfinite(value):
            raise ArticleError(f"{name}: expected a string or a number, got {value} (not a finite number)")
        return str(int(value)) if value.is_integer() else repr(value)
    return _text(value, name)


def _decode_list(value, name: str):
    """A list field given as JSON text (CSV cells, string columns) becomes the list it spells."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            raise ArticleError(f"{name}: expected a JSON list, got text that is not valid JSON") from None
    return value


def _null(value) -> str:
    return "NaN" if isinstance(value, float) else "null"


def _paragraphs(record: dict, columns: Columns) -> tuple[str, list[str]]:
    """(the field the text came from, its paragraphs)."""
    if columns.text:
        name = columns.text
        if _missing(record.get(name)):
            raise ArticleError(f"{name}: {_null(record[name])}" if name in record else f"{name}: missing")
    else:
        name = "paragraphs" if not _missing(record.get("paragraphs")) else "text"
        if _missing(record.get(name)):
            if "paragraphs" in record:  # there, but null: "neither" would send the user looking for it
                raise ArticleError("paragraphs: null; give a list of strings, or text")
            if "text" in record:  # null (or NaN: an empty cell of a table)
                raise ArticleError(f"text: {_null(record['text'])}; give the article's text as a string, or paragraphs")
            raise ArticleError("text: missing (the record has neither 'paragraphs' nor 'text')")
    value = record[name]
    if name == "paragraphs":
        value = _decode_list(value, name)
        if isinstance(value, str):
            raise ArticleError(f"{name}: expected a list of paragraph strings, got str")
    if isinstance(value, str):
        paragraphs = split_paragraphs(_text(value, name))
    elif isinstance(value, (list, tuple)):
        bad = next((i for i, p in enumerate(value) if not isinstance(p, str)), None)
        if bad is not None:
            raise ArticleError(f"{name}: expected a list of strings (item {bad} is {_type(value[bad])})")
        paragraphs = [_text(p, name) for p in value]
    else:
        raise ArticleError(f"{name}: expected a text or a list of paragraph strings, got {_type(value)}")
    if not any(p.strip() for p in paragraphs):  # named as the user named the field (--text-column body)
        raise ArticleError(f"{name}: the article has no non-empty paragraph")
    return name, paragraphs


def parse_labels(value, name: str = "topics") -> list[str] | None:
    """Topic labels as users store them: a list, a JSON list, a delimited string (comma, semicolon or
    pipe: the first of these the string holds) or a single label. None or NaN: unlabelled; "": no topic."""
    if _missing(value):
        return None
    value = _decode_list(value, name)
    if isinstance(value, str):
        delimiter = next((d for d in ",;|" if d in value), None)
        parts = value.split(delimiter) if delimiter else [value]
        value = [p.strip() for p in parts if p.strip()]
    if not isinstance(value, (list, tuple)):
        raise ArticleError(f"{name}: expected label names (a list or a delimited string), got {_type(value)}")
    labels = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ArticleError(f"{name}: expected label names, got an item of type {_type(item)}")
        labels.append(_text(item, name).strip() if isinstance(item, str) else str(item))
    return labels


def _flags(value, n_paragraphs: int) -> list[int] | None:
    if _missing(value):
        return None
    value = _decode_list(value, "boilerplate")
    if not isinstance(value, (list, tuple)):
        raise ArticleError(f"boilerplate: expected a list of 0/1, got {_type(value)}")
    bad = next((i for i, f in enumerate(value) if isinstance(f, bool) or f not in (0, 1)), None)
    if bad is not None:
        raise ArticleError(f"boilerplate: item {bad} is {value[bad]!r}, expected 0 or 1")
    if len(value) != n_paragraphs:
        raise ArticleError(f"boilerplate: {len(value)} flags for {n_paragraphs} paragraphs")
    return [int(f) for f in value]


def article_from_record(record, position: Position | None = None, columns: Columns = Columns(),
                        labelled: bool = False, limits: Limits | None = None) -> Article:
    """The one rule from a record (a JSON object, a CSV or Parquet row) to an Article (see the module
    docstring). ``labelled``: read ``boilerplate`` and the label column too (training, evaluation).
    Raises ArticleError ("field: problem", its record_id set when the id could be read)."""
    if not isinstance(record, dict):
        raise ArticleError(f"record: expected a JSON object, got {_type(record)}")
    if position is not None and position.row is None and format_of(position.source)[0] == "txt":
        # a .txt file is one text with its name for an id: --text-column and --id-column name the fields of
        # the CSV, Parquet or JSONL inputs given with it
        columns = replace(columns, text=None, id=None)
    # A CSV cell that is not UTF-8 (read with surrogateescape) spoils its record; the record keeps its id when
    # the id cell is sound (found by a user trial: the error record of one bad cell lost its id).
    undecodable = next((k for k, v in record.items() if isinstance(v, str) and UNDECODED_BYTE.search(v)), None)
    if undecodable is not None:
        id_cell = record.get(columns.id or "id")
        sound = not (isinstance(id_cell, str) and UNDECODED_BYTE.search(id_cell))
        raise ArticleError(f"{undecodable}: not valid UTF-8",
                           record_id=record_id(record, position, columns) if sound else None)
    rid = record_id(record, position, columns)
    try:
        title = record.get("title")
        if _missing(title):
            title = ""
        elif not isinstance(title, str):
            raise ArticleError(f"title: expected a string, got {_type(title)}")
        field, paragraphs = _paragraphs(record, columns)
        used = {columns.text or "paragraphs", "text", "paragraphs", "title", columns.id or "id"}
        article = Article(id=rid, paragraphs=paragraphs, title=_text(title, "title"))
        if labelled:
            article.boilerplate = _flags(record.get("boilerplate"), len(paragraphs))
            article.topics = parse_labels(record.get(columns.label_field), columns.label_field)
            used |= {"boilerplate", columns.label_field}
        article.extra = {k: v for k, v in record.items() if k not in used}
        if limits is not None:
            limits.check(article, field)
        return article
    except ArticleError as e:
        raise e.at(None, rid) from None


def as_article(obj, default_id: str | None = None, limits: Limits | None = None) -> Article:
    """The Predictor's article forms: a string (split_paragraphs), a list of paragraph strings, a record
    dict (article_from_record) or an Article. Raises ArticleError saying what is wrong."""
    if isinstance(obj, Article):
        # the record rule's id (a string; a number as its digits; none -> default_id), on a copy: the caller's
        # Article is never changed
        rid = record_id({"id": obj.id}, None)
        rid = default_id if rid is None else rid
        if not isinstance(obj.paragraphs, (list, tuple)) or not all(isinstance(p, str) for p in obj.paragraphs):
            raise ArticleError("paragraphs: expected a list of strings", record_id=rid)
        if not isinstance(obj.title, str):
            raise ArticleError(f"title: expected a string, got {_type(obj.title)}", record_id=rid)
        article = replace(obj, id=rid, paragraphs=list(obj.paragraphs))
    elif isinstance(obj, str):
        article = Article(id=default_id, paragraphs=split_paragraphs(_text(obj, "text")))
    elif isinstance(obj, (list, tuple)):
        bad = next((i for i, p in enumerate(obj) if not isinstance(p, str)), None)
        if bad is not None:
            raise ArticleError(f"paragraphs: expected a list of strings (item {bad} is {_type(obj[bad])})")
        article = Article(id=default_id, paragraphs=[_text(p, "paragraphs") for p in obj])
    elif isinstance(obj, dict):  # checked against the limits by the record rule, which knows the text's field
        article = article_from_record(obj, limits=limits)
        if article.id is None:
            article.id = default_id
        return article
    else:
        raise ArticleError(f"article: expected a string, a list of paragraphs or a dict, got {_type(obj)}")
    field = "text" if isinstance(obj, str) else "paragraphs"  # a string is the article's text
    if not any(p.strip() for p in article.paragraphs):
        raise ArticleError(f"{field}: the article has no non-empty paragraph", record_id=article.id)
    if limits is not None:
        try:
            limits.check(article, field)
        except ArticleError as e:
            raise e.at(None, article.id) from None
    return article


# ---------------------------------------------------------------------------------------------
# Readers: (position, record dict or ArticleError), one per record, for any bytes
# ---------------------------------------------------------------------------------------------

_CSV_HINT = ("; the first line looks like a CSV header, but standard input and .jsonl files are read as JSON "
             "Lines: give a CSV file by its name (ending in .csv)")
_PRETTY = "looks like a JSON array or pretty-printed JSON"


def _pretty_hint(opening: str, name: str | None = None) -> str:
    """What to do with a JSON document where JSON Lines belong: ``opening`` is its first character ("[" for
    an array, whose items are the records; "{" for objects written over several lines, each a record);
    ``name``: the file, for a command to paste (None: the input is not known by name here)."""
    program = "jq -c '.[]'" if opening == "[" else "jq -c ."
    if name is None:
        command = f"{program} < INPUT > OUTPUT.jsonl"
    else:
        name = f"./{name}" if name.startswith("-") else name  # not an option to jq or gunzip
        stem = re.sub(r"(\.jsonl|\.ndjson|\.json)?(\.gz)?$", "", name, flags=re.IGNORECASE)
        read = f"gunzip -c {shlex.quote(name)} | {program}" if name.lower().endswith(".gz") else \
            f"{program} {shlex.quote(name)}"
        command = f"{read} > {shlex.quote(stem + '.lines.jsonl')}"
    return f"; the input {_PRETTY}, but newstagger reads JSON Lines (one object per line): convert it with  {command}"


def _lines(stream: IO[bytes], max_bytes: int) -> Iterator[bytes | int]:
    """The lines of a binary stream without their line end, or, for a line over ``max_bytes``, its length
    in bytes (the line itself is skipped without being kept)."""
    buffer = b""
    skipped = 0  # > 0 while skipping the rest of an overlong line
    # gzip's read(n) drops what it decompressed when the file turns out truncated; read1 hands it over first
    read = stream.read1 if isinstance(stream, gzip.GzipFile) else stream.read
    while True:
        data = read(_READ_CHUNK)
        if not data:
            break
        buffer += data
        start = 0
        while True:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            if skipped:
                yield skipped + end - start
                skipped = 0
            elif end - start > max_bytes:
                yield end - start
            else:
                yield buffer[start:end].rstrip(b"\r")
            start = end + 1
        buffer = buffer[start:]
        if skipped or len(buffer) > max_bytes:
            skipped += len(buffer)
            buffer = b""
    if skipped:
        yield skipped + len(buffer)
    elif buffer:
        yield buffer.rstrip(b"\r")


def _too_long(n_bytes: int, limits: Limits, what: str = "line") -> ArticleError:
    return ArticleError(f"record: a {what} of {n_bytes} bytes, over the limit of {limits.max_line_bytes} "
                        "(max_line_bytes)")


def json_reason(e: json.JSONDecodeError, with_line: bool = False) -> str:
    """json's message with where it failed: "Unterminated string starting at column 22" (``with_line``:
    "at line 3 column 22", for a body that may span lines). json's own "Invalid control character at" loses
    its dangling "at"."""
    where = f"line {e.lineno} column {e.colno}" if with_line else f"column {e.colno}"
    return f"{e.msg.removesuffix(' at')} at {where}"


def parse_json_record(raw: bytes, first: bool = False):
    """A JSON object from one line of bytes, or the ArticleError that says why not."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return ArticleError(f"record: not valid UTF-8 ({e.reason} at byte {e.start})")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        # Pretty-printed JSON opens with "[" or "{" alone on its line; a first line that is merely broken
        # ('{"id": "a", "title": "x"') is one bad record like any other (check_inputs looks at the whole file)
        hint = _pretty_hint(text.strip()) if first and text.strip() in ("[", "{") else ""
        if first and not hint and e.pos == 0 and "," in text and text.lstrip()[:1] not in '{["':
            hint = _CSV_HINT  # e.g. `cat my.csv | newstagger tag -`: one invalid-JSON record per line otherwise
        if not hint and e.msg == "Extra data" and "\r" in text:  # old Mac line ends: every record on one line
            hint = " (lines end in CR alone; JSON Lines needs LF or CRLF line ends)"
        return ArticleError(f"record: invalid JSON ({json_reason(e)}){hint}")
    except RecursionError:
        return ArticleError("record: JSON nested too deeply")
    except ValueError as e:  # e.g. an integer of more than 4300 digits
        return ArticleError(f"record: invalid JSON ({e})")
    if not isinstance(value, dict):
        hint = _pretty_hint("[") if first and isinstance(value, list) and value and isinstance(value[0], dict) else ""
        return ArticleError(f"record: expected a JSON object, got {_type(value)}{hint}")
    return value


def read_jsonl(stream: IO[bytes], source: str, limits: Limits = Limits()) -> Iterator[tuple[Position, object]]:
    first = True
    wide = False  # the file opens with a UTF-16 or UTF-32 byte order mark
    for lineno, raw in enumerate(_lines(stream, limits.max_line_bytes), start=1):
        if isinstance(raw, int):
            yield Position(source, lineno), _too_long(raw, limits)
            first = False
            continue
        if not raw.strip():
            continue  # blank lines are not records (line numbers still count them)
        wide = wide or (first and raw.startswith(_UTF16_BOMS))
        if wide:  # its "lines" are split mid-character: each says why, not "invalid JSON"
            yield Position(source, lineno), ArticleError(_UTF16_PROBLEM)
        else:
            yield Position(source, lineno), parse_json_record(raw, first)
        first = False


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF16_PROBLEM = ("record: UTF-16 or UTF-32 text (it opens with a byte order mark); newstagger reads UTF-8: convert "
                  "it, e.g. iconv -f UTF-16 -t UTF-8")


class _CsvFeed:
    """Feeds csv.reader decoded lines, remembering the raw lines of the row being read, so that a row that
    cannot be parsed (an unterminated quote swallowing the rows after it, a row over the size limit) is
    reported at its first line and reading restarts on the line after it."""

    def __init__(self, stream: IO[bytes], max_bytes: int):
        self.lines = _lines(stream, max_bytes)
        self.max_bytes = max_bytes
        self.pushed: list[tuple[int, bytes | int]] = []  # lines to read again, in order
        self.next_line = 1
        self.row: list[tuple[int, bytes | int]] = []  # (line number, raw line) of the row being read
        self.row_bytes = 0

    def start_row(self) -> None:
        self.row, self.row_bytes = [], 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        if self.pushed:
            number, raw = self.pushed.pop(0)
        else:
            raw = next(self.lines)  # StopIteration ends the reader
            number = self.next_line
            self.next_line += 1
        self.row.append((number, raw))
        if isinstance(raw, int):
            raise _RowTooLong(raw)
        self.row_bytes += len(raw) + 1
        if self.row_bytes > self.max_bytes:
            raise _RowTooLong(self.row_bytes)
        return raw.decode("utf-8", "surrogateescape") + "\n"

    def row_start(self) -> int:
        return self.row[0][0] if self.row else self.next_line

    def restart_after_first_line(self) -> None:
        self.pushed = self.row[1:] + self.pushed
        self.start_row()


class _RowTooLong(Exception):
    pass


def read_csv(stream: IO[bytes], source: str, limits: Limits = Limits()) -> Iterator[tuple[Position, object]]:
    """One record per CSV row ({header: cell}), at the line the row starts on. A row that cannot be parsed
    spoils only itself: the rows after it are read again from its second line on."""
    csv.field_size_limit(max(csv.field_size_limit(), limits.max_line_bytes))
    feed = _CsvFeed(stream, limits.max_line_bytes)
    reader = csv.reader(feed, strict=True)
    header = None
    while True:
        feed.start_row()
        try:
            cells = next(reader)
        except StopIteration:
            if feed.row and header is not None:  # an unterminated quote at the end of the file
                yield Position(source, feed.row_start()), ArticleError(
                    "record: cannot parse the CSV row (unexpected end of data: an unterminated quote?)")
                feed.restart_after_first_line()
                reader = csv.reader(feed, strict=True)
                continue
            return
        except (csv.Error, _RowTooLong) as e:
            start = feed.row_start()
            if header is None:  # without a header no row can be read
                yield Position(source, start), ArticleError(f"record: cannot read the CSV header ({e})")
                return
            problem = (_too_long(e.args[0], limits, "row") if isinstance(e, _RowTooLong)
                       else ArticleError(f"record: cannot parse the CSV row ({e})"))
            yield Position(source, start), problem
            feed.restart_after_first_line()
            reader = csv.reader(feed, strict=True)  # a reader that failed mid-row keeps its state
            continue
        if header is None:
            header = [h.lstrip("\ufeff") for h in cells]
            twice = _repeated_column(header)
            if twice is not None:  # a row would keep only one of the two cells, in silence
                yield Position(source, 1), ArticleError(f"record: the CSV header names column {twice!r} twice")
                return
            continue
        if not cells:
            continue  # a blank line
        position = Position(source, feed.row_start())
        if len(cells) != len(header):
            yield position, ArticleError(f"record: {len(cells)} fields, but the header has {len(header)} columns")
            continue
        yield position, dict(zip(header, cells))  # a cell that is not UTF-8: the record rule says which


def _repeated_column(names: list[str]) -> str | None:
    seen = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def read_parquet(file, source: str, limits: Limits = Limits(), columns: Iterable[str] | None = None,
                 batch_rows: int = 256) -> Iterator[tuple[Position, object]]:
    """One record per Parquet row, numbered from 1. A row whose values cannot be converted is an error at
    its own number; a damaged row group gives one error per row it holds. ``columns``: read only these."""
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(file)
    names = parquet.schema_arrow.names
    wanted = [c for c in names if columns is None or c in set(columns)]
    number = 0
    for group in range(parquet.metadata.num_row_groups):
        group_rows = parquet.metadata.row_group(group).num_rows
        done = 0
        try:
            for batch in parquet.iter_batches(batch_size=batch_rows, row_groups=[group], columns=wanted):
                try:
                    rows = batch.to_pylist()
                except Exception:
                    rows = []
                    for i in range(batch.num_rows):
                        try:
                            rows.append(batch.slice(i, 1).to_pylist()[0])
                        except Exception as e:
                            rows.append(ArticleError(f"record: cannot read the row ({type(e).__name__}: {e})"))
                for row in rows:
                    number += 1
                    done += 1
                    yield Position(source, number), row
        except Exception as e:  # the row group itself is damaged: one error for each of its remaining rows
            problem = f"record: cannot read row group {group} ({type(e).__name__}: {e})"
            for _ in range(done, group_rows):
                number += 1
                yield Position(source, number), ArticleError(problem)


def read_txt(stream: IO[bytes], source: str, limits: Limits = Limits()) -> Iterator[tuple[Position, object]]:
    """A .txt file is one article: ``{"text": ...}`` (its id is the file name)."""
    raw = stream.read(limits.max_line_bytes + 1)
    if len(raw) > limits.max_line_bytes:
        size = len(raw) + sum(len(chunk) for chunk in iter(lambda: stream.read(_READ_CHUNK), b""))
        yield Position(source), _too_long(size, limits, "file")
        return
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        yield Position(source), ArticleError(f"text: not valid UTF-8 (line {line}: {e.reason} at byte {e.start})")
        return
    yield Position(source), {"text": text}


def format_of(name: str) -> tuple[str | None, bool]:
    """(format, gzip-compressed) from a file name: ("jsonl", True) for ``x.jsonl.gz``; None if unknown."""
    lower = name.lower()
    compressed = lower.endswith(".gz")
    if compressed:
        lower = lower[:-3]
    return FORMATS.get(PurePosixPath(lower).suffix), compressed


def read_stream(stream, source: str, fmt: str, limits: Limits = Limits(),
                columns: Iterable[str] | None = None, name: str | None = None) -> Iterator[tuple[Position, object]]:
    """The records of one already opened (and decompressed) input of format ``fmt``. A read error midway
    (a vanished file, a damaged disk) is one error record at the next position, and the input ends there.
    ``name``: the file's path inside its input folder, for the positions (see Position)."""
    readers = {"jsonl": read_jsonl, "csv": read_csv, "txt": read_txt}
    items = (read_parquet(stream, source, limits, columns) if fmt == "parquet"
             else readers[fmt](stream, source, limits))
    last = None
    try:
        for position, item in items:
            last = position
            yield (position if name is None else Position(source, position.row, name)), item
    except (OSError, EOFError, gzip.BadGzipFile, ValueError) as e:
        if isinstance(e, InputError):
            raise
        row = None if fmt == "txt" else ((last.row or 0) + 1 if last else 1)
        yield Position(source, row, name), ArticleError(f"file: cannot read from here on ({type(e).__name__}: {e})")


# ---------------------------------------------------------------------------------------------
# Inputs: files, folders, stdin, URIs
# ---------------------------------------------------------------------------------------------


def is_uri(name: str) -> bool:
    return "://" in str(name)


NOT_READABLE = "file: not a .txt/.jsonl/.ndjson/.csv/.parquet file (optionally .gz)"


def _folder_entries(folder: Path, exclude: set, _seen: set | None = None) -> Iterator[tuple[Path, str | None]]:
    """(path, problem or None) for each file under a folder, sorted by name, sub-folders recursed into in
    their place. Nothing is passed over in silence: a file of another type (NOT_READABLE), a symbolic
    link that leads nowhere or into a loop, a sub-folder reached a second time through a link: each is
    (path, "file: problem"). Left out: hidden entries (names starting with "."), .json files (a folder of
    .txt articles may hold expected.json; name a .json file to read it) and files in ``exclude``
    ((device, inode) pairs, e.g. the run's output)."""
    seen = _seen if _seen is not None else set()
    info = folder.stat()
    seen.add((info.st_dev, info.st_ino))
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.name.lower().endswith((".json", ".json.gz")):
            continue
        try:
            info = path.stat()
        except OSError as e:
            if path.is_symlink():
                why = "a symbolic link loop" if e.errno == errno.ELOOP else "a dangling symbolic link (its target is missing)"
                yield path, f"file: {why}"
            else:
                yield path, f"file: cannot read ({e.strerror or e})"
            continue
        if stat.S_ISDIR(info.st_mode):
            if (info.st_dev, info.st_ino) in seen:
                yield path, "file: a symbolic link loop (a folder already read)"
                continue
            try:
                yield from _folder_entries(path, exclude, seen)
            except OSError as e:
                yield path, f"file: cannot read the folder ({e.strerror or e})"
            continue
        if (info.st_dev, info.st_ino) in exclude:
            continue
        if not stat.S_ISREG(info.st_mode):  # a named pipe or a device would block the run or never end
            yield path, "file: not a regular file (a named pipe, socket or device)"
            continue
        yield path, (NOT_READABLE if format_of(path.name)[0] is None else None)


def _open_local(path: str, fmt: str, compressed: bool):
    return gzip.open(path, "rb") if compressed and fmt != "parquet" else open(path, "rb")


def _open_uri(uri: str, fmt: str, compressed: bool):
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    if fmt == "parquet":
        return fs.open_input_file(path)
    return fs.open_input_stream(path, compression="gzip" if compressed else None)


def _read_file(source: str, name: str | None, opener, fmt: str, limits: Limits, columns
               ) -> Iterator[tuple[Position, object]]:
    try:
        stream = opener()
    except Exception as e:
        yield Position(source, None if fmt == "txt" else 1, name), ArticleError(
            f"file: cannot open ({getattr(e, 'strerror', None) or e})")
        return
    with stream:
        try:
            yield from read_stream(stream, source, fmt, limits, columns, name)
        except InputError:
            raise
        except Exception as e:  # pyarrow refusing a file that is not Parquet after all, and the like
            yield Position(source, None if fmt == "txt" else 1, name), ArticleError(
                f"file: cannot read as {fmt} ({type(e).__name__}: {e})")


def _uri_files(uri: str) -> list[tuple[str, str | None]]:
    """(URI, path inside the folder) of each readable file of a folder URI; [(uri, None)] for a file."""
    import pyarrow.fs as pafs

    fs, path = pafs.FileSystem.from_uri(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.Directory:
        return [(uri, None)]
    scheme = uri.split("://", 1)[0]
    files = [e.path for e in fs.get_file_info(pafs.FileSelector(path)) if e.type == pafs.FileType.File]
    keep = sorted(p for p in files if format_of(p)[0] and not p.lower().endswith((".json", ".json.gz")))
    # The listing is one level deep, so a file's path inside the folder is its file name
    return [(f"{scheme}://{p}", PurePosixPath(p).name) for p in keep]


def file_identities(paths: Sequence[str]) -> list[dict]:
    """Each input file as {path, size, mtime_ns} (pyarrow's file info, local or URI; None where a filesystem
    does not say or cannot be read, and for standard input): an output is this run's to resume or reuse only
    if its inputs are the same files, unchanged since (both engines' run records hold this)."""
    import pyarrow.fs as pafs

    identities = []
    for path in paths:
        size = mtime = None
        if path != STDIN:
            try:
                filesystem, inner = pafs.FileSystem.from_uri(path) if is_uri(path) else (pafs.LocalFileSystem(), path)
                info = filesystem.get_file_info(inner)
                size, mtime = info.size, info.mtime_ns
            except (OSError, ValueError):  # unreadable here: reading it reports it as an error record
                pass
        identities.append({"path": path, "size": size, "mtime_ns": mtime})
    return identities


def input_files(inputs: Sequence[str | Path], exclude: Iterable[tuple[int, int]] = ()
                ) -> Iterator[tuple[str, str | None, str | None]]:
    """The files the inputs name, in reading order, as (source, problem, name): ``problem`` is None, or
    "file: problem" for a folder entry that cannot be read (a dangling or looping symbolic link);
    ``name`` is the file's path inside the input folder it was found in (POSIX separators: the ``name``
    of its Positions), None for a file named directly. A folder (local or URI) expands to its readable
    files, sorted by name; "-" stays "-". ``exclude``: (device, inode) of local files a folder listing
    leaves out (the run's own output)."""
    exclude = set(exclude)
    for item in inputs:
        source = str(item)
        if is_uri(source):
            yield from ((uri, None, name) for uri, name in _uri_files(source))
        elif source != STDIN and Path(source).is_dir():
            folder = Path(source)
            for entry, problem in _folder_entries(folder, exclude):
                yield str(entry), problem, entry.relative_to(folder).as_posix()
        else:
            yield source, None, None


def iter_records(inputs: Sequence[str | Path], limits: Limits = Limits(), columns: Iterable[str] | None = None,
                 exclude: Iterable[tuple[int, int]] = (), stdin: IO[bytes] | None = None
                 ) -> Iterator[tuple[Position, object]]:
    """(Position, record dict or ArticleError) for every record of every input, lazily and in order.
    Never raises for bad data (InputError only when stdin is closed). ``columns``: the only fields Parquet
    needs to read (None: all). ``exclude``: see input_files."""
    for source, problem, name in input_files(inputs, exclude):
        fmt, compressed = format_of(source)
        if problem is not None:
            yield Position(source, None if fmt in ("txt", None) else 1, name), ArticleError(problem)
        elif source == STDIN:
            yield from read_stream(stdin if stdin is not None else _stdin(), STDIN_NAME, "jsonl", limits)
        else:
            fmt = fmt or "jsonl"  # check_inputs refuses unknown types before a run
            opener = _open_uri if is_uri(source) else _open_local
            yield from _read_file(source, name, lambda: opener(source, fmt, compressed), fmt, limits, columns)


def _stdin() -> IO[bytes]:
    if sys.stdin is None or sys.stdin.closed:  # started with stdin closed (<&-): Python sets it to None
        raise InputError("-: standard input is closed")
    return sys.stdin.buffer


def iter_articles(inputs: Sequence[str | Path], columns: Columns = Columns(), limits: Limits = Limits(),
                  labelled: bool = False, exclude: Iterable[tuple[int, int]] = (),
                  stdin: IO[bytes] | None = None) -> Iterator[tuple[Position, Article | ArticleError]]:
    """The reader and the record rule together: (Position, Article or ArticleError) for every record of
    every input, in order. An ArticleError carries its position (``where``) and, when it could be read,
    the record's id (``record_id``)."""
    wanted = None if labelled else columns.wanted()
    for position, record in iter_records(inputs, limits, wanted, exclude, stdin):
        if isinstance(record, ArticleError):
            yield position, record.at(position, position.default_id)
            continue
        try:
            yield position, article_from_record(record, position, columns, labelled, limits)
        except ArticleError as e:
            yield position, e.at(position, e.record_id or position.default_id)


# ---------------------------------------------------------------------------------------------
# Checking inputs before a run
# ---------------------------------------------------------------------------------------------


def _peek_first_line(path: Path, compressed: bool, limit: int = 1 << 16) -> bytes:
    """The first non-blank line of a file if it ends within its first ``limit`` bytes (or the file does),
    else b"": a longer first record is left to the run, which reads lines up to max_line_bytes (a valid
    record of 70 KB was once refused here as 'pretty-printed JSON', cut at 64 KiB)."""
    head = b""
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
        try:  # chunk by chunk: a truncated .gz still shows its first lines (the run reads them and reports the rest)
            while len(head) < limit and (chunk := f.read1(limit - len(head))):
                head += chunk
        except EOFError:
            pass
    whole = len(head) < limit  # the file ended within the limit
    lines = head.split(b"\n")
    for n, line in enumerate(lines):
        if line.strip():
            return line.rstrip(b"\r") if whole or n < len(lines) - 1 else b""
    return b""


def _is_one_json_document(path: Path, compressed: bool, limit: int) -> bool:
    """Whether a file of at most ``limit`` bytes parses as a single JSON object or array (a JSON document
    written over several lines, not JSON Lines)."""
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            data = f.read(limit + 1)
    except EOFError:  # a truncated .gz: not a whole document; the run reports where its records end
        return False
    if len(data) > limit:
        return False
    try:
        return isinstance(json.loads(data.decode("utf-8-sig")), (dict, list))
    except (ValueError, RecursionError):
        return False


def _table_columns(path: Path, fmt: str, compressed: bool) -> list[str]:
    if fmt == "csv":
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as f:
            head = f.read(1 << 20).decode("utf-8-sig", "replace")
        return next(csv.reader(io.StringIO(head)), [])
    import pyarrow.parquet as pq

    return list(pq.ParquetFile(path).schema_arrow.names)


def check_inputs(inputs: Sequence[str | Path], columns: Columns = Columns(), stdin_ok: bool = True) -> list[str]:
    """Fail early, before a model loads, on inputs that cannot be read at all (InputError). Returns the
    inputs as strings. Tables must have the text column (and the id column, when one is named)."""
    if not inputs:
        raise InputError("no input given")
    checked = []
    for item in inputs:
        name = str(item)
        checked.append(name)
        shown = show_path(name)  # in messages
        if name == STDIN:
            if not stdin_ok:
                raise InputError("-: this command reads files, not standard input")
            _stdin()
            continue
        if is_uri(name):
            try:
                if not _uri_files(name):
                    raise InputError(f"{shown}: holds no readable files ({', '.join(FOLDER_SUFFIXES)})")
            except InputError:
                raise
            except Exception as e:
                raise InputError(f"{shown}: cannot read ({type(e).__name__}: {e})") from e
            continue
        path = Path(name)
        if not path.exists():
            raise InputError(f"{shown}: no such file or folder")
        if path.is_dir():
            try:
                if not any(problem is None for _, problem in _folder_entries(path, set())):
                    raise InputError(f"{shown}: folder holds no files newstagger reads "
                                     f"({', '.join(FOLDER_SUFFIXES)}, optionally .gz)")
            except PermissionError as e:
                raise InputError(f"{shown}: not readable ({e.strerror})") from e
            continue
        if not os.access(path, os.R_OK):
            raise InputError(f"{shown}: not readable (permission denied)")
        fmt, compressed = format_of(path.name)
        if fmt is None:
            raise InputError(f"{shown}: unsupported file type {path.suffix.lower() or '(none)'!r} (expected .jsonl, "
                             ".csv, .parquet, .txt (optionally .gz), a folder of them, or - for stdin)")
        try:
            if fmt in ("csv", "parquet"):
                _check_columns(shown, _table_columns(path, fmt, compressed), columns)
            elif fmt == "jsonl":
                first = _peek_first_line(path, compressed)
                if first.startswith(_UTF16_BOMS):
                    raise InputError(f"{shown}: {_UTF16_PROBLEM.removeprefix('record: ')}")
                problem = parse_json_record(first, first=True) if first else None
                opening = first.strip()[:1].decode("ascii", "replace")
                if isinstance(problem, ArticleError) and (
                        _PRETTY in str(problem)
                        or (opening in ("[", "{") and _is_one_json_document(path, compressed, Limits().max_line_bytes))):
                    message = str(problem).partition(f"; the input {_PRETTY}")[0]
                    raise InputError(f"{shown}:1: {message}{_pretty_hint(opening, shown)}")
        except InputError:
            raise
        except Exception as e:  # csv.Error, pyarrow's ArrowInvalid, a gzip that is not gzip...
            raise InputError(f"{shown}: cannot read as {fmt.upper()} ({type(e).__name__}: {e})") from e
    return checked


def _check_columns(name: str, names: list[str], columns: Columns) -> None:
    if not names:  # an empty file: no header, no records (like an empty JSONL file; the summary says so)
        return
    shown = ", ".join(names[:20])
    twice = _repeated_column(names)
    if twice is not None:
        raise InputError(f"{name}: the header names column {twice!r} twice")
    if columns.text is not None and columns.text not in names:
        raise InputError(f"{name}: no column {columns.text!r} (the text column: text_column, --text-column); "
                         f"its columns: {shown}")
    if columns.text is None and "text" not in names and "paragraphs" not in names:
        raise InputError(f"{name}: no 'text' or 'paragraphs' column; name the text column with "
                         f"text_column or --text-column (its columns: {shown})")
    if columns.id is not None and columns.id not in names:
        raise InputError(f"{name}: no column {columns.id!r} (the id column: id_column, --id-column); "
                         f"its columns: {shown}")
    if columns.label is not None and columns.label not in names:
        raise InputError(f"{name}: no column {columns.label!r} (the label column: label_column, --label-column); "
                         f"its columns: {shown}")
