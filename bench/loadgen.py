"""One load generator for every HTTP server the bench measures: OIP V2 REST infer requests.

The same bytes go to maas's gateway and to MLServer: one row per request, digits as JSON
or with the binary data extension (``Inference-Header-Content-Length``; the answer's
tensors stay JSON), MiniLM as a JSON BYTES tensor. Requests go over keep-alive HTTP/1.1
connections on raw asyncio streams, so the client, which shares the cores with the
servers, costs as little as it can and the same for both.

- closed loop (``concurrency``): that many connections, each sending its next request
  as soon as the last is answered; the rate they reach is the server's throughput.
- open loop (``rate``): requests start at fixed times whatever the answers do, each on
  an idle connection (a new one when none is idle); latency counts from the time the
  request was due, so a server that falls behind is charged for it.

Run as a process of its own, it prints one JSON object (:class:`Outcome`)::

    python -m bench.loadgen --url http://127.0.0.1:8080 --model digits --encoding binary \
        --concurrency 16 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

ENCODINGS = ("json", "binary")


@dataclass(frozen=True)
class Target:
    """Where the requests go: ``url`` (http://host:port), the model's name there and the
    output to ask for (``label`` from maas and the ONNX runtime; ``predict`` from
    MLServer's scikit-learn runtime)."""

    url: str
    model: str
    output: str


@dataclass
class Outcome:
    """What one run saw. ``rows_per_s``: answered rows over the measured seconds;
    latencies over answered requests; ``errors``: HTTP status (or exception) -> count."""

    mode: str
    sent: int = 0
    answered: int = 0
    seconds: float = 0.0
    rows_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: dict[str, int] = field(default_factory=dict)
    refusal: str = ""  # the body of the first non-200 answer
    answers: dict[int, Any] = field(default_factory=dict)  # request index -> output data


def infer_request(target: Target, row: Any, index: int, encoding: str) -> bytes:
    """The whole HTTP request for ``row`` (digits: 64 pixels; MiniLM: a text)."""
    output = {"name": target.output, "parameters": {"binary_data": False}}
    body: bytes
    extra = b""
    if isinstance(row, str):
        tensor: dict[str, Any] = {"name": "text", "datatype": "BYTES", "shape": [1], "data": [row]}
        body = json.dumps({"id": str(index), "inputs": [tensor], "outputs": [output]}).encode()
    elif encoding == "binary":
        raw = np.asarray(row, dtype="<f4").tobytes()
        tensor = {"name": "x", "datatype": "FP32", "shape": [1, len(row)]}
        tensor["parameters"] = {"binary_data_size": len(raw)}
        header = json.dumps({"id": str(index), "inputs": [tensor], "outputs": [output]}).encode()
        extra = b"Inference-Header-Content-Length: %d\r\n" % len(header)
        body = header + raw
    else:
        tensor = {"name": "x", "datatype": "FP32", "shape": [1, len(row)], "data": list(row)}
        body = json.dumps({"id": str(index), "inputs": [tensor], "outputs": [output]}).encode()
    kind = b"application/octet-stream" if extra else b"application/json"
    host = urlsplit(target.url).netloc.encode()
    return (
        b"POST /v2/models/%s/infer HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\n"
        b"Content-Length: %d\r\n%s\r\n" % (target.model.encode(), host, kind, len(body), extra)
    ) + body


class Connection:
    """One keep-alive HTTP/1.1 connection: a request out, its answer in."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Send ``request``; its status and body."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class Run:
    """The requests of one run and what came back."""

    def __init__(self, requests: Sequence[bytes], mode: str, keep: bool) -> None:
        self.requests, self.keep = requests, keep
        self.outcome = Outcome(mode)
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.window = (float("inf"), float("inf"))  # answers within it count (closed loop)

    async def send(
        self, connection: Connection, index: int, due: float, counted: bool | None = None
    ) -> None:
        """One request; its latency counts if ``counted`` (None: if answered in the window)."""
        self.outcome.sent += 1
        try:
            status, body = await connection.exchange(self.requests[index % len(self.requests)])
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.errors[type(exc).__name__] += 1
            raise
        if status != 200:
            self.outcome.refusal = self.outcome.refusal or body[:200].decode(errors="replace")
            self.errors[str(status)] += 1
            return
        self.outcome.answered += 1
        now = time.perf_counter()
        if counted or (counted is None and self.window[0] <= now <= self.window[1]):
            self.latencies.append((now - due) * 1000)
        if self.keep:
            self.outcome.answers[index] = json.loads(body)["outputs"][0]["data"]

    def finish(self, seconds: float) -> Outcome:
        found = self.outcome
        found.seconds = seconds
        found.rows_per_s = len(self.latencies) / seconds if seconds else 0.0
        if self.latencies:
            found.p50_ms, found.p99_ms = (float(v) for v in np.percentile(self.latencies, [50, 99]))
        found.errors = dict(self.errors)
        return found


async def closed_loop(
    url: str,
    requests: Sequence[bytes],
    concurrency: int,
    seconds: float,
    *,
    warmup_s: float = 1.0,
    keep: bool = False,
) -> Outcome:
    """``concurrency`` connections sending back to back for ``warmup_s`` + ``seconds``;
    only the last ``seconds`` count towards the rate and the latencies."""
    run = Run(requests, "closed", keep)
    connections = [await Connection.open(url) for _ in range(concurrency)]
    counter = iter(range(1 << 62))
    start = time.perf_counter()
    run.window = (start + warmup_s, start + warmup_s + seconds)

    async def loop(connection: Connection) -> None:
        while time.perf_counter() < run.window[1]:
            try:
                await run.send(connection, next(counter), time.perf_counter())
            except (OSError, asyncio.IncompleteReadError, ValueError):
                connection.close()  # counted in errors; the server dropped it
                connection = await Connection.open(url)
                connections.append(connection)

    try:
        await asyncio.gather(*(loop(c) for c in connections))
    finally:
        for connection in connections:
            connection.close()
    return run.finish(seconds)


async def open_loop(
    url: str,
    requests: Sequence[bytes],
    rate: float,
    seconds: float,
    *,
    warmup_s: float = 1.0,
    keep: bool = False,
) -> Outcome:
    """Requests due every ``1/rate`` s for ``warmup_s`` + ``seconds``; latencies from the
    time each was due, over the last ``seconds``."""
    run = Run(requests, "open", keep)
    idle: list[Connection] = []
    opened: list[Connection] = []

    async def one(index: int, due: float) -> None:
        connection = idle.pop() if idle else None
        if connection is None:
            connection = await Connection.open(url)
            opened.append(connection)
        await run.send(connection, index, due, counted=index >= warm)
        idle.append(connection)

    count = int(rate * (warmup_s + seconds))
    warm = int(rate * warmup_s)
    tasks: list[asyncio.Task[None]] = []
    start = time.perf_counter()
    try:
        for index in range(count):
            due = start + index / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(index, due)))
        await asyncio.gather(*tasks)
    finally:
        for connection in opened:
            connection.close()
    return run.finish(seconds)


def workload_rows(model: str, n: int) -> list[Any]:
    """The bench's own rows (bench/workloads.py): digits' pixels or MiniLM's texts."""
    from bench.workloads import WORKLOADS

    jobs = WORKLOADS[model](n).jobs
    key = "x" if model == "digits" else "text"
    return [job[key][0] for job in jobs]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the server, http://HOST:PORT")
    parser.add_argument("--model", choices=["digits", "minilm"], required=True)
    parser.add_argument("--name", help="the model's name on the server (default: --model)")
    parser.add_argument("--output", help="output to ask for (default: label / embedding)")
    parser.add_argument("--encoding", choices=ENCODINGS, default="json")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--concurrency", type=int, help="closed loop: connections")
    how.add_argument("--rate", type=float, help="open loop: requests per second")
    args = parser.parse_args(argv)
    output = args.output or ("label" if args.model == "digits" else "embedding")
    target = Target(args.url, args.name or args.model, output)
    rows = workload_rows(args.model, 400)
    requests = [infer_request(target, row, i, args.encoding) for i, row in enumerate(rows)]
    if args.concurrency:
        run = closed_loop(
            args.url, requests, args.concurrency, args.seconds, warmup_s=args.warmup_s
        )
    else:
        run = open_loop(args.url, requests, args.rate, args.seconds, warmup_s=args.warmup_s)
    try:
        outcome = asyncio.run(run)
    except (OSError, asyncio.IncompleteReadError) as exc:
        sys.exit(f"bench.loadgen: {args.url} stopped answering: {exc!r}")
    print(json.dumps(asdict(outcome)))


if __name__ == "__main__":
    main()
