"""The ONNX Runtime backend: a model folder's optimised (mostly int8) ONNX model, built once into the cache.

The build is ``model.onnx_export``; this module only finds a finished build for a folder and runs it. The
artifact folder is ``<cache>/onnx-int8-<key>`` (key = sha256 of the folder's weights and config, the recipe
version and the onnxruntime version); it holds ``model.onnx``, ``tokenizer.json`` and ``runtime.json`` (build
facts: pad/eos ids, per-layer plan, the check against the torch model). Neither torch nor transformers is
needed at run time: fast tokenizer (``tokenizers``), intra-op threads = available cores.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from helpdesk_triage.model.cache_files import resolve_cache_dir, sha256_file
from helpdesk_triage.model.folder import CONFIG_NAME, WEIGHTS_NAME, ModelConfig
from helpdesk_triage.model.inference import EMBEDDING_OUTPUT
from helpdesk_triage.policy.labels import HEADS

RUNTIME_NAME = "onnx-int8"
RECIPE_VERSION = 3  # 3: the pooled embedding as an output; 2: static int8 activations; 1 was dynamic
ARTIFACT_PREFIX = "onnx-int8-"
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "runtime.json"
OUTPUT_NAMES = (*HEADS, EMBEDDING_OUTPUT)  # the graph's outputs: one per head, then the pooled embedding


class OnnxBackend:
    """A built artifact folder in an ONNX Runtime session; ``config`` is the model folder's."""

    runtime = RUNTIME_NAME

    def __init__(self, artifact: str | Path, config: ModelConfig, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.artifact = Path(artifact)
        meta = json.loads((self.artifact / META_FILE).read_text(encoding="utf-8"))
        self.meta = meta
        self.config = config
        self.threads = threads or available_cores()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle pool threads would otherwise spin for a while after every run, taking CPU from the
        # request threads of the server on a small machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.artifact / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(self.artifact / TOKENIZER_FILE))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.pad_id = int(meta["pad_id"])
        self.eos_id = int(meta["eos_id"])

    def token_ids(self, normalized_texts: Sequence[str]) -> list[list[int]]:
        """Token ids with <s> … </s>, cut at the model window as the transformers tokenizer cuts
        (``truncation=True``: the first max_length - 1 tokens, then </s>)."""
        prefix, window = self.config.text_prefix, self.config.max_length
        ids = [e.ids for e in self.tokenizer.encode_batch([prefix + t for t in normalized_texts])]
        return [x if len(x) <= window else x[: window - 1] + [self.eos_id] for x in ids]

    def token_count(self, normalized_text: str) -> int:
        return len(self.tokenizer.encode(self.config.text_prefix + normalized_text).ids)

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> dict[str, np.ndarray]:
        results = self.session.run(list(OUTPUT_NAMES), {"input_ids": input_ids, "attention_mask": attention_mask})
        return dict(zip(OUTPUT_NAMES, results))


def available_cores() -> int:
    """CPUs this process may use: the affinity mask, capped by a cgroup v2 CPU quota when there is one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)



def artifact_key(model_dir: str | Path) -> str:
    """sha256 over what the optimised model depends on: the folder's config and weights, the recipe, onnxruntime."""
    import onnxruntime

    folder = Path(model_dir)
    digest = hashlib.sha256()
    digest.update(f"recipe={RECIPE_VERSION};onnxruntime={onnxruntime.__version__};".encode())
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{folder} is not a triage model folder (no {name})")
        digest.update(f"{name}={sha256_file(path)};".encode())
    return digest.hexdigest()


def artifact_path(model_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    cache = resolve_cache_dir(cache_dir)
    return cache / f"{ARTIFACT_PREFIX}{artifact_key(model_dir)[:16]}"


def artifact_problem(folder: Path, key: str) -> str | None:
    """Why ``folder`` is not a finished build for ``key``, or None when it is."""
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no metadata"
    except (OSError, ValueError) as error:
        return f"unreadable metadata ({error})"
    if meta.get("key") != key:
        return "built for other weights or another recipe"
    for name, size in (meta.get("files") or {}).items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, expected {size}"
    if not meta.get("files"):
        return "metadata lists no files"
    return None
