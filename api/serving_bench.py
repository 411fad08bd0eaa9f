"""``triage bench``: our service and the naive reference, each in its own process, loaded over HTTP.

    triage bench [--seconds 10] [--concurrency 16] [--model DIR] --out bench.json

One run measures, one server after the other (never both at once, they would share the CPUs):

* **ours**: ``triage serve`` (the optimised runtime, micro-batching, a temporary SQLite decision store
  with its usual durability), ``POST /v1/triage``; ready when ``/readyz`` answers 200. The optimised
  model is built first (``triage optimize``), so its cold start is a real restart.
* **naive**: ``python -m helpdesk_triage.api.naive_server``: the same fine-tuned model in plain transformers fp32,
  one request at a time, in a minimal FastAPI endpoint; ready when ``/healthz`` answers 200.

From this process (httpx, keep-alive connections), per server: the cold start (process start to the
first ready answer), latency percentiles of sequential single requests for ``--seconds``, throughput
and latency percentiles with ``--concurrency`` clients for ``--seconds``, and the server's peak RSS
(``VmHWM``: the whole life of the process, loading included). Ratios say how many times better ours is:
``throughput`` = ours / naive, ``p50`` = naive p50 / ours p50. The JSON goes to ``--out``; a table is printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from helpdesk_triage.policy.settings import Settings
from helpdesk_triage.model.folder import DEFAULT_MODEL_DIR

METRIC_KEYS = ("p50_ms", "p95_ms", "p99_ms", "throughput_rps", "concurrent_p50_ms", "concurrent_p95_ms", "rss_mb",
               "cold_start_s")

# Typical help-desk messages (written for the benchmark): 8-43 characters, 24 on average.
BENCH_TEXTS: tuple[str, ...] = (
    "快递五天了还没到，订单号[ORDERID_1234]，麻烦查一下",
    "请问这款保温杯有没有黑色的，容量多大？",
    "收到的杯子碎了，包装也破了，怎么处理",
    "我要投诉，客服一直不回复，已经等了两天了",
    "发票可以开增值税专用发票吗？公司报销要用",
    "退款申请提交一周了，什么时候能到账",
    "衣服尺码偏大，想换小一号，需要自己寄回吗",
    "下单时地址填错了，能帮我改成公司地址吗",
    "耳机充不进电，才买了三天，是不是质量问题",
    "你们这是虚假宣传，赠品根本没有，我要找12315",
    "谢谢，问题已经解决了，你们的客服小姐姐很耐心",
    "双十一有没有满减活动，优惠券怎么领？",
    "已经催了三次了还不发货，到底怎么回事？再不发我就申请退款并且投诉你们",
    "东西收到了，但是少了一个配件，说明书上写的充电线没有，麻烦补发一下",
    "在吗？想问个问题",
    "手机屏幕有划痕，包装也是拆过的，你们是不是卖二手货？",
    "怎么联系人工客服，机器人回答不了我的问题",
    "物流显示已签收，但是我根本没有收到包裹，问了门卫和快递柜都没有，快递员电话也打不通",
    "吃了你们家的零食孩子拉肚子，去医院花了好几百，必须给个说法",
    "这个洗衣机怎么设置预约洗涤？说明书上写得不清楚，我按了好几次都没反应，是不是机器有问题",
)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memory_mb(pid: int) -> dict[str, float]:
    """Peak (VmHWM) and current (VmRSS) resident memory of a process in MiB; empty where unknown."""
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0]) / 1024
    except OSError:
        try:
            import psutil

            found["VmRSS"] = psutil.Process(pid).memory_info().rss / 2**20
        except Exception:  # noqa: BLE001 - no way to know on this platform
            pass
    return found


@dataclass
class Server:
    name: str
    proc: subprocess.Popen
    url: str
    ready_path: str
    started: float
    log_path: Path
    peak_rss_mb: float = 0.0

    def sample_memory(self) -> None:
        values = memory_mb(self.proc.pid)
        self.peak_rss_mb = max(self.peak_rss_mb, values.get("VmHWM", 0.0), values.get("VmRSS", 0.0))

    def wait_ready(self, timeout: float) -> float:
        """Seconds from process start to the first 200 of the ready route."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} server exited with {self.proc.returncode}:\n{self.log_tail()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(self.url + self.ready_path).status_code == 200:
                        return time.monotonic() - self.started
                time.sleep(0.02)
        raise RuntimeError(f"{self.name} server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)


def start_server(name: str, command: list[str], env: dict[str, str], port: int, ready_path: str, log_dir: Path) -> Server:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=log_dir, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    return Server(name, proc, f"http://127.0.0.1:{port}", ready_path, started, log_path)


def sequential(url: str, texts: tuple[str, ...], seconds: float, min_requests: int = 20) -> tuple[list[float], int]:
    """Latencies (ms) of one request at a time for ``seconds``; and the number of non-200 answers."""
    latencies, errors = [], 0
    with httpx.Client(timeout=30) as client:
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline or i < min_requests:
            start = time.perf_counter()
            response = client.post(url, json={"text": texts[i % len(texts)]})
            latencies.append((time.perf_counter() - start) * 1000)
            errors += response.status_code != 200
            i += 1
    return latencies, errors


def concurrent(url: str, texts: tuple[str, ...], seconds: float, concurrency: int,
               connect_url: str | None = None) -> tuple[list[float], int, float]:
    """``concurrency`` clients, each sending one request after the other for ``seconds``.

    Returns the latencies (ms), the number of non-200 answers and the wall time until the last answer."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    go = threading.Event()
    deadline_box: list[float] = []

    def client_loop(worker: int) -> None:
        mine, bad = [], 0
        with httpx.Client(timeout=60) as client:
            if connect_url:
                client.get(connect_url)  # open the connection before the clock starts
            go.wait()
            i = worker
            while time.monotonic() < deadline_box[0]:
                start = time.perf_counter()
                response = client.post(url, json={"text": texts[i % len(texts)]})
                mine.append((time.perf_counter() - start) * 1000)
                bad += response.status_code != 200
                i += concurrency
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client_loop, args=(w,), daemon=True) for w in range(concurrency)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # every client connected
    started = time.monotonic()
    deadline_box.append(started + seconds)
    go.set()
    for thread in threads:
        thread.join()
    return latencies, errors[0], time.monotonic() - started


def measure(server: Server, path: str, seconds: float, concurrency: int, log: Callable[[str], None],
            ready_timeout: float) -> dict:
    stop = threading.Event()

    def sampler() -> None:
        while not stop.is_set() and server.proc.poll() is None:
            server.sample_memory()
            stop.wait(0.05)

    threading.Thread(target=sampler, daemon=True).start()
    try:
        cold_start = server.wait_ready(ready_timeout)
        log(f"{server.name}: ready after {cold_start:.2f} s; warming up")
        url = server.url + path
        sequential(url, BENCH_TEXTS, 0, min_requests=2 * len(BENCH_TEXTS))
        log(f"{server.name}: {seconds:g} s of sequential single requests")
        single, single_errors = sequential(url, BENCH_TEXTS, seconds)
        log(f"{server.name}: {seconds:g} s with {concurrency} concurrent clients")
        many, many_errors, wall = concurrent(url, BENCH_TEXTS, seconds, concurrency, server.url + server.ready_path)
        server.sample_memory()
    finally:
        stop.set()
        server.stop()
    return {
        "p50_ms": round(percentile(single, 50), 2),
        "p95_ms": round(percentile(single, 95), 2),
        "p99_ms": round(percentile(single, 99), 2),
        "throughput_rps": round(len(many) / wall, 1),
        "concurrent_p50_ms": round(percentile(many, 50), 2),
        "concurrent_p95_ms": round(percentile(many, 95), 2),
        "rss_mb": round(server.peak_rss_mb, 1),
        "cold_start_s": round(cold_start, 2),
        "sequential_requests": len(single),
        "concurrent_requests": len(many),
        "errors": single_errors + many_errors,
        "mean_ms": round(statistics.fmean(single), 2) if single else None,
    }


def sqlite_commit_ms(folder: Path, writes: int = 200) -> dict:
    """What one durable decision write costs here (SQLite WAL, synchronous=FULL), as the service stores them."""
    from helpdesk_triage.api.decision_store import DecisionRecord, open_store

    store = open_store(f"sqlite:///{folder / 'commit-probe.db'}")
    times = []
    try:
        for i in range(writes):
            record = DecisionRecord(id=f"probe-{i}", masked_text="快递五天了还没到", raw_text=None,
                                    labels={"category": "B", "severity": "medium", "sentiment": "neutral"},
                                    scores={}, model_version="probe", degraded=False,
                                    received_at="2026-01-01T00:00:00+00:00", decided_at="2026-01-01T00:00:00+00:00")
            start = time.perf_counter()
            store.record_decision(record)
            times.append((time.perf_counter() - start) * 1000)
    finally:
        store.close()
    return {"sqlite_commit_p50_ms": round(percentile(times, 50), 3), "sqlite_commit_p95_ms": round(percentile(times, 95), 3)}


def server_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRIAGE_API_KEYS"}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra})
    return env


def run_bench(seconds: float = 10.0, concurrency: int = 16, model_dir: Path | None = None,
              log: Callable[[str], None] = print, ready_timeout: float = 300.0, skip_naive: bool = False) -> dict:
    model_dir = Path(model_dir or DEFAULT_MODEL_DIR).resolve()
    result: dict = {"config": {"seconds": seconds, "concurrency": concurrency, "model": str(model_dir),
                               "runtime": Settings().runtime,
                               "cores": _cores(), "python": sys.version.split()[0]}}
    with tempfile.TemporaryDirectory(prefix="triage-bench-") as tmp:
        tmp = Path(tmp)
        env = server_env({"TRIAGE_DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}"})
        log("building the optimised model if needed (triage optimize)")
        started = time.monotonic()
        built = subprocess.run([sys.executable, "-m", "helpdesk_triage.api.cli", "optimize", "--model", str(model_dir)], cwd=tmp,
                               env=env, capture_output=True, text=True)
        if built.returncode != 0:
            log(f"triage optimize failed (ours will serve the torch model):\n{built.stderr[-2000:]}")
        result["config"]["optimize_s"] = round(time.monotonic() - started, 1)

        port = free_port()
        ours = start_server("ours", [sys.executable, "-m", "helpdesk_triage.api.cli", "serve", "--port", str(port), "--model",
                                     str(model_dir)], env, port, "/readyz", tmp)
        result["ours"] = measure(ours, "/v1/triage", seconds, concurrency, log, ready_timeout)
        if not skip_naive:
            port = free_port()
            naive = start_server("naive", [sys.executable, "-m", "helpdesk_triage.api.naive_server", "--port", str(port),
                                           "--model", str(model_dir)], env, port, "/healthz", tmp)
            result["naive"] = measure(naive, "/v1/triage", seconds, concurrency, log, ready_timeout)
            result["ratio"] = {
                "throughput": _ratio(result["ours"]["throughput_rps"], result["naive"]["throughput_rps"]),
                "p50": _ratio(result["naive"]["p50_ms"], result["ours"]["p50_ms"]),
                "p95": _ratio(result["naive"]["p95_ms"], result["ours"]["p95_ms"]),
                "concurrent_p50": _ratio(result["naive"]["concurrent_p50_ms"], result["ours"]["concurrent_p50_ms"]),
                "rss": _ratio(result["naive"]["rss_mb"], result["ours"]["rss_mb"]),
                "cold_start": _ratio(result["naive"]["cold_start_s"], result["ours"]["cold_start_s"]),
                "meaning": "how many times better ours is: throughput ours/naive, the others naive/ours",
            }
        result["store"] = sqlite_commit_ms(tmp)
    return result


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 2) if a and b else None


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def format_table(result: dict) -> str:
    rows = [("single request p50 (ms)", "p50_ms", "p50"), ("single request p95 (ms)", "p95_ms", "p95"),
            ("single request p99 (ms)", "p99_ms", None),
            (f"throughput at concurrency {result['config']['concurrency']} (req/s)", "throughput_rps", "throughput"),
            ("  p50 under that load (ms)", "concurrent_p50_ms", "concurrent_p50"),
            ("  p95 under that load (ms)", "concurrent_p95_ms", None),
            ("peak RSS of the server (MiB)", "rss_mb", "rss"), ("cold start to ready (s)", "cold_start_s", "cold_start")]
    naive = result.get("naive", {})
    ratio = result.get("ratio", {})
    width = max(len(r[0]) for r in rows)
    lines = [f"{'':{width}}  {'ours':>10}  {'naive':>10}  {'ours better by':>14}"]
    for label, key, ratio_key in rows:
        theirs = naive.get(key)
        times = ratio.get(ratio_key) if ratio_key else None
        lines.append(f"{label:{width}}  {result['ours'][key]:>10}  {'' if theirs is None else theirs:>10}  "
                     f"{'' if times is None else f'{times}x':>14}")
    store = result.get("store", {})
    if store:
        lines.append(f"(one durable SQLite decision write here: p50 {store['sqlite_commit_p50_ms']} ms, "
                     f"p95 {store['sqlite_commit_p95_ms']} ms, inside every one of ours' requests)")
    return "\n".join(lines)


def write_json(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, out)
