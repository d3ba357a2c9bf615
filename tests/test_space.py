"""Search spaces: shipped YAML loads, Optuna sampling with stable conditional names, membership, YAML errors."""

from __future__ import annotations

import random
import subprocess
import sys
import warnings

import optuna
import pytest

from nasseg import genome as G
from nasseg import presets
from nasseg.errors import ConfigError
from nasseg.space import SearchSpace, load_space, parse_space, space_files

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACES = {p.stem: p for p in space_files()}


@pytest.fixture(scope="module")
def spaces() -> dict[str, SearchSpace]:
    return {name: load_space(path) for name, path in SPACES.items()}


def test_the_shipped_spaces_are_found():
    assert {"realtime", "stdc", "factorized", "espnet", "dwrseg", "fasternet"} <= set(SPACES)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_shipped_space_loads(name):
    space = load_space(SPACES[name])
    assert isinstance(space, SearchSpace)
    assert space.source == str(SPACES[name]) and space.name
    assert len(space.stages) >= 1


# --------------------------------------------------------------------------------- Optuna sampling
def _check_conditional(params: dict) -> None:
    """Every parameter below a chosen module (``P.<name>.…``) belongs to the module chosen at ``P``."""
    for key in params:
        for parent, chosen in params.items():
            if key == parent or not key.startswith(parent + "."):
                continue
            child = key[len(parent) + 1:].split(".")[0]
            if isinstance(chosen, str):  # a module choice: its arguments sit under its own name
                assert child == chosen, f"{key} is drawn although {parent} = {chosen!r}"
            elif isinstance(chosen, bool):  # an optional head: its arguments only when it is on
                assert chosen, f"{key} is drawn although the optional {parent} is off"


@pytest.mark.parametrize("name", sorted(SPACES))
def test_sample_with_a_real_optuna_trial(spaces, name):
    space = spaces[name]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(25):
        trial = study.ask()
        g = space.sample(trial)
        study.tell(trial, 0.0)
        assert G.resolve(g) == g
        assert space.encode(g) == trial.params  # exactly the parameters Optuna drew, nothing else
        _check_conditional(trial.params)
        for key in trial.params:
            assert key.split(".")[0] in ("stages", "branches", "decoder", "heads"), key


