"""Reading a user-supplied TOML table file, with one set of messages for the ways it can be unreadable."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any


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
