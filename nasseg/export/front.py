"""The Pareto front of a search study and the classification of its trials: pure functions over records.

This is the one definition of the front: anything that shows or exports a front (``nasseg export`` and its
``pareto.csv``, ``pareto.png`` and ``report.md``; the star of ``nasseg status`` and of the table ``nasseg
search`` ends with) calls :func:`pareto_front` and :func:`classify_trials` here rather than recomputing it
(never Optuna's ``study.best_trials``, which knows nothing of fidelity, budgets or duplicate genomes).
No I/O, no torch, no Optuna: a trial is a plain record.

* A **trial record** is a dict ``{"number", "state", "values", "user_attrs"}``; :func:`trial_record` makes
  one from an Optuna ``FrozenTrial``; ``state`` may also be an Optuna ``TrialState``.
* The **front** is proxy mIoU (maximised) against measured median latency (minimised), over *qualifying*
  trials only (:func:`disqualification` is None): Optuna state COMPLETE, ``nasseg_status`` in
  :data:`QUALIFYING_STATUSES`, ``fidelity.full`` true, a finite mIoU and latency, and latency within the
  study's budget when it has one.  Rejected, stopped (ASHA), failed, crashed, running and partial-fidelity
  trials never qualify.  Trials of one genome id collapse to the earliest *trained* one (the others are
  listed as its duplicates); distinct genomes with exactly equal (mIoU, latency) collapse to the earliest
  (listed as ties).  Members (:class:`FrontMember`) are ranked by mIoU (best first).
* :func:`classify_trials` labels every trial: on the front, dominated, a duplicate or tie of a member, or
  why it does not qualify.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nasseg.study import META_KEY as _META_KEY  # noqa: F401  (re-exported; nasseg.study is light: no Optuna)
from nasseg.study import STATUS_KEY as _STATUS_KEY

__all__ = ["QUALIFYING_STATUSES", "FRONT_RULE", "FrontMember", "trial_record", "disqualification", "pareto_front",
           "classify_trials"]

#: Statuses of trials whose result is a trained proxy (nasseg.search writes them).
QUALIFYING_STATUSES = ("trained", "reused")
#: The front in words, as ``nasseg status`` (its star), ``nasseg search`` and ``report.md`` state it.
FRONT_RULE = ("complete, full-fidelity trials with a trained proxy, within the latency budget, that no other such "
              "trial beats on both proxy mIoU and latency; one trial per genome")


@dataclass(frozen=True)
class FrontMember:
    """One architecture on the front.

    ``number`` is the representative trial (the earliest trained one of its genome); ``duplicates``
    the other qualifying trials of the same genome id; ``ties`` the qualifying trials of *other*
    genomes with exactly the same (mIoU, latency), collapsed into this member.  ``rank`` 1 = best mIoU.
    """

    rank: int
    number: int
    genome_id: str
    miou: float
    latency_ms: float
    duplicates: tuple[int, ...]
    ties: tuple[int, ...]
    record: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)


def trial_record(trial: Any) -> dict[str, Any]:
    """An Optuna ``FrozenTrial`` as the plain dict :func:`pareto_front` reads."""
    return {"number": int(trial.number), "state": trial.state.name,
            "values": None if trial.values is None else list(trial.values), "user_attrs": dict(trial.user_attrs)}


def _state(record: Mapping[str, Any]) -> str:
    s = record.get("state")
    return str(getattr(s, "name", s) or "").upper()


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _miou(record: Mapping[str, Any]) -> Any:
    ua = record.get("user_attrs") or {}
    if "miou" in ua:
        return ua["miou"]
    values = record.get("values")
    return values[0] if values else None


def disqualification(record: Mapping[str, Any], budget_ms: float | None = None) -> str | None:
    """Why a trial cannot be on the front (a short label), or None when it qualifies.

    Labels: ``running``, ``rejected``, ``stopped``, ``pruned``, ``failed``, ``crashed``, ``status <s>``,
    ``partial fidelity``, ``no result``, ``over budget``.
    """
    ua = record.get("user_attrs") or {}
    state, status = _state(record), ua.get(_STATUS_KEY)
    if state in ("RUNNING", "WAITING"):
        return "running"
    if state == "PRUNED":
        return status if status in ("rejected", "stopped") else "pruned"
    if state == "FAIL":
        return status if status in ("failed", "crashed") else "failed"
    if state != "COMPLETE":
        return state.lower() or "no state"
    if status not in QUALIFYING_STATUSES:
        return f"status {status}"
    if (ua.get("fidelity") or {}).get("full") is not True:
        return "partial fidelity"
    miou, lat = _miou(record), ua.get("latency_ms")
    if not (_finite(miou) and _finite(lat)):
        return "no result"
    if budget_ms is not None and lat > budget_ms:
        return "over budget"
    return None


def _groups(records: Iterable[Mapping[str, Any]], budget_ms: float | None) -> list[dict[str, Any]]:
    """Qualifying trials collapsed by genome id, then by exact (mIoU, latency): one dict per group."""
    qual = sorted((r for r in records if disqualification(r, budget_ms) is None), key=lambda r: int(r["number"]))
    by_genome: dict[str, list[Mapping[str, Any]]] = {}
    for r in qual:
        ua = r["user_attrs"]
        by_genome.setdefault(str(ua.get("genome_id") or f"trial-{r['number']}"), []).append(r)
    reps = []
    for gid, rs in by_genome.items():
        trained = [r for r in rs if r["user_attrs"].get(_STATUS_KEY) == "trained"]
        rep = (trained or rs)[0]
        reps.append({"rep": rep, "genome_id": gid, "duplicates": tuple(int(r["number"]) for r in rs if r is not rep),
                     "ties": (), "miou": float(_miou(rep)), "latency_ms": float(rep["user_attrs"]["latency_ms"])})
    by_point: dict[tuple[float, float], list[dict[str, Any]]] = {}
    for g in sorted(reps, key=lambda g: int(g["rep"]["number"])):
        by_point.setdefault((g["miou"], g["latency_ms"]), []).append(g)
    groups = []
    for gs in by_point.values():
        first = gs[0]
        first["ties"] = tuple(sorted(n for g in gs[1:] for n in (int(g["rep"]["number"]), *g["duplicates"])))
        groups.append(first)
    return groups


def pareto_front(records: Iterable[Mapping[str, Any]], budget_ms: float | None = None) -> list[FrontMember]:
    """The non-dominated qualifying trials (mIoU max, latency min), best mIoU first.

    ``records`` are plain dicts ``{"number", "state", "values", "user_attrs"}`` (:func:`trial_record`);
    ``state`` may be a name or an Optuna ``TrialState``.  ``budget_ms`` drops trials whose latency is
    over it (the study's ``latency_budget_ms``; None = no budget).
    """
    groups = _groups(list(records), budget_ms)
    front, best = [], -math.inf
    for g in sorted(groups, key=lambda g: (g["latency_ms"], -g["miou"], int(g["rep"]["number"]))):
        if g["miou"] > best:  # nothing at lower (or equal) latency reaches this mIoU
            front.append(g)
            best = g["miou"]
    front.sort(key=lambda g: (-g["miou"], g["latency_ms"], int(g["rep"]["number"])))
    return [FrontMember(rank=i + 1, number=int(g["rep"]["number"]), genome_id=g["genome_id"], miou=g["miou"],
                        latency_ms=g["latency_ms"], duplicates=g["duplicates"], ties=g["ties"], record=g["rep"])
            for i, g in enumerate(front)]


def classify_trials(records: Iterable[Mapping[str, Any]], budget_ms: float | None = None,
                    front: Sequence[FrontMember] | None = None) -> dict[int, dict[str, Any]]:
    """Per trial number: ``{"front_status", "on_front", "front_rank", "same_as"}``.

    ``front_status`` is ``front``, ``dominated``, ``duplicate`` (of ``same_as``), ``tie`` (with
    ``same_as``) or the :func:`disqualification` label.
    """
    records = list(records)
    front = pareto_front(records, budget_ms) if front is None else front
    out: dict[int, dict[str, Any]] = {}
    for r in records:
        why = disqualification(r, budget_ms)
        out[int(r["number"])] = {"front_status": why or "dominated", "on_front": False, "front_rank": None,
                                 "same_as": None}
    for g in _groups(records, budget_ms):
        rep = int(g["rep"]["number"])
        for n in g["duplicates"]:
            out[n].update(front_status="duplicate", same_as=rep)
        for n in g["ties"]:
            out[n].update(front_status="tie", same_as=rep)
    for m in front:
        out[m.number].update(front_status="front", on_front=True, front_rank=m.rank)
        for n in (*m.duplicates, *m.ties):
            out[n]["front_rank"] = m.rank
    return out
