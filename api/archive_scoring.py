"""`triage predict`: score an archive of messages — JSONL, CSV or Parquet, a file, a folder or a glob — into
shards of JSONL or Parquet, with what the API answers for each row.

The input is cut into fixed shards: ``shard_rows`` consecutive rows of one file (JSONL lines, CSV records,
Parquet rows), numbered per file, so a re-run maps the same rows to the same shard names. A shard is written to
a temporary name and renamed (atomic); it is finished when its data file exists, so a re-run skips it. The
output folder's ``_manifest.json`` records the inputs, the model and the options; a re-run with other ones is
refused rather than mixing two runs in one folder. A row that cannot be scored goes, with its file, row and
reason, to ``rejects/<shard>.jsonl`` and the job goes on (``strict``: it stops there).

Each row goes through ``policy.triage.decide`` with the plain model call — the code that ``POST /v1/triage``
and ``TriageModel.triage`` run — and its answer is flattened into columns (:func:`flatten`). The ray engine
(``api.archive_ray``) runs :func:`score_shard` in Ray actors, so both engines write the same files.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from helpdesk_triage.policy.labels import HEADS, LABELS

INPUT_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
OUTPUT_FORMATS = ("jsonl", "parquet")
MANIFEST = "_manifest.json"
STATS_DIR = "_shards"
REJECTS_DIR = "rejects"
DECIDE_ROWS = 256  # rows per decide() call: one model call, bounded memory
PARQUET_BATCH_ROWS = 1024


class ScoringError(ValueError):
    """A job that cannot run (bad input spec, an output folder of another run): one line for the user."""


class RowRejected(ScoringError):
    """``strict``: the first row that cannot be scored."""


@dataclass(frozen=True)
class ScoringJob:
    inputs: tuple[Path, ...]
    output: Path
    output_format: str = "jsonl"
    shard_rows: int = 10_000
    text_column: str = "text"
    keep: tuple[str, ...] = ()
    received_at_column: str | None = None  # None: "received_at" when a row has it, else the run's start time
    strict: bool = False
    model_dir: Path | None = None

    def problems(self) -> list[str]:
        found = []
        if self.output_format not in OUTPUT_FORMATS:
            found.append(f"--format must be one of {', '.join(OUTPUT_FORMATS)}")
        if self.shard_rows < 1:
            found.append("--shard-rows must be at least 1")
        clash = sorted(set(self.keep) & set(output_columns(())))
        if clash:
            found.append(f"--keep {','.join(clash)}: the output already has such columns")
        return found


@dataclass(frozen=True)
class Shard:
    """Rows ``[first, first + rows)`` of one input file (0-based record positions), from byte ``offset``."""

    name: str
    path: str
    kind: str
    first: int
    rows: int
    offset: int = 0
    line: int = 1  # the physical line at offset (JSONL, CSV): how rows are numbered for the user
    header: tuple[str, ...] = ()  # CSV


@dataclass
class ShardStats:
    name: str
    rows: int = 0  # records read (blank lines included)
    scored: int = 0
    rejected: int = 0
    first_rejects: list[str] = field(default_factory=list)


@dataclass
class JobSummary:
    shards: int
    resumed: int
    scored: int
    rejected: int
    seconds: float
    first_rejects: list[str]

    @property
    def rows_per_s(self) -> float:
        return self.scored / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# Inputs and the shard plan
# ---------------------------------------------------------------------------------------------


def resolve_inputs(spec: str) -> tuple[Path, ...]:
    """A file, a folder (its JSONL/CSV/Parquet files, sorted) or a glob pattern → the input files, sorted."""
    path = Path(spec)
    if path.is_file():
        candidates = [path]
    elif path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
        if not candidates:
            raise ScoringError(f"--input {spec}: the folder holds no .jsonl, .csv or .parquet file")
    elif any(ch in spec for ch in "*?["):
        candidates = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        if not candidates:
            raise ScoringError(f"--input {spec}: no file matches")
    else:
        raise ScoringError(f"--input {spec}: no such file or folder")
    for p in candidates:
        if p.suffix.lower() not in INPUT_SUFFIXES:
            raise ScoringError(f"--input {p}: unknown file type {p.suffix or '(none)'}; use .jsonl, .csv or .parquet")
    return tuple(p.resolve() for p in candidates)


def plan_shards(job: ScoringJob) -> list[Shard]:
    """Every shard of every input file, in order. Reads each file once (Parquet: its footer only)."""
    shards: list[Shard] = []
    for index, path in enumerate(job.inputs):
        kind = INPUT_SUFFIXES[path.suffix.lower()]
        starts, header = {"jsonl": _jsonl_starts, "csv": _csv_starts, "parquet": _parquet_starts}[kind](path, job)
        total = starts.pop()[0]  # the last entry is the end: (record count, end offset, line)
        for n, (first, offset, line) in enumerate(starts):
            rows = min(job.shard_rows, total - first)
            shards.append(Shard(f"part-{index:05d}-{n:05d}", str(path), kind, first, rows, offset, line, header))
    return shards


def _jsonl_starts(path: Path, job: ScoringJob) -> tuple[list[tuple[int, int, int]], tuple[str, ...]]:
    starts, count, offset = [], 0, 0
    with path.open("rb") as f:
        for raw in f:
            if count % job.shard_rows == 0:
                starts.append((count, offset, count + 1))
            count += 1
            offset += len(raw)
    starts.append((count, offset, count + 1))
    return starts, ()


def _csv_starts(path: Path, job: ScoringJob) -> tuple[list[tuple[int, int, int]], tuple[str, ...]]:
    with path.open("rb") as f:
        records = _csv_records(f, 0, 1)
        try:
            line, _, fields, problem = next(records)
        except StopIteration:
            raise ScoringError(f"{path}: empty file (expected a header row with a '{job.text_column}' column)") from None
        if problem or fields is None:
            raise ScoringError(f"{path}: row {line}: cannot read the header ({problem})")
        header = tuple(h.strip().lstrip("\ufeff") for h in fields)
        _check_columns(path, header, job)
        starts, count, end = [], 0, None
        for line, offset, _, _ in records:
            if count % job.shard_rows == 0:
                starts.append((count, offset, line))
            count += 1
        end = f.tell()
    starts.append((count, end, 0))
    return starts, header


def _parquet_starts(path: Path, job: ScoringJob) -> tuple[list[tuple[int, int, int]], tuple[str, ...]]:
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a file that is not Parquet
        raise ScoringError(f"{path}: not a readable Parquet file ({' '.join(str(exc).split())[:200]})") from None
    _check_columns(path, tuple(meta.schema_arrow.names), job)
    total = meta.metadata.num_rows
    return [(first, 0, first + 1) for first in range(0, total, job.shard_rows)] + [(total, 0, 0)], ()


def _check_columns(path: Path, columns: tuple[str, ...], job: ScoringJob) -> None:
    wanted = [job.text_column, *job.keep] + ([job.received_at_column] if job.received_at_column else [])
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise ScoringError(f"{path}: no column {', '.join(repr(c) for c in missing)} (columns: {', '.join(columns)})")


def _csv_records(f, offset: int, line: int) -> Iterator[tuple[int, int, list[str] | None, str | None]]:
    """(first line, byte offset, fields or None, problem) per CSV record from ``offset`` of a binary file.
    Undecodable bytes survive as surrogates (reported per row); the offset lets a shard start mid-file."""
    f.seek(offset)
    state = [offset, line - 1]

    def lines() -> Iterator[str]:
        for raw in f:
            state[0] += len(raw)
            state[1] += 1
            yield raw.decode("utf-8", errors="surrogateescape")

    reader = csv.reader(lines(), strict=True)
    while True:
        start_offset, start_line = state[0], state[1] + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start_line, start_offset, None, f"CSV syntax error ({exc})"
            continue
        yield start_line, start_offset, fields, None


# ---------------------------------------------------------------------------------------------
# Reading one shard: (row number, record or None, problem or None)
# ---------------------------------------------------------------------------------------------


def read_shard(shard: Shard, columns: Sequence[str]) -> Iterator[tuple[int, dict | None, str | None]]:
    if shard.kind == "jsonl":
        yield from _read_jsonl(shard)
    elif shard.kind == "csv":
        yield from _read_csv(shard)
    else:
        yield from _read_parquet(shard, columns)


def _read_jsonl(shard: Shard) -> Iterator[tuple[int, dict | None, str | None]]:
    with open(shard.path, "rb") as f:
        f.seek(shard.offset)
        for i in range(shard.rows):
            raw = f.readline()
            number = shard.line + i
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield number, None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
                continue
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark (Windows editors write one)
            if not line.strip():
                yield number, None, None  # a blank line: nothing to score, nothing wrong
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(record, dict):
                yield number, None, "expected a JSON object"
                continue
            yield number, record, None


def _read_csv(shard: Shard) -> Iterator[tuple[int, dict | None, str | None]]:
    with open(shard.path, "rb") as f:
        records = _csv_records(f, shard.offset, shard.line)
        for _ in range(shard.rows):
            try:
                number, _, fields, problem = next(records)
            except StopIteration:
                return
            if problem is not None:
                yield number, None, problem
            elif not fields or (len(fields) == 1 and not fields[0].strip()):
                yield number, None, None
            elif any("\udc80" <= ch <= "\udcff" for value in fields for ch in value):
                yield number, None, "not UTF-8"
            elif len(fields) != len(shard.header):
                yield number, None, f"{len(fields)} fields but the header has {len(shard.header)}"
            else:
                yield number, dict(zip(shard.header, fields)), None


def _read_parquet(shard: Shard, columns: Sequence[str]) -> Iterator[tuple[int, dict | None, str | None]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(shard.path)
    present = set(pf.schema_arrow.names)
    columns = [c for c in dict.fromkeys(columns) if c in present]
    groups, position = [], 0
    for g in range(pf.metadata.num_row_groups):
        size = pf.metadata.row_group(g).num_rows
        if position + size > shard.first and position < shard.first + shard.rows:
            groups.append(g)
        elif not groups:
            position += size
    row = position
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=groups, columns=columns):
        for record in batch.to_pylist():
            if shard.first <= row < shard.first + shard.rows:
                yield row + 1, record, None
            row += 1
            if row >= shard.first + shard.rows:
                return


# ---------------------------------------------------------------------------------------------
# Scoring: the API's decision per row, flattened
# ---------------------------------------------------------------------------------------------


class RowScorer:
    """The model and the desk's policy, loaded once: ``score(requests)`` → the API's responses."""

    def __init__(self, model_dir: Path | None = None, threads: int | None = None) -> None:
        from helpdesk_triage.model.triage_model import load_classifier
        from helpdesk_triage.policy.settings import Settings
        from helpdesk_triage.policy.triage import TriagePolicy, classify_with

        settings = Settings()
        self.classifier, self.degraded = load_classifier(model_dir, settings.runtime, settings.cache_dir, threads=threads)
        self.policy = TriagePolicy.load(settings, model_dir=getattr(self.classifier, "folder", None))
        plain = classify_with(self.classifier)
        if self.degraded:  # the package was installed without the model: the keyword rules answer, and say so
            from dataclasses import replace

            self._classify = lambda texts: replace(plain(texts), degraded_reason="degraded: no model found; answered by keyword rules")
        else:
            self._classify = plain

    @property
    def version(self) -> str:
        return self.classifier.version

    def check(self, request, now: datetime) -> str | None:
        """Why ``request`` cannot be triaged, or None."""
        from helpdesk_triage.policy.triage import InvalidInput

        try:
            self.policy.prepare(request, now)
        except InvalidInput as exc:
            return f"{exc.field}: {exc.message}" if exc.field else exc.message
        return None

    def score(self, requests: list, now: datetime) -> list:
        from helpdesk_triage.policy.triage import decide

        return [d.response for d in decide(requests, self._classify, self.policy, now, field_prefix="")]


def output_columns(keep: Sequence[str]) -> list[str]:
    columns = ["source_file", "source_row", *keep, "model_version", "degraded", "truncated"]
    for head in HEADS:
        columns += [head, f"{head}_name", f"{head}_confidence", f"{head}_decided_by", f"{head}_routing", f"{head}_most_probable"]
        columns += [f"{head}_p_{code}" for code in LABELS.codes(head)]
    columns += ["needs_human_review", "review_reasons", "queue", "received_at", "sla_first_response_due",
                "sla_resolution_due", "sla_rule", "sla_customer_deadline", "sla_clock", "sla_resolution_clock",
                "sla_timezone", "sla_escalate_immediately", "reply_template_id", "reply_subcase"]
    return columns


def flatten(response, source_file: str, source_row: int, kept: dict[str, Any], received_at: datetime) -> dict[str, Any]:
    """One output row: a ``TriageResponse`` as flat columns (output_columns order)."""
    row: dict[str, Any] = {"source_file": source_file, "source_row": source_row, **kept,
                           "model_version": response.model_version, "degraded": response.degraded,
                           "truncated": response.truncated}
    for head in HEADS:
        result = getattr(response, head)
        row.update({head: result.label, f"{head}_name": result.name, f"{head}_confidence": result.confidence,
                    f"{head}_decided_by": result.decided_by, f"{head}_routing": result.routing,
                    f"{head}_most_probable": result.most_probable})
        row.update({f"{head}_p_{code}": result.scores.get(code) for code in LABELS.codes(head)})
    sla = response.sla
    row.update({"needs_human_review": response.needs_human_review, "review_reasons": list(response.review_reasons),
                "queue": response.queue, "received_at": received_at.isoformat(),
                "sla_first_response_due": sla.first_response_due, "sla_resolution_due": sla.resolution_due,
                "sla_rule": sla.rule, "sla_customer_deadline": sla.customer_deadline, "sla_clock": sla.clock,
                "sla_resolution_clock": sla.resolution_clock, "sla_timezone": sla.timezone,
                "sla_escalate_immediately": sla.escalate_immediately,
                "reply_template_id": response.reply.template_id, "reply_subcase": response.reply.subcase.code})
    return row


def _parquet_schema(keep: Sequence[str]):
    import pyarrow as pa

    types = {"source_row": pa.int64(), "degraded": pa.bool_(), "truncated": pa.bool_(), "needs_human_review": pa.bool_(),
             "sla_escalate_immediately": pa.bool_(), "review_reasons": pa.list_(pa.string())}
    types.update({f"{head}_confidence": pa.float64() for head in HEADS})
    types.update({f"{head}_p_{code}": pa.float64() for head in HEADS for code in LABELS.codes(head)})
    return pa.schema([(name, types.get(name, pa.string())) for name in output_columns(keep)])


class _ShardWriter:
    """Rows to ``<final>.tmp``, renamed to ``final`` by :meth:`commit`; Parquet: one row group per write."""

    def __init__(self, final: Path, output_format: str, keep: Sequence[str]) -> None:
        self.final = final
        self.tmp = final.with_name(final.name + ".tmp")
        self.format = output_format
        self.keep = tuple(keep)
        if output_format == "parquet":
            import pyarrow.parquet as pq

            self.schema = _parquet_schema(keep)
            self._out = pq.ParquetWriter(self.tmp, self.schema)
        else:
            self._out = self.tmp.open("w", encoding="utf-8")

    def write(self, rows: list[dict]) -> None:
        if not rows:
            return
        if self.format == "parquet":
            import pyarrow as pa

            for row in rows:  # kept columns are text in Parquet (one type per column, whatever each file held)
                for name in self.keep:
                    value = row.get(name)
                    if value is not None and not isinstance(value, str):
                        row[name] = json.dumps(value, ensure_ascii=False, default=str)
            self._out.write_table(pa.Table.from_pylist(rows, schema=self.schema))
        else:
            self._out.write("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))

    def commit(self) -> None:
        self._out.close()
        _fsync(self.tmp)
        os.replace(self.tmp, self.final)

    def discard(self) -> None:
        try:
            self._out.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    _fsync(tmp)
    os.replace(tmp, path)


def shard_file(job: ScoringJob, shard: Shard) -> Path:
    return job.output / f"{shard.name}.{job.output_format}"


def score_shard(job: ScoringJob, shard: Shard, scorer: RowScorer, started_at: datetime,
                on_rows: Callable[..., None] | None = None) -> ShardStats:
    """Score one shard and write its files: rejects and stats first, the data file last (it marks it finished)."""
    from pydantic import ValidationError

    from helpdesk_triage.policy.triage import TriageRequest

    stats = ShardStats(shard.name)
    rejects: list[str] = []
    writer = _ShardWriter(shard_file(job, shard), job.output_format, job.keep)
    source = os.path.basename(shard.path)
    columns = [job.text_column, *job.keep, job.received_at_column or "received_at"]
    pending: list[tuple[int, dict, Any, datetime]] = []

    def reject(row: int, reason: str) -> None:
        if job.strict:
            raise RowRejected(f"{shard.path}: row {row}: {reason}")
        stats.rejected += 1
        rejects.append(json.dumps({"file": shard.path, "row": row, "reason": reason}, ensure_ascii=False))
        if len(stats.first_rejects) < 5:
            stats.first_rejects.append(f"{source}: row {row}: {reason}")

    def flush() -> None:
        responses = scorer.score([request for _, _, request, _ in pending], started_at)
        writer.write([flatten(response, source, row, kept, at)
                      for (row, kept, _, at), response in zip(pending, responses)])
        stats.scored += len(pending)
        if on_rows is not None:
            on_rows(len(pending))
        pending.clear()

    try:
        for row, record, problem in read_shard(shard, columns):
            stats.rows += 1
            if record is None:
                if problem is not None:
                    reject(row, problem)
            else:
                request, at, problem = _request(record, job, started_at, TriageRequest, ValidationError)
                problem = problem or scorer.check(request, started_at)
                if problem is not None:
                    reject(row, problem)
                else:
                    pending.append((row, {name: record.get(name) for name in job.keep}, request, at))
            if len(pending) >= DECIDE_ROWS:
                flush()
        if pending:
            flush()
        if on_rows is not None:
            on_rows(stats.rows - stats.scored, True)  # blank and rejected rows: done, but not scored
        reject_file = job.output / REJECTS_DIR / f"{shard.name}.jsonl"
        if rejects:
            _write_atomically(reject_file, "".join(line + "\n" for line in rejects))
        else:
            reject_file.unlink(missing_ok=True)  # left by an earlier, interrupted try of this shard
        _write_atomically(job.output / STATS_DIR / f"{shard.name}.json", json.dumps(asdict(stats), ensure_ascii=False))
        writer.commit()
    except BaseException:
        writer.discard()
        raise
    return stats


def _request(record: dict, job: ScoringJob, started_at: datetime, request_type, validation_error):
    """(TriageRequest, received_at, None) or (None, None, why not)."""
    text = record.get(job.text_column)
    if text is None:
        return None, None, f"no '{job.text_column}' field"
    if not isinstance(text, str):
        return None, None, f"'{job.text_column}' is not a string"
    column = job.received_at_column or "received_at"
    value = record.get(column)
    if value is None or (value == "" and job.received_at_column is None):
        if job.received_at_column is not None:
            return None, None, f"no '{column}' value"
        value = None
    elif isinstance(value, datetime):  # a Parquet timestamp column
        if value.tzinfo is None:
            return None, None, f"'{column}' has no UTC offset"
        value = value.isoformat()
    elif not isinstance(value, str):
        return None, None, f"'{column}' is not a string"
    try:
        request = request_type(text=text, received_at=value)
    except validation_error as exc:
        first = exc.errors()[0]
        return None, None, f"'{column}': {first['msg'].removeprefix('received_at ')}"
    from helpdesk_triage.policy.sla import parse_timestamp

    return request, parse_timestamp(value) if value is not None else started_at, None


# ---------------------------------------------------------------------------------------------
# The job: manifest, resume, engines
# ---------------------------------------------------------------------------------------------


def model_identity(model_dir: Path | None) -> dict[str, str]:
    """What the output depends on of the model, known without loading it: its version and the runtime."""
    from helpdesk_triage.model.folder import DEFAULT_MODEL_DIR, ModelConfig, is_model_folder
    from helpdesk_triage.policy.settings import Settings

    folder = model_dir or DEFAULT_MODEL_DIR
    version = ModelConfig.load(folder).version if is_model_folder(folder) else "keyword-rules"
    return {"model_version": version, "runtime": Settings().runtime}


def _manifest(job: ScoringJob, model: dict[str, str]) -> dict[str, Any]:
    return {
        "inputs": [{"path": str(p), "bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns} for p in job.inputs],
        **model,
        "options": {"format": job.output_format, "shard_rows": job.shard_rows, "text_column": job.text_column,
                    "keep": list(job.keep), "received_at_column": job.received_at_column},
    }


def prepare_output(job: ScoringJob, model: dict[str, str]) -> datetime:
    """Create the output folder with its manifest, or check that the one there is of this same job.
    Returns the run's start time (the received_at of rows without one), kept across re-runs."""
    wanted = _manifest(job, model)
    path = job.output / MANIFEST
    if job.output.exists() and not job.output.is_dir():
        raise ScoringError(f"--output {job.output}: is a file; give a folder for the shards")
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        for key in ("inputs", "model_version", "runtime", "options"):
            if found.get(key) != wanted[key]:
                raise ScoringError(f"--output {job.output} holds a run with other {key.replace('_', ' ')} "
                                   f"({MANIFEST}); give a new --output folder, or delete this one to start again")
        return datetime.fromisoformat(found["started_at"])
    if job.output.is_dir() and any(job.output.iterdir()):
        raise ScoringError(f"--output {job.output}: not empty and not a triage predict output (no {MANIFEST})")
    (job.output / STATS_DIR).mkdir(parents=True, exist_ok=True)
    (job.output / REJECTS_DIR).mkdir(exist_ok=True)
    started_at = datetime.now(UTC)
    _write_atomically(path, json.dumps({**wanted, "started_at": started_at.isoformat()}, ensure_ascii=False, indent=1))
    return started_at


