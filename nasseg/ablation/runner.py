"""Measuring and running a replay.  Costs per variant (params and MACs at the paper's resolution and class
count, latency, field-of-view, optional scaling over resolutions with peak memory) are measured once, before
any proxy trains, and kept in the Optuna study's user attributes; the planned (variant, seed) runs go through
the search's driver (:class:`AblationDriver`) and executors.  :func:`ablate` runs or resumes a replay, then
summarizes (:mod:`nasseg.ablation.stats`) and writes the report (:mod:`nasseg.ablation.render`).  With
``fidelity="auto"`` it first runs a timing probe and a pilot and plans seeds and steps within ``max_hours``
(:mod:`nasseg.ablation.plan`)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasseg import __version__
from nasseg.ablation.plan import (
    PILOT_SEEDS,
    Plan,
    base_fidelity,
    check_max_hours,
    hours,
    largest_effect,
    measure_pilot,
    minimum_seconds,
    pilot_steps,
    plan_replay,
    scaled_recipe,
    step_ladder,
)
from nasseg.ablation.render import write_report
from nasseg.ablation.schema import CostFile, Fidelity, Study, Variant, load_study
from nasseg.ablation.stats import ALPHA, MAX_SEEDS, POWER, POWER_RULE, cfg_res, check_claims, summarize
from nasseg.errors import ConfigError, NassegError, StorageError
from nasseg.search import STATUS_KEY, Job, LatencySpec, PlannedDriver, SearchConfig
from nasseg.study import META_KEY

DEFAULT_STORAGE = "sqlite:///runs/ablations.db"
COST_PREFIX = "cost:"


# ============================================================================================ costs
def field_of_view(genome: Any) -> int | None:
    """Theoretical receptive field (pixels along one side) of the last stage's output, as RegSeg counts it.

    RF = 1 + sum over the encoder's 3x3 (k x k) convolutions of (k - 1) * d * j, where d is the dilation
    (for a D block the largest of its dilations: its widest branch) and j the product of the strides
    before that convolution.  This reproduces the field-of-view column of RegSeg's dilation study
    (``AblationStudies.md``: exp48 3807, exp43 3743 ...).  Defined only for stages of ``conv`` and
    ``dblock`` blocks (None otherwise); the decoder is not counted (RegSeg counts the body).
    """
    rf, jump = 1, 1
    for s in genome.stages:
        blocks: list[tuple[str, dict[str, Any], int]] = []
        if s.down is not None:
            blocks.append((s.down.name, dict(s.down.args), s.stride))
        for j in range(s.depth):
            args = {**dict(s.args), **(dict(s.block_args[j]) if s.block_args else {})}
            blocks.append((s.block, args, s.stride if (j == 0 and s.down is None) else 1))
        for name, args, stride in blocks:
            if name == "conv":
                rf += (int(args["kernel_size"]) - 1) * jump
            elif name == "dblock":
                rf += 2 * max(args["dilations"]) * jump
            else:
                return None
            jump *= stride
    return rf


def peak_memory_bytes(module: Any, input_shape: tuple[int, ...], device: str = "cpu") -> int:
    """Peak memory a forward pass allocates above what was allocated before it (weights and input
    excluded), in bytes.  CUDA: ``torch.cuda.max_memory_allocated``; CPU: the running sum of the
    allocations and frees torch's profiler records (``profile_memory=True``), in time order."""
    import copy as _copy

    import torch

    dev = torch.device(device)
    model = _copy.deepcopy(module).eval().to(dev)
    x = torch.randn(input_shape, device=dev)
    with torch.inference_mode():
        model(x)  # warm-up: lazy allocations of the backend do not count
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            before = torch.cuda.memory_allocated(dev)
            model(x)
            torch.cuda.synchronize(dev)
            return int(torch.cuda.max_memory_allocated(dev) - before)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            model(x)
    events = []
    for e in prof.events():
        amount = e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        if amount:
            events.append((e.time_range.start, amount))
    running = peak = 0
    for _, amount in sorted(events, key=lambda t: t[0]):
        running += amount
        peak = max(peak, running)
    return int(peak)


