"""Pre-screening: per-unit cost tables (exact MACs and params, persisted), calibration, and the search's use."""

from __future__ import annotations

import argparse
import glob
import statistics
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from rich.console import Console

from nasseg import presets
from nasseg import search as S
from nasseg import study as St
from nasseg.build import build
from nasseg.cli import search as cli_search
from nasseg.cost import count_macs, count_params, measure_latency
from nasseg.errors import ConfigError
from nasseg.genome import from_json
from nasseg.screen import TABLE_NAME, Calibration, CostTable, fingerprint, units
from nasseg.space import load_space
from nasseg.train import Recipe
from tests.conftest import TINY_SPACE

ROOT = Path(__file__).resolve().parents[1]
SEG_SPACES = sorted(p for p in glob.glob(str(ROOT / "search_spaces" / "*.yaml"))
                    if "fasternet" not in p and "imagenet" not in p)
SHAPE = (1, 3, 64, 128)


@pytest.mark.parametrize("path", SEG_SPACES, ids=lambda p: Path(p).stem)
def test_table_macs_and_params_equal_the_whole_network_counts(path):
    """Every conv / matmul runs inside a unit: the table's MACs are fvcore's for the whole network, exactly,
    whether the units were measured now (cold) or answered from the table (warm, shapes from the table)."""
    space = load_space(path)
    table = CostTable(warmup=1, runs=3)
    genomes = [space.random(seed) for seed in range(4)]
    cold = [table.predict(g, 11, SHAPE) for g in genomes]
    for g, p in zip(genomes, cold):
        net = build(g, 11)
        mac = count_macs(net, SHAPE)
        assert (p.macs, p.macs_all, p.params) == (mac.macs, mac.macs_all, count_params(net))
        assert p.table_ms > 0 and p.units >= len(g.stages) + 2
    assert cold[0].new_units > 0
    for g, p in zip(genomes, cold):
        again = table.predict(g, 11, SHAPE)
        assert again.new_units == 0
        assert (again.macs, again.params, again.table_ms) == (p.macs, p.params, p.table_ms)


def test_units_are_disjoint_and_hold_every_inference_parameter():
    net = build(load_space(str(ROOT / "search_spaces" / "realtime.yaml")).random(7), 11)
    found = [m for _, m in units(net)]
    ids = [id(p) for m in found for p in m.parameters()]
    assert len(ids) == len(set(ids))
    assert sum(p.numel() for m in found for p in m.parameters()) == count_params(net)



@pytest.mark.parametrize("name", ["ddrnet_23_slim", "pidnet_s", "pidnet_l"])
def test_multi_branch_presets_cost_exactly_as_whole_networks(name):
    """DDRNet's and PIDNet's branch stages and links are units too: the table's MACs and params are the whole
    network's, and every inference parameter sits in exactly one unit."""
    g = presets.get(name).genome
    net = build(g, 19)
    p = CostTable(warmup=1, runs=3).predict(g, 19, SHAPE)
    mac = count_macs(net, SHAPE)
    assert (p.macs, p.macs_all, p.params) == (mac.macs, mac.macs_all, count_params(net))
    found = [m for _, m in units(net)]
    ids = [id(q) for m in found for q in m.parameters()]
    assert len(ids) == len(set(ids)) and len(ids) == len(list(net.inference_parameters()))
    assert any(path.startswith("branches.0.links.") for path, _ in units(net))

def test_fingerprint_sees_structure_not_weights():
    from nasseg import registry

    make = registry.get("dblock", "block").create
    a, b = make(64, 64, 1, dilations=(1, 4)), make(64, 64, 1, dilations=(1, 4))
    b.apply(lambda m: [p.data.add_(1.0) for p in m.parameters(recurse=False)])
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(make(64, 64, 1, dilations=(1, 2)))
    assert fingerprint(a) != fingerprint(make(64, 128, 1, dilations=(1, 4)))
    assert fingerprint(a) != fingerprint(make(64, 64, 2, dilations=(1, 4)))