def finished(job: ScoringJob, shard: Shard) -> bool:
    return shard_file(job, shard).is_file() and (job.output / STATS_DIR / f"{shard.name}.json").is_file()


def shard_stats(job: ScoringJob, shard: Shard) -> ShardStats:
    return ShardStats(**json.loads((job.output / STATS_DIR / f"{shard.name}.json").read_text(encoding="utf-8")))


class Progress:
    """RunProgress over the rows still to do, with rows/s in its line."""

    def __init__(self, total: int, stream=None) -> None:
        from helpdesk_triage.training.progress import RunProgress

        self.bar = RunProgress(total, label="triage predict", stream=stream)
        self.scored = 0
        self.started = time.monotonic()

    def rows(self, n: int, skipped: bool = False) -> None:
        if not skipped:
            self.scored += n
        elapsed = time.monotonic() - self.started
        self.bar.advance(n, phase=f"{self.scored / elapsed:,.0f} rows/s" if elapsed > 0 else "")

    def close(self) -> None:
        self.bar.close()


Runner = Callable[[ScoringJob, list[Shard], datetime, Progress], None]


def run_job(job: ScoringJob, runner: Runner | None = None, log: Callable[[str], None] | None = None,
            stream=None) -> JobSummary:
    """Plan, skip what a previous run finished, score the rest — in this process, or with ``runner``
    (``api.archive_ray.ray_runner``) — and count the whole output."""
    log = log or (lambda message: print(message, file=sys.stderr))
    problems = job.problems()
    if problems:
        raise ScoringError("; ".join(problems))
    shards = plan_shards(job)
    started_at = prepare_output(job, model_identity(job.model_dir))
    todo = [s for s in shards if not finished(job, s)]
    resumed = len(shards) - len(todo)
    if resumed:
        log(f"resuming: {resumed} of {len(shards)} shards already written in {job.output}")
    t0 = time.monotonic()
    scorer = RowScorer(job.model_dir) if todo and runner is None else None
    progress = Progress(sum(s.rows for s in todo), stream=stream)
    try:
        if todo and runner is not None:
            runner(job, todo, started_at, progress)
        elif todo:
            for shard in todo:
                score_shard(job, shard, scorer, started_at, progress.rows)
    finally:
        progress.close()
    seconds = time.monotonic() - t0
    everything = [shard_stats(job, s) for s in shards]
    summary = JobSummary(len(shards), resumed, sum(s.scored for s in everything), sum(s.rejected for s in everything),
                         seconds, [line for s in everything for line in s.first_rejects][:5])
    scored_now = progress.scored
    log(f"{summary.scored:,} rows scored, {summary.rejected:,} rejected, in {summary.shards} shards "
        f"({resumed} from an earlier run) in {job.output}; this run: {scored_now:,} rows in {seconds:.1f} s"
        + (f" ({scored_now / seconds:,.0f} rows/s)" if seconds > 0 and scored_now else ""))
    if summary.rejected:
        log(f"rejected rows are listed in {job.output / REJECTS_DIR} (file, row, reason); first: "
            + "; ".join(summary.first_rejects))
    return summary
