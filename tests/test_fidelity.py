"""Fidelity studies: a tiny study end to end through the command line (every output written, a rerun trains
nothing, the numbers agree with nasseg.fidelity_stats on the stored metrics, the stored record is found), resume
after SIGKILL, stratified sampling, the recommendation, and bad input (exit 2, one line, no study)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from nasseg import fidelity as F
from nasseg import study as St
from nasseg.cli import main
from nasseg.errors import ConfigError
from nasseg.fidelity_stats import noise_ratio, rank_agreement, seed_to_seed_tau
from nasseg.search.config import file_sha
from nasseg.space import load_space
from nasseg.train import Recipe
from tests.conftest import TINY_SPACE

GENOMES = [
    "v1|conv1x8s2/conv1x8s2/conv1x16s2|chain@1,2:add8/add8|seg_head(mid_channels=8)",
    "v1|conv1x8s2/mbconv3x256s2(expansion=3)/conv1x16s2|chain@1,2:add8/add8|seg_head(mid_channels=8)",
    "v1|conv1x8s2/mbconv1x8s2(expansion=2)/conv1x16s2|chain@1,2:add8/add8|seg_head(mid_channels=8)",
]
RECIPE = '{"train_length": 8, "val_length": 4}'
RUNGS, SEEDS = (2, 4), (0, 1)
N_BOOT = 200  # resamples per interval: fidelity_stats' bootstrap is a Python loop, 2000 x 9 rows take seconds


def _argv(tmp: Path, *extra: str, lines: list[str] | None = None, out: str | None = None) -> list[str]:
    gfile = tmp / "genomes.txt"
    gfile.write_text("# three tiny genomes\n" + "\n".join(GENOMES if lines is None else lines) + "\n")
    return ["fidelity", "--space", TINY_SPACE, "--genomes-from", str(gfile), "--rungs", ",".join(map(str, RUNGS)),
            "--seeds", str(len(SEEDS)), "--proxy-resolution", "32x64", "--proxy-batch", "2", "--recipe", RECIPE,
            "--executor", "local", "--storage", f"sqlite:///{tmp / 'f.db'}", "--study", "f",
            "--out", out or str(tmp / "out"), "--bootstrap", str(N_BOOT), *extra]


def _search_recipe(steps: int = 300) -> Recipe:
    """The recipe ``nasseg search --proxy-resolution 32x64 --proxy-batch 2`` would train with these extras."""
    return Recipe(resolution=(32, 64), batch_size=2, steps=steps, warmup_steps=min(steps - 1, steps // 20),
                  amp=False, train_length=8, val_length=4)


def _trained(url: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in St.load_study(url, "f").get_trials(deepcopy=False)
            if t.user_attrs.get(St.STATUS_KEY) == "trained"]


def _keys(trials) -> list[tuple]:
    return [(t.user_attrs["genome_id"], t.user_attrs["rung"], t.user_attrs["seed"], t.user_attrs["recipe_json"])
            for t in trials]


def _close(a, b) -> bool:
    return (a is None and (b is None or math.isnan(b))) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


# ------------------------------------------------------------------------------------------ end to end
def test_a_tiny_study_end_to_end_through_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    url = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(_argv(tmp_path)) == 0
    cap = capsys.readouterr()
    assert "run 12/12: genome" in cap.err and "Kendall tau-b" in cap.out and "recommendation" in cap.out
    out = tmp_path / "out"
    for name in ("fidelity.csv", "fidelity.json", "report.md", "fidelity.png"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "fidelity.json").read_text())
    result, meta = doc["result"], doc["meta"]

    # every run is one trial with its attributes; no (genome, rung, seed, recipe) trained twice
    trained = _trained(url)
    assert len(trained) == 3 * len(RUNGS) * len(SEEDS) == len(set(_keys(trained)))
    for t in trained:
        ua = t.user_attrs
        assert t.state == optuna.trial.TrialState.COMPLETE and t.values == [ua["miou"]]
        assert ua["rung"] in RUNGS and json.loads(ua["recipe_json"])["steps"] == ua["rung"]
        assert ua["dataset"] == "synthetic" and ua["genome"] in GENOMES and ua["train_seconds"] > 0
        assert len(ua["metrics"]["per_class_iou"]) == 11 and ua["fidelity"]["full"]

    # the numbers agree with fidelity_stats on the stored metrics
    study = St.load_study(url, "f")
    scores = {r: {} for r in RUNGS}
    for t in trained:
        scores[t.user_attrs["rung"]].setdefault(t.user_attrs["genome_id"], {})[t.user_attrs["seed"]] = \
            t.user_attrs["miou"]
    per_seed = {r: {g: [v[s] for s in SEEDS] for g, v in scores[r].items()} for r in RUNGS}
    rows = {r["name"]: r for r in result["rows"]}
    low, top = rows["2 steps"], rows["4 steps"]
    ra = rank_agreement(per_seed[2], per_seed[4], n_boot=N_BOOT, seed=0)
    for f in ("tau", "tau_low", "tau_high", "spearman", "spearman_low", "spearman_high"):
        assert _close(low[f], getattr(ra, f)), f
    assert low["n"] == 3 and top["reference"] and top["tau"] is None
    for r, row in ((2, low), (4, top)):
        assert _close(row["seed_tau"], seed_to_seed_tau(per_seed[r]))
        nr = noise_ratio(per_seed[r])
        assert _close(row["within_sd"], nr.within_sd) and _close(row["between_sd"], nr.between_sd)
        ws = sum(t.user_attrs["train_seconds"] for t in trained if t.user_attrs["rung"] == r)
        assert math.isclose(row["worker_seconds"], ws)
        zero = [c for c in range(11) if all(t.user_attrs["metrics"]["per_class_iou"][c] == 0 for t in trained
                                            if t.user_attrs["rung"] == r)]
        from nasseg.data.synthetic import CLASS_NAMES
        assert row["zero_iou_classes"] == [CLASS_NAMES[c] for c in zero]
    proxies = {k: v for k, v in study.user_attrs.items() if k.startswith("zero_cost:")}
    assert len(proxies) == 3
    for name in ("synflow", "params"):
        by_genome = {k.split(":")[1]: v["scores"][name] for k, v in proxies.items()}
        ra = rank_agreement(by_genome, per_seed[4], n_boot=N_BOOT, seed=0)
        assert _close(rows[name]["tau"], ra.tau) and _close(rows[name]["tau_low"], ra.tau_low)
    assert [r["name"] for r in result["rows"]][2:] == ["synflow", "naswot", "grad_norm", "snip", "zen_score",
                                                       "params", "macs"]
    # the CSV and the Markdown say the same
    csv_lines = (out / "fidelity.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(result["rows"]) and csv_lines[1].startswith("rung,2 steps,2,")
    assert f"| 2 steps | {low['worker_seconds']:.1f} | 3 | {low['tau']:.2f} [" in (out / "report.md").read_text()

    # stored in the study with what defines it, and found by the lookup
    stored = study.user_attrs[St.META_KEY]
    assert stored["kind"] == "fidelity" and stored["result"]["rows"] == result["rows"]
    assert stored["space_sha"] == file_sha(TINY_SPACE) and stored["rungs"] == list(RUNGS)
    assert sorted(stored["genome_ids"]) == sorted({t.user_attrs["genome_id"] for t in trained})
    rec = F.find_fidelity(url, space_sha=file_sha(TINY_SPACE), dataset="synthetic",
                          recipe_dict=_search_recipe(300).to_dict())
    assert rec is not None and rec["study"] == "f" and rec["top_rung"] == 4 and rec["genomes"] == 3
    assert rec["rungs"][2]["tau"] == low["tau"] and rec["rungs"][2]["n"] == 3
    assert F.proxy_tau(rec, "synflow")["tau"] == rows["synflow"]["tau"] and F.proxy_tau(rec, "nope") is None
    line = F.agreement_line(rec, 2)
    assert line.startswith(f"rank agreement with 2x training: tau {low['tau']:.2f} [") and "n = 3" in line
    assert F.agreement_line(rec, 4) is None  # the reference itself
    other = _search_recipe(300).to_dict() | {"lr": 0.5}
    assert F.find_fidelity(url, space_sha=file_sha(TINY_SPACE), dataset="synthetic", recipe_dict=other) is None
    assert F.find_fidelity(url, space_sha="0" * 16, dataset="synthetic", recipe_dict=meta["recipe"]) is None

    # the same command again trains and scores nothing
    before = len(study.trials)
    assert main(_argv(tmp_path)) == 0
    err = capsys.readouterr().err
    assert "nothing to train" in err and "0 score(s) computed now" in err
    assert len(St.load_study(url, "f").trials) == before
    assert json.loads((out / "fidelity.json").read_text())["result"]["rows"] == result["rows"]

    # another recipe on the same study is refused, and writes nothing
    assert main(_argv(tmp_path, "--proxy-lr", "0.5")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nasseg: error: study 'f' was created with recipe = ") and "\n" not in err
    assert len(St.load_study(url, "f").trials) == before


@pytest.mark.slow
def test_a_killed_study_resumes_without_training_anything_twice(tmp_path):
    """SIGKILL at the second result (NASSEG_TEST_KILL=result:2), then the same command: every run finishes, the
    run that was being told is recovered as crashed and trained once more, nothing else is trained again."""
    from tests.reliability.common import env

    cmd = [sys.executable, "-m", "nasseg", *_argv(tmp_path, "--proxies", "params,naswot")]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env(NASSEG_TEST_KILL="result:2"),
                           stdin=subprocess.DEVNULL)
    assert first.returncode == -9, first.stderr[-2000:]
    url = f"sqlite:///{tmp_path / 'f.db'}"
    before = {t.number: t.values for t in _trained(url)}
    assert len(before) == 1
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env(), stdin=subprocess.DEVNULL)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "recovered 1 trial(s)" in second.stderr and "11 run(s) to train (1 already finished" in second.stderr
    assert "0 score(s) computed now" in second.stderr  # the zero-cost scores survived the kill
    trials = St.load_study(url, "f").get_trials(deepcopy=False)
    trained = _trained(url)
    assert len(trained) == 12 == len(set(_keys(trained)))
    assert all(trials[n].values == v for n, v in before.items())
    crashed = [t for t in trials if t.user_attrs.get(St.STATUS_KEY) == "crashed"]
    assert len(crashed) == 1 and crashed[0].state == optuna.trial.TrialState.FAIL
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert (tmp_path / "out" / "report.md").exists()


# ----------------------------------------------------------------------------------------- the genomes
def test_sampling_is_stratified_over_block_choices_and_deterministic():
    space = load_space(TINY_SPACE)
    genomes, draws = F.stratified_sample(space, 4, seed=3)
    assert len(genomes) == 4 and draws >= 4
    assert {g.stages[1].block for g in genomes} == {"conv", "mbconv"}
    again, _ = F.stratified_sample(space, 4, seed=3)
    assert again == genomes
    blocks = [g.stages[1].block for g in F.stratified_sample(space, 8, seed=4)[0]]
    assert blocks.count("conv") >= 3 and blocks.count("mbconv") >= 3  # balanced, not 2 in 3 mbconv


def test_a_feasible_budget_keeps_each_latency_and_too_many_genomes_is_refused(tmp_path):
    space = load_space(TINY_SPACE)
    from nasseg.search import LatencySpec

    cfg = F.FidelityConfig(space=TINY_SPACE, storage="sqlite:///x.db", study="s", out=str(tmp_path), genomes=4,
                           latency_budget_ms=1e6, latency=LatencySpec(resolution=(32, 64), warmup=2, threads=1))
    chosen = F.select_genomes(cfg, space, 11, lambda s: None)
    assert len(chosen) == 4 and all(s.latency["median_ms"] < 1e6 and s.latency["runs"] == 30 for s in chosen)
    with pytest.raises(ConfigError, match=r"--genomes = 13: the space .* gave only 12 distinct genomes"):
        F.select_genomes(F.FidelityConfig(space=TINY_SPACE, storage="sqlite:///x.db", study="s", out=str(tmp_path),
                                          genomes=13), space, 11, lambda s: None)


# ------------------------------------------------------------------------------------ the recommendation
def test_the_cheapest_rung_whose_interval_clears_the_target_is_recommended():
    genomes = [f"g{i}" for i in range(8)]
    top = {g: 0.1 * i for i, g in enumerate(genomes)}
    runs = []
    for g in genomes:
        for s in (0, 1):
            runs += [{"genome_id": g, "rung": 1, "seed": s, "miou": -top[g] + 0.001 * s, "train_seconds": 1.0},
                     {"genome_id": g, "rung": 2, "seed": s, "miou": top[g] + 0.001 * s, "train_seconds": 2.0},
                     {"genome_id": g, "rung": 3, "seed": s, "miou": top[g] + 0.002 * s, "train_seconds": 3.0,
                      "per_class_iou": [0.0, None, 0.5]}]
    res = F.summarize(runs, genome_ids=genomes, rungs=[1, 2, 3], seeds=[0, 1], proxies={"p": {g: 1.0 for g in genomes}},
                      proxy_seconds={"p": 0.5}, class_names=["a", "b", "c"], target_tau=0.6)
    rows = {r["name"]: r for r in res["rows"]}
    assert rows["1 steps"]["tau"] == -1.0 and rows["2 steps"]["tau_low"] == 1.0
    assert res["recommended_rung"] == 2 and res["recommendation"].startswith("train 2 steps: tau-b 1.00 [1.00, 1.00]")
    assert rows["3 steps"]["zero_iou_classes"] == ["a"] and rows["3 steps"]["worker_seconds"] == 48.0
    assert rows["p"]["tau"] is None and rows["p"]["note"] == "a constant score ranks nothing"
    json.dumps(res, allow_nan=False)  # JSON-safe
    res = F.summarize([r for r in runs if r["rung"] != 2], genome_ids=genomes, rungs=[1, 3], seeds=[0, 1],
                      proxies={}, proxy_seconds={}, class_names=[], target_tau=0.6)
    assert res["recommended_rung"] is None and "no rung below 3 steps reaches the target" in res["recommendation"]


# ---------------------------------------------------------------------------------------------- bad input
BAD = {
    "rungs not increasing": (["--rungs", "4,2"], "--rungs = 4,2 is not strictly increasing (2 after 4)"),
    "rung not positive": (["--rungs", "0,4"], "--rungs = '0,4': '0' is not a positive integer"),
    "rung not an integer": (["--rungs", "2,4.5"], "'4.5' is not a positive integer"),
    "too few genomes": (["--genomes", "3"], "--genomes = 3 is too few; valid: an integer >= 4"),
    "unknown proxy": (["--proxies", "synflow,synflw"], "unknown zero-cost proxy 'synflw'; did you mean synflow?"),
    "missing --out parent": ([], "its parent folder"),
    "unparsable genome": ([], "genomes.txt:3: 'v1|conv1x8s2/bogus"),
    "too few listed genomes": ([], "--genomes-from lists 2 distinct genome(s); valid: at least 3"),
    "impossible budget": (["--genomes", "4", "--latency-budget-ms", "1e-6", "--latency-resolution", "32x64"],
                          "--latency-budget-ms = 1e-06: none of 12 distinct genomes sampled"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line_and_leaves_no_study(tmp_path, capsys, case):
    extra, needle = BAD[case]
    lines = {"unparsable genome": [GENOMES[0], "v1|conv1x8s2/bogus1x8s2|x"],
             "too few listed genomes": [GENOMES[0], GENOMES[1], GENOMES[0]]}.get(case)
    out = str(tmp_path / "no" / "such" / "out") if case == "missing --out parent" else None
    argv = _argv(tmp_path, *extra, lines=lines, out=out)
    if "--genomes" in extra:  # a sample instead of the list
        i = argv.index("--genomes-from")
        del argv[i:i + 2]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("nasseg: error: ") and needle in err, err
    assert not (tmp_path / "f.db").exists() and not (tmp_path / "f.db.lock").exists()


def test_help_shows_every_default_and_names_every_proxy(capsys):
    from nasseg.cli.fidelity import PROXY_NAMES
    from nasseg.zero_cost import PROXIES

    assert list(PROXY_NAMES) == list(PROXIES)
    with pytest.raises(SystemExit):
        main(["fidelity", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("(default 100,300,500)", "(default 2)", "(default 128x256)", "(default 0.6)", "(default ray)",
                   "(default 12; at least 4)", "synflow,naswot,grad_norm,snip,zen_score,params,macs"):
        assert needle in text, needle
