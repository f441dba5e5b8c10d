"""Tag many articles on a Ray cluster with Ray Data: the engine behind ``predict.py --engine ray``.

    python -m newstagger.ray_tagging --model runs/default shards/ --output tags/ \\
        [--ray-address ADDR] [--num-actors N] [--threads-per-actor T] [--batch-size B] \\
        [--output-format parquet|jsonl] [--gpu] [--text-column C] [--id-column C]

    from newstagger.ray_tagging import tag_files
    summary = tag_files("runs/default", ["shards/"], "tags/", num_actors=4)

How it runs: Ray Data reads the input files (JSONL and Parquet, files or folders, local paths or any
filesystem pyarrow knows, e.g. s3://), a pool of ``num_actors`` actors tags batches of ``batch_size`` records
(each actor loads the model once into its own Predictor and uses ``threads_per_actor`` torch threads, or
one GPU with ``gpu=True``), and the results are written as Parquet or JSONL shards into the output folder,
with ``_SUCCESS.json`` (inputs, counts, options) written last.

Cluster: ``--ray-address ADDR`` (or the RAY_ADDRESS variable) connects to a running cluster (``auto`` for the
one started on this machine with ``ray start``); without either, a private single-machine Ray instance is
started, bound to the loopback interface, without the dashboard, and shut down at the end. On a cluster the
inputs and the output folder must be reachable from every node (shared filesystem or object store); the
model folder is shipped to the actors through Ray's object store, so the nodes need not have it.

Reading: each input file is read in order by one read task (records are passed on as JSON text), so every
record keeps its position: ``<file name>:<line>`` for JSONL (1-based, blank lines counted) and
``<file name>:<row>`` for Parquet (1-based). A record without an id gets that position as its id (the rule
of newstagger.batch), so give input shards distinct file names. Records are parsed and checked inside the
tagging actors, so a bad record (unparseable line, no text, empty paragraphs, wrong types, too large) comes
out as an error row and the job goes on. (ray.data.read_json fails the whole job on one malformed line and
keeps no row numbers; read_parquet keeps no row numbers either: hence the small file datasource below.)

Output rows, one per input record, in no particular order: the fields of ``TaggingResult.to_record()``
(id, topics, topic_scores, paragraphs, evidence, clean_text) plus ``error`` (null, or
``"<file>:<line>: <field>: <problem>"`` with every other field null) and ``source_path``/``source_row`` (where
the record was read). JSONL rows are exactly ``to_record()`` with those keys added. In Parquet, ``topics`` is
a list of strings, ``paragraphs`` a list of structs (index, boilerplate, score), and ``topic_scores`` and
``evidence`` are JSON strings (their keys are labels; ``json.loads`` gives the dicts of ``to_record()``).

Resuming: a folder with ``_SUCCESS.json`` is complete and a re-run with the same ``--output`` skips it
(``--overwrite`` redoes it). A folder without it, holding only files this module writes, is an unfinished
run: a re-run clears it and starts again. So run large corpora as one job per group of input shards, each
into its own output folder, and re-run the same commands after a failure: finished groups are skipped.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator, Sequence

try:
    import pyarrow as pa
    import ray
    from ray.data.block import BlockAccessor
    from ray.data.datasource import BlockBasedFileDatasink, FileBasedDatasource
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("newstagger.ray_tagging needs Ray Data: pip install 'newstagger[ray]' "
                      f"(ray[data]==2.60.0) ({e})") from e

from .batch import article_from_record  # noqa: E402  (the same record rules as predict.py's local engine)

logger = logging.getLogger("newstagger")

INPUT_EXTENSIONS = ["jsonl", "ndjson", "json", "jsonl.gz", "parquet"]
SUCCESS_FILE = "_SUCCESS.json"
OUTPUT_SUFFIXES = {"parquet": ".parquet", "jsonl": ".jsonl"}
# Limits of the CLI engine (newstagger.batch): beyond them an "article" is a scraping accident.
MAX_PARAGRAPHS = 1000
MAX_PARAGRAPH_CHARS = 50_000
ROWS_PER_READ_BLOCK = 1024
DEFAULT_BATCH_SIZE = 64
DEFAULT_ROWS_PER_FILE = 10_000
MAX_SHIPPED_MODEL_BYTES = 2 << 30

# The columns read from Parquet inputs besides --id-column / --text-column.
PARQUET_FIELDS = ("id", "title", "paragraphs", "text")

INPUT_SCHEMA = pa.schema([
    ("source_path", pa.string()), ("source_row", pa.int64()),
    ("record", pa.string()),  # the record as JSON text; null when it could not be read
    ("read_error", pa.string()),  # "<field>: <problem>" when it could not be read
])
PARAGRAPH_TYPE = pa.struct([("index", pa.int32()), ("boilerplate", pa.bool_()), ("score", pa.float64())])
PARQUET_SCHEMA = pa.schema([
    ("id", pa.string()), ("topics", pa.list_(pa.string())), ("topic_scores", pa.string()),
    ("paragraphs", pa.list_(PARAGRAPH_TYPE)), ("evidence", pa.string()), ("clean_text", pa.string()),
    ("error", pa.string()), ("source_path", pa.string()), ("source_row", pa.int64()),
])
JSONL_SCHEMA = pa.schema([("id", pa.string()), ("error", pa.string()), ("json", pa.string())])
RESULT_FIELDS = ("id", "topics", "topic_scores", "paragraphs", "evidence", "clean_text")


class RayTaggingError(ValueError):
    """A problem with the run itself (model, inputs, output folder, options): main() exits with status 2."""


# ---------------------------------------------------------------------------------------------
# Reading: one record per row, with its file and position
# ---------------------------------------------------------------------------------------------


def default_id(path: str, row: int) -> str:
    """The id of a record that has none: ``<file name>:<line or row>``."""
    return f"{PurePosixPath(str(path)).name}:{row}"


def _split_lines(stream, chunk_size: int = 1 << 22) -> Iterator[bytes]:
    """The lines of a binary stream (pyarrow input streams have no readline), without their newline."""
    tail = b""
    while True:
        data = stream.read(chunk_size)
        if not data:
            break
        parts = (tail + data).split(b"\n")
        tail = parts.pop()
        yield from parts
    if tail:
        yield tail


class ArticleRecordsDatasource(FileBasedDatasource):
    """JSONL and Parquet files as rows (source_path, source_row, record as JSON text, read_error).

    Each file is read in order by one task, so the row numbers are exact; JSON is parsed later, in the
    tagging actors, so that a malformed line becomes one error row instead of failing the read.
    """

    def __init__(self, paths, *, columns: Sequence[str] = PARQUET_FIELDS,
                 rows_per_block: int = ROWS_PER_READ_BLOCK, **kwargs):
        super().__init__(paths, file_extensions=INPUT_EXTENSIONS, **kwargs)
        self.columns = list(dict.fromkeys(columns))
        self.rows_per_block = rows_per_block

    def _open_input_source(self, filesystem, path: str, **open_args):
        if path.endswith(".parquet"):
            return filesystem.open_input_file(path)  # Parquet needs random access
        return super()._open_input_source(filesystem, path, **open_args)

    def _read_stream(self, f, path: str):
        reader = self._parquet_rows if path.endswith(".parquet") else self._jsonl_rows
        rows = []
        for row in reader(f, path):
            rows.append(row)
            if len(rows) >= self.rows_per_block:
                yield pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)
                rows = []
        if rows:
            yield pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)

    @staticmethod
    def _jsonl_rows(f, path: str):
        for lineno, raw in enumerate(_split_lines(f), start=1):
            if not raw.strip():
                continue  # blank lines are not records (line numbers still count them)
            try:
                text, problem = raw.decode("utf-8-sig"), None
            except UnicodeDecodeError as e:
                text, problem = None, f"record: not valid UTF-8 ({e.reason} at byte {e.start})"
            yield {"source_path": path, "source_row": lineno, "record": text, "read_error": problem}

    def _parquet_rows(self, f, path: str):
        import pyarrow.parquet as pq

        row = 0
        try:
            parquet = pq.ParquetFile(f)
            columns = [c for c in parquet.schema_arrow.names if c in self.columns]
            for batch in parquet.iter_batches(batch_size=self.rows_per_block, columns=columns):
                for values in batch.to_pylist():
                    row += 1
                    yield {"source_path": path, "source_row": row,
                           "record": json.dumps(values, ensure_ascii=False, default=str), "read_error": None}
        except Exception as e:  # a damaged file: keep the rows read so far, one error row for the rest
            yield {"source_path": path, "source_row": row + 1, "record": None,
                   "read_error": f"file: cannot read from this row on ({type(e).__name__}: {e})"}


# ---------------------------------------------------------------------------------------------
# Tagging: a pool of actors, each with one Predictor
# ---------------------------------------------------------------------------------------------


def _unpack_model(files: dict) -> str:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="newstagger-model-"))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return str(folder)


class OnDevice:
    """Wraps a NewsTaggerModel so that the Predictor (which packs batches on the CPU) runs it on a device:
    inputs go to the device, outputs come back to the CPU."""

    def __init__(self, model, device):
        import torch

        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.config = model.config

    def eval(self):
        self.model.eval()
        return self

    def __call__(self, **batch):
        import torch

        moved = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        out = self.model(**moved)
        for key, value in list(out.items()):
            if isinstance(value, torch.Tensor):
                out[key] = value.cpu()
        return out


class TaggingActor:
    """Ray Data callable class: loads the model once, then tags batches of input rows."""

    def __init__(self, model, threads: int = 1, gpu: bool = False, backend: str = "torch",
                 output_format: str = "parquet", text_column: str | None = None, id_column: str | None = None,
                 encoder_batch: int = 32):
        import torch

        from .predictor import Predictor

        if isinstance(model, dict):  # {"ref": ObjectRef of {file name: bytes}}: the shipped model folder
            model = _unpack_model(ray.get(model["ref"]))
        torch.set_num_threads(max(1, int(threads)))
        self.predictor = Predictor.from_pretrained(model, backend=backend, batch_size=encoder_batch,
                                                   num_threads=max(1, int(threads)), max_paragraphs=MAX_PARAGRAPHS,
                                                   max_paragraph_chars=MAX_PARAGRAPH_CHARS)
        if gpu:
            self.predictor.model = OnDevice(self.predictor.model, "cuda")
        self.output_format = output_format
        self.text_column = text_column
        self.id_column = id_column

    def __call__(self, batch: pa.Table) -> pa.Table:
        from .predictor import ArticleError

        rows = batch.to_pylist()
        ids, problems, articles = [], [], []
        for row in rows:
            rid, article, problem = self._read(row)
            ids.append(rid)
            problems.append(problem)
            articles.append(article)
        todo = [i for i, a in enumerate(articles) if a is not None]
        for i, result in zip(todo, self._tag([articles[i] for i in todo])):
            if isinstance(result, ArticleError):
                problems[i] = str(result)  # "<field>: <problem>"
            elif isinstance(result, Exception):
                problems[i] = f"tagging: {type(result).__name__}: {result}"
            else:
                articles[i] = result
        out = []
        for row, rid, article, problem in zip(rows, ids, articles, problems):
            where = f"{row['source_path']}:{row['source_row']}"
            if problem is not None:
                record = {"id": rid, **{k: None for k in RESULT_FIELDS[1:]}, "error": f"{where}: {problem}"}
            else:
                record = {**article.to_record(), "error": None}
            record["source_path"], record["source_row"] = row["source_path"], row["source_row"]
            out.append(record)
        return self._table(out)

    def _read(self, row: dict) -> tuple[str, dict | None, str | None]:
        fallback = default_id(row["source_path"], row["source_row"])
        if row["read_error"] is not None:
            return fallback, None, row["read_error"]
        try:
            record = json.loads(row["record"])
        except json.JSONDecodeError as e:
            return fallback, None, f"record: invalid JSON ({e.msg} at column {e.colno})"
        if not isinstance(record, dict):
            return fallback, None, f"record: expected a JSON object, got {type(record).__name__}"
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            return fallback, None, "record: holds an unpaired UTF-16 surrogate escape (not valid Unicode)"
        return article_from_record(record, fallback, self.text_column, self.id_column)

    def _tag(self, articles: list[dict]) -> list:
        """TaggingResult or the exception per article; one batch call, article by article if it fails."""
        if not articles:
            return []
        try:
            return self.predictor.predict_batch_safe(articles)
        except Exception:  # not an ArticleError (those come back in place): find the article that breaks it
            results = []
            for article in articles:
                try:
                    results.extend(self.predictor.predict_batch_safe([article]))
                except Exception as e:
                    results.append(e)
            return results

    def _table(self, records: list[dict]) -> pa.Table:
        if self.output_format == "jsonl":
            return pa.Table.from_pylist(
                [{"id": r["id"], "error": r["error"], "json": json.dumps(r, ensure_ascii=False)} for r in records],
                schema=JSONL_SCHEMA)
        for r in records:
            if r["error"] is None:
                r["topic_scores"] = json.dumps(r["topic_scores"])
                r["evidence"] = json.dumps(r["evidence"])
        return pa.Table.from_pylist(records, schema=PARQUET_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Writing: Parquet or JSONL shards, with counts for the summary
# ---------------------------------------------------------------------------------------------


class _CountingSink(BlockBasedFileDatasink):
    """Writes one file per write task and counts rows and error rows (``totals`` after the write)."""

    def __init__(self, path: str, file_format: str, rows_per_file: int | None, **kwargs):
        super().__init__(path, file_format=file_format, min_rows_per_file=rows_per_file, **kwargs)
        self.totals = {"rows": 0, "errors": 0}

    def write(self, blocks, ctx):
        blocks = list(blocks)
        super().write(blocks, ctx)
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        return {"rows": sum(t.num_rows for t in tables),
                "errors": sum(t.num_rows - t.column("error").null_count for t in tables)}

    def on_write_complete(self, write_result):
        super().on_write_complete(write_result)
        for counts in write_result.write_returns:
            for key in self.totals:
                self.totals[key] += counts[key]


class ParquetSink(_CountingSink):
    def __init__(self, path: str, rows_per_file: int | None = DEFAULT_ROWS_PER_FILE, **kwargs):
        super().__init__(path, "parquet", rows_per_file, **kwargs)

    def write_block_to_file(self, block, file):
        import pyarrow.parquet as pq

        pq.write_table(block.to_arrow().cast(PARQUET_SCHEMA), file, compression="zstd")


class JsonlSink(_CountingSink):
    """One JSON record per line, exactly as the actors serialised it (write_json would go through pandas
    and Arrow, which turn dicts with varying keys, such as evidence, into structs padded with nulls)."""

    def __init__(self, path: str, rows_per_file: int | None = DEFAULT_ROWS_PER_FILE, **kwargs):
        super().__init__(path, "jsonl", rows_per_file, **kwargs)

    def write_block_to_file(self, block, file):
        lines = block.to_arrow().column("json").to_pylist()
        file.write(("\n".join(lines) + "\n").encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Ray: connect or start, the output folder, the job
# ---------------------------------------------------------------------------------------------


def _is_uri(path: str) -> bool:
    return "://" in str(path)


def _absolute(path: str | Path) -> str:
    """Local paths made absolute (Ray workers do not share the driver's working directory)."""
    return str(path) if _is_uri(str(path)) else str(Path(path).expanduser().resolve())


def _filesystem(path: str):
    import pyarrow.fs as pafs

    if _is_uri(path):
        return pafs.FileSystem.from_uri(path)
    return pafs.LocalFileSystem(), path


def connect(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None) -> bool:
    """Connect to a cluster (``address``, else RAY_ADDRESS), or start a private local instance on the
    loopback interface. Returns True when this call started or connected Ray (the caller shuts it down),
    False when Ray was already initialised in this process."""
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    # A single-machine instance: Ray's own single-machine mode (as on macOS and Windows) gives its
    # processes the loopback address instead of this machine's network address.
    # Set for ray.init only: the processes it spawns inherit it, and this process is left as it was.
    saved_env = os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    saved_constant = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: ray may have been imported already
    try:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_env is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = saved_env
    return True


def _ship_model(model_dir: str):
    """The model folder as an object in Ray's object store ({"ref": ...}), or its path when it is remote,
    too big, or holds sub-folders (then every node must see the path)."""
    if _is_uri(model_dir):
        return model_dir
    files = [p for p in Path(model_dir).iterdir()]
    if any(p.is_dir() for p in files) or sum(p.stat().st_size for p in files) > MAX_SHIPPED_MODEL_BYTES:
        return model_dir
    return {"ref": ray.put({p.name: p.read_bytes() for p in files})}


def prepare_output(output: str, overwrite: bool) -> bool:
    """False when ``output`` already holds a complete run (and overwrite is off); otherwise clear what an
    unfinished run of ours left there and return True. Refuses a folder holding anything else."""
    import pyarrow.fs as pafs

    fs, base = _filesystem(output)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        return True
    if info.type != pafs.FileType.Directory:
        raise RayTaggingError(f"{output}: exists and is not a folder")
    entries = fs.get_file_info(pafs.FileSelector(base))
    names = {PurePosixPath(e.path).name for e in entries}
    if SUCCESS_FILE in names and not overwrite:
        return False
    ours = [e for e in entries if e.type == pafs.FileType.File
            and (e.path.endswith(tuple(OUTPUT_SUFFIXES.values())) or PurePosixPath(e.path).name == SUCCESS_FILE)]
    if len(ours) != len(entries) and not overwrite:
        others = sorted(names - {PurePosixPath(e.path).name for e in ours})
        raise RayTaggingError(f"{output}: folder holds files this tagger did not write ({', '.join(others[:5])}); "
                              "choose another --output or pass --overwrite to replace its contents")
    if overwrite:
        fs.delete_dir_contents(base)
    else:
        for e in ours:
            fs.delete_file(e.path)
    return True


@dataclass
class RaySummary:
    records: int = 0
    errors: int = 0
    seconds: float = 0.0  # the Ray Data job: read, tag, write (after Ray start-up)
    startup_seconds: float = 0.0  # connecting to or starting Ray
    output: str = ""
    skipped: bool = False  # the output folder was already complete
    options: dict = field(default_factory=dict)

    @property
    def exit_status(self) -> int:
        return 1 if self.errors else 0

    def summary(self) -> str:
        if self.skipped:
            return f"{self.output}: already complete ({SUCCESS_FILE} present): nothing to do"
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        return (f"records: {self.records}, tagged: {self.records - self.errors}, errors: {self.errors}, "
                f"{rate:.1f} articles/s (Ray start-up {self.startup_seconds:.1f} s not included); "
                f"output: {self.output}")


def tag_files(model: str | Path, inputs: Sequence[str | Path], output: str | Path, *,
              ray_address: str | None = None, num_actors: int | None = None, threads_per_actor: int = 1,
              batch_size: int = DEFAULT_BATCH_SIZE, output_format: str = "parquet", gpu: bool = False,
              text_column: str | None = None, id_column: str | None = None, backend: str = "torch",
              rows_per_file: int | None = DEFAULT_ROWS_PER_FILE, overwrite: bool = False,
              shutdown: bool | None = None) -> RaySummary:
    """Tag every record of ``inputs`` into the folder ``output`` (see the module docstring).

    Ray: uses the instance already initialised in this process, else connects to ``ray_address`` /
    RAY_ADDRESS, else starts a local one sized for the actors. ``shutdown``: disconnect at the end
    (default: when this call connected).
    """
    if output_format not in OUTPUT_SUFFIXES:
        raise RayTaggingError(f"--output-format must be one of {', '.join(OUTPUT_SUFFIXES)}, not {output_format!r}")
    if threads_per_actor < 1 or batch_size < 1 or (num_actors is not None and num_actors < 1):
        raise RayTaggingError("--num-actors, --threads-per-actor and --batch-size must be at least 1")
    if not inputs:
        raise RayTaggingError("no input given")
    if gpu and backend != "torch":
        raise RayTaggingError("--gpu runs the torch backend (the int8 backend is for CPUs)")
    model, output = _absolute(model), _absolute(output)
    inputs = [_absolute(p) for p in inputs]
    if not _is_uri(model) and not (Path(model) / "config.json").is_file():
        raise RayTaggingError(f"{model}: not a model folder (no config.json)")
    for path in inputs:
        if not _is_uri(path) and not Path(path).exists():
            raise RayTaggingError(f"{path}: no such file or folder")
    summary = RaySummary(output=output, options={
        "model": model, "inputs": inputs, "output_format": output_format, "batch_size": batch_size,
        "threads_per_actor": threads_per_actor, "gpu": gpu, "text_column": text_column, "id_column": id_column,
        "backend": backend})
    if not prepare_output(output, overwrite):
        summary.skipped = True
        return summary

    start = time.perf_counter()
    cores = os.cpu_count() or 1
    local_actors = num_actors or max(1, cores // threads_per_actor)
    connected = connect(ray_address, num_cpus=max(cores, local_actors * threads_per_actor))
    shutdown = connected if shutdown is None else shutdown
    try:
        if num_actors is None:
            resources = ray.cluster_resources()
            if gpu:
                num_actors = max(1, int(resources.get("GPU", 1)))
            else:
                num_actors = max(1, int(resources.get("CPU", 1) // threads_per_actor))
        summary.options["num_actors"] = num_actors
        summary.startup_seconds = time.perf_counter() - start

        start = time.perf_counter()
        columns = [*PARQUET_FIELDS, *(c for c in (text_column, id_column) if c)]
        # Reads and writes ask for no CPU: the actors may hold every CPU of the cluster, and a read task
        # waiting for one would stall the job (Ray Data does not preempt actors).
        ds = ray.data.read_datasource(ArticleRecordsDatasource(inputs, columns=columns), num_cpus=0)
        ds = ds.map_batches(
            TaggingActor,
            fn_constructor_kwargs={"model": _ship_model(model), "threads": threads_per_actor, "gpu": gpu,
                                   "backend": backend, "output_format": output_format,
                                   "text_column": text_column, "id_column": id_column},
            batch_size=batch_size, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=num_actors),
            num_cpus=threads_per_actor, num_gpus=1 if gpu else None)
        sink = (ParquetSink if output_format == "parquet" else JsonlSink)(output, rows_per_file=rows_per_file)
        ds.write_datasink(sink, ray_remote_args={"num_cpus": 0})
        summary.records, summary.errors = sink.totals["rows"], sink.totals["errors"]
        summary.seconds = time.perf_counter() - start
        _write_success(output, summary)
    finally:
        if shutdown:
            ray.shutdown()
    return summary


def _write_success(output: str, summary: RaySummary) -> None:
    fs, base = _filesystem(output)
    fs.create_dir(base, recursive=True)  # a job with no record writes no file
    data = {k: v for k, v in asdict(summary).items() if k not in ("skipped", "output")}
    with fs.open_output_stream(f"{base.rstrip('/')}/{SUCCESS_FILE}") as f:
        f.write(json.dumps(data, indent=2).encode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Reading results back (tests, benchmarks, small follow-up jobs)
# ---------------------------------------------------------------------------------------------


def read_output(output: str | Path) -> list[dict]:
    """Every output row of a local output folder as ``to_record()``-shaped dicts (Parquet's JSON strings
    decoded), plus error, source_path and source_row. For checks and small outputs only: it loads all."""
    import pyarrow.parquet as pq

    rows = []
    for path in sorted(Path(output).iterdir()):
        if path.suffix == ".jsonl":
            rows.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line)
        elif path.suffix == ".parquet":
            for row in pq.read_table(path).to_pylist():
                for key in ("topic_scores", "evidence"):
                    if row[key] is not None:
                        row[key] = json.loads(row[key])
                rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predict.py --engine ray",
        description="Tag JSONL / Parquet shards on a Ray cluster (or a local Ray instance) with Ray Data.")
    parser.add_argument("--model", required=True, help="saved model folder (shipped to the actors)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="JSONL or Parquet files or folders of them (local, or any URI pyarrow reads)")
    parser.add_argument("--output", required=True, help="output folder: shards plus _SUCCESS.json")
    parser.add_argument("--ray-address", default=None,
                        help="cluster to connect to (default: $RAY_ADDRESS, else start a local instance); "
                             "'auto' for the cluster started on this machine")
    parser.add_argument("--num-actors", type=int, default=None,
                        help="tagging actors (default: CPUs / threads per actor, or one per GPU with --gpu)")
    parser.add_argument("--threads-per-actor", type=int, default=1, help="torch threads (and Ray CPUs) per actor")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="records per actor call")
    parser.add_argument("--output-format", choices=sorted(OUTPUT_SUFFIXES), default="parquet")
    parser.add_argument("--gpu", action="store_true", help="one GPU per actor")
    parser.add_argument("--text-column", default=None,
                        help="field with the article (text or list of paragraphs); default: paragraphs, then text")
    parser.add_argument("--id-column", default=None, help="field with the id (default: id)")
    parser.add_argument("--backend", choices=["torch", "int8"], default="torch")
    parser.add_argument("--rows-per-file", type=int, default=DEFAULT_ROWS_PER_FILE,
                        help="at least this many rows per output shard (the last ones may have fewer)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output folder's contents, even a complete run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 all tagged (or already complete), 1 some records are error rows, 2 a bad run."""
    args = build_parser().parse_args(argv)
    try:
        summary = tag_files(
            args.model, args.inputs, args.output, ray_address=args.ray_address, num_actors=args.num_actors,
            threads_per_actor=args.threads_per_actor, batch_size=args.batch_size,
            output_format=args.output_format, gpu=args.gpu, text_column=args.text_column,
            id_column=args.id_column, backend=args.backend, rows_per_file=args.rows_per_file,
            overwrite=args.overwrite)
    except RayTaggingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(summary.summary(), file=sys.stderr)
    return summary.exit_status


if __name__ == "__main__":
    sys.exit(main())
