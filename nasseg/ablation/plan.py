"""Planning a replay within a time budget: ``nasseg ablate STUDY --fidelity auto --max-hours H``.

Pure functions over the numbers a pilot measured (no I/O, no torch or optuna); :func:`nasseg.ablation.runner.ablate`
runs the probe and the pilot and calls them.

The procedure
-------------
1. The target is the paper's *largest* claimed effect, :func:`largest_effect`: the row whose paper mIoU
   differs most from the reference's (a row stated in words only has no size).  No such row, or a largest
   Delta of 0: no plan (nothing is trained).
2. The recipe is the study's replay recipe, :func:`base_fidelity` (``proxy`` where the study defines it),
   with its steps scaled along :func:`step_ladder`: the recipe's own steps, halved down to the pilot's steps
   (:func:`pilot_steps`).  ``auto`` never trains longer than the study's own recipe: it trades steps for seeds.
3. A timing probe (a few optimizer steps of the reference on random synthetic data, nothing stored) gives
   a lower bound of the seconds per step; :func:`minimum_seconds` (every variant, 2 seeds, the pilot's
   steps) over the budget: no plan, nothing trained.
4. The pilot: :data:`PILOT_SEEDS` of the reference and of the variant with the largest effect at the
   pilot's steps, stored in the replay's study (a later ``auto`` run reuses it, and a plan at the pilot's
   steps reuses its runs).  It measures the seconds per step (training steps only), the seconds per run
   outside them (build, data, evaluation) and the pooled seed sd.
5. :func:`plan_replay`: seeds N = :func:`nasseg.fidelity_stats.seeds_needed` (largest |Delta|, pilot sd), so
   that MDD = z * sd * sqrt(2/N) <= |Delta|; steps = the largest rung of the ladder whose runs fit the time
   left of the budget, a run costing ``overhead_s + steps * seconds_per_step`` and runs already finished
   costing nothing.

Assumptions (stated in every plan): the seed sd measured at the pilot's steps holds at the chosen steps;
every variant trains at the pilot's mean seconds per step; runs are costed one after another
(worker-seconds), so parallel workers only finish sooner; the paper's Delta (its dataset and schedule) is
the effect to detect on the replay's mIoU scale.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nasseg.ablation.schema import FIDELITIES, Study
from nasseg.ablation.stats import ALPHA, MAX_SEEDS, POWER, pooled_sd
from nasseg.fidelity_stats import min_detectable_difference, seeds_needed

#: seeds of each of the two pilot arms (the reference and the variant with the largest paper effect)
PILOT_SEEDS = (0, 1)

ASSUMPTIONS = (
    "the seed sd measured at the pilot's steps is used for the chosen steps; every variant is assumed to train "
    "at the pilot's mean seconds per step; runs are costed one after another (worker-seconds: parallel workers "
    "only finish sooner); the paper's Delta is taken as the effect to detect on the replay's mIoU scale; power "
    "is the normal approximation (two-sided 5 %, 80 %), optimistic by a seed or two at few seeds"
)


def hours(seconds: float) -> str:
    """``seconds`` as hours for messages: 3 significant digits."""
    return f"{seconds / 3600:.3g} h"


def largest_effect(study: Study) -> tuple[str, float] | None:
    """(variant, paper Delta in pp) of the row whose paper mIoU differs most from the reference's; the first
    such row on ties; None when the reference or every other row has no paper mIoU."""
    rows = study.spec.paper.rows
    ref = rows.get(study.reference)
    if ref is None or ref.miou is None:
        return None
    best: tuple[str, float] | None = None
    for v in study.variants:
        pr = rows.get(v.name)
        if v.name == study.reference or pr is None or pr.miou is None:
            continue
        d = round(pr.miou - ref.miou, 6)
        if best is None or abs(d) > abs(best[1]):
            best = (v.name, d)
    return best


def base_fidelity(study: Study) -> str:
    """The fidelity whose recipe ``auto`` scales: ``proxy`` if the study defines it, else the first defined
    of :data:`~nasseg.ablation.schema.FIDELITIES`."""
    defined = study.spec.fidelities
    return "proxy" if "proxy" in defined else next(f for f in FIDELITIES if f in defined)


def pilot_steps(base_steps: int) -> int:
    """The pilot's steps: a tenth of the recipe's, at least 10 (or all of them when the recipe has fewer)."""
    return min(base_steps, max(10, base_steps // 10))


def step_ladder(base_steps: int, pilot: int) -> list[int]:
    """Ascending rungs: ``base_steps`` halved while above ``pilot``, and ``pilot`` itself."""
    rungs = {pilot}
    s = base_steps
    while s > pilot:
        rungs.add(s)
        s //= 2
    return sorted(rungs)


def scaled_recipe(recipe: Any, steps: int) -> Any:
    """``recipe`` (a :class:`nasseg.train.Recipe`) with ``steps`` steps; the warm-up keeps its share of the
    steps (and stays below them); an evaluation interval at or past the end is dropped."""
    if steps == recipe.steps:
        return recipe
    warmup = min(round(recipe.warmup_steps * steps / recipe.steps), steps - 1)
    every = recipe.eval_every if recipe.eval_every < steps else 0
    return dataclasses.replace(recipe, steps=steps, warmup_steps=warmup, eval_every=every)


def minimum_seconds(n_variants: int, steps: int, seconds_per_step: float, finished: int = 0) -> float:
    """The least any plan costs: every variant at 2 seeds (the fewest a seed sd needs) and ``steps`` steps,
    minus the ``finished`` runs of those, training steps only."""
    return max(0, 2 * n_variants - finished) * steps * seconds_per_step


@dataclass(frozen=True)
class Pilot:
    """What the pilot measured."""

    steps: int
    runs: int  # finished pilot runs it was measured on
    seconds_per_step: float  # training steps only (sum of train_seconds / sum of steps)
    overhead_s: float  # per run, outside the training steps: build, data, evaluation
    sd: float | None  # pooled seed sd of the two arms (pp); None when no arm has two seeds
    trained_now: int = 0  # pilot runs trained by this command (the rest were stored by an earlier one)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Plan:
    """A plan for ``--fidelity auto``, feasible or not (then ``reason`` says why, in one line)."""

    feasible: bool
    reason: str
    effect_variant: str
    effect: float  # the paper's Delta of effect_variant to the reference, pp
    sd: float | None  # the pilot's pooled seed sd, pp
    seeds: int | None  # per variant
    steps: int | None
    mdd: float | None  # at seeds and sd: <= |effect| when feasible
    runs: int  # runs to train (not already finished)
    estimate_s: float  # their cost
    budget_s: float  # what was left of the budget when planning
    max_hours: float
    ladder: tuple[int, ...]
    pilot: Pilot
    fits: tuple[tuple[int, float], ...] = ()  # (steps, cost of the runs to train) per rung, at seeds

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["assumptions"] = ASSUMPTIONS
        return d

    def describe(self) -> str:
        """The plan in one line (printed before training, stored in the report)."""
        p = self.pilot
        sd = f"{self.sd:.3f} pp" if self.sd is not None else "unknown"
        head = (f"auto plan: the paper's largest effect {self.effect_variant} {self.effect:+.2f} pp; pilot "
                f"{p.runs} run(s) at {p.steps} steps: {p.seconds_per_step:.4g} s/step + {p.overhead_s:.3g} s/run, "
                f"seed sd {sd}")
        if not self.feasible:
            return f"{head}; {self.reason}"
        return (f"{head}; chosen: {self.seeds} seeds x {self.steps} steps per variant (MDD {self.mdd:.3f} pp <= "
                f"{abs(self.effect):.2f} pp), {self.runs} run(s) to train, about {hours(self.estimate_s)} of the "
                f"{hours(self.budget_s)} left of {self.max_hours:g} h")


def measure_pilot(records: Mapping[str, Sequence[Mapping[str, Any]]], steps: int, trained_now: int = 0) -> Pilot:
    """The pilot's numbers from the records (trial user attributes) of its finished runs, per arm (variant name):
    seconds per step = the sum of ``metrics.train_seconds`` over the sum of ``metrics.steps_done``; overhead =
    the mean of ``run_seconds - train_seconds`` (the worker's seconds outside the steps; 0 where no record has
    ``run_seconds``); sd = :func:`~nasseg.ablation.stats.pooled_sd` of the arms' per-seed mIoU in percent."""
    flat = [r for rs in records.values() for r in rs]

    def train_seconds(r: Mapping[str, Any]) -> float:
        return float((r.get("metrics") or {}).get("train_seconds", r.get("train_seconds")) or 0.0)

    total_steps = sum(int((r.get("metrics") or {}).get("steps_done") or steps) for r in flat)
    sps = sum(train_seconds(r) for r in flat) / total_steps if total_steps else 0.0
    over = [max(0.0, float(r["run_seconds"]) - train_seconds(r)) for r in flat if r.get("run_seconds") is not None]
    sd = pooled_sd(*[[100.0 * float(r["miou"]) for r in rs] for rs in records.values()])
    return Pilot(steps, len(flat), sps, statistics.fmean(over) if over else 0.0, sd, trained_now)


