"""``nasseg search``: parse the search's arguments into a :class:`~nasseg.search.SearchConfig`, run
:func:`nasseg.search.search` with a live progress table, and print the study and a summary.

Exit codes: 0 = the study holds its --trials; 2 = a user error, nothing run (one line); 3 = the Ray head was
lost mid-search (one line; told trials kept, the same command resumes;
:data:`nasseg.search.ray_session.HEAD_LOST_EXIT`).
"""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any

from nasseg.cli.common import check_output_path, parse_resolution, wide_console
from nasseg.errors import ConfigError
from nasseg.latency import BACKENDS, PRECISIONS, precision_name
from nasseg.search.config import EXECUTORS, MODES, SAMPLERS, LatencySpec, ScreenSpec, SearchConfig

HELP = "latency-constrained architecture search"


def add_arguments(p: Any) -> None:
    p.add_argument("--space", default="search_spaces/realtime.yaml", help="search space YAML")
    p.add_argument("--latency-budget-ms", type=float, default=None, help="latency budget (ms) on the target device")
    p.add_argument("--latency-device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--latency-resolution", default="512x1024", help="HxW of the latency measurement")
    p.add_argument("--latency-batch", type=int, default=1, help="images per timed forward pass")
    p.add_argument("--latency-threads", type=int, default=None, help="CPU threads for the measurement "
                   "(default: 1 on CPU, so that records compare across machines; always recorded)")
    p.add_argument("--latency-runs", type=int, default=30, help="timed runs per candidate: the minimum of the "
                   "stopping rule, or the fixed count with --latency-tolerance 0 (>= 30)")
    p.add_argument("--latency-backend", choices=BACKENDS, default="torch", help="the runtime the budget applies to: "
                   "torch (PyTorch eager), onnxruntime (the exported ONNX graph, all graph optimisations) or tensorrt "
                   "(CUDA only); with another than torch, eager latency is recorded too")
    p.add_argument("--latency-precision", choices=tuple(PRECISIONS), default="fp32", help="precision of the timed "
                   "passes (onnxruntime: fp32 only; bf16/fp16 where the device and backend run them)")
    p.add_argument("--latency-tolerance", type=float, default=0.02, help="time each candidate until the median's 95 "
                   "%% interval is within +- this fraction (0: exactly --latency-runs)")
    p.add_argument("--latency-max-runs", type=int, default=200, help="at most this many timed runs per record")
    p.add_argument("--latency-max-seconds", type=float, default=10.0, help="stop timing a record after this many "
                   "seconds (the --latency-runs minimum is always taken)")
    p.add_argument("--no-latency-pin", action="store_true", help="do not pin the measuring thread to a core of its "
                   "own (pinning keeps nasseg's own work off it; on a machine shared with other jobs it also keeps the "
                   "measurement from moving off a busy core)")
    p.add_argument("--trials", type=int, default=50, help="total finished trials of the study")
    p.add_argument("--storage", default="sqlite:///runs/study.db", help="sqlite:///path.db or postgresql://...")
    p.add_argument("--study", default="realtime", help="study name (an existing one is resumed)")
    p.add_argument("--dataset", default="synthetic", help="synthetic or LAYOUT:PATH (cityscapes, camvid, ade20k, "
                   "voc, folder)")
    p.add_argument("--proxy-resolution", default="128x256", help="HxW of proxy training")
    p.add_argument("--proxy-steps", type=int, default=300, help="optimizer steps of each proxy training")
    p.add_argument("--proxy-batch", type=int, default=8, help="images per proxy training step")
    p.add_argument("--proxy-lr", type=float, default=None, help="peak learning rate of the proxy (default: the "
                   "recipe's, 0.01)")
    p.add_argument("--proxy-optimizer", choices=("sgd", "adamw"), default=None, help="optimizer of the proxy "
                   "(default: the recipe's, sgd with momentum 0.9)")
    p.add_argument("--proxy-loss", choices=("ce", "ohem", "wce"), default=None, help="loss of the proxy (default: the "
                   "recipe's, ohem); wce: cross-entropy with rare classes up-weighted (median frequency, 1-10x)")
    p.add_argument("--eval-every", type=int, default=None, help="steps between intermediate evaluations")
    p.add_argument("--mode", choices=MODES, default="constrained", help="constrained: best mIoU under the budget; "
                   "pareto: mIoU against latency")
    p.add_argument("--sampler", choices=SAMPLERS, default=None, help="default: the study's own, tpe for a new one")
    p.add_argument("--seed", type=int, default=0, help="sampler seed (a resumed study keeps its own)")
    p.add_argument("--executor", choices=EXECUTORS, default="ray", help="ray (default) or local (no Ray)")
    p.add_argument("--ray-address", default=None, help="join an existing Ray cluster (else RAY_ADDRESS or local)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs each proxy uses (Ray resources; "
                   "also its torch threads)")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="GPUs each proxy uses, fractions allowed "
                   "(> 0 trains on CUDA with AMP)")
    p.add_argument("--concurrency", type=int, default=None, help="proxies training at once (default: as resources "
                   "allow)")
    p.add_argument("--asha", action="store_true", help="stop weak proxies early (ASHA on intermediate mIoU)")
    p.add_argument("--artifacts", default=None, help="folder for proxy weights (default: beside the SQLite file; "
                   "must be shared by all nodes of a cluster)")
    p.add_argument("--no-screen", action="store_true", help="measure every candidate end to end (default: reject "
                   "candidates far over the budget on a latency predicted from a table of measured units)")
    p.add_argument("--screen-margin", type=float, default=0.15, help="a predicted latency must exceed the budget by "
                   "this fraction (or the prediction's worst error so far, if larger) to reject (default 0.15)")
    p.add_argument("--prefilter", default=None, metavar="NAME:FRACTION", help="train only the candidates a "
                   "zero-cost proxy ranks in its top FRACTION (e.g. synflow:0.5); needs that proxy's rank agreement "
                   "stored by nasseg fidelity for this space, dataset and recipe")
    p.add_argument("--init", default=None, metavar="PRESET:CHECKPOINT", help="warm-start the leading stages a "
                   "candidate shares with PRESET from CHECKPOINT (official, or written by nasseg weights import)")
    p.add_argument("--fidelity-storage", default=None, help="where the fidelity study of this space is (default: "
                   "--storage)")
    p.add_argument("--verbose", action="store_true", help="show Ray's own console output and start its dashboard")
    p.add_argument("--no-progress", action="store_true", help="no live table (a line per finished trial "
                   "still goes to a log)")


