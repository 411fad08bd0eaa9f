"""Labelling real corpus messages at scale: draw them, pack them into batches with blind controls, measure the
annotators, and write the agreed labels as references (``data/labeled_corpus.jsonl`` style: no corpus text in
the repository).

The work folder (outside the repository: it holds corpus texts) is laid out as::

    WORK/pool.jsonl                   every drawn message: uid, ref, sha256, source, stratum, text
    WORK/batches/bNNN.jsonl           what an annotator sees: {"item", "text"}, controls mixed in, shuffled
    WORK/keys/bNNN.jsonl              private: item -> uid, or the control's hand labels
    WORK/labels/PASS/bNNN.jsonl       an annotator's answers: {"item", "category", "severity", "sentiment",
                                      "subcase", "usable"} (PASS: p1, p2 — two independent passes — and adj)

Commands (``python -m helpdesk_triage.training.annotation …``): ``sample``, ``pack``, ``agreement``,
``adjudication``, ``merge``. Labels follow ``LABELING.md``; sub-cases ``data/subcases.toml``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tomllib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from helpdesk_triage.policy.data_files import data_file
from helpdesk_triage.policy.keyword_rules import KeywordRules
from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.training.corpus_refs import iter_customer_texts, sha256_text
from helpdesk_triage.training.weak_labels import HeldOut

SUBCASES_PATH = data_file("subcases.toml")
# dev.jsonl's source mix (jddc 156, ecd 32, waimai 25, shop reviews 40 of 253).
SOURCE_MIX = {"jddc": 0.62, "ecd": 0.13, "waimai": 0.10, "shop": 0.15}
MIN_CHARS, MAX_CHARS = 4, 300
ANNOTATED = (*HEADS, "subcase", "usable")


def subcases() -> dict[str, list[str]]:
    """Sub-case codes per category, from ``data/subcases.toml``."""
    with SUBCASES_PATH.open("rb") as f:
        table = tomllib.load(f)["subcase"]
    codes: dict[str, list[str]] = defaultdict(list)
    for row in table:
        codes[row["category"]].append(row["code"])
    return dict(codes)


def source_group(source: str) -> str:
    return "shop" if source.startswith("shop:") else source


# ---------------------------------------------------------------------------------------------
# sample
# ---------------------------------------------------------------------------------------------


def candidates(corpus_dir: Path, held_out: HeldOut, taken: set[str]) -> dict[str, list[dict]]:
    """Distinct customer texts per source group (normalised text not held out, not already taken)."""
    seen: set[str] = set(taken)
    groups: dict[str, list[dict]] = defaultdict(list)
    for ref, text, source in iter_customer_texts(corpus_dir):
        norm = normalize(text)
        if not MIN_CHARS <= len(norm) <= MAX_CHARS or norm in seen:
            continue
        seen.add(norm)
        if norm in held_out:
            continue
        groups[source_group(source)].append({"ref": ref, "sha256": sha256_text(text), "source": source, "text": text})
    return groups


def escalation_candidate(text: str, rules: KeywordRules) -> bool:
    """Keyword evidence of a complaint or an emergency: where real D and critical rows are to be found."""
    norm = normalize(text)
    return rules.critical_cue(norm) is not None or rules.category(norm) == "D"


def draw(groups: dict[str, list[dict]], uniform: int, escalation: int, seed: int, critical_cue: int = 0,
         extra_cues: Sequence[str] = ()) -> list[dict]:
    """``uniform`` rows in dev's source mix (stratum ``uniform``: the validation set is cut from these),
    ``critical_cue`` rows holding a critical cue of the keyword rules, or one of ``extra_cues`` (stratum
    ``critical_cue``: where the rare real emergencies are) and ``escalation`` more with keyword evidence of D or critical (stratum ``escalation``)."""
    rng = random.Random(seed)
    rules = KeywordRules.load()
    chosen: list[dict] = []
    for group, share in SOURCE_MIX.items():
        pool = list(groups.get(group, []))
        rng.shuffle(pool)
        for row in pool[: round(uniform * share)]:
            chosen.append({**row, "stratum": "uniform"})
    picked = {row["sha256"] for row in chosen}
    cued = [row for group in SOURCE_MIX for row in groups.get(group, []) if row["sha256"] not in picked
            and (rules.critical_cue(normalize(row["text"])) is not None or any(c in row["text"] for c in extra_cues))]
    rng.shuffle(cued)
    chosen += [{**row, "stratum": "critical_cue"} for row in cued[:critical_cue]]
    picked = {row["sha256"] for row in chosen}
    rest = [row for group in SOURCE_MIX for row in groups.get(group, []) if row["sha256"] not in picked
            and escalation_candidate(row["text"], rules)]
    rng.shuffle(rest)
    chosen += [{**row, "stratum": "escalation"} for row in rest[:escalation]]
    return with_uid(chosen)


def model_picks(rows: Sequence[dict], uncertain: int, disagree: int, seed: int, score_at_most: int = 20000) -> list[dict]:
    """Active-learning picks among ``rows`` (at most ``score_at_most`` of them scored, drawn at random): the
    ``uncertain`` ones whose category the model is least sure of (smallest top-two margin), and ``disagree`` ones
    where the model and the keyword rules disagree about escalation (category D or severity critical)."""
    from helpdesk_triage.model import TriageModel

    rng = random.Random(seed)
    scored = list(rows)
    rng.shuffle(scored)
    scored = scored[:score_at_most]
    model, rules = TriageModel.load(), KeywordRules.load()
    predictions = model.predict([row["text"] for row in scored], batch_size=64)
    margins, split = [], []
    for row, prediction in zip(scored, predictions):
        margins.append((prediction.category.margin(), row["uid"]))
        norm = normalize(row["text"])
        model_says = prediction.category.label == "D" or prediction.severity.label == "critical"
        if model_says != escalation_candidate(norm, rules):
            split.append(row["uid"])
    by_uid = {row["uid"]: row for row in scored}
    rng.shuffle(split)
    chosen = [{**by_uid[uid], "stratum": "disagree"} for uid in split[:disagree]]
    taken = {row["uid"] for row in chosen}
    for _, uid in sorted(margins):
        if len(chosen) >= disagree + uncertain:
            break
        if uid not in taken:
            chosen.append({**by_uid[uid], "stratum": "uncertain"})
            taken.add(uid)
    return chosen


def with_uid(rows: Iterable[dict]) -> list[dict]:
    return [{**row, "uid": "u" + hashlib.sha256(json.dumps(row["ref"], sort_keys=True).encode()).hexdigest()[:12]}
            for row in rows]


def held_out_texts(labeled_dir: Path, corpus_dir: Path, refs: Sequence[Path]) -> list[str]:
    """Texts no new row may be or contain: dev and train (hand-labelled), the critical cases, rows already labelled."""
    from helpdesk_triage.evaluation.critical_cases import critical_texts
    from helpdesk_triage.training.corpus_refs import resolve_refs

    texts = [json.loads(line)["text"] for name in ("dev.jsonl", "train.jsonl")
             for line in (labeled_dir / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    texts += sorted(critical_texts(corpus_dir))
    for path in refs:
        texts += [row["text"] for row in resolve_refs(corpus_dir, path, required=("ref", "sha256"))]
    return texts


# ---------------------------------------------------------------------------------------------
# pack
# ---------------------------------------------------------------------------------------------


def pack(pool: Sequence[dict], controls: Sequence[dict], batch_size: int, controls_per_batch: int, seed: int,
         first_batch: int = 1) -> list[tuple[str, list[dict], list[dict]]]:
    """(batch name, items shown, keys) per batch: ``batch_size`` pool rows plus ``controls_per_batch`` hand-labelled
    rows, shuffled; nothing in an item says which is which."""
    rng = random.Random(seed)
    rows, spare = list(pool), list(controls)
    rng.shuffle(rows)
    rng.shuffle(spare)
    batches = []
    for index, start in enumerate(range(0, len(rows), batch_size), start=first_batch):
        name = f"b{index:03d}"
        members = [{"uid": row["uid"], "text": row["text"]} for row in rows[start : start + batch_size]]
        if len(spare) < controls_per_batch:
            raise ValueError(f"{name}: only {len(spare)} control rows left, {controls_per_batch} needed")
        members += [{"control": row, "text": row["text"]} for row in spare[:controls_per_batch]]
        spare = spare[controls_per_batch:]
        rng.shuffle(members)
        items, keys = [], []
        for position, member in enumerate(members, start=1):
            item = f"{name}-{position:03d}"
            items.append({"item": item, "text": member["text"]})
            keys.append({"item": item, **({"uid": member["uid"]} if "uid" in member else
                                         {"control": {k: member["control"].get(k) for k in ("id", *HEADS)}})})
        batches.append((name, items, keys))
    return batches


# ---------------------------------------------------------------------------------------------
# agreement
# ---------------------------------------------------------------------------------------------


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float | None:
    """Cohen's κ of two label sequences (None when there is nothing to compare or no variation at all)."""
    if len(a) != len(b) or not a:
        return None
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    tmp.replace(path)


