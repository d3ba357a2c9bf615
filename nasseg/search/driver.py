"""The search driver: the one process that writes the study.

It asks Optuna for a trial, samples a genome, reuses the stored result of a genome already evaluated
with the same recipe and dataset, builds and measures every new candidate (params, MACs, latency, or a
latency predicted by the per-unit cost table when screening) **before** any training, records an
over-budget candidate as *rejected* and never trains it, hands feasible ones to an executor as
:class:`~nasseg.search.jobs.Job` s and tells their results.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasseg import faults
from nasseg.errors import NassegError, StorageError
from nasseg.search.config import SearchConfig
from nasseg.search.jobs import Job
from nasseg.study import STATUS_KEY, checkpoint, failure_message, heartbeat_on, requeue, sqlite_path, study_lock

#: a sampler that proposes this many already evaluated genomes in a row ends the search (a small space)
MAX_DUPLICATES_IN_A_ROW = 100


def counts_towards_trials(t: Any) -> bool:
    """Whether a trial is one of the distinct evaluations ``--trials`` asks for (see :meth:`Driver.finished`):
    neither a sampler's duplicate nor a candidate the zero-cost prefilter skipped."""
    import optuna

    if "reused_from" in t.user_attrs or t.user_attrs.get(STATUS_KEY) == "prefiltered":
        return False
    if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED):
        return True
    return t.state == optuna.trial.TrialState.FAIL and t.user_attrs.get(STATUS_KEY) != "crashed"


