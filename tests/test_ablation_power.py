"""Ablation power (issue #14 item 5): seed sd, minimum detectable difference and seeds for the paper's effect
per variant, verdicts that say what would resolve them, ``--fidelity auto --max-hours`` planning; and ablation
weights kept only with ``--keep-weights`` (issue #15 item 10)."""

from __future__ import annotations

import csv
import math
import re
import statistics
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml

from nasseg import ablation as A
from nasseg.ablation import plan as P
from nasseg.ablation import stats as S
from nasseg.ablation.render import COLUMNS, render_markdown, table_rows
from nasseg.errors import ConfigError
from nasseg.fidelity_stats import min_detectable_difference, seeds_needed
from nasseg.train import Recipe

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


# ------------------------------------------------------------------------------------------ planning
def _pilot(sd: float | None = 2.0, sps: float = 1.0, overhead: float = 0.0) -> P.Pilot:
    return P.Pilot(steps=20, runs=4, seconds_per_step=sps, overhead_s=overhead, sd=sd)


def test_ladder_pilot_steps_and_scaled_recipe():
    assert P.pilot_steps(200) == 20 and P.pilot_steps(2) == 2 and P.pilot_steps(50) == 10
    assert P.step_ladder(200, 20) == [20, 25, 50, 100, 200] and P.step_ladder(2, 2) == [2]
    r = Recipe(steps=200, warmup_steps=10, eval_every=100)
    q = P.scaled_recipe(r, 20)
    assert (q.steps, q.warmup_steps, q.eval_every, q.lr) == (20, 1, 0, r.lr) and P.scaled_recipe(r, 200) is r
    assert P.scaled_recipe(Recipe(steps=4, warmup_steps=3), 2).warmup_steps == 1  # stays below the steps


def test_largest_effect_and_base_fidelity():
    s = A.load_study(TINY)
    assert P.largest_effect(s) == ("wider", 2.5) and P.base_fidelity(s) == "smoke"
    d = A.load_study(ROOT / "studies" / "regseg_dilations.yaml", build_check=False)
    name, effect = P.largest_effect(d)
    rows = d.spec.paper.rows
    assert abs(effect) == pytest.approx(max(abs(r.miou - rows[d.reference].miou) for k, r in rows.items()
                                            if r.miou is not None and k != d.reference))
    assert rows[name].miou - rows[d.reference].miou == pytest.approx(effect)
    assert P.base_fidelity(d) == "proxy"


def test_plan_picks_the_seeds_the_effect_needs_and_the_most_steps_that_fit():
    # effect 2.5 at sd 2 -> 11 seeds; 3 variants -> 33 runs of steps s/step each
    kw = dict(effect_variant="wider", effect=2.5, pilot=_pilot(), n_variants=3, ladder=[20, 25, 50, 100, 200],
              max_hours=1.0)
    plan = P.plan_replay(budget_s=33 * 60.0, **kw)
    assert plan.feasible and plan.seeds == 11 == seeds_needed(2.5, 2.0) and plan.steps == 50
    assert plan.mdd == pytest.approx(min_detectable_difference(2.0, 11, 2.0, 11)) and plan.mdd <= 2.5
    assert plan.runs == 33 and plan.estimate_s == pytest.approx(33 * 50)
    assert "11 seeds x 50 steps" in plan.describe()
    # runs already finished at a rung cost nothing (only seeds below the plan's count)
    done = {100: {(v, s) for v in ("base", "wider", "deeper") for s in range(11)} | {("base", 50)}}
    plan = P.plan_replay(budget_s=33 * 60.0, finished=done, **kw)
    assert plan.feasible and plan.steps == 100 and plan.runs == 0 and plan.estimate_s == 0  # 200 steps: 6600 s
    # a per-run overhead counts: 33 * (60 + 50) > 33 * 60, so only 25 steps fit
    plan = P.plan_replay(**{**kw, "pilot": _pilot(overhead=60.0)}, budget_s=33 * 110.0)
    assert plan.steps == 50
    plan = P.plan_replay(**{**kw, "pilot": _pilot(overhead=60.0)}, budget_s=33 * 109.0)
    assert plan.steps == 25


