"""Executors: where proxies train.  :func:`run_local` trains in this process, one at a time;
:func:`run_ray` on Ray Tune workers (the only importer of ``ray.tune``), through a searcher that
proposes measured candidates only while no worker trains.  Both call :func:`nasseg.search.jobs.run_job`
through its module, so a stand-in patched there (``bench/orchestration.py``) is what they run."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasseg.errors import NassegError, StorageError
from nasseg.search import jobs as _jobs
from nasseg.search import ray_session
from nasseg.search.config import SearchConfig
from nasseg.search.driver import Driver
from nasseg.search.jobs import Job
from nasseg.study import failure_message


def run_local(driver: Driver, progress: Callable[[], None]) -> None:
    """Train candidates one at a time in this process (no Ray); measurement never overlaps training."""
    while driver.remaining() > 0:
        jobs = driver.next_batch(1)
        progress()
        for job in jobs:
            res = _jobs.run_job(job.payload(), lambda s, m, j=job: (driver.intermediate(j, s, m), True)[1])
            driver.complete(job, res)
            progress()


def _ray_trainable(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one proxy run, intermediate mIoU reported to Tune."""
    from ray import tune

    def report(step: int, miou: float) -> bool:
        tune.report({"miou": miou, "step": step, "final": False})
        return True

    res = _jobs.run_job(config["job"], report)
    miou = res["metrics"]["miou"] if res.get("ok") else float("nan")
    step = res["metrics"].get("steps_done", 0) if res.get("ok") else 0
    tune.report({"miou": miou, "step": step, "final": True, "result": json.dumps(res)})


def _searcher_class():
    from ray.tune.search import Searcher

    class MeasureFirstSearcher(Searcher):
        """Ray Tune searcher over the driver: proposes measured, feasible candidates in batches, and only
        while no proxy trains (so latency is measured on idle cores).  It tells early-stopped trials as
        PRUNED, never COMPLETE, and rejected ones never reach Tune.  Pickled by Tune: the driver is not
        part of its state."""

        def __init__(self, driver: Driver, concurrency: int, progress: Callable[[], None]):
            super().__init__(metric="miou", mode="max")
            self.driver, self.concurrency, self.progress = driver, concurrency, progress
            self.jobs: dict[str, Job] = {}
            self.queue: list[Job] = []

        def __getstate__(self) -> dict[str, Any]:
            return {"_metric": self._metric, "_mode": self._mode}

        def __setstate__(self, state: dict[str, Any]) -> None:
            self.__dict__.update(state)

        def save(self, checkpoint_path: str) -> None:  # the study DB is the checkpoint
            pass

        def restore(self, checkpoint_path: str) -> None:
            pass

        def _fatal(self, e: Exception) -> bool:
            """A failure of the study's storage (a full disk, a server gone past the retry window): Tune would only
            log it and go on proposing, so it is kept on the driver, nothing more is proposed, and run_ray raises
            it once the trials in flight have ended."""
            if isinstance(e, StorageError) or failure_message(e, self.driver.cfg.storage) is not None:
                self.driver.fatal = self.driver.fatal or e
                return True
            return False

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            if self.driver.fatal is not None:
                return Searcher.FINISHED
            try:
                return self._suggest(trial_id)
            except Exception as e:
                if self._fatal(e):
                    return Searcher.FINISHED
                raise

        def _suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            d = self.driver
            if not self.queue:
                if self.jobs:  # workers are training: measuring now would disturb the latency
                    return None
                if d.remaining() <= 0:
                    return Searcher.FINISHED
                self.queue.extend(d.next_batch(self.concurrency))
                self.progress()
                if not self.queue:
                    return Searcher.FINISHED if d.remaining() <= 0 else None
            job = self.queue.pop(0)
            self.jobs[trial_id] = job
            return {"job": job.payload()}

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            job = self.jobs.get(trial_id)
            if job is not None and not result.get("final") and math.isfinite(result.get("miou", float("nan"))):
                self.driver.intermediate(job, int(result["step"]), float(result["miou"]))
                self.progress()

        def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                              error: bool = False) -> None:
            try:
                self._on_trial_complete(trial_id, result, error)
            except Exception as e:
                if not self._fatal(e):
                    raise

        def _on_trial_complete(self, trial_id: str, result: dict[str, Any] | None, error: bool) -> None:
            job = self.jobs.pop(trial_id, None)
            if job is None or self.driver.fatal is not None:
                return
            if error or not result:
                self.driver.complete(job, {"ok": False, "error": "the Ray worker died or raised outside the "
                                                                 "proxy (after one retry)"})
            elif result.get("final") and "result" in result:
                self.driver.complete(job, json.loads(result["result"]))
            else:  # stopped by the scheduler before its final report
                m = {"miou": float(result.get("miou", float("nan"))), "steps_done": int(result.get("step", 0)),
                     "status": "stopped", "train_seconds": float(result.get("time_total_s", 0.0))}
                self.driver.complete(job, {"ok": True, "metrics": m}, stopped=True)
            self.progress()

    return MeasureFirstSearcher


