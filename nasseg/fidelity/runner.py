"""Running a fidelity study: choose the genomes (before anything is opened), score them with the zero-cost
proxies, train every (genome, rung, seed) run through the search's driver (:class:`FidelityDriver`) and
executors, then summarize (:mod:`nasseg.fidelity.summary`), store the result in the study and write the
report (:mod:`nasseg.fidelity.render`).

Stored in the Optuna study (one trial per run; nasseg's records in user attributes):

* trial: ``genome``, ``genome_id``, ``genome_json``, ``rung`` (steps), ``seed``, ``recipe_json`` (the rung's
  full recipe), ``dataset``, and from the search's driver ``metrics`` (mIoU, per-class IoU, loss curve ...),
  ``miou``, ``train_seconds``, ``fidelity``, ``worker``, ``nasseg_status``;
* study ``nasseg`` (:data:`~nasseg.study.META_KEY`): ``kind`` "fidelity", what defines the study (space and its
  sha, dataset, recipe without its rung fields, rungs, seeds, genome ids, proxies ...) and, once computed,
  ``result`` (:func:`nasseg.fidelity.summary.summarize`);
* study ``genome:<genome_id>``: the genome (string and JSON), where it came from and, under a budget, its
  latency record;
* study ``zero_cost:<genome_id>:<settings hash>``: the proxies' scores, errors and seconds, with the settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasseg import faults
from nasseg.errors import ConfigError, NassegError, StorageError
from nasseg.fidelity.config import DEFINING, FidelityConfig, load_genome_list, proxy_settings, selection, study_meta
from nasseg.fidelity.select import Selected, select_genomes
from nasseg.search import STATUS_KEY, Job, PlannedDriver, SearchConfig
from nasseg.search.config import file_sha
from nasseg.study import META_KEY, mask_url

GENOME_PREFIX = "genome:"
ZERO_COST_PREFIX = "zero_cost:"


@dataclass(frozen=True)
class Run:
    """One planned training run: a genome at a rung (its recipe) with a seed."""

    selected: Selected
    rung: int
    seed: int
    recipe: Any  # nasseg.train.Recipe

    @property
    def key(self) -> tuple[str, int, str]:
        return self.selected.genome_id, self.seed, self.recipe.to_json()


class FidelityDriver(PlannedDriver):
    """The search's driver, proposing the planned (genome, rung, seed) runs instead of sampling a space.

    Each run carries its rung's recipe; everything else (telling results with metrics, mIoU, seed, fidelity;
    failures; heartbeats) is inherited, so a fidelity trial carries the user attributes of a search trial plus
    ``rung``.  A finished run is a COMPLETE trial with status trained and the same genome, seed, recipe and
    dataset; it is never trained again.  ``on_run(event)`` is called after every finished run.
    """

    def __init__(self, cfg: SearchConfig, study: Any, runs: Sequence[Run], num_classes: int,
                 log: Callable[[str], None], on_run: Callable[[dict[str, Any]], None] | None = None):
        self.on_run = on_run
        super().__init__(cfg, study, runs, num_classes, log)

    def _remember(self, t: Any) -> None:
        ua = t.user_attrs
        if ua.get(STATUS_KEY) == "trained" and ua.get("dataset") == self.cfg.dataset and "seed" in ua:
            self._cache.setdefault((ua["genome_id"], int(ua["seed"]), ua.get("recipe_json")), t)

    def run_key(self, run: Run) -> tuple[str, int, str]:
        return run.key

    def _start(self, trial: Any, run: Run) -> Job:
        from nasseg.genome import to_json

        s = run.selected
        attrs = {"driver": f"{socket.gethostname()}:{os.getpid()}", "genome_id": s.genome_id,
                 "genome_json": to_json(s.genome), "genome": _string(s.genome),
                 "recipe_json": run.recipe.to_json(), "dataset": self.cfg.dataset, "rung": run.rung,
                 "seed": run.seed}
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        faults.point("sampled")
        device = "cuda" if self.cfg.gpus_per_trial > 0 else "cpu"
        return Job(trial.number, attrs["genome_json"], run.recipe.to_dict(), self.cfg.dataset, run.seed, device,
                   max(1, int(self.cfg.cpus_per_trial)), None, trial, time.perf_counter(), s.genome_id)

    def complete(self, job: Job, result: dict[str, Any], stopped: bool = False) -> None:
        super().complete(job, result, stopped)
        self.done_here += 1
        m = result.get("metrics") or {}
        event = {"done": self.done_here, "planned": self.planned, "genome_id": job.genome_id,
                 "rung": int(job.recipe["steps"]), "seed": job.seed, "ok": bool(result.get("ok")),
                 "miou": m.get("miou") if result.get("ok") else None,
                 "error": None if result.get("ok") else str(result.get("error", ""))[:200],
                 "train_seconds": float(m.get("train_seconds") or 0.0)}
        if self.on_run is not None:
            self.on_run(event)
        else:
            self.log(run_line(event))


def _string(genome: Any) -> str:
    from nasseg.genome import to_string

    return to_string(genome)


def run_line(e: Mapping[str, Any]) -> str:
    """One line for a finished run (what ``nasseg fidelity`` prints while it trains)."""
    what = f"mIoU {e['miou']:.4f}" if e["ok"] and e.get("miou") is not None else f"failed: {e.get('error')}"
    return (f"run {e['done']}/{e['planned']}: genome {e['genome_id']} at {e['rung']} steps, seed {e['seed']}: {what} "
            f"({e['train_seconds']:.1f} s training)")


# ================================================================================================= storage
def _peek(url: str, name: str) -> dict[str, Any] | None:
    """The study's user attributes when it exists (read-only: nothing is written), else None."""
    import optuna

    from nasseg.study import open_storage, sqlite_path

    path = sqlite_path(url)
    if path is not None and not path.exists():
        return None
    try:
        storage = open_storage(url, readonly=True)
    except StorageError:
        return None  # an empty or foreign file: opening it for writing says what is wrong with it
    for s in optuna.study.get_all_study_summaries(storage):
        if s.study_name == name:
            return dict(s.user_attrs)
    return None