@pytest.mark.parametrize("name", ["realtime", "espnet", "regseg"])
def test_observe_times_every_unit_inside_an_end_to_end_measurement(name):
    """The warm-up passes of a latency record time each unit in place; the per-unit fvcore counts of the
    whole-network trace equal each unit's own trace, and a prediction then needs nothing timed alone."""
    g = load_space(str(ROOT / "search_spaces" / f"{name}.yaml")).random(3)
    net = build(g, 11)
    table = CostTable(warmup=1, runs=3)
    mac = count_macs(net, SHAPE, submodules=[p for p, _ in units(net)])
    measure_latency(net, SHAPE, warmup=6, runs=30, observe_warmup=lambda m: table.observe(m, mac.by_module))
    assert table.network and not table.entries
    assert all(e.source == "network" and e.runs == 4 and e.ms > 0 for e in table.network.values())
    p = table.predict(g, 11, SHAPE)
    assert p.new_units == 0 and p.alone_ms == 0 and p.table_ms == p.network_ms > 0
    assert (p.macs, p.macs_all) == (mac.macs, mac.macs_all)

    alone = CostTable(warmup=1, runs=3)
    alone.predict(g, 11, SHAPE)
    assert alone.entries.keys() == table.network.keys()
    for k, e in table.network.items():
        assert (alone.entries[k].by_operator, alone.entries[k].output) == (e.by_operator, e.output)
    # both sources known: the alone -> network factor is their median ratio, and network timings win
    both = CostTable(warmup=1, runs=3)
    both.entries, both.network = dict(alone.entries), dict(table.network)
    ratios = sorted(table.network[k].ms / alone.entries[k].ms for k in table.network)
    assert both.alone_factor == pytest.approx(statistics.median(ratios))
    assert both.predict(g, 11, SHAPE).table_ms == pytest.approx(p.table_ms)


def test_table_persists_in_the_study_database(storage_url):
    url = storage_url
    storage = St.open_storage(url)  # the table sits beside Optuna's own tables
    g = load_space(TINY_SPACE).random(1)
    first = CostTable(warmup=1, runs=3, engine=storage.engine)
    p = first.predict(g, 11, SHAPE)
    assert p.new_units > 0 and len(first) == p.new_units

    second = CostTable(warmup=1, runs=3, engine=St.open_storage(url).engine)
    assert len(second) == len(first)
    again = second.predict(g, 11, SHAPE)
    assert again.new_units == 0 and again.table_ms == p.table_ms

    other = CostTable(warmup=1, runs=4, engine=storage.engine)  # another context: nothing shared
    assert len(other) == 0
    with storage.engine.connect() as con:
        assert con.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE_NAME}")).scalar() == len(first)
    optuna.create_study(storage=storage, study_name="still-an-optuna-db").optimize(lambda t: 1.0, n_trials=1)

    # a second driver that measured the same unit in the meantime: its insert is a harmless duplicate
    key, entry = next(iter(first.entries.items()))
    late = CostTable(warmup=1, runs=3, engine=St.open_storage(url).engine)
    late.entries.clear()
    late._store(key, entry)
    with storage.engine.connect() as con:
        assert con.execute(sa.text(f"SELECT COUNT(*) FROM {TABLE_NAME}")).scalar() == len(first)


def test_calibration_rejects_only_when_calibrated_and_clearly_over():
    cal = Calibration(min_pairs=3, margin=0.1)
    assert not cal.rejects(1000.0, 10.0)  # no pairs: never
    for table, measured in ((10.0, 9.0), (20.0, 18.0), (30.0, 30.0)):
        cal.add(table, measured)
    assert cal.ready and cal.factor == pytest.approx(0.9)
    assert cal.error == pytest.approx(1 / 0.9 - 1)  # the worst pair: 30 -> 30 vs 0.9
    threshold = 10.0 * (1 + cal.error)
    assert cal.threshold(10.0) == pytest.approx(threshold)
    assert not cal.rejects(threshold / 0.9 * 0.999, 10.0)
    assert cal.rejects(threshold / 0.9 * 1.001, 10.0)
    for bad in (-0.1, float("nan"), True, "0.2"):
        with pytest.raises(ConfigError, match="screen-margin"):
            Calibration(margin=bad)


