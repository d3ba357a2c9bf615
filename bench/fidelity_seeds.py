"""The demo's one-seed proxy against a two-seed reference, and seed-to-seed tau per rung (issue #14).

Reads the fidelity study ``realtime-demo-wce20`` in ``runs/fidelity_wce20.db`` (made by the two ``nasseg fidelity``
commands in bench/README.md, "Proxy fidelity of the demo": ``--seeds 1``, then the same with ``--seeds 2``) and
prints Kendall tau-b / Spearman with 95 % paired-bootstrap intervals (nasseg.fidelity_stats) for each pairing.

    python bench/fidelity_seeds.py
"""

import optuna

from nasseg.fidelity_stats import rank_agreement, seed_to_seed_tau

STUDY, STORAGE = "realtime-demo-wce20", "sqlite:///runs/fidelity_wce20.db"


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY, storage=STORAGE)
    runs: dict[tuple[str, int], dict[int, float]] = {}
    for t in study.trials:
        ua, m = t.user_attrs, t.user_attrs.get("metrics")
        if m and m.get("miou") is not None:
            runs.setdefault((ua["genome_id"], int(ua["rung"])), {})[int(ua["seed"])] = m["miou"]

    def rung(steps: int, seeds: list[int]) -> dict[str, list[float]]:
        return {g: [v[k] for k in seeds] for (g, r), v in runs.items() if r == steps and all(k in v for k in seeds)}

    def show(name: str, a: dict, b: dict) -> None:
        keys = sorted(set(a) & set(b))
        ra = rank_agreement({k: a[k] for k in keys}, {k: b[k] for k in keys}, n_boot=2000, seed=0)
        print(f"{name:45s} n={len(keys):2d} tau {ra.tau:.2f} [{ra.tau_low:.2f}, {ra.tau_high:.2f}]  "
              f"rho {ra.spearman:.2f} [{ra.spearman_low:.2f}, {ra.spearman_high:.2f}]")

    both_low, both_top = rung(100, [0, 1]), rung(500, [0, 1])
    show("100 seed 0 vs 500 seed 0", rung(100, [0]), rung(500, [0]))
    show("100 seed 0 (the demo) vs 500 mean of 2 seeds", rung(100, [0]), both_top)
    show("100 seed 1 vs 500 mean of 2 seeds", rung(100, [1]), both_top)
    show("100 mean of 2 vs 500 mean of 2", both_low, both_top)
    print(f"seed-to-seed tau: 100 steps {seed_to_seed_tau(both_low):.2f}, 500 steps {seed_to_seed_tau(both_top):.2f}")


if __name__ == "__main__":
    main()
