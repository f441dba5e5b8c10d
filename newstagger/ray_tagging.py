"""Tag many articles on a Ray cluster with Ray Data: the engine behind ``newstagger tag --engine ray``.

    newstagger tag --engine ray --model runs/default shards/ --output tags/ \\
        [--ray-address ADDR] [--num-actors N] [--num-threads T] [--chunk-size C] [--batch-size B] \\
        [--output-format parquet|jsonl] [--device cuda] [--text-column C] [--id-column C]

    from newstagger.batch import TagOptions, tag
    summary = tag(TagOptions(model="runs/default", inputs=["shards/"], output="tags/", engine="ray", num_actors=4))

The options mean what they mean on the local engine (newstagger.batch.TagOptions): ``chunk_size`` articles
per Predictor call (here: per actor call), ``batch_size`` paragraph chunks per encoder call, ``num_threads``
torch threads per Predictor (here: per actor, default 1, and as many Ray CPUs), the same Limits and columns.

How it runs: the input files are listed on the driver by the one reader's rule (newstagger.inputs), Ray
Data reads each file in order in one read task with that reader (JSONL, CSV, Parquet, .txt, optionally
.gz; local paths or any filesystem pyarrow knows, e.g. s3://), a pool of ``num_actors`` actors turns the
records into articles with the one record rule and tags them (each actor loads the model once, and with
``--device cuda`` takes one GPU), and the results are written as Parquet or JSONL shards into the output
folder, with ``_SUCCESS.json`` (inputs, counts, options) written last.

Cluster: ``--ray-address ADDR`` (or the RAY_ADDRESS variable) connects to a running cluster (``auto`` for the
one started on this machine with ``ray start``); without either, a private single-machine Ray instance is
started, bound to the loopback interface, without the dashboard, and shut down at the end. On a cluster the
inputs and the output folder must be reachable from every node (shared filesystem or object store); the
model folder is shipped to the actors through Ray's object store, so the nodes need not have it.

Output rows, one per input record, in no particular order: the fields of ``TaggingResult.to_record()``
(id, topics, topic_scores, paragraphs, evidence, clean_text) plus ``error`` (null, or
``"<file>:<line>: <field>: <problem>"`` with every other field null, the file named as the user named it, as
the local engine names it) and ``source_path``/``source_row`` (where the record was read: the absolute path
the workers opened). JSONL rows are exactly ``to_record()`` with those keys added. In Parquet, ``topics`` is
a list of strings, ``paragraphs`` a list of structs (index, boilerplate, score), and ``topic_scores`` and
``evidence`` are JSON strings (their keys are labels; ``json.loads`` gives the dicts of ``to_record()``).

Resuming: a folder with ``_SUCCESS.json`` is complete and a re-run with the same ``--output`` skips it
(``--overwrite`` redoes it). A folder without it, holding only files this module writes, is an unfinished
run: a re-run clears it and starts again. So run large corpora as one job per group of input shards, each
into its own output folder, and re-run the same commands after a failure: finished groups are skipped.
What the local engine has and Ray has not: standard input, --resume onto a file, --pretty, --site-repeat,
and file names holding a tab, a line break or bytes that are not UTF-8 (Ray Data drops those characters from
paths: each such file is one error row). Records without an id get the local engine's ids (Position.default_id).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import sys
import time
import warnings
from pathlib import Path, PurePosixPath

try:
    import pyarrow as pa
    import ray
    from ray.data.block import BlockAccessor
    from ray.data.datasource import BlockBasedFileDatasink, FileBasedDatasource
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("newstagger.ray_tagging needs Ray Data: pip install 'newstagger[ray]' "
                      f"(ray[data]==2.60.0) ({e})") from e

from .batch import (BlankLines, OutputLock, RunSummary, TagOptions, load_predictor, options_record,  # noqa: E402
                    resolve_device, run_signature, signature_differences)
from .inputs import (STDIN, ArticleError, InputError, Limits, Position,  # noqa: E402
                     article_from_record, check_inputs, file_identities, format_of, input_files, is_uri,
                     read_stream)

logger = logging.getLogger("newstagger")

SUCCESS_FILE = "_SUCCESS.json"
OUTPUT_SUFFIXES = {"parquet": ".parquet", "jsonl": ".jsonl"}
ROWS_PER_READ_BLOCK = 1024
DEFAULT_ROWS_PER_FILE = 10_000
MAX_SHIPPED_MODEL_BYTES = 2 << 30

INPUT_SCHEMA = pa.schema([
    ("source_path", pa.string()),  # the file as Ray reads it (absolute), for the output rows
    ("source", pa.string()), ("source_row", pa.int64()),  # the record's Position: error lines name the
    ("source_name", pa.string()),  # file as the user named it; name: its path inside its input folder (ids)
    ("record", pa.string()),  # the record as JSON text; null when it could not be read
    ("read_error", pa.string()),  # "<field>: <problem>" when it could not be read
])
PARAGRAPH_TYPE = pa.struct([("index", pa.int32()), ("boilerplate", pa.bool_()), ("score", pa.float64())])
PARQUET_SCHEMA = pa.schema([
    ("id", pa.string()), ("topics", pa.list_(pa.string())), ("topic_scores", pa.string()),
    ("paragraphs", pa.list_(PARAGRAPH_TYPE)), ("evidence", pa.string()), ("clean_text", pa.string()),
    ("error", pa.string()), ("source_path", pa.string()), ("source_row", pa.int64()),
])
JSONL_SCHEMA = pa.schema([("id", pa.string()), ("error", pa.string()), ("json", pa.string()),
                          ("source_path", pa.string()), ("source_row", pa.int64())])  # written: json only
RESULT_FIELDS = ("id", "topics", "topic_scores", "paragraphs", "evidence", "clean_text")


# ---------------------------------------------------------------------------------------------
# Reading: the one reader inside Ray's read tasks, one row per record with its file and position
# ---------------------------------------------------------------------------------------------


def _input_row(path: str, position: Position, item) -> dict:
    row = {"source_path": path, "source": position.source, "source_row": position.row,
           "source_name": position.name, "record": None, "read_error": None}
    if isinstance(item, ArticleError):
        row["read_error"] = item.message
        return row
    try:  # ASCII JSON: a lone surrogate survives as an escape, for the record rule to report
        row["record"] = json.dumps(item, default=str)
    except (ValueError, RecursionError) as e:
        row["read_error"] = f"record: cannot be passed on ({type(e).__name__}: {e})"
    return row


# Ray Data parses every path as a URL, which drops tabs and line breaks (and lone surrogates, Python's
# stand-ins for bytes that are not UTF-8) from it: such a file would be missed, or another one read twice
_PATH_RAY_MANGLES = re.compile("[\t\n\r\ud800-\udfff]")
RAY_PATH_PROBLEM = ("file: Ray Data cannot open a file whose name holds a tab, a line break or bytes that are "
                    "not UTF-8; rename it, or tag it with --engine local")


def _filesystem_path(path: str) -> str:
    """A path as Ray Data hands it to a read task: a URI without its scheme (``s3://b/k`` -> ``b/k``,
    ``file:///x`` -> ``/x``); an absolute local path as it is."""
    return path.split("://", 1)[1] if is_uri(path) else path


class ArticleRecordsDatasource(FileBasedDatasource):
    """Input files as rows (source_path, the record's Position: source, source_row, source_name; record as
    JSON text, read_error), read by newstagger.inputs.read_stream. Each file is read in order by one task,
    so the positions are exact; the record rule runs later, in the tagging actors. ``places``: {file: (its
    path inside the input folder it was found in or None, the file as the local engine names it)}
    (see _local_files), so that default ids and error lines are those of the local engine."""

    def __init__(self, paths, *, places: dict[str, tuple[str | None, str]] | None = None, limits: Limits = Limits(),
                 columns=None, rows_per_block: int = ROWS_PER_READ_BLOCK, **kwargs):
        super().__init__(paths, **kwargs)
        # In the object store, as Ray keeps its own path list: read tasks would each carry a copy otherwise
        self._places_ref = ray.put({_filesystem_path(p): place for p, place in (places or {}).items()})
        self.limits = limits
        self.columns = columns
        self.rows_per_block = rows_per_block

    def _open_input_source(self, filesystem, path: str, **open_args):
        if format_of(path)[0] == "parquet":
            return filesystem.open_input_file(path)  # Parquet needs random access
        return super()._open_input_source(filesystem, path, **open_args)  # decompresses .gz

    def _read_stream(self, f, path: str):
        rows = []
        name, shown = ray.get(self._places_ref).get(path, (None, path))
        for position, item in read_stream(f, shown, format_of(path)[0], self.limits, self.columns, name):
            rows.append(_input_row(path, position, item))
            if len(rows) >= self.rows_per_block:
                yield pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)
                rows = []
        if rows:
            yield pa.Table.from_pylist(rows, schema=INPUT_SCHEMA)