def _cfg(tmp_path: Path, budget: float, trials: int, **kw) -> S.SearchConfig:
    recipe = Recipe(resolution=(32, 64), steps=4, batch_size=2, eval_every=0, warmup_steps=0, amp=False,
                    train_length=8, val_length=4, log_every=1)
    return S.SearchConfig(
        space=TINY_SPACE, storage=f"sqlite:///{tmp_path / 'study.db'}", study="s", trials=trials,
        latency_budget_ms=budget, latency=S.LatencySpec(resolution=(64, 128), threads=1, warmup=3),
        sampler="random", seed=5, recipe=recipe, executor="local", progress=False,
        screen=S.ScreenSpec(min_pairs=3, unit_warmup=1, unit_runs=3), **kw)


def test_search_rejects_far_over_budget_candidates_on_the_prediction_and_measures_the_rest(tmp_path, tiny_budget_ms):
    budget = tiny_budget_ms
    cfg = _cfg(tmp_path, budget, trials=10)
    summary = S.search(cfg, log=lambda s: None)
    study = St.load_study(cfg.storage, "s")
    trials = study.get_trials(deepcopy=False)
    by_status = {}
    for t in trials:
        by_status.setdefault(t.user_attrs[S.STATUS_KEY], []).append(t)
    predicted = [t for t in by_status.get("rejected", []) if t.user_attrs["latency"]["method"] == "predicted"]
    assert predicted, "the tiny space's slow members are ~10x over this budget: the table should reject some"
    assert summary["screened"] == len([t for t in predicted if "reused_from" not in t.user_attrs])  # dedup copies
    measured = [t for t in trials if t.user_attrs.get("latency", {}).get("method") == "measured"]
    assert len(measured) >= 3  # the calibration's pairs came first
    assert min(t.number for t in predicted) > sorted(t.number for t in measured)[2]
    for t in by_status["trained"]:  # everything trained was measured end to end, within budget
        lat = t.user_attrs["latency"]
        assert lat["method"] == "measured" and lat["runs"] >= 30 and t.user_attrs["latency_ms"] <= budget
        assert t.user_attrs["latency_table_ms"] > 0
    for t in predicted:
        ua = t.user_attrs
        assert t.state == optuna.trial.TrialState.PRUNED and t.values is None and ua["train_seconds"] == 0.0
        assert "metrics" not in ua and "predicted latency" in ua["reason"] and "not measured" in ua["reason"]
        assert ua["latency_ms"] > ua["latency"]["threshold_ms"] > budget
        assert t.system_attrs["constraints:latency_over_budget_ms"] > 0  # what constraint-aware samplers read
        net = build(from_json(ua["genome_json"]), 11)
        assert (ua["params"], ua["macs"]) == (count_params(net), count_macs(net, (1, 3, 64, 128)).macs)
    assert all(t.user_attrs[S.STATUS_KEY] in ("trained", "reused") for t in study.best_trials)

    # a resumed driver starts calibrated and with the table filled from the database
    driver = S.Driver(cfg, St.load_study(cfg.storage, "s", readonly=False), load_space(TINY_SPACE), 11, print)
    assert len(driver.calibration.pairs) == len(measured) and len(driver.table) > 0
    assert driver.table.network, "units of the candidates measured end to end were timed in place"

    # nasseg status marks predicted latencies
    frame = S.trials_frame(study)
    assert set(frame.latency_method) == {"measured", "predicted"}
    con = Console(record=True, width=400)
    cli_search.print_study(study, con)
    text = con.export_text()
    assert "~ = latency predicted" in text
    assert any(f"~{t.user_attrs['latency_ms']:.2f}" in text for t in predicted)


def test_cli_screens_by_default_and_validates_the_margin(tmp_path):
    p = argparse.ArgumentParser()
    cli_search.add_arguments(p)
    base = ["--latency-budget-ms", "5", "--storage", f"sqlite:///{tmp_path / 'x.db'}"]
    assert cli_search.config_from_args(p.parse_args(base)).screen == S.ScreenSpec()
    assert cli_search.config_from_args(p.parse_args([*base, "--no-screen"])).screen is None
    cfg = cli_search.config_from_args(p.parse_args([*base, "--screen-margin", "-0.5"]))
    with pytest.raises(ConfigError, match="--screen-margin = -0.5"):
        cfg.validate()
