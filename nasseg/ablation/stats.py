"""The replay's statistics, as pure functions over records: one :class:`Row` per variant
(:func:`summarize`: costs, per-seed mIoU, Delta and SE to the reference, the paper's direction, the power of
the comparison (:data:`POWER_RULE`: seed sd, minimum detectable difference, seeds the paper's effect needs)
and the :func:`verdict` of :data:`VERDICT_RULE`), and the paper's cost claims checked on the measured costs
(:func:`check_claims`).  No I/O, no rendering, no torch or optuna: trials are read through their
``user_attrs`` only.  The power numbers come from :mod:`nasseg.fidelity_stats` (normal approximation)."""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nasseg.ablation.schema import Fidelity, Study, stated_match
from nasseg.fidelity_stats import min_detectable_difference, seeds_needed

#: the power convention of every replay: two-sided test at ``ALPHA``, power ``POWER``; seed counts above
#: ``MAX_SEEDS`` are reported as ">1000"
ALPHA, POWER, MAX_SEEDS = 0.05, 0.8, 1000

VERDICTS = ("reference", "agrees", "contradicts", "inconclusive", "no paper direction", "no runs")
VERDICT_RULE = (
    "Delta = mean proxy mIoU of the variant minus that of the reference (percentage points), over the seeds "
    "each finished. SE = sqrt(s_v^2/n_v + s_r^2/n_r), s = sample standard deviation (n-1) over seeds, n = number "
    "of seeds. If either side has fewer than 2 seeds, or |Delta| < 2*SE, the verdict is 'inconclusive': the seed "
    "spread cannot tell the direction, which is not agreement. Otherwise the replay's direction is the sign of "
    "Delta; it 'agrees' when the paper's direction is the same and 'contradicts' when it is opposite or when the "
    "paper reports no difference. The paper's direction is the sign of its own Delta (paper value of the variant "
    "minus that of the reference; equal values = no difference), or, where the paper gives no number, the "
    "direction its text states. Neither: 'no paper direction'. An inconclusive verdict says what would resolve it "
    "(see the power rule): 'inconclusive (needs >= N seeds)' with N the seeds per arm the paper's own Delta needs "
    "at this fidelity's seed sd (', has n: the replay's |Delta| is below the paper's' when N seeds already ran); "
    "'(needs >1000 seeds)' when more than 1000 would be needed; '(effect 0 ...)' when the paper's Delta is 0, "
    "which no number of seeds detects; '(needs >= 2 seeds: seed sd unknown)' when no arm has two seeds; "
    "'(no paper effect size)' when the paper states its direction in words only."
)
POWER_RULE = (
    "Power, normal approximation (nasseg.fidelity_stats), two-sided alpha = 0.05, power = 0.8, z = z_0.975 + "
    "z_0.8 = 2.80. Seed sd: the sample sd (n-1) of a variant's per-seed mIoU, unknown with one seed. MDD "
    "(minimum detectable difference vs the reference at the seeds run) = z * sqrt(s_v^2/n_v + s_r^2/n_r), "
    "defined when both sides have >= 2 seeds: a true Delta of MDD is found at 2-sided 5 % with probability 80 %. "
    "Seeds for the paper's Delta = the smallest n >= 2 with z * s_p * sqrt(2/n) <= |paper Delta| (seeds_needed), "
    "n seeds in each arm, s_p the pooled seed sd of the variant and the reference, sqrt(sum (n_i-1) s_i^2 / "
    "sum (n_i-1)) over the arms with >= 2 seeds (unknown when neither has two). The paper's Delta (its own "
    "dataset and schedule) is taken as the effect to detect on the replay's scale, percentage points of mIoU. "
    "With few seeds the t distribution is wider than the normal, so MDD is a lower bound and N optimistic by a "
    "seed or two."
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
    pooled_sd: float | None = None  # pooled seed sd of this variant and the reference (power rule)
    mdd: float | None = None  # minimum detectable difference vs the reference at the seeds run, pp
    seeds_needed: int | None = None  # seeds per arm the paper's Delta needs at pooled_sd (None: see the text)
    seeds_needed_text: str = ""  # N, ">1000", "effect 0", "sd unknown"; "" without a paper Delta
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

    @property
    def verdict_kind(self) -> str:
        """The verdict without its note: one of :data:`VERDICTS`."""
        return verdict_kind(self.verdict)


def _direction(diff: float) -> str:
    return "better" if diff > 0 else "worse" if diff < 0 else "similar"


def verdict_kind(text: str) -> str:
    """``"inconclusive (needs >= 7 seeds)"`` -> ``"inconclusive"``."""
    return text.split(" (", 1)[0]


def pooled_sd(*samples: list[float]) -> float | None:
    """sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)) over the samples with >= 2 values (s_i their sample sd);
    None when no sample has two values."""
    parts = [(len(x) - 1, statistics.variance(x)) for x in samples if len(x) >= 2]
    df = sum(d for d, _ in parts)
    return math.sqrt(sum(d * v for d, v in parts) / df) if df else None


def mdd(sd_v: float | None, n_v: int, sd_r: float | None, n_r: int) -> float | None:
    """Minimum detectable difference (two-sided ALPHA, POWER) of a variant vs the reference at the seeds run,
    :func:`nasseg.fidelity_stats.min_detectable_difference`; None when either side has fewer than 2 seeds."""
    if sd_v is None or sd_r is None or n_v < 2 or n_r < 2:
        return None
    return min_detectable_difference(sd_v, n_v, sd_r, n_r, alpha=ALPHA, power=POWER)


def seeds_for_effect(effect: float | None, sd: float | None) -> tuple[int | None, str]:
    """(N, text): the seeds per arm that detect ``effect`` at seed sd ``sd``
    (:func:`nasseg.fidelity_stats.seeds_needed`, ALPHA, POWER, at most MAX_SEEDS).  ``text`` is ``str(N)``,
    ``">1000"`` (more than MAX_SEEDS), ``"effect 0"`` (no seed count detects no difference), ``"sd unknown"``
    (``sd`` is None: one seed per arm) or ``""`` (no effect: the paper gives no number)."""
    if effect is None:
        return None, ""
    if effect == 0:
        return None, "effect 0"
    if sd is None:
        return None, "sd unknown"
    n = seeds_needed(effect, sd, alpha=ALPHA, power=POWER, max_seeds=MAX_SEEDS)
    return (n, str(n)) if n is not None else (None, f">{MAX_SEEDS}")


def _inconclusive_note(needed_text: str, seeds_run: int | None) -> str:
    if needed_text.isdigit():
        n = int(needed_text)
        if seeds_run is not None and seeds_run >= n:
            return f"needs >= {n} seeds, has {seeds_run}: the replay's |Delta| is below the paper's"
        return f"needs >= {n} seeds"
    if needed_text.startswith(">"):
        return f"needs {needed_text} seeds"
    if needed_text == "effect 0":
        return "effect 0: no number of seeds detects it"
    if needed_text == "sd unknown":
        return "needs >= 2 seeds: seed sd unknown"
    return "no paper effect size"


def verdict(diff: float | None, se: float | None, n_v: int, n_r: int, paper_direction: str | None, *,
            seeds_needed_text: str | None = None, seeds_run: int | None = None) -> str:
    """The verdict of one variant (see :data:`VERDICT_RULE`).  With ``seeds_needed_text`` (from
    :func:`seeds_for_effect`; ``seeds_run`` = the fewer seeds of the two arms) an inconclusive verdict carries
    what would resolve it, e.g. ``"inconclusive (needs >= 7 seeds)"``; without, it is bare."""
    if n_v == 0:
        return "no runs"
    if paper_direction is None:
        return "no paper direction"
    if diff is None or se is None or n_v < 2 or n_r < 2 or abs(diff) < 2 * se:
        if seeds_needed_text is None:
            return "inconclusive"
        return f"inconclusive ({_inconclusive_note(seeds_needed_text, seeds_run)})"
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
        r.pooled_sd = pooled_sd(r.mious, ref.mious)
        r.mdd = mdd(r.std, len(r.mious), ref.std, len(ref.mious))
        r.seeds_needed, r.seeds_needed_text = seeds_for_effect(r.paper_diff, r.pooled_sd)
        r.verdict = verdict(r.diff, r.se, len(r.mious), len(ref.mious), r.paper_direction,
                            seeds_needed_text=r.seeds_needed_text, seeds_run=min(len(r.mious), len(ref.mious)))
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
