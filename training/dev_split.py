"""The fixed split of the hand-labelled `dev.jsonl` into a part the default model trains on and a held-out part.

`data/dev_holdout_ids.txt` lists the ids of the held-out rows. It was made once (``--make-ids``): within
each category rows are ordered by the SHA-256 of their id and every other row is held out; every
critical row is held out (critical cases are never trained on: they measure critical recall). From then on the list is the definition: every figure
reported for the default model is measured on the held-out rows only, and the recipe trains only on the
others. A dev file whose ids do not match the list is an error, not a silent re-split.

    python -m helpdesk_triage.training.dev_split --dev ../shared/data/labeled/dev.jsonl --out /tmp/dev_split
writes `dev_train.jsonl` and `dev_holdout.jsonl` there (the rows exactly as in dev.jsonl).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import defaultdict
from pathlib import Path
from helpdesk_triage.policy.data_files import data_file

HOLDOUT_IDS = data_file("dev_holdout_ids.txt")


class DevSplitError(ValueError):
    """dev.jsonl does not fit the committed held-out list."""


def read_rows(dev: Path) -> list[tuple[str, dict]]:
    """(raw line, parsed row) per non-empty line; every row needs a unique string id."""
    rows, seen = [], set()
    for number, line in enumerate(dev.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        row_id = row.get("id")
        if not isinstance(row_id, str) or not row_id:
            raise DevSplitError(f"{dev}: row {number}: needs a string id")
        if row_id in seen:
            raise DevSplitError(f"{dev}: row {number}: id {row_id} appears twice")
        seen.add(row_id)
        rows.append((line, row))
    return rows


def make_holdout_ids(rows: list[dict]) -> list[str]:
    strata: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        key = "critical" if row.get("severity") == "critical" else str(row.get("category"))
        strata[key].append(row["id"])
    held_out = []
    for key in sorted(strata):
        ordered = sorted(strata[key], key=lambda row_id: hashlib.sha256(row_id.encode()).hexdigest())
        held_out.extend(ordered if key == "critical" else ordered[::2])
    return sorted(held_out)


def load_holdout_ids(path: Path = HOLDOUT_IDS) -> set[str]:
    return {line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and not line.startswith("#")}


def split(dev: Path, holdout_ids: set[str] | None = None) -> tuple[list[str], list[str]]:
    """(training lines, held-out lines) of ``dev``, as in the file."""
    holdout_ids = load_holdout_ids() if holdout_ids is None else holdout_ids
    rows = read_rows(dev)
    missing = holdout_ids - {row["id"] for _, row in rows}
    if missing:
        raise DevSplitError(f"{dev}: {len(missing)} held-out ids of {HOLDOUT_IDS.name} are not in it "
                            f"(e.g. {sorted(missing)[0]}): not the dev set the split was made for")
    train = [line for line, row in rows if row["id"] not in holdout_ids]
    held_out = [line for line, row in rows if row["id"] in holdout_ids]
    return train, held_out


def write_split(dev: Path, out: Path) -> tuple[Path, Path]:
    train, held_out = split(dev)
    out.mkdir(parents=True, exist_ok=True)
    paths = out / "dev_train.jsonl", out / "dev_holdout.jsonl"
    for path, lines in zip(paths, (train, held_out)):
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", type=Path, required=True, help="the hand-labelled dev.jsonl")
    parser.add_argument("--out", type=Path, help="folder for dev_train.jsonl and dev_holdout.jsonl")
    parser.add_argument("--make-ids", action="store_true", help=f"(once) write {HOLDOUT_IDS.name} from dev.jsonl")
    args = parser.parse_args(argv)
    try:
        if args.make_ids:
            ids = make_holdout_ids([row for _, row in read_rows(args.dev)])
            HOLDOUT_IDS.write_text("# ids of the held-out half of dev.jsonl; see training/dev_split.py\n"
                                   + "".join(f"{i}\n" for i in ids), encoding="utf-8")
            print(f"wrote {len(ids)} held-out ids to {HOLDOUT_IDS}")
        if args.out:
            train, held_out = write_split(args.dev, args.out)
            print(f"wrote {train} and {held_out}")
    except (DevSplitError, OSError, json.JSONDecodeError) as exc:
        print(f"dev_split: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
