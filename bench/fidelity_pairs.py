"""Rank agreement between any two rungs of a stored fidelity study (``nasseg fidelity`` reports each rung against
its top rung only): for every pair (low, high) of rungs, Kendall tau-b and Spearman's rho of the genomes' mean
mIoU over seeds, with paired-bootstrap 95 % intervals (``nasseg.fidelity_stats.rank_agreement``), and the
worker-seconds of the low rung.  Read-only.

    python bench/fidelity_pairs.py --storage sqlite:///runs/fidelity.db --study realtime-demo [--pairs 100:500,200:1000]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics

from nasseg.fidelity_stats import rank_agreement
from nasseg.study import STATUS_KEY, load_study


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--storage", required=True)
    ap.add_argument("--study", required=True)
    ap.add_argument("--pairs", default=None, help="LOW:HIGH,... (default: every rung against every larger one)")
    ap.add_argument("--bootstrap", type=int, default=2000)
    a = ap.parse_args()
    study = load_study(a.storage, a.study)
    scores: dict[int, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    seconds: dict[int, list[float]] = collections.defaultdict(list)
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        if t.state.name == "COMPLETE" and ua.get(STATUS_KEY) == "trained" and "rung" in ua:
            scores[int(ua["rung"])][ua["genome_id"]].append(float(ua["miou"]))
            seconds[int(ua["rung"])].append(float(ua.get("train_seconds", 0.0)))
    rungs = sorted(scores)
    pairs = ([tuple(int(x) for x in p.split(":")) for p in a.pairs.split(",")] if a.pairs else
             [(lo, hi) for i, lo in enumerate(rungs) for hi in rungs[i + 1:]])
    print(f"study {a.study!r}: rungs {rungs}; load average now {os.getloadavg()}")
    print(f"{'low':>5} {'high':>5} {'x':>4} {'n':>3}  {'tau-b [95 % CI]':<22} {'Spearman [95 % CI]':<22} "
          f"{'median s/run (low)':>18}")
    for lo, hi in pairs:
        low = {g: v for g, v in scores[lo].items() if g in scores[hi]}
        high = {g: scores[hi][g] for g in low}
        ra = rank_agreement(low, high, n_boot=a.bootstrap, seed=0)
        print(f"{lo:>5} {hi:>5} {hi / lo:>4.1f} {ra.n:>3}  {ra.tau:5.2f} [{ra.tau_low:5.2f}, {ra.tau_high:5.2f}]   "
              f"{ra.spearman:5.2f} [{ra.spearman_low:5.2f}, {ra.spearman_high:5.2f}]   "
              f"{statistics.median(seconds[lo]):>18.1f}")


if __name__ == "__main__":
    main()
