"""The routing cost matrix: what each wrong label costs the help desk, ``cost[head][true][predicted]`` for
category and severity, from ``data/routing_costs.toml`` (its comments derive each number from the handbook's
deadline table) or a desk's own file."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helpdesk_triage.policy.data_files import data_file, read_toml
from helpdesk_triage.policy.labels import LABELS, LabelSchema

DEFAULT_COSTS_PATH = data_file("routing_costs.toml")
COST_HEADS = ("category", "severity")


class CostMatrixError(ValueError):
    """The cost-matrix file is missing or invalid; the message starts with the file name."""


@dataclass(frozen=True)
class RoutingCosts:
    """``matrices[head][true][predicted]`` for each head of :data:`COST_HEADS`; ``source`` names the file."""

    matrices: dict[str, dict[str, dict[str, float]]]
    source: str

    @classmethod
    def load(cls, path: str | Path | None = None, labels: LabelSchema = LABELS) -> "RoutingCosts":
        path = Path(path) if path is not None else DEFAULT_COSTS_PATH
        return cls.from_dict(read_toml(path, "cost-matrix", CostMatrixError), str(path), labels)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<costs>", labels: LabelSchema = LABELS) -> "RoutingCosts":
        problems: list[str] = []
        unknown = sorted(set(raw) - set(COST_HEADS))
        if unknown:
            problems.append(f"unknown table(s) {unknown}; expected {list(COST_HEADS)}")
        matrices: dict[str, dict[str, dict[str, float]]] = {}
        for head in COST_HEADS:
            codes = labels.codes(head)
            table = raw.get(head)
            if not isinstance(table, Mapping):
                problems.append(f"[{head}] table missing (one row per true label: {list(codes)})")
                continue
            extra_rows = sorted(set(table) - set(codes))
            if extra_rows:
                problems.append(f"[{head}] unknown true label(s) {extra_rows}; labels are {list(codes)}")
            matrix: dict[str, dict[str, float]] = {}
            for true in codes:
                row = table.get(true)
                if not isinstance(row, Mapping):
                    problems.append(f"[{head}] row {true!r} missing (costs of predicting each of {list(codes)} when the truth is {true!r})")
                    continue
                extra_cols = sorted(set(row) - set(codes))
                if extra_cols:
                    problems.append(f"[{head}] {true}: unknown predicted label(s) {extra_cols}; labels are {list(codes)}")
                matrix[true] = {}
                for predicted in codes:
                    if predicted not in row:
                        problems.append(f"[{head}] {true}: no cost for predicted {predicted!r}")
                        continue
                    value = row[predicted]
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                        problems.append(f"[{head}] {true}.{predicted} must be a non-negative number, got {value!r}")
                        continue
                    if predicted == true and value != 0:
                        problems.append(f"[{head}] {true}.{true} must be 0 (a correct label costs nothing), got {value!r}")
                        continue
                    matrix[true][predicted] = float(value)
            matrices[head] = matrix
        if problems:
            raise CostMatrixError(f"{source}: invalid cost matrix: " + "; ".join(problems))
        return cls(matrices=matrices, source=source)

    def array(self, head: str, labels: Sequence[str]) -> np.ndarray:
        """The matrix as an array, rows = true, columns = predicted, both in ``labels`` order."""
        m = self.matrices[head]
        return np.array([[m[t][p] for p in labels] for t in labels], dtype=float)
