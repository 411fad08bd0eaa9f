"""``triage load-test``: many clients against a running server, with the health probes timed alongside.

    triage load-test --url http://127.0.0.1:8000 --clients 40 --batch 64 --seconds 15 [--flood] [--out load.json]

Each client holds one keep-alive connection and sends ``POST /v1/triage`` (``--batch 1``) or
``POST /v1/triage/batch`` with ``--batch`` items, one request after the other, for ``--seconds``.
On a 503 a polite client waits the ``Retry-After`` the server sent; with ``--flood`` it sends the next
request at once (the worst case a server has to survive). Beside them a prober sends ``GET /livez``
and ``GET /readyz`` every 20 ms on connections of its own, as a kubelet would.

Reported: requests by status, items answered and how many of them were degraded (answered by the
keyword rules), useful throughput (items and requests answered by the model per second), latency
percentiles of the answered requests, and the probes' latency percentiles. The client is plain asyncio
over raw HTTP/1.1 so that, on the same machine, it takes as little CPU from the server as it can.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

from helpdesk_triage.api.serving_bench import BENCH_TEXTS, percentile

PROBE_ROUTES = ("/livez", "/readyz")
PROBE_INTERVAL_S = 0.02
DEGRADED_MARK = b'"degraded":true'


class ProtocolError(RuntimeError):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads a Content-Length response."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
                      ) -> tuple[int, dict[str, str], bytes]:
        """One request. A kept-alive connection the server has closed meanwhile (its keep-alive timeout, e.g.
        while this client waited a Retry-After) fails before any answer: it is opened anew and sent once more."""
        reused = self.writer is not None
        try:
            return await self._exchange(method, path, body, headers)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            return await self._exchange(method, path, body, headers)

    async def _exchange(self, method: str, path: str, body: bytes, headers: dict[str, str] | None
                        ) -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        if body:
            head.append("Content-Type: application/json")
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body)
        try:
            await self.writer.drain()
            status, response_headers, response_body = await self._read_response()
        except (ConnectionError, asyncio.IncompleteReadError, ProtocolError):
            await self.close()
            raise
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        return status, response_headers, response_body

    async def _read_response(self) -> tuple[int, dict[str, str], bytes]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {lines[0]!r}")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" not in headers:
            raise ProtocolError("response without Content-Length")
        return int(parts[1]), headers, await self.reader.readexactly(int(headers["content-length"]))

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self.reader = self.writer = None


@dataclass
class LoadResult:
    url: str
    clients: int
    batch_items: int
    seconds: float
    flood: bool
    requests: dict[str, int] = field(default_factory=dict)  # status -> count ("error" for transport failures)
    items_answered: int = 0
    items_degraded: int = 0
    degraded_share: float = 0.0
    refused_share: float = 0.0  # of the requests sent, answered 503
    model_items_per_s: float = 0.0  # useful throughput: items answered by the model
    model_requests_per_s: float = 0.0  # requests whose every item the model answered
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    probes: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def summary(self) -> str:
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(self.requests.items()))
        lines = [
            f"{self.clients} clients × {self.batch_items} item(s) for {self.seconds:.0f} s"
            f"{' (flood: no wait after a 503)' if self.flood else ''} against {self.url}",
            f"  requests by status: {statuses}",
            f"  items answered {self.items_answered}, degraded {self.items_degraded} ({self.degraded_share:.1%}); "
            f"refused (503) {self.refused_share:.1%} of requests",
            f"  useful throughput {self.model_items_per_s:.1f} items/s, {self.model_requests_per_s:.1f} requests/s; "
            f"latency of answered requests p50 {self.p50_ms:.0f} ms, p95 {self.p95_ms:.0f} ms, p99 {self.p99_ms:.0f} ms",
        ]
        for route, figures in self.probes.items():
            lines.append(f"  {route}: {figures['count']:.0f} probes, p50 {figures['p50_ms']:.1f} ms, "
                         f"p99 {figures['p99_ms']:.1f} ms, max {figures['max_ms']:.1f} ms, non-200 {figures['failed']:.0f}")
        return "\n".join(lines)


def _body(batch_items: int, offset: int) -> tuple[str, bytes]:
    texts = [BENCH_TEXTS[(offset + i) % len(BENCH_TEXTS)] for i in range(batch_items)]
    if batch_items == 1:
        return "/v1/triage", json.dumps({"text": texts[0]}, ensure_ascii=False).encode("utf-8")
    return "/v1/triage/batch", json.dumps({"items": [{"text": t} for t in texts]}, ensure_ascii=False).encode("utf-8")


async def run_load(url: str, *, clients: int, batch_items: int, seconds: float, flood: bool = False,
                   api_key: str | None = None) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    answered = degraded = model_requests = 0
    end = time.monotonic() + seconds

    async def client(index: int) -> None:
        nonlocal answered, degraded, model_requests
        connection = Connection(host, port)
        sent = 0
        while time.monotonic() < end:
            path, body = _body(batch_items, index * 7 + sent)
            sent += 1
            started = time.perf_counter()
            try:
                status, response_headers, response = await connection.request("POST", path, body, headers)
            except (OSError, asyncio.IncompleteReadError, ProtocolError):
                statuses["error"] += 1
                await asyncio.sleep(0.05)
                continue
            statuses[str(status)] += 1
            if status == 200:
                latencies.append((time.perf_counter() - started) * 1000)
                marks = response.count(DEGRADED_MARK)
                answered += batch_items
                degraded += marks
                model_requests += marks == 0
            elif status == 503 and not flood:
                await asyncio.sleep(float(response_headers.get("retry-after", "1") or 1))
        await connection.close()

    # The prober runs in a process of its own: in this one its timings would include this event loop's
    # own delays under a flood of responses, not only the server's.
    context = multiprocessing.get_context("spawn")
    probe_results = context.Queue()
    prober = context.Process(target=_probe, args=(host, port, headers, seconds, probe_results), daemon=True)
    prober.start()
    began = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.monotonic() - began
    probe_ms, probe_failed = await asyncio.to_thread(probe_results.get, True, 60)
    prober.join(10)
    sent = sum(statuses.values())
    result = LoadResult(url=url, clients=clients, batch_items=batch_items, seconds=round(elapsed, 2), flood=flood,
                        requests=dict(statuses), items_answered=answered, items_degraded=degraded,
                        degraded_share=round(degraded / answered, 4) if answered else 0.0,
                        refused_share=round(statuses.get("503", 0) / sent, 4) if sent else 0.0,
                        model_items_per_s=round((answered - degraded) / elapsed, 2),
                        model_requests_per_s=round(model_requests / elapsed, 2))
    if latencies:
        result.p50_ms, result.p95_ms, result.p99_ms = (round(percentile(latencies, q), 1) for q in (50, 95, 99))
    for route, values in probe_ms.items():
        result.probes[route] = {"count": len(values), "p50_ms": round(percentile(values, 50), 2),
                                "p99_ms": round(percentile(values, 99), 2), "max_ms": round(max(values, default=0.0), 2),
                                "failed": probe_failed.get(route, 0)}
    return result


def _probe(host: str, port: int, headers: dict[str, str], seconds: float, results) -> None:
    """GET each probe route every PROBE_INTERVAL_S on one keep-alive connection per route, timing each answer;
    puts ({route: [ms, ...]}, {route: failures}) on ``results``. Blocking sockets: nothing else runs here."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    timings: dict[str, list[float]] = {route: [] for route in PROBE_ROUTES}
    failed: dict[str, int] = dict.fromkeys(PROBE_ROUTES, 0)
    connections: dict[str, socket.socket | None] = dict.fromkeys(PROBE_ROUTES)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for route in PROBE_ROUTES:
            started = time.perf_counter()
            try:
                if connections[route] is None:
                    connections[route] = socket.create_connection((host, port), timeout=10)
                sock = connections[route]
                sock.sendall(f"GET {route} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode("ascii"))
                ok = _read_status(sock) == 200
            except OSError:
                ok = False
                if connections[route] is not None:
                    connections[route].close()
                connections[route] = None
            timings[route].append((time.perf_counter() - started) * 1000)
            failed[route] += not ok
        time.sleep(PROBE_INTERVAL_S)
    results.put((timings, failed))


def _read_status(sock: socket.socket) -> int:
    """Read one response with a Content-Length body; its status."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return int(lines[0].split(" ", 2)[1])


def load_test(url: str, **options) -> LoadResult:
    return asyncio.run(run_load(url, **options))