def cost_key(study: Study, latency: LatencySpec) -> str:
    """What a cost record depends on: the cost section of the study and the latency measurement."""
    d = {"cost": study.spec.cost.model_dump(mode="json"), "latency": latency.defining()}  # eager: as before
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


def measure_variant(genome: Any, cost: CostFile, latency: LatencySpec) -> dict[str, Any]:
    """Params and MACs at the paper's resolution and class count, latency at ``latency`` (on its backend; with
    another than PyTorch eager, the eager record too, as ``latency_eager``), field-of-view, and (optionally) MACs /
    eager latency / peak memory at several resolutions.  Plain JSON values."""
    from nasseg.build import build
    from nasseg.cost import count_macs, count_params, measure_latency
    from nasseg.latency import measure_backend

    net = build(genome, cost.num_classes)
    h, w = cost.resolution
    mc = count_macs(net, (1, 3, h, w))
    shape = (latency.batch, 3, *latency.resolution)
    records = {b: measure_backend(net, shape, latency.device, backend=b, **latency.measure_kwargs()).to_dict()
               for b in dict.fromkeys(("torch", latency.backend))}
    for rec in records.values():
        rec["isolation"] = "exclusive: measured by the ablation driver before any proxy trained"
    lat = records[latency.backend]
    out: dict[str, Any] = {
        "params": count_params(net), "macs": mc.macs, "macs_all": mc.macs_all, "macs_skipped_ops": mc.skipped_ops,
        "macs_resolution": [h, w], "cost_num_classes": cost.num_classes, "latency": lat,
        "latency_ms": lat["median_ms"], "latency_backend": latency.backend,
        "latency_eager_ms": records["torch"]["median_ms"], "fov": field_of_view(genome),
    }
    if latency.backend != "torch":
        out["latency_eager"] = records["torch"]
    if cost.scaling is not None:
        rows = []
        for rh, rw in cost.scaling.resolutions:
            m = count_macs(net, (1, 3, rh, rw))
            row: dict[str, Any] = {"resolution": [rh, rw], "macs": m.macs, "macs_all": m.macs_all}
            if cost.scaling.latency:
                r = measure_latency(net, (1, 3, rh, rw), device=latency.device, warmup=latency.warmup,
                                    runs=cost.scaling.runs, threads=latency.threads, dtype=latency.dtype)
                row.update(latency_ms=r.median_ms, latency_p90_ms=r.p90_ms, latency_cv=r.cv)
            if cost.scaling.peak_memory:
                row["peak_memory_bytes"] = peak_memory_bytes(net, (1, 3, rh, rw), latency.device)
            rows.append(row)
        out["scaling"] = rows
    return out


# =========================================================================================== runner
@dataclass(frozen=True)
class Run:
    variant: Variant
    seed: int


