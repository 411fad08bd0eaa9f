"""`triage predict --engine ray`: the archive job on Ray Data.

The dataset is the list of shards still to do (``api.archive_scoring``); ``map_batches`` sends each to a pool of
actors, each holding one model — one ONNX Runtime session whose threads are the actor's CPUs — that reads the
shard's rows from the input file, scores them and writes the shard's files with :func:`score_shard`, the code the
local engine runs. Both engines therefore write the same files, and a re-run of either skips the same finished
shards. Every node must see the input and output paths (one machine, or a shared file system) and have this
package installed. Ray is imported here only: ``pip install -e '.[ray]'``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, replace
from datetime import datetime
from functools import partial

from helpdesk_triage.api.archive_scoring import Progress, RowScorer, Runner, ScoringError, ScoringJob, Shard, score_shard

RAY_MISSING = "--engine ray needs Ray: pip install -e '.[ray]'"
# Passed to the actors, wherever they run: the settings and the offline switches of this process.
_FORWARDED_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


def require_ray() -> None:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise ScoringError(RAY_MISSING) from None


class ShardWorker:
    """One Ray actor: the model loaded once, then one shard per call."""

    def __init__(self, job: ScoringJob, started_at: str, threads: int) -> None:
        self.job = job
        self.started_at = datetime.fromisoformat(started_at)
        self.scorer = RowScorer(job.model_dir, threads=threads)

    def __call__(self, batch: dict) -> dict:
        results = []
        for spec in batch["shard"]:
            shard = Shard(**{**json.loads(spec), "header": tuple(json.loads(spec)["header"])})
            try:
                stats = score_shard(self.job, shard, self.scorer, self.started_at)
                results.append(json.dumps({"rows": stats.rows, "scored": stats.scored}))
            except ScoringError as exc:  # strict: the first bad row; the driver stops the job
                results.append(json.dumps({"rows": 0, "scored": 0, "error": str(exc)}))
        return {"result": results}


def ray_runner(address: str | None = None, cpus_per_actor: int = 1, actors: int | None = None,
               num_cpus: int | None = None) -> Runner:
    """The runner for ``archive_scoring.run_job``; ScoringError at once when Ray is not installed."""
    require_ray()
    if cpus_per_actor < 1 or (actors is not None and actors < 1):
        raise ScoringError("--ray-cpus-per-actor and --ray-actors must be at least 1")
    return partial(run_on_ray, address=address, cpus_per_actor=cpus_per_actor, actors=actors, num_cpus=num_cpus)


def run_on_ray(job: ScoringJob, shards: list[Shard], started_at: datetime, progress: Progress, *,
               address: str | None = None, cpus_per_actor: int = 1, actors: int | None = None,
               num_cpus: int | None = None) -> None:
    import ray
    import ray.data

    # Workers may run in another folder (or on another node): every path they see is absolute.
    job = replace(job, output=job.output.resolve(), model_dir=job.model_dir.resolve() if job.model_dir else None)
    _build_onnx_once(job)
    env = {k: v for k, v in os.environ.items() if k.startswith("TRIAGE_") or k in _FORWARDED_ENV}
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=False, runtime_env={"env_vars": env}, logging_level="ERROR")
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours is the one bar
        cpus = int(ray.cluster_resources().get("CPU", 1))
        size = max(1, min(len(shards), actors or cpus // cpus_per_actor))
        specs = [json.dumps(asdict(s)) for s in shards]
        dataset = ray.data.from_items([{"shard": spec} for spec in specs], override_num_blocks=len(specs))
        scored = dataset.map_batches(
            ShardWorker, batch_size=1, num_cpus=cpus_per_actor, compute=ray.data.ActorPoolStrategy(size=size),
            fn_constructor_kwargs={"job": job, "started_at": started_at.isoformat(), "threads": cpus_per_actor})
        for row in scored.iter_rows():
            result = json.loads(row["result"])
            if "error" in result:
                raise ScoringError(result["error"])
            progress.rows(result["scored"])
            progress.rows(result["rows"] - result["scored"], True)
    finally:
        if started_here:
            ray.shutdown()


def _build_onnx_once(job: ScoringJob) -> None:
    """Build the optimised model into the cache before the actors start, so that they do not all build it."""
    from helpdesk_triage.model.folder import DEFAULT_MODEL_DIR, is_model_folder
    from helpdesk_triage.policy.settings import Settings

    settings = Settings()
    folder = job.model_dir or DEFAULT_MODEL_DIR
    if settings.runtime != "onnx-int8" or not is_model_folder(folder):
        return
    from helpdesk_triage.model.onnx_export import build_onnx_model

    try:
        build_onnx_model(folder, settings.cache_dir)
    except Exception:  # noqa: BLE001 - the actors then serve the torch model, as TriageModel.load does
        pass
