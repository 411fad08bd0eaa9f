"""Shared fixtures: where the read-only shared data lies, and the embedded model's version.

The shared folder (``../shared/data`` beside the repository: label guide, hand-labelled rows, corpora) is
not part of the repository; tests that need it are skipped where it is absent. Tests marked ``slow`` (real
training and benchmarks) are left out of the default run (``addopts`` in pyproject.toml); ``-m slow`` runs them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpdesk_triage.model.folder import DEFAULT_MODEL_DIR, ModelConfig

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def _shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"no {path} here (the shared data folder is not next to the repository)")
    return path


@pytest.fixture(scope="session")
def shared_dev() -> Path:
    """The hand-labelled dev set, ``dev.jsonl``."""
    return _shared(SHARED_DATA / "labeled" / "dev.jsonl")


@pytest.fixture(scope="session")
def shared_corpora() -> Path:
    """The folder of real public customer texts."""
    return _shared(SHARED_DATA / "corpora")


@pytest.fixture(scope="session")
def embedded_version() -> str:
    return ModelConfig.load(DEFAULT_MODEL_DIR).version


@pytest.fixture(scope="module")
def torch_runtime():
    """The torch runtime for a module's tests (``pytestmark = pytest.mark.usefixtures("torch_runtime")``): a training run
    ends with a verdict that loads models, and tiny ones need no ONNX build."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIAGE_RUNTIME", "torch")
        yield
