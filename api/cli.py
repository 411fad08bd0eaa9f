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
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.handler is not run_not_available:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
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

    for name, issue_help in (("train", "retrain the classifier"), ("evaluate", "write an evaluation report")):
        not_yet = sub.add_parser(name, help=f"{issue_help} (not available in this version)")
        not_yet.set_defaults(handler=run_not_available)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.settings import Settings

    overrides = {k: v for k, v in {"host": args.host, "port": args.port, "model_dir": args.model}.items() if v is not None}
    settings = Settings(**overrides)
    if args.workers < 1:
        raise CliError("--workers must be at least 1")
    if args.model is not None:
        raise CliError("--model: trained models are not supported by this version yet")
    uvicorn.run("api.main:app", host=settings.host, port=settings.port, workers=args.workers)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from data.text_normalization import normalize
    from model.keyword_rules import KeywordClassifier

    if args.model is not None:
        raise CliError("--model: trained models are not supported by this version yet")
    rows = read_jsonl_texts(args.input)
    classifier = KeywordClassifier()
    predictions = classifier.predict([normalize(row["text"]) for row in rows])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with args.output.open("w", encoding="utf-8") as out:
        for row, prediction in zip(rows, predictions):
            result = dict(row)
            for head in ("category", "severity", "sentiment"):
                head_prediction = prediction.head(head)
                result[f"pred_{head}"] = head_prediction.label
                result[f"pred_{head}_confidence"] = round(head_prediction.confidence, 4)
            result["model_version"] = classifier.version
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


def run_not_available(args: argparse.Namespace) -> int:
    raise CliError("not available in this version yet (see README: what works today)")


if __name__ == "__main__":
    sys.exit(main())