class Driver:
    """Owns the study: asks, samples, measures, rejects, reuses and tells.  The only DB writer."""

    def __init__(self, cfg: SearchConfig, study: Any, space: Any, num_classes: int, log: Callable[[str], None],
                 fidelity: dict[str, Any] | None = None, init: dict[str, Any] | None = None):
        self.cfg, self.study, self.space, self.num_classes, self.log = cfg, study, space, num_classes, log
        # the measured rank agreement of this proxy (nasseg.fidelity.rung_tau entry + where), stored on every trial
        self.proxy_fidelity = fidelity
        self.init = init  # --init: {"preset", "key", "path", "genome"} (nasseg.search.run.prepare_init)
        self.recipe_json = cfg.recipe.to_json()
        self.inflight: dict[int, Job] = {}
        # a PostgreSQL study may have several drivers: slots and genomes are claimed under a study lock
        self.shared = sqlite_path(cfg.storage) is None
        self.counts = {"trained": 0, "reused": 0, "rejected": 0, "stopped": 0, "failed": 0, "prefiltered": 0}
        self.trained_s = 0.0  # worker-seconds inside proxy training (summed over parallel workers)
        self.measure_s = 0.0  # driver seconds building and measuring candidates
        self.busy_s = 0.0  # wall seconds during which at least one proxy was in flight
        self._busy_since: float | None = None
        self._cache: dict[str, Any] = {}  # genome_id -> finished FrozenTrial (trained or rejected)
        self.proposing: Any = None  # the trial being sampled and measured (heart-beaten like in-flight ones)
        self.table: Any = None  # nasseg.screen.CostTable when screening
        self.calibration: Any = None
        self.screened = 0  # candidates rejected on a predicted latency
        self.duplicates = 0  # proposals of genomes already evaluated (told as reused copies; not counted)
        self.duplicate_streak = 0  # ... of them in a row
        self.waiting: dict[str, list[Any]] = {}  # genome_id -> duplicate trials waiting for its in-flight job
        self.exhausted = False  # the sampler proposed MAX_DUPLICATES_IN_A_ROW duplicates: stop proposing
        self.fatal: Exception | None = None  # a storage failure met inside Ray Tune's callbacks (run_ray raises it)
        if cfg.screen is not None and cfg.latency_budget_ms is not None and cfg.latency.backend != "torch":
            log(f"screening off with --latency-backend {cfg.latency.backend}: the per-unit cost table times units in "
                f"PyTorch eager, one unit at a time, while {cfg.latency.backend} runs one optimised graph per "
                "candidate (operators fused across unit boundaries), so a sum of units does not predict it; every "
                f"candidate is measured end to end on {cfg.latency.backend}")
        elif cfg.screen is not None and cfg.latency_budget_ms is not None:
            from nasseg.screen import Calibration, CostTable

            ls, sc = cfg.latency, cfg.screen
            backend = getattr(study._storage, "_backend", study._storage)
            self.table = CostTable(ls.device, threads=ls.threads, dtype=ls.dtype, warmup=sc.unit_warmup,
                                   runs=sc.unit_runs, engine=getattr(backend, "engine", None), backend=ls.backend)
            self.calibration = Calibration(sc.min_pairs, sc.margin)
        self.prefilter: Any = None  # nasseg.search.prefilter.Prefilter with --prefilter
        if cfg.prefilter is not None and space is not None:
            from nasseg.search.prefilter import Prefilter

            name, fraction = cfg.prefilter
            old = [t.user_attrs["zero_cost"][name] for t in study.get_trials(deepcopy=False)
                   if name in (t.user_attrs.get("zero_cost") or {})]
            self.prefilter = Prefilter(name, fraction, (fidelity or {}).get("prefilter_entry") or {"tau": 1.0},
                                       num_classes=num_classes, resolution=tuple(cfg.recipe.resolution),
                                       seed=cfg.seed, scores=old)
        for t in study.get_trials(deepcopy=False):
            self._remember(t)
            if self.calibration is not None and t.user_attrs.get("latency_table_ms") is not None:
                lat = t.user_attrs.get("latency") or {}
                if lat.get("method", "measured") == "measured" and "median_ms" in lat:
                    self.calibration.add(t.user_attrs["latency_table_ms"], lat["median_ms"])

    # ---------------------------------------------------------------------------------- bookkeeping
    def _remember(self, t: Any) -> None:
        ua = t.user_attrs
        if ua.get(STATUS_KEY) in ("trained", "rejected") and ua.get("recipe_json") == self.recipe_json \
                and ua.get("dataset") == self.cfg.dataset:
            self._cache.setdefault(ua["genome_id"], t)

    def finished(self) -> int:
        """Trials that count towards --trials: distinct evaluations told, i.e. everything told except crashed
        trials (their genomes are re-queued) and a sampler's duplicates (told with the stored result of the
        same genome, ``reused_from``, so the sampler learns, but they evaluate nothing new)."""
        return sum(1 for t in self.study.get_trials(deepcopy=False) if counts_towards_trials(t))

    def remaining(self) -> int:
        """Trials still to propose.  On a study several drivers share (PostgreSQL), every live driver's trials in
        flight count, so that the drivers together end with exactly --trials (see :func:`nasseg.study.study_lock`)."""
        if self.exhausted:
            return 0
        if not self.shared:
            return self.cfg.trials - self.finished() - len(self.inflight)
        return self.cfg.trials - sum(self._tally(self.study.get_trials(deepcopy=False)))

    def _tally(self, trials: list[Any]) -> tuple[int, int]:
        """(trials counting towards --trials, trials in flight on a live driver that will count)."""
        import optuna

        from nasseg.study import _driver_is_dead

        stale: set[int] = set()
        storage = self.study._storage
        if heartbeat_on(storage):
            with contextlib.suppress(Exception):
                stale = set(storage._get_stale_trial_ids(self.study._study_id))
        flying = sum(1 for t in trials if t.state == optuna.trial.TrialState.RUNNING and "genome_id" in t.user_attrs
                     and "duplicate_of" not in t.user_attrs and t._trial_id not in stale
                     and not _driver_is_dead(t.user_attrs.get("driver")))
        return sum(1 for t in trials if counts_towards_trials(t)), flying

    # ------------------------------------------------------------------------------------- proposing
    def next_batch(self, n: int) -> list[Job]:
        """Up to ``n`` feasible candidates, measured now (nothing is training when this is called)."""
        jobs: list[Job] = []
        guard = 0
        while len(jobs) < n and self.remaining() > 0:
            guard += 1
            if guard > 50 * max(1, n) + 1000:
                raise NassegError("the search space produced no trainable candidate in 1000 draws")
            job = self._propose()
            if job is not None:
                jobs.append(job)
                self.inflight[job.number] = job
        if self.inflight and self._busy_since is None:
            self._busy_since = time.perf_counter()
        return jobs

    def _settle(self) -> None:
        if not self.inflight and self._busy_since is not None:
            self.busy_s += time.perf_counter() - self._busy_since
            self._busy_since = None

    def _propose(self) -> Job | None:
        with study_lock(self.study):  # PostgreSQL: one driver at a time takes a slot and claims a genome
            trials = None
            if self.shared:  # under the lock: nobody else takes a slot or claims a genome meanwhile
                trials = self.study.get_trials(deepcopy=False)
                if self.cfg.trials - sum(self._tally(trials)) <= 0:
                    return None
            trial = self.study.ask()
            self.proposing = trial
            try:
                genome = self._sample(trial, trials)
            except BaseException:
                self.proposing = None
                raise
        try:
            return None if genome is None else self._measure_candidate(trial, genome)
        finally:
            self.proposing = None

    def _elsewhere(self, trial: Any, gid: str, trials: list[Any] | None) -> bool:
        """A shared study: the genome ``gid`` was evaluated or is in flight on another driver (read under the
        study lock).  Evaluated with this recipe: its result is reused.  In flight: this trial is told at once as a
        duplicate of it (PRUNED, ``reused_from``, not counted): nothing can wait for another driver's result."""
        import optuna

        from nasseg.study import _driver_is_dead

        for t in trials or ():
            if t.user_attrs.get("genome_id") != gid or t.number == trial.number:
                continue
            if t.state == optuna.trial.TrialState.RUNNING and "duplicate_of" not in t.user_attrs \
                    and t.number not in self.inflight and not _driver_is_dead(t.user_attrs.get("driver")):
                trial.set_user_attr("duplicate_of", t.number)
                trial.set_user_attr("reused_from", t.number)
                trial.set_user_attr(STATUS_KEY, "reused")
                trial.set_user_attr("reason", f"duplicate of trial {t.number}, which another driver "
                                              f"({t.user_attrs.get('driver')}) was training when this was proposed")
                trial.set_user_attr("train_seconds", 0.0)
                self._tell(trial, "pruned")
                self.counts["reused"] += 1
                return True
            self._remember(t)
        cached = self._cache.get(gid)
        if cached is not None:
            self._reuse(trial, cached)
            return True
        return False

    def _sample(self, trial: Any, trials: list[Any] | None = None) -> Any:
        """Sample the trial's genome and settle duplicates; the genome to measure, or None (told or waiting)."""
        from nasseg.genome import genome_id, to_json, to_string

        trial.set_user_attr("driver", f"{socket.gethostname()}:{os.getpid()}")  # whose it is (recover_crashed)
        storage = self.study._storage
        if heartbeat_on(storage):
            storage.record_heartbeat(trial._trial_id)  # so that a dead driver's trial goes stale
        faults.point("ask")
        try:
            genome = self.space.sample(trial)
        except StorageError:  # the study database itself failed (it is no property of the genome)
            raise
        except NassegError as e:
            self._fail(trial, f"the space produced an invalid genome: {e}")
            return None
        gid = genome_id(genome)
        trial.set_user_attr("genome_id", gid)
        trial.set_user_attr("genome_json", to_json(genome))
        trial.set_user_attr("genome", to_string(genome))
        trial.set_user_attr("recipe_json", self.recipe_json)
        trial.set_user_attr("dataset", self.cfg.dataset)
        if self.proxy_fidelity is not None:
            trial.set_user_attr("proxy_fidelity", self.proxy_fidelity.get("entry"))
        faults.point("sampled")
        cached = self._cache.get(gid)
        training = any(j.genome_id == gid for j in self.inflight.values())
        if cached is not None or training or (self.shared and self._elsewhere(trial, gid, trials)):
            if cached is not None:
                self._reuse(trial, cached)
            elif training:  # the same genome is training right now: this trial takes its result when it arrives
                trial.set_user_attr("duplicate_of", next(n for n, j in self.inflight.items() if j.genome_id == gid))
                self.waiting.setdefault(gid, []).append(trial)
            self.duplicates += 1
            self.duplicate_streak += 1
            if self.duplicate_streak >= MAX_DUPLICATES_IN_A_ROW:
                self.exhausted = True
                self.log(f"stopping: the sampler proposed {self.duplicate_streak} already evaluated genomes in a row; "
                         f"the space seems to hold no new architecture ({self.finished()} distinct evaluated)")
            return None
        self.duplicate_streak = 0
        return genome

    def _measure_candidate(self, trial: Any, genome: Any) -> Job | None:
        """Prefilter, predict or measure a new genome; its job, or None (rejected, prefiltered or failed)."""
        if self.prefilter is not None and not self._passes_prefilter(trial, genome):
            return None
        t0 = time.perf_counter()
        try:
            predicted = self._predict(genome)
            if predicted is not None and self.calibration.rejects(predicted.table_ms, self.cfg.latency_budget_ms):
                self._reject_predicted(trial, predicted)
                return None
            cost = self._measure(genome)
        except StorageError:
            raise
        except NassegError as e:
            self._fail(trial, f"cannot build or measure the genome: {e}")
            return None
        except RuntimeError as e:  # e.g. an architecture too large for the latency device
            self._fail(trial, f"measurement failed: {type(e).__name__}: {str(e)[:300]}")
            return None
        finally:
            self.measure_s += time.perf_counter() - t0
        lat = cost["latency"]["median_ms"]
        if predicted is not None:
            cost["latency_table_ms"] = predicted.table_ms
            self.calibration.add(predicted.table_ms, lat)
        budget = self.cfg.latency_budget_ms
        self._record_cost(trial, cost, lat)
        if budget is not None and lat > budget:
            ls = self.cfg.latency
            close = ""
            if cost.get("latency_decision") == "close":
                lo, hi = cost["latency"]["median_ci_ms"]
                close = f" (close: its 95 % interval [{lo:.2f}, {hi:.2f}] ms straddles the budget after re-measuring)"
            self._reject(trial, f"latency {lat:.2f} ms > budget {budget:g} ms on {ls.device} ({ls.backend}) at "
                                f"{ls.resolution[0]}x{ls.resolution[1]}{close}")
            return None
        return self.make_job(trial, genome, self.cfg.seed)

    def _passes_prefilter(self, trial: Any, genome: Any) -> bool:
        """Score the candidate with the prefilter's zero-cost proxy; below the running quantile it is told PRUNED
        (status ``prefiltered``), neither measured nor trained, and does not count towards --trials."""
        pf = self.prefilter
        try:
            value = pf.score(genome)
        except Exception as e:  # noqa: BLE001 - a proxy that cannot score this genome keeps it (measured as usual)
            self.log(f"prefilter: {pf.name} could not score trial {trial.number} ({type(e).__name__}); kept")
            return True
        keep, threshold = pf.judge(value)
        trial.set_user_attr("zero_cost", {pf.name: value})
        if keep:
            return True
        trial.set_user_attr(STATUS_KEY, "prefiltered")
        trial.set_user_attr("reason", f"zero-cost {pf.name} = {value:.4g} below the top {pf.fraction:g} of the "
                                      f"{len(pf.scores)} candidates scored (threshold {pf.sign * threshold:.4g}); "
                                      "neither measured nor trained")
        trial.set_user_attr("train_seconds", 0.0)
        self._tell(trial, "pruned")
        self.counts["prefiltered"] += 1
        return False

    def _record_cost(self, trial: Any, cost: dict[str, Any], lat: float) -> None:
        """The cost attributes, ``latency_ms`` and the latency constraint of a measured or predicted candidate."""
        budget = self.cfg.latency_budget_ms
        constraint = (lat - budget,) if budget is not None else (0.0,)
        for k, v in cost.items():
            trial.set_user_attr(k, v)
        if cost["latency"].get("warning"):
            trial.set_user_attr("latency_warning", cost["latency"]["warning"])
        trial.set_user_attr("latency_ms", lat)
        trial.set_user_attr("constraint", constraint)
        if budget is not None:  # <= 0 is feasible; constraint-aware samplers and best_trials read it
            trial.set_constraint("latency_over_budget_ms", constraint[0])
        faults.point("measured")

    def _reject(self, trial: Any, reason: str) -> None:
        """Over budget: told PRUNED with status ``rejected`` and the reason, never trained."""
        trial.set_user_attr(STATUS_KEY, "rejected")
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("train_seconds", 0.0)
        self._tell(trial, "pruned")
        self.counts["rejected"] += 1
        self._remember(self.study._storage.get_trial(trial._trial_id))

    def _predict(self, genome: Any) -> Any:
        """The table's prediction, or None (not screening, or the genome cannot be predicted: then it is
        measured end to end, which reports what is wrong with it)."""
        if self.table is None:
            return None
        ls = self.cfg.latency
        try:
            return self.table.predict(genome, self.num_classes, (ls.batch, 3, *ls.resolution))
        except Exception as e:  # noqa: BLE001 - screening is an optimisation; the measurement decides
            self.log(f"latency table: no prediction ({type(e).__name__}: {str(e)[:200]}); measuring end to end")
            return None

    def _reject_predicted(self, trial: Any, p: Any) -> None:
        """Rejected on the table's prediction: recorded as such (``latency.method`` = "predicted"), never as
        a measurement."""
        cal, budget, ls = self.calibration, self.cfg.latency_budget_ms, self.cfg.latency
        lat = p.table_ms * cal.factor
        record = {"method": "predicted", "backend": ls.backend, "median_ms": lat, **p.to_dict(),
                  "calibration": cal.to_dict(),
                  "threshold_ms": cal.threshold(budget), "device": ls.device, "threads": self.table.threads,
                  "dtype": ls.dtype, "resolution": list(ls.resolution), "batch": ls.batch,
                  "table_context": self.table.context}
        self._record_cost(trial, {"params": p.params, "macs": p.macs, "macs_skipped_ops": p.skipped_ops,
                                  "latency": record, "latency_table_ms": p.table_ms}, lat)
        self._reject(trial, f"predicted latency {lat:.2f} ms > {cal.threshold(budget):.2f} ms (budget {budget:g} ms "
                            f"+ {100 * max(cal.margin, cal.error):.0f} % margin) on {ls.device} at {ls.resolution[0]}x"
                            f"{ls.resolution[1]}: sum of {p.units} unit latencies x {cal.factor:.3f}, calibrated on "
                            f"{len(cal.pairs)} candidates measured end to end; not measured end to end")
        self.screened += 1

    def make_job(self, trial: Any, genome: Any, seed: int) -> Job:
        from nasseg.genome import genome_id, to_json

        device = "cuda" if self.cfg.gpus_per_trial > 0 else "cpu"
        threads = max(1, int(self.cfg.cpus_per_trial))
        weights = str((self.cfg.artifacts_dir() / f"trial_{trial.number:05d}" / "model.pt").resolve())
        init = None
        if self.init is not None:
            from nasseg.weights import shared_stages

            stages = shared_stages(genome, self.init["genome"])
            trial.set_user_attr("init", self.init["key"])
            trial.set_user_attr("warm_started_stages", list(stages))
            init = {"path": self.init["path"], "stages": list(stages)} if stages else None
        return Job(trial.number, to_json(genome), self.cfg.recipe.to_dict(), self.cfg.dataset, seed,
                   device, threads, weights, trial, time.perf_counter(), genome_id(genome), init)

    def _measure(self, genome: Any) -> dict[str, Any]:
        """Params, MACs, the eager latency and (another backend) the backend's latency, which decides; with a
        budget inside the decisive record's interval, measured again first (:meth:`_decide`)."""
        from nasseg.build import build
        from nasseg.cost import count_macs, count_params
        from nasseg.screen import units

        net = build(genome, self.num_classes)
        if net.is_classifier:
            raise NassegError("this genome builds an image classifier; segmentation search needs a segmentation "
                              "decoder (use another search space)")
        ls = self.cfg.latency
        h, w = ls.resolution
        shape = (ls.batch, 3, h, w)
        harvest = self.table is not None and self.table.harvests  # time every unit during the warm-up passes
        macs = count_macs(net, (1, 3, h, w), submodules=[p for p, _ in units(net)] if harvest else ())
        observe = (lambda m: self.table.observe(m, macs.by_module, ls.batch)) if harvest else None
        eager = self._latency(net, shape, "torch", genome, observe)
        out: dict[str, Any] = {"params": count_params(net), "macs": macs.macs, "macs_skipped_ops": macs.skipped_ops,
                               "latency_backend": ls.backend, "latency_eager_ms": eager["median_ms"]}
        if ls.backend == "torch":
            out["latency"] = eager
        else:
            out["latency"], out["latency_eager"] = self._latency(net, shape, ls.backend, genome), eager
        if self.cfg.latency_budget_ms is not None:
            out["latency"], out["latency_decision"] = self._decide(net, shape, genome, out["latency"])
        return out

    def _latency(self, net: Any, shape: tuple[int, ...], backend: str, genome: Any,
                 observe: Any = None) -> dict[str, Any]:
        """One checked latency record of ``net`` on ``backend`` (``torch``: eager), as a dict."""
        import functools

        from nasseg.cost import measure_latency_checked
        from nasseg.genome import genome_id
        from nasseg.latency import measure_backend

        ls = self.cfg.latency
        measure = None if backend == "torch" else functools.partial(measure_backend, backend=backend)
        d = measure_latency_checked(net, shape, device=ls.device, observe_warmup=observe, measure=measure,
                                    **ls.measure_kwargs())
        if d.get("noisy"):
            self.log(f"latency of {genome_id(genome)} ({backend}): {d['warning']}")
        d["method"] = "measured"
        d["isolation"] = "exclusive: measured by the driver while no proxy was training"
        return d

    def _decide(self, net: Any, shape: tuple[int, ...], genome: Any, d: dict[str, Any]) -> tuple[dict, str]:
        """(record, decision) for the budget.  A record whose median's interval holds the budget is measured once
        more and the two pooled (their samples together: a narrower interval) before the median decides;
        ``"close"`` when the pooled interval still holds the budget, ``"clear"`` otherwise."""
        from nasseg.cost import pool_records
        from nasseg.genome import genome_id

        budget = self.cfg.latency_budget_ms
        ci = d.get("median_ci_ms")
        if not ci or not ci[0] <= budget <= ci[1]:
            return d, "clear"
        backend = self.cfg.latency.backend
        self.log(f"latency of {genome_id(genome)} ({backend}): median {d['median_ms']:.2f} ms, 95 % interval "
                 f"[{ci[0]:.2f}, {ci[1]:.2f}] holds the budget {budget:g} ms: measuring again before deciding")
        pooled = pool_records(d, self._latency(net, shape, backend, genome))
        lo, hi = pooled["median_ci_ms"]
        return pooled, "close" if lo <= budget <= hi else "clear"

    def _reuse(self, trial: Any, src: Any) -> None:
        # what describes this trial itself, or the run of the source (where and when it trained), is not copied
        skip = {"driver", "genome_id", "genome_json", "genome", "recipe_json", "dataset", "worker", "wall_seconds",
                "requeued_from", "traceback"}
        for k, v in src.user_attrs.items():
            if k not in skip:
                trial.set_user_attr(k, v)
        trial.set_user_attr("reused_from", src.number)
        trial.set_user_attr("train_seconds", 0.0)
        constraint = src.user_attrs.get("constraint")
        if self.cfg.latency_budget_ms is not None and constraint:  # what constraint-aware samplers read
            trial.set_constraint("latency_over_budget_ms", constraint[0])
        status = src.user_attrs.get(STATUS_KEY)
        if status == "trained":
            trial.set_user_attr(STATUS_KEY, "reused")
            self._tell(trial, "complete", values=src.values)
        else:
            trial.set_user_attr(STATUS_KEY, "rejected")
            self._tell(trial, "pruned")
        self.counts["reused"] += 1  # a duplicate's copy (of a trained or a rejected genome): not an evaluation

    # ------------------------------------------------------------------------------------- results
    def intermediate(self, job: Job, step: int, miou: float) -> None:
        with contextlib.suppress(Exception):  # a duplicate step report is harmless
            job.trial.report(miou, step)

    def complete(self, job: Job, result: dict[str, Any], stopped: bool = False) -> None:
        """Tell a job's result, then the duplicates of its genome that were proposed while it trained."""
        self._complete(job, result, stopped)
        for dup in self.waiting.pop(job.genome_id, []):
            self._copy_result(dup, job)

    def _copy_result(self, trial: Any, job: Job) -> None:
        """A duplicate proposed while ``job`` trained its genome: the job's stored result, or its fate."""
        cached = self._cache.get(job.genome_id)
        if cached is not None:
            self._reuse(trial, cached)
            return
        src = self.study._storage.get_trial(job.trial._trial_id)  # failed or stopped early: same state
        status = src.user_attrs.get(STATUS_KEY, "failed")
        trial.set_user_attr("reused_from", src.number)
        trial.set_user_attr(STATUS_KEY, status)
        trial.set_user_attr("reason", f"duplicate of trial {src.number}, proposed while it trained: "
                                      f"{src.user_attrs.get('reason', status)}")
        trial.set_user_attr("train_seconds", 0.0)
        self._tell(trial, "pruned" if status == "stopped" else "fail")
        self.counts["reused"] += 1

    def _complete(self, job: Job, result: dict[str, Any], stopped: bool = False) -> None:
        faults.point("result")
        self.inflight.pop(job.number, None)
        self._settle()
        trial = job.trial
        trial.set_user_attr("wall_seconds", round(time.perf_counter() - job.started, 3))
        if result.get("worker"):
            trial.set_user_attr("worker", result["worker"])
        if result.get("disk_full") is not None:
            self._disk_full(trial, result["disk_full"])
        if not result.get("ok"):
            self._fail(trial, result.get("error", "the worker failed"), result.get("traceback"))
            return
        m = result["metrics"]
        self.trained_s += float(m.get("train_seconds", 0.0))
        trial.set_user_attr("metrics", m)
        trial.set_user_attr("miou", m["miou"])
        trial.set_user_attr("seed", job.seed)
        if job.weights_path and Path(job.weights_path).exists():
            trial.set_user_attr("weights_path", job.weights_path)
        trial.set_user_attr("train_seconds", m.get("train_seconds", 0.0))
        steps = int(m.get("steps_done", 0))
        full = steps >= int(job.recipe["steps"]) and m.get("status", "completed") == "completed"
        trial.set_user_attr("fidelity", {"steps": steps, "planned_steps": job.recipe["steps"],
                                         "resolution": list(job.recipe["resolution"]), "full": bool(full)})
        if stopped or not full:
            trial.set_user_attr(STATUS_KEY, "stopped")
            trial.set_user_attr("reason", f"stopped early at step {steps} of {job.recipe['steps']} (ASHA)")
            with contextlib.suppress(Exception):
                trial.report(m["miou"], steps)
            self._tell(trial, "pruned")
            self.counts["stopped"] += 1
            return
        trial.set_user_attr(STATUS_KEY, "trained")
        values = [m["miou"]] if self.cfg.mode == "constrained" else [m["miou"], trial.user_attrs["latency_ms"]]
        self._tell(trial, "complete", values=values)
        self.counts["trained"] += 1
        self._remember(self.study._storage.get_trial(trial._trial_id))

    def _disk_full(self, trial: Any, path: str) -> None:
        """The proxy trained but its weights could not be written (no space left on the device): not the candidate's
        fault, so it is neither failed nor counted.  Its genome is queued again (status ``crashed``) and the search
        stops with one line naming the path; the same command resumes once space is freed."""
        import errno

        reason = f"no space left on the device to write {path}; re-queued"
        with contextlib.suppress(Exception):  # the study may sit on the full device too: resume recovers it then
            requeue(self.study, trial, reason)
        full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path or str(self.cfg.artifacts_dir()))
        raise StorageError(failure_message(full, self.cfg.storage))

    def _fail(self, trial: Any, reason: str, tb: str | None = None) -> None:
        self.inflight.pop(trial.number, None)
        self._settle()
        trial.set_user_attr(STATUS_KEY, "failed")
        trial.set_user_attr("reason", reason)
        if tb:
            trial.set_user_attr("traceback", tb)
        self._tell(trial, "fail")
        self.counts["failed"] += 1
        self.log(f"trial {trial.number} failed: {reason}")

    def _tell(self, trial: Any, state: str, values: Any = None) -> None:
        import optuna

        st = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
              "fail": optuna.trial.TrialState.FAIL}[state]
        faults.point("before_tell")
        self.study.tell(trial, values=values if st == optuna.trial.TrialState.COMPLETE else None, state=st)
        faults.point("after_tell")
        checkpoint(self.study._storage)