def answered(work: Path, batch_path: Path, passes: Sequence[str] = ("p1", "p2")) -> bool:
    """Whether every pass has answered every item of the batch (an answer file still being written is not)."""
    expected = len(read_jsonl(batch_path))
    paths = [work / "labels" / p / batch_path.name for p in passes]
    # Lines are counted, not parsed: the last line of a file being written may be incomplete.
    return all(path.is_file() and sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()) >= expected
               for path in paths)


def check_answers(answers: Sequence[dict], items: Sequence[dict], where: str) -> dict[str, dict]:
    """The answers by item; ValueError naming the first bad row (unknown item, missing or invalid label)."""
    codes = subcases()
    expected = {row["item"] for row in items}
    by_item: dict[str, dict] = {}
    for number, row in enumerate(answers, start=1):
        item = row.get("item")
        if item not in expected:
            raise ValueError(f"{where}: row {number}: unknown item {item!r}")
        if not isinstance(row.get("usable", True), bool):
            raise ValueError(f"{where}: row {number} ({item}): usable must be true or false")
        if row.get("usable", True):
            for head in HEADS:
                if not LABELS.is_valid(head, row.get(head)):
                    raise ValueError(f"{where}: row {number} ({item}): {head} {row.get(head)!r} is not one of {list(LABELS.codes(head))}")
            if row.get("subcase") not in codes[row["category"]]:
                raise ValueError(f"{where}: row {number} ({item}): subcase {row.get('subcase')!r} is not one of "
                                 f"{codes[row['category']]} (category {row['category']})")
        by_item[item] = row
    missing = sorted(expected - set(by_item))
    if missing:
        raise ValueError(f"{where}: {len(missing)} items unanswered, e.g. {missing[:3]}")
    return by_item


