"""``search(cfg)``: run or resume a latency-constrained search, end to end.

Checks the settings and devices, reads the space and the dataset's classes, takes the study's driver lock,
opens or creates the study (a resumed study must have been created with the same defining settings),
recovers trials a dead driver left running, and runs the driver on an executor.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasseg import faults
from nasseg.errors import ConfigError, StorageError
from nasseg.search import ray_session
from nasseg.search.config import (
    DEFINING,
    SearchConfig,
    latency_defining,
    make_sampler,
    resumed_seed,
    study_meta,
)
from nasseg.search.driver import Driver
from nasseg.search.executors import run_local, run_ray
from nasseg.study import (
    META_KEY,
    Heartbeat,
    checkpoint,
    close_storage,
    driver_lock,
    failure_message,
    mask_url,
    open_storage,
    recover_crashed,
    sqlite_path,
)


def proxy_fidelity(cfg: SearchConfig) -> dict[str, Any]:
    """How well this search's proxy ranks, from a stored fidelity study (``nasseg fidelity``) of the same space,
    dataset and recipe (``line``, to log once; ``warnings``), stored on the study and on every trial.  With
    ``--prefilter``, the proxy's own measured agreement must exist (else ConfigError, before anything is
    written)."""
    from nasseg.fidelity import agreement_line, find_fidelity, rung_tau
    from nasseg.search.config import file_sha

    where = cfg.fidelity_storage or cfg.storage
    record = find_fidelity(where, space_sha=file_sha(cfg.space), dataset=cfg.dataset,
                           recipe_dict=cfg.recipe.to_dict())
    out: dict[str, Any] = {"checked": False, "storage": mask_url(where)}
    if cfg.prefilter is not None:
        from nasseg.search.prefilter import require_measured

        out["prefilter_entry"] = require_measured(cfg.prefilter, record, mask_url(where))
    steps = int(cfg.recipe.steps)
    entry = rung_tau(record, steps)
    if record is None:
        out["line"] = (f"proxy fidelity unchecked: no fidelity study of this space, dataset and recipe in "
                       f"{mask_url(where)}; how well {steps}-step proxies rank architectures is unknown (measure it: "
                       f"nasseg fidelity --space {cfg.space} --rungs {steps},{5 * steps} ...)")
    elif entry is None:
        out["line"] = (f"proxy fidelity unchecked at {steps} steps: fidelity study {record['study']!r} has rungs "
                       f"{sorted(record['rungs'])} (top {record['top_rung']}), none at this search's steps")
    else:
        out.update(checked=True, line=agreement_line(record, steps),
                   entry={**entry, "steps": steps, "top_rung": record["top_rung"], "study": record["study"],
                          "storage": record["storage"], "target_tau": record["target_tau"]})
    out["warnings"] = []
    if cfg.asha:
        every = max(1, int(cfg.recipe.eval_every) or steps)
        weak = []
        for r in range(every, steps, every):
            e = rung_tau(record, r)
            if e is None or e.get("tau_low") is None or e["tau_low"] < (record or {}).get("target_tau", 0.6):
                weak.append(f"{r} ({'unmeasured' if e is None else 'tau ' + format(e['tau'], '.2f')})")
        if weak:
            out["warnings"].append("warning: --asha stops proxies at step(s) " + ", ".join(weak) + " whose rank "
                                   "agreement with longer training is below the target or unmeasured: early "
                                   "stopping there may drop good architectures")
    return out


def prepare_init(cfg: SearchConfig) -> dict[str, Any] | None:
    """``--init PRESET:CHECKPOINT``: the preset's stage tensors (imported when the checkpoint is the official one)
    written once to the artifacts folder, where every worker reads them; None without --init.  Raises a
    NassegError (one line) for a checkpoint that does not fit, before the study is touched."""
    if cfg.init is None:
        return None
    import torch

    from nasseg import presets, weights
    from nasseg.search.config import init_key, parse_init

    preset, path = parse_init(cfg.init)
    key = init_key(cfg.init)
    state, what = weights.preset_state(preset, path)
    genome = presets.get(preset).genome
    tensors = weights.stage_tensors(state, tuple(range(len(genome.stages))))
    dest = cfg.artifacts_dir() / "init" / f"{key.replace(':', '-')}.pt"
    if not dest.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
        torch.save(tensors, tmp)
        os.replace(tmp, dest)
    return {"preset": preset, "key": key, "path": str(dest.resolve()), "genome": genome,
            "line": f"warm start from {what}: a candidate's leading stages identical to {preset}'s start from it"}


def ray_workdir(cfg: SearchConfig) -> Path:
    """Ray Tune's results folder (and the record of the Ray instance a driver started): beside a SQLite study."""
    return (sqlite_path(cfg.storage) or Path("runs/x")).parent / "ray_results"


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def update(self) -> None:
        pass

    def __exit__(self, *exc: Any) -> None:
        pass


