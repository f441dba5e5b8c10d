"""The HTTP service (newstagger.serve), started for real on a free loopback port."""

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from newstagger.predictor import Predictor

ARTICLE = {"id": "a1", "title": "Talks resume", "paragraphs": ["Ministers met in Oslo on Monday.",
                                                              "They agreed to meet again.", "Subscribe to our newsletter."]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(base, path, body=None, raw: bytes | None = None, timeout=120):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def post(base, path, raw: bytes, content_type: str | None):
    """POST with exactly this Content-Type (urllib would add a form type when there is none)."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    headers = {"Content-Length": str(len(raw))} | ({"Content-Type": content_type} if content_type else {})
    try:
        connection.request("POST", path, body=raw, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def wait_until_healthy(base, process, timeout=300) -> bool:
    """Poll GET /health until the server answers 200; False when it exited or the time ran out."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            if call(base, "/health", timeout=5)[0] == 200:
                return True
        except OSError:
            time.sleep(0.5)
    return False


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "newstagger.serve", "--model", str(tiny_model_dir), "--backend", "torch",
         "--port", str(port), "--max-articles", "20", "--max-body-bytes", "200000", "--num-threads", "1"],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    if not wait_until_healthy(base, process):
        process.kill()
        pytest.fail(f"server did not start: {process.stdout.read()[-3000:]}")
    yield base
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def local(tiny_model_dir):
    return Predictor.from_pretrained(tiny_model_dir)


def test_one_article_and_a_list_give_the_predictors_records(server, local):
    status, record = call(server, "/tag", ARTICLE)
    assert status == 200 and record == json.loads(json.dumps(local.predict(ARTICLE).to_record()))
    texts = ["First story.\n\nSecond paragraph.", {"text": "Another story."}, ["A list", "of paragraphs"]]
    status, records = call(server, "/tag", texts)
    assert status == 200 and len(records) == 3
    assert records[1] == json.loads(json.dumps(local.predict({"text": "Another story."}).to_record()))
    assert records[2]["paragraphs"][1]["index"] == 1


@pytest.mark.parametrize("raw, status, message", [
    (b"{not json", 400, "body: not valid JSON"),
    (b'{"id": "a",\n "text": "oops', 400, "body: not valid JSON (Unterminated string starting at line 2 column 10)"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "body: not valid JSON"),
    (b"", 400, "body: not valid JSON"),
    (b"\xff\xfe", 400, "body: not valid JSON"),
    ('{"text": "caf\u00e9"}'.encode("latin-1"), 400,
     "body: not valid JSON (not UTF-8: byte b'\\xe9' at 13; JSON is sent as UTF-8)"),
    (b"42", 422, "body: expected an article"),
    (b"null", 422, "body: expected an article"),
    (b"[]", 422, "body: an empty list"),
    (b'""', 422, "text: the article has no non-empty paragraph"),
    (b'{"paragraphs": ["", " "]}', 422, "paragraphs: the article has no non-empty paragraph"),
    (b'{"text": 5}', 422, "text: expected a text or a list"),
    (b'{"id": "x"}', 422, "text: missing"),
    (b'{"paragraphs": ["ok", 3]}', 422, "paragraphs: expected a list of strings"),
    (b'[{"text": "fine"}, {"title": 7, "text": "x"}]', 422, "article 1: title: expected a string"),
    (json.dumps({"text": "x" * 60_000}).encode(), 422, "over the limit of 50000"),
    (json.dumps([{"text": "a"}] * 21).encode(), 413, "21 articles, over the limit of 20"),
    (json.dumps({"text": "x " * 150_000}).encode(), 413, "over the limit of 200000"),
])
def test_bad_input_gets_a_clear_4xx(server, raw, status, message):
    got, body = call(server, "/tag", raw=raw)
    assert got == status and message in body["detail"]


@pytest.mark.parametrize("content_type, status", [
    ("application/json", 200), ("application/json; charset=utf-8", 200), ("application/vnd.api+json", 200),
    (None, 200),  # no Content-Type at all: taken as JSON
    ("application/x-www-form-urlencoded", 415),  # what `curl -d` sends without -H
    ("text/plain", 415), ("multipart/form-data; boundary=x", 415),
])
def test_content_type_must_be_json_or_absent(server, content_type, status):
    got, body = post(server, "/tag", json.dumps(ARTICLE).encode(), content_type)
    assert got == status, body
    if status == 415:  # the same shape as every other 4xx, naming what to send
        assert set(body) == {"detail"} and "Content-Type: expected application/json" in body["detail"]
        assert content_type.split(";")[0] in body["detail"]
    else:
        assert body["id"] == ARTICLE["id"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_port_in_use_is_one_clear_line_and_status_2(tiny_model_dir, workers):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "newstagger.serve", "--model", str(tiny_model_dir), "--backend", "torch",
             "--port", str(port), "--workers", str(workers)],
            env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines == [f"newstagger serve: error: --port {port}: address already in use (on 127.0.0.1)"], done.stderr


