"""Load, validate and split labelled training data (JSON Lines or CSV) for ``triage train``.

Usage::

    ds, report = load_labelled(["a.jsonl", "b.csv"])   # raises DataValidationError listing every problem
    train_ds, eval_ds = stratified_split(ds, eval_fraction=0.15, seed=13)

Input files
-----------
* ``.jsonl`` / ``.json``: JSON Lines, one object per line; blank lines are ignored. ``.csv``: UTF-8
  with a header row, standard quoting (fields may hold commas, quotes and newlines when quoted).
  A UTF-8 BOM is tolerated in both. The extension is matched case-insensitively; any other
  extension is a problem.
* Fields: ``text`` (required) plus any of ``category``, ``severity``, ``sentiment`` (codes from
  ``data/labels.toml``); ``usable`` (optional); every other field (``id``, ``source``, ``subcase`` ...)
  is ignored. A label that is null, missing, or empty / whitespace-only is a *missing* label for
  that head (the trainer masks it); label strings are stripped of surrounding whitespace but are
  otherwise case-sensitive ("a" is not "A").
* ``usable``: JSON ``false`` / ``0`` or the strings ``"false"`` / ``"0"`` (any case; the only way in
  CSV) mark a row that is skipped and counted; ``true`` / ``1`` / null / empty / absent keep it.

Row numbers
-----------
Every problem reads ``<file>: row <n>: <what>``, ``<file>`` being the path as given and ``<n>`` the
1-based *physical line number* in the file, i.e. what an editor shows:

* JSON Lines: the line of the object (blank lines count as lines, so the numbers stay those of
  the editor).
* CSV: the header is line 1, so the first record is row 2; a record whose quoted text spans
  several lines is numbered by the line on which it starts.

Why the files are not read with ``datasets.load_dataset``
---------------------------------------------------------
The data is parsed here with :mod:`json` / :mod:`csv` and the Dataset is built with
``datasets.Dataset.from_list``. ``load_dataset`` was tried (datasets 5.2) and rejected:

* its JSON reader (pyarrow) fails on a bad line with e.g. ``Unexpected character found when
  decoding 'null'`` - no file, no line - and stops at the first problem;
* its CSV reader (pandas) silently turns a message whose text is ``NA``, ``null``, ``N/A`` ... into
  a missing value, and infers column types;
* it always writes Arrow files and lock files into the HF cache (``~/.cache/huggingface/datasets``),
  even with ``keep_in_memory=True``, keyed by file hash, never cleaned up.

``Dataset.from_list`` keeps the table in memory: nothing is written to disk, no network is
touched (checked with ``HF_HUB_OFFLINE=1``), and ``ds.cache_files`` is empty.

Duplicates
----------
Rows are compared on their normalised text (:func:`data.text_normalization.normalize`, the same
function serving uses). For a repeated text:

* all three labels equal (missing = missing) -> the later row is dropped and counted;
* labels agree wherever both rows have one but one row has labels the other lacks (e.g. one file
  labels only category) -> merged into the first row (it gains the missing heads), the later row
  is dropped and counted; keeping both would put the same text in train and eval;
* some head has two different labels -> a problem naming both rows, since it silently poisons
  training.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from helpdesk_triage.policy.labels import HEADS, LABELS
from helpdesk_triage.policy.text_normalization import normalize

if TYPE_CHECKING:  # pragma: no cover
    import datasets

__all__ = [
    "DataValidationError",
    "IGNORE_INDEX",
    "LoadReport",
    "MAX_PROBLEMS_SHOWN",
    "MIN_ROWS_TO_SPLIT",
    "load_labelled",
    "output_features",
    "stratified_split",
]

IGNORE_INDEX = -100  # the ``<head>_id`` of a missing label (PyTorch's cross-entropy ignore_index)
MAX_PROBLEMS_SHOWN = 20
MIN_ROWS_TO_SPLIT = 10

_JSON_EXTENSIONS = (".jsonl", ".json")
_CSV_EXTENSIONS = (".csv",)
_BOM = b"\xef\xbb\xbf"
_FALSE_STRINGS = frozenset({"false", "0"})
_TRUE_STRINGS = frozenset({"true", "1", ""})


class DataValidationError(ValueError):
    """The training data has problems; ``problems`` holds all of them as ``"<file>: row <n>: <what>"``
    (or ``"<file>: <what>"`` for whole-file problems). ``str(exc)`` shows the first
    :data:`MAX_PROBLEMS_SHOWN`, one per line, then ``… N more``."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        n = len(self.problems)
        lines = [f"{n} problem{'s' if n != 1 else ''} in the training data:"]
        lines += [f"  {p}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        if n > MAX_PROBLEMS_SHOWN:
            lines.append(f"  … {n - MAX_PROBLEMS_SHOWN} more")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class LoadReport:
    files: list[str]
    rows_read: int  # data rows seen (JSON lines / CSV records; blank lines and the header excluded)
    rows_kept: int
    duplicates_dropped: int
    unusable_skipped: int
    label_counts: dict[str, dict[str, int]]  # head -> label code -> kept rows (every code, schema order)
    missing_label_counts: dict[str, int]  # head -> kept rows without a label for that head

    def summary(self) -> str:
        """A few human-readable lines for the CLI."""
        lines = [
            f"{self.rows_kept} rows kept of {self.rows_read} read from {len(self.files)} file(s)"
            f" ({self.duplicates_dropped} duplicates dropped, {self.unusable_skipped} unusable skipped)"
        ]
        for head in HEADS:
            counts = " ".join(f"{code}={n}" for code, n in self.label_counts[head].items())
            lines.append(f"  {head}: {counts} missing={self.missing_label_counts[head]}")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Reading raw records
# --------------------------------------------------------------------------------------------


def _split_lines(data: bytes) -> list[bytes]:
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def _decode_lines(name: str, data: bytes, lines: list[bytes], problems: list[str]) -> tuple[list[str], set[int]]:
    """Decode each line; a line that is not UTF-8 is reported and its (1-based) number returned."""
    out: list[str] = []
    bad: set[int] = set()
    row_problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            row_problems.append(f"{name}: row {number}: not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
            bad.add(number)
            out.append(raw.decode("utf-8", errors="replace"))
    if row_problems:
        # One file-level hint first (Excel on a Chinese Windows saves CSV as GBK).
        try:
            data.decode("gb18030")
        except UnicodeDecodeError:
            pass
        else:
            problems.append(
                f"{name}: {len(row_problems)} line(s) are not UTF-8; the file looks GBK/GB18030-encoded"
                " - save it as UTF-8 (\"CSV UTF-8\" in Excel)"
            )
        problems.extend(row_problems)
    return out, bad


def _read_jsonl(name: str, data: bytes, problems: list[str]) -> list[tuple[int, dict]]:
    lines, bad = _decode_lines(name, data, _split_lines(data), problems)
    records: list[tuple[int, dict]] = []
    first_content = True
    for number, line in enumerate(lines, start=1):
        if number in bad or not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            hint = ""
            if first_content and line.lstrip().startswith("["):
                hint = "; the file looks like a JSON array, expected JSON Lines (one object per line)"
            problems.append(f"{name}: row {number}: invalid JSON ({exc.msg} at column {exc.colno}){hint}")
            first_content = False
            continue
        first_content = False
        if not isinstance(obj, dict):
            problems.append(f"{name}: row {number}: expected a JSON object, got {_json_type(obj)}")
            continue
        records.append((number, obj))
    return records


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def _read_csv(name: str, data: bytes, problems: list[str]) -> list[tuple[int, dict]]:
    lines, bad = _decode_lines(name, data, _split_lines(data), problems)
    # Feed the reader our own physical lines (their "\n" restored, a "\r" before it kept) so that
    # reader.line_num counts exactly the lines an editor shows.
    reader = csv.reader((line + "\n" for line in lines), strict=True)
    records: list[tuple[int, dict]] = []
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            msg = str(exc)
            if "unexpected end of data" in msg:
                msg += " (a quote opened on this row is never closed)"
            problems.append(f"{name}: row {start}: CSV syntax error: {msg}")
            if header is None:
                return []  # no usable header: the rows cannot be read
            continue
        end = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        if any(n in bad for n in range(start, end + 1)):
            if header is None:
                return []  # an undecodable header (already reported): the rows cannot be read
            continue
        if header is None:
            header = [f.strip() for f in fields]
            dupes = sorted({h for h in header if header.count(h) > 1 and h in ("text", "usable", *HEADS)})
            if dupes:
                problems.append(f"{name}: row {start}: header repeats column(s) {dupes}")
            if "text" not in header:
                problems.append(f"{name}: row {start}: header has no 'text' column (columns: {header})")
                return []
            continue
        if len(fields) != len(header):
            problems.append(
                f"{name}: row {start}: {len(fields)} fields but the header has {len(header)}"
                " (an unquoted comma or quote in the text?)"
            )
            continue
        records.append((start, dict(zip(header, fields))))
    if header is None:
        problems.append(f"{name}: empty file (expected a header row with a 'text' column)")
    return records


# --------------------------------------------------------------------------------------------
# Validating records
# --------------------------------------------------------------------------------------------


def _usable(value: Any) -> bool | None:
    """True/False, or None when the value is not understood."""
    if value is None or value is True or value is False:
        return value is not False
    if isinstance(value, (int, float)) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        v = value.strip().lower()
        if v in _FALSE_STRINGS:
            return False
        if v in _TRUE_STRINGS:
            return True
    return None


def _label(value: Any) -> tuple[str | None, str | None]:
    """(code or None when missing, error or None)."""
    if value is None:
        return None, None
    if not isinstance(value, str):
        return None, f"must be a string, got {_json_type(value)} {json.dumps(value, ensure_ascii=False)}"
    code = value.strip()
    if not code:
        return None, None
    return code, None


@dataclass
class _Row:
    text: str
    raw_text: str
    labels: dict[str, str | None]
    source_file: str
    source_row: int
    origin: dict[str, tuple[str, int]]  # head -> (file, row) its label came from (for conflict messages)
    extra: dict[str, str | None] = field(default_factory=dict)  # the ``keep_columns`` values


def _validate_record(
    name: str, number: int, record: dict, require_any_label: bool, problems: list[str]
) -> tuple[str, str, dict[str, str | None]] | None:
    bad = False
    if "text" not in record:
        problems.append(f"{name}: row {number}: no 'text' field")
        bad = True
        raw_text, text = None, ""
    else:
        raw_text = record["text"]
        if not isinstance(raw_text, str):
            problems.append(f"{name}: row {number}: 'text' must be a string, got {_json_type(raw_text)}")
            bad, text = True, ""
        else:
            text = normalize(raw_text)
            if not text:
                problems.append(f"{name}: row {number}: 'text' is empty (or only whitespace / invisible characters)")
                bad = True
    labels: dict[str, str | None] = {}
    for head in HEADS:
        code, error = _label(record.get(head))
        if error is None and code is not None and not LABELS.is_valid(head, code):
            resolved = LABELS.resolve(head, code)
            if resolved is None:
                error = f"{json.dumps(code, ensure_ascii=False)} is not a {head} label"
            code = resolved
        if error is not None:
            allowed = ", ".join(LABELS.codes(head))
            problems.append(f"{name}: row {number}: {head} {error}; allowed: {allowed}, in any case, or their names in data/labels.toml (empty/null when unknown)")
            bad = True
            code = None
        labels[head] = code
    if not bad and require_any_label and all(v is None for v in labels.values()):
        problems.append(f"{name}: row {number}: no label at all (needs at least one of {', '.join(HEADS)})")
        bad = True
    if bad:
        return None
    return text, raw_text, labels


def _describe(code: str | None) -> str:
    return "(missing)" if code is None else repr(code)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def output_features() -> "datasets.Features":
    """The columns of the Dataset :func:`load_labelled` returns."""
    import datasets

    features = {
        "text": datasets.Value("string"),
        "raw_text": datasets.Value("string"),
        **{head: datasets.Value("string") for head in HEADS},
        "source_file": datasets.Value("string"),
        "source_row": datasets.Value("int64"),
        **{f"{head}_id": datasets.Value("int64") for head in HEADS},
    }
    return datasets.Features(features)


def load_labelled(
    paths: Sequence[str | Path], *, require_any_label: bool = True, keep_columns: Sequence[str] = ()
) -> tuple["datasets.Dataset", LoadReport]:
    """Read, validate and de-duplicate labelled rows from JSONL / CSV files (see the module doc).

    Returns an in-memory ``datasets.Dataset`` with the columns ``text`` (normalised), ``raw_text``,
    ``category`` / ``severity`` / ``sentiment`` (None when missing), ``source_file`` (the path as
    given), ``source_row`` (row number as in error messages) and ``category_id`` / ``severity_id`` /
    ``sentiment_id`` (index in ``LABELS.codes(head)``, :data:`IGNORE_INDEX` when missing), in file
    order; and a :class:`LoadReport`.

    ``keep_columns`` (e.g. ``["source"]``, for evaluation slices): extra input fields carried into
    the Dataset as string columns after the others. A value that is absent, null or empty /
    whitespace-only is None; a string is stripped; any other JSON value is written as JSON
    (``3``, ``true``). A de-duplicated row keeps the values of its first occurrence. A name that is
    already an output column (``text``, ``category``, ``source_row`` ...) or ``usable`` is a
    ValueError.

    Raises :class:`DataValidationError` listing every problem of every file at once.
    """
    import datasets

    keep_columns = _check_keep_columns(keep_columns)
    if isinstance(paths, (str, Path)):
        paths = [paths]
    problems: list[str] = []
    if not paths:
        raise DataValidationError(["no data files given"])

    rows: list[_Row] = []
    by_text: dict[str, int] = {}
    rows_read = duplicates = unusable = 0
    seen_files: dict[Path, str] = {}
    names: list[str] = []

    for path in paths:
        name = str(path)
        names.append(name)
        p = Path(path)
        suffix = p.suffix.lower()
        if suffix not in _JSON_EXTENSIONS + _CSV_EXTENSIONS:
            problems.append(
                f"{name}: unsupported file type {p.suffix or '(no extension)'!r};"
                " expected .jsonl / .json (JSON Lines) or .csv"
            )
            continue
        if not p.exists():
            problems.append(f"{name}: no such file")
            continue
        if not p.is_file():
            problems.append(f"{name}: not a file")
            continue
        resolved = p.resolve()
        if resolved in seen_files:
            problems.append(f"{name}: the same file as {seen_files[resolved]} (given twice)")
            continue
        seen_files[resolved] = name
        try:
            data = p.read_bytes()
        except OSError as exc:
            problems.append(f"{name}: cannot read ({exc.strerror or exc})")
            continue
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            problems.append(f"{name}: the file is UTF-16; save it as UTF-8")
            continue
        reader = _read_csv if suffix in _CSV_EXTENSIONS else _read_jsonl
        records = reader(name, data, problems)
        if not records and not any(pr.startswith(f"{name}:") for pr in problems):
            problems.append(f"{name}: no data rows")
        for number, record in records:
            rows_read += 1
            usable = _usable(record.get("usable"))
            if usable is None:
                problems.append(
                    f"{name}: row {number}: 'usable' must be true or false, got"
                    f" {json.dumps(record.get('usable'), ensure_ascii=False)}"
                )
                continue
            if not usable:
                unusable += 1
                continue
            checked = _validate_record(name, number, record, require_any_label, problems)
            if checked is None:
                continue
            text, raw_text, labels = checked
            first_index = by_text.get(text)
            if first_index is None:
                by_text[text] = len(rows)
                extra = {c: _extra_value(record.get(c)) for c in keep_columns}
                rows.append(_Row(text, raw_text, labels, name, number, {h: (name, number) for h in HEADS}, extra))
                continue
            first = rows[first_index]
            clashes = [h for h in HEADS if labels[h] is not None and first.labels[h] is not None and labels[h] != first.labels[h]]
            if clashes:
                for head in clashes:
                    other_file, other_row = first.origin[head]
                    problems.append(
                        f"{name}: row {number}: same text as {other_file} row {other_row} but {head}"
                        f" {_describe(labels[head])} here, {_describe(first.labels[head])} there"
                        f" (text: {text[:40]!r})"
                    )
                continue
            duplicates += 1
            for head in HEADS:  # merge labels the first row lacks (see module doc)
                if first.labels[head] is None and labels[head] is not None:
                    first.labels[head] = labels[head]
                    first.origin[head] = (name, number)

    if not problems and not rows:
        problems.append("no usable rows in " + ", ".join(names))
    if problems:
        raise DataValidationError(problems)

    label_counts = {head: {code: 0 for code in LABELS.codes(head)} for head in HEADS}
    missing = {head: 0 for head in HEADS}
    features = output_features()
    for column in keep_columns:
        features[column] = datasets.Value("string")
    columns: dict[str, list] = {name: [] for name in features}
    codes = {head: {code: i for i, code in enumerate(LABELS.codes(head))} for head in HEADS}
    for row in rows:
        for column in keep_columns:
            columns[column].append(row.extra[column])
        columns["text"].append(row.text)
        columns["raw_text"].append(row.raw_text)
        columns["source_file"].append(row.source_file)
        columns["source_row"].append(row.source_row)
        for head in HEADS:
            code = row.labels[head]
            columns[head].append(code)
            columns[f"{head}_id"].append(IGNORE_INDEX if code is None else codes[head][code])
            if code is None:
                missing[head] += 1
            else:
                label_counts[head][code] += 1
    ds = datasets.Dataset.from_dict(columns, features=features)
    report = LoadReport(
        files=names,
        rows_read=rows_read,
        rows_kept=len(rows),
        duplicates_dropped=duplicates,
        unusable_skipped=unusable,
        label_counts=label_counts,
        missing_label_counts=missing,
    )
    return ds, report


def _check_keep_columns(keep_columns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(keep_columns, str):
        keep_columns = [keep_columns]
    names = tuple(keep_columns)
    reserved = set(output_features()) | {"usable"}
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"keep_columns: column names must be non-empty strings, got {name!r}")
        if name in reserved:
            raise ValueError(f"keep_columns: {name!r} is already a column of the dataset (or 'usable')")
    if len(set(names)) != len(names):
        raise ValueError(f"keep_columns repeats a name: {list(names)}")
    return names


def _extra_value(value: Any) -> str | None:
    """A ``keep_columns`` value as a string; None when absent, null or blank."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    return json.dumps(value, ensure_ascii=False)


def _stratum(category: str | None, severity: str | None, sentiment: str | None) -> str:
    if category is not None:
        return f"category={category}"
    if severity is not None:
        return f"severity={severity}"
    if sentiment is not None:
        return f"sentiment={sentiment}"
    return "none"


def without_texts_of(ds: "datasets.Dataset", held_out: "datasets.Dataset") -> tuple["datasets.Dataset", int]:
    """``ds`` minus the rows whose normalised text also occurs in ``held_out``, and how many were dropped."""
    held_out_texts = set(held_out["text"])
    kept = ds.filter(lambda row: row["text"] not in held_out_texts)
    return kept, len(ds) - len(kept)


def stratified_split(
    ds: "datasets.Dataset", eval_fraction: float = 0.15, seed: int = 13
) -> tuple["datasets.Dataset", "datasets.Dataset"]:
    """Split ``ds`` (as returned by :func:`load_labelled`) into (train, eval), stratified.

    Strata: the category; rows without one by severity, then sentiment, then a "none" stratum.
    A stratum of n rows puts ``floor(n * eval_fraction + 0.5)`` rows in eval, but at least 1 when
    n >= 2 and at most n - 1 (so every stratum of 2+ rows is in both parts; a single row stays in
    train). So each stratum's eval share is within one row of ``n * eval_fraction``.

    Deterministic for a seed on every machine and Python 3 version: strata are visited in sorted
    order and shuffled with ``random.Random(seed)`` (Mersenne Twister, whose shuffle is stable
    across versions; no ``hash()``). Both parts keep the original row order.

    Raises ValueError for fewer than :data:`MIN_ROWS_TO_SPLIT` rows, an ``eval_fraction`` outside
    (0, 1), or a split that would leave either part empty.
    """
    if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)) or not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction!r}")
    n_rows = len(ds)
    if n_rows < MIN_ROWS_TO_SPLIT:
        raise ValueError(
            f"too few rows to split into train and eval: {n_rows} (need at least {MIN_ROWS_TO_SPLIT});"
            " add data or pass a separate evaluation file"
        )
    missing = [c for c in HEADS if c not in ds.column_names]
    if missing:
        raise ValueError(f"dataset lacks column(s) {missing}; expected the output of load_labelled()")
    labels = ds.select_columns(list(HEADS)).to_dict()  # respects an indices mapping (a select()ed ds)
    strata: dict[str, list[int]] = defaultdict(list)
    for i, values in enumerate(zip(*(labels[h] for h in HEADS))):
        strata[_stratum(*values)].append(i)

    rng = random.Random(seed)
    eval_idx: list[int] = []
    for key in sorted(strata):
        members = list(strata[key])
        n = len(members)
        if n < 2:
            continue
        k = min(max(math.floor(n * eval_fraction + 0.5), 1), n - 1)
        rng.shuffle(members)
        eval_idx.extend(members[:k])
    eval_set = set(eval_idx)
    train_idx = [i for i in range(n_rows) if i not in eval_set]
    if not eval_idx or not train_idx:
        raise ValueError(
            f"cannot split {n_rows} rows: every stratum has a single row ({dict(Counter({k: len(v) for k, v in strata.items()}))})"
        )
    return ds.select(train_idx), ds.select(sorted(eval_idx))