# ---------------------------------------------------------------------------------------------
# Tagging: a pool of actors, each with one Predictor
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _unpacked_model(files: dict):
    """The shipped model folder ({file name: bytes}) written to a temporary folder for as long as loading
    takes, then removed: a loaded Predictor holds everything in memory, and an actor per run on every node
    would otherwise leave a model-sized folder in its temp directory each time."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="newstagger-model-") as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)
        yield folder


def _position(row: dict) -> Position:
    return Position(row["source"], row["source_row"], row["source_name"])


class TaggingActor:
    """Ray Data callable class: loads the model once, then tags batches of input rows."""

    def __init__(self, model, options: TagOptions):
        with contextlib.ExitStack() as stack:
            if isinstance(model, dict):  # {"ref": ObjectRef of {file name: bytes}}: the shipped model folder
                model = stack.enter_context(_unpacked_model(ray.get(model["ref"])))
            self.predictor = load_predictor(model, backend=options.backend, batch_size=options.batch_size,
                                            num_threads=options.num_threads, limits=options.limits,
                                            device=options.device)
        self.options = options

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        items = [self._read(row) for row in rows]
        readable = [i for i, item in enumerate(items) if not isinstance(item, ArticleError)]
        for i, result in zip(readable, self.predictor.predict_batch_safe([items[i] for i in readable])):
            items[i] = result if not isinstance(result, ArticleError) else result.at(None, items[i].id)
        out = []
        for row, item in zip(rows, items):
            position = _position(row)
            if isinstance(item, ArticleError):  # "file:line: field: problem" as the local engine writes it
                record = {"id": item.record_id or position.default_id, **{k: None for k in RESULT_FIELDS[1:]},
                          "error": str(item.at(position))}
            else:
                record = {**item.to_record(), "error": None}
            record["source_path"], record["source_row"] = row["source_path"], row["source_row"]
            out.append(record)
        return self._table(out)

    def _read(self, row: dict):
        """The row's Article, or the ArticleError that says why there is none."""
        position = _position(row)
        if row["read_error"] is not None:
            return ArticleError(row["read_error"], None, position.default_id)
        try:
            return article_from_record(json.loads(row["record"]), position, self.options.columns,
                                       limits=self.options.limits)
        except ArticleError as e:
            return e.at(None, e.record_id or position.default_id)

    def _table(self, records: list[dict]) -> pa.Table:
        if self.options.output_format == "jsonl":
            return pa.Table.from_pylist(
                [{"id": r["id"], "error": r["error"], "json": json.dumps(r, ensure_ascii=False),
                  "source_path": r["source_path"], "source_row": r["source_row"]} for r in records],
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
    """Writes one file per write task and counts rows, error rows (``totals`` after the write) and the
    blank lines of JSONL inputs (``blank_lines``, from the rows' source_path and source_row)."""

    def __init__(self, path: str, file_format: str, rows_per_file: int | None, **kwargs):
        super().__init__(path, file_format=file_format, min_rows_per_file=rows_per_file, **kwargs)
        self.totals = {"rows": 0, "errors": 0}
        self.blank_lines = BlankLines()

    def write(self, blocks, ctx):
        blocks = list(blocks)
        super().write(blocks, ctx)
        tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
        blank = BlankLines()
        for t in tables:
            for path, row in zip(t.column("source_path").to_pylist(), t.column("source_row").to_pylist()):
                blank.add(path, row)
        return {"rows": sum(t.num_rows for t in tables),
                "errors": sum(t.num_rows - t.column("error").null_count for t in tables), "files": blank.files}

    def on_write_complete(self, write_result):
        super().on_write_complete(write_result)
        for counts in write_result.write_returns:
            for key in self.totals:
                self.totals[key] += counts[key]
            self.blank_lines.merge(counts["files"])


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


def _absolute(path: str | Path) -> str:
    """Local paths made absolute (Ray workers do not share the driver's working directory)."""
    return str(path) if is_uri(str(path)) else str(Path(path).expanduser().resolve())


def _local_files(named: list[str], inputs: list[str]):
    """input_files of the absolute ``inputs`` (what Ray's workers read), each with the file as the local
    engine names it: the input as the user named it (``named``, in the same order), or, for a file found in
    an input folder, that folder as named joined with the file's path inside it (a URI: as listed). Error
    lines are built from that name (Position), so both engines write the same ``file:line: field: problem``."""
    for given, absolute in zip(named, inputs):
        for source, problem, name in input_files([absolute]):
            shown = source if is_uri(given) else given if name is None else str(Path(given) / name)
            yield source, problem, name, shown


def _filesystem(path: str):
    import pyarrow.fs as pafs

    if is_uri(path):
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
    # A new local instance enables token authentication and says so as a warning on every run ("Token
    # authentication is enabled for this Ray cluster..."): it stays enabled, the user is not told each time
    auth_logger = logging.getLogger("ray._private.authentication.authentication_token_setup")
    saved_level = auth_logger.level
    auth_logger.setLevel(logging.ERROR)
    from ray._private import ray_constants

    saved_constant = getattr(ray_constants, "ENABLE_RAY_CLUSTER", True)
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at import: ray may have been imported already
    try:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    finally:
        auth_logger.setLevel(saved_level)
        ray_constants.ENABLE_RAY_CLUSTER = saved_constant
        if saved_env is None:
            os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        else:
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = saved_env
    return True


class _NotProgress(logging.Filter):
    """Drops Ray Data's progress reports (and its notes that they are off) below ERROR."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or not record.name.startswith("ray.data._internal.progress")


@contextlib.contextmanager
def _quiet_ray_data(progress: bool):
    """Ray Data as a command-line user should see it: its progress bars only when ``progress`` (a terminal),
    and on the console only its warnings and errors, never its INFO lines (execution plans, a progress
    report every few seconds when the output is not a terminal: 165 lines for 564 articles). Its log file in
    the Ray session folder keeps everything. Restored afterwards (a Python caller's settings stay theirs)."""
    context = ray.data.DataContext.get_current()
    saved = context.enable_progress_bars
    context.enable_progress_bars = progress
    console = [h for h in logging.getLogger("ray.data").handlers if h.get_name() == "console"]
    levels = [h.level for h in console]
    only_errors = _NotProgress()
    for handler in console:
        handler.setLevel(max(handler.level, logging.WARNING))
        handler.addFilter(only_errors)
    try:
        yield
    finally:
        context.enable_progress_bars = saved
        for handler, level in zip(console, levels):
            handler.setLevel(level)
            handler.removeFilter(only_errors)


def _ship_model(model_dir: str):
    """The model folder as an object in Ray's object store ({"ref": ...}), or its path when it is remote,
    too big, or holds sub-folders (then every node must see the path)."""
    if is_uri(model_dir):
        return model_dir
    files = [p for p in Path(model_dir).iterdir()]
    if any(p.is_dir() for p in files) or sum(p.stat().st_size for p in files) > MAX_SHIPPED_MODEL_BYTES:
        return model_dir
    return {"ref": ray.put({p.name: p.read_bytes() for p in files})}


def _check_apart(output: str, inputs: list[str]) -> None:
    """Refuse an output folder that is an input, lies inside an input folder or holds an input: clearing
    it would delete inputs, and a listing of the input folder would read the shards back."""
    if is_uri(output):
        return
    out = Path(output)
    for name in inputs:
        if is_uri(name) or name == STDIN:
            continue
        path = Path(name)
        if out == path or path.is_relative_to(out) or (path.is_dir() and out.is_relative_to(path)):
            raise InputError(f"{output}: the output folder overlaps the input {name}; choose another --output")


def prepare_output(output: str, overwrite: bool) -> bool:
    """False when ``output`` already holds a complete run (and overwrite is off); otherwise clear what an
    unfinished run of ours left there and return True. Refuses a folder holding anything else."""
    import pyarrow.fs as pafs

    fs, base = _filesystem(output)
    info = fs.get_file_info(base)
    if info.type == pafs.FileType.NotFound:
        return True
    if info.type != pafs.FileType.Directory:
        raise InputError(f"{output}: exists and is not a folder")
    entries = fs.get_file_info(pafs.FileSelector(base))
    names = {PurePosixPath(e.path).name for e in entries}
    if SUCCESS_FILE in names and not overwrite:
        return False
    ours = [e for e in entries if e.type == pafs.FileType.File
            and (e.path.endswith(tuple(OUTPUT_SUFFIXES.values())) or PurePosixPath(e.path).name == SUCCESS_FILE)]
    if len(ours) != len(entries) and not overwrite:
        others = sorted(names - {PurePosixPath(e.path).name for e in ours})
        raise InputError(f"{output}: folder holds files this tagger did not write ({', '.join(others[:5])}); "
                              "choose another --output or pass --overwrite to replace its contents")
    if overwrite:
        fs.delete_dir_contents(base)
    else:
        for e in ours:
            fs.delete_file(e.path)
    return True


def tag_ray(options: TagOptions) -> RunSummary:
    """Tag every record of ``options.inputs`` into the folder ``options.output`` (see the module docstring).

    Ray: uses the instance already initialised in this process (and leaves it running), else connects to
    ``ray_address`` / RAY_ADDRESS, else starts a local one sized for the actors (and shuts it down)."""
    for flag, used in (("--resume", options.resume), ("--pretty", options.pretty),
                       ("--site-repeat", options.site_repeat), ("standard input (-)", STDIN in options.inputs)):
        if used:
            raise InputError(f"{flag} works with --engine local only")
    if not options.output:
        raise InputError("--engine ray needs --output FOLDER (shards and _SUCCESS.json are written there)")
    if options.output_format not in OUTPUT_SUFFIXES:
        raise InputError(f"--output-format must be one of {', '.join(OUTPUT_SUFFIXES)}, not {options.output_format!r}")
    threads = options.num_threads or 1
    gpu = resolve_device(options.device) != "cpu"
    model, output = _absolute(options.model), _absolute(options.output)
    if not is_uri(model) and not (Path(model) / "config.json").is_file():
        raise InputError(f"{model}: not a model folder (no config.json)")
    named = check_inputs(options.inputs, options.columns, stdin_ok=False)
    inputs = [_absolute(p) for p in named]
    _check_apart(output, inputs)
    files = [(source, problem or (RAY_PATH_PROBLEM if _PATH_RAY_MANGLES.search(source) else None), name, shown)
             for source, problem, name, shown in _local_files(named, inputs)]
    summary = RunSummary(output=output, options=options_record(options))
    summary.options.update(model=model, inputs=inputs, num_threads=threads)
    # What decides the rows, as the local engine's run record has it, and the input files read
    signature = run_signature(dataclasses.replace(options, model=model))
    signature["inputs"] = file_identities([source for source, _, _, _ in files])
    signature["output_format"] = options.output_format
    with OutputLock(None if is_uri(output) else Path(output), folder=True):  # one run per output folder
        if not prepare_output(output, options.overwrite):
            return _finished(output, signature, summary)
        summary.run = signature
        return _run_on_ray(options, summary, model, files, output, threads, gpu)


def _run_on_ray(options: TagOptions, summary: RunSummary, model: str, files: list, output: str, threads: int,
                gpu: bool) -> RunSummary:
    """The Ray job of tag_ray, with the output folder prepared (and locked)."""
    start = time.perf_counter()
    cores = os.cpu_count() or 1
    local_actors = options.num_actors or max(1, cores // threads)
    private = not (options.ray_address or os.environ.get("RAY_ADDRESS")) and not ray.is_initialized()
    connected = connect(options.ray_address, num_cpus=max(cores, local_actors * threads))
    try:
        num_actors = options.num_actors
        if num_actors is None:
            resources = ray.cluster_resources()
            num_actors = max(1, int(resources.get("GPU", 1) if gpu else resources.get("CPU", 1) // threads))
        summary.options["num_actors"] = num_actors
        summary.startup_seconds = time.perf_counter() - start

        start = time.perf_counter()
        readable = [source for source, problem, _, _ in files if problem is None]
        places = {source: (name, shown) for source, problem, name, shown in files if problem is None}
        # Reads and writes ask for no CPU: the actors may hold every CPU of the cluster, and a read task
        # waiting for one would stall the job (Ray Data does not preempt actors).
        datasource = ArticleRecordsDatasource(readable, places=places, limits=options.limits,
                                              columns=options.columns.wanted())
        ds = ray.data.read_datasource(datasource, num_cpus=0)
        unreadable = [_input_row(source, Position(shown, None if format_of(source)[0] == "txt" else 1, name),
                                 ArticleError(problem))
                      for source, problem, name, shown in files if problem is not None]
        if unreadable:  # dangling or looping links in an input folder, names Ray cannot open: one error row each
            ds = ds.union(ray.data.from_arrow(pa.Table.from_pylist(unreadable, schema=INPUT_SCHEMA)))
        actor_options = dataclasses.replace(options, model=None, num_threads=threads)
        # On a private one-machine instance an actor that dies (out of memory) would die again: no restarts,
        # which also spares the user Ray's core_worker warning about restarting actors whose constructor
        # arguments are in the object store (Ray Data always passes them so). A cluster keeps Ray Data's
        # default, restarts, for lost nodes.
        # Ray 2.60 takes max_restarts only as a "ray_remote_args" keyword, deprecated for 2.64 with no named
        # replacement yet: its deprecation warning is not the user's business either (revisit on upgrading).
        restarts = {"max_restarts": 0, "max_task_retries": 0} if private else {}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            ds = ds.map_batches(
                TaggingActor, fn_constructor_kwargs={"model": _ship_model(model), "options": actor_options},
                batch_size=options.chunk_size, batch_format="pyarrow",
                compute=ray.data.ActorPoolStrategy(size=num_actors), num_cpus=threads,
                num_gpus=1 if gpu else None, **restarts)
        sink = (ParquetSink if options.output_format == "parquet" else JsonlSink)(
            output, rows_per_file=options.rows_per_file)
        progress = sys.stderr.isatty() if options.progress is None else options.progress
        with _quiet_ray_data(progress):
            ds.write_datasink(sink, ray_remote_args={"num_cpus": 0})
        summary.records, summary.errors = sink.totals["rows"], sink.totals["errors"]
        summary.blank_lines = sink.blank_lines.count
        summary.tagged = summary.records - summary.errors
        summary.seconds = time.perf_counter() - start
        _write_success(output, summary)
    finally:
        if connected:
            ray.shutdown()
    return summary


def _finished(output: str, signature: dict, summary: RunSummary) -> RunSummary:
    """The summary of a complete output folder, skipped: its _SUCCESS.json's counts (so its exit status is
    that of the run that wrote it). InputError when it was written by another model, backend, limits,
    columns or inputs (its "run" signature, compared as --resume compares OUTPUT.run.json)."""
    fs, base = _filesystem(output)
    path = f"{base.rstrip('/')}/{SUCCESS_FILE}"
    try:
        with fs.open_input_stream(path) as f:
            recorded = json.loads(f.read())
        records, errors = int(recorded["records"]), int(recorded["errors"])
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise InputError(f"{path}: cannot read it ({e}); redo the run with --overwrite") from None
    run = recorded.get("run")
    if not isinstance(run, dict):  # written by an older version
        print(f"{output}: {SUCCESS_FILE} does not record the model and options; the folder is taken to be from "
              "this model and options", file=sys.stderr)
    else:
        differ = signature_differences(run, signature)
        if differ:
            raise InputError(f"{output}: finished with other settings: {', '.join(differ)} (see {SUCCESS_FILE}); "
                             "use --overwrite to redo it, or another --output")
    summary.skipped = True
    summary.records, summary.errors = records, errors
    summary.tagged = records - errors
    summary.blank_lines = int(recorded.get("blank_lines") or 0)
    return summary


def _write_success(output: str, summary: RunSummary) -> None:
    fs, base = _filesystem(output)
    fs.create_dir(base, recursive=True)  # a job with no record writes no file
    data = {"records": summary.records, "errors": summary.errors, "blank_lines": summary.blank_lines,
            "seconds": summary.seconds,
            "startup_seconds": summary.startup_seconds, "options": summary.options, "run": summary.run}
    with fs.open_output_stream(f"{base.rstrip('/')}/{SUCCESS_FILE}") as f:
        f.write(json.dumps(data, indent=2, default=str).encode("utf-8"))


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
