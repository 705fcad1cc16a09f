#!/usr/bin/env python3
"""Cold start and binary size of Lambda function binaries, against a local Runtime API.

A stand-in for the Lambda service: an HTTP server on a free loopback port (a new one for
each run) implements the Runtime API that a custom runtime (lambda_runtime, lambda_http)
talks to:

    GET  /2018-06-01/runtime/invocation/next             hands out the run's one event
    POST /2018-06-01/runtime/invocation/{id}/response    the answer: the run is timed
    POST /2018-06-01/runtime/invocation/{id}/error       the handler failed: a failed run
    POST /2018-06-01/runtime/init/error                  the start failed: a failed run

Each run execs the binary with AWS_LAMBDA_RUNTIME_API pointing at that server and the
function's environment, and times from just before the exec to the arrival of the response
POST ("cold" = a new process, as a new Lambda execution environment). The process is then
killed and the next run starts. A function in "init" mode is timed to its first GET /next
(ready to take an invocation) and never gets an event. Besides the result, every run also
records the time to that first GET /next ("ready").

Standard library only (Python 3.11). See README.md beside this file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

API = "/2018-06-01/runtime"
LOCAL_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/sentinel"


def apigw_v2_get(path: str, query: str = "") -> dict:
    """An API Gateway HTTP API (payload format 2.0) GET request, as API Gateway sends it."""
    now_ms = int(time.time() * 1000)
    host = "coldstart.execute-api.us-east-1.amazonaws.com"
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": {
            "accept": "application/json",
            "host": host,
            "user-agent": "coldstart",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "coldstart",
            "domainName": host,
            "domainPrefix": "coldstart",
            "http": {
                "method": "GET",
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": "coldstart",
            },
            "requestId": "coldstart-request",
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime()),
            "timeEpoch": now_ms,
        },
        "isBase64Encoded": False,
    }


@dataclass
class Spec:
    """How to start and invoke one function."""

    payload: object = field(default_factory=dict)
    mode: str = "invoke"  # "invoke": timed to the response; "init": to the first GET /next
    env: dict = field(default_factory=dict)
    memory_mb: int = 128
    # A check of the response body, so that a run that took another code path (an AWS
    # call, a database query) is not counted: (description, predicate).
    expect: tuple | None = None
    note: str = ""


def http_status(status: int):
    return (f"statusCode {status}", lambda body: isinstance(body, dict) and body.get("statusCode") == status)


DATABASE_ENV = {"DATABASE_URL": LOCAL_DATABASE_URL}

# The known functions. Memory sizes are template.yaml's (only reported to the function in
# AWS_LAMBDA_FUNCTION_MEMORY_SIZE; nothing is limited). Payloads take paths that answer
# without any AWS or database call, so that the time is the function's own start.
KNOWN: dict[str, Spec] = {
    "hello": Spec(
        payload=apigw_v2_get("/"),
        expect=http_status(200),
        note="lambda_http hello world (bench/coldstart/hello)",
    ),
    "ingest": Spec(
        payload=apigw_v2_get("/events"),
        env={"STREAM_NAME": "sentinel-events"},
        memory_mb=256,
        expect=http_status(405),
        note="GET /events: 405 before any Kinesis call",
    ),
    "writer": Spec(
        payload={"Records": []},
        env=dict(DATABASE_ENV),
        memory_mb=512,
        expect=("no batchItemFailures", lambda body: isinstance(body, dict) and body.get("batchItemFailures") == []),
        note="empty Kinesis batch: no database call",
    ),
    "query": Spec(
        # (Any well-formed event id is looked up: an unknown parameter is refused first.)
        payload=apigw_v2_get("/events", "unknown=1"),
        env=dict(DATABASE_ENV),
        memory_mb=512,
        expect=http_status(400),
        note="GET /events?unknown=1: 400 before any query",
    ),
    "archiver": Spec(
        payload={},
        mode="init",
        env={**DATABASE_ENV, "ARCHIVE_BUCKET": "sentinel-archive", "S3_FORCE_PATH_STYLE": "true"},
        memory_mb=1024,
        note="any event starts a real run (database, S3): timed to ready",
    ),
}
DEFAULT_ORDER = ["hello", "ingest", "writer", "query", "archiver"]

COMMON_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:4566",
    # What Lambda sets for a function with LoggingConfig LogFormat JSON (template.yaml).
    "AWS_LAMBDA_LOG_FORMAT": "JSON",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]coldstart",
    "TZ": ":UTC",
    "LANG": "C.UTF-8",
    "PATH": "/usr/local/bin:/usr/bin:/bin",
}


# --- the Runtime API -------------------------------------------------------------------


class Run:
    """One process start: its event, and when what happened (perf_counter_ns)."""

    def __init__(self, name: str, spec: Spec, payload: bytes):
        self.name = name
        self.spec = spec
        self.request_id = str(uuid.uuid4())
        self.payload = payload
        self.t0: int | None = None
        self.t_next: int | None = None
        self.t_answer: int | None = None
        self.answer: bytes | None = None
        self.error: str | None = None
        self.delivered = False
        self.done = threading.Event()  # answered, failed, or the process ended
        self.killed = threading.Event()  # the process is gone: held connections may close
        self.lock = threading.Lock()

    def fail(self, why: str) -> None:
        with self.lock:
            if self.error is None and self.t_answer is None:
                self.error = why
        self.done.set()


class RuntimeApi(ThreadingHTTPServer):
    """The Runtime API of one run, on a port of its own.

    A new server (and port) per run: a request that a killed process had sent may still be
    waiting to be read after the next run has started (its second GET /next, typically),
    and would otherwise be taken for the new process's.
    """

    daemon_threads = True

    def __init__(self, run: Run, timeout_s: float):
        super().__init__(("127.0.0.1", 0), Handler)
        self.run = run
        self.timeout_s = timeout_s

    def handle_error(self, request, client_address) -> None:
        # A killed process's keep-alive connections are reset: expected, not worth a trace.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    @property
    def address(self) -> str:
        host, port = self.server_address[:2]
        return f"{host}:{port}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RuntimeApi

    def setup(self) -> None:
        super().setup()
        # One write per answer and no Nagle: no delayed-ACK stalls in the timings.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (the base class's name)
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        reason = self.responses.get(status, ("",))[0]
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.wfile.flush()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _hold(self, run: Run) -> None:
        """A long poll that gets no event: held until the process is gone, then closed."""
        run.killed.wait(self.server.timeout_s + 5)
        self.close_connection = True

    def do_GET(self) -> None:
        now = time.perf_counter_ns()
        run = self.server.run
        if self.path != f"{API}/invocation/next":
            self._send(404, b'{"errorMessage":"unknown path"}')
            return
        with run.lock:
            first = not run.delivered
            run.delivered = True
            if first:
                run.t_next = now
        if not first:
            self._hold(run)
            return
        if run.spec.mode == "init":
            run.done.set()
            self._hold(run)
            return
        deadline_ms = int(time.time() * 1000 + self.server.timeout_s * 1000)
        self._send(
            200,
            run.payload,
            {
                "Content-Type": "application/json",
                "Lambda-Runtime-Aws-Request-Id": run.request_id,
                "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                "Lambda-Runtime-Invoked-Function-Arn": f"arn:aws:lambda:us-east-1:123456789012:function:sentinel-{run.name.partition('@')[0]}",
                "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
            },
        )

    def do_POST(self) -> None:
        now = time.perf_counter_ns()  # the request line and headers are in
        run = self.server.run
        body = self._body()
        parts = self.path.split("/")
        # /2018-06-01/runtime/invocation/{id}/{response|error} and /2018-06-01/runtime/init/error
        if self.path == f"{API}/init/error":
            run.fail("init error: " + body.decode("utf-8", "replace"))
        elif len(parts) == 6 and self.path.startswith(f"{API}/invocation/") and parts[5] in ("response", "error"):
            if parts[4] == run.request_id:
                if parts[5] == "response":
                    with run.lock:
                        if run.t_answer is None and run.error is None:
                            run.t_answer, run.answer = now, body
                    run.done.set()
                else:
                    run.fail("invocation error: " + body.decode("utf-8", "replace"))
        else:
            self._send(404, b'{"errorMessage":"unknown path"}')
            return
        self._send(202, b'{"status":"OK"}', {"Content-Type": "application/json"})


# --- running ---------------------------------------------------------------------------


@dataclass
class Function:
    name: str
    binary: Path
    spec: Spec
    answered_ms: list = field(default_factory=list)  # the timed result per good run
    ready_ms: list = field(default_factory=list)  # exec to the first GET /next
    failures: list = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.binary.stat().st_size


def start_once(fn: Function, timeout_s: float, env_extra: dict, home: str, log_dir: Path, tag: str):
    """One cold start. Returns (timed ms, ready ms) or raises RuntimeError with the reason."""
    spec = fn.spec
    run = Run(fn.name, spec, json.dumps(spec.payload).encode())
    api = RuntimeApi(run, timeout_s)
    server = threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    server.start()
    env = dict(COMMON_ENV)
    env.update(
        {
            "HOME": home,
            "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": f"sentinel-{fn.name.partition('@')[0]}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/sentinel-{fn.name.partition('@')[0]}",
        }
    )
    env.update(spec.env)
    env.update(env_extra)
    log_path = log_dir / f"{fn.name}-{tag}.log"
    with open(log_path, "wb") as log:
        run.t0 = time.perf_counter_ns()
        proc = subprocess.Popen(
            [str(fn.binary)], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )

        def reap():
            code = proc.wait()
            run.fail(f"the process exited with status {code} before answering")

        threading.Thread(target=reap, daemon=True).start()
        finished = run.done.wait(api.timeout_s)
        stuck = "" if finished else process_state(proc.pid)
        proc.kill()
        proc.wait()
        run.killed.set()
    api.shutdown()
    api.server_close()

    def why(reason: str) -> RuntimeError:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        return RuntimeError(reason + ("\n    " + "\n    ".join(tail) if tail else ""))

    if not finished:
        seen = "no GET /next" if run.t_next is None else f"GET /next at {(run.t_next - run.t0) / 1e6:.1f} ms"
        wanted = "GET /next" if spec.mode == "init" else "answer"
        raise why(f"no {wanted} within {api.timeout_s:g} s ({seen}; the process: {stuck})")
    ready = (run.t_next - run.t0) / 1e6 if run.t_next else None
    if spec.mode == "init":
        if run.t_next is None:
            raise why(run.error or "never asked for an invocation")
        return ready, ready
    if run.t_answer is None:
        raise why(run.error or "no answer")
    if spec.expect is not None:
        description, check = spec.expect
        try:
            answer = json.loads(run.answer or b"null")
        except ValueError:
            answer = None
        if not check(answer):
            raise why(f"unexpected answer (wanted {description}): {(run.answer or b'')[:300]!r}")
    log_path.unlink(missing_ok=True)
    return (run.t_answer - run.t0) / 1e6, ready


def process_state(pid: int) -> str:
    """What a process that did not answer is doing, for the failure message."""
    try:
        state = next(
            line.split(":", 1)[1].strip()
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("State:")
        )
        threads = len(os.listdir(f"/proc/{pid}/task"))
        return f"{state}, {threads} threads, waiting in {Path(f'/proc/{pid}/wchan').read_text() or '-'}"
    except (OSError, StopIteration):
        return "gone"


def p90(values: list) -> float:
    """Nearest-rank 90th percentile (the 14th of 15)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def summary(values: list) -> dict:
    if not values:
        return {"median": None, "p90": None, "min": None, "max": None}
    return {"median": statistics.median(values), "p90": p90(values), "min": min(values), "max": max(values)}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def fmt(value, digits=1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(functions: list, baseline: Function | None) -> str:
    head = "| function | size MiB | cold start median ms | p90 ms | ready median ms | size ×hello | cold start ×hello | ok/runs |"
    rows = [head, "|" + "---|" * 8]
    base_size = baseline.size if baseline else None
    base = summary(baseline.answered_ms)["median"] if baseline else None
    base_ready = summary(baseline.ready_ms)["median"] if baseline else None
    for fn in functions:
        s = summary(fn.answered_ms)
        ready = summary(fn.ready_ms)["median"]
        # An "init" function is timed to ready: compare it with the baseline's ready.
        ref = base_ready if fn.spec.mode == "init" else base
        ratio = s["median"] / ref if (ref and s["median"] is not None) else None
        mark = " ¹" if fn.spec.mode == "init" else ""
        runs = len(fn.answered_ms) + len(fn.failures)
        rows.append(
            f"| {fn.name}{mark} | {fn.size / 2**20:.2f} | {fmt(s['median'])} | {fmt(s['p90'])} | {fmt(ready)} "
            f"| {fmt(fn.size / base_size if base_size else None, 2)} | {fmt(ratio, 2)} | {len(fn.answered_ms)}/{runs} |"
        )
    if any(fn.spec.mode == "init" for fn in functions):
        rows.append("")
        rows.append(
            "¹ timed to ready (exec to its first GET /invocation/next, no event handed out); its ratio is to hello's ready."
        )
    return "\n".join(rows)


def parse_pairs(values: list, what: str, sep: str = "=") -> list:
    pairs = []
    for value in values or []:
        if sep not in value:
            raise SystemExit(f"{what} {value!r}: expected NAME{sep}VALUE")
        pairs.append(tuple(value.split(sep, 1)))
    return pairs


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Time Lambda function binaries' cold starts against a local Runtime API.",
        epilog="Known functions: "
        + ", ".join(f"{name} ({spec.note})" for name, spec in KNOWN.items())
        + ". Example: coldstart.py --bin-dir target/release --runs 15",
    )
    parser.add_argument(
        "functions",
        nargs="*",
        metavar="NAME[@LABEL][=BINARY]",
        help="functions to time (default: every known one); BINARY defaults to BIN_DIR/NAME. "
        "A label times another build of a known function in the same session, e.g. "
        "ingest@before=/old/ingest ingest@after=/new/ingest",
    )
    parser.add_argument("--bin-dir", type=Path, default=Path("."), help="where the binaries are (default: .)")
    parser.add_argument("--runs", type=int, default=15, help="timed runs per function (default: 15)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first, per function (default: 1)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a run may take (default: 10)")
    parser.add_argument(
        "--order",
        choices=["interleaved", "grouped"],
        default="interleaved",
        help="interleaved: run i of every function, then run i+1 (spreads machine noise evenly); "
        "grouped: all runs of one function, then the next",
    )
    parser.add_argument("--env", action="append", metavar="KEY=VALUE", help="set for every function (repeatable)")
    parser.add_argument(
        "--payload", action="append", metavar="NAME=FILE", help="the event JSON for NAME from FILE (repeatable)"
    )
    parser.add_argument(
        "--mode",
        action="append",
        metavar="NAME=invoke|init",
        help="invoke: time to the response; init: time to the first GET /next (repeatable)",
    )
    parser.add_argument("--baseline", default="hello", help="function the ratios are to (default: hello)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every run's numbers to FILE")
    parser.add_argument("--label", default="", help="a label for the JSON (e.g. the commit)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    functions: list[Function] = []
    for item in args.functions or DEFAULT_ORDER:
        name, _, binary = item.partition("=")
        kind = name.partition("@")[0]  # "ingest@after": timed as ingest, shown as given
        spec = KNOWN.get(kind)
        spec = Spec(**vars(spec)) if spec else Spec(note="custom")
        spec.env = dict(spec.env)
        if binary:
            path = Path(binary)
        elif "@" in name:
            parser.error(f"{name}: a labelled function needs its binary (NAME@LABEL=BINARY)")
        else:
            path = args.bin_dir / name
        functions.append(Function(name, path, spec))
    by_name = {fn.name: fn for fn in functions}
    if len(by_name) < len(functions):
        parser.error("a function is named twice (label the copies: NAME@LABEL=BINARY)")
    for name, file in parse_pairs(args.payload, "--payload"):
        if name not in by_name:
            parser.error(f"--payload {name}: not one of the functions timed")
        by_name[name].spec.payload = json.loads(Path(file).read_text())
        by_name[name].spec.expect = None
    for name, mode in parse_pairs(args.mode, "--mode"):
        if name not in by_name or mode not in ("invoke", "init"):
            parser.error(f"--mode {name}={mode}: unknown function or mode")
        by_name[name].spec.mode = mode
    env_extra = dict(parse_pairs(args.env, "--env"))
    missing = [str(fn.binary) for fn in functions if not os.access(fn.binary, os.X_OK)]
    if missing:
        print("not found or not executable: " + ", ".join(missing), file=sys.stderr)
        return 2

    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        home = os.path.join(tmp, "home")  # an empty HOME: no ~/.aws of the machine's
        os.mkdir(home)
        logs = Path(tmp)

        def one(fn: Function, tag: str, timed: bool) -> None:
            try:
                answered, ready = start_once(fn, args.timeout, env_extra, home, logs, tag)
            except RuntimeError as e:
                if timed:  # a failed warm-up is only shown: its timed runs will tell
                    fn.failures.append(str(e))
                print(f"  {fn.name} run {tag}: FAILED: {e}", file=sys.stderr)
                return
            if timed:
                fn.answered_ms.append(answered)
                fn.ready_ms.append(ready)

        for i in range(args.warmup):
            for fn in functions:
                one(fn, f"warmup{i + 1}", False)
        if args.order == "interleaved":
            for i in range(args.runs):
                print(f"run {i + 1}/{args.runs}", file=sys.stderr)
                for fn in functions:
                    one(fn, str(i + 1), True)
        else:
            for fn in functions:
                print(f"{fn.name}: {args.runs} runs", file=sys.stderr)
                for i in range(args.runs):
                    one(fn, str(i + 1), True)
    load_after = os.getloadavg()

    baseline = by_name.get(args.baseline)
    print(table(functions, baseline))
    print(
        f"\n{args.runs} runs each after {args.warmup} warm-up, {args.order}; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; {machine()['cpus']} CPUs {machine()['machine']}"
    )

    if args.json:
        report = {
            "label": args.label,
            "started": started,
            "runs": args.runs,
            "warmup": args.warmup,
            "order": args.order,
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "host": machine(),
            "functions": [
                {
                    "name": fn.name,
                    "binary": str(fn.binary),
                    "sha256": sha256(fn.binary),
                    "size_bytes": fn.size,
                    "size_mib": fn.size / 2**20,
                    "mode": fn.spec.mode,
                    "memory_mb": fn.spec.memory_mb,
                    "cold_start_ms": summary(fn.answered_ms),
                    "ready_ms": summary(fn.ready_ms),
                    "runs_ms": fn.answered_ms,
                    "ready_runs_ms": fn.ready_ms,
                    "failures": fn.failures,
                }
                for fn in functions
            ],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(fn.failures for fn in functions) else 0


if __name__ == "__main__":
    sys.exit(main())