def label_of(answer: dict, field: str) -> str:
    """An answer's value for a field; an unusable row is ``unusable`` on every head."""
    if field == "usable":
        return str(bool(answer.get("usable", True))).lower()
    return answer[field] if answer.get("usable", True) else "unusable"


def agreement(work: Path, passes: Sequence[str] = ("p1", "p2")) -> dict:
    """κ per field between the two passes on the pool rows, and each pass's agreement with the blind controls."""
    pair: dict[str, tuple[list[str], list[str]]] = {f: ([], []) for f in ANNOTATED}
    controls: dict[str, dict[str, list[bool]]] = {p: defaultdict(list) for p in passes}
    per_batch: dict[str, dict] = {}
    for name, _, keys, first_answers, second_answers in answered_batches(work, passes):
        batch_pair: dict[str, tuple[list[str], list[str]]] = {f: ([], []) for f in ANNOTATED}
        for item, key in keys.items():
            first, second = first_answers[item], second_answers[item]
            if "uid" in key:
                both_usable = first.get("usable", True) and second.get("usable", True)
                for field in ANNOTATED:
                    if field == "subcase" and not (both_usable and first["category"] == second["category"]):
                        continue  # sub-cases compare only within one category
                    for target in (pair[field], batch_pair[field]):
                        target[0].append(label_of(first, field))
                        target[1].append(label_of(second, field))
            else:
                for pass_name, answer in zip(passes, (first, second)):
                    # The best-guess labels count, also where the annotator found the message unusable alone.
                    for head in HEADS:
                        truth = key["control"].get(head)
                        if truth is not None:
                            controls[pass_name][head].append(answer.get(head) == truth)
                    controls[pass_name]["marked_unusable"].append(not answer.get("usable", True))
        per_batch[name] = {field: _round(cohen_kappa(*batch_pair[field])) for field in ANNOTATED}
    return {
        "rows_compared": len(pair["category"][0]),
        "kappa": {field: _round(cohen_kappa(*pair[field])) for field in ANNOTATED},
        "raw_agreement": {field: _round(sum(a == b for a, b in zip(*pair[field])) / len(pair[field][0]))
                          if pair[field][0] else None for field in ANNOTATED},
        "kappa_per_batch": per_batch,
        "control_agreement": {p: {head: {"n": len(v), "agreement": _round(sum(v) / len(v)) if v else None}
                                  for head, v in controls[p].items()} for p in passes},
    }


