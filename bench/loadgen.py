"""A bounded HTTP/1.1 load generator for loopback: prepared requests over keep-alive connections.

Every request is built (and signed) before the timed window, as the exact
bytes sent on the wire.  Each connection sends its own list of requests one
after another (a closed loop: the next request leaves when the response to
the last one has arrived); the connections run concurrently on one asyncio
event loop.  The window opens once every connection is established and
closes when the last response is in.  Lighter than a general-purpose client,
so with the server in another process the limit measured is the server's.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

HOST = "127.0.0.1"


def request_bytes(
    method: str, path: str, port: int, headers: Mapping[str, str], body: bytes = b""
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {HOST}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Response:
    status: int
    body: bytes
    sent: float  # perf_counter when the request was written
    received: float  # perf_counter when the whole response was read


@dataclass
class LoadResult:
    seconds: float
    responses: list[list[Response]] = field(default_factory=list)  # per connection, in order

    @property
    def count(self) -> int:
        return sum(len(r) for r in self.responses)

    @property
    def statuses(self) -> Counter[int]:
        return Counter(r.status for conn in self.responses for r in conn)

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def latencies(self) -> list[float]:
        return [r.received - r.sent for conn in self.responses for r in conn]

    def check(self, expected: Sequence[int]) -> None:
        bad = {s: n for s, n in self.statuses.items() if s not in expected}
        if bad:
            sample = next(r for c in self.responses for r in c if r.status not in expected)
            raise RuntimeError(f"unexpected statuses {bad}; e.g. {sample.body[:300]!r}")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), interpolating between ranks; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return status, bytes(body)
            body += chunk[:-2]
    raise RuntimeError(f"a response with neither content-length nor chunks: {head!r}")


async def _connection(
    port: int, requests: Sequence[bytes], start: asyncio.Event, ready: list[int]
) -> list[Response]:
    reader, writer = await asyncio.open_connection(HOST, port)
    ready.append(1)
    await start.wait()
    out: list[Response] = []
    try:
        for request in requests:
            sent = time.perf_counter()
            writer.write(request)
            status, body = await _read_response(reader)
            out.append(Response(status, body, sent, time.perf_counter()))
    finally:
        writer.close()
        await writer.wait_closed()
    return out


async def _run(port: int, per_connection: Sequence[Sequence[bytes]]) -> LoadResult:
    start = asyncio.Event()
    ready: list[int] = []
    tasks = [
        asyncio.create_task(_connection(port, requests, start, ready))
        for requests in per_connection
    ]
    while len(ready) < len(tasks):
        done = [t for t in tasks if t.done()]
        for task in done:
            task.result()  # a connection that failed to open raises here
        await asyncio.sleep(0.001)
    began = time.perf_counter()
    start.set()
    responses = await asyncio.gather(*tasks)
    return LoadResult(time.perf_counter() - began, list(responses))


def run_load(port: int, per_connection: Sequence[Sequence[bytes]]) -> LoadResult:
    """Send every connection's requests (concurrently across connections); time the whole."""
    return asyncio.run(_run(port, per_connection))
