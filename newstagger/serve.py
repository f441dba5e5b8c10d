"""The HTTP service: a Predictor behind FastAPI and uvicorn, with concurrent requests micro-batched.

    newstagger serve --model runs/default [--backend onnx|torch|int8] [--host 127.0.0.1] [--port 8000] [--workers 1]

    POST /tag       one article (a JSON object as in a JSONL input line, or a JSON string of text) -> one
                    record; a JSON array of articles -> an array of records, in order. The records are
                    those of `newstagger tag` (TaggingResult.to_record()).
    GET  /health    {"status": "ok"} once the model is loaded
    GET  /metadata  labels, thresholds, backend, limits, the model card's metadata, versions
    GET  /openapi.json  the OpenAPI schema (served by the service itself, works offline)
    GET  /docs      Swagger UI over that schema, /redoc ReDoc; their scripts are served by the service itself
                    (fastapi-offline), so the pages work on a machine without internet access (FastAPI's own
                    pages load them from a CDN and are blank offline)

Requests that arrive while the model is busy wait in a queue; the batcher takes up to ``max_batch``
articles, waiting at most ``batch_wait_ms`` for more after the first, and tags them in one Predictor call,
so throughput under load approaches the batch path. The Predictor gives each article the same result
whatever it is batched with, so a response never depends on other clients' requests.

Bad input never reaches the model and never stops the server: a Content-Type other than application/json
(or application/*+json; none at all is taken as JSON) is 415, a body over ``max_body_bytes`` 413, JSON
that does not parse 400, an article the record rule refuses or over the limits 422 with the CLI's
``field: problem`` message (``article N: field: problem`` in a list), more than ``max_articles`` in one
request 413, a full queue 503, a request not answered within ``timeout_s`` 504. A request whose client hangs
up, or that times out, is dropped from the queue (work already begun on it finishes: one Predictor call cannot
be interrupted, so a public endpoint should keep ``max_body_bytes`` and the article limits near real articles'
size). Beyond ``limit_concurrency`` open connections, new ones get 503 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline  # FastAPI with the docs pages' scripts served locally
from starlette.requests import ClientDisconnect

from .inputs import ArticleError, InputError, Limits, json_reason

log = logging.getLogger("newstagger.serve")
OPTIONS_ENV = "NEWSTAGGER_SERVE_OPTIONS"  # how `--workers N` hands the options to each worker process
DISCONNECT_POLL_S = 0.25  # how often a waiting request checks that its client is still there


@dataclass
class ServeOptions:
    """Everything `newstagger serve` takes; the CLI fills one and passes it to serve()."""
    model: str
    backend: str = "onnx"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1  # processes, each with its own Predictor
    device: str = "cpu"
    num_threads: int | None = None  # CPU threads per worker's Predictor (default: all cores)
    batch_size: int | None = None  # encoder micro-batch (paragraph chunks per encoder call; default: the backend's)
    max_batch: int = 64  # articles per Predictor call
    batch_wait_ms: float = 5.0  # how long the batcher waits for more articles after the first
    max_queue: int = 4096  # articles waiting at most; beyond: 503
    max_articles: int = 256  # articles per request
    max_body_bytes: int = 8 << 20
    timeout_s: float = 60.0
    limit_concurrency: int = 1024  # open connections at most (uvicorn's limit_concurrency): beyond, 503 at once
    grace_s: float = 5.0  # on Ctrl-C or SIGTERM: how long running requests may finish; the rest get 503
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_object(cls, obj) -> "ServeOptions":
        """From any object with these attribute names (an argparse Namespace); missing ones: defaults."""
        if isinstance(obj, cls):
            return obj
        values = {name: getattr(obj, name) for name in cls.__dataclass_fields__ if getattr(obj, name, None) is not None}
        return cls(**values)


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Batcher:
    """Collects the articles of concurrent requests into Predictor calls (one at a time, off the event loop)."""

    def __init__(self, predictor, max_batch: int, wait_s: float, max_queue: int):
        self.predictor = predictor
        self.max_batch, self.wait_s, self.max_queue = max_batch, wait_s, max_queue
        self.queue: asyncio.Queue = asyncio.Queue()
        self.waiting = 0  # articles queued
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="newstagger-batcher")
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def tag(self, articles: list) -> list:
        """TaggingResults (or ArticleErrors) for checked Articles, in order. Cancelling the caller (a timeout,
        a client that hung up) cancels the job: the batcher drops it unless its Predictor call has begun."""
        if len(articles) > self.max_queue:  # would wait forever: no retry can help
            raise HttpError(413, f"request: {len(articles)} articles, more than the queue holds (max_queue "
                                 f"{self.max_queue})")
        if self.waiting + len(articles) > self.max_queue:
            raise HttpError(503, f"queue: {self.waiting} articles are waiting (max_queue {self.max_queue}); retry later")
        future = asyncio.get_running_loop().create_future()
        self.waiting += len(articles)
        await self.queue.put((articles, future))
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            size = len(jobs[0][0])
            deadline = loop.time() + self.wait_s
            while size < self.max_batch:
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), timeout)
                except asyncio.TimeoutError:
                    break
                jobs.append(job)
                size += len(job[0])
            self.waiting -= size
            jobs = [(articles, future) for articles, future in jobs if not future.done()]  # timed-out requests
            articles = [a for batch, _ in jobs for a in batch]
            try:
                results = await loop.run_in_executor(self.executor, self.predictor.predict_batch_safe, articles)
            except Exception as e:  # predict_batch_safe does not raise for articles; anything else is ours
                log.exception("tagging failed")
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(HttpError(500, f"tagging failed ({type(e).__name__})"))
                continue
            start = 0
            for batch, future in jobs:
                if not future.done():
                    future.set_result(results[start:start + len(batch)])
                start += len(batch)


def _versions(backend: str) -> dict:
    names = ["newstagger", "onnxruntime", "tokenizers", "numpy", "fastapi", "uvicorn"]
    if backend != "onnx":
        names += ["torch", "transformers"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def model_card_data(folder: Path) -> dict:
    """The YAML metadata at the top of the model card (README.md), or {}."""
    import yaml

    path = folder / "README.md"
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    try:
        data = yaml.safe_load(text.split("---", 2)[1])
    except (yaml.YAMLError, IndexError):
        return {}
    return data if isinstance(data, dict) else {}


def check_content_type(header: str | None) -> None:
    """A POST body must be declared JSON (application/json or application/*+json) or not declared at all;
    anything else is 415, so that `curl -d` without -H (which declares a form) is told what to add."""
    if not header:
        return
    kind = header.split(";")[0].strip().lower()
    if kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json")):
        return
    raise HttpError(415, f"Content-Type: expected application/json, got {kind or header} "
                         f"(with curl: -H 'Content-Type: application/json')")


def _articles_of(body, predictor, max_articles: int) -> tuple[list, bool]:
    """(checked Articles, whether the body was a list). Raises HttpError 413/422."""
    if isinstance(body, list):
        if not body:
            raise HttpError(422, "body: an empty list (send at least one article)")
        if len(body) > max_articles:
            raise HttpError(413, f"body: {len(body)} articles, over the limit of {max_articles} per request (max_articles)")
        articles, problems = [], []
        for n, item in enumerate(body):
            if isinstance(item, list) and item and all(isinstance(p, str) for p in item):
                item = {"paragraphs": item}
            try:
                articles.append(predictor.article(item))
            except ArticleError as e:
                problems.append(str(e.in_batch(n)))
        if problems:
            raise HttpError(422, "; ".join(problems[:20]))
        return articles, True
    if not isinstance(body, (dict, str)):
        raise HttpError(422, f"body: expected an article (a JSON object or a string) or a list of articles, "
                             f"got {type(body).__name__ if body is not None else 'null'}")
    try:
        return [predictor.article(body)], False
    except ArticleError as e:
        raise HttpError(422, str(e)) from None


# The body is read by the record rule (newstagger.inputs), not by a pydantic model; this documents it.
ARTICLE = {"type": "object", "description": "an article, as a line of a JSONL input: paragraphs or text",
           "properties": {"id": {"type": ["string", "integer"]}, "title": {"type": "string"},
                          "paragraphs": {"type": "array", "items": {"type": "string"}}, "text": {"type": "string"}}}
TAG_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "oneOf": [ARTICLE, {"type": "string", "description": "an article's text"},
              {"type": "array", "items": {"oneOf": [ARTICLE, {"type": "string", "description": "an article's text"},
                                                    {"type": "array", "items": {"type": "string"},
                                                     "description": "an article's paragraphs"}]}}]},
    "example": {"id": "a1", "title": "Talks resume", "paragraphs": ["Ministers met in Oslo.", "Subscribe now."]}}}}}
ERROR = {"content": {"application/json": {"schema": {"type": "object", "properties": {"detail": {
    "type": "string", "description": "field: problem (article N: field: problem in a list)"}}}}}}
RECORD = {"type": "object", "description": "the record `newstagger tag` writes (TaggingResult.to_record())",
          "properties": {"id": {"type": ["string", "null"]}, "topics": {"type": "array", "items": {"type": "string"}},
                         "topic_scores": {"type": "object", "additionalProperties": {"type": "number"}},
                         "paragraphs": {"type": "array", "items": {"type": "object", "properties": {
                             "index": {"type": "integer"}, "boilerplate": {"type": "boolean"},
                             "score": {"type": "number"}}}},
                         "evidence": {"type": "object", "additionalProperties": {"type": "array",
                                                                                  "items": {"type": "integer"}}},
                         "clean_text": {"type": "string"}}}
TAG_RESPONSES = {
    200: {"description": "one record for one article, a list of records (in order) for a list",
          "content": {"application/json": {"schema": {"oneOf": [RECORD, {"type": "array", "items": RECORD}]}}}},
    400: {"description": "the body is not valid JSON, or the client left mid-body", **ERROR},
    413: {"description": "a body over max_body_bytes, more than max_articles articles, or more than the queue "
                         "holds", **ERROR},
    415: {"description": "a Content-Type other than JSON", **ERROR},
    422: {"description": "an article the record rule refuses, or over the limits", **ERROR},
    503: {"description": "the queue is full, or the server is stopping: retry after Retry-After seconds", **ERROR},
    504: {"description": "not answered within timeout_s", **ERROR}}
RETRY_AFTER_S = 1  # what a 503 asks the client to wait


def create_app(predictor, options: ServeOptions):
    """The FastAPI application around a loaded Predictor."""
    from contextlib import asynccontextmanager

    batcher = Batcher(predictor, options.max_batch, options.batch_wait_ms / 1000, options.max_queue)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPIOffline(title="newstagger", lifespan=lifespan,
                         description="Topic tagging and boilerplate flagging of news articles.",
                         version=_versions(predictor.backend).get("newstagger", "0"))

    def error(status: int, message: str) -> JSONResponse:
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > options.max_body_bytes:
            raise HttpError(413, f"body: {declared} bytes, over the limit of {options.max_body_bytes} (max_body_bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > options.max_body_bytes:
                raise HttpError(413, f"body: over the limit of {options.max_body_bytes} bytes (max_body_bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.post("/tag", openapi_extra=TAG_BODY, responses=TAG_RESPONSES, summary="Tag one article or a list of articles")
    async def tag(request: Request):
        job = None
        try:
            check_content_type(request.headers.get("content-type"))
            raw = await read_body(request)
            try:
                body = json.loads(raw)
            except (UnicodeDecodeError, ValueError, RecursionError) as e:
                reason = ("too deeply nested" if isinstance(e, RecursionError)
                          else json_reason(e, with_line=True) if isinstance(e, json.JSONDecodeError)
                          else str(e).split(":")[0])  # e.g. an integer of more than 4300 digits
                if isinstance(e, UnicodeDecodeError):  # whatever charset the request declares (RFC 8259)
                    reason = f"not UTF-8: byte {raw[e.start:e.start + 1]!r} at {e.start}; JSON is sent as UTF-8"
                raise HttpError(400, f"body: not valid JSON ({reason})") from None
            articles, many = _articles_of(body, predictor, options.max_articles)
            job = asyncio.ensure_future(asyncio.wait_for(batcher.tag(articles), options.timeout_s))
            # A client that hangs up while its articles wait is not worth tagging for: its job is cancelled,
            # so the batcher drops it (work for gone clients once held live ones to their timeout).
            while not job.done():
                await asyncio.wait([job], timeout=DISCONNECT_POLL_S)
                if not job.done() and await request.is_disconnected():
                    job.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await job
                    return error(499, "request: the client disconnected before the answer")
            try:
                results = job.result()
            except asyncio.TimeoutError:
                raise HttpError(504, f"request: not answered within {options.timeout_s} s (timeout_s)") from None
            records = []
            for result in results:
                if isinstance(result, ArticleError):
                    raise HttpError(422, str(result))
                records.append(result.to_record())
            return JSONResponse(records if many else records[0])
        except HttpError as e:
            return error(e.status, str(e))
        except ClientDisconnect:  # the client hung up mid-body: no one to answer, nothing to log
            return error(400, "body: the client disconnected before sending it whole")
        except asyncio.CancelledError:  # the server stops (its grace period is over): say so, not a bare 500
            if job is not None:
                job.cancel()
            return error(503, "server: shutting down; retry later")
        except Exception as e:  # never let one request take the server down
            log.exception("POST /tag failed")
            return error(500, f"internal error ({type(e).__name__})")

    @app.get("/health", summary="Ready when the model is loaded")
    async def health():
        return {"status": "ok", "backend": predictor.backend}

    card = model_card_data(Path(options.model))

    @app.get("/metadata", summary="Labels, thresholds, limits, model card data, versions")
    async def model_metadata():
        return {"model": str(options.model), "backend": predictor.backend, "labels": predictor.labels,
                "topic_thresholds": dict(zip(predictor.labels, map(float, predictor.thresholds))),
                "boilerplate_threshold": predictor.boilerplate_threshold,
                "boilerplate_transition_penalty": predictor.boilerplate_transition_penalty,
                "limits": asdict(predictor.limits), "max_articles": options.max_articles,
                "max_body_bytes": options.max_body_bytes, "model_card": card, "versions": _versions(predictor.backend)}

    return app


def load(options: ServeOptions):
    """The Predictor, by the loader `newstagger tag` uses: a folder that cannot load (no ONNX export for
    --backend onnx, a damaged folder) is one InputError line and exit status 2, not a crash."""
    from .batch import load_predictor

    return load_predictor(options.model, backend=options.backend, batch_size=options.batch_size,
                          num_threads=options.num_threads, device=options.device, limits=options.limits)


def app_from_environment():
    """The app factory each uvicorn worker process calls when serving with several workers."""
    values = json.loads(os.environ[OPTIONS_ENV])
    values["limits"] = Limits(**values["limits"])
    options = ServeOptions(**values)
    return create_app(load(options), options)


def bind(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port), not yet listening, as uvicorn binds it (SO_REUSEADDR, so a port
    left in TIME_WAIT by a stopped server can be reused). Raises InputError (``--port P: address already
    in use (on HOST)``) when it cannot be bound, so a busy port is one line and exit status 2 before the
    model is loaded."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise InputError(_bind_problem(host, port, e)) from None
    return sock


def _bind_problem(host: str, port: int, e: OSError) -> str:
    if e.errno == errno.EADDRINUSE:
        return f"--port {port}: address already in use (on {host})"
    if e.errno == errno.EACCES:
        return f"--port {port}: permission denied (on {host}; ports below 1024 need privileges)"
    if e.errno == errno.EADDRNOTAVAIL or isinstance(e, socket.gaierror):
        return f"--host {host}: not an address of this machine ({e.strerror or e})"
    return f"--port {port}: cannot listen on {host} ({e.strerror or e})"


def _stopped(signum, frame) -> None:
    """SIGTERM or SIGINT after uvicorn's own handler has shut the server down: nothing left to do."""


def serve(options) -> int:
    """Run the service until interrupted (the CLI's `newstagger serve`). ``options``: a ServeOptions or
    any object with its attribute names. The port is bound first (a busy port: InputError, before any
    model is loaded), then the model is loaded, then the port listens: until then connections are refused,
    so a client polling /health sees the service only once it can answer."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    options = ServeOptions.from_object(options)
    started = time.perf_counter()
    # uvicorn is handed our socket, so it never binds (and never fails to) itself: a bind failure is ours.
    sock = bind(options.host, options.port)
    config = dict(host=options.host, port=options.port, log_level="warning",
                  timeout_graceful_shutdown=options.grace_s, limit_concurrency=options.limit_concurrency)
    try:
        if options.workers > 1:  # each worker process loads its own Predictor (app_from_environment)
            # A model that cannot load is one line and exit 2 here, not workers crashing and restarting forever
            # (uvicorn's supervisor restarts a worker that dies): load it once and let it go.
            load(options)  # (the Predictor is dropped at once)
            os.environ[OPTIONS_ENV] = json.dumps(asdict(options))
            sock.set_inheritable(True)  # as uvicorn's own bind_socket does for its workers
            config = uvicorn.Config("newstagger.serve:app_from_environment", factory=True,
                                    workers=options.workers, **config)
            log.warning("newstagger serve: %d workers loading model %s (%s); GET /health answers once one is "
                        "ready on http://%s:%d", options.workers, options.model, options.backend, options.host,
                        options.port)
            Multiprocess(config, sockets=[sock]).run()
            return 0
        app = create_app(load(options), options)
        try:
            sock.listen(2048)  # uvicorn's backlog
        except OSError as e:
            raise InputError(_bind_problem(options.host, options.port, e)) from None
        log.warning("newstagger serve: model %s (%s) loaded in %.1f s; listening on http://%s:%d",
                    options.model, options.backend, time.perf_counter() - started, options.host, options.port)
        # uvicorn re-raises the signal it stopped on once it has shut down, so SIGTERM ended the process with
        # status 143 and Ctrl-C with 0 or 130 (whether a request was running): a server stopped by either has
        # done its work, status 0.
        main_thread = threading.current_thread() is threading.main_thread()  # (only it may set handlers)
        previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)} if main_thread else {}
        try:
            uvicorn.Server(uvicorn.Config(app, **config)).run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0
    finally:
        sock.close()


def main(argv=None) -> int:
    """``python -m newstagger.serve --model DIR ...``: the same as ``newstagger serve`` (the CLI parses)."""
    import sys

    from .cli import main as cli_main

    return cli_main(["serve", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    import sys

    sys.exit(main())
