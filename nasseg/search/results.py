"""Reading a search study back: one row per trial, the columns people read."""

from __future__ import annotations

from typing import Any

from nasseg.study import STATUS_KEY


def trials_frame(study: Any):
    """A pandas DataFrame, one row per trial, with the columns people read."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        ua = t.user_attrs
        lat = ua.get("latency") or {}
        rows.append({
            "trial": t.number, "state": t.state.name, "status": ua.get(STATUS_KEY, ""),
            "miou": ua.get("miou"), "latency_ms": ua.get("latency_ms"), "latency_cv": lat.get("cv"),
            "latency_method": lat.get("method", "measured" if lat else ""),
            "latency_noisy": bool(lat.get("noisy", False)),
            "latency_backend": lat.get("backend", "torch") if lat else "",  # records from before it: eager
            "latency_eager_ms": ua.get("latency_eager_ms", ua.get("latency_ms") if lat.get("backend", "torch") ==
                                       "torch" else None),
            "latency_decision": ua.get("latency_decision", ""),
            "params_M": (ua["params"] / 1e6) if "params" in ua else None,
            "GMACs": (ua["macs"] / 1e9) if "macs" in ua else None,
            "train_s": ua.get("train_seconds"), "genome_id": ua.get("genome_id", ""),
            "genome": ua.get("genome", ""), "reason": ua.get("reason", ""),
        })
    return pd.DataFrame(rows)