def config_from_args(a: Any) -> SearchConfig:
    from nasseg.search.prefilter import parse_spec
    from nasseg.train import Recipe

    if a.artifacts:
        check_output_path(a.artifacts, "--artifacts", folder=True)

    steps = a.proxy_steps
    if steps < 1:
        raise ConfigError(f"--proxy-steps = {steps} must be >= 1")
    recipe_kw: dict[str, Any] = {
        "resolution": parse_resolution(a.proxy_resolution, "--proxy-resolution"), "steps": steps,
        "batch_size": a.proxy_batch, "eval_every": a.eval_every if a.eval_every is not None
        else (max(1, steps // 4) if a.asha else 0),
        "warmup_steps": min(steps - 1, max(0, steps // 20)), "amp": a.gpus_per_trial > 0,
    }
    if a.proxy_lr is not None:
        recipe_kw["lr"] = a.proxy_lr
    if a.proxy_optimizer is not None:
        recipe_kw["optimizer"] = a.proxy_optimizer
    if a.proxy_loss is not None:
        recipe_kw["loss"] = a.proxy_loss
    lat = LatencySpec(device=a.latency_device, resolution=parse_resolution(a.latency_resolution,
                                                                            "--latency-resolution"),
                      batch=a.latency_batch, threads=a.latency_threads, runs=a.latency_runs,
                      backend=a.latency_backend, dtype=PRECISIONS[a.latency_precision], tolerance=a.latency_tolerance,
                      max_runs=a.latency_max_runs, max_seconds=a.latency_max_seconds, pin=not a.no_latency_pin)
    if lat.runs < 30:
        raise ConfigError(f"--latency-runs = {lat.runs}: at least 30 timed runs are needed for a stable median")
    if lat.batch < 1 or (lat.threads is not None and lat.threads < 1):
        raise ConfigError("--latency-batch and --latency-threads must be positive integers")
    lat.validate()
    return SearchConfig(space=a.space, storage=a.storage, study=a.study, trials=a.trials,
                        latency_budget_ms=a.latency_budget_ms, latency=lat, mode=a.mode, sampler=a.sampler,
                        seed=a.seed, dataset=a.dataset, recipe=Recipe(**recipe_kw), executor=a.executor,
                        ray_address=a.ray_address, cpus_per_trial=a.cpus_per_trial, gpus_per_trial=a.gpus_per_trial,
                        concurrency=a.concurrency, asha=a.asha, progress=not a.no_progress, artifacts=a.artifacts,
                        screen=None if a.no_screen else ScreenSpec(margin=a.screen_margin), verbose=a.verbose,
                        fidelity_storage=a.fidelity_storage, prefilter=parse_spec(a.prefilter) if a.prefilter else None,
                        init=a.init)


def banner(cfg: SearchConfig) -> str:
    """What a search is about to do, in a few lines: nasseg speaks first."""
    from nasseg.study import mask_url

    lat = cfg.latency
    budget = f"{cfg.latency_budget_ms:g} ms" if cfg.latency_budget_ms is not None else "none (pareto)"
    r = cfg.recipe
    runner = (f"Ray ({cfg.ray_address or 'local'}), {cfg.cpus_per_trial:g} CPU"
              + (f" + {cfg.gpus_per_trial:g} GPU" if cfg.gpus_per_trial else "") + " per proxy"
              if cfg.executor == "ray" else "in this process (--executor local)")
    return "\n".join([
        f"nasseg search: study {cfg.study!r} in {mask_url(cfg.storage)}, {cfg.trials} trials, space {cfg.space}",
        f"  latency budget {budget} on {lat.device} ({lat.threads or 1 if lat.device == 'cpu' else 'default'} "
        f"thread(s)) at {lat.resolution[0]}x{lat.resolution[1]}, batch {lat.batch}, {lat.backend} "
        f"{precision_name(lat.dtype)}; mode {cfg.mode}",
        "  timing: " + (f"{lat.runs} to {lat.max_runs} runs, until the median's 95 % interval is within "
                        f"+-{100 * lat.tolerance:g} % or {lat.max_seconds:g} s" if lat.tolerance else
                        f"{lat.runs} runs") + "; pinned to a core of its own" * lat.pin
        + ("; eager latency recorded too" if lat.backend != "torch" else ""),
        f"  proxy: {cfg.dataset} at {r.resolution[0]}x{r.resolution[1]}, {r.steps} steps, batch {r.batch_size}, "
        f"lr {r.lr:g}; trained {runner}",
        f"  results: the study database; proxy weights in {cfg.artifacts_dir()}",
    ])


def run(a: Any) -> int:
    from rich.console import Console

    from nasseg.search import search
    from nasseg.study import load_study

    cfg = config_from_args(a)
    con = Console(stderr=True, highlight=False, soft_wrap=True)
    summary = search(cfg, log=lambda s: con.print(s), progress=lambda driver: Progress(driver, cfg),
                     started=lambda: con.print(banner(cfg)))
    study = load_study(cfg.storage, cfg.study)
    print_study(study, wide_console())
    c = summary["counts"]
    wall, train = summary["wall_seconds"], summary["train_seconds"]
    if not summary["ran"]:
        con.print(f"\nstudy {cfg.study!r} already has its {summary['finished']} of {cfg.trials} trials: nothing ran "
                  "(raise --trials to search further)")
    else:
        con.print(f"\n{summary['finished']} of {cfg.trials} trials in study {cfg.study!r} at {summary['storage']}; "
                  f"this run: {c['trained']} trained, {c['rejected']} rejected over budget, {c['stopped']} stopped "
                  f"early, {c['failed']} failed; {summary['duplicates']} duplicate proposal(s) skipped (the sampler "
                  "proposed an architecture already evaluated: its stored result was reused, not counted)")
        if summary["exhausted"]:
            con.print("the search ended early: the sampler kept proposing architectures already evaluated (the space "
                      "seems to hold fewer distinct architectures than --trials)")
        if cfg.screen is not None and cfg.latency_budget_ms is not None and cfg.latency.backend == "torch":
            con.print(f"screening: {summary['screened']} of the {c['rejected']} rejections on a predicted latency "
                      "(sum of measured units, calibrated on candidates measured end to end); every trained "
                      "candidate was measured end to end")
        busy, meas = summary["busy_seconds"], summary["measure_seconds"]
        other = max(0.0, wall - busy - meas)
        con.print(f"wall {wall:.1f} s = proxies in flight {busy:.1f} s ({100 * busy / wall:.0f} %; {train:.1f} "
                  f"worker-seconds of training inside them) + latency measurement {meas:.1f} s "
                  f"({100 * meas / wall:.0f} %) + start-up and orchestration {other:.1f} s "
                  f"({100 * other / wall:.0f} %)")
    out = f"runs/{cfg.study}-export"
    con.print(f"next:\n  nasseg status --storage {summary['storage']} --study {cfg.study}\n"
              f"  nasseg export --storage {summary['storage']} --study {cfg.study} --out {out}")
    return 0


def print_study(study: Any, con: Any, limit: int = 40) -> None:
    import pandas as pd
    from rich.table import Table

    from nasseg.export.front import FRONT_RULE, pareto_front, trial_record
    from nasseg.search.results import trials_frame
    from nasseg.study import META_KEY

    df = trials_frame(study)
    if df.empty:
        con.print(f"study {study.study_name!r} has no trials yet")
        return
    meta = study.user_attrs.get(META_KEY, {})
    budget = meta.get("latency_budget_ms")
    # the one front (nasseg.export.front): the trials nasseg export exports, in every mode
    front = pareto_front([trial_record(t) for t in study.get_trials(deepcopy=False)], budget)
    best = {m.number for m in front}
    shown = df.sort_values(["miou", "latency_ms"], ascending=[False, True], na_position="last").head(limit)
    t = Table(title=f"study {study.study_name!r}: {len(df)} trials"
              + (f", budget {budget:g} ms" if budget else "") + " (* = on the Pareto front, one folder each in nasseg "
              "export; ~ = latency predicted by the cost table, not measured end to end)")
    for col in ("trial", "status", "mIoU", "latency ms", "CV", "params M", "GMACs", "train s", "genome id", "genome"):
        t.add_column(col, justify="left" if col in ("status", "genome id", "genome") else "right", no_wrap=True,
                     overflow="ellipsis", max_width=None if col != "genome" else 60)

    def f(v: Any, fmt: str) -> str:
        return "-" if v is None or (isinstance(v, float) and pd.isna(v)) else format(v, fmt)

    for r in shown.itertuples():
        latency = ("~" if r.latency_method == "predicted" else "") + f(r.latency_ms, ".2f") + \
            ("!" if r.latency_noisy else "") + ("?" if r.latency_decision == "close" else "")
        t.add_row(f"{r.trial}{'*' if r.trial in best else ''}", r.status or r.state, f(r.miou, ".4f"),
                  latency, f(r.latency_cv, ".3f"), f(r.params_M, ".3f"), f(r.GMACs, ".2f"),
                  f(r.train_s, ".1f"), r.genome_id, r.genome)
    con.print(t)
    if front:
        con.print(f"Pareto front (*): {len(front)} architecture(s), trials "
                  + ", ".join(str(m.number) for m in front) + f" (best mIoU first): {FRONT_RULE}")
    else:
        con.print("Pareto front (*): empty (no complete, full-fidelity trial with a trained proxy within the latency "
                  "budget yet)")
    noisy = df[df.latency_noisy]
    if len(noisy):
        con.print(f"! = noisy latency ({len(noisy)} trial(s): the CV or the machine's load stayed high after "
                  "re-measuring; the trial's latency_warning says which): trials "
                  + ", ".join(str(t) for t in noisy.trial))
    close = df[df.latency_decision == "close"]
    if len(close):
        con.print(f"? = close to the budget ({len(close)} trial(s): the median's 95 % interval held the budget even "
                  "after re-measuring; decided on the median): trials " + ", ".join(str(t) for t in close.trial))
    backends = sorted({b for b in df.latency_backend if b})
    if backends and backends != ["torch"]:
        con.print(f"latency: {', '.join(backends)} (the budget's backend; eager latency in latency_eager_ms)")
    pf = study.user_attrs.get("proxy_fidelity")
    con.print("proxy fidelity: " + (pf.get("line", "") if isinstance(pf, dict) else "not recorded (a study from "
                                    "before nasseg measured it; see nasseg fidelity)"))
    con.print("full genome strings: nasseg status --csv FILE, or nasseg show <genome>")
    counts = df.status.replace("", "running").value_counts().to_dict()
    con.print("statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


class Progress:
    """A live table: trials done, feasible, rejected, best mIoU, current front."""

    def __init__(self, driver: Any, cfg: SearchConfig, enabled: bool = True):
        self.driver, self.cfg = driver, cfg
        self.enabled = enabled and sys.stderr.isatty()
        self.plain = enabled and not self.enabled  # logs and CI: one line whenever a trial finishes
        self._live = None
        self._last = 0.0
        self._told = -1

    def __enter__(self) -> Progress:
        if self.enabled:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(self._render(), console=Console(stderr=True), refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def update(self) -> None:
        now = time.perf_counter()
        if self._live is not None and now - self._last > 0.25:
            self._last = now
            self._live.update(self._render())
        elif self.plain:
            d = self.driver
            done = d.finished()
            if done != self._told:
                self._told = done
                c = d.counts
                print(f"[nasseg] {done}/{self.cfg.trials} finished: {c['trained']} trained, {c['reused']} duplicates, "
                      f"{c['rejected']} rejected, {c['stopped']} stopped, {c['failed']} failed; "
                      f"{len(d.inflight)} in flight", file=sys.stderr, flush=True)

    def _render(self):
        from rich.table import Table

        d = self.driver
        c = d.counts
        front: list[Any] = []
        with contextlib.suppress(Exception):  # the same front as nasseg status and export
            from nasseg.export.front import pareto_front, trial_record

            front = pareto_front([trial_record(t) for t in d.study.get_trials(deepcopy=False)],
                                 self.cfg.latency_budget_ms)
        best = max((m.miou for m in front), default=None)
        t = Table(title=f"nasseg search — study {self.cfg.study}", show_header=True)
        for col in ("finished", "of", "in flight", "trained", "duplicates", "rejected", "stopped", "failed",
                    "best mIoU", "front size"):
            t.add_column(col, justify="right")
        t.add_row(str(d.finished()), str(self.cfg.trials), str(len(d.inflight)), str(c["trained"]),
                  str(c["reused"]), str(c["rejected"]), str(c["stopped"]), str(c["failed"]),
                  "-" if best is None else f"{best:.4f}", str(len(front)))
        return t

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(*exc)