class AblationDriver(PlannedDriver):
    """The search's driver, proposing the planned (variant, seed) runs instead of sampling a space.

    Everything else is inherited: jobs (:meth:`make_job`, except that a job gets no weights path unless
    ``keep_weights``), telling results (:meth:`complete`: metrics, mIoU, seed, fidelity, COMPLETE / FAIL), so
    an ablation trial carries the same user attributes as a search trial, plus ``ablation``, ``variant``,
    ``fidelity_name`` and ``run_seconds`` (the worker's seconds for the whole run, which ``--fidelity auto``
    costs runs with).
    A finished run is one COMPLETE trial with status trained/reused and the same recipe and dataset,
    keyed by (genome_id, seed).
    """

    def __init__(self, cfg: SearchConfig, study: Any, runs: list[Run], costs: dict[str, dict[str, Any]],
                 ablation: str, fidelity: str, num_classes: int, log: Callable[[str], None], *,
                 keep_weights: bool = False):
        self.costs, self.ablation, self.fidelity_name = costs, ablation, fidelity
        self.keep_weights = keep_weights
        super().__init__(cfg, study, runs, num_classes, log)

    def make_job(self, trial: Any, genome: Any, seed: int) -> Job:
        """The search's job, without a weights path unless ``keep_weights``: an ablation reads the mIoU, and its
        proxies' weights (hundreds of MB for a study) are written only when asked (``--keep-weights``)."""
        job = super().make_job(trial, genome, seed)
        if not self.keep_weights:
            job.weights_path = None
        return job

    def _remember(self, t: Any) -> None:
        ua = t.user_attrs
        if ua.get(STATUS_KEY) in ("trained", "reused") and ua.get("recipe_json") == self.recipe_json \
                and ua.get("dataset") == self.cfg.dataset and "seed" in ua:
            self._cache.setdefault((ua["genome_id"], int(ua["seed"])), t)

    def run_key(self, run: Run) -> tuple[str, int]:
        return run.variant.genome_id, run.seed

    def _start(self, trial: Any, run: Run) -> Job:
        from nasseg.genome import to_json, to_string

        v = run.variant
        attrs = {
            "driver": f"{socket.gethostname()}:{os.getpid()}", "genome_id": v.genome_id,
            "genome_json": to_json(v.genome), "genome": to_string(v.genome), "recipe_json": self.recipe_json,
            "dataset": self.cfg.dataset, "ablation": self.ablation, "variant": v.name,
            "fidelity_name": self.fidelity_name, "planned_seed": run.seed,
        }
        attrs.update(self.costs[v.genome_id])
        for k, val in attrs.items():
            trial.set_user_attr(k, val)
        return self.make_job(trial, v.genome, run.seed)

    def complete(self, job: Job, result: dict[str, Any], stopped: bool = False) -> None:
        if result.get("wall_s") is not None:  # the worker's seconds for the whole run (build, data, evaluation)
            job.trial.set_user_attr("run_seconds", round(float(result["wall_s"]), 3))
        super().complete(job, result, stopped)
        self.done_here += 1
        ua = job.trial.user_attrs if job.trial is not None else {}
        m = result.get("metrics") or {}
        what = f"mIoU {m['miou']:.4f}" if result.get("ok") and m.get("miou") is not None else \
            f"failed: {str(result.get('error', ''))[:120]}"
        self.log(f"run {self.done_here}/{self.planned}: {ua.get('variant', '?')} seed {job.seed}: {what} "
                 f"({float(m.get('train_seconds', 0.0)):.1f} s training)")


@dataclass
class AblationConfig:
    study: str  # path of the study file
    storage: str = DEFAULT_STORAGE
    fidelity: str = "proxy"
    seeds: int | None = None
    executor: str = "ray"
    out: str | None = None
    dataset: str | None = None
    report_only: bool = False
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    concurrency: int | None = None
    artifacts: str | None = None
    plot: bool = True
    max_hours: float | None = None  # --fidelity auto: the time budget of the plan
    keep_weights: bool = False  # write each proxy's weights (off: no weights on disk)
    latency_backend: str | None = None  # --latency-backend: overrides the study file's (torch)
    latency_dtype: str | None = None  # --latency-precision, as a dtype name: overrides the study file's


def optuna_study_name(study: Study, fidelity: str) -> str:
    return f"ablation-{study.name}-{fidelity}"


def _dataset_classes(spec: str) -> int:
    from nasseg.data import open_dataset

    return int(open_dataset(spec, "val").num_classes)


def _open_or_create(url: str, name: str, meta: dict[str, Any], log: Callable[[str], None], readonly: bool):
    import optuna

    from nasseg.study import load_study as _load
    from nasseg.study import open_storage, recover_crashed

    if readonly:
        return _load(url, name, readonly=True)
    storage = open_storage(url)
    existing = {s.study_name for s in optuna.study.get_all_study_summaries(storage)}
    if name in existing:
        study = optuna.load_study(study_name=name, storage=storage)
        old = study.user_attrs.get(META_KEY) or {}
        if old.get("kind") != "ablation":
            raise StorageError(f"study {name!r} in this storage was not created by nasseg ablate (kind "
                               f"{old.get('kind')!r}); choose another --storage")
        if old.get("study_sha") != meta["study_sha"]:
            log(f"the study file changed since study {name!r} was last run; finished runs are matched by genome, "
                "seed, recipe and dataset, so only what changed is trained")
            study.set_user_attr(META_KEY, {**old, **meta})
        recover_crashed(study, url, log)
        return study
    study = optuna.create_study(study_name=name, storage=storage, directions=["maximize"])
    study.set_user_attr(META_KEY, meta)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.set_metric_names(["miou"])
    return study


