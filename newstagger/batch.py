"""Tag a corpus: the options both engines share, the run summary, and the local engine behind
``newstagger tag`` (and ``predict.py``).

    from newstagger.batch import tag_files
    summary = tag_files("runs/default", ["corpus.jsonl", "more/"], "tags.jsonl", resume=True)
    print(summary.summary())

Inputs are read by newstagger.inputs (JSONL, CSV, Parquet, .txt, folders, stdin, URIs) and turned into
articles by its one record rule, with the run's Limits. They are tagged in chunks of ``chunk_size`` articles
(one Predictor call each, so paragraphs of many articles share encoder micro-batches of ``batch_size``).

Every input record gives exactly one output record, in input order: ``TaggingResult.to_record()``, or
``{"id", "error": "<file>:<line>: <field>: <problem>"}`` when it cannot be read or tagged; the run goes on.

Output is appended record by record as each chunk of articles is tagged (flushed each record, fsync'ed each
chunk), so a killed run loses at most the chunk in flight (``chunk_size`` articles). ``resume=True`` first
checks that the output is a newstagger output of these inputs (every line one of our records, its first and
last ids those of the matching input records; its run record, OUTPUT.run.json, that the model, the options and
the input files, by size and modification time, are the same), then drops a torn last line, and skips the
records already written (input order is deterministic). The output is checked before the model loads: not a
folder, its folder present and writable, not the same file as an input (device and inode, so hard links and
symlinks count), not being written by another run (OutputLock), and a file inside an input folder is not read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
import time
from array import array
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable, Iterator, Sequence
from urllib.parse import urlsplit

try:
    import fcntl
except ImportError:  # Windows: outputs are not locked (OutputLock)
    fcntl = None

import numpy as np
from tqdm.auto import tqdm

from .inputs import (SOURCE_FIELDS, STDIN, Article, ArticleError, Columns, InputError, Limits, Position,
                     check_inputs, file_identities, format_of, input_files, is_uri, iter_articles)
from .packing import encoded
from .runtime import BACKENDS

DEFAULT_CHUNK_SIZE = 128  # articles per Predictor call: their paragraphs are sorted and batched together
SITE_REPEAT_MIN = 3  # articles of one source a paragraph must recur in for --site-repeat to push it
DEVICES = ("cpu", "cuda", "auto")
# Output names the local engine refuses: they promise a format or a compression its plain JSONL lines are not
OTHER_FORMATS = (".parquet", ".csv", ".arrow", ".gz", ".bz2", ".xz", ".zst", ".zstd", ".lz4", ".br", ".zip", ".tar",
                 ".tgz", ".7z")


@dataclass
class TagOptions:
    """Everything a tagging run is told, for either engine (built by the CLI, or in Python)."""
    model: object  # a model folder, or (local engine) a ready Predictor
    inputs: Sequence[str]
    output: str | None = None  # local: a file, None or "-" for stdout; Ray: a folder
    engine: str = "local"
    resume: bool = False
    overwrite: bool = False
    pretty: bool = False
    columns: Columns = field(default_factory=Columns)
    limits: Limits = field(default_factory=Limits)
    chunk_size: int = DEFAULT_CHUNK_SIZE  # articles per Predictor call (Ray: per actor call)
    batch_size: int | None = None  # encoder micro-batch, paragraph chunks (None: the backend's default)
    backend: str = "torch"
    device: str = "cpu"  # cpu, cuda, cuda:N or auto
    num_threads: int | None = None  # torch threads per Predictor (Ray: per actor; default 1 there)
    site_repeat: bool = False
    site_repeat_min: int | None = None  # with site_repeat (None: SITE_REPEAT_MIN); alone, a usage error
    progress: bool | None = None  # None: a bar when stderr is a terminal the output does not go to
    # Ray only
    ray_address: str | None = None
    num_actors: int | None = None
    output_format: str = "parquet"
    rows_per_file: int | None = 10_000

    def __post_init__(self):
        self.inputs = [str(i) for i in self.inputs]
        if self.output == STDIN:
            self.output = None
        for name in ("chunk_size", "batch_size", "site_repeat_min", "num_threads", "num_actors", "rows_per_file"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InputError(f"--{name.replace('_', '-')} must be at least 1, not {value!r}")
        if self.engine not in ("local", "ray"):
            raise InputError(f"--engine must be local or ray, not {self.engine!r}")
        if self.backend not in BACKENDS:
            raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.device.split(":")[0] not in DEVICES:
            raise InputError(f"--device must be cpu, cuda, cuda:N or auto, not {self.device!r}")
        if self.resume and self.overwrite:
            raise InputError("--resume and --overwrite contradict each other")
        if self.site_repeat_min is not None and not self.site_repeat:
            raise InputError("--site-repeat-min works with --site-repeat only (add --site-repeat)")
        if self.site_repeat and self.site_repeat_min is None:  # (None without it: replace() checks again)
            self.site_repeat_min = SITE_REPEAT_MIN
        if self.site_repeat and self.site_repeat_min < 2:
            raise InputError("--site-repeat-min must be at least 2 (1 would flag every paragraph)")
        if self.engine == "local":
            if self.resume and self.output is None:
                raise InputError("--resume needs --output FILE (output to stdout cannot be resumed)")
            if self.resume and self.pretty:
                raise InputError("--resume works with JSONL output only, not --pretty")
            if self.site_repeat and STDIN in self.inputs:
                raise InputError("--site-repeat reads the inputs twice, which stdin cannot do; pass files")
            if self.ray_address or self.num_actors:
                raise InputError("--ray-address and --num-actors work with --engine ray only")
            if Path(str(self.output or "")).suffix.lower() in OTHER_FORMATS:  # it would hold plain JSONL
                raise InputError(f"--output {self.output}: the local engine writes plain JSONL (name it .jsonl); "
                                 "for Parquet use --engine ray --output-format parquet")


@dataclass
class RunSummary:
    """What a run did, for either engine; ``summary()`` is the line the CLI prints on stderr."""
    records: int = 0  # records in the output, including those of an earlier run (resumed)
    tagged: int = 0
    errors: int = 0
    resumed: int = 0  # records already in the output when this run started
    paragraphs: int = 0  # paragraphs tagged by this run
    seconds: float = 0.0  # this run's reading and tagging time
    startup_seconds: float = 0.0  # Ray: connecting to or starting Ray
    first_error: str | None = None  # the output's first (an earlier run's, resumed), shown so a failure is seen
    blank_lines: int = 0  # blank lines of JSONL inputs: not records, so they have no output record (BlankLines)
    duplicate_ids: int = 0  # local engine: records of this run whose id an earlier record of this run has
    first_duplicate: str | None = None
    output: str = ""
    skipped: bool = False  # Ray: the output folder was already complete, by this model and options
    options: dict = field(default_factory=dict)
    run: dict = field(default_factory=dict)  # Ray: run_signature and the input files, kept in _SUCCESS.json

    @property
    def exit_status(self) -> int:
        """1 when any record in the output is an error record, else 0 (see newstagger.cli for all codes)."""
        return 1 if self.errors else 0

    def summary(self) -> str:
        if self.skipped:  # the counts are the earlier run's, and so is the exit status
            line = f"{self.output}: already complete: nothing to do ({self.records} records, {self.errors} errors"
            return line + (f"; first error: {self.first_error})" if self.first_error else ")")
        new = self.records - self.resumed
        rate = new / self.seconds if self.seconds > 0 else 0.0
        resumed = f" ({self.resumed} from the earlier run)" if self.resumed else ""
        line = (f"records: {self.records}{resumed}, tagged: {self.tagged}, errors: {self.errors}, "
                f"{rate:.1f} articles/s")
        if self.startup_seconds:
            line += f" (start-up {self.startup_seconds:.1f} s not included)"
        if self.first_error:
            line += f"; first error: {self.first_error}"
        if self.duplicate_ids:  # the inputs' own ids, kept as given; but a join by id would mix these records
            line += (f"; {self.duplicate_ids} record{'s' if self.duplicate_ids > 1 else ''} repeat an earlier "
                     f"record's id (the first: {self.first_duplicate!r}): a join of outputs to inputs by id would mix them")
        if self.blank_lines:  # why an output has fewer records than its input has lines
            line += (f"; {self.blank_lines} blank line{'s' if self.blank_lines > 1 else ''} skipped "
                     "(not records: join outputs to inputs by id)")
        if not self.records:  # an empty file or folder is not an error, but a user should not miss it
            line += "; the inputs held no records (empty files?)"
        return line


class BlankLines:
    """Blank lines of JSONL inputs, which are not records, counted from the line numbers of the records read.
    inputs.read_jsonl gives every other line one record (or error record) at its line number, so a file that
    gave R records, the last on line L, holds L - R blank lines before its last record; blank lines after it
    leave no trace and are not counted. Either engine ``add``s the position of every record it reads; Ray's
    write tasks each count theirs and the driver ``merge``s them. ``files``: JSONL source -> [records, last
    line]."""

    def __init__(self):
        self.files: dict[str, list[int]] = {}

    def add(self, source: str, row: int | None) -> None:
        if row is None or (format_of(source)[0] or "jsonl") != "jsonl":  # no suffix: standard input, read as JSONL
            return
        seen = self.files.setdefault(source, [0, 0])
        seen[0] += 1
        seen[1] = max(seen[1], row)

    def merge(self, files: dict) -> None:
        for source, (records, last) in files.items():
            seen = self.files.setdefault(source, [0, 0])
            seen[0] += records
            seen[1] = max(seen[1], last)

    @property
    def count(self) -> int:
        return sum(max(0, last - records) for records, last in self.files.values())  # 0: a file named twice

    def watch(self, items: Iterator[tuple[Position, object]]) -> Iterator[tuple[Position, object]]:
        """``items`` unchanged, each position added on the way."""
        for position, item in items:
            self.add(position.source, position.row)
            yield position, item


# ---------------------------------------------------------------------------------------------
# The Predictor of a run
# ---------------------------------------------------------------------------------------------


def resolve_device(device: str, backend: str = "torch") -> str:
    """"cpu", "cuda", "cuda:N", or "auto" (cuda when there is one) for this backend. Raises InputError for
    a CUDA device that is not there."""
    if device == "cpu":
        return device  # no torch import: the onnx backend runs without it
    if backend == "onnx":
        import onnxruntime as ort

        has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if device == "auto":
            return "cuda" if has_cuda else "cpu"
        if device.startswith("cuda") and not has_cuda:
            raise InputError(f"--device {device}: this onnxruntime has no CUDA provider (pip install "
                             "onnxruntime-gpu)")
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is available here")
    return device


def load_predictor(model, *, backend: str = "torch", batch_size: int | None = None,
                   num_threads: int | None = None, limits: Limits = Limits(), device: str = "cpu"):
    """A Predictor: ``model`` itself when it is one, else loaded from the folder with these runtime
    settings. Raises InputError for a folder that cannot load or a device that is not there."""
    from .predictor import Predictor

    if isinstance(model, Predictor):
        return model
    from .hub import is_hub_id

    folder = Path(model)
    if not is_hub_id(model) and not (folder / "config.json").is_file():
        raise InputError(f"{folder}: not a model folder (no config.json); train one with newstagger train")
    device = resolve_device(device, backend)
    try:
        return Predictor.from_pretrained(folder, backend=backend, batch_size=batch_size, num_threads=num_threads,
                                         device=device, limits=limits)
    except Exception as e:  # a damaged folder, an unknown backend, a missing optional dependency...
        raise InputError(f"{folder}: cannot load the model ({type(e).__name__}: {e})") from e


# ---------------------------------------------------------------------------------------------
# --site-repeat: paragraphs that recur verbatim across many articles of one source
# ---------------------------------------------------------------------------------------------


def source_of(article: Article, default: str) -> str:
    """The outlet an article comes from: its source/site/outlet/domain string, the repo or URL host of a
    source object, else the input it was read from."""
    extra = article.extra
    for key in SOURCE_FIELDS:
        if isinstance(extra.get(key), str) and extra[key].strip():
            return extra[key].strip()
    source = extra.get("source")
    if isinstance(source, dict):
        if isinstance(source.get("repo"), str) and source["repo"].strip():
            return source["repo"].strip()
        if isinstance(source.get("url"), str):
            try:
                host = urlsplit(source["url"]).hostname
            except ValueError:
                host = None
            if host:
                return host
    return default


def paragraph_key(source: str, paragraph: str) -> int:
    """64-bit key of a (source, paragraph) pair; whitespace and case do not matter."""
    normalised = " ".join(paragraph.split()).casefold()
    digest = hashlib.blake2b(f"{source}\x00{normalised}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def count_repeated_paragraphs(items: Iterable[tuple[Position, object]], min_articles: int) -> tuple[set[int], int]:
    """First pass of --site-repeat: the keys (see paragraph_key) of paragraphs found in at least
    ``min_articles`` articles of their source, and the number of records read.

    Memory is 8 bytes per paragraph read plus a set of article fingerprints, so a million-article corpus
    needs a few hundred MB. An article repeated verbatim (a repost) counts once; otherwise every
    paragraph of a thrice-posted story would look like site furniture.
    """
    keys = array("Q")
    seen_articles: set[int] = set()
    n_records = 0
    for position, article in items:
        n_records += 1
        if isinstance(article, ArticleError):
            continue
        source = source_of(article, position.source)
        article_keys = [paragraph_key(source, p) for p in article.paragraphs]
        fingerprint = hash(tuple(article_keys))
        if fingerprint in seen_articles:
            continue
        seen_articles.add(fingerprint)
        keys.extend(set(article_keys))  # once per article, however often it repeats a paragraph itself
    values, counts = np.unique(np.frombuffer(keys, dtype=np.uint64), return_counts=True)
    return set(values[counts >= min_articles].tolist()), n_records


def repeated_mask(article: Article, source: str, repeated: set[int]) -> np.ndarray | None:
    """Second pass of --site-repeat: bool [paragraphs], True for the paragraphs of ``article`` that its outlet
    repeats across its articles (keys in ``repeated``), or None when there is none. The Predictor decodes
    them as boilerplate whatever their score (Predictor.predict_batch_safe's ``forced``), so that their
    neighbours, the clean text and the topics follow; their scores stay the model's."""
    mask = np.array([encoded(p) and paragraph_key(source, p) in repeated for p in article.paragraphs], dtype=bool)
    return mask if mask.any() else None


# ---------------------------------------------------------------------------------------------
# The output file: checks before the run, resume
# ---------------------------------------------------------------------------------------------

RECORD_PREFIX = b'{"id": '  # every line this engine writes starts so (json.dumps with "id" first)


def _identity(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def input_identities(inputs: Sequence[str]) -> dict[tuple[int, int], str]:
    """(device, inode) of every local input file, of the files directly inside input folders, and of
    standard input when it is a regular file."""
    found = {}
    for name in inputs:
        try:
            if name == STDIN:
                info = _fd_info(sys.stdin) if sys.stdin is not None and not sys.stdin.closed else None
                if info is not None and stat.S_ISREG(info.st_mode):
                    found[_identity(info)] = "standard input"
                continue
            if is_uri(name):
                continue
            path = Path(name)
            found[_identity(path.stat())] = name
        except (OSError, ValueError):
            continue
    return found


def _fd_info(stream) -> os.stat_result | None:
    """fstat of a stream's file descriptor; None for a stream without one (pytest's capture, StringIO)."""
    try:
        return os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None


def check_output(output: str | None, inputs: Sequence[str], resume: bool, overwrite: bool) -> Path | None:
    """Refuse an output that cannot or must not be written, before anything is loaded (InputError)."""
    if output is None:
        if sys.stdout is None or sys.stdout.closed:  # started with stdout closed (>&-)
            raise InputError("standard output is closed; pass --output FILE")
        info = _fd_info(sys.stdout)
        if info is not None and _identity(info) in input_identities(inputs):
            raise InputError("standard output is also an input")
        return None
    path = Path(output)
    if path.is_dir():
        raise InputError(f"{output}: is a folder, not an output file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{output}: its folder {parent} does not exist")
    if not os.access(parent, os.W_OK) and not (path.exists() and os.access(path, os.W_OK)):
        raise InputError(f"{output}: cannot write there (permission denied)")
    if path.exists() and not path.is_file():  # a device or a pipe (/dev/null, a FIFO): a stream, as stdout is
        if resume:
            raise InputError(f"{output}: not a regular file (a device or a pipe): there is nothing to resume")
        return path
    if path.exists():
        if not (resume or overwrite):
            raise InputError(f"{output}: already exists; pass --resume to continue it or --overwrite to replace it")
        if path.exists() and not os.access(path, os.W_OK):
            raise InputError(f"{output}: cannot write it (permission denied)")
        same = input_identities(inputs).get(_identity(path.stat()))
        if same is not None:
            raise InputError(f"{output}: is also an input ({same}): the same file, by device and inode")
    return path


RUN_RECORD_SUFFIX = ".run.json"


def run_record_path(output: Path) -> Path:
    """The run record beside an output file: OUTPUT.run.json."""
    return output.with_name(output.name + RUN_RECORD_SUFFIX)


def run_signature(options: TagOptions) -> dict:
    """What decides an output record's content: the model (SHA-256 of its weights and of its config.json,
    where the thresholds live), the backend and the ONNX encoder graph it runs (quantization, recipe), the
    limits, the columns and --site-repeat. Micro-batch, chunk size, threads and device are left out: every
    backend gives an article the same result whatever it is batched with."""
    from .model_folder import weights_digest
    from .onnx_export import graph_identity

    model = options.model
    folder = Path(model) if isinstance(model, (str, Path)) else None
    if folder is not None and (folder / "config.json").is_file():  # by content: a moved copy is the same model
        signature = {"weights_sha256": weights_digest(folder),
                     "config_sha256": hashlib.sha256((folder / "config.json").read_bytes()).hexdigest()}
        graph = graph_identity(folder, options.backend)
        if graph is not None:
            signature["encoder_graph"] = graph
    else:  # a Hub id, or a ready Predictor
        signature = {"model": str(model) if folder is not None else type(model).__name__}
    limits = getattr(model, "limits", None) or options.limits  # a ready Predictor has its own
    signature.update(backend=getattr(model, "backend", None) or options.backend, limits=asdict(limits),
                     columns=asdict(options.columns),
                     site_repeat=options.site_repeat,
                     site_repeat_min=options.site_repeat_min if options.site_repeat else None)
    return signature


def local_signature(options: TagOptions, inputs: Sequence[str], exclude=()) -> dict:
    """The local engine's run record: run_signature and the input files read, with their size and
    modification time (inputs.file_identities, as a count and a SHA-256), so that --resume refuses inputs
    changed since: the records already written must be those of the records it skips."""
    files = file_identities([source if source == STDIN or is_uri(source) else os.path.realpath(source)
                             for source, _, _ in input_files(inputs, exclude)])  # ./a.jsonl is a.jsonl
    signature = run_signature(options)  # a digest: a folder may hold a million files
    signature["inputs"] = {"files": len(files), "sha256": hashlib.sha256(json.dumps(files).encode()).hexdigest()}
    return signature


def check_run_record(output: Path, signature: dict) -> str | None:
    """On --resume: InputError when OUTPUT.run.json says the output was made by another model or with other
    options (one output must never mix two runs); a note (returned) when an older output has none."""
    path = run_record_path(output)
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return f"resume: {output} has no run record ({path.name}); it is taken to be from this model and options"
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read the run record ({e}); start over with --overwrite") from None
    if not isinstance(recorded, dict):
        raise InputError(f"{path}: not a run record; start over with --overwrite")
    if "inputs" not in recorded:  # written before run records held the input files: compared without them
        signature = {k: v for k, v in signature.items() if k != "inputs"}
    differ = signature_differences(recorded, signature)
    if differ:
        raise InputError(f"--resume: {output} was written with other settings: {', '.join(differ)} "
                         f"(see {path}); resume with the same model, options and inputs, or start over with "
                         "--overwrite")
    return None


_SIGNATURE_NAMES = {"weights_sha256": "model weights", "config_sha256": "model config (labels, thresholds)",
                    "encoder_graph": "ONNX encoder graph (quantization or recipe: the export was redone)",
                    "site_repeat_min": "site-repeat-min", "site_repeat": "site-repeat",
                    "inputs": "inputs (files, or their size or modification time)", "output_format": "output-format"}


def signature_differences(recorded: dict, signature: dict) -> list[str]:
    """What differs between a recorded run signature (run_signature) and this run's, named as a user knows
    it, in the signature's order (the model first): [] when they match. Used by --resume (OUTPUT.run.json)
    and by the Ray engine for a finished output folder (_SUCCESS.json)."""
    keys = [k for k in list(signature) + [k for k in recorded if k not in signature]
            if recorded.get(k) != signature.get(k)]
    if "backend" in keys and "encoder_graph" in keys:
        keys.remove("encoder_graph")  # another backend runs another graph (torch: none): not a re-export
    return [_difference(k, recorded.get(k), signature.get(k)) for k in keys]


_NAMED_ONLY = {"weights_sha256", "config_sha256", "encoder_graph", "inputs"}  # digests and file lists: by name


def _difference(key: str, was, now) -> str:
    """One differing setting as a user knows it, with both values when they are short: ``backend (torch, now
    onnx)``, ``columns (text: 'content', now 'body')``; digests and input lists by name only."""
    name = _SIGNATURE_NAMES.get(key, key)
    if key in _NAMED_ONLY:
        return name
    if isinstance(was, dict) and isinstance(now, dict):
        parts = [f"{k}: {was.get(k)!r}, now {now.get(k)!r}" for k in list(now) + [k for k in was if k not in now]
                 if was.get(k) != now.get(k)]
        return f"{name} ({'; '.join(parts)})"
    return f"{name} ({was}, now {now})"


def write_run_record(output: Path, signature: dict) -> None:
    """OUTPUT.run.json, written whole (temporary file, then rename)."""
    path = run_record_path(output)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(json.dumps(signature, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(partial, path)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write the run record ({e.strerror or e})") from None


@dataclass
class _Written:
    records: int  # complete records
    errors: int  # error records among them
    first_id: object
    last_id: object
    keep: int  # bytes to keep: up to the end of the last complete record
    size: int
    first_error: str | None = None  # the message of the first error record


def scan_output(path: Path) -> _Written:
    """Read an earlier output without changing it. Raises InputError when it is not a newstagger output:
    every complete line must begin as our records do, and the first, the last and each error record must be
    one (topics and topic_scores, or an error: a copy of the input is refused), except zero bytes or blank
    lines at the end (what a crash before fsync leaves); a last line without its newline is a torn record."""
    records = errors = keep = offset = 0
    first_id = last_line = first_error = None
    junk = False  # seen a blank or zero-filled line after the records

    def refuse(line_number: int):
        return InputError(f"{path}:{line_number}: not a newstagger output record; refusing to --resume onto "
                          "it (choose another --output, or --overwrite to replace it)")

    def ours(record) -> bool:  # a tagged record or an error record; an input record has neither key
        return isinstance(record, dict) and ("error" in record or {"topics", "topic_scores"} <= record.keys())

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for number, line in enumerate(f, start=1):
            offset += len(line)
            if not line.endswith(b"\n"):
                break  # the torn last line of a killed run
            body = line[:-1]
            if not body.strip(b"\x00 \t\r"):
                junk = True
                continue
            if junk or not body.startswith(RECORD_PREFIX):
                raise refuse(number)
            if records == 0 or b'"error"' in body:  # only error records hold the key "error" unescaped
                try:
                    record = json.loads(body)
                except ValueError:
                    raise refuse(number) from None
                if not ours(record):
                    raise refuse(number)
                first_id = record["id"] if records == 0 else first_id
                errors += "error" in record
                first_error = first_error or (str(record["error"]) if "error" in record else None)
            records += 1
            last_line, keep = body, offset
    last_id = None
    if last_line is not None:
        try:
            last = json.loads(last_line)
            last_id = last["id"]
        except (ValueError, KeyError, TypeError):
            raise refuse(records) from None
        if not ours(last):
            raise refuse(records)
    return _Written(records, errors, first_id, last_id, keep, size, first_error)


class _Ids:
    """The ids a run has written, to count records that repeat an earlier record's id: hashes, 8 bytes of
    key each, not the ids (a run may hold millions); the records of an earlier run resumed count too."""

    def __init__(self, summary: RunSummary):
        self.seen: set[int] = set()
        self.summary = summary

    def add(self, record_id) -> None:
        key = hash(record_id)
        if key in self.seen:
            self.summary.duplicate_ids += 1
            self.summary.first_duplicate = self.summary.first_duplicate or record_id
        self.seen.add(key)


def _skip_written(items: Iterator, written: _Written, output: Path, ids: _Ids) -> None:
    """Advance ``items`` past the records the output already holds, checking that they are the same (their
    ids at both ends; the run record, that the inputs are unchanged), and add their ids to ``ids``."""
    for i in range(1, written.records + 1):
        item = next(items, None)
        if item is None:
            raise InputError(f"{output}: holds {written.records} records but the inputs have only {i - 1}; "
                             "was it written from other inputs?")
        rid = _output_id(item[1])
        ids.add(rid)
        for n, want in ((1, written.first_id), (written.records, written.last_id)):
            if i == n and rid != want:
                which = "first" if n == 1 else "last"
                raise InputError(f"{output}: its {which} record is {want!r} but input record {n} is {rid!r}; "
                                 "was it written from other inputs?")


def _output_id(item) -> str:
    return item.record_id if isinstance(item, ArticleError) else item.id


# ---------------------------------------------------------------------------------------------
# Output: JSONL or --pretty text
# ---------------------------------------------------------------------------------------------


def format_pretty(result, record_id: str, error: str | None, width: int = 90) -> str:
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


def json_line(record: dict) -> bytes:
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate that slipped through: \u-escaped JSON is still valid
        return (json.dumps(record) + "\n").encode("ascii")


class _Output:
    """The output stream; a failed write (a full disk, a closed pipe) becomes one InputError line."""

    def __init__(self, path: Path | None, append: bool):
        self.name = str(path) if path is not None else "standard output"
        self.file = open(path, "ab" if append else "wb") if path is not None else sys.stdout.buffer
        self.info = _fd_info(self.file)
        self.regular = self.info is not None and stat.S_ISREG(self.info.st_mode)

    def identities(self) -> set[tuple[int, int]]:
        """What a folder listing must leave out: this output, when it is a file."""
        return {_identity(self.info)} if self.regular else set()

    def write(self, data: bytes) -> None:
        try:
            self.file.write(data)
            self.file.flush()  # record by record: a killed process loses only the records not yet written
        except BrokenPipeError:  # standard output's reader went away (| head): the CLI stops quietly
            raise
        except OSError as e:
            raise InputError(f"{self.name}: cannot write ({e.strerror or e})") from None

    def sync(self) -> None:
        if self.regular:  # per chunk: the records survive a machine crash too
            try:
                os.fsync(self.file.fileno())
            except OSError as e:
                raise InputError(f"{self.name}: cannot write ({e.strerror or e})") from None

    def close(self) -> None:
        if self.file is not sys.stdout.buffer:
            try:
                self.file.close()  # flushes what a failed write left in the buffer: a full disk fails again here
            except BrokenPipeError:  # a pipe named as the output (/dev/stdout | head): as for stdout
                raise
            except OSError as e:
                raise InputError(f"{self.name}: cannot write ({e.strerror or e})") from None


# ---------------------------------------------------------------------------------------------
# The local run
# ---------------------------------------------------------------------------------------------


class OutputLock:
    """An exclusive lock on an output (a file, or Ray's output folder) for the length of a run, so that a
    second run on the same output (whose records would interleave with the first's) is refused (InputError)
    instead of corrupting it: ``fcntl.flock`` on a hidden file beside the output, ``.NAME.lock``, named after
    the output's resolved path (a symlink and its target are one output; two hard links to one file are not
    told apart), removed at the end. The kernel drops the lock when a run's process ends, so a file left by a
    killed run never blocks a --resume. Nothing is locked for standard output, a device, a pipe or a URI, or
    where fcntl is missing (Windows)."""

    def __init__(self, output: Path | None, folder: bool = False):
        usable = output is not None and (not output.exists() or (output.is_dir() if folder else output.is_file()))
        real = output.resolve() if usable else None
        self.output = output
        self.path = real.with_name(f".{real.name}.lock") if usable and fcntl is not None else None
        self.folder = folder
        self.fd = None

    def __enter__(self) -> "OutputLock":
        if self.path is None:
            return self
        if self.folder:  # Ray writes a new output folder with its parents: its lock goes where it will be
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise InputError(f"{self.output}: cannot create its folder ({e.strerror or e})") from None
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise InputError(f"{self.path}: cannot lock the output ({e.strerror or e})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise InputError(f"{self.output}: another newstagger run is writing it (it holds {self.path}); "
                                 "let that run end, or choose another --output") from None
            try:  # still the file of that name? A run that just ended may have removed the one we locked
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    self.fd = fd
                    return self
            except FileNotFoundError:
                pass
            os.close(fd)
        raise InputError(f"{self.path}: cannot lock the output (its lock file keeps changing)")

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still locked: a run waiting on this file sees it gone (above)
            os.close(self.fd)
            self.fd = None


def tag_local(options: TagOptions) -> RunSummary:
    """Tag every record of ``options.inputs`` and write one output record per input record, in order.
    Raises InputError for problems with the run itself; bad records become error records instead."""
    inputs = check_inputs(options.inputs, options.columns)
    output = check_output(options.output, inputs, options.resume, options.overwrite)
    with OutputLock(output):  # before the output is read: another run on it would interleave records
        return _tag_local(options, inputs, output)


def _tag_local(options: TagOptions, inputs: list[str], output: Path | None) -> RunSummary:
    limits = getattr(options.model, "limits", None) or options.limits  # a ready Predictor has its own
    summary = RunSummary(output=str(output) if output is not None else "-")
    blank = BlankLines()

    def articles(exclude=(), count_blank_lines=True):
        items = iter_articles(inputs, options.columns, limits, exclude=exclude)
        return blank.watch(items) if count_blank_lines else items

    written = None
    items = None
    ids = _Ids(summary)
    own = {_identity(output.stat())} if output is not None and output.exists() else set()  # left out of folders
    signature = local_signature(options, inputs, own) if output is not None else None
    note = None
    if options.resume and own:
        written = scan_output(output)
        if output.is_file():
            note = check_run_record(output, signature)
        items = articles(own)
        _skip_written(items, written, output, ids)
    predictor = load_predictor(options.model, backend=options.backend, batch_size=options.batch_size,
                               num_threads=options.num_threads, limits=options.limits, device=options.device)

    progress = options.progress
    if progress is None:  # a bar helps on a terminal, but not mixed into output shown on that same terminal
        progress = sys.stderr.isatty() and not (output is None and sys.stdout.isatty())
    if written is not None:
        summary.resumed, summary.errors = written.records, written.errors
        summary.first_error = written.first_error  # the output's first, which may be the earlier run's
        summary.records, summary.tagged = written.records, written.records - written.errors
        if written.keep < written.size:
            with open(output, "r+b") as f:
                f.truncate(written.keep)
            print(f"resume: dropped {written.size - written.keep} bytes of a torn last line from {output}",
                  file=sys.stderr)
    if note:
        print(note, file=sys.stderr)
    out = _Output(output, append=options.resume)
    if output is not None and out.regular:  # an output file, not stdout, a device or a pipe
        write_run_record(output, signature)
    exclude = out.identities()
    total = None
    repeated: set[int] = set()
    try:
        if options.site_repeat:
            repeated, total = count_repeated_paragraphs(
                tqdm(articles(exclude, count_blank_lines=False), desc="site-repeat: counting paragraphs",
                     unit=" articles", disable=not progress, file=sys.stderr), options.site_repeat_min)
        if items is None:
            items = articles(exclude)
        _run(predictor, items, out, options, summary, ids, repeated, progress, total)
    finally:
        out.close()
    summary.blank_lines = blank.count  # the earlier run's too, when resumed (the skipped records passed by)
    return summary


def _run(predictor, items, out: _Output, options: TagOptions, summary: RunSummary, ids: _Ids, repeated: set[int],
         progress: bool, total: int | None) -> None:
    bar = tqdm(total=None if total is None else total - summary.resumed, unit=" articles", desc="tagging",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        while True:
            chunk = [item for _, item in zip(range(options.chunk_size), items)]
            if not chunk:
                break
            readable = [(p, a) for p, a in chunk if not isinstance(a, ArticleError)]
            forced = [repeated_mask(a, source_of(a, p.source), repeated) for p, a in readable] if repeated else None
            tagged = iter(predictor.predict_batch_safe([a for _, a in readable], forced=forced))  # a result or error each
            for position, item in chunk:
                outcome = item if isinstance(item, ArticleError) else next(tagged)
                if isinstance(outcome, ArticleError):
                    rid = _output_id(item)
                    error = str(outcome if outcome.where is not None else outcome.at(position))
                    summary.errors += 1
                    summary.first_error = summary.first_error or error
                    record, result = {"id": rid, "error": error}, None
                else:
                    result, error = outcome, None
                    summary.tagged += 1
                    summary.paragraphs += len(result.paragraphs)
                    record = result.to_record()
                summary.records += 1
                ids.add(record["id"])
                out.write(format_pretty(result, record["id"], error).encode("utf-8") if options.pretty
                          else json_line(record))
            out.sync()
            elapsed = time.perf_counter() - started
            bar.update(len(chunk))
            bar.set_postfix_str(f"{summary.paragraphs / max(elapsed, 1e-9):.0f} paragraphs/s", refresh=False)
    finally:
        summary.seconds = time.perf_counter() - started
        bar.close()


def tag(options: TagOptions) -> RunSummary:
    """Run ``options`` on its engine."""
    if options.engine == "ray":
        from .ray_tagging import tag_ray

        return tag_ray(options)
    return tag_local(options)


def tag_files(model, inputs: Sequence[str | Path], output: str | Path | None = None, *,
              text_column: str | None = None, id_column: str | None = None, **options) -> RunSummary:
    """Python shorthand for ``tag(TagOptions(...))``: TagOptions' fields as keywords, with the columns
    spelled as the CLI spells them."""
    return tag(TagOptions(model=model, inputs=[str(i) for i in inputs],
                          output=None if output is None else str(output),
                          columns=Columns(text=text_column, id=id_column), **options))


def options_record(options: TagOptions) -> dict:
    """The options as plain JSON values (for Ray's _SUCCESS.json)."""
    values = {f.name: getattr(options, f.name) for f in fields(options)}
    values.update(model=str(options.model), columns=asdict(options.columns), limits=asdict(options.limits))
    return values
