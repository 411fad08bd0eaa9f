"""Which texts a model was trained on, kept beside its weights as fingerprints (never the texts themselves).

``trained_texts.sha256`` holds one fingerprint a line: the first 16 hex digits of the SHA-256 of the
normalised text. A model continued from another inherits that model's fingerprints: its weights saw those
rows too. ``triage evaluate`` reads them to find evaluation rows a model has already seen.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from helpdesk_triage.policy.text_normalization import normalize

TRAINED_TEXTS_NAME = "trained_texts.sha256"
FINGERPRINT_HEX = 16


def fingerprint(text: str) -> str:
    return hashlib.sha256(normalize(text).encode("utf-8")).hexdigest()[:FINGERPRINT_HEX]


def write_trained_texts(folder: str | Path, texts: Iterable[str], inherited: Iterable[str] = ()) -> int:
    """Write the fingerprints of ``texts`` and the ``inherited`` fingerprints; the count written."""
    prints = sorted({fingerprint(t) for t in texts if t} | set(inherited))
    path = Path(folder) / TRAINED_TEXTS_NAME
    path.write_text("".join(p + "\n" for p in prints), encoding="ascii")
    path.chmod(0o644)
    return len(prints)


def trained_fingerprints(folder: str | Path | None) -> frozenset[str] | None:
    """The fingerprints recorded for the model in ``folder``; None when it records none (an older model)."""
    if folder is None:
        return None
    path = Path(folder) / TRAINED_TEXTS_NAME
    if not path.is_file():
        return None
    return frozenset(line.strip() for line in path.read_text(encoding="ascii").splitlines() if line.strip())


def trained_on(texts: Iterable[str], prints: frozenset[str] | None) -> list[bool]:
    """Per text: is it one the model was trained on (False for all when nothing is recorded)?"""
    return [bool(prints) and fingerprint(t) in prints for t in texts]