def finished_runs(study: Any, recipe_json: str, dataset: str) -> dict[tuple[str, int], Any]:
    """(genome_id, seed) -> the finished trial (COMPLETE, trained or reused, same recipe and dataset)."""
    import optuna

    out: dict[tuple[str, int], Any] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        ua = t.user_attrs
        if ua.get(STATUS_KEY) in ("trained", "reused") and ua.get("recipe_json") == recipe_json \
                and ua.get("dataset") == dataset and "seed" in ua and ua.get("miou") is not None:
            out.setdefault((ua["genome_id"], int(ua["seed"])), t)
    return out


def probe_seconds_per_step(genome: Any, recipe: Any, device: str, threads: int, steps: int = 3) -> float:
    """A lower estimate of the seconds one training step of ``genome`` takes with ``recipe`` on ``device``: the
    fastest of ``steps`` optimizer steps after one warm-up step, on synthetic images at the recipe's resolution
    and batch (no data loading from disk).  A throwaway model: nothing is stored."""
    import torch

    from nasseg.build import build
    from nasseg.data import open_dataset
    from nasseg.train import train_model

    r = dataclasses.replace(recipe, steps=steps + 1, warmup_steps=0, eval_every=1, eval_batches=1,
                            train_length=recipe.batch_size, val_length=recipe.batch_size, num_workers=0, log_every=1)
    train_ds, val_ds = (open_dataset("synthetic", split, size=r.resolution, length=r.batch_size, seed=0)
                        for split in ("train", "val"))
    marks: list[float] = []
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        torch.manual_seed(0)
        train_model(build(genome, int(train_ds.num_classes)), r, train_ds, val_ds, 0, device,
                    callback=lambda step, m: marks.append(m.train_seconds) is None)
    finally:
        torch.set_num_threads(before)
    per_step = [b - a for a, b in zip(marks, marks[1:])]  # the first step (warm-up) is left out
    return min(per_step) if per_step else marks[-1]


def _measure_costs(study: Any, study_def: Study, fid: Fidelity, costs: dict[str, dict[str, Any]], ckey: str,
                   log: Callable[[str], None]) -> int:
    """Measure the costs of the variants not yet in ``costs`` (stored in the study); how many were measured."""
    n = 0
    for v in study_def.variants:  # costs first, once per variant, while nothing trains
        if v.genome_id in costs:
            continue
        log(f"measuring {v.name}: params and MACs at {cfg_res(study_def.spec.cost.resolution)}, latency "
            f"on {fid.latency.device} at {cfg_res(fid.latency.resolution)}")
        try:
            rec = measure_variant(v.genome, study_def.spec.cost, fid.latency)
        except RuntimeError as e:
            raise NassegError(f"cannot measure variant {v.name!r}: {type(e).__name__}: {str(e)[:300]}") from None
        study.set_user_attr(f"{COST_PREFIX}{v.genome_id}:{ckey}", rec)
        costs[v.genome_id] = rec
        n += 1
    return n