def check_devices(cfg: SearchConfig) -> None:
    """The latency device (and a local executor's GPU) exist here, and the latency backend can run in its precision
    there, before a study is created or touched."""
    import torch

    dev, valid = cfg.latency.device, "cpu, cuda or cuda:N"
    try:
        d = torch.device(dev)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--latency-device = {dev!r} is not a device; valid: {valid}") from None
    if d.type not in ("cpu", "cuda"):
        raise ConfigError(f"--latency-device = {dev!r} is not supported; valid: {valid}")
    if d.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (d.index is not None and d.index >= n):
            raise ConfigError(f"--latency-device = {dev!r} is not on this machine ({n} CUDA device(s)); valid here: "
                              + ("cpu" if n == 0 else f"cpu, cuda:0..cuda:{n - 1}"))
    from nasseg.latency import check_backend

    check_backend(cfg.latency.backend, dev, cfg.latency.dtype)  # tensorrt without a GPU, fp16 on onnxruntime ...
    if cfg.gpus_per_trial > 0 and cfg.executor == "local" and not torch.cuda.is_available():
        raise ConfigError(f"--gpus-per-trial = {cfg.gpus_per_trial:g} with --executor local, but this machine has no "
                          "CUDA device; valid: --gpus-per-trial 0, or --executor ray on a cluster with GPUs")


def dataset_classes(spec: str, log: Callable[[str], None] | None = None) -> int:
    """The dataset's class count, after reading every item of a real dataset once: an unreadable image or a
    mask with labels outside the class list stops the search before it starts (one line, naming the file),
    instead of failing every trial on a worker."""
    from nasseg.data import describe_spec, open_dataset
    from nasseg.errors import DatasetError

    describe_spec(spec)
    val = open_dataset(spec, "val")
    if spec != "synthetic":
        for split, ds in (("train", open_dataset(spec, "train")), ("val", val)):
            if log is not None and len(ds) > 200:
                log(f"checking the {len(ds)} {split} items of {spec} ...")
            bad: list[str] = []
            for i in range(len(ds)):
                try:
                    ds[i]
                except DatasetError as e:
                    bad.append(" ".join(str(e).split()))
            if bad:
                raise DatasetError(f"dataset {spec!r}: {len(bad)} of {len(ds)} {split} items are bad; first: "
                                   f"{bad[0]}")
    return int(val.num_classes)