def test_concurrent_requests_get_the_sequential_results(server, root):
    from newstagger.data import load_articles

    articles = [a.to_record() for a in load_articles(root / "data" / "test.jsonl").articles[:24]]
    sequential = [call(server, "/tag", a)[1] for a in articles]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(lambda a: call(server, "/tag", a)[1], articles * 2))
    for got, want in zip(concurrent, sequential * 2):  # batched with other requests: the same answer
        assert got["id"] == want["id"] and got["topics"] == want["topics"] and got["evidence"] == want["evidence"]
        assert [p["boilerplate"] for p in got["paragraphs"]] == [p["boilerplate"] for p in want["paragraphs"]]
        assert max(abs(got["topic_scores"][k] - want["topic_scores"][k]) for k in want["topic_scores"]) < 1e-4
        assert max(abs(p["score"] - q["score"]) for p, q in zip(got["paragraphs"], want["paragraphs"])) < 1e-4


def test_health_metadata_and_docs(server):
    assert call(server, "/health") == (200, {"status": "ok", "backend": "torch"})
    status, meta = call(server, "/metadata")
    assert status == 200 and meta["labels"] == ["diplomacy", "sanctions", "press_freedom"]
    assert set(meta["topic_thresholds"]) == set(meta["labels"]) and "torch" in meta["versions"]
    assert meta["boilerplate_transition_penalty"] >= 0 and 0 <= meta["boilerplate_threshold"] <= 1
    status, spec = call(server, "/openapi.json")
    assert status == 200 and "/tag" in spec["paths"] and "requestBody" in spec["paths"]["/tag"]["post"]
    responses = spec["paths"]["/tag"]["post"]["responses"]  # every status a client must handle is documented
    assert {"200", "400", "413", "415", "422", "503", "504"} <= set(responses), responses
    assert "detail" in responses["422"]["content"]["application/json"]["schema"]["properties"]
    for page in ("/docs", "/redoc"):  # the pages and every script and stylesheet they load come from the service
        with urllib.request.urlopen(server + page, timeout=30) as response:
            html = response.read().decode()
        assert response.status == 200 and "/openapi.json" in html
        assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
        assert assets and all(a.startswith("/") for a in assets), assets  # no CDN
        for asset in assets:
            with urllib.request.urlopen(server + asset, timeout=30) as response:
                assert response.status == 200 and len(response.read()) > 10_000


def test_a_model_without_its_onnx_export_is_a_usage_error_not_a_crash(tiny_model_dir, tmp_path, capsys):
    import shutil

    from newstagger.cli import main

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("onnx"))
    status = main(["serve", "--model", str(folder), "--backend", "onnx", "--port", str(free_port())])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "error:" in err and "newstagger export --onnx" in err and "crash" not in err


def test_a_client_that_hangs_up_mid_body_logs_no_traceback(tiny_model_dir, tmp_path):
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "newstagger.serve", "--model", str(tiny_model_dir), "--backend", "torch",
             "--port", str(port), "--num-threads", "1"],
            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_healthy(base, process), log.read_text()[-3000:]
        for _ in range(3):  # half a body, then the client is gone
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"POST /tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: 100\r\n\r\n{\"paragraphs\": [")
                time.sleep(0.2)
        time.sleep(1)
        assert call(base, "/tag", ARTICLE)[0] == 200  # still serving
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "Traceback" not in log.read_text()