def _train(cfg: AblationConfig, study: Any, study_def: Study, fid: Fidelity, name: str, runs: list[Run],
           costs: dict[str, dict[str, Any]], label: str, log: Callable[[str], None]) -> tuple[int, int, float]:
    """Train ``runs`` with ``fid``'s recipe through the search's driver and executor: (trained, failed,
    worker-seconds of training)."""
    from nasseg.search import run_local, run_ray
    from nasseg.study import Heartbeat, sqlite_path

    scfg = SearchConfig(space=str(cfg.study), storage=cfg.storage, study=name, trials=len(runs),
                        latency_budget_ms=None, latency=fid.latency, mode="constrained",
                        dataset=fid.dataset, recipe=fid.recipe, executor=cfg.executor,
                        ray_address=cfg.ray_address, cpus_per_trial=cfg.cpus_per_trial,
                        gpus_per_trial=cfg.gpus_per_trial, concurrency=cfg.concurrency,
                        progress=False, artifacts=cfg.artifacts)
    driver = AblationDriver(scfg, study, runs, costs, study_def.name, label, _dataset_classes(fid.dataset), log,
                            keep_weights=cfg.keep_weights)
    with Heartbeat(study, driver):  # PostgreSQL: lets a later driver tell a dead one's trials
        if cfg.executor == "local":
            run_local(driver, lambda: None)
        else:
            workdir = (sqlite_path(cfg.storage) or Path("runs/x")).parent / "ray_results"
            run_ray(driver, scfg, lambda: None, workdir)
    return driver.counts["trained"], driver.counts["failed"], driver.trained_s


def _target(study_def: Study) -> tuple[str, float]:
    """The paper's largest effect, or NassegError (nothing is trained) when it has none to plan for."""
    target = largest_effect(study_def)
    if target is None:
        raise NassegError(f"--fidelity auto cannot plan {study_def.path}: the paper gives no mIoU for the reference "
                          f"{study_def.reference!r} and another row, so there is no effect to size seeds for; "
                          "choose --fidelity and --seeds; nothing trained")
    if target[1] == 0:
        raise NassegError(f"--fidelity auto cannot plan {study_def.path}: every paper row has the reference's "
                          "mIoU (largest Delta 0), which no number of seeds detects; nothing trained")
    return target


def _auto_plan(cfg: AblationConfig, study: Any, study_def: Study, base: Fidelity, name: str,
               costs: dict[str, dict[str, Any]], ckey: str, counts: dict[str, int], seconds: dict[str, float],
               t_start: float, log: Callable[[str], None]) -> tuple[Fidelity, Plan]:
    """``--fidelity auto``: probe, costs, pilot, plan (see :mod:`nasseg.ablation.plan`).  Returns the planned
    fidelity and the plan (``counts`` and ``seconds`` accumulate what it measured and trained); NassegError (one
    line) when no plan fits."""
    effect_variant, effect = _target(study_def)
    variants = study_def.variants
    ref, top = study_def.variant(study_def.reference), study_def.variant(effect_variant)
    names = {v.genome_id: v.name for v in variants}
    ps = pilot_steps(base.recipe.steps)
    ladder = step_ladder(base.recipe.steps, ps)
    pilot_fid = dataclasses.replace(base, name="auto-pilot", seeds=PILOT_SEEDS, recipe=scaled_recipe(base.recipe, ps))
    budget = float(cfg.max_hours or 0.0) * 3600
    what = f"cannot resolve the paper's largest effect ({effect_variant} {effect:+.2f} pp) within {cfg.max_hours:g} h"

    def finished_at(steps: int) -> set[tuple[str, int]]:
        rj = scaled_recipe(base.recipe, steps).to_json()
        return {(names[g], s) for g, s in finished_runs(study, rj, base.dataset) if g in names}

    pilot_done = finished_at(ps)
    arms = [(v, s) for v in (ref, top) for s in PILOT_SEEDS]
    missing = [Run(v, s) for v, s in arms if (v.name, s) not in pilot_done]
    if missing:  # up front: can any plan fit? (a probe of a few steps; nothing trained or stored)
        device = "cuda" if cfg.gpus_per_trial > 0 else "cpu"
        sps = probe_seconds_per_step(ref.genome, pilot_fid.recipe, device, max(1, int(cfg.cpus_per_trial)))
        least = minimum_seconds(len(variants), ps, sps, sum(1 for _, s in pilot_done if s in PILOT_SEEDS))
        left = budget - (time.perf_counter() - t_start)
        if least > left:
            raise NassegError(f"{what}: even 2 seeds x {len(variants)} variants x {ps} steps need at least "
                              f"{hours(least)} (timing probe: {sps:.3g} s/step on {device}) and {hours(max(left, 0))} "
                              "of the budget is left; nothing trained")
    t0 = time.perf_counter()
    counts["measured"] += _measure_costs(study, study_def, base, costs, ckey, log)
    seconds["measure"] += time.perf_counter() - t0
    trained_now = 0
    if missing:
        log(f"auto pilot: {len(missing)} run(s) of {ref.name} (reference) and {top.name} (paper {effect:+.2f} pp), "
            f"seeds {', '.join(map(str, PILOT_SEEDS))}, {ps} steps of the {base.name} recipe; kept in study {name!r}")
        trained_now, failed, train_s = _train(cfg, study, study_def, pilot_fid, name, missing, costs, "auto-pilot", log)
        counts["trained"] += trained_now
        counts["failed"] += failed
        seconds["train"] += train_s
    done = finished_runs(study, pilot_fid.recipe.to_json(), base.dataset)
    records = {v.name: [done[(v.genome_id, s)].user_attrs for s in PILOT_SEEDS if (v.genome_id, s) in done]
               for v in (ref, top)}
    if not any(records.values()):
        raise NassegError(f"{what}: every pilot run failed (see the failed trials of study {name!r})")
    pilot = measure_pilot(records, ps, trained_now)
    plan = plan_replay(effect_variant=effect_variant, effect=effect, pilot=pilot, n_variants=len(variants),
                       ladder=ladder, budget_s=budget - (time.perf_counter() - t_start), max_hours=float(cfg.max_hours),
                       finished={s: finished_at(s) for s in ladder})
    study.set_user_attr("auto_plan", {**plan.to_dict(), "base_fidelity": base.name})
    if not plan.feasible:
        raise NassegError(f"{plan.reason}; the pilot's runs are kept in study {name!r} and reused by the next run")
    log(plan.describe())
    fid = Fidelity("auto", f"{base.name} recipe at {plan.steps} steps, {plan.seeds} seeds, planned by --fidelity auto "
                   f"--max-hours {cfg.max_hours:g}", base.dataset, tuple(range(plan.seeds)),
                   scaled_recipe(base.recipe, plan.steps), base.latency)
    return fid, plan