def search(cfg: SearchConfig, log: Callable[[str], None] | None = None,
           progress: Callable[[Driver], Any] | None = None,
           started: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run (or resume) a search; returns a summary dict.  Raises NassegError on bad settings.

    ``log`` receives one-line messages (default: stderr).  ``progress``, when given, is called with the
    driver and returns a context manager whose ``update()`` the executor calls whenever something changed
    (the command line draws its live table this way); the library itself renders nothing.  ``started`` is
    called once the settings are checked, the study is open and locked, before anything else is logged or run
    (the command line prints its banner there, so a refused command prints one line only).
    """
    import optuna

    from nasseg.space import load_space

    log = log or (lambda s: print(s, file=sys.stderr))
    cfg.validate()
    check_devices(cfg)
    space = load_space(cfg.space)
    num_classes = dataset_classes(cfg.dataset, log)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        fidelity = proxy_fidelity(cfg)  # before anything is written: --prefilter may refuse
        init = prepare_init(cfg)  # a checkpoint that does not fit stops here
        if cfg.executor == "ray":  # a killed driver's Ray processes, whatever this run then does
            ray_session.reap(ray_workdir(cfg), log)
        return _search(cfg, log, progress, started, space, num_classes, fidelity, init)
    except StorageError:
        raise
    except Exception as e:  # a full disk, a study file found corrupt mid-run: one line, exit 2, resumable
        line = failure_message(e, cfg.storage)
        if line is None:
            raise
        raise StorageError(line) from None


def _search(cfg: SearchConfig, log: Callable[[str], None], progress: Callable[[Driver], Any] | None,
            started: Callable[[], None] | None, space: Any, num_classes: int, fidelity: dict[str, Any],
            init: dict[str, Any] | None) -> dict[str, Any]:
    """The part of :func:`search` that holds the study open."""
    import optuna

    db = sqlite_path(cfg.storage)
    new_folder = db.parent if db is not None and not db.parent.exists() else None
    with driver_lock(cfg.storage), warnings.catch_warnings():
        # ask/tell with a heart-beating storage is what nasseg does on purpose (see nasseg.study.Heartbeat)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        storage = open_storage(cfg.storage)
        if hasattr(storage, "url_shown"):  # PostgreSQL: a lost connection is retried, and said so in the log
            storage.log = log
        faults.arm_commit_kill(storage)
        existing = {s.study_name: s for s in optuna.study.get_all_study_summaries(storage)}
        directions = ["maximize"] if cfg.mode == "constrained" else ["maximize", "minimize"]
        study = None
        if cfg.study in existing:
            study = optuna.load_study(study_name=cfg.study, storage=storage)
            if META_KEY not in study.user_attrs and not study.trials and \
                    [d.name for d in study.directions] == [d.upper() for d in directions]:
                study = None  # created by a driver that died before it wrote the settings: adopt it
        if study is not None:
            meta = study.user_attrs.get(META_KEY)
            if not meta or meta.get("kind") != "search":
                raise StorageError(f"study {cfg.study!r} in {mask_url(cfg.storage)} was not created by nasseg search; "
                                   "valid: a study made by nasseg search, or a new --study name (studies there: "
                                   f"{', '.join(sorted(existing))})")
            sampler_name = cfg.sampler or meta["sampler"]["name"]
            want = study_meta(dataclasses.replace(cfg, seed=meta["sampler"]["seed"] if cfg.sampler is None else
                                                  cfg.seed), num_classes, sampler_name)
            for key in DEFINING:
                same = latency_defining(want[key]) == latency_defining(meta.get(key)) if key == "latency" \
                    else want[key] == meta.get(key)
                if not same:
                    raise ConfigError(
                        f"study {cfg.study!r} was created with {key} = {json.dumps(meta.get(key))}; this command "
                        f"gives {json.dumps(want[key])}. Resume with the same settings, or choose a new --study")
            seed0, told = meta["sampler"]["seed"], len(study.trials)
            study.sampler = make_sampler(sampler_name, resumed_seed(seed0, told))
            log(f"resuming study {cfg.study!r} ({told} trials so far; sampler {sampler_name}, seed {seed0}, "
                f"continued as {resumed_seed(seed0, told)} so that it does not replay its first proposals)")
            recover_crashed(study, cfg.storage, log)
        else:
            sampler_name = cfg.sampler or "tpe"
            study = optuna.create_study(study_name=cfg.study, storage=storage, directions=directions,
                                        sampler=make_sampler(sampler_name, cfg.seed), load_if_exists=True)
            study.set_user_attr(META_KEY, study_meta(cfg, num_classes, sampler_name))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "experimental" although stable since Optuna 3.2
                study.set_metric_names(["miou"] if cfg.mode == "constrained" else ["miou", "latency_ms"])
            checkpoint(storage)
        if started is not None:
            started()
        if new_folder is not None:
            log(f"created the folder {new_folder} for the study database")
        for line in [fidelity["line"], *fidelity["warnings"], *([init["line"]] if init else [])]:
            log(line)
        study.set_user_attr("proxy_fidelity", {k: v for k, v in fidelity.items()
                                               if k not in ("prefilter_entry", "warnings")})
        driver = Driver(cfg, study, space, num_classes, log, fidelity=fidelity, init=init)
        t0 = time.perf_counter()
        prog_cm = progress(driver) if progress is not None and cfg.progress else _NoProgress()
        ran = driver.remaining() > 0
        with prog_cm as prog, Heartbeat(study, driver):
            if ran:
                if cfg.executor == "local":
                    run_local(driver, prog.update)
                else:
                    run_ray(driver, cfg, prog.update, ray_workdir(cfg))
        wall = time.perf_counter() - t0
        finished = driver.finished()
        close_storage(storage)
    return {"study": cfg.study, "storage": mask_url(cfg.storage), "wall_seconds": wall,
            "train_seconds": driver.trained_s, "measure_seconds": driver.measure_s, "busy_seconds": driver.busy_s,
            "counts": dict(driver.counts), "screened": driver.screened, "duplicates": driver.duplicates,
            "exhausted": driver.exhausted, "ran": ran, "proxy_fidelity": fidelity, "trials": cfg.trials,
            "finished": finished}
