"""The one way to reach the files of ``helpdesk_triage.data`` (the folder ``data/``), to read a TOML table and to
write a file atomically.

Domain tables (labels, SLA policy, reply templates, keyword rules, routing costs …) ship as package data;
code names them by file name and gets a path through :func:`data_file`, wherever the package is installed.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

DATA_PACKAGE = "helpdesk_triage.data"


def data_file(name: str) -> Path:
    """The path of a file shipped in ``data/`` (``"sla_policy.toml"``, ``"team_written/messages_ab.jsonl"``)."""
    return Path(str(files(DATA_PACKAGE).joinpath(name)))


def read_toml(path: Path, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The parsed file; ``error`` ("<path>: …", naming ``what`` the file should be) when it is missing,
    a folder, unreadable or not TOML."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise error(f"{path}: no such {what} file") from None
    except IsADirectoryError:
        raise error(f"{path}: is a folder, expected a TOML {what} file") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from None


def write_text_atomically(path: Path, content: str) -> None:
    """Write ``content`` (UTF-8) to ``path`` so that a reader sees the old file or the whole new one, never half:
    a temporary file in the same folder, flushed to disk, then renamed over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