def _check_meta(old: Mapping[str, Any] | None, want: Mapping[str, Any], cfg: FidelityConfig) -> None:
    """A resumed study must be a fidelity study with the same defining settings."""
    if not old:
        return
    if old.get("kind") != "fidelity":
        raise StorageError(f"study {cfg.study!r} in {mask_url(cfg.storage)} was not created by nasseg fidelity (kind "
                           f"{old.get('kind')!r}); valid: a study made by nasseg fidelity, or a new --study name")
    for key in DEFINING:
        if old.get(key) != want[key]:
            raise ConfigError(f"study {cfg.study!r} was created with {key} = {json.dumps(old.get(key))}; this command "
                              f"gives {json.dumps(want[key])}. Resume with the same settings, or choose a new --study")


def _stored_selection(attrs: Mapping[str, Any], sel: Mapping[str, Any]) -> list[Selected] | None:
    """The genomes a study already holds for the same selection (kept, not sampled and measured again)."""
    from nasseg.genome import from_json

    meta = attrs.get(META_KEY) or {}
    if meta.get("selection") != sel or not meta.get("genome_ids"):
        return None
    out = []
    for gid in meta["genome_ids"]:
        rec = attrs.get(f"{GENOME_PREFIX}{gid}")
        if not rec:
            return None
        out.append(Selected(from_json(rec["genome_json"]), gid, rec.get("source", "sampled"), rec.get("latency")))
    return out


def _open_study(cfg: FidelityConfig, want: Mapping[str, Any], log: Callable[[str], None]):
    import optuna

    from nasseg.study import open_storage, recover_crashed

    storage = open_storage(cfg.storage)
    faults.arm_commit_kill(storage)
    names = {s.study_name for s in optuna.study.get_all_study_summaries(storage)}
    if cfg.study in names:
        study = optuna.load_study(study_name=cfg.study, storage=storage)
        old = study.user_attrs.get(META_KEY)
        if old or study.trials:  # else: created by a driver that died before it wrote the settings; adopt it
            _check_meta(old or {"kind": None}, want, cfg)
            log(f"resuming fidelity study {cfg.study!r} ({len(study.trials)} trials so far)")
            recover_crashed(study, cfg.storage, log)
        return study
    study = optuna.create_study(study_name=cfg.study, storage=storage, directions=["maximize"],
                                sampler=optuna.samplers.RandomSampler(seed=cfg.seed))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" although stable since Optuna 3.2
        study.set_metric_names(["miou"])
    return study


