"""The result of a fidelity study, computed from plain records (no study, no I/O): for every rung and every
zero-cost proxy, its rank agreement with the top rung (:func:`nasseg.fidelity_stats.rank_agreement`), the seed
noise of each rung (:func:`~nasseg.fidelity_stats.seed_to_seed_tau`, :func:`~nasseg.fidelity_stats.noise_ratio`),
the classes still at IoU 0, the cost in worker-seconds, and the recommended rung
(:func:`~nasseg.fidelity_stats.recommend_rung`).  Every number is JSON-safe (NaN and infinity become None)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from nasseg.fidelity_stats import (
    MIN_ITEMS,
    RankAgreement,
    noise_ratio,
    rank_agreement,
    recommend_rung,
    seed_to_seed_tau,
)

#: the agreement fields of every row (None where undefined: fewer than 3 genomes, a constant score, the top rung)
AGREEMENT_FIELDS = ("tau", "tau_low", "tau_high", "spearman", "spearman_low", "spearman_high")


def clean(v: Any) -> Any:
    """``v`` with every NaN / infinity replaced by None (JSON has neither), recursively."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


def _agreement(low: Mapping[str, Any], top: Mapping[str, Any], n_boot: int, seed: int) -> tuple[dict, Any]:
    keys = [k for k in low if k in top]
    row: dict[str, Any] = {f: None for f in AGREEMENT_FIELDS}
    row["n"] = len(keys)
    if len(keys) < MIN_ITEMS:
        row["note"] = f"{len(keys)} genome(s) scored at both; a rank statistic needs {MIN_ITEMS}"
        return row, None
    ra = rank_agreement({k: low[k] for k in keys}, {k: top[k] for k in keys}, n_boot=n_boot, seed=seed)
    row.update({f: getattr(ra, f) for f in AGREEMENT_FIELDS})
    if math.isnan(ra.tau):
        row["note"] = "a constant score ranks nothing"
    return row, ra


def _seed_stats(scores: Mapping[str, list[float]], n_seeds: int) -> dict[str, Any]:
    full = {k: v for k, v in scores.items() if len(v) == n_seeds}
    out: dict[str, Any] = {"seed_tau": None, "within_sd": None, "between_sd": None, "noise_ratio": None}
    if n_seeds >= 2 and len(full) >= MIN_ITEMS:
        nr = noise_ratio(full)
        out.update(seed_tau=seed_to_seed_tau(full), within_sd=nr.within_sd, between_sd=nr.between_sd,
                   noise_ratio=nr.ratio)
    return out


def zero_iou_classes(per_class: Sequence[Sequence[float | None]], class_names: Sequence[str]) -> list[str]:
    """Names of the classes at IoU 0 in every run that scored them (a class absent from a run, None, is not
    counted either way)."""
    if not per_class:
        return []
    out = []
    for c in range(max(len(p) for p in per_class)):
        values = [p[c] for p in per_class if c < len(p) and p[c] is not None]
        if values and all(v == 0 for v in values):
            out.append(class_names[c] if c < len(class_names) else f"class {c}")
    return out