def test_realtime_parameter_names_are_stable_paths(spaces):
    space = spaces["realtime"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen_blocks, names = set(), set()
    for _ in range(80):
        trial = study.ask()
        g = space.sample(trial)
        study.tell(trial, 0.0)
        p = trial.params
        names |= set(p)
        for i in (2, 3, 4):
            block = p[f"stages.{i}.block"]
            assert g.stages[i].block == block
            seen_blocks.add(block)
            if block == "stdc":
                assert p[f"stages.{i}.block.stdc.num_blocks"] == dict(g.stages[i].args)["num_blocks"]
            else:
                assert f"stages.{i}.block.stdc.num_blocks" not in p
            assert f"stages.{i}.width" in p and f"stages.{i}.depth" in p
        assert "stages.0.block" not in p  # fixed stem: nothing to draw
        assert p["decoder.fusion"] == g.decoder.fusions[0].name
        assert p["decoder.context"] == g.decoder.context.name
        if g.decoder.context.name == "none":
            assert "decoder.context_width" not in p
    assert {"stdc", "dblock", "sir", "dwr", "fasternet", "esp", "ssnbt", "mbconv"} == seen_blocks
    assert {"stages.2.block", "stages.2.block.stdc.num_blocks", "stages.2.block.dblock.dilations", "decoder.widths",
            "decoder.fusion", "heads.main.seg_head.mid_channels", "heads.extra.0"} <= names


def test_stdc_space_per_tap_fusion_names(spaces):
    space = spaces["stdc"]
    g = presets.get("ppliteseg_t").genome
    p = space.encode(g)
    assert p["decoder.fusions.0"] == p["decoder.fusions.1"] == p["decoder.fusions.2"] == "uafm"
    assert p["decoder.fusions.0.uafm.attention"] == "spatial"
    assert p["decoder.widths"] == "[32,64,128]"  # list choices are stored as compact JSON strings
    assert p["heads.extra.2"] is False  # PP-LiteSeg-T has no detail head


# ---------------------------------------------------------------------------- membership / encode
def _fixed_trial_sample(space: SearchSpace, params: dict) -> G.Genome:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FixedTrial warns about a value outside the choices
        return space.sample(optuna.trial.FixedTrial(params))


@pytest.mark.parametrize("preset", presets.names())
def test_every_preset_is_a_member_and_fixed_trial_reproduces_it(spaces, preset):
    g = presets.get(preset).genome
    homes = [name for name, space in spaces.items() if space.contains(g)]
    assert homes, f"preset {preset} is a member of no shipped space"
    for name in homes:
        params = spaces[name].encode(g)
        assert _fixed_trial_sample(spaces[name], params) == g, name


@pytest.mark.parametrize("name", sorted(SPACES))
def test_encode_and_fixed_trial_reproduce_random_members(spaces, name):
    space = spaces[name]
    for seed in range(40):
        g = space.random(seed)
        assert _fixed_trial_sample(space, space.encode(g)) == g


def test_non_members_encode_to_none(spaces):
    assert spaces["stdc"].encode(presets.get("regseg").genome) is None
    assert not spaces["realtime"].contains(presets.get("lednet").genome)
    g = presets.get("stdc1_seg").genome
    wider = G.replace(g, stages=g.stages[:2] + (G.replace(g.stages[2], width=200),) + g.stages[3:])
    assert spaces["stdc"].encode(wider) is None  # 200 is not among the widths
    no_detail = G.replace(g, heads=G.replace(g.heads, extra=g.heads.extra[:2]))
    assert spaces["stdc"].contains(no_detail)  # the detail head is optional


def test_random_is_deterministic_and_accepts_a_random_instance(spaces):
    space = spaces["realtime"]
    assert space.random(7) == space.random(7) == space.random(random.Random(7))
    assert len({G.genome_id(space.random(s)) for s in range(20)}) == 20


def test_random_works_without_optuna():
    code = ("import sys\n"
            "from nasseg.space import load_space, space_files\n"
            "for p in space_files():\n"
            "    load_space(p).random(3)\n"
            "assert 'optuna' not in sys.modules, 'nasseg.space imported optuna'\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------------------------ bad YAML files
BASE = """\
name: t
stages:
  - {block: conv, width: 32, depth: 1, stride: 2}
  - {block: {stdc: {num_blocks: [2, 3]}, dblock: {dilations: [[1], [1, 2]]}}, width: [64, 96], depth: [1, 2], stride: 2}
  - {block: {stdc: {num_blocks: [2, 3]}}, width: [128], depth: {low: 1, high: 3}, stride: 2}
decoder:
  taps: [1, 2]
  kind:
    chain:
      context: {gap: {}}
      context_width: [64]
      fusion: {uafm: {attention: [spatial, channel]}}
      widths: [[32, 64], [64, 64]]
heads:
  main: {seg_head: {mid_channels: [32, 64]}}
"""


def _edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# (case, YAML text, substrings the one-line message must contain besides the file name)
BAD_YAML = [
    ("YAML syntax error", _edit("width: [128]", "width: [128"), ["line 5, column 91", "not valid YAML"]),
    ("tab indentation", _edit("  - {block: conv", "\t- {block: conv"), ["line 3, column 1", "not valid YAML"]),
    ("key given twice", _edit("name: t\n", "name: t\nname: u\n"), ["line 2, column 1", "'name' is given twice"]),
    ("not a mapping", "- a\n- b\n", ["must be a YAML mapping"]),
    ("empty file", "", ["must be a YAML mapping"]),
    ("unknown top-level key", BASE + "colour: red\n", ["key 'colour'", "Extra inputs",
                                                   "valid keys: name, description, stages, branches, decoder, heads"]),
    ("missing name", _edit("name: t\n", ""), ["key 'name'", "required"]),
    ("unknown key in a stage", _edit("depth: 1, stride: 2}", "depth: 1, stride: 2, colour: 3}"),
     ["key 'stages.0.colour'", "Extra inputs", "valid keys: block, width, depth, stride, inject, concat_first"]),
    ("first_leads without concat_first", _edit("depth: 1, stride: 2}", "depth: 1, stride: 2, first_leads: true}"),
     ["key 'stages.0.first_leads'", "needs concat_first: true"]),
    ("unknown block", _edit("stdc: {num_blocks: [2, 3]}}, width: [128]", "stdcc: {num_blocks: [2, 3]}}, width: [128]"),
     ["key 'stages.2.block.stdcc'", "unknown block 'stdcc'", "did you mean 'stdc'"]),
    ("unknown block given as a name", _edit("{block: conv,", "{block: convv,"),
     ["key 'stages.0.block.convv'", "did you mean 'conv'"]),
    ("unknown argument of a block", _edit("num_blocks: [2, 3]}}, width: [128]", "num_block: [2, 3]}}, width: [128]"),
     ["key 'stages.2.block.stdc.num_block'", "did you mean num_blocks"]),
    ("argument value out of range", _edit("num_blocks: [2, 3]}}, width: [128]", "num_blocks: [2, 9]}}, width: [128]"),
     ["key 'stages.2.block.stdc.num_blocks'", "= 9", "[2, 5]"]),
    ("argument of the wrong type", _edit("num_blocks: [2, 3]}}, width: [128]", 'num_blocks: ["x"]}}, width: [128]'),
     ["key 'stages.2.block.stdc.num_blocks'", "'x'"]),
    ("width: abc", _edit("width: [128]", 'width: "abc"'), ["key 'stages.2.width'", "valid integer", "'abc'"]),
    ("a width among the choices is not a number", _edit("width: [128]", 'width: [128, "abc"]'),
     ["key 'stages.2.width.1'", "valid integer", "'abc'"]),
    ("zero width", _edit("width: [128]", "width: [0]"), ["key 'stages.2.width'", "not a positive integer"]),
    ("empty choice list", _edit("width: [128]", "width: []"), ["key 'stages.2.width'", "empty list of choices"]),
    ("empty argument choice list", _edit("num_blocks: [2, 3]}}, width: [128]", "num_blocks: []}}, width: [128]"),
     ["key 'stages.2.block.stdc.num_blocks'", "empty list of choices"]),
    ("depth range low > high", _edit("depth: {low: 1, high: 3}", "depth: {low: 3, high: 1}"),
     ["key 'stages.2.depth'", "low 3 > high 1"]),
    ("unknown key in a range", _edit("depth: {low: 1, high: 3}", "depth: {low: 1, high: 3, stp: 2}"),
     ["key 'stages.2.depth.stp'", "Extra inputs", "valid keys: low, high, step"]),
    ("stride 3", _edit("depth: 1, stride: 2}", "depth: 1, stride: 3}"), ["key 'stages.0.stride'", "1, 2, 4 or 8"]),
    ("taps out of range", _edit("taps: [1, 2]", "taps: [1, 5]"), ["key 'decoder.taps'", "[1, 5]", "0..2"]),
    ("taps not increasing", _edit("taps: [1, 2]", "taps: [2, 1]"), ["key 'decoder.taps'", "increasing"]),
    ("chain widths of the wrong length", _edit("widths: [[32, 64], [64, 64]]", "widths: [[32, 64, 128]]"),
     ["key 'decoder.kind.chain.widths'", "[32, 64, 128]", "one width per tap"]),
    ("one chain width choice too short", _edit("widths: [[32, 64], [64, 64]]", "widths: [[32, 64], [64]]"),
     ["key 'decoder.kind.chain.widths'", "[64]"]),
    ("chain width zero", _edit("widths: [[32, 64], [64, 64]]", "widths: [[0, 64]]"),
     ["key 'decoder.kind.chain.widths'", "positive integers"]),
    ("dblock at width 24", _edit("width: [64, 96]", "width: [24, 96]"),
     ["key 'stages.1.block.dblock'", "cannot be built", "24", "group_width"]),
    ("fusion and fusions both given",
     _edit("fusion: {uafm: {attention: [spatial, channel]}}", "fusion: uafm\n      fusions: [uafm, uafm]"),
     ["key 'decoder.kind.chain'", "either 'fusion'", "not both"]),
    ("neither fusion nor fusions", _edit("fusion: {uafm: {attention: [spatial, channel]}}", ""),
     ["key 'decoder.kind.chain'", "not both or neither"]),
    ("per-tap fusions of the wrong count",
     _edit("fusion: {uafm: {attention: [spatial, channel]}}", "fusions: [uafm, uafm, arm]"),
     ["key 'decoder.kind.chain.fusions'", "3 entries"]),
    ("unknown key in the chain", _edit("    chain:\n", "    chain:\n      foo: 1\n"),
     ["key 'decoder.kind.chain.foo'", "Extra inputs", "valid keys: context, context_width, fusion, fusions, widths"]),
    ("unknown fusion", _edit("fusion: {uafm:", "fusion: {uafmm:"),
     ["key 'decoder.kind.chain.fusion.uafmm'", "did you mean 'uafm'"]),
    ("fusion argument out of range", _edit("attention: [spatial, channel]", "attention: [spatial, temporal]"),
     ["key 'decoder.kind.chain.fusion.uafm.attention'", "'temporal'"]),
    ("unknown context", _edit("context: {gap: {}}", "context: {gapp: {}}"),
     ["key 'decoder.kind.chain.context.gapp'", "did you mean 'gap'"]),
    ("empty context width choices", _edit("context_width: [64]", "context_width: []"),
     ["key 'decoder.kind.chain.context_width'", "empty list"]),
    ("unknown decoder", _edit("    chain:\n", "    chainn:\n"), ["key 'decoder.kind.chainn'", "unknown decoder"]),
    ("unknown head", _edit("seg_head:", "segg_head:"), ["key 'heads.main.segg_head'", "did you mean 'seg_head'"]),
    ("no main head on a chain", _edit("main: {seg_head: {mid_channels: [32, 64]}}", "main: null"),
     ["key 'heads.main'", "main head"]),
    ("head tap on a stage out of range", BASE + "  extra:\n    - {role: detail, index: 9, head: detail_head}\n",
     ["key 'heads.extra.0.index'", "9", "0..2"]),
    ("head tap on a chain level out of range",
     BASE + "  extra:\n    - {role: aux, source: level, index: 5, head: aux_head}\n",
     ["key 'heads.extra.0.index'", "5", "chain level 0..1"]),
    ("two detail heads", BASE + "  extra:\n    - {role: detail, index: 1, head: detail_head}\n"
     "    - {role: detail, index: 2, head: detail_head}\n", ["key 'heads.extra.1.role'", "at most one detail"]),
    ("unknown head role", BASE + "  extra:\n    - {role: detial, index: 1, head: detail_head}\n",
     ["key 'heads.extra.0.role'", "'detial'"]),
    ("align_corners not a bool", BASE + "  align_corners: maybe\n", ["key 'heads.align_corners'", "'maybe'"]),
    ("unknown downsampling block", _edit("{block: conv,", "{block: {stdc: {down: convv}},"),
     ["key 'stages.0.block.stdc.down'", "did you mean 'conv'"]),
    ("schedule value out of range",
     _edit("stdc: {num_blocks: [2, 3]}}, width: [128]", "stdc: {schedule: {a: {num_blocks: [2, 9]}}}}, width: [128]"),
     ["key 'stages.2.block.stdc.schedule.a.num_blocks[1]'", "= 9"]),
    ("unknown decoder argument", _edit("""    chain:
      context: {gap: {}}
      context_width: [64]
      fusion: {uafm: {attention: [spatial, channel]}}
      widths: [[32, 64], [64, 64]]""", "    decoder26: {foo: 1}"), ["key 'decoder.kind.decoder26.foo'", "takes"]),
]


@pytest.mark.parametrize("text,needles", [(t, n) for _, t, n in BAD_YAML], ids=[c for c, _, _ in BAD_YAML])
def test_bad_yaml_gives_one_config_error_naming_file_and_key(tmp_path, text, needles):
    path = tmp_path / "bad_space.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_space(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:"), msg
    assert "\n" not in msg and len(msg) < 600, msg
    assert e.value.__cause__ is None  # one error, not a chain of them
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"


def test_base_of_the_bad_yaml_cases_loads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(BASE)
    space = load_space(path)
    assert space.random(0).stages[0].block == "conv"


def test_missing_file_and_string_source():
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_space("/nonexistent/nope.yaml")
    with pytest.raises(ConfigError, match=r"^<string>: key 'colour'"):
        parse_space(BASE + "colour: red\n")


def test_yaml_merge_keys_may_override():
    text = BASE.replace("  - {block: conv, width: 32, depth: 1, stride: 2}",
                        "  - &s {block: conv, width: 32, depth: 1, stride: 2}\n  - {<<: *s, width: 48}")
    text = text.replace("taps: [1, 2]", "taps: [2, 3]")
    space = parse_space(text)
    assert [s.width.values() for s in space.stages[:2]] == [[32], [48]]


def test_branch_taps_count_as_chain_levels_for_heads():
    """With a branch tapped, the chain has one level per branch tap and per stage tap (BiSeNet V1: spatial path,
    1/16, 1/32): a head may tap the deepest level, and one past it is refused."""
    text = """
name: levels
stages:
  - {block: conv, width: 16, stride: 2}
  - {block: conv, width: 32, stride: 2}
branches:
  - source: -1
    stages: [{block: conv, width: 16, stride: 2}]
decoder:
  taps: [1]
  branch_taps: [0]
  kind: {chain: {fusions: [add, add], widths: [[16, 16]]}}
heads:
  extra: [{role: aux, source: level, index: LEVEL, head: aux_head}]
"""
    g = parse_space(text.replace("LEVEL", "1")).random(0)
    assert g.heads.extra[0].index == 1 and g.decoder.branch_taps == (0,)
    with pytest.raises(ConfigError, match="is not a chain level 0..1"):
        parse_space(text.replace("LEVEL", "2"))
