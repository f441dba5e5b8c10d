"""Tag a corpus of articles: the engine behind predict.py, usable from Python too.

    from newstagger.batch import tag_files
    counts = tag_files("runs/default", ["corpus.jsonl", "more/"], "tags.jsonl", resume=True)
    print(counts.summary())

Inputs: JSONL (our schema, or records with a text field), CSV and Parquet (a text column and an optional
id column), .txt files (one article each), folders of .txt files (sorted, nothing else read) and "-" (JSONL
on stdin). They are read lazily and tagged in chunks of ``chunk_size`` articles (one
Predictor.predict_batch_safe call each, so paragraphs of many articles share encoder batches).

Every input record gives exactly one output record, in input order: ``TaggingResult.to_record()``, or
``{"id", "error": "<file>:<line>: <field>: <problem>"}`` when it cannot be read or tagged; the run goes on.
Records without an id get ``<file name>:<line or row>`` (a .txt file: its file name).

Output is appended record by record (flushed each record, fsync'ed each chunk), so a killed run loses at
most the records in flight; ``resume=True`` repairs a torn last line, counts the N complete records and
skips the first N input records (input order is deterministic).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import sys
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator, Sequence
from urllib.parse import urlsplit

import numpy as np
from tqdm.auto import tqdm

from .predictor import ArticleError, Predictor, TaggingResult, as_article

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")  # .json is read as JSON lines, as newstagger.data does
TABLE_SUFFIXES = (".csv", ".parquet")
STDIN = "-"
STDIN_NAME = "<stdin>"

# Limits for the CLI. Real news articles have tens of paragraphs of at most a few thousand characters;
# beyond these the "article" is a scraping accident (a whole site, a page without paragraph breaks),
# and tagging it would only stall the run.
DEFAULT_MAX_PARAGRAPHS = 1000
DEFAULT_MAX_PARAGRAPH_CHARS = 50_000
DEFAULT_CHUNK_SIZE = 128  # articles per Predictor call: their paragraphs are sorted and batched together

SOURCE_FIELDS = ("source", "site", "outlet", "domain")
UNDECODED_BYTE = re.compile("[\udc80-\udcff]")  # what errors="surrogateescape" makes of a byte that is not UTF-8


class InputError(ValueError):
    """A problem with the run itself (model, input files, output file, options), found before any record
    is written: the CLI prints it and exits with status 2."""


@dataclass
class InputRecord:
    id: str
    where: str  # "<file>:<line or row>" (a .txt file: "<file>" or "<file>:<line>"), prefixes error messages
    article: dict | None  # {"id", "title", "paragraphs" or "text"}, as Predictor accepts; None if unreadable
    error: str | None = None  # "<field>: <problem>" when the record cannot be read
    source: str = ""  # the outlet it comes from, for --site-repeat


@dataclass
class BatchCounts:
    records: int = 0  # records in the output, including those of an earlier run (resumed)
    tagged: int = 0
    errors: int = 0
    resumed: int = 0  # records already in the output when this run started
    paragraphs: int = 0  # paragraphs tagged by this run
    seconds: float = 0.0  # this run's reading and tagging time
    first_error: str | None = None  # of this run, shown in the summary so a failure is visible at once

    @property
    def exit_status(self) -> int:
        return 1 if self.errors else 0

    def summary(self) -> str:
        new = self.records - self.resumed
        rate = new / self.seconds if self.seconds > 0 else 0.0
        resumed = f" ({self.resumed} from the earlier run)" if self.resumed else ""
        line = (f"records: {self.records}{resumed}, tagged: {self.tagged}, errors: {self.errors}, "
                f"{rate:.1f} articles/s")
        if self.first_error:
            line += f"; first error: {self.first_error}"
        return line


# ---------------------------------------------------------------------------------------------
# Reading inputs
# ---------------------------------------------------------------------------------------------


def check_inputs(inputs: Sequence[str | Path], text_column: str | None, id_column: str | None) -> list[str]:
    """Fail early, before the model loads, on inputs that cannot be read at all."""
    if not inputs:
        raise InputError("no input given")
    checked = []
    for item in inputs:
        name = str(item)
        checked.append(name)
        if name == STDIN:
            continue
        path = Path(name)
        if not path.exists():
            raise InputError(f"{name}: no such file or folder")
        if path.is_dir():
            if not _txt_files(path):
                raise InputError(f"{name}: folder holds no .txt files (only *.txt files of a folder are read)")
            continue
        if not os.access(path, os.R_OK):
            raise InputError(f"{name}: not readable (permission denied)")
        suffix = path.suffix.lower()
        if suffix in TABLE_SUFFIXES:
            _check_columns(path, _table_columns(path), text_column, id_column)
        elif suffix not in JSONL_SUFFIXES + (".txt",):
            raise InputError(f"{name}: unsupported file type {suffix or '(none)'!r} "
                             "(expected .jsonl, .csv, .parquet, .txt, a folder of .txt files, or - for stdin)")
    return checked


def _txt_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".txt" and p.is_file())


def _table_columns(path: Path) -> list[str]:
    try:
        if path.suffix.lower() == ".csv":
            with open(path, encoding="utf-8-sig", errors="replace", newline="") as f:
                return next(csv.reader(f), [])
        import pyarrow.parquet as pq

        return list(pq.ParquetFile(path).schema_arrow.names)
    except Exception as e:  # csv.Error, pyarrow's ArrowInvalid, OSError... for a file that makes no sense
        raise InputError(f"{path}: cannot read as {path.suffix.lower()[1:].upper()} ({e})") from e


def _check_columns(path: Path, columns: list[str], text_column: str | None, id_column: str | None) -> None:
    shown = ", ".join(columns[:20])
    if text_column is not None and text_column not in columns:
        raise InputError(f"{path}: no column {text_column!r} for --text-column (columns: {shown})")
    if text_column is None and "text" not in columns and "paragraphs" not in columns:
        raise InputError(f"{path}: no 'text' or 'paragraphs' column; name the text column with "
                         f"--text-column (columns: {shown})")
    if id_column is not None and id_column not in columns:
        raise InputError(f"{path}: no column {id_column!r} for --id-column (columns: {shown})")


def iter_records(inputs: Sequence[str], text_column: str | None = None,
                 id_column: str | None = None) -> Iterator[InputRecord]:
    """Every record of every input, lazily and in order. Never raises for bad data: a record that cannot
    be read comes with its error, and a file that becomes unreadable midway yields one error record."""
    for name in inputs:
        if name == STDIN:
            yield from _jsonl_records(sys.stdin.buffer, STDIN_NAME, STDIN_NAME, text_column, id_column)
            continue
        path = Path(name)
        suffix = path.suffix.lower()
        if path.is_dir():
            for txt in _txt_files(path):
                yield _txt_record(txt, source=name)
        elif suffix == ".txt":
            yield _txt_record(path, source=name)
        elif suffix in TABLE_SUFFIXES:
            yield from _table_records(path, text_column, id_column)
        else:
            with open(path, "rb") as f:
                yield from _jsonl_records(f, name, path.name, text_column, id_column)


def _jsonl_records(stream: IO[bytes], where: str, id_prefix: str, text_column: str | None,
                   id_column: str | None) -> Iterator[InputRecord]:
    for lineno, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue  # blank lines are not records (line numbers still count them)
        fallback_id = f"{id_prefix}:{lineno}"
        here = f"{where}:{lineno}"
        try:
            row = json.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as e:
            yield InputRecord(fallback_id, here, None, f"record: not valid UTF-8 ({e.reason} at byte {e.start})")
            continue
        except json.JSONDecodeError as e:
            yield InputRecord(fallback_id, here, None, f"record: invalid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(row, dict):
            yield InputRecord(fallback_id, here, None, f"record: expected a JSON object, got {type(row).__name__}")
            continue
        if b"\\u" in raw and _has_lone_surrogate(row):
            # JSON may escape half of a UTF-16 pair ("\ud800"); such a string is not Unicode text and
            # would break the tokenizer and the UTF-8 output.
            yield InputRecord(_row_id(row, id_column, fallback_id, sanitize=True), here, None,
                              "record: holds an unpaired UTF-16 surrogate escape (not valid Unicode)")
            continue
        yield _record_from_row(row, here, fallback_id, text_column, id_column, source=where)


def _has_lone_surrogate(row: dict) -> bool:
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def _txt_record(path: Path, source: str) -> InputRecord:
    try:
        raw = path.read_bytes()
    except OSError as e:
        return InputRecord(path.name, str(path), None, f"file: cannot read ({e.strerror or e})")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        return InputRecord(path.name, f"{path}:{line}", None,
                           f"text: not valid UTF-8 ({e.reason} at byte {e.start})", source)
    return InputRecord(path.name, str(path), {"id": path.name, "title": "", "text": text}, None, source)


def _table_records(path: Path, text_column: str | None, id_column: str | None) -> Iterator[InputRecord]:
    if path.suffix.lower() == ".csv":
        rows = _csv_rows(path)
    else:
        rows = _parquet_rows(path, {text_column or "text", "paragraphs", "title", id_column or "id", *SOURCE_FIELDS})
    number = 0
    try:
        for number, row, problem in rows:
            here, fallback_id = f"{path}:{number}", f"{path.name}:{number}"
            if problem:
                rid = _row_id(row, id_column, fallback_id) if row is not None else fallback_id
                yield InputRecord(rid, here, None, problem)
            else:
                yield _record_from_row(row, here, fallback_id, text_column, id_column, source=str(path))
    except Exception as e:  # e.g. a Parquet file damaged past this row: keep the records read so far
        yield InputRecord(f"{path.name}:{number + 1}", f"{path}:{number + 1}", None,
                          f"file: cannot read from this row on ({type(e).__name__}: {e})")


def _csv_rows(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line the row starts on, row or None if unusable, problem or None) for each CSV row.

    Python's csv module rather than pyarrow: it streams row by row, knows each row's line even when
    cells span lines, and a ragged row, an oversized cell or bad UTF-8 spoils only its own row, where
    pyarrow's reader fails a whole block of rows."""
    csv.field_size_limit(max(csv.field_size_limit(), 64 << 20))  # a whole article may be one cell
    # surrogateescape keeps undecodable bytes as lone surrogates, so they can be reported per row
    with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        while True:
            start = reader.line_num + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                yield start, None, f"record: cannot parse the CSV row ({e})"
                continue
            if not cells:
                continue  # a blank line
            if len(cells) != len(header):
                yield start, None, f"record: {len(cells)} fields, but the header has {len(header)} columns"
                continue
            row = dict(zip(header, cells))
            undecodable = next((key for key, value in row.items() if UNDECODED_BYTE.search(value)), None)
            if undecodable is not None:
                yield start, None, f"{undecodable}: not valid UTF-8"
                continue
            if "paragraphs" in row:  # CSV holds list fields as JSON text, as in newstagger.data
                if not row["paragraphs"].strip():
                    row["paragraphs"] = None  # an empty cell: use the text column
                else:
                    try:
                        row["paragraphs"] = json.loads(row["paragraphs"])
                    except json.JSONDecodeError:
                        yield start, row, "paragraphs: expected a JSON list of strings"
                        continue
            yield start, row, None


