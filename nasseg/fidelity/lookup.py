"""Finding a stored fidelity result: for a search (same space file, dataset and recipe apart from its steps),
how well do its proxy steps, and each zero-cost proxy, rank genomes like longer training?  Read-only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nasseg.fidelity.config import recipe_key
from nasseg.study import META_KEY, mask_url, sqlite_path

#: what a rung's or a proxy's entry in a :func:`find_fidelity` record holds
ENTRY_FIELDS = ("tau", "tau_low", "tau_high", "spearman", "spearman_low", "spearman_high", "n", "worker_seconds")


def _entry(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ENTRY_FIELDS}


def find_fidelity(storage_url: str, *, space_sha: str, dataset: str, recipe_dict: Mapping[str, Any]) -> dict | None:
    """The result of the fidelity study in ``storage_url`` that matches: the same space sha
    (``nasseg.search.config.file_sha`` of the space file), dataset, and recipe apart from the fields a rung sets
    (:data:`~nasseg.fidelity.config.RUNG_FIELDS`: steps, warm-up, evaluation interval).  None when the storage
    holds none (or does not exist).  The most recently computed one wins when several match.

    Returns ``{"study", "storage" (password masked), "top_rung", "target_tau", "recommended_rung",
    "rungs": {steps: entry}, "proxies": {name: entry}, "genomes": n, "seeds": [...], "computed_utc"}``, each
    entry holding :data:`ENTRY_FIELDS` (tau-b with its 95 % interval, Spearman's rho with its interval, n genomes,
    worker-seconds); the top rung's entry has no tau (it is the reference).
    """
    import optuna

    from nasseg.errors import StorageError
    from nasseg.study import open_storage

    path = sqlite_path(storage_url)
    if path is not None and not path.exists():
        return None
    try:
        storage = open_storage(storage_url, readonly=True)
        summaries = optuna.study.get_all_study_summaries(storage)
    except StorageError:
        return None
    want = recipe_key(recipe_dict)
    best: dict[str, Any] | None = None
    for s in summaries:
        meta = s.user_attrs.get(META_KEY)
        if not isinstance(meta, Mapping) or meta.get("kind") != "fidelity" or not meta.get("result"):
            continue
        if meta.get("space_sha") != space_sha or meta.get("dataset") != dataset or meta.get("recipe") != want:
            continue
        res = meta["result"]
        rec = {"study": s.study_name, "storage": mask_url(storage_url), "top_rung": res["top_rung"],
               "target_tau": res["target_tau"], "recommended_rung": res.get("recommended_rung"),
               "rungs": {int(r["steps"]): _entry(r) for r in res["rows"] if r["kind"] == "rung"},
               "proxies": {r["name"]: _entry(r) for r in res["rows"] if r["kind"] == "proxy"},
               "genomes": len(meta.get("genome_ids") or ()), "seeds": list(meta.get("seeds") or ()),
               "computed_utc": res.get("computed_utc", "")}
        if best is None or rec["computed_utc"] >= best["computed_utc"]:
            best = rec
    return best


def proxy_tau(record: Mapping[str, Any] | None, name: str) -> dict[str, Any] | None:
    """The entry of zero-cost proxy ``name`` (tau, tau_low, tau_high, n ...) in a :func:`find_fidelity` record, or
    None when the record is None or the study did not score that proxy (or its tau is undefined)."""
    if not record:
        return None
    entry = (record.get("proxies") or {}).get(name)
    return dict(entry) if entry and entry.get("tau") is not None else None


def rung_tau(record: Mapping[str, Any] | None, steps: int) -> dict[str, Any] | None:
    """The entry of the rung trained for ``steps`` in a :func:`find_fidelity` record, or None (no record, no such
    rung, the top rung itself, or an undefined tau)."""
    if not record:
        return None
    entry = (record.get("rungs") or {}).get(int(steps))
    return dict(entry) if entry and entry.get("tau") is not None else None


def agreement_line(record: Mapping[str, Any] | None, steps: int) -> str | None:
    """Provenance for a search that trains ``steps``: e.g. ``"rank agreement with 5x training: tau 0.64 [0.41,
    0.82], n = 12 (fidelity study 'f' in sqlite:///runs/f.db)"``; None without a matching rung."""
    entry = rung_tau(record, steps)
    if entry is None:
        return None
    ratio = record["top_rung"] / int(steps)
    low = "-" if entry["tau_low"] is None else f"{entry['tau_low']:.2f}"
    high = "-" if entry["tau_high"] is None else f"{entry['tau_high']:.2f}"
    return (f"rank agreement with {ratio:.3g}x training: tau {entry['tau']:.2f} [{low}, {high}], n = {entry['n']} "
            f"(fidelity study {record['study']!r} in {record['storage']})")
