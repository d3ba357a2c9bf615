"""The demo's proxy against 5x its steps, pooled over every fidelity study of the demo's recipe (issue #14).

Three ``nasseg fidelity`` studies of ``search_spaces/realtime.yaml`` trained genomes with the demo's proxy recipe
(AdamW 2e-3, class-weighted CE, 64x128, batch 8; bench/README.md "Proxy fidelity of the demo") at 100 and 500 steps,
seed 0: the 12 genomes of ``bench/fidelity_genomes_realtime12.txt``, 20 genomes sampled with ``--seed 0`` and 24 with
``--seed 1``.  This script reads the three study databases, checks that every run it pools has the same recipe at
its rung (the full recipe JSON, not only the step count) and the same dataset, keeps a genome found in several
studies once (and prints whether its runs agree, since training is deterministic per seed on CPU), and prints
Kendall tau-b and Spearman with 95 % paired-bootstrap intervals (``nasseg.fidelity_stats``) for the pooled genomes,
for each study alone, and the per-class IoU still at 0.

    python bench/fidelity_pool.py [--boot 4000] [--proxy 100 --reference 500]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import optuna

from nasseg.data.synthetic import CLASS_NAMES
from nasseg.fidelity_stats import rank_agreement

ROOT = Path(__file__).resolve().parents[1]
STUDIES = (  # (study, database): every study trained with the demo's recipe (a study without a rung adds nothing)
    ("realtime-adamw-wce", ROOT / "runs" / "fidelity_wce.db"),
    ("realtime-demo-wce20", ROOT / "runs" / "fidelity_wce20.db"),
    ("realtime-demo-wce24b", ROOT / "runs" / "fidelity_wce24b.db"),
    ("realtime-demo-wce37-200", ROOT / "runs" / "fidelity_wce37.db"),
)
SEED = 0


def _runs(study: str, db: Path) -> dict[tuple[str, int], tuple[float, str, str, dict]]:
    """(genome_id, rung) -> (mIoU, recipe JSON, dataset, per-class IoU) for seed-0 runs with a result."""
    s = optuna.load_study(study_name=study, storage=f"sqlite:///{db}")
    out = {}
    for t in s.trials:
        ua = t.user_attrs
        m = ua.get("metrics")
        if not m or m.get("miou") is None or int(ua.get("seed", -1)) != SEED:
            continue
        out[(ua["genome_id"], int(ua["rung"]))] = (m["miou"], ua["recipe_json"], ua["dataset"], m.get("per_class_iou"))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--boot", type=int, default=4000, help="bootstrap resamples (default 4000)")
    p.add_argument("--proxy", type=int, default=100, help="the proxy's steps (default 100, the demo's)")
    p.add_argument("--reference", type=int, default=500, help="the reference's steps (default 500)")
    a = p.parse_args()
    global PROXY, REFERENCE
    PROXY, REFERENCE = a.proxy, a.reference
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pooled: dict[str, dict[int, float]] = {}
    recipes: dict[int, set[str]] = {PROXY: set(), REFERENCE: set()}
    datasets: set[str] = set()
    zero_classes: dict[str, int] = {}
    for study, db in STUDIES:
        if not db.exists():
            continue
        runs = _runs(study, db)
        alone: dict[str, dict[int, float]] = {}
        for (gid, rung), (miou, recipe, dataset, per_class) in runs.items():
            if rung not in recipes:
                continue
            recipes[rung].add(recipe)
            datasets.add(dataset)
            alone.setdefault(gid, {})[rung] = miou
            if gid in pooled and rung in pooled[gid]:
                same = "the same" if pooled[gid][rung] == miou else f"DIFFERENT ({pooled[gid][rung]:.4f})"
                print(f"  {gid} at {rung} steps is in more than one study: mIoU {miou:.4f}, {same}")
                continue
            pooled.setdefault(gid, {})[rung] = miou
            if rung == PROXY and per_class:
                for name, iou in zip(CLASS_NAMES, per_class):
                    zero_classes[name] = zero_classes.get(name, 0) + (iou == 0)
        both = {g: r for g, r in alone.items() if PROXY in r and REFERENCE in r}
        if len(both) >= 4:
            ra = rank_agreement({g: r[PROXY] for g, r in both.items()}, {g: r[REFERENCE] for g, r in both.items()},
                                n_boot=a.boot, seed=0)
            print(f"{study:24s} n={len(both):2d}  tau-b {ra.tau:.2f} [{ra.tau_low:.2f}, {ra.tau_high:.2f}]  "
                  f"Spearman {ra.spearman:.2f} [{ra.spearman_low:.2f}, {ra.spearman_high:.2f}]")
    for rung, seen in recipes.items():
        if len(seen) != 1:
            raise SystemExit(f"the studies trained {rung} steps with {len(seen)} different recipes; not poolable")
    if len(datasets) != 1:
        raise SystemExit(f"the studies used {len(datasets)} datasets ({sorted(datasets)}); not poolable")
    recipe = json.loads(next(iter(recipes[PROXY])))
    both = {g: r for g, r in pooled.items() if PROXY in r and REFERENCE in r}
    ra = rank_agreement({g: r[PROXY] for g, r in both.items()}, {g: r[REFERENCE] for g, r in both.items()},
                        n_boot=a.boot, seed=0)
    print(f"{'pooled':24s} n={len(both):2d}  tau-b {ra.tau:.2f} [{ra.tau_low:.2f}, {ra.tau_high:.2f}]  "
          f"Spearman {ra.spearman:.2f} [{ra.spearman_low:.2f}, {ra.spearman_high:.2f}]")
    spread = sorted(r[REFERENCE] for r in both.values())
    print(f"recipe at {PROXY} steps: {recipe['optimizer']} lr {recipe['lr']}, loss {recipe['loss']}, "
          f"{recipe['resolution']}, batch {recipe['batch_size']}; dataset {next(iter(datasets))}")
    print(f"{REFERENCE}-step mIoU over the pooled genomes: {spread[0]:.3f} .. {spread[-1]:.3f}")
    if zero_classes:
        print(f"classes at IoU 0 after {PROXY} steps (genomes): "
              + ", ".join(f"{k} {v}" for k, v in sorted(zero_classes.items(), key=lambda kv: -kv[1]) if v))


if __name__ == "__main__":
    main()
