"""The build cache (``TRIAGE_CACHE_DIR``, default ``~/.cache/helpdesk-triage``) shared by the base encoder and
the optimised ONNX models: where it is, file hashes, and publishing a finished build atomically under a lock.

Readers need no lock: a build only becomes visible through an atomic rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from helpdesk_triage.policy.settings import Settings


def resolve_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """``cache_dir`` when given, else the ``cache_dir`` setting (``TRIAGE_CACHE_DIR``)."""
    return Path(cache_dir).expanduser() if cache_dir is not None else Settings().cache_dir.expanduser()


def sha256_file(path: str | Path, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[bool]:
    """Serialise builders of one folder across processes; yields whether the lock is real."""
    try:
        import fcntl
    except ImportError:  # not POSIX: only the atomic rename protects concurrent builds
        yield False
        return
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def staging_folder(cache: Path, target_name: str) -> Path:
    """A fresh, private name beside the target for a build in progress."""
    return cache / f".{target_name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_abandoned_staging(cache: Path, target_name: str) -> None:
    """Staging folders of builds that died (only called while holding the builder lock)."""
    for leftover in cache.glob(f".{target_name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def publish(staging: Path, target: Path) -> None:
    """Move a finished build into place; a previous (invalid) build is moved aside first."""
    if target.exists():
        discarded = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, discarded)
        shutil.rmtree(discarded, ignore_errors=True)
    os.replace(staging, target)
