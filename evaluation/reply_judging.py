"""The judged reply set: real messages, the service's suggested reply to each, two independent judges' verdicts
(good / partial / wrong, by ``data/reply_judging/rubric.md``) and an adjudicated verdict where they disagree.

    python -m helpdesk_triage.evaluation.reply_judging sample --corpus ../shared/data/corpora --out items.jsonl
    python -m helpdesk_triage.evaluation.reply_judging replies --items items.jsonl --out replied.jsonl [--model DIR]
    python -m helpdesk_triage.evaluation.reply_judging pack --replied replied.jsonl --prefix a --out-dir packs/
    python -m helpdesk_triage.evaluation.reply_judging agreement --packs packs/pack_a_*.jsonl \\
        --judge-a a1.jsonl a2.jsonl --judge-b b1.jsonl b2.jsonl --out disagreements.jsonl
    python -m helpdesk_triage.evaluation.reply_judging record --replied replied.jsonl --prefix a --judge-a … \\
        --judge-b … --adjudicated adj.jsonl --system "after: …" --out data/reply_judging/after.jsonl

``sample`` draws from the measure half of the annotated validation split (``corpus_refs --half measure``: never
trained on, not even by the sub-case head) and adds truly critical cases of the measure half of
``data/critical_cases.jsonl``. ``record`` writes references only (no message text), with the reply that was
judged and the verdicts; ``corpus_refs --refs data/reply_judging/after.jsonl`` resolves it into rows that
``triage evaluate`` reads (its "Sub-cases and replies" section).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from helpdesk_triage.evaluation.critical_cases import case_half, load_critical_cases
from helpdesk_triage.evaluation.reply_fit import VERDICTS
from helpdesk_triage.policy.data_files import data_file, write_text_atomically
from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.training.corpus_refs import half_of, resolve_refs, sha256_text

RECEIVED_AT = "2026-03-10T10:00:00+08:00"  # a Tuesday, in working hours: the time every judged reply answers
RECEIVED_AT_WORDS = "2026-03-10 10:00 (Tuesday, working hours 9:00-18:00)"


def _read(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _write(path: Path, rows: Sequence[dict]) -> None:
    write_text_atomically(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def sample(corpus: Path, n_uniform: int, n_critical: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    validation = [r for r in resolve_refs(corpus, data_file("annotated_corpus.jsonl"))
                  if r.get("split") == "validation" and half_of(r["text"]) == "measure"]
    uniform = rnd.sample(validation, min(n_uniform, len(validation)))
    taken = {r["text"] for r in uniform}
    critical = [r for r in load_critical_cases(corpus) if case_half(r["text"]) == "measure"
                and r["severity"] == "critical" and r["text"] not in taken]
    critical = rnd.sample(critical, min(n_critical, len(critical)))
    rows = [dict(r, stratum="uniform") for r in uniform] + [dict(r, stratum="critical") for r in critical]
    rnd.shuffle(rows)
    return [{"item": f"r{i:03d}", **{k: r.get(k) for k in ("text", "ref", "stratum", "subcase", *HEADS)}}
            for i, r in enumerate(rows)]


def replies(items: list[dict], model_dir: Path | None) -> list[dict]:
    from helpdesk_triage.model import TriageModel

    model = TriageModel.load(model_dir)
    answers = model.triage([r["text"] for r in items], RECEIVED_AT)
    return [dict(r, model_version=a.model_version, reply=a.reply.text, source=a.reply.source,
                 reply_subcase=a.reply.subcase.code, predicted={h: getattr(a, h).label for h in HEADS})
            for r, a in zip(items, answers)]


def pack(replied: list[dict], prefix: str, seed: int) -> list[list[dict]]:
    """Two blind halves: item, the message and the reply, nothing about labels or sources."""
    order = list(range(len(replied)))
    random.Random(f"{prefix}{seed}").shuffle(order)
    halves = [order[: len(order) // 2], order[len(order) // 2 :]]
    return [[{"item": f"{prefix}-{replied[i]['item']}", "received_at": RECEIVED_AT_WORDS,
              "message": replied[i]["text"], "reply": replied[i]["reply"]} for i in half] for half in halves]


def _verdicts(paths: Sequence[Path]) -> dict[str, dict]:
    out = {}
    for path in paths:
        for number, row in enumerate(_read(path), 1):
            if row.get("verdict") not in VERDICTS:
                raise ValueError(f"{path}:{number}: verdict {row.get('verdict')!r} is not one of {list(VERDICTS)}")
            out[row["item"]] = row
    return out


def kappa(a: Sequence[str], b: Sequence[str]) -> float:
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    expected = sum((sum(x == v for x in a) / n) * (sum(y == v for y in b) / n) for v in VERDICTS)
    return (observed - expected) / (1 - expected) if expected < 1 else 1.0


def agreement(packs: Sequence[Path], judge_a: Sequence[Path], judge_b: Sequence[Path]) -> tuple[dict, list[dict]]:
    items = {r["item"]: r for p in packs for r in _read(p)}
    a, b = _verdicts(judge_a), _verdicts(judge_b)
    missing = sorted(set(items) - set(a)) + sorted(set(items) - set(b))
    if missing:
        raise ValueError(f"items without a verdict from both judges: {missing[:5]}")
    keys = sorted(items)
    va, vb = [a[k]["verdict"] for k in keys], [b[k]["verdict"] for k in keys]
    figures = {"n": len(keys), "agreement": round(sum(x == y for x, y in zip(va, vb)) / len(keys), 4),
               "kappa": round(kappa(va, vb), 4), "judge_a": dict(Counter(va)), "judge_b": dict(Counter(vb))}
    disagreements = [dict(items[k], judge_a={f: a[k].get(f) for f in ("verdict", "problems", "note")},
                          judge_b={f: b[k].get(f) for f in ("verdict", "problems", "note")})
                     for k in keys if a[k]["verdict"] != b[k]["verdict"]]
    return figures, disagreements


def record(replied: list[dict], prefix: str, judge_a: Sequence[Path], judge_b: Sequence[Path],
           adjudicated: Path | None, system: str) -> list[dict]:
    a, b = _verdicts(judge_a), _verdicts(judge_b)
    adj = _verdicts([adjudicated]) if adjudicated else {}
    rows = []
    for r in replied:
        key = f"{prefix}-{r['item']}"
        va, vb = a[key], b[key]
        final = va if va["verdict"] == vb["verdict"] else adj.get(key)
        if final is None:
            raise ValueError(f"{key}: the judges disagree and there is no adjudicated verdict")
        rows.append({"ref": r["ref"], "sha256": sha256_text(r["text"]), **{h: r[h] for h in HEADS},
                     "subcase": r.get("subcase"), "stratum": r["stratum"], "system": system,
                     "model_version": r["model_version"], "received_at": RECEIVED_AT, "judged_reply": r["reply"],
                     "reply_source": r["source"], "reply_subcase": r["reply_subcase"], "predicted": r["predicted"],
                     "verdicts": {"judge_a": va["verdict"], "judge_b": vb["verdict"],
                                  "adjudicated": adj[key]["verdict"] if key in adj else None},
                     "reply_verdict": final["verdict"], "problems": sorted(set(final.get("problems") or []))})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpdesk_triage.evaluation.reply_judging",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("sample")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--uniform", type=int, default=300)
    p.add_argument("--critical", type=int, default=40)
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("replies")
    p.add_argument("--items", type=Path, required=True)
    p.add_argument("--model", type=Path, default=None)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("pack")
    p.add_argument("--replied", type=Path, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, required=True)
    p = sub.add_parser("agreement")
    p.add_argument("--packs", type=Path, nargs="+", required=True)
    p.add_argument("--judge-a", type=Path, nargs="+", required=True)
    p.add_argument("--judge-b", type=Path, nargs="+", required=True)
    p.add_argument("--out", type=Path, required=True, help="the disagreements, for the adjudicator")
    p = sub.add_parser("record")
    p.add_argument("--replied", type=Path, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--judge-a", type=Path, nargs="+", required=True)
    p.add_argument("--judge-b", type=Path, nargs="+", required=True)
    p.add_argument("--adjudicated", type=Path, default=None)
    p.add_argument("--system", required=True, help="what replied, e.g. 'after: <commit>, triage-e5s-default-5'")
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "sample":
            _write(args.out, sample(args.corpus, args.uniform, args.critical, args.seed))
        elif args.command == "replies":
            _write(args.out, replies(_read(args.items), args.model))
        elif args.command == "pack":
            for n, half in enumerate(pack(_read(args.replied), args.prefix, args.seed), 1):
                _write(args.out_dir / f"pack_{args.prefix}_{n}.jsonl", half)
        elif args.command == "agreement":
            figures, disagreements = agreement(args.packs, args.judge_a, args.judge_b)
            _write(args.out, disagreements)
            print(json.dumps(figures, ensure_ascii=False))
        else:
            _write(args.out, record(_read(args.replied), args.prefix, args.judge_a, args.judge_b, args.adjudicated,
                                    args.system))
    except (OSError, ValueError, KeyError) as exc:
        print(f"reply_judging: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
