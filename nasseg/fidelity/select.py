"""Which genomes a fidelity study ranks: K sampled from the space, stratified over each stage's block choices,
deterministic per seed (and feasible under a latency budget when one is given), or the genomes a list names.
Everything here runs before the study is opened: a budget no sample can meet is an error, not a study."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nasseg.errors import ConfigError, NassegError
from nasseg.fidelity.config import MIN_LISTED, FidelityConfig


@dataclass(frozen=True)
class Selected:
    """A genome of the study: where it came from (``sampled`` or the list's file:line) and, under a budget, its
    latency record."""

    genome: Any
    genome_id: str
    source: str
    latency: dict[str, Any] | None = None


def max_draws(k: int) -> int:
    """Draws (duplicates included) before sampling gives up: 20 K + 50."""
    return 20 * k + 50


def max_measured(k: int) -> int:
    """Distinct candidates measured against a budget before sampling gives up: 6 K + 24 (a budget that more than
    ~5 in 6 of the space miss needs a smaller K, or a larger budget)."""
    return 6 * k + 24


def check_genome(genome: Any, num_classes: int, where: str) -> Any:
    """The built network; ConfigError for a genome that does not build or builds an image classifier."""
    from nasseg.build import build

    try:
        net = build(genome, num_classes)
    except (NassegError, RuntimeError, ValueError) as e:
        raise ConfigError(f"{where}: the genome does not build: {' '.join(str(e).split())[:300]}") from None
    if net.is_classifier:
        raise ConfigError(f"{where}: the genome builds an image classifier; valid: a segmentation genome (a "
                          "segmentation decoder)")
    return net


def measure(net: Any, cfg: FidelityConfig) -> dict[str, Any]:
    """The latency record of a built network under ``cfg.latency`` (as the search's driver records it)."""
    from nasseg.cost import measure_latency

    ls = cfg.latency
    rec = measure_latency(net, (ls.batch, 3, *ls.resolution), device=ls.device, warmup=ls.warmup, runs=ls.runs,
                          threads=ls.threads, dtype=ls.dtype)
    d = rec.to_dict()
    d["method"] = "measured"
    d["isolation"] = "exclusive: measured by the fidelity driver before any proxy trained"
    return d


def _where(cfg: FidelityConfig) -> str:
    ls = cfg.latency
    return f"{ls.device} at {ls.resolution[0]}x{ls.resolution[1]}"


def stratified_sample(space: Any, k: int, seed: int, accept: Callable[[Any, str], bool] | None = None,
                      *, draws: int | None = None) -> tuple[list[Any], int]:
    """(up to ``k`` distinct genomes, draws made), sampled from ``space`` by Optuna's RandomSampler (seeded with
    ``seed``, on a throwaway in-memory study) with each stage's block fixed by block randomisation: every
    ``n`` draws of a stage with ``n`` block choices use each choice once, in a seeded random order, so every
    block appears as soon as K >= n.  ``accept(genome, genome_id)`` may turn a candidate down (a budget);
    duplicates are skipped.  Gives up after ``draws`` (default :func:`max_draws`)."""
    import optuna

    from nasseg.genome import genome_id

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    rng = random.Random(seed)
    strata = [(sd.block.name, [o.name for o in sd.block.options]) for sd in space.stages if len(sd.block.options) > 1]
    order: dict[str, list[str]] = {}
    limit = max_draws(k) if draws is None else draws
    out: list[Any] = []
    seen: set[str] = set()
    n = 0
    while len(out) < k and n < limit:
        fixed = {}
        for name, options in strata:
            if n % len(options) == 0:
                order[name] = rng.sample(options, len(options))
            fixed[name] = order[name][n % len(options)]
        n += 1
        if fixed:
            study.enqueue_trial(fixed, skip_if_exists=False)
        genome = space.sample(study.ask())
        gid = genome_id(genome)
        if gid in seen:
            continue
        seen.add(gid)
        if accept is None or accept(genome, gid):
            out.append(genome)
    return out, n


def select_genomes(cfg: FidelityConfig, space: Any, num_classes: int, log: Callable[[str], None],
                   listed: list[tuple[str, Any]] | None = None) -> list[Selected]:
    """The study's genomes (see the module docstring); ConfigError when the list or the space cannot give them.
    ``listed``: the (where, genome) pairs of ``cfg.genomes_from`` when already read
    (:func:`~nasseg.fidelity.config.load_genome_list`)."""
    from nasseg.fidelity.config import load_genome_list
    from nasseg.genome import genome_id

    budget = cfg.latency_budget_ms
    if cfg.genomes_from is not None:
        out = []
        for where, g in listed if listed is not None else load_genome_list(cfg.genomes_from):
            net = check_genome(g, num_classes, where)
            lat = measure(net, cfg) if budget is not None else None
            if lat is not None and lat["median_ms"] > budget:
                log(f"{where}: latency {lat['median_ms']:.2f} ms > budget {budget:g} ms on {_where(cfg)}; left out")
                continue
            if not space.contains(g):
                log(f"{where}: not a member of the space {cfg.space} (ranked all the same)")
            out.append(Selected(g, genome_id(g), where, lat))
        if len(out) < MIN_LISTED:
            raise ConfigError(f"--latency-budget-ms = {budget:g}: only {len(out)} of the listed genomes meet it on "
                              f"{_where(cfg)}; valid: a budget that at least {MIN_LISTED} of them meet")
        return out

    k = int(cfg.num_genomes() or 0)
    records: dict[str, dict[str, Any]] = {}
    measured: list[float] = []

    def accept(genome: Any, gid: str) -> bool:
        if budget is not None and len(measured) >= max_measured(k):
            return False
        net = check_genome(genome, num_classes, f"space {cfg.space}: sampled genome {gid}")
        if budget is None:
            return True
        rec = measure(net, cfg)
        measured.append(rec["median_ms"])
        if rec["median_ms"] > budget:
            return False
        records[gid] = rec
        return True

    genomes, draws = stratified_sample(space, k, cfg.seed, accept)
    if len(genomes) < k:
        if budget is not None and measured:
            none = "none" if not genomes else f"only {len(genomes)}"
            fewer = "" if not genomes else f" (or --genomes <= {len(genomes)})"
            raise ConfigError(f"--latency-budget-ms = {budget:g}: {none} of {len(measured)} distinct genomes sampled "
                              f"from {cfg.space} meet it on {_where(cfg)} (fastest {min(measured):.2f} ms); valid: a "
                              f"larger budget{fewer}; every genome needs more than {min(measured):.2f} ms here")
        raise ConfigError(f"--genomes = {k}: the space {cfg.space} gave only {len(genomes)} distinct genomes in "
                          f"{draws} draws; valid: --genomes <= {len(genomes)}, or a larger space")
    log(f"sampled {k} genomes from {cfg.space} in {draws} draws (seed {cfg.seed}, stratified over each stage's "
        "block choices" + (f"; {len(measured)} measured against the budget {budget:g} ms)" if budget else ")"))
    return [Selected(g, genome_id(g), "sampled", records.get(genome_id(g))) for g in genomes]
