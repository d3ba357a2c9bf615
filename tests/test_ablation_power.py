"""Ablation power (issue #14 item 5): seed sd, minimum detectable difference and seeds for the paper's effect
per variant, and verdicts that say what would resolve them; ablation weights kept only with ``--keep-weights``
(issue #15 item 10)."""

from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from nasseg import ablation as A
from nasseg.ablation import stats as S
from nasseg.ablation.render import COLUMNS, render_markdown, table_rows
from nasseg.fidelity_stats import min_detectable_difference, seeds_needed

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests" / "fixtures" / "ablation_tiny.yaml"
Z = statistics.NormalDist().inv_cdf(0.975) + statistics.NormalDist().inv_cdf(0.8)  # 2.8016


# ------------------------------------------------------------------------------------ power numbers
def test_pooled_sd_weights_each_arm_by_its_degrees_of_freedom():
    assert S.pooled_sd([1.0, 3.0], [10.0, 12.0, 14.0]) == pytest.approx(math.sqrt((1 * 2.0 + 2 * 4.0) / 3))
    assert S.pooled_sd([5.0], [1.0, 3.0]) == pytest.approx(math.sqrt(2.0))  # a one-seed arm adds nothing
    assert S.pooled_sd([5.0], [6.0]) is None and S.pooled_sd([], []) is None


def test_mdd_and_seeds_for_effect_are_fidelity_stats():
    assert S.mdd(2.0, 3, 1.0, 4) == pytest.approx(min_detectable_difference(2.0, 3, 1.0, 4))
    assert S.mdd(2.0, 3, 1.0, 4) == pytest.approx(Z * math.sqrt(4 / 3 + 1 / 4))  # the closed form
    assert S.mdd(2.0, 1, 1.0, 4) is None and S.mdd(None, 3, 1.0, 4) is None
    # n = ceil(2 z^2 sd^2 / effect^2): 2 * 7.849 * 4 / 6.25 = 10.05 -> 11
    assert S.seeds_for_effect(2.5, 2.0) == (11, "11") and seeds_needed(2.5, 2.0) == 11
    assert S.seeds_for_effect(-2.5, 2.0) == (11, "11")  # the sign of the effect does not matter
    assert S.seeds_for_effect(0.01, 5.0) == (None, ">1000")
    assert S.seeds_for_effect(0.0, 5.0) == (None, "effect 0")
    assert S.seeds_for_effect(2.5, None) == (None, "sd unknown")
    assert S.seeds_for_effect(None, 2.0) == (None, "")


@pytest.mark.parametrize("needed, seeds_run, expected", [
    ("7", 3, "inconclusive (needs >= 7 seeds)"),
    ("3", 3, "inconclusive (needs >= 3 seeds, has 3: the replay's |Delta| is below the paper's)"),
    (">1000", 3, "inconclusive (needs >1000 seeds)"),
    ("effect 0", 3, "inconclusive (effect 0: no number of seeds detects it)"),
    ("sd unknown", 1, "inconclusive (needs >= 2 seeds: seed sd unknown)"),
    ("", 3, "inconclusive (no paper effect size)"),
])
def test_inconclusive_verdicts_say_what_would_resolve_them(needed, seeds_run, expected):
    text = S.verdict(0.3, 0.2, 3, 3, "better", seeds_needed_text=needed, seeds_run=seeds_run)
    assert text == expected and S.verdict_kind(text) == "inconclusive"
    # the rule itself is unchanged: conclusive verdicts carry no note, and without a note the verdict is bare
    assert S.verdict(1.0, 0.2, 3, 3, "better", seeds_needed_text=needed, seeds_run=seeds_run) == "agrees"
    assert S.verdict(0.3, 0.2, 3, 3, "better") == "inconclusive"


def _done(study, mious: dict[str, list[float]]) -> dict:
    """(genome_id, seed) -> a stand-in trial with the per-seed mIoU (percent) given per variant."""
    out = {}
    for v in study.variants:
        for seed, m in enumerate(mious.get(v.name, [])):
            out[(v.genome_id, seed)] = SimpleNamespace(user_attrs={"miou": m / 100})
    return out