def summarize(runs: Sequence[Mapping[str, Any]], *, genome_ids: Sequence[str], rungs: Sequence[int],
              seeds: Sequence[int], proxies: Mapping[str, Mapping[str, float | None]],
              proxy_seconds: Mapping[str, float], class_names: Sequence[str], target_tau: float,
              genome_strings: Mapping[str, str] | None = None, failed: Mapping[int, int] | None = None,
              n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The study's result from its finished runs and zero-cost scores.

    ``runs``: one record per finished run (``genome_id``, ``rung``, ``seed``, ``miou``, ``per_class_iou``,
    ``train_seconds``); only those of ``genome_ids`` x ``rungs`` x ``seeds`` count.  ``proxies``: name ->
    genome_id -> score (None where the proxy failed); ``proxy_seconds``: name -> seconds over all genomes.
    Rows come rungs first (cheapest first, the top rung last, marked ``reference``), then proxies in the given
    order.  The recommendation is the cheapest rung below the top whose tau interval lies at or above
    ``target_tau``.
    """
    top = rungs[-1]
    wanted = set(genome_ids)
    per: dict[int, dict[str, dict[int, Mapping[str, Any]]]] = {r: {} for r in rungs}
    for run in runs:
        r, gid, s = int(run["rung"]), run["genome_id"], int(run["seed"])
        if r in per and gid in wanted and s in seeds:
            per[r].setdefault(gid, {}).setdefault(s, run)
    scores = {r: {g: [per[r][g][s]["miou"] for s in seeds if s in per[r][g]] for g in genome_ids if g in per[r]}
              for r in rungs}
    rows: list[dict[str, Any]] = []
    agreements: dict[int, RankAgreement] = {}
    for r in rungs:
        done = [run for by_seed in per[r].values() for run in by_seed.values()]
        row: dict[str, Any] = {"kind": "rung", "name": f"{r} steps", "steps": r, "cost_ratio": r / top,
                               "runs": len(done), "failed": int((failed or {}).get(r, 0)), "genomes": len(scores[r]),
                               "worker_seconds": sum(float(x.get("train_seconds") or 0.0) for x in done),
                               "mean_miou": (sum(x["miou"] for x in done) / len(done)) if done else None,
                               "reference": r == top}
        if r == top:
            row.update({f: None for f in AGREEMENT_FIELDS}, n=len(scores[r]), note="the reference")
        else:
            agree, ra = _agreement(scores[r], scores[top], n_boot, seed)
            row.update(agree)
            if ra is not None:
                agreements[r] = ra
        row.update(_seed_stats(scores[r], len(seeds)))
        row["zero_iou_classes"] = zero_iou_classes([x.get("per_class_iou") or [] for x in done], class_names)
        rows.append(row)
    for name, by_genome in proxies.items():
        scored = {g: float(v) for g, v in by_genome.items() if g in wanted and v is not None and math.isfinite(v)}
        row = {"kind": "proxy", "name": name, "steps": None, "cost_ratio": None, "runs": len(scored),
               "failed": sum(1 for g in genome_ids if g not in scored), "genomes": len(scored),
               "worker_seconds": float(proxy_seconds.get(name, 0.0)), "mean_miou": None, "reference": False}
        agree, _ = _agreement(scored, scores[top], n_boot, seed)
        row.update(agree)
        row.update(seed_tau=None, within_sd=None, between_sd=None, noise_ratio=None, zero_iou_classes=[])
        rows.append(row)
    best = recommend_rung(agreements, float(target_tau))  # rungs below the top, cheapest first
    meeting = [row["name"] for row in rows if row["kind"] == "proxy" and row["tau_low"] is not None
               and row["tau_low"] >= target_tau]
    genomes = []
    for g in genome_ids:
        means = {str(r): (sum(scores[r][g]) / len(scores[r][g])) for r in rungs if scores[r].get(g)}
        genomes.append({"genome_id": g, "genome": (genome_strings or {}).get(g, ""), "miou": means,
                        "proxies": {n: proxies[n].get(g) for n in proxies}})
    return clean({"top_rung": top, "rungs": list(rungs), "seeds": list(seeds), "target_tau": float(target_tau),
                  "rows": rows, "recommended_rung": best, "recommendation": recommendation_text(rows, best, target_tau),
                  "proxies_meeting_target": meeting, "genomes": genomes})


def recommendation_text(rows: Sequence[Mapping[str, Any]], best: int | None, target_tau: float) -> str:
    rungs = [r for r in rows if r["kind"] == "rung"]
    top = rungs[-1]["steps"]
    if best is not None:
        r = next(x for x in rungs if x["steps"] == best)
        return (f"train {best} steps: tau-b {r['tau']:.2f} [{r['tau_low']:.2f}, {r['tau_high']:.2f}] with {top} steps "
                f"over n = {r['n']} genomes; the whole 95 % interval clears the target {target_tau:g}, at "
                f"{best / top:.2g}x the top rung's steps")
    lower = [x for x in rungs if x["steps"] != top]
    if not lower:
        return f"no rung below the top rung ({top} steps) to recommend; add cheaper rungs"
    scored = [x for x in lower if x["tau_low"] is not None]
    if not scored:
        return (f"no rung below {top} steps has a defined interval (too few genomes scored, or constant scores); none "
                f"can be recommended against the target {target_tau:g}")
    b = max(scored, key=lambda x: x["tau_low"])
    return (f"no rung below {top} steps reaches the target: the best lower bound is {b['tau_low']:.2f} ({b['name']}, "
            f"tau-b {b['tau']:.2f}, n = {b['n']}) < {target_tau:g}; train the top rung, add genomes or seeds to "
            "narrow the intervals, or add rungs between")