@pytest.mark.parametrize("change, reason", [
    (dict(budget_s=33 * 19.0), r"within 1 h: 11 seeds x 3 variants at 20 steps \(33 run\(s\) to train\) need about "),
    (dict(effect=0.0), r"Delta is 0"),
    (dict(pilot=P.Pilot(20, 2, 1.0, 0.0, None)), r"no seed sd"),
    (dict(effect=0.01), r"more than 1000 seeds"),
])
def test_plan_is_infeasible_with_one_line_reason(change, reason):
    kw = dict(effect_variant="wider", effect=2.5, pilot=_pilot(), n_variants=3, ladder=[20, 25, 50, 100, 200],
              max_hours=1.0, budget_s=1e9)
    plan = P.plan_replay(**{**kw, **change})
    assert not plan.feasible and "\n" not in plan.reason
    assert plan.reason.startswith("cannot resolve the paper's largest effect (wider ")
    assert re.search(reason, plan.reason), plan.reason


def test_measure_pilot_reads_the_runs_records():
    rec = lambda m, t, w: {"miou": m, "metrics": {"train_seconds": t, "steps_done": 10}, "run_seconds": w}  # noqa: E731
    pilot = P.measure_pilot({"base": [rec(0.50, 2.0, 5.0), rec(0.52, 4.0, 6.0)],
                             "wider": [rec(0.55, 3.0, 4.0), rec(0.59, 3.0, 4.0)]}, 10, trained_now=4)
    assert pilot.seconds_per_step == pytest.approx(12.0 / 40) and pilot.overhead_s == pytest.approx((3 + 2 + 1 + 1) / 4)
    assert pilot.sd == pytest.approx(S.pooled_sd([50.0, 52.0], [55.0, 59.0])) and pilot.runs == 4


@pytest.mark.parametrize("fidelity, max_hours, seeds, report_only, pattern", [
    ("auto", None, None, False, r"--fidelity auto needs --max-hours"),
    ("auto", 0.0, None, False, r"--max-hours = 0\.0 is not allowed"),
    ("auto", -1.0, None, False, r"--max-hours = -1\.0 is not allowed"),
    ("auto", float("nan"), None, False, r"--max-hours = nan is not allowed"),
    ("auto", 1.0, 3, False, r"--seeds cannot be given with --fidelity auto"),
    ("auto", 1.0, None, True, r"--report-only cannot be given with --fidelity auto"),
    ("smoke", 1.0, None, False, r"--max-hours is for --fidelity auto only"),
])
def test_bad_auto_options(fidelity, max_hours, seeds, report_only, pattern):
    with pytest.raises(ConfigError, match=pattern):
        P.check_max_hours(fidelity, max_hours, seeds, report_only)


# --------------------------------------------------------------------------------- CLI: bad inputs
@pytest.mark.parametrize("extra, pattern", [
    (["--fidelity", "auto"], r"--fidelity auto needs --max-hours"),
    (["--fidelity", "auto", "--max-hours", "0"], r"--max-hours = 0\.0 is not allowed"),
    (["--fidelity", "auto", "--max-hours", "-2"], r"--max-hours = -2\.0 is not allowed"),
    (["--fidelity", "smoke", "--max-hours", "1"], r"--max-hours is for --fidelity auto only"),
    (["--fidelity", "auto", "--max-hours", "soon"], r"argument --max-hours: invalid float value: 'soon'"),
])
def test_cli_bad_auto_inputs_exit_2_in_one_line_before_anything(tmp_path, capsys, extra, pattern):
    from nasseg.cli import main

    db = tmp_path / "abl.db"
    try:
        rc = main(["ablate", str(TINY), "--executor", "local", "--storage", f"sqlite:///{db}",
                   "--out", str(tmp_path / "out"), *extra])
    except SystemExit as e:  # argparse's own errors
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and re.search(pattern, err), err
    assert not db.exists() and not (tmp_path / "out").exists()


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


