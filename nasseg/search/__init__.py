"""Latency-constrained architecture search: an Optuna study in SQL, proxies on Ray Tune workers.

The only importer of Optuna's study API and of ``ray.tune``.  One driver process owns the study:

1. ``study.ask()``, then ``space.sample(trial)`` -> genome;
2. a genome already evaluated with the same recipe and dataset is *reused* (its result copied, not trained);
3. otherwise the genome is built and measured (params, MACs, latency on the target device) **before**
   any training; over the budget it is told as *rejected* (Optuna state PRUNED, no value, a reason,
   zero training time) and never trained;
4. feasible genomes train a short proxy on a Ray Tune worker (or in-process with ``--executor local``);
   intermediate mIoU goes to the trial as intermediate values; with ``--asha`` a trial stopped early is
   told as PRUNED with its last fidelity, never as COMPLETE, so it can never reach ``best_trials`` or
   the Pareto front;
5. the driver tells the result: COMPLETE with ``miou`` (constrained) or ``(miou, latency_ms)`` (pareto),
   and the latency constraint stored for constraint-aware samplers (TPE, NSGA-II), so
   ``study.best_trials`` is feasible-only.

Latency is never measured while a proxy trains: candidates are measured in batches while no worker
runs (recorded in each latency record's ``isolation``).  The study is a plain Optuna RDB storage:
``optuna studies --storage URL``, ``optuna.load_study`` and optuna-dashboard open it unmodified.
Every trial's user attributes hold the genome JSON/string/id, params, MACs, the latency record, the
proxy metrics, the recipe, the dataset and the fidelity.

Layout: :mod:`.config` (settings, study metadata, samplers), :mod:`.jobs` (what a worker runs),
:mod:`.driver` (the only writer of the study), :mod:`.executors` (local and Ray), :mod:`.run` (the
:func:`search` entry point) and :mod:`.results` (reading a study back).  Storage (URLs, opening, locks,
heartbeats, crash recovery) is :mod:`nasseg.study`; the command line is :mod:`nasseg.cli.search`.
"""

from nasseg.search.config import (
    DEFINING,
    EXECUTORS,
    MODES,
    SAMPLERS,
    LatencySpec,
    ScreenSpec,
    SearchConfig,
    latency_defining,
    make_sampler,
    resumed_seed,
    study_meta,
)
from nasseg.search.driver import Driver, PlannedDriver, counts_towards_trials
from nasseg.search.executors import run_local, run_ray
from nasseg.search.jobs import Job, run_job, worker_info
from nasseg.search.results import trials_frame
from nasseg.search.run import check_devices, dataset_classes, search
from nasseg.study import META_KEY, STATUS_KEY

__all__ = [
    "DEFINING", "EXECUTORS", "MODES", "SAMPLERS", "META_KEY", "STATUS_KEY",
    "LatencySpec", "ScreenSpec", "SearchConfig", "latency_defining", "make_sampler", "resumed_seed", "study_meta",
    "Driver", "PlannedDriver", "counts_towards_trials", "Job", "run_job", "worker_info", "run_local", "run_ray",
    "search", "check_devices", "dataset_classes", "trials_frame",
]
