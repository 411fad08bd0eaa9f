"""Reproduce the embedded default model: `python -m helpdesk_triage.training.default_recipe --labeled ../shared/data/labeled`.

Training data: the hand-labelled real messages of `train.jsonl` and of the training part of `dev.jsonl`
(the fixed split of `training/dev_split.py`; the held-out part, listed in `data/dev_holdout_ids.txt`, is
never trained on) plus the team-written messages in `data/team_written/`. A fixed stratified 20% of those
real rows (seed 13) is held out for early stopping and temperature calibration, so the calibration is
fitted on real messages. With `--annotated-corpus` the validation split of `data/annotated_corpus.jsonl`
(2,210 real messages) takes that role instead and every hand-labelled real row trains. With `--corpus`, weak-labelled corpus rows are added (and with `--labeled-corpus`
the real corpus messages labelled per LABELING.md in `data/labeled_corpus.jsonl`, references resolved in the
corpora), and any corpus text that is (or contains, or is contained in) a `dev.jsonl` text or a case of
`data/critical_cases.jsonl` or of the validation split of `data/annotated_corpus.jsonl` is left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

from helpdesk_triage.policy.labels import HEADS
from helpdesk_triage.policy.text_normalization import normalize
from helpdesk_triage.training.augmentation import augmented_rows
from helpdesk_triage.training.corpus_refs import measuring_texts, resolve_refs, write_rows
from helpdesk_triage.training.dataset_io import load_labelled, stratified_split
from helpdesk_triage.training.dev_split import split as split_dev
from helpdesk_triage.training.pipeline import train_from_files
from helpdesk_triage.training.subcase_training import fit_on_annotated_corpus
from helpdesk_triage.training.trainer import SELECT_ON, TrainConfig
from helpdesk_triage.training.weak_labels import HeldOut
from helpdesk_triage.policy.data_files import data_file

DATA = data_file("")
TEAM_WRITTEN = sorted((DATA / "team_written").glob("*.jsonl"))
# Real corpus messages labelled per LABELING.md, committed as references (training/corpus_refs.py).
LABELED_CORPUS = DATA / "labeled_corpus.jsonl"
# Real corpus messages labelled twice and adjudicated (data/annotated_corpus.md); only its train split trains.
ANNOTATED_CORPUS = DATA / "annotated_corpus.jsonl"
DEFAULT_CONFIG = TrainConfig()  # the shipped recipe's settings are TrainConfig's defaults: one place for both
VALIDATION_FRACTION = 0.2
# Each real hand-labelled row is seen this many times per epoch, against once for a team-written row.
REAL_ROW_REPEAT = 2
CORPUS_ROWS = 1500
# Share of the real and team-written training rows that also get one perturbed copy (training/augmentation.py).
AUGMENT_FRACTION = 0.3
# What a run continuing from a model of this recipe replays (training/replay.py): the rows that ship with the package
# and the annotated corpus' train split (references, resolved in the corpora); never a measuring row.
REPLAY_SOURCES = [*({"package": f"team_written/{p.name}"} for p in TEAM_WRITTEN), {"refs": ANNOTATED_CORPUS.name, "split": "train"}]
# What measured it and was never trained on: where a later run's verdict can compare fairly (training/verdict.py).
MEASURING_SOURCES = [{"refs": ANNOTATED_CORPUS.name, "split": "validation"}]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labeled", type=Path, required=True, help="folder holding train.jsonl (hand-labelled real messages)")
    parser.add_argument("--out", type=Path, default=Path("model/default"))
    parser.add_argument("--version", default="triage-e5s-default-5")
    parser.add_argument("--real-repeat", type=int, default=REAL_ROW_REPEAT, help="times each real row is seen per epoch")
    parser.add_argument("--corpus", type=Path, default=None, help="public corpora folder: add weak-labelled rows (never a dev.jsonl text)")
    parser.add_argument("--corpus-rows", type=int, default=CORPUS_ROWS)
    parser.add_argument("--epochs", type=int, default=DEFAULT_CONFIG.epochs)
    parser.add_argument("--patience", type=int, default=DEFAULT_CONFIG.patience,
                        help="stop after this many epochs without a validation gain")
    parser.add_argument("--select-on", choices=SELECT_ON, default=DEFAULT_CONFIG.select_on,
                        help="which epoch to keep: best mean macro-F1 on the validation rows, lowest mean NLL there, or the last")
    parser.add_argument("--augment", type=float, default=AUGMENT_FRACTION, help="share of training rows given a perturbed copy (0 = none)")
    parser.add_argument("--no-dev-part", action="store_true", help="do not train on the training part of dev.jsonl")
    parser.add_argument("--labeled-corpus", action=argparse.BooleanOptionalAction, default=False,
                        help="with --corpus: also train on the labelled corpus messages of data/labeled_corpus.jsonl")
    parser.add_argument("--annotated-corpus", action=argparse.BooleanOptionalAction, default=True,
                        help="with --corpus: also train on the train split of data/annotated_corpus.jsonl (real messages "
                             "labelled twice and adjudicated; its validation split is never trained on)")
    parser.add_argument("--ngram-weight", type=float, default=DEFAULT_CONFIG.ngram_weight,
                        help="share of the character n-gram model in each answer (0 = transformer alone)")
    parser.add_argument("--transformer-from", type=Path, default=None, metavar="DIR",
                        help="skip fine-tuning: reuse the transformer of a model this recipe made (same settings); refit only the n-gram blend")
    parser.add_argument("--fingerprints-only", action="store_true",
                        help="train nothing: write the trained-text fingerprints and replay sources of the model in --out, "
                             "which this recipe trained with the same options (for a model made before they were recorded)")
    parser.add_argument("--soup-with", type=Path, default=None, metavar="DIR",
                        help="average the fine-tuned weights with those of this model folder (same base and layers), then refit temperatures and blend")
    args = parser.parse_args(argv)
    real = args.labeled / "train.jsonl"
    if not real.is_file():
        parser.error(f"{real}: no such file")
    dev = args.labeled / "dev.jsonl"
    config = dataclasses.replace(DEFAULT_CONFIG, epochs=args.epochs, ngram_weight=args.ngram_weight, patience=args.patience,
                                 select_on=args.select_on)
    with tempfile.TemporaryDirectory() as tmp:
        real_files = [str(real)]
        if dev.is_file() and not args.no_dev_part:
            dev_part = Path(tmp) / "dev_train_part.jsonl"
            dev_part.write_text("".join(line + "\n" for line in split_dev(dev)[0]), encoding="utf-8")
            real_files.append(str(dev_part))
        rows, _ = load_labelled(real_files)
        held_out_texts = list(load_labelled([str(dev)])[0]["raw_text"]) if dev.is_file() else []
        if args.corpus is not None:
            # The critical cases and the annotated validation split measure the model: never trained on.
            held_out_texts += measuring_texts(args.corpus)
        train_file, validation_file = Path(tmp) / "real_train.jsonl", Path(tmp) / "real_validation.jsonl"
        if args.corpus is not None and args.annotated_corpus:
            # The annotated validation split (2,210 real rows) decides the epoch, the temperatures and the blend;
            # every hand-labelled real row then trains.
            train_part = rows
            write_rows(_validation_rows(args.corpus), validation_file)
        else:
            train_part, validation_part = stratified_split(rows, eval_fraction=VALIDATION_FRACTION, seed=DEFAULT_CONFIG.seed)
            _write_jsonl(validation_part, validation_file)
        _write_jsonl(train_part, train_file)
        train_files = [train_file, *TEAM_WRITTEN]
        written, _ = load_labelled([str(p) for p in TEAM_WRITTEN])
        labelled_texts = [*rows["text"], *written["text"]]
        if args.corpus is not None and args.labeled_corpus:
            train_files.append(_refs_file(args.corpus, LABELED_CORPUS, held_out_texts, labelled_texts, Path(tmp)))
        if args.corpus is not None and args.annotated_corpus:
            train_files.append(_refs_file(args.corpus, ANNOTATED_CORPUS, held_out_texts, labelled_texts, Path(tmp),
                                          split="train"))
        if args.augment > 0:
            originals = [_labelled_row(row) for ds in (train_part, written) for row in ds]
            augment_file = Path(tmp) / "augmented.jsonl"
            write_rows(augmented_rows(originals, args.augment), augment_file)
            train_files.append(augment_file)
        if args.fingerprints_only:
            return _write_fingerprints(train_files, validation_file, Path(args.out), args.corpus, args.corpus_rows,
                                       held_out_texts, config.seed)
        try:
            train_from_files(train_files, args.out, eval_paths=[validation_file],
                             config=config, version=args.version, log=lambda m: print(m, file=sys.stderr),
                             repeat={str(train_file): args.real_repeat},
                             corpus_dir=args.corpus, corpus_rows=args.corpus_rows, corpus_exclude=held_out_texts,
                             transformer_from=args.transformer_from, soup_with=args.soup_with,
                             record_replay=REPLAY_SOURCES, record_measuring=MEASURING_SOURCES)
            if args.corpus is not None and args.annotated_corpus:
                say = lambda m: print(m, file=sys.stderr)
                print(f"sub-case head: {fit_on_annotated_corpus(args.corpus, Path(args.out), say=say)} rows", file=sys.stderr)
        except (ValueError, FileNotFoundError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    return 0


def _write_fingerprints(train_files: list[Path], validation_file: Path, out: Path, corpus: Path | None, corpus_rows: int,
                        held_out_texts: list[str], seed: int) -> int:
    """What ``train_from_files`` would record for these inputs: the texts trained on (the weak rows drawn as it draws
    them) and the replay sources."""
    import json

    from helpdesk_triage.model.trained_texts import write_trained_texts
    from helpdesk_triage.training.pipeline import _weak_dataset
    from helpdesk_triage.training.replay import MEASURING_KEY, REPLAY_KEY

    train_ds, _ = load_labelled([str(p) for p in train_files])
    eval_ds, _ = load_labelled([str(validation_file)])
    texts = [t for t, n in zip(train_ds["raw_text"], train_ds["text"]) if n not in set(eval_ds["text"])]
    if corpus is not None:
        held_out = [*eval_ds["raw_text"], *train_ds["raw_text"], *held_out_texts, *measuring_texts(corpus)]
        weak_ds, _ = _weak_dataset(corpus, corpus_rows, held_out, seed)
        texts += list(weak_ds["raw_text"])
    count = write_trained_texts(out, texts)
    info_path = out / "training_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8"))
    info[REPLAY_KEY] = REPLAY_SOURCES
    info[MEASURING_KEY] = MEASURING_SOURCES
    info_path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"{out}: {count} trained-text fingerprints, replay sources recorded", file=sys.stderr)
    return 0


def _refs_file(corpus: Path, refs: Path, held_out_texts: list[str], labelled_texts: list[str], tmp: Path,
               split: str | None = None) -> Path:
    """The rows of a references file (only those of ``split`` when given) as a training file. Left out: any that is
    (or contains, or is in) a held-out text, and any whose text is already a training row (labelled there, perhaps
    differently: 从哪里发货的)."""
    held_out, labelled = HeldOut(held_out_texts), set(labelled_texts)
    rows = [row for row in resolve_refs(corpus, refs) if (split is None or row.get("split") == split)
            and normalize(row["text"]) not in held_out and normalize(row["text"]) not in labelled]
    path = tmp / f"{refs.stem}{'_' + split if split else ''}.jsonl"
    write_rows([{"text": row["text"], **{h: row[h] for h in HEADS}} for row in rows], path)
    print(f"{refs.stem}: {len(rows)} {split + ' ' if split else ''}rows", file=sys.stderr)
    return path


def _validation_rows(corpus: Path) -> list[dict]:
    rows = [row for row in resolve_refs(corpus, ANNOTATED_CORPUS) if row.get("split") == "validation"]
    print(f"{ANNOTATED_CORPUS.stem}: {len(rows)} validation rows decide the epoch, temperatures and blend", file=sys.stderr)
    return [{"text": row["text"], **{h: row[h] for h in HEADS}} for row in rows]


def _labelled_row(row: dict) -> dict:
    return {"text": row["raw_text"], **{head: row[head] for head in HEADS if row[head]}}


def _write_jsonl(ds, path: Path) -> None:
    ds.select_columns(["raw_text", "category", "severity", "sentiment"]).rename_column("raw_text", "text").to_json(
        str(path), lines=True, force_ascii=False
    )


if __name__ == "__main__":
    sys.exit(main())
