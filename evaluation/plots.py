"""The report's figures as PNG bytes: confusion matrices, reliability diagrams, the coverage curve.

Drawn with matplotlib's object API on the Agg renderer (no pyplot state, no display needed). All
text in the figures is ASCII (label codes, "low", model versions with anything else replaced), so
no CJK font is needed.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["PNG_SIGNATURE", "confusion_png", "coverage_png", "reliability_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DPI = 100


def _ascii(text: str) -> str:
    return str(text).encode("ascii", "replace").decode("ascii")


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight", metadata={"Software": None})
    return buf.getvalue()


def confusion_png(confusion: Sequence[Sequence[int]], labels: Sequence[str], title: str) -> bytes:
    """Counts in each cell; colour = share of the true label's row (so rare labels stay visible)."""
    cm = np.asarray(confusion, dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    k = len(labels)
    size = 1.2 + 0.8 * k
    fig = _figure(size + 0.8, size)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true row")
    ticks = [_ascii(x) for x in labels]
    ax.set_xticks(range(k), ticks, rotation=30 if max(map(len, ticks)) > 3 else 0)
    ax.set_yticks(range(k), ticks)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(_ascii(title), fontsize=10)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=9,
                    color="white" if share[i, j] > 0.55 else "black")
    return _png(fig)


def reliability_png(bins: Sequence[Mapping], title: str, ece: float | None) -> bytes:
    """Accuracy per confidence bin against the diagonal (perfect calibration), row counts in the bars."""
    fig = _figure(4.6, 4.2)
    ax = fig.add_subplot()
    centres = [(b["lower"] + b["upper"]) / 2 for b in bins]
    width = bins[0]["upper"] - bins[0]["lower"] if bins else 0.1
    accuracy = [b["accuracy"] if b["accuracy"] is not None else 0.0 for b in bins]
    ax.bar(centres, accuracy, width=width * 0.92, color="#4c78a8", edgecolor="#2a4a6b", label="accuracy in bin")
    gap_x = [c for c, b in zip(centres, bins) if b["count"]]
    gap_y = [b["confidence"] for b in bins if b["count"]]
    ax.plot(gap_x, gap_y, "o", color="#e45756", markersize=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="perfect calibration")
    for c, b in zip(centres, bins):  # rows per bin, at the foot of the bar
        if b["count"]:
            ax.text(c, 0.015, str(b["count"]), ha="center", va="bottom", fontsize=7,
                    color="white" if (b["accuracy"] or 0) > 0.06 else "black")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.08)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    suffix = "" if ece is None else f"  (ECE {ece:.3f})"
    ax.set_title(_ascii(title + suffix), fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=7, frameon=False)
    return _png(fig)


def coverage_png(curves: Mapping[str, Mapping], main: str) -> bytes:
    """Left: coverage and accuracy of ``main`` against the threshold, the target point marked.
    Right: accuracy against coverage for every classifier in ``curves`` (name -> coverage report)."""
    fig = _figure(9.6, 4.0)
    left, right = fig.subplots(1, 2)
    report = curves[main]
    curve = report["curve"]
    thresholds = [p["threshold"] for p in curve]
    left.plot(thresholds, [p["coverage"] for p in curve], "-o", markersize=3, label="coverage (auto-routed)")
    left.plot(thresholds, [np.nan if p["accuracy"] is None else p["accuracy"] for p in curve], "-s", markersize=3,
              label="accuracy on auto-routed")
    at = report["at_target"]
    left.axvline(at["threshold"], color="grey", linestyle="--", linewidth=1)
    left.annotate(
        f"{at['target']:.0%} target: t={at['threshold']:.2f}\ncoverage {at['coverage']:.1%}, acc {at['accuracy']:.1%}",
        xy=(at["threshold"], at["accuracy"]), xytext=(0.03, 0.12), textcoords="axes fraction", fontsize=8,
        arrowprops={"arrowstyle": "->", "color": "grey"},
    )
    left.set_xlim(0, 1)
    left.set_ylim(0, 1.02)
    left.set_xlabel("review threshold on category confidence")
    left.set_title(_ascii(f"{main}: category"), fontsize=10)
    left.legend(loc="lower left", fontsize=7, bbox_to_anchor=(0.0, 0.25))
    for name, rep in curves.items():
        points = [p for p in rep["curve"] if p["accuracy"] is not None]
        right.plot([p["coverage"] for p in points], [p["accuracy"] for p in points], "-o", markersize=3,
                   label=_ascii(name), linewidth=2 if name == main else 1)
    right.axvline(at["target"], color="grey", linestyle="--", linewidth=1)
    right.set_xlim(0, 1.02)
    right.set_ylim(0, 1.02)
    right.set_xlabel("coverage (share auto-routed)")
    right.set_ylabel("category accuracy")
    right.set_title("accuracy vs coverage", fontsize=10)
    right.legend(loc="lower left", fontsize=7)
    return _png(fig)