def _parquet_rows(path: Path, wanted: set[str]) -> Iterator[tuple[int, dict | None, str | None]]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    columns = [c for c in parquet.schema_arrow.names if c in wanted]
    number = 0
    for batch in parquet.iter_batches(batch_size=256, columns=columns):
        for row in batch.to_pylist():
            number += 1
            yield number, row, None


def _row_id(row: dict, id_column: str | None, fallback: str, sanitize: bool = False) -> str:
    value = row.get(id_column or "id")
    if value is None or isinstance(value, (dict, list)) or not str(value).strip():
        return fallback
    text = str(value)
    if sanitize:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def article_from_record(row: dict, fallback_id: str, text_column: str | None = None,
                        id_column: str | None = None) -> tuple[str, dict | None, str | None]:
    """(id, article for the Predictor or None, "<field>: <problem>" or None) of one JSON object or table row.

    An explicit text column wins; otherwise our schema's 'paragraphs', then 'text'. A string is split into
    paragraphs, a list is taken as the paragraphs. The id is the id column's value, or ``fallback_id``
    (file name and position) when it is missing or empty. The Ray engine follows the same rules.
    """
    rid = _row_id(row, id_column, fallback_id)
    fields = [text_column, "paragraphs"] if text_column else ["paragraphs", "text"]
    for name in fields:
        value = row.get(name)
        if value is None:
            continue
        if isinstance(value, str) and name != "paragraphs":
            return rid, {"id": rid, "title": row.get("title") or "", "text": value}, None
        if isinstance(value, list):
            return rid, {"id": rid, "title": row.get("title") or "", "paragraphs": value}, None
        expected = "a list of paragraph strings" if name == "paragraphs" else "text or a list of paragraphs"
        return rid, None, f"{name}: expected {expected}, got {type(value).__name__}"
    return rid, None, f"{text_column or 'text'}: missing (the record has neither {fields[0]!r} nor {fields[1]!r})"