def run_ray(driver: Driver, cfg: SearchConfig, progress: Callable[[], None], workdir: Path) -> None:
    """Proxies on Ray Tune workers; a searcher that proposes only when no worker is training."""
    import ray
    from ray import tune

    MeasureFirstSearcher = _searcher_class()
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    started_here = False
    record = None
    quiet = (lambda: contextlib.nullcontext()) if cfg.verbose else (lambda: contextlib.redirect_stdout(io.StringIO()))
    if not ray.is_initialized():
        level = "INFO" if cfg.verbose else "ERROR"
        try:
            with quiet():
                if address:
                    ctx = ray.init(address=address, log_to_driver=cfg.verbose, logging_level=level)
                else:
                    ctx = ray.init(num_cpus=max(1, os.cpu_count() or 1), include_dashboard=cfg.verbose,
                                   log_to_driver=cfg.verbose, logging_level=level, configure_logging=True)
        except Exception as e:
            raise NassegError(f"cannot start or join Ray ({'address ' + address if address else 'local'}): "
                              f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        started_here = True
        session = ray_session.session_dir()
        if not address and session:
            record = ray_session.record(workdir, session)
        res = ray.cluster_resources()
        dashboard = getattr(ctx, "dashboard_url", None)
        driver.log(("Ray: joined the cluster at " + address if address else "Ray: started on this machine")
                   + f", {res.get('CPU', 0):g} CPU(s), {res.get('GPU', 0):g} GPU(s); dashboard "
                   + (f"at http://{dashboard}" if dashboard else "off (--verbose starts it)")
                   + ("" if cfg.verbose else "; Ray's own console output only with --verbose"))
    cluster = ray.cluster_resources()
    per_trial = max(cfg.cpus_per_trial, 1e-3)
    concurrency = cfg.concurrency or max(1, int(cluster.get("CPU", 1) // per_trial))
    if cfg.gpus_per_trial > 0:
        if cluster.get("GPU", 0) <= 0:
            raise NassegError("--gpus-per-trial > 0 but the Ray cluster has no GPU")
        concurrency = min(concurrency, max(1, int(cluster["GPU"] // cfg.gpus_per_trial)))
    searcher = MeasureFirstSearcher(driver, concurrency, progress)
    scheduler = None
    if cfg.asha:
        from ray.tune.schedulers import ASHAScheduler

        steps = int(cfg.recipe.steps)
        every = max(1, int(cfg.recipe.eval_every) or steps)
        scheduler = ASHAScheduler(time_attr="step", metric="miou", mode="max", max_t=steps,
                                  grace_period=min(steps, every), reduction_factor=2)
    resources = {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}
    tuner = tune.Tuner(
        tune.with_resources(_ray_trainable, resources),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    max_concurrent_trials=concurrency, reuse_actors=True),
        run_config=tune.RunConfig(name=f"nasseg-{os.getpid()}", storage_path=str(workdir.resolve()), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1),
                                  checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False)),
    )
    try:
        with quiet(), ray_session.HeadWatch(ray.get_runtime_context().gcs_address, _head_lost):
            tuner.fit()
        if driver.fatal is not None:
            raise driver.fatal
    finally:
        if started_here:
            with quiet():
                ray.shutdown()
            ray_session.forget(record)


def _head_lost(line: str) -> None:
    """What the driver does when its Ray head is gone (:class:`ray_session.HeadWatch`): one line on stderr, then
    exit :data:`ray_session.HEAD_LOST_EXIT` at once.  Ray's client would otherwise retry for a minute and end
    the process from C++; ``os._exit`` leaves the study as a killed driver does (everything told is committed,
    trials in flight stay RUNNING and are recovered by the next run), and the driver lock goes with the process."""
    import sys

    with contextlib.suppress(Exception):
        sys.stdout.flush()
    print(f"nasseg: error: {line}", file=sys.stderr, flush=True)
    os._exit(ray_session.HEAD_LOST_EXIT)