def _labels(answer: dict) -> dict:
    if not answer.get("usable", True):
        return {"usable": False}
    return {"usable": True, **{f: answer[f] for f in (*HEADS, "subcase")}}


def passes_answers(work: Path, batch: str, passes: Sequence[str] = ("p1", "p2")) -> tuple[list[dict], dict, list[dict]]:
    """(items, keys by item, answers by item per pass) of one batch, every answer checked."""
    items = read_jsonl(work / "batches" / f"{batch}.jsonl")
    keys = {row["item"]: row for row in read_jsonl(work / "keys" / f"{batch}.jsonl")}
    answers = []
    for p in passes:
        path = work / "labels" / p / f"{batch}.jsonl"
        answers.append(check_answers(read_jsonl(path), items, str(path)))
    return items, keys, answers


def answered_batches(work: Path, passes: Sequence[str] = ("p1", "p2")) -> Iterator[tuple[str, list[dict], dict, dict, dict]]:
    """(batch name, items, keys by item, first pass's answers, second pass's answers) of every batch both passes
    have finished."""
    for batch_path in sorted((work / "batches").glob("b*.jsonl")):
        if answered(work, batch_path, passes):
            items, keys, (first, second) = passes_answers(work, batch_path.stem, passes)
            yield batch_path.stem, items, keys, first, second


def adjudications(work: Path) -> dict[str, dict]:
    """The adjudicator's decisions by item."""
    return {row["item"]: row for path in sorted((work / "labels" / "adj").glob("*.jsonl")) for row in read_jsonl(path)}


def disagreements(work: Path) -> list[dict]:
    """Pool rows whose two passes differ in any label (sub-case included): what the adjudicator sees."""
    rows = []
    for _, items, keys, first, second in answered_batches(work):
        for item in items:
            a, b = _labels(first[item["item"]]), _labels(second[item["item"]])
            if "uid" in keys[item["item"]] and a != b:
                rows.append({"item": item["item"], "text": item["text"], "annotator_1": a, "annotator_2": b})
    return rows


def merged(work: Path) -> tuple[list[dict], Counter]:
    """Final labels of the pool rows: agreed by both passes, or decided by the adjudicator; unusable and
    unresolved rows are left out and counted."""
    pool = {row["uid"]: row for row in read_jsonl(work / "pool.jsonl")}
    adjudicated = adjudications(work)
    out, counts = [], Counter()
    for batch, items, keys, first, second in answered_batches(work):
        for item in items:
            key = keys[item["item"]]
            if "uid" not in key:
                continue
            a, b = _labels(first[item["item"]]), _labels(second[item["item"]])
            if a == b:
                final, how = a, "agreed"
            elif item["item"] in adjudicated:
                decision = adjudicated[item["item"]]
                if decision.get("unresolved"):
                    counts["unresolved"] += 1
                    continue
                check_answers([decision], [item], f"adjudication of {item['item']}")
                final, how = _labels(decision), "adjudicated"
            else:
                counts["awaiting adjudication"] += 1
                continue
            if not final["usable"]:
                counts["unusable"] += 1
                continue
            row = pool[key["uid"]]
            counts[how] += 1
            out.append({"ref": row["ref"], "sha256": row["sha256"], **{f: final[f] for f in (*HEADS, "subcase")},
                        "source": row["source"], "stratum": row["stratum"], "labelled": how, "batch": batch})
    return out, counts