def finished_runs(study: Any, recipes: Mapping[int, Any], dataset: str) -> dict[tuple[str, int, int], Any]:
    """(genome_id, rung, seed) -> the finished trial: COMPLETE, status trained, the rung's recipe, ``dataset``."""
    import optuna

    by_json = {r.to_json(): rung for rung, r in recipes.items()}
    out: dict[tuple[str, int, int], Any] = {}
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        ua = t.user_attrs
        rung = by_json.get(ua.get("recipe_json"))
        if rung is not None and ua.get(STATUS_KEY) == "trained" and ua.get("dataset") == dataset and "seed" in ua \
                and ua.get("miou") is not None:
            out.setdefault((ua["genome_id"], rung, int(ua["seed"])), t)
    return out


def _failed_runs(study: Any, recipes: Mapping[int, Any], dataset: str, done: Mapping[tuple[str, int, int], Any],
                 keys: set[tuple[str, int, int]]) -> dict[int, int]:
    """Per rung, the planned runs that have no result and whose last try failed (crashed tries are retried)."""
    import optuna

    by_json = {r.to_json(): rung for rung, r in recipes.items()}
    failed: set[tuple[str, int, int]] = set()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.FAIL,)):
        ua = t.user_attrs
        rung = by_json.get(ua.get("recipe_json"))
        if rung is None or ua.get(STATUS_KEY) != "failed" or ua.get("dataset") != dataset or "seed" not in ua:
            continue
        key = (ua["genome_id"], rung, int(ua["seed"]))
        if key in keys and key not in done:
            failed.add(key)
    out: dict[int, int] = {}
    for _, rung, _ in failed:
        out[rung] = out.get(rung, 0) + 1
    return out


