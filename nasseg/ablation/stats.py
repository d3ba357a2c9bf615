"""The replay's statistics, as pure functions over records: one :class:`Row` per variant
(:func:`summarize`: costs, per-seed mIoU, Delta and SE to the reference, the paper's direction and the
:func:`verdict` of :data:`VERDICT_RULE`), and the paper's cost claims checked on the measured costs
(:func:`check_claims`).  No I/O, no rendering, no torch or optuna: trials are read through their
``user_attrs`` only."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nasseg.ablation.schema import Fidelity, Study, stated_match

VERDICTS = ("reference", "agrees", "contradicts", "inconclusive", "no paper direction", "no runs")
VERDICT_RULE = (
    "Delta = mean proxy mIoU of the variant minus that of the reference (percentage points), over the seeds "
    "each finished. SE = sqrt(s_v^2/n_v + s_r^2/n_r), s = sample standard deviation (n-1) over seeds, n = number "
    "of seeds. If either side has fewer than 2 seeds, or |Delta| < 2*SE, the verdict is 'inconclusive': the seed "
    "spread cannot tell the direction, which is not agreement. Otherwise the replay's direction is the sign of "
    "Delta; it 'agrees' when the paper's direction is the same and 'contradicts' when it is opposite or when the "
    "paper reports no difference. The paper's direction is the sign of its own Delta (paper value of the variant "
    "minus that of the reference; equal values = no difference), or, where the paper gives no number, the "
    "direction its text states. Neither: 'no paper direction'."
)


def cfg_res(res: Any) -> str:
    return f"{res[0]}x{res[1]}"


@dataclass
class Row:
    variant: str
    label: str
    genome_id: str
    genome: str
    is_reference: bool
    params: int | None = None
    macs: int | None = None
    macs_all: int | None = None
    latency_ms: float | None = None
    latency_cv: float | None = None
    fov: int | None = None
    seeds: list[int] = field(default_factory=list)
    mious: list[float] = field(default_factory=list)  # percent, one per seed
    mean: float | None = None
    std: float | None = None
    diff: float | None = None  # replay Delta to the reference, percentage points
    se: float | None = None
    paper_miou: float | None = None
    paper_diff: float | None = None
    paper_direction: str | None = None
    verdict: str = ""
    stated: dict[str, dict[str, Any]] = field(default_factory=dict)  # quantity -> {paper, official, ours, ...}
    scaling: list[dict[str, Any]] = field(default_factory=list)

    def as_csv(self) -> dict[str, Any]:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("stated", "scaling", "mious", "seeds")}
        d["seeds"] = " ".join(map(str, self.seeds))
        d["mious"] = " ".join(f"{m:.4f}" for m in self.mious)
        for q, s in self.stated.items():
            for k, v in s.items():
                d[f"{q}_{k}"] = v
        for s in self.scaling:
            r = cfg_res(s["resolution"])
            for k, v in s.items():
                if k != "resolution":
                    d[f"scaling_{r}_{k}"] = v
        return d


def _direction(diff: float) -> str:
    return "better" if diff > 0 else "worse" if diff < 0 else "similar"


def verdict(diff: float | None, se: float | None, n_v: int, n_r: int, paper_direction: str | None) -> str:
    """The verdict of one variant (see :data:`VERDICT_RULE`)."""
    if n_v == 0:
        return "no runs"
    if paper_direction is None:
        return "no paper direction"
    if diff is None or se is None or n_v < 2 or n_r < 2 or abs(diff) < 2 * se:
        return "inconclusive"
    replay = _direction(diff)
    return "agrees" if replay == paper_direction else "contradicts"


def summarize(study: Study, fid: Fidelity, costs: Mapping[str, Mapping[str, Any]],
              done: Mapping[tuple[str, int], Any]) -> list[Row]:
    from nasseg.genome import to_string

    spec = study.spec
    rows: list[Row] = []
    for v in study.variants:
        c = costs.get(v.genome_id) or {}
        r = Row(v.name, v.label, v.genome_id, to_string(v.genome), v.name == study.reference,
                c.get("params"), c.get("macs"), c.get("macs_all"), c.get("latency_ms"),
                (c.get("latency") or {}).get("cv"), c.get("fov"))
        for s in fid.seeds:
            t = done.get((v.genome_id, s))
            if t is not None:
                r.seeds.append(s)
                r.mious.append(100.0 * float(t.user_attrs["miou"]))
        if r.mious:
            r.mean = statistics.fmean(r.mious)
            r.std = statistics.stdev(r.mious) if len(r.mious) > 1 else None
        pr = spec.paper.rows.get(v.name)
        r.paper_miou = pr.miou if pr is not None else None
        ours_macs = r.macs if spec.cost.macs == "conv" else r.macs_all
        off = spec.official.rows.get(v.name) if spec.official else None
        for q, ours in (("params", r.params), ("macs", ours_macs), ("fov", r.fov)):
            stated_p = getattr(pr, q) if pr is not None else None
            stated_o = getattr(off, q) if off is not None else None
            if stated_p is None and stated_o is None:
                continue
            r.stated[q] = {"ours": ours, "paper": stated_p, "paper_match": stated_match(ours, stated_p),
                           "official": stated_o, "official_match": stated_match(ours, stated_o)}
        r.scaling = list(c.get("scaling") or [])
        rows.append(r)
    ref = next(r for r in rows if r.is_reference)
    ref_paper = spec.paper.rows.get(ref.variant)
    for r in rows:
        if r.is_reference:
            r.verdict = "reference" if r.mious else "no runs"
            continue
        if r.mean is not None and ref.mean is not None:
            r.diff = r.mean - ref.mean
            if len(r.mious) > 1 and len(ref.mious) > 1:
                r.se = math.sqrt(r.std ** 2 / len(r.mious) + ref.std ** 2 / len(ref.mious))
        pr = spec.paper.rows.get(r.variant)
        if pr is not None and pr.miou is not None and ref_paper is not None and ref_paper.miou is not None:
            r.paper_diff = round(pr.miou - ref_paper.miou, 6)
            r.paper_direction = _direction(r.paper_diff)
        elif pr is not None and pr.direction is not None:
            r.paper_direction = pr.direction
        r.verdict = verdict(r.diff, r.se, len(r.mious), len(ref.mious), r.paper_direction)
    return rows


@dataclass
class ClaimResult:
    text: str
    source: str
    variants: list[str]
    check: str = ""  # the check in words, e.g. "macs: isa < dense"
    result: str = ""  # holds | fails | not measured ("" without a check)
    detail: str = ""  # the numbers compared


_REL = {"less": "<", "greater": ">", "equal": "="}


def _holds(a: float, rel: str, b: float) -> bool:
    return a < b if rel == "less" else a > b if rel == "greater" else a == b


def _fmt_quantity(q: str, v: float) -> str:
    if q in ("macs", "macs_all"):
        return f"{v / 1e9:.3f} G"
    if q == "peak_memory_bytes":
        return f"{v / 2 ** 20:.1f} MiB"
    if q == "latency_ms":
        return f"{v:.2f} ms"
    return f"{v:,}"


def check_claims(study: Study, costs: Mapping[str, Mapping[str, Any]]) -> list[ClaimResult]:
    """The paper's claims, with the cost checks evaluated on the measured costs."""
    by_name = {v.name: costs.get(v.genome_id) or {} for v in study.variants}
    out = []
    for c in study.spec.paper.claims:
        r = ClaimResult(c.text, c.source, list(c.variants))
        if c.check is not None:
            k = c.check
            r.check = f"{k.quantity}: {k.variant} {_REL[k.relation]} {k.than}"
            a, b = by_name[k.variant], by_name[k.than]
            at = {tuple(x) for x in k.at} if k.at else None
            if at:
                r.check += " at " + ", ".join(cfg_res(x) for x in k.at)
            pairs = []
            if a.get(k.quantity) is not None and b.get(k.quantity) is not None:
                res = a.get("macs_resolution") if k.quantity.startswith("macs") else (a.get("latency") or {}).get(
                    "resolution") if k.quantity == "latency_ms" else None
                if at is None or (res is not None and tuple(res) in at):
                    pairs.append((cfg_res(res) if res else "", a[k.quantity], b[k.quantity]))
            for sa, sb in zip(a.get("scaling") or [], b.get("scaling") or []):
                if sa.get(k.quantity) is not None and sb.get(k.quantity) is not None \
                        and (at is None or tuple(sa["resolution"]) in at):
                    pairs.append((cfg_res(sa["resolution"]), sa[k.quantity], sb[k.quantity]))
            pairs = list(dict.fromkeys(pairs))  # the cost resolution may also be a scaling resolution
            if not pairs:
                r.result = "not measured"
            else:
                ok = [_holds(x, k.relation, y) for _, x, y in pairs]
                r.result = "holds" if all(ok) else "fails"
                r.detail = "; ".join(f"{_fmt_quantity(k.quantity, x)} vs {_fmt_quantity(k.quantity, y)}"
                                     + (f" at {where}" if where else "") for where, x, y in pairs)
        out.append(r)
    return out
