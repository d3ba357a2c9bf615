"""The demo's one-seed proxy against a two-seed reference, and seed-to-seed tau per rung (issue #14).

Reads the fidelity study ``realtime-demo-wce20`` in ``runs/fidelity_wce20.db`` (made by the two ``nasseg fidelity``
commands in bench/README.md, "Proxy fidelity of the demo": ``--seeds 1``, then the same with ``--seeds 2``) and
prints Kendall tau-b / Spearman with 95 % paired-bootstrap intervals (nasseg.fidelity_stats) for each pairing.

    python bench/fidelity_seeds.py
"""
import optuna
from nasseg.fidelity_stats import rank_agreement, seed_to_seed_tau
optuna.logging.set_verbosity(optuna.logging.WARNING)
s = optuna.load_study(study_name="realtime-demo-wce20", storage="sqlite:///runs/fidelity_wce20.db")
d = {}
for t in s.trials:
    ua = t.user_attrs; m = ua.get("metrics")
    if m and m.get("miou") is not None and ua.get("nasseg_status") in (None, "trained"):
        d.setdefault((ua["genome_id"], ua["rung"]), {})[int(ua["seed"])] = m["miou"]
def rung(r, seeds):
    return {g: [v[k] for k in seeds] for (g, rr), v in d.items() if rr == r and all(k in v for k in seeds)}
p0, p01 = rung(100, [0]), rung(100, [0, 1])
r0, r01 = rung(500, [0]), rung(500, [0, 1])
def show(name, a, b):
    keys = sorted(set(a) & set(b))
    ra = rank_agreement({k: a[k] for k in keys}, {k: b[k] for k in keys}, n_boot=2000, seed=0)
    print(f"{name:45s} n={len(keys):2d} tau {ra.tau:.2f} [{ra.tau_low:.2f}, {ra.tau_high:.2f}]  rho {ra.spearman:.2f} [{ra.spearman_low:.2f}, {ra.spearman_high:.2f}]")
show("100 seed 0 vs 500 seed 0", p0, r0)
show("100 seed 0 (the demo) vs 500 mean of 2 seeds", p0, r01)
show("100 mean of 2 vs 500 mean of 2", p01, r01)
p1 = rung(100, [1]); r1 = rung(500, [1])
show("100 seed 1 vs 500 mean of 2 seeds", p1, r01)
if len(p01) >= 3: print("seed-to-seed tau at 100:", round(seed_to_seed_tau(p01), 3), " n", len(p01))
if len(r01) >= 3: print("seed-to-seed tau at 500:", round(seed_to_seed_tau(r01), 3), " n", len(r01))