def test_summarize_reports_power_per_variant():
    s = A.load_study(TINY)  # paper: base 50.0, wider 52.5 (+2.5), deeper "worse" in words
    fid = s.fidelity("smoke", seeds=3)
    rows = {r.variant: r for r in S.summarize(s, fid, {}, _done(s, {
        "base": [50.0, 52.0, 54.0], "wider": [51.0, 53.0, 55.0], "deeper": [40.0]}))}
    base, wider, deeper = rows["base"], rows["wider"], rows["deeper"]
    assert base.verdict == "reference" and base.mdd is None and base.seeds_needed_text == ""
    assert wider.std == pytest.approx(2.0) and wider.pooled_sd == pytest.approx(2.0)
    assert wider.mdd == pytest.approx(min_detectable_difference(2.0, 3, 2.0, 3))
    assert wider.mdd == pytest.approx(Z * 2.0 * math.sqrt(2 / 3))
    assert wider.paper_diff == pytest.approx(2.5)
    assert wider.seeds_needed == seeds_needed(2.5, 2.0) == 11
    assert wider.verdict == "inconclusive (needs >= 11 seeds)"  # Delta 1.0 < 2 SE
    # one seed: its own sd is unknown, the reference's 3 seeds still give a pooled sd; no paper effect size
    assert deeper.std is None and deeper.mdd is None and deeper.pooled_sd == pytest.approx(2.0)
    assert deeper.verdict == "inconclusive (no paper effect size)" and deeper.seeds_needed_text == ""


def test_summarize_with_one_seed_everywhere_says_the_sd_is_unknown():
    s = A.load_study(TINY)
    rows = {r.variant: r for r in S.summarize(s, s.fidelity("smoke", seeds=1), {},
                                              _done(s, {"base": [50.0], "wider": [60.0], "deeper": [40.0]}))}
    assert rows["wider"].seeds_needed_text == "sd unknown"
    assert rows["wider"].verdict == "inconclusive (needs >= 2 seeds: seed sd unknown)"
    cells = dict(zip(COLUMNS, table_rows([rows["wider"]])[0]))
    assert cells["seed sd pp"] == "unknown (1 seed)" and cells["MDD pp"] == "unknown (< 2 seeds)"
    assert cells["seeds for paper Δ"] == "sd unknown"


def test_power_columns_in_the_table_markdown_and_csv(tmp_path):
    s = A.load_study(TINY)
    fid = s.fidelity("smoke", seeds=3)
    rows = S.summarize(s, fid, {}, _done(s, {"base": [50.0, 52.0, 54.0], "wider": [51.0, 53.0, 55.0],
                                             "deeper": [40.0, 41.0, 42.0]}))
    cells = {r[0]: dict(zip(COLUMNS, r)) for r in table_rows(rows)}
    assert cells["wider"]["seed sd pp"] == "2.00" and cells["wider"]["MDD pp"] == f"{Z * 2 * math.sqrt(2 / 3):.2f}"
    assert cells["wider"]["seeds for paper Δ"] == "11" and cells["base *"]["MDD pp"] == "ref"
    assert cells["wider"]["verdict"] == "inconclusive (needs >= 11 seeds)"
    info = {"study": "x", "storage": "sqlite:///x.db", "executor": "local", "wall_seconds": 1.0,
            "measure_seconds": 0.0, "train_seconds": 0.0,
            "counts": {"trained": 0, "reused_runs": 0, "failed": 0, "measured": 0}}
    md = render_markdown(s, fid, rows, [], info)
    assert "| MDD pp |" in md and "seeds for paper Δ" in md and S.POWER_RULE in md
    assert "inconclusive (needs >= 11 seeds)" in md
    assert "reference: 1, inconclusive: 1, agrees: 1" in md  # counted by kind, whatever the note
    paths = A.write_report(s, fid, rows, [], info, tmp_path, plot=False)
    rec = {r["variant"]: r for r in csv.DictReader(open(paths["csv"]))}
    assert float(rec["wider"]["mdd"]) == pytest.approx(Z * 2 * math.sqrt(2 / 3))
    assert rec["wider"]["seeds_needed"] == "11" and float(rec["wider"]["std"]) == pytest.approx(2.0)
    assert rec["wider"]["verdict"] == "inconclusive (needs >= 11 seeds)"




# ------------------------------------------------------------------------------- weights on disk
def _pt_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.pt"))


@pytest.mark.parametrize("keep", [False, True], ids=["default", "keep-weights"])
def test_ablation_weights_are_written_only_with_keep_weights(tmp_path, keep):
    res = A.ablate(A.AblationConfig(study=str(TINY), storage=f"sqlite:///{tmp_path / 'abl.db'}", fidelity="smoke",
                                    seeds=1, executor="local", out=str(tmp_path / "out"), plot=False,
                                    keep_weights=keep), log=lambda s: None)
    assert res["counts"]["trained"] == 3 and res["keep_weights"] is keep
    study = optuna.load_study(study_name="ablation-tiny-smoke", storage=f"sqlite:///{tmp_path / 'abl.db'}")
    paths = [t.user_attrs.get("weights_path") for t in study.get_trials()]
    if keep:
        assert len(_pt_files(tmp_path)) == 3 and all(p and Path(p).exists() for p in paths)
    else:
        assert _pt_files(tmp_path) == [] and paths == [None] * 3