def ablate(cfg: AblationConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or resume) an ablation replay and write its report.  Returns a summary with the report rows
    and the paths written.  Raises NassegError on bad settings, and (``--fidelity auto``) when no plan fits the
    budget."""
    import optuna

    from nasseg.search import EXECUTORS
    from nasseg.study import close_storage, driver_lock, mask_url

    log = log or (lambda s: print(s, file=sys.stderr))
    t_start = time.perf_counter()
    if cfg.executor not in EXECUTORS:
        raise ConfigError(f"--executor = {cfg.executor!r}; valid: {', '.join(EXECUTORS)}")
    if not cfg.cpus_per_trial > 0 or cfg.gpus_per_trial < 0:
        raise ConfigError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    check_max_hours(cfg.fidelity, cfg.max_hours, cfg.seeds, cfg.report_only)
    auto = cfg.fidelity == "auto"
    study_def = load_study(cfg.study)
    if auto:
        _target(study_def)  # no effect to plan for: say so before anything is opened
        fid = study_def.fidelity(base_fidelity(study_def), None, cfg.dataset)
    else:
        fid = study_def.fidelity(cfg.fidelity, cfg.seeds, cfg.dataset)
    if cfg.latency_backend is not None or cfg.latency_dtype is not None:
        from nasseg.latency import check_backend

        fid = dataclasses.replace(fid, latency=dataclasses.replace(
            fid.latency, backend=cfg.latency_backend or fid.latency.backend, dtype=cfg.latency_dtype or
            fid.latency.dtype))
        fid.latency.validate()
        check_backend(fid.latency.backend, fid.latency.device, fid.latency.dtype)  # before anything is opened
    name = optuna_study_name(study_def, fid.name)  # auto: the base fidelity's study, so its runs serve both
    ckey = cost_key(study_def, fid.latency)
    meta = {"kind": "ablation", "ablation": study_def.name, "study_file": str(cfg.study),
            "study_sha": study_def.sha, "fidelity": fid.name, "nasseg_version": __version__}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    counts = {"trained": 0, "failed": 0, "reused_runs": 0, "measured": 0}
    seconds = {"measure": 0.0, "train": 0.0}
    plan: Plan | None = None
    base_name = fid.name
    lock = contextlib.nullcontext() if cfg.report_only else driver_lock(cfg.storage)
    with lock:
        study = _open_or_create(cfg.storage, name, meta, log, readonly=cfg.report_only)
        costs: dict[str, dict[str, Any]] = {}
        for v in study_def.variants:
            rec = study.user_attrs.get(f"{COST_PREFIX}{v.genome_id}:{ckey}")
            if rec is not None:
                costs[v.genome_id] = rec
        if auto:
            fid, plan = _auto_plan(cfg, study, study_def, fid, name, costs, ckey, counts, seconds, t_start, log)
        recipe_json = fid.recipe.to_json()
        if not cfg.report_only:
            done = finished_runs(study, recipe_json, fid.dataset)
            runs = [Run(v, s) for v in study_def.variants for s in fid.seeds if (v.genome_id, s) not in done]
            counts["reused_runs"] = len(study_def.variants) * len(fid.seeds) - len(runs)
            t0 = time.perf_counter()
            counts["measured"] += _measure_costs(study, study_def, fid, costs, ckey, log)
            seconds["measure"] += time.perf_counter() - t0
            if runs:
                log(f"{len(runs)} run(s) to train ({counts['reused_runs']} already finished in study {name!r}); "
                    f"executor {cfg.executor}")
                trained, failed, train_s = _train(cfg, study, study_def, fid, name, runs, costs, fid.name, log)
                counts["trained"] += trained
                counts["failed"] += failed
                seconds["train"] += train_s
            else:
                log(f"all {counts['reused_runs']} run(s) already finished in study {name!r}; nothing to train")
        done = finished_runs(study, recipe_json, fid.dataset)
        if not cfg.report_only:
            close_storage(study._storage)  # a SQLite study ends as one self-contained file
    rows = summarize(study_def, fid, costs, done)
    claims = check_claims(study_def, costs)
    wall = time.perf_counter() - t_start
    used = [t for t in done.values() if t.user_attrs["genome_id"] in {v.genome_id for v in study_def.variants}
            and int(t.user_attrs["seed"]) in fid.seeds]
    starts = [t.datetime_start for t in used if t.datetime_start is not None]
    ends = [t.datetime_complete for t in used if t.datetime_complete is not None]
    history = {"runs": len(used), "train_seconds": sum(float(t.user_attrs.get("train_seconds", 0.0)) for t in used),
               "first_start": min(starts).isoformat(timespec="seconds") if starts else None,
               "last_complete": max(ends).isoformat(timespec="seconds") if ends else None}
    info = {"study": name, "storage": mask_url(cfg.storage), "fidelity": fid.name, "seeds": list(fid.seeds),
            "dataset": fid.dataset, "recipe": fid.recipe.to_dict(), "latency": fid.latency.to_dict(),
            "wall_seconds": wall, "measure_seconds": seconds["measure"], "train_seconds": seconds["train"],
            "counts": counts,
            "executor": cfg.executor, "history": history, "keep_weights": cfg.keep_weights,
            "power": {"alpha": ALPHA, "power": POWER, "max_seeds": MAX_SEEDS, "rule": POWER_RULE},
            "plan": {**plan.to_dict(), "base_fidelity": base_name} if plan is not None else None}
    out_dir = Path(cfg.out) if cfg.out else Path("runs") / "ablations" / f"{study_def.name}-{fid.name}"
    paths = write_report(study_def, fid, rows, claims, info, out_dir, plot=cfg.plot)
    return {**info, "rows": rows, "claims": claims, "paths": paths, "fidelity_spec": fid}