# ============================================================================================= zero cost
def _settings_key(settings: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


@contextlib.contextmanager
def _torch_threads(n: int):
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def score_zero_cost(study: Any, chosen: Sequence[Selected], names: Sequence[str], settings: Mapping[str, Any],
                    log: Callable[[str], None], threads: int = 1
                    ) -> tuple[dict[str, dict[str, float | None]], dict[str, float], int]:
    """(name -> genome_id -> score or None, name -> seconds over all genomes, scores computed now).  Scores
    already stored under the same settings are kept; the others are computed (with ``threads`` CPU threads, as
    a training run gets) and stored per genome.  A proxy that fails on a genome is stored with its error and
    scored None."""
    with _torch_threads(threads):
        return _score_zero_cost(study, chosen, names, settings, log)


def _score_zero_cost(study: Any, chosen: Sequence[Selected], names: Sequence[str], settings: Mapping[str, Any],
                     log: Callable[[str], None]) -> tuple[dict[str, dict[str, float | None]], dict[str, float], int]:
    from nasseg import zero_cost

    key = _settings_key(settings)
    scores: dict[str, dict[str, float | None]] = {n: {} for n in names}
    seconds = {n: 0.0 for n in names}
    computed = 0
    for s in chosen:
        attr = f"{ZERO_COST_PREFIX}{s.genome_id}:{key}"
        rec = study.user_attrs.get(attr) or {"settings": dict(settings), "scores": {}, "errors": {}, "seconds": {}}
        missing = [n for n in names if n not in rec["scores"] and n not in rec["errors"]]
        for n in missing:
            t0 = time.perf_counter()
            try:
                rec["scores"][n] = zero_cost.score(n, s.genome, num_classes=settings["num_classes"],
                                                   resolution=tuple(settings["resolution"]),
                                                   batch_size=settings["batch_size"], seed=settings["seed"])
            except (NassegError, RuntimeError) as e:
                rec["errors"][n] = f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"
                log(f"zero-cost proxy {n} failed on genome {s.genome_id}: {rec['errors'][n]}")
            rec["seconds"][n] = time.perf_counter() - t0
            computed += 1
        if missing:
            study.set_user_attr(attr, rec)
        for n in names:
            scores[n][s.genome_id] = rec["scores"].get(n)
            seconds[n] += float(rec["seconds"].get(n, 0.0))
    return scores, seconds, computed


# ================================================================================================= the run
def _class_names(dataset: str, num_classes: int) -> list[str]:
    from nasseg.data import open_dataset

    with contextlib.suppress(Exception):
        names = list(getattr(open_dataset(dataset, "val"), "class_names", ()) or ())
        if len(names) == num_classes:
            return names
    return [f"class {i}" for i in range(num_classes)]


def search_config(cfg: FidelityConfig, trials: int = 1) -> SearchConfig:
    """The search settings the driver and the executors read."""
    return SearchConfig(space=str(cfg.space), storage=cfg.storage, study=cfg.study, trials=max(1, trials),
                        latency_budget_ms=None, latency=cfg.latency, mode="constrained", dataset=cfg.dataset,
                        recipe=cfg.base_recipe(), executor=cfg.executor, ray_address=cfg.ray_address,
                        cpus_per_trial=cfg.cpus_per_trial, gpus_per_trial=cfg.gpus_per_trial,
                        concurrency=cfg.concurrency, progress=False, artifacts=cfg.artifacts)


def _run_record(t: Any, rung: int) -> dict[str, Any]:
    ua = t.user_attrs
    m = ua.get("metrics") or {}
    return {"trial": t.number, "genome_id": ua["genome_id"], "rung": rung, "seed": int(ua["seed"]),
            "miou": float(ua["miou"]), "per_class_iou": m.get("per_class_iou") or [],
            "train_seconds": float(ua.get("train_seconds") or 0.0)}


def run_fidelity(cfg: FidelityConfig, log: Callable[[str], None] | None = None,
                 progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a fidelity study and write its report into ``cfg.out``.

    Every setting is checked, the space, the dataset and a ``--genomes-from`` list are read and the genomes are
    chosen (sampled and, under a budget, measured) **before** the study is opened, so bad input leaves no study.
    ``log`` receives one-line messages (default: stderr); ``progress(event)``, when given, is called after every
    finished run instead of logging it (``event``: done, planned, genome_id, rung, seed, ok, miou, error,
    train_seconds; :func:`run_line` renders it).  Returns ``result`` (:func:`~nasseg.fidelity.summary.summarize`),
    ``meta`` (what defines the study), ``runs`` (the finished runs), ``counts``, timings and ``paths`` written.
    Raises NassegError on bad settings.
    """
    import optuna

    from nasseg.fidelity.render import write_report
    from nasseg.fidelity.summary import summarize
    from nasseg.genome import genome_id, to_json
    from nasseg.search import run_local, run_ray
    from nasseg.search.run import check_devices, dataset_classes
    from nasseg.space import load_space
    from nasseg.study import Heartbeat, checkpoint, driver_lock, sqlite_path

    log = log or (lambda s: print(s, file=sys.stderr))
    t_start = time.perf_counter()
    cfg.validate()
    check_devices(search_config(cfg))
    space = load_space(cfg.space)
    space_sha = file_sha(cfg.space)
    num_classes = dataset_classes(cfg.dataset, log)
    listed = load_genome_list(cfg.genomes_from) if cfg.genomes_from is not None else None
    listed_ids = [genome_id(g) for _, g in listed] if listed is not None else None
    sel = selection(cfg, space_sha, num_classes, listed_ids)
    want = study_meta(cfg, num_classes, [], listed_ids)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    old_attrs = _peek(cfg.storage, cfg.study)
    _check_meta((old_attrs or {}).get(META_KEY), want, cfg)
    chosen = _stored_selection(old_attrs or {}, sel)
    t0 = time.perf_counter()
    if chosen is not None:
        log(f"the study's {len(chosen)} genomes are kept (same selection: space, genomes, seed, budget)")
    else:
        chosen = select_genomes(cfg, space, num_classes, log, listed)
    select_s = time.perf_counter() - t0
    ids = [s.genome_id for s in chosen]
    strings = {s.genome_id: _string(s.genome) for s in chosen}
    meta = study_meta(cfg, num_classes, ids, listed_ids)
    recipes = cfg.rung_recipes()
    names = cfg.proxy_names()
    settings = proxy_settings(cfg, num_classes)
    seeds = list(range(cfg.seeds))
    counts = {"planned": len(ids) * len(cfg.rungs) * len(seeds), "trained": 0, "failed": 0, "already": 0,
              "zero_cost_computed": 0}
    train_s = zero_cost_s = 0.0
    with driver_lock(cfg.storage), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        study = _open_study(cfg, want, log)
        study.set_user_attr(META_KEY, meta)  # without a result until this run has computed it
        for s in chosen:
            rec = {"genome": strings[s.genome_id], "genome_json": to_json(s.genome), "source": s.source,
                   "latency": s.latency, "latency_ms": (s.latency or {}).get("median_ms")}
            if study.user_attrs.get(f"{GENOME_PREFIX}{s.genome_id}") != rec:
                study.set_user_attr(f"{GENOME_PREFIX}{s.genome_id}", rec)
        checkpoint(study._storage)
        t0 = time.perf_counter()
        proxies, proxy_seconds, counts["zero_cost_computed"] = score_zero_cost(
            study, chosen, names, settings, log, threads=max(1, int(cfg.cpus_per_trial)))
        zero_cost_s = time.perf_counter() - t0
        if names:
            log(f"zero-cost proxies: {counts['zero_cost_computed']} score(s) computed now ({zero_cost_s:.1f} s), "
                f"{len(names) * len(chosen) - counts['zero_cost_computed']} kept from the study")
        done = finished_runs(study, recipes, cfg.dataset)
        runs = [Run(s, r, seed, recipes[r]) for r in cfg.rungs for s in chosen for seed in seeds
                if (s.genome_id, r, seed) not in done]
        counts["already"] = counts["planned"] - len(runs)
        if runs:
            log(f"{len(runs)} run(s) to train ({counts['already']} already finished in study {cfg.study!r}); "
                f"rungs {', '.join(map(str, cfg.rungs))} steps, {len(seeds)} seed(s), executor {cfg.executor}")
            scfg = search_config(cfg, len(runs))
            driver = FidelityDriver(scfg, study, runs, num_classes, log, progress)
            with Heartbeat(study, driver):  # PostgreSQL: lets a later driver tell a dead one's trials
                if cfg.executor == "local":
                    run_local(driver, lambda: None)
                else:
                    workdir = (sqlite_path(cfg.storage) or Path("runs/x")).parent / "ray_results"
                    run_ray(driver, scfg, lambda: None, workdir)
            counts["trained"], counts["failed"] = driver.counts["trained"], driver.counts["failed"]
            train_s = driver.trained_s
        else:
            log(f"all {counts['planned']} run(s) already finished in study {cfg.study!r}; nothing to train")
        done = finished_runs(study, recipes, cfg.dataset)
        keys = {(g, r, s) for g in ids for r in cfg.rungs for s in seeds}
        failed = _failed_runs(study, recipes, cfg.dataset, done, keys)
        records = [_run_record(t, rung) for (g, rung, s), t in sorted(done.items(), key=lambda kv: kv[1].number)
                   if (g, rung, s) in keys]
        result = summarize(records, genome_ids=ids, rungs=list(cfg.rungs), seeds=seeds, proxies=proxies,
                           proxy_seconds=proxy_seconds, class_names=_class_names(cfg.dataset, num_classes),
                           target_tau=float(cfg.target_tau), genome_strings=strings, failed=failed,
                           n_boot=cfg.n_boot, seed=cfg.seed)
        result["computed_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        study.set_user_attr(META_KEY, {**meta, "result": result})
        checkpoint(study._storage)
    wall = time.perf_counter() - t_start
    info = {"study": cfg.study, "storage": mask_url(cfg.storage), "executor": cfg.executor, "counts": counts,
            "wall_seconds": wall, "select_seconds": select_s, "zero_cost_seconds": zero_cost_s,
            "train_seconds": train_s, "missing_runs": len(keys) - len(records)}
    paths = write_report(Path(cfg.out), meta, result, records, info)
    return {**info, "meta": meta, "result": result, "runs": records, "paths": paths}