def test_bad_timing_options_are_refused(tiny_model_dir):
    """Found by a user trial: --timeout-s -1 (or nan) was taken and every request got 504."""
    for option, value, message in (("--timeout-s", "-1", "must be a finite number over 0, not -1"),
                                   ("--timeout-s", "nan", "must be a finite number over 0, not nan"),
                                   ("--batch-wait-ms", "-5", "must be a finite number of at least 0, not -5"),
                                   ("--batch-wait-ms", "inf", "must be a finite number of at least 0, not inf")):
        done = subprocess.run([sys.executable, "-m", "newstagger.serve", "--model", str(tiny_model_dir), option, value,
                               "--port", str(free_port())], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 2 and message in done.stderr, (option, value, done.stderr)


def test_several_workers_with_a_model_that_cannot_load_exit_at_once(tmp_path):
    """Found by a user trial: with --workers 2 each worker failed to load, uvicorn restarted it, forever."""
    done = subprocess.run([sys.executable, "-m", "newstagger.serve", "--model", str(tmp_path / "nomodel"),
                           "--workers", "2", "--port", str(free_port())], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1 and "nomodel" in lines[0], done.stderr[-2000:]


def test_the_batcher_drops_a_cancelled_request_and_refuses_one_larger_than_its_queue(tiny_model_dir):
    """A request that times out or whose client hangs up is cancelled; its articles are not tagged (work for
    gone clients once held live ones to their timeout). A request larger than the whole queue is 413 (it
    could never be taken), not 503 ("retry later")."""
    import asyncio

    from newstagger.serve import Batcher, HttpError

    class Recording(Predictor):
        calls = []

        def predict_batch_safe(self, articles, ids=None):
            self.calls.append([a.id for a in articles])
            return super().predict_batch_safe(articles, ids)

    predictor = Recording.from_pretrained(tiny_model_dir, backend="torch")
    gone, kept = (predictor.article({"id": i, "paragraphs": ["Ministers met in Oslo."]}) for i in ("gone", "kept"))

    async def scenario():
        batcher = Batcher(predictor, max_batch=64, wait_s=0.5, max_queue=5)
        batcher.start()
        try:
            with pytest.raises(HttpError) as refused:
                await batcher.tag([kept] * 6)
            assert refused.value.status == 413 and "more than the queue holds (max_queue 5)" in str(refused.value)
            first = asyncio.ensure_future(batcher.tag([gone]))
            await asyncio.sleep(0.1)  # queued; the batcher waits up to 0.5 s for more
            first.cancel()
            results = await batcher.tag([kept])
            return results
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert [r.id for r in results] == ["kept"] and Recording.calls == [["kept"]]


def test_a_request_whose_client_hangs_up_while_queued_is_not_tagged(tiny_model_dir):
    """Found by a user trial: 30 requests whose clients had gone were still tagged and held the next live
    request for 55 s. The real app on a real uvicorn server (in a thread); a long batch window keeps the
    requests queued while their clients hang up."""
    import threading

    import uvicorn

    from newstagger.serve import ServeOptions, create_app

    calls = []

    class Recording(Predictor):
        def predict_batch_safe(self, articles, ids=None):
            calls.append([a.id for a in articles])
            return super().predict_batch_safe(articles, ids)

    port = free_port()
    options = ServeOptions(model=str(tiny_model_dir), backend="torch", port=port, batch_wait_ms=1500)
    server = uvicorn.Server(uvicorn.Config(create_app(Recording.from_pretrained(tiny_model_dir), options),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while not server.started and time.time() < deadline:
            time.sleep(0.1)
        for name in ("gone1", "gone2"):
            body = json.dumps({"id": name, "paragraphs": ["Ministers met in Oslo."]}).encode()
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(b"POST /tag HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)
                time.sleep(0.4)  # the whole request is in; the client leaves before the answer
        status, record = call(base, "/tag", {"id": "kept", "paragraphs": ["Ministers met in Oslo."]})
        assert status == 200 and record["id"] == "kept"
        assert calls == [["kept"]], calls
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT"])
def test_stopping_answers_a_waiting_request_with_503_and_exits_0(tiny_model_dir, stop):
    """Found by a user trial: SIGINT answered a waiting request with a bare 500 (and a traceback), SIGTERM
    dropped it unanswered and exited 143. Now both answer it with a JSON 503 once the 5 s grace period is
    over (--grace-s, 1 s here), and a stopped server exits 0, as `serve --help` says."""
    import signal
    import threading

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "newstagger.serve", "--model", str(tiny_model_dir), "--backend", "torch",
         "--port", str(port), "--num-threads", "1", "--batch-wait-ms", "60000", "--grace-s", "1"],  # it stays queued
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_healthy(base, process)
        answer = {}

        def wait_for_answer():
            request = urllib.request.Request(base + "/tag", data=json.dumps(ARTICLE).encode(),
                                             headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=60)
            except urllib.error.HTTPError as e:
                answer.update(r=(e.code, json.loads(e.read())), retry_after=e.headers.get("Retry-After"))

        waiting = threading.Thread(target=wait_for_answer)
        waiting.start()
        time.sleep(1)
        process.send_signal(getattr(signal, stop))
        stopping = time.time()
        status = process.wait(timeout=60)
        assert time.time() - stopping < 4  # the grace period given, not the default 5 s
        waiting.join(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    log = process.stdout.read()
    assert answer["r"] == (503, {"detail": "server: shutting down; retry later"}), log
    assert answer["retry_after"] == "1"
    assert status == 0 and "Traceback" not in log, log


def test_serve_takes_no_max_line_bytes_its_body_limit_is_the_record_bound(tiny_model_dir):
    """Found by a user trial: --max-line-bytes 1000 was accepted and shown by /metadata, but no part of the
    service reads records by lines, so a 4.6 KB article was tagged all the same."""
    done = subprocess.run([sys.executable, "-m", "newstagger.serve", "--model", str(tiny_model_dir),
                           "--max-line-bytes", "1000", "--port", str(free_port())], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 2 and "unrecognized arguments: --max-line-bytes" in done.stderr, done.stderr


def test_metadata_shows_the_body_limit_as_the_record_bound(server):
    status, meta = call(server, "/metadata")
    assert status == 200 and meta["limits"]["max_line_bytes"] == meta["max_body_bytes"] == 200000