def pass_record(work: Path, round_name: str) -> list[dict]:
    """Every answer of every pass, without texts: pool rows by reference, controls by their hand-labelled id.
    Enough to recompute the agreement figures of the data card without the corpora."""
    pool = {row["uid"]: row for row in read_jsonl(work / "pool.jsonl")}
    adjudicated = adjudications(work)
    out = []
    for _, items, keys, first, second in answered_batches(work):
        for item in items:
            key, name = keys[item["item"]], item["item"]
            row = {"round": round_name, "item": name, "p1": _labels(first[name]), "p2": _labels(second[name])}
            if "uid" in key:
                source = pool[key["uid"]]
                row.update(ref=source["ref"], sha256=source["sha256"], stratum=source["stratum"])
                if name in adjudicated:
                    decision = adjudicated[name]
                    row["adjudicated"] = {"unresolved": True} if decision.get("unresolved") else _labels(decision)
            else:
                row["control"] = key["control"]["id"]  # its hand labels stay in ../shared/data/labeled
            out.append(row)
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpdesk_triage.training.annotation", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sample = commands.add_parser("sample", help="draw messages to label into WORK/pool.jsonl")
    sample.add_argument("--corpus", type=Path, required=True)
    sample.add_argument("--labeled", type=Path, required=True, help="the hand-labelled folder (dev.jsonl, train.jsonl): held out")
    sample.add_argument("--exclude-refs", type=Path, action="append", default=[], help="reference files already labelled")
    sample.add_argument("--work", type=Path, required=True)
    sample.add_argument("--uniform", type=int, default=2000)
    sample.add_argument("--escalation", type=int, default=500)
    sample.add_argument("--critical-cue", type=int, default=0, help="rows holding a critical cue of the keyword rules")
    sample.add_argument("--extra-cues", default="", help="comma-separated words that also make a --critical-cue candidate "
                                                           "(e.g. symptoms the rules lack: 痒,头疼,呕吐)")
    sample.add_argument("--uncertain", type=int, default=0, help="active learning: rows the model is least sure of")
    sample.add_argument("--disagree", type=int, default=0, help="active learning: rows where model and rules disagree on escalation")
    sample.add_argument("--exclude-pool", type=Path, action="append", default=[], help="pool.jsonl of an earlier round")
    sample.add_argument("--seed", type=int, default=2026)
    packer = commands.add_parser("pack", help="cut WORK/pool.jsonl into batches with blind controls")
    packer.add_argument("--work", type=Path, required=True)
    packer.add_argument("--labeled", type=Path, required=True, help="the hand-labelled folder: controls come from it")
    packer.add_argument("--batch-size", type=int, default=220)
    packer.add_argument("--controls-per-batch", type=int, default=30)
    packer.add_argument("--seed", type=int, default=7)
    agree = commands.add_parser("agreement", help="κ between the two passes and agreement with the controls")
    agree.add_argument("--work", type=Path, required=True)
    adjudicate = commands.add_parser("adjudication", help="write the rows the two passes disagree on, in batches for a third pass")
    adjudicate.add_argument("--work", type=Path, required=True)
    adjudicate.add_argument("--batch-size", type=int, default=150)
    merge = commands.add_parser("merge", help="write the agreed and adjudicated labels as references")
    merge.add_argument("--work", type=Path, required=True)
    merge.add_argument("--out", type=Path, required=True)
    merge.add_argument("--round", required=True, help="the round's name, recorded in every row (e.g. r1)")
    merge.add_argument("--passes-out", type=Path, default=None, help="also write every pass's answers (no texts) here")
    merge.add_argument("--validation-stratum", action="append", default=[],
                       help="rows of this stratum form the validation split (never trained on); the rest is train")
    check = commands.add_parser("check", help="check one pass's answers to one batch (every item, valid labels)")
    check.add_argument("--work", type=Path, required=True)
    check.add_argument("--pass", dest="pass_name", required=True)
    check.add_argument("--batch", required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "sample":
            held = HeldOut(held_out_texts(args.labeled, args.corpus, args.exclude_refs))
            earlier = {normalize(row["text"]) for path in args.exclude_pool for row in read_jsonl(path)}
            groups = candidates(args.corpus, held, earlier)
            extra = [w.strip() for w in args.extra_cues.split(",") if w.strip()]
            pool = draw(groups, args.uniform, args.escalation, args.seed, critical_cue=args.critical_cue, extra_cues=extra)
            if args.uncertain or args.disagree:
                picked = {row["sha256"] for row in pool}
                rest = with_uid(row for group in SOURCE_MIX for row in groups.get(group, []) if row["sha256"] not in picked)
                pool += model_picks(rest, args.uncertain, args.disagree, args.seed)
            write_jsonl(args.work / "pool.jsonl", pool)
            print(f"{len(pool)} messages: {dict(Counter(r['stratum'] for r in pool))}, "
                  f"{dict(Counter(source_group(r['source']) for r in pool))}")
        elif args.command == "pack":
            pool = read_jsonl(args.work / "pool.jsonl")
            controls = [row for name in ("train.jsonl", "dev.jsonl") for row in read_jsonl(args.labeled / name)]
            for name, items, keys in pack(pool, controls, args.batch_size, args.controls_per_batch, args.seed):
                write_jsonl(args.work / "batches" / f"{name}.jsonl", items)
                write_jsonl(args.work / "keys" / f"{name}.jsonl", keys)
            print(f"{len(list((args.work / 'batches').glob('b*.jsonl')))} batches in {args.work / 'batches'}")
        elif args.command == "agreement":
            print(json.dumps(agreement(args.work), ensure_ascii=False, indent=2))
        elif args.command == "adjudication":
            # Run again as batches come in: rows already sent to adjudication stay in their files.
            existing = sorted((args.work / "adjudication").glob("a*.jsonl"))
            sent = {row["item"] for path in existing for row in read_jsonl(path)}
            rows = [row for row in disagreements(args.work) if row["item"] not in sent]
            for index, start in enumerate(range(0, len(rows), args.batch_size), start=len(existing) + 1):
                write_jsonl(args.work / "adjudication" / f"a{index:03d}.jsonl", rows[start : start + args.batch_size])
            print(f"{len(rows)} new rows to adjudicate in {args.work / 'adjudication'} ({len(sent)} sent before)")
        elif args.command == "merge":
            rows, counts = merged(args.work)
            for row in rows:
                row.update(round=args.round, split="validation" if row["stratum"] in args.validation_stratum else "train")
            write_jsonl(args.out, rows)
            if args.passes_out is not None:
                write_jsonl(args.passes_out, pass_record(args.work, args.round))
            print(f"{len(rows)} rows written to {args.out}; {dict(counts)}")
        elif args.command == "check":
            path = args.work / "labels" / args.pass_name / f"{args.batch}.jsonl"
            folder = "adjudication" if args.pass_name == "adj" else "batches"
            items = read_jsonl(args.work / folder / f"{args.batch}.jsonl")
            answers = read_jsonl(path)
            # An adjudicator may leave a row unresolved; it is then left out of the data.
            unresolved = {a.get("item") for a in answers if args.pass_name == "adj" and a.get("unresolved") is True}
            checked = check_answers([a for a in answers if a.get("item") not in unresolved],
                                    [i for i in items if i["item"] not in unresolved], str(path))
            unusable = sum(not a.get("usable", True) for a in checked.values())
            print(f"{path}: {len(checked) + len(unresolved)} answers, all valid ({unusable} unusable, {len(unresolved)} unresolved)")
    except (OSError, ValueError, KeyError) as exc:
        print(f"annotation {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