class PlannedDriver(Driver):
    """A driver that runs a planned list of runs instead of sampling a space (ablation replays, fidelity
    studies).  Everything else is the search's: jobs, telling results, failures, heartbeats, crash recovery.

    Subclasses give each run's key in the finished-run cache (:meth:`run_key`, matching what their
    ``_remember`` stores) and start its trial (:meth:`_start`); ``done_here`` counts the runs this driver told.
    A run already finished (by another driver on a shared PostgreSQL study) is skipped, not trained again.
    """

    def __init__(self, cfg: Any, study: Any, runs: Any, num_classes: int, log: Any):
        self.queue = list(runs)
        self.planned = len(self.queue)
        self.done_here = 0
        super().__init__(cfg, study, None, num_classes, log)

    def run_key(self, run: Any) -> Any:
        raise NotImplementedError

    def _start(self, trial: Any, run: Any) -> Job:
        raise NotImplementedError

    def remaining(self) -> int:
        return len(self.queue)

    def finished(self) -> int:
        return self.done_here

    def _propose(self) -> Job | None:
        run = self.queue.pop(0)
        if self.run_key(run) in self._cache:  # finished meanwhile (another driver on PostgreSQL)
            return None
        trial = self.study.ask()
        self.proposing = trial  # heart-beaten like in-flight trials while its attributes are written
        try:
            return self._start(trial, run)
        finally:
            self.proposing = None