# ------------------------------------------------------------------------------------ --fidelity auto
def _study_with_effect(tmp_path: Path, reference: float, wider: float) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    raw["paper"]["rows"]["base"]["miou"] = reference
    raw["paper"]["rows"]["wider"]["miou"] = wider
    path = tmp_path / "tiny_effect.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _auto_args(tmp_path: Path, study: Path, hours: str) -> list[str]:
    return ["ablate", str(study), "--fidelity", "auto", "--max-hours", hours, "--executor", "local",
            "--storage", f"sqlite:///{tmp_path / 'abl.db'}", "--out", str(tmp_path / "out"), "--no-plot"]


def test_auto_says_up_front_when_no_plan_can_fit_and_trains_nothing(tmp_path, capsys):
    """1e-9 h is 3.6 microseconds: below any training step on any machine, so this never depends on speed."""
    from nasseg.cli import main

    rc = main(_auto_args(tmp_path, TINY, "1e-9"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err  # main prints errors with print(), unwrapped
    assert re.search(r"cannot resolve the paper's largest effect \(wider \+2\.50 pp\) within 1e-09 h: even 2 seeds x "
                     r"3 variants x 2 steps need at least .* nothing trained", err), err
    study = optuna.load_study(study_name="ablation-tiny-smoke", storage=f"sqlite:///{tmp_path / 'abl.db'}")
    assert study.get_trials() == [] and not (tmp_path / "out").exists()


def test_auto_without_a_paper_effect_says_so_and_trains_nothing(tmp_path, capsys):
    from nasseg.cli import main

    rc = main(_auto_args(tmp_path, _study_with_effect(tmp_path, 50.0, 50.0), "100"))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "largest Delta 0" in err and "nothing trained" in err
    assert not (tmp_path / "abl.db").exists()


def test_auto_plans_within_a_generous_budget_prints_the_plan_first_and_reuses_the_pilot(tmp_path, capsys):
    """A paper effect of 90 pp needs 2 seeds at any seed sd below ~30 pp, and 100 h holds the tiny study's
    6 runs of 2 steps on any machine: the plan does not depend on the machine's speed."""
    from nasseg.cli import main

    study = _study_with_effect(tmp_path, 5.0, 95.0)
    assert main(_auto_args(tmp_path, study, "100")) == 0
    err = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "auto pilot: 4 run(s) of base (reference) and wider" in err
    i_plan = err.index("auto plan: the paper's largest effect wider +90.00 pp")
    assert i_plan < err.index("2 run(s) to train (4 already finished")  # planned before the plan's training
    assert "chosen: 2 seeds x 2 steps per variant" in err
    md = (tmp_path / "out" / "tiny-auto.md").read_text()
    assert "## Plan (--fidelity auto)" in md and "**2 seeds x 2 steps**" in md and P.ASSUMPTIONS in md
    rows = {r["variant"]: r for r in csv.DictReader(open(tmp_path / "out" / "tiny-auto.csv"))}
    assert all(len(r["mious"].split()) == 2 for r in rows.values())
    db = optuna.load_study(study_name="ablation-tiny-smoke", storage=f"sqlite:///{tmp_path / 'abl.db'}")
    assert len(db.get_trials()) == 6 and db.user_attrs["auto_plan"]["seeds"] == 2
    assert {t.user_attrs["fidelity_name"] for t in db.get_trials()} == {"auto-pilot", "auto"}

    # again: the pilot and the runs are reused, nothing is probed or trained
    res = A.ablate(A.AblationConfig(study=str(study), storage=f"sqlite:///{tmp_path / 'abl.db'}", fidelity="auto",
                                    max_hours=100.0, executor="local", out=str(tmp_path / "out"), plot=False),
                   log=lambda s: None)
    assert res["counts"]["trained"] == 0 and res["counts"]["reused_runs"] == 6 and len(db.get_trials()) == 6
    plan = res["plan"]
    assert plan["feasible"] and plan["seeds"] == 2 and plan["steps"] == 2 and plan["base_fidelity"] == "smoke"
    assert plan["pilot"]["trained_now"] == 0 and plan["mdd"] <= 90.0 and plan["estimate_s"] == 0
    assert res["fidelity"] == "auto" and res["seeds"] == [0, 1]