def plan_replay(*, effect_variant: str, effect: float, pilot: Pilot, n_variants: int, ladder: list[int],
                budget_s: float, max_hours: float,
                finished: Mapping[int, Collection[tuple[str, int]]] | None = None) -> Plan:
    """Seeds and steps that resolve ``effect`` within ``budget_s`` seconds (see the module docstring).

    ``finished`` maps a rung's steps to the (variant, seed) runs already finished at that recipe; they cost
    nothing.  The plan is infeasible (``reason`` in one line) when the effect is 0, the pilot gave no sd,
    more than :data:`~nasseg.ablation.stats.MAX_SEEDS` seeds are needed, or no rung fits the budget."""
    finished = finished or {}
    common = dict(effect_variant=effect_variant, effect=effect, sd=pilot.sd, budget_s=budget_s, max_hours=max_hours,
                  ladder=tuple(ladder), pilot=pilot)
    what = f"cannot resolve the paper's largest effect ({effect_variant} {effect:+.2f} pp) within {max_hours:g} h"

    def no(reason: str, **kw: Any) -> Plan:
        base = dict(seeds=None, steps=None, mdd=None, runs=0, estimate_s=0.0)
        base.update(kw)
        return Plan(False, f"{what}: {reason}", **common, **base)

    if effect == 0:
        return no("the paper's Delta is 0, which no number of seeds detects")
    if pilot.sd is None:
        return no("the pilot gave no seed sd (fewer than 2 finished seeds in both arms)")
    n = seeds_needed(effect, pilot.sd, alpha=ALPHA, power=POWER, max_seeds=MAX_SEEDS)
    if n is None:
        return no(f"at the pilot's seed sd {pilot.sd:.3f} pp it needs more than {MAX_SEEDS} seeds per variant")
    mdd = min_detectable_difference(pilot.sd, n, pilot.sd, n, alpha=ALPHA, power=POWER)
    fits = []
    for steps in ladder:
        done = sum(1 for _, seed in finished.get(steps, ()) if seed < n)
        runs = max(0, n_variants * n - done)
        fits.append((steps, runs, runs * (pilot.overhead_s + steps * pilot.seconds_per_step)))
    ok = [f for f in fits if f[2] <= budget_s]
    if not ok:
        steps, runs, cost = min(fits, key=lambda f: f[2])
        return no(f"{n} seeds x {n_variants} variants at {steps} steps ({runs} run(s) to train) need about "
                  f"{hours(cost)} at the pilot's {pilot.seconds_per_step:.4g} s/step + {pilot.overhead_s:.3g} s/run, "
                  f"and {hours(max(budget_s, 0.0))} of the budget is left",
                  seeds=n, steps=steps, mdd=mdd, runs=runs, estimate_s=cost,
                  fits=tuple((s, c) for s, _, c in fits))
    steps, runs, cost = max(ok, key=lambda f: f[0])
    return Plan(True, "", seeds=n, steps=steps, mdd=mdd, runs=runs, estimate_s=cost,
                fits=tuple((s, c) for s, _, c in fits), **common)


def check_max_hours(fidelity: str, max_hours: float | None, seeds: int | None, report_only: bool) -> None:
    """The option rules of ``--fidelity auto`` / ``--max-hours``; ConfigError (one line) when broken."""
    from nasseg.errors import ConfigError

    if max_hours is not None and (isinstance(max_hours, bool) or not isinstance(max_hours, (int, float))
                                  or not math.isfinite(max_hours) or max_hours <= 0):
        raise ConfigError(f"--max-hours = {max_hours!r} is not allowed; valid: a finite number of hours > 0")
    if fidelity == "auto":
        if max_hours is None:
            raise ConfigError("--fidelity auto needs --max-hours H (the time budget it plans seeds and steps for)")
        if seeds is not None:
            raise ConfigError("--seeds cannot be given with --fidelity auto: the plan chooses the seeds")
        if report_only:
            raise ConfigError("--report-only cannot be given with --fidelity auto: report the plan's fidelity, "
                              "or run --fidelity auto again (finished runs are reused)")
    elif max_hours is not None:
        raise ConfigError(f"--max-hours is for --fidelity auto only (got --fidelity {fidelity})")