def _record_from_row(row: dict, where: str, fallback_id: str, text_column: str | None, id_column: str | None,
                     source: str) -> InputRecord:
    rid, article, error = article_from_record(row, fallback_id, text_column, id_column)
    return InputRecord(rid, where, article, error, _source_of(row, default=source))


def _source_of(row: dict, default: str) -> str:
    """The outlet a record comes from: its source/site/outlet/domain string, the repo or URL host of a
    source object, else the input it was read from."""
    for key in SOURCE_FIELDS:
        if isinstance(row.get(key), str) and row[key].strip():
            return row[key].strip()
    source = row.get("source")
    if isinstance(source, dict):
        if isinstance(source.get("repo"), str) and source["repo"].strip():
            return source["repo"].strip()
        if isinstance(source.get("url"), str):
            host = urlsplit(source["url"]).hostname
            if host:
                return host
    return default


# ---------------------------------------------------------------------------------------------
# --site-repeat: paragraphs that recur verbatim across many articles of one source
# ---------------------------------------------------------------------------------------------


def paragraph_key(source: str, paragraph: str) -> int:
    """64-bit key of a (source, paragraph) pair; whitespace and case do not matter."""
    normalised = " ".join(paragraph.split()).casefold()
    digest = hashlib.blake2b(f"{source}\x00{normalised}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def count_repeated_paragraphs(records: Iterable[InputRecord], min_articles: int) -> tuple[set[int], int]:
    """First pass of --site-repeat: the keys (see paragraph_key) of paragraphs found in at least
    ``min_articles`` articles of their source, and the number of records read.

    Memory is 8 bytes per paragraph read plus a set of article fingerprints, so a million-article corpus
    needs a few hundred MB. An article repeated verbatim (a repost) counts once; otherwise every
    paragraph of a thrice-posted story would look like site furniture.
    """
    keys = array("Q")
    seen_articles: set[int] = set()
    n_records = 0
    for record in records:
        n_records += 1
        if record.error is not None:
            continue
        try:
            paragraphs = as_article(record.article).paragraphs  # the same paragraphs the tagger will see
        except ArticleError:
            continue
        article_keys = [paragraph_key(record.source, p) for p in paragraphs]
        fingerprint = hash(tuple(article_keys))
        if fingerprint in seen_articles:
            continue
        seen_articles.add(fingerprint)
        keys.extend(set(article_keys))  # once per article, however often it repeats a paragraph itself
    values, counts = np.unique(np.frombuffer(keys, dtype=np.uint64), return_counts=True)
    return set(values[counts >= min_articles].tolist()), n_records


def push_repeated_toward_boilerplate(result: TaggingResult, source: str, repeated: set[int],
                                     threshold: float) -> None:
    """Raise the boilerplate score of repeated paragraphs halfway to 1 (so at least 0.5) and recompute
    their flags, the clean text and the evidence. Topics stay as the model gave them: recomputing them
    would need the paragraph vectors again."""
    hits = [i for i, p in enumerate(result.paragraphs) if paragraph_key(source, p) in repeated]
    if not hits:
        return
    for i in hits:
        result.paragraph_scores[i] = 0.5 + result.paragraph_scores[i] / 2
        result.boilerplate[i] = result.paragraph_scores[i] >= threshold
    result.clean_text = "\n\n".join(p for p, flag in zip(result.paragraphs, result.boilerplate) if not flag)
    result.evidence = {label: [i for i in indices if not result.boilerplate[i]]
                       for label, indices in result.evidence.items()}


# ---------------------------------------------------------------------------------------------
# Output: JSONL (resumable) or --pretty text
# ---------------------------------------------------------------------------------------------


def _line_start(f: IO[bytes], end: int) -> int:
    """Offset of the first byte after the last newline before ``end`` (0 if none)."""
    pos = end
    while pos > 0:
        step = min(1 << 16, pos)
        f.seek(pos - step)
        i = f.read(step).rfind(b"\n")
        if i >= 0:
            return pos - step + i + 1
        pos -= step
    return 0


def repair_output(path: str | Path) -> tuple[int, int, str | None, int]:
    """Make a killed run's output resumable: truncate the torn tail (bytes after the last newline, then
    any trailing line that is not a JSON record, as left by a crash before fsync), and return
    (complete records, error records among them, id of the last record, bytes dropped)."""
    with open(path, "r+b") as f:
        size = f.seek(0, os.SEEK_END)
        end = _line_start(f, size)
        last_id = None
        while end > 0:
            start = _line_start(f, end - 1)
            f.seek(start)
            try:
                last = json.loads(f.read(end - start))
                if isinstance(last, dict) and "id" in last:
                    last_id = last["id"]
                    break
            except (UnicodeDecodeError, json.JSONDecodeError):
                pass
            end = start
        f.truncate(end)
        f.seek(0)
        records = errors = 0
        for line in f:
            records += 1
            # Only error records hold the key "error"; a quote inside a text value is escaped (\"),
            # so the bytes '"error"' elsewhere are rare and json.loads settles them.
            if b'"error"' in line and "error" in json.loads(line):
                errors += 1
    return records, errors, last_id, size - end


def format_pretty(result: TaggingResult | None, record_id: str, error: str | None, width: int = 90) -> str:
    """A human-readable block for one article: id, topics with scores, the boilerplate paragraphs
    (shortened, with scores), and how many content paragraphs remain."""
    if error is not None:
        return f"{record_id}\n  error: {error}\n\n"
    lines = [f"{result.id}  ({len(result.paragraphs)} paragraphs)"]
    if result.topics:
        lines.append("  topics: " + ", ".join(f"{t} {result.topic_scores[t]:.2f}" for t in result.topics))
    else:
        best = max(result.topic_scores, key=result.topic_scores.get)
        lines.append(f"  topics: none (highest: {best} {result.topic_scores[best]:.2f})")
    flagged = [i for i, flag in enumerate(result.boilerplate) if flag]
    lines.append(f"  boilerplate: {len(flagged)} paragraph{'s' if len(flagged) != 1 else ''}")
    for i in flagged:
        text = " ".join(result.paragraphs[i].split())  # one line, whatever newlines the input held
        short = text if len(text) <= width else text[:width - 1].rstrip() + "…"
        lines.append(f"    [{i:>2}] {result.paragraph_scores[i]:.2f}  {short}")
    lines.append(f"  content paragraphs: {len(result.paragraphs) - len(flagged)}")
    return "\n".join(lines) + "\n\n"


def _json_line(record: dict) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate that slipped through: \u-escaped JSON is still valid
        return (json.dumps(record) + "\n").encode("ascii")


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def _tag_chunk(predictor: Predictor, chunk: list[InputRecord]) -> list[TaggingResult | str]:
    """A TaggingResult, or an error message without its location, for each readable record of ``chunk``."""
    readable = [r for r in chunk if r.error is None]
    if not readable:
        return []
    try:
        results = predictor.predict_batch_safe([r.article for r in readable], ids=[r.id for r in readable])
    except Exception:
        # Something the article checks did not foresee broke the whole chunk. Tag its articles one by
        # one so that only the culprit is lost.
        results = []
        for r in readable:
            try:
                results.append(predictor.predict_batch_safe([r.article], ids=[r.id])[0])
            except Exception as e:
                results.append(ArticleError(f"article: cannot be tagged ({type(e).__name__}: {e})"))
    return [str(r) if isinstance(r, ArticleError) else r for r in results]


def _load_predictor(model, backend: str, batch_size: int, num_threads: int | None, max_paragraphs: int,
                    max_paragraph_chars: int) -> Predictor:
    if isinstance(model, Predictor):
        return model
    folder = Path(model)
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a model folder (no config.json); train one with train.py")
    try:
        return Predictor.from_pretrained(folder, backend=backend, batch_size=batch_size, num_threads=num_threads,
                                         max_paragraphs=max_paragraphs, max_paragraph_chars=max_paragraph_chars)
    except Exception as e:  # a damaged folder, an unknown backend, a missing optional dependency...
        raise InputError(f"{folder}: cannot load the model ({type(e).__name__}: {e})") from e


def _skip_written_records(records: Iterator[InputRecord], n: int, last_id: str | None, output: Path) -> None:
    """Advance ``records`` past the n records the output already holds, checking that they match."""
    for i in range(1, n + 1):
        record = next(records, None)
        if record is None:
            raise InputError(f"{output}: holds {n} records but the inputs have only {i - 1}; "
                             "was it written from other inputs?")
        if i == n and record.id != last_id:
            raise InputError(f"{output}: its last record is {last_id!r} but input record {n} is "
                             f"{record.id!r}; was it written from other inputs?")


def tag_files(
    model: str | Path | Predictor,
    inputs: Sequence[str | Path],
    output: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    pretty: bool = False,
    text_column: str | None = None,
    id_column: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    backend: str = "torch",
    batch_size: int = 32,
    num_threads: int | None = None,
    max_paragraphs: int = DEFAULT_MAX_PARAGRAPHS,
    max_paragraph_chars: int = DEFAULT_MAX_PARAGRAPH_CHARS,
    site_repeat: bool = False,
    site_repeat_min: int = 3,
    progress: bool | None = None,
) -> BatchCounts:
    """Tag every record of ``inputs`` and write one output record per input record, in order.

    model: a model folder, or a ready Predictor (then backend, batch_size, num_threads and the limits
    are its own). output: a file, or None for stdout. text_column / id_column: None means "paragraphs"
    or "text", and "id" if present. progress: a tqdm bar on stderr; None shows it when stderr is a
    terminal that the output does not go to.
    Raises InputError for problems with the run itself; bad records become error records instead.
    """
    if chunk_size < 1:
        raise InputError("chunk size must be at least 1")
    if resume and output is None:
        raise InputError("--resume needs --output FILE (output to stdout cannot be resumed)")
    if resume and overwrite:
        raise InputError("--resume and --overwrite contradict each other")
    if resume and pretty:
        raise InputError("--resume works with JSONL output only, not --pretty")
    inputs = check_inputs(inputs, text_column, id_column)
    if site_repeat and STDIN in inputs:
        raise InputError("--site-repeat reads the inputs twice, which stdin cannot do; pass files")
    if site_repeat and site_repeat_min < 2:
        raise InputError("--site-repeat-min must be at least 2 (1 would flag every paragraph)")
    if output is not None:
        output = Path(output)
        if output.is_dir():
            raise InputError(f"{output}: is a folder, not an output file")
        if output.exists() and not (resume or overwrite):
            raise InputError(f"{output}: already exists; pass --resume to continue it or --overwrite to replace it")
        if any(name != STDIN and Path(name).resolve() == output.resolve() for name in inputs):
            raise InputError(f"{output}: is also an input")
    predictor = _load_predictor(model, backend, batch_size, num_threads, max_paragraphs, max_paragraph_chars)

    if progress is None:  # a bar helps on a terminal, but not mixed into output shown on that same terminal
        progress = sys.stderr.isatty() and not (output is None and sys.stdout.isatty())
    counts = BatchCounts()
    total = None
    repeated: set[int] = set()
    if site_repeat:
        repeated, total = count_repeated_paragraphs(
            tqdm(iter_records(inputs, text_column, id_column), desc="site-repeat: counting paragraphs",
                 unit=" articles", disable=not progress, file=sys.stderr),
            site_repeat_min)

    last_id = None
    if output is not None and resume and output.exists():
        counts.resumed, counts.errors, last_id, dropped = repair_output(output)
        counts.records, counts.tagged = counts.resumed, counts.resumed - counts.errors
        if dropped:
            print(f"resume: dropped {dropped} bytes of a torn last line from {output}", file=sys.stderr)
    records = iter_records(inputs, text_column, id_column)
    _skip_written_records(records, counts.resumed, last_id, output)

    out = open(output, "ab" if resume else "wb") if output is not None else sys.stdout.buffer
    bar = tqdm(total=None if total is None else total - counts.resumed, unit=" articles", desc="tagging",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        while True:
            chunk = [r for _, r in zip(range(chunk_size), records)]
            if not chunk:
                break
            tagged = iter(_tag_chunk(predictor, chunk))
            for record in chunk:
                outcome = record.error if record.error is not None else next(tagged)
                if isinstance(outcome, str):
                    error, result = f"{record.where}: {outcome}", None
                    counts.errors += 1
                    counts.first_error = counts.first_error or error
                else:
                    error, result = None, outcome
                    if repeated:
                        push_repeated_toward_boilerplate(result, record.source, repeated,
                                                         predictor.boilerplate_threshold)
                    counts.tagged += 1
                    counts.paragraphs += len(result.paragraphs)
                counts.records += 1
                if pretty:
                    out.write(format_pretty(result, record.id, error).encode("utf-8"))
                else:
                    out.write(_json_line({"id": record.id, "error": error} if error else result.to_record()))
                out.flush()  # record by record: a killed process loses only the records not yet written
            if output is not None:
                os.fsync(out.fileno())  # per chunk: the records survive a machine crash too
            elapsed = time.perf_counter() - started
            bar.update(len(chunk))
            bar.set_postfix_str(f"{counts.paragraphs / max(elapsed, 1e-9):.0f} paragraphs/s", refresh=False)
    finally:
        counts.seconds = time.perf_counter() - started
        bar.close()
        if output is not None:
            out.close()
    return counts
