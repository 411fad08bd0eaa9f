"""Rows/s and peak memory of `triage predict` per engine, on shop reviews of the public corpora (a benchmark, not a test).

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/predict_bench.py --corpus ../shared/data/corpora --rows 10000 \
        --engines local,ray [--ray-num-cpus 2] [--shard-rows 1000] [--out bench.json]

Draws ``--rows`` reviews evenly over online_shopping_10_cats.csv (all ten shop categories) into a temporary CSV
(never into the repository), runs ``triage predict`` on it once per engine in a process of its own, and prints
wall time (model loading and, for ray, the cluster start included), rows/s, rows/s per core and the peak RSS of
the ``triage`` process (for ray: the driver only; the actors are Ray's worker processes, not its children).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sample_reviews(corpus: Path, rows: int, out: Path) -> int:
    source = corpus / "online_shopping_10_cats" / "online_shopping_10_cats.csv"
    with source.open(encoding="utf-8-sig", newline="") as f:
        records = list(csv.DictReader(f))
    step = max(1, len(records) // rows)
    chosen = records[::step][:rows]
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "cat", "text"])
        writer.writerows([[i, r["cat"], r["review"]] for i, r in enumerate(chosen)])
    return len(chosen)


def run(engine: str, data: Path, out: Path, ray_num_cpus: int | None, shard_rows: int) -> dict:
    command = [sys.executable, "-m", "helpdesk_triage.api.cli", "predict", "--input", str(data), "--output", str(out),
               "--keep", "id,cat", "--engine", engine, "--shard-rows", str(shard_rows)]
    if engine == "ray" and ray_num_cpus:
        command += ["--ray-num-cpus", str(ray_num_cpus)]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    log = process.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{engine}: triage predict failed:\n{log[-2000:]}")
    stats = [json.loads(p.read_text(encoding="utf-8")) for p in (out / "_shards").glob("*.json")]
    scored = sum(s["scored"] for s in stats)
    return {"engine": engine, "rows": scored, "rejected": sum(s["rejected"] for s in stats), "seconds": round(seconds, 1),
            "rows_per_s": round(scored / seconds, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024),
            "last_line": log.strip().splitlines()[-1] if log.strip() else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, default=Path("../shared/data/corpora"))
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--engines", default="local,ray")
    parser.add_argument("--ray-num-cpus", type=int, default=None)
    parser.add_argument("--shard-rows", type=int, default=1000,
                        help="rows per shard (default 1000: the ray engine gives each actor whole shards, so it needs several)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    results = []
    with tempfile.TemporaryDirectory(prefix="predict-bench-") as tmp:
        data = Path(tmp) / "reviews.csv"
        n = sample_reviews(args.corpus, args.rows, data)
        print(f"{n} shop reviews, {cores} cores", file=sys.stderr)
        for engine in args.engines.split(","):
            result = run(engine, data, Path(tmp) / f"out-{engine}", args.ray_num_cpus, args.shard_rows)
            result["rows_per_s_per_core"] = round(result["rows_per_s"] / (args.ray_num_cpus or cores), 1)
            results.append(result)
            print(json.dumps(result, ensure_ascii=False), file=sys.stderr)
    print("| engine | rows | rejected | seconds | rows/s | rows/s per core | peak RSS (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['engine']} | {r['rows']} | {r['rejected']} | {r['seconds']} | {r['rows_per_s']} | "
              f"{r['rows_per_s_per_core']} | {r['peak_rss_mib']}{' (driver)' if r['engine'] == 'ray' else ''} |")
    if args.out is not None:
        args.out.write_text(json.dumps({"cores": cores, "results": results}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
