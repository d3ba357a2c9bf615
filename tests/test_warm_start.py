"""``nasseg search --init PRESET:CHECKPOINT``: the leading stages a candidate shares with the preset start from the
checkpoint's tensors; the rest is built as usual; each trial says which stages were warm-started."""

from __future__ import annotations

import torch

from nasseg import presets
from nasseg import search as S
from nasseg.build import build
from nasseg.errors import ConfigError
from nasseg.genome import from_json
from nasseg.study import load_study
from nasseg.train import Recipe
from nasseg.weights import apply_warm_start, import_checkpoint, shared_stages, stage_tensors
from tests.synthetic_weights import load_spec, synthetic_checkpoint

SPACE = "search_spaces/stdc.yaml"  # its samples share STDC1-Seg's stems and first STDC stage


def _checkpoint(tmp_path):
    path = tmp_path / "stdc1_official.pt"
    torch.save({"state_dict": synthetic_checkpoint(load_spec("stdc1_seg"))}, path)  # wrapped, as released
    return path


def test_shared_stages_and_apply_are_exact(tmp_path):
    imported, _ = import_checkpoint("stdc1_seg", _checkpoint(tmp_path))
    pg = presets.get("stdc1_seg").genome
    assert shared_stages(pg, pg) == tuple(range(len(pg.stages)))
    from nasseg.space import load_space

    g = next(g for g in (load_space(SPACE).random(i) for i in range(50)) if shared_stages(g, pg))
    stages = shared_stages(g, pg)
    net = build(g, 11)
    keys = apply_warm_start(net, stage_tensors(imported, stages))
    assert keys and all(torch.equal(net.state_dict()[k], imported[k]) for k in keys)
    assert all(k.startswith(tuple(f"stages.{i}." for i in stages)) for k in keys)


def test_search_warm_starts_the_shared_stages(tmp_path):
    ck = _checkpoint(tmp_path)
    recipe = Recipe(resolution=(64, 128), steps=2, batch_size=2, eval_every=0, warmup_steps=0, amp=False,
                    train_length=4, val_length=2, log_every=1, lr=1e-12, momentum=0.0, weight_decay=0.0)
    cfg = S.SearchConfig(space=SPACE, storage=f"sqlite:///{tmp_path / 's.db'}", study="w", trials=2,
                         latency_budget_ms=None, mode="pareto", latency=S.LatencySpec(resolution=(64, 128)),
                         sampler="random", seed=1, recipe=recipe, executor="local", progress=False,
                         init=f"stdc1_seg:{ck}", screen=None)
    logs: list[str] = []
    S.search(cfg, log=logs.append)
    assert any("warm start from" in m and "official stdc1_seg checkpoint, imported" in m for m in logs)
    imported, _ = import_checkpoint("stdc1_seg", ck)
    study = load_study(cfg.storage, "w")
    assert study.user_attrs["nasseg"]["init"].startswith("stdc1_seg:")
    for t in study.trials:
        ua = t.user_attrs
        stages = tuple(ua["warm_started_stages"])
        assert ua["init"] == study.user_attrs["nasseg"]["init"]
        assert stages == shared_stages(from_json(ua["genome_json"]), presets.get("stdc1_seg").genome) and stages
        trained = torch.load(ua["weights_path"], weights_only=True)  # lr 1e-12: weights stay where they started
        for k, v in stage_tensors(imported, stages).items():
            if v.is_floating_point() and "running" not in k:
                assert torch.allclose(trained[k], v, atol=1e-6), k
        other = [k for k in trained if k.startswith("decoder.") and k.endswith("weight")]
        assert other  # the rest was built, not loaded


def test_bad_init_is_one_clear_error(tmp_path):
    for spec, match in (("stdc1_seg", "PRESET:CHECKPOINT"), ("nosuch:x.pt", "no importable checkpoint"),
                        (f"stdc1_seg:{tmp_path / 'missing.pt'}", "is not a file")):
        cfg = S.SearchConfig(space=SPACE, storage=f"sqlite:///{tmp_path / 's.db'}", study="w", trials=1,
                             latency_budget_ms=None, mode="pareto", init=spec, recipe=Recipe(steps=2))
        try:
            S.search(cfg, log=lambda s: None)
        except ConfigError as e:
            assert match in str(e)
        else:
            raise AssertionError(spec)
    assert not (tmp_path / "s.db").exists()
