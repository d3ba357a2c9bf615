"""Genome codecs: JSON and compact-string round trips, stable ids, pinned old strings, strict errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nasseg import genome as G
from nasseg import presets
from nasseg.errors import GenomeError
from nasseg.space import load_space, space_files

FIXTURES = Path(__file__).parent / "fixtures" / "genome_strings.json"
SPACES = {p.stem: p for p in space_files()}
PRESETS = presets.names()

# STDC1-Seg's canonical string: the base every malformed string below is derived from
STDC1 = ("v1|conv1x32s2/conv1x64s2/stdc2x256s2/stdc2x512s2/stdc2x1024s2|chain@2,3,4~gap>128:ffm256/arm128/"
         "arm128(refine=none)|seg_head(mid_channels=256)/aux@l1=aux_head/aux@l2=aux_head/detail@s2=detail_head!ac")
REGSEG_LIKE = "v1|conv1x32s2/dblock1x48s2/dblock3x128s2/dblock2x256s2{dilations=[1],[1,2]}|decoder26@1,2,3|-"


@pytest.fixture(scope="module")
def spaces():
    return {name: load_space(path) for name, path in SPACES.items()}


def _canonical(d: dict) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


# ------------------------------------------------------------------------------------------ presets
@pytest.mark.parametrize("name", PRESETS)
def test_preset_round_trips_exactly(name):
    g = presets.get(name).genome
    assert G.resolve(g) == g  # presets are stored resolved
    assert G.from_json(G.to_json(g)) == g
    assert G.from_dict(json.loads(G.to_json(g))) == g
    s = G.to_string(g)
    assert G.parse(s) == g
    assert G.to_string(G.parse(s)) == s  # string -> genome -> string is the identity
    assert G.load(s) == g and G.load(G.to_json(g)) == g
    assert s.startswith("v1|") and " " not in s


def test_canonical_json_is_sorted_and_compact():
    g = presets.get("stdc1_seg").genome
    text = G.to_json(g)
    assert text == _canonical(json.loads(text))
    assert re.fullmatch(r"[0-9a-f]{12}", G.genome_id(g))


def test_genome_ids_differ_between_presets():
    ids = {G.genome_id(presets.get(n).genome) for n in PRESETS}
    assert len(ids) == len(PRESETS)


def test_string_omits_defaults_and_parse_writes_them_back():
    g = G.parse("v1|conv1x32s2/stdc2x64s2|chain@1:arm32|seg_head")
    assert dict(g.stages[1].args) == {"num_blocks": 4, "variant": "cat"}
    assert dict(g.heads.main.args)["mid_channels"] == 64
    # defaults written out explicitly give the same genome, and the canonical string drops them again
    verbose = G.parse("v1|conv1x32s2/stdc2x64s2(num_blocks=4,variant=cat)|chain@1:arm32(refine=conv3x3)|"
                      "seg_head(mid_channels=64)")
    assert verbose == g
    assert G.to_string(verbose) == "v1|conv1x32s2/stdc2x64s2|chain@1:arm32|seg_head"


def test_per_block_runs_are_compressed():
    g = presets.get("regseg").genome
    s = G.to_string(g)
    assert "{dilations=[1]*2,[1,2],[1,4]*4,[1,14]*6}" in s
    assert len(g.stages[3].block_args) == g.stages[3].depth == 13


def test_float_exponents_parse():
    g = G.parse("v1|conv1x32s2(bn_eps=1e-3)/dblock1x48s2(se_ratio=1e+0)|chain@1:arm32|seg_head")
    assert dict(g.stages[0].args)["bn_eps"] == 1e-3
    assert dict(g.stages[1].args)["se_ratio"] == 1.0


# ---------------------------------------------------------------------- every shipped space (property)
@pytest.mark.parametrize("space_name", sorted(SPACES))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_random_members_round_trip(spaces, space_name, seed):
    space = spaces[space_name]
    g = space.random(seed)
    assert space.random(seed) == g  # deterministic per seed
    gid = G.genome_id(g)
    assert G.from_json(G.to_json(g)) == g
    s = G.to_string(g)
    assert G.parse(s) == g
    assert G.to_string(G.parse(s)) == s
    assert G.genome_id(G.parse(s)) == gid == G.genome_id(G.from_json(G.to_json(g)))
    assert space.contains(g)


_ID_SCRIPT = """
import json, sys
from nasseg import genome as G
from nasseg.space import load_space, space_files
out = {}
for path in space_files():
    space = load_space(path)
    out[path.stem] = [G.genome_id(space.random(seed)) for seed in range(200)]
json.dump(out, sys.stdout)
"""


@pytest.mark.slow
def test_genome_ids_are_the_same_in_another_process(spaces):
    # a different hash seed: nothing in the id may depend on Python's per-process string hashing
    env = {**__import__("os").environ, "PYTHONHASHSEED": "12345"}
    res = subprocess.run([sys.executable, "-c", _ID_SCRIPT], capture_output=True, text=True, env=env, check=True,
                         timeout=300)
    theirs = json.loads(res.stdout)
    assert sorted(theirs) == sorted(spaces)
    for name, space in spaces.items():
        ours = [G.genome_id(space.random(seed)) for seed in range(200)]
        assert theirs[name] == ours, name


# ------------------------------------------------------------------------------- pinned old strings
FIXTURE_ENTRIES = json.loads(FIXTURES.read_text())["genomes"]


def test_fixture_pins_every_preset():
    pinned = {e["name"] for e in FIXTURE_ENTRIES}
    assert {f"preset:{n}" for n in PRESETS} <= pinned, "add new presets to tests/fixtures/genome_strings.json"
    assert any(not n.startswith("preset:") for n in pinned)


@pytest.mark.parametrize("entry", FIXTURE_ENTRIES, ids=[e["name"] for e in FIXTURE_ENTRIES])
def test_pinned_string_still_parses_to_its_json(entry):
    g = G.parse(entry["string"])
    assert G.to_dict(g) == entry["json"]
    assert G.to_json(g) == _canonical(entry["json"])
    assert G.genome_id(g) == entry["genome_id"]
    assert G.from_dict(entry["json"]) == g
    assert G.to_string(g) == entry["string"]


def test_pinned_presets_are_unchanged():
    """A preset whose genome changes gets a new entry of the same name appended (the last entry of a name is
    the current one); the old entry stays and must keep parsing to its old JSON."""
    by_name = {e["name"]: e for e in FIXTURE_ENTRIES}  # the last entry of each name wins
    for n in PRESETS:
        assert G.to_dict(presets.get(n).genome) == by_name[f"preset:{n}"]["json"], n


# --------------------------------------------------------------------- the registry fits the grammar
def test_registered_names_and_values_fit_the_string_grammar():
    """The compact string reads a stage as NAME<depth>x<width>s<stride> and a fusion as NAME<width>: a fusion
    name must not end in a digit; a block name may (mbv3, shufflev2: the parser splits a stage at the registered
    name), unless another block name is it plus digits, which would make a stage ambiguous.  Every string
    argument value must read back as the same name."""
    from nasseg import registry

    ident = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
    blocks = registry.names("block")
    for entry in registry.entries():
        assert ident.fullmatch(entry.name), entry.name
        if entry.kind == "fusion":
            assert not entry.name[-1].isdigit(), f"{entry.kind} {entry.name!r} ends in a digit"
        if entry.kind == "block":
            longer = [b for b in blocks if b != entry.name and b.startswith(entry.name)
                      and b[len(entry.name):].isdigit()]
            assert not longer, f"block {entry.name!r} and {longer} make stage strings ambiguous"
        for arg in entry.args:
            if arg.type == "str":
                assert arg.choices, f"{entry.name}.{arg.name}: a free string cannot be written in a genome string"
                for c in arg.choices:
                    assert ident.fullmatch(c) and c not in ("true", "false"), f"{entry.name}.{arg.name} = {c!r}"


def test_block_names_ending_in_digits_parse():
    g = G.parse("v1|conv1x16s2/mbv31x16s1(expansion=1.0)/shufflev24x116s2/mbv312x24s2|classifier@3|-")
    assert [(s.block, s.depth, s.width) for s in g.stages] == [
        ("conv", 1, 16), ("mbv3", 1, 16), ("shufflev2", 4, 116), ("mbv3", 12, 24)]
    assert G.parse(G.to_string(g)) == g
    with pytest.raises(GenomeError, match="unknown block 'mbv'"):
        G.parse("v1|conv1x16s2/mbv1x16s1|classifier@1|-")


@settings(max_examples=200, deadline=None)
@given(dropouts=st.lists(st.floats(min_value=0.0, max_value=0.99, allow_nan=False), min_size=1, max_size=4),
       eps=st.floats(min_value=0.0, max_value=0.1, exclude_min=True, allow_nan=False))
def test_any_float_round_trips_through_the_string(dropouts, eps):
    per = ",".join(repr(d) for d in dropouts)
    g = G.parse(f"v1|conv1x16s2(bn_eps={eps!r})/downsampler>nb1d{len(dropouts)}x64s2{{dropout={per}}}"
                "|erfnet_decoder@1|-")
    assert [dict(b)["dropout"] for b in g.stages[1].block_args] == dropouts
    assert dict(g.stages[0].args)["bn_eps"] == eps
    assert G.parse(G.to_string(g)) == g and G.from_json(G.to_json(g)) == g


# ------------------------------------------------------------------------------- malformed strings
def _swap(old: str, new: str, base: str = STDC1) -> str:
    assert old in base
    return base.replace(old, new, 1)


# (case, string, substrings the message must contain)
MALFORMED = [
    ("empty string", "", ["empty"]),
    ("whitespace only", "   ", ["position 0", "'v1'"]),
    ("bad version", _swap("v1|", "v2|"), ["'v2'", "position 0", "valid: v1"]),
    ("numeric version", _swap("v1|", "1|"), ["'1'", "position 0", "'v1'"]),
    ("missing '|' before heads", _swap("|seg_head", "seg_head"), ["'seg_head'", "position 115", "'|'"]),
    ("missing '|' after version", _swap("v1|", "v1"), ["'v1conv1x32s2'", "position 0", "valid: v1"]),
    ("unknown block", _swap("stdc2x512s2", "stdx2x512s2"), ["'stdx'", "position 37", "valid codes", "stdc"]),
    ("a fusion used as block", _swap("stdc2x512s2", "arm2x512s2"), ["'arm'", "position 37", "valid codes"]),
    ("unknown downsampling block", "v1|downsamplr>nb1d0x16s2|erfnet_decoder@0|-",
     ["'downsamplr'", "position 3", "valid codes"]),
    ("unknown fusion", _swap("ffm256", "ffx256"), ["'ffx256'", "position 82", "valid codes", "uafm"]),
    ("fusion without width", _swap("ffm256", "ffm"), ["'ffm'", "position 82", "NAME<width>"]),
    ("unknown decoder", _swap("chain@", "chian@"), ["'chian'", "position 62", "valid codes", "chain", "decoder26"]),
    ("unknown context", _swap("~gap", "~gapp"), ["'gapp'", "position 74", "valid codes", "sppm"]),
    ("unknown head", _swap("seg_head(", "segg_head("), ["'segg_head'", "position 116", "valid codes", "seg_head"]),
    ("unknown head role", _swap("detail@s2", "detial@s2"), ["'detial'", "position 175", "aux, detail, boundary"]),
    ("stage without depth", _swap("stdc2x512s2", "stdcx512s2"), ["'stdcx512s2'", "position 37", "BLOCK<depth>"]),
    ("stage without width", _swap("stdc2x512s2", "stdc2s2"), ["'stdc2s2'", "position 37", "BLOCK<depth>"]),
    ("stage without stride", _swap("stdc2x512s2", "stdc2x512"), ["'stdc2x512'", "position 37", "BLOCK<depth>"]),
    ("non-integer width", _swap("stdc2x512s2", "stdc2x51.2s2"), ["'stdc2x51'", "position 37", "BLOCK<depth>"]),
    ("width not a number", _swap("stdc2x512s2", "stdc2xabcs2"), ["'stdc2xabcs2'", "position 37"]),
    ("negative width", _swap("stdc2x512s2", "stdc2x-512s2"), ["'stdc2x'", "position 37"]),
    ("stride not allowed", _swap("stdc2x512s2", "stdc2x512s3"), ["stages.3.stride", "3", "(1, 2, 4, 8)"]),
    ("zero width", _swap("stdc2x512s2", "stdc2x0s2"), ["stages.3.width", "integer >= 1"]),
    ("wrong per-block count", _swap("{dilations=[1],[1,2]}", "{dilations=[1],[1,2],[1,4]}", REGSEG_LIKE),
     ["'dblock2x256s2'", "position 41", "[3] entries", "depth is 2"]),
    ("per-block key twice", _swap("{dilations=[1],[1,2]}", "{dilations=[1],[1,2];dilations=[1],[1]}", REGSEG_LIKE),
     ["'dilations'", "given twice", "position 75"]),
    ("per-block repeat count 0", _swap("{dilations=[1],[1,2]}", "{dilations=[1]*0,[1],[1]}", REGSEG_LIKE),
     ["repeat count 0", "position 69", ">= 1"]),
    ("per-block repeat not a number", _swap("{dilations=[1],[1,2]}", "{dilations=[1]*x}", REGSEG_LIKE),
     ["'x'", "position 69", "repeat count"]),
    ("unknown per-block argument", _swap("{dilations=", "{dilatins=", REGSEG_LIKE),
     ["'dilatins'", "position 55", "did you mean dilations"]),
    ("duplicate argument", _swap("refine=none", "refine=none,refine=none"),
     ["'refine'", "given twice", "position 115"]),
    ("unknown argument", _swap("refine=none", "refne=none"), ["'refne'", "position 103", "did you mean refine"]),
    ("value out of range", _swap("stdc2x512s2", "stdc2x512s2(num_blocks=9)"),
     ["'num_blocks'", "position 49", "= 9", "[2, 5]"]),
    ("value not among choices", _swap("refine=none", "refine=conv5"), ["'refine'", "position 103", "'conv5'",
                                                                       "'conv3x3', 'none'"]),
    ("bool for a string", _swap("refine=none", "refine=true"), ["'refine'", "position 103", "True"]),
    ("float for an int", _swap("mid_channels=256", "mid_channels=2.5"), ["'mid_channels'", "position 125", "2.5"]),
    ("unfinished list", _swap("refine=none", "refine=[1,"), ["position 113", "an integer inside [...]"]),
    ("missing ')'", _swap("refine=none)", "refine=none"), ["position 114", "',' or ')'"]),
    ("context without width", _swap("~gap>128", "~gap"), ["':'", "position 77", "context width"]),
    ("chain takes no arguments", _swap("chain@2,3,4", "chain@2,3,4(x=1)"), ["'('", "position 73"]),
    ("unknown heads flag", _swap("!ac", "!acc"), ["'acc'", "position 197", "valid: ac"]),
    ("unknown stage flag", _swap("stdc2x512s2", "stdc2x512s2!injct"), ["'injct'", "position 49", "inject, cat"]),
    ("trailing garbage", STDC1 + ")", ["')'", "position 199", "'|' (branches) or the end of the string"]),
    ("a fifth part that is not a branch", STDC1 + "|foo", ["'foo'", "position 200", "a branch source"]),
    ("trailing name", STDC1 + "xyz", ["'acxyz'", "position 197"]),
    ("unexpected character", _swap("~gap", "~ga$p"), ["'$'", "position 76"]),
    ("non-ascii character", _swap("~gap", "~gäp"), ["'ä'", "position 75"]),
    ("head tap s9 out of range", _swap("detail@s2", "detail@s9"), ["heads.extra.2.index", "9", "(0, 1, 2, 3, 4)"]),
    ("level tap out of range", _swap("aux@l1", "aux@l7"), ["heads.extra.0.index", "7", "(0, 1, 2)"]),
    ("malformed head tap", _swap("aux@l1", "aux@x1"),
     ["'x1'", "position 147", "s<stage>, l<level> or b<branch>.<stage>"]),
    ("decoder tap out of range", _swap("chain@2,3,4", "chain@2,3,9"), ["decoder.taps", "9", "(0, 1, 2, 3, 4)"]),
    ("decoder taps not increasing", _swap("chain@2,3,4", "chain@3,2,4"), ["decoder.taps", "[3, 2, 4]", "increasing"]),
    ("one fusion too few", _swap(":ffm256/arm128/", ":ffm256/"), ["decoder.fusions", "one fusion per tap"]),
    ("main head missing", _swap("|seg_head(mid_channels=256)", "|-"), ["heads.main", "main head"]),
    ("main head on a logits decoder", _swap("|-", "|seg_head", REGSEG_LIKE), ["heads.main", "'-'"]),
    ("two detail heads", _swap("detail@s2=detail_head", "detail@s2=detail_head/detail@s3=detail_head"),
     ["heads.extra.3.role", "at most one detail head"]),
]


@pytest.mark.parametrize("text,needles", [(s, n) for _, s, n in MALFORMED], ids=[c for c, _, _ in MALFORMED])
def test_malformed_string_raises_genome_error_naming_the_culprit(text, needles):
    with pytest.raises(GenomeError) as e:
        G.parse(text)
    msg = str(e.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    # every message names a position, a key path, or what would be valid
    assert re.search(r"position \d+|stages\.|decoder\.|heads\.|valid|allowed|empty", msg)


def test_base_strings_of_the_malformed_cases_parse():
    assert G.to_string(G.parse(STDC1)) == STDC1 == G.to_string(presets.get("stdc1_seg").genome)
    assert G.to_string(G.parse(REGSEG_LIKE)) == REGSEG_LIKE


def test_load_dispatches_and_rejects_garbage():
    with pytest.raises(GenomeError, match="not valid JSON"):
        G.load("{not json")
    with pytest.raises(GenomeError, match="must be an object"):
        G.from_json("[1, 2]")
    with pytest.raises(GenomeError, match="empty"):
        G.parse(None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- JSON errors
def _mutated(fn) -> dict:
    d = G.to_dict(presets.get("stdc1_seg").genome)
    fn(d)
    return d


JSON_ERRORS = [
    ("unknown top-level key", lambda d: d.update(colour=1), ["genome", "'colour'", "allowed"]),
    ("unknown stage key", lambda d: d["stages"][2].update(colour=1), ["stages.2", "'colour'", "allowed"]),
    ("unknown decoder key", lambda d: d["decoder"].update(colour=1), ["decoder", "'colour'"]),
    ("unknown fusion key", lambda d: d["decoder"]["fusions"][1].update(colour=1), ["decoder.fusions.1", "'colour'"]),
    ("unknown head key", lambda d: d["heads"]["extra"][0]["head"].update(colour=1),
     ["heads.extra.0.head", "'colour'"]),
    ("unknown block argument", lambda d: d["stages"][2]["args"].update(colour=1),
     ["stages.2.args", "'colour'", "num_blocks"]),
    ("missing stages", lambda d: d.pop("stages"), ["genome", "missing", "'stages'"]),
    ("missing width", lambda d: d["stages"][2].pop("width"), ["stages.2", "missing", "'width'"]),
    ("missing heads.main", lambda d: d["heads"].pop("main"), ["heads", "missing", "'main'"]),
    ("missing role", lambda d: d["heads"]["extra"][0].pop("role"), ["heads.extra.0", "missing", "'role'"]),
    ("width is a string", lambda d: d["stages"][2].update(width="abc"), ["stages.2.width", "'abc'"]),
    ("width is a float", lambda d: d["stages"][2].update(width=2.5), ["stages.2.width", "2.5"]),
    ("width is a bool", lambda d: d["stages"][2].update(width=True), ["stages.2.width", "True"]),
    ("depth is a string", lambda d: d["stages"][2].update(depth="2"), ["stages.2.depth", "'2'"]),
    ("stages is a number", lambda d: d.update(stages=5), ["stages", "must be a list"]),
    ("stages is an object", lambda d: d.update(stages={"a": 1}), ["stages", "must be a list"]),
    ("a stage is a number", lambda d: d["stages"].__setitem__(1, 5), ["stages.1", "must be an object"]),
    ("args is a list", lambda d: d["stages"][2].update(args=[1, 2]), ["stages.2.args", "must be an object"]),
    ("block is a number", lambda d: d["stages"][2].update(block=5), ["stages.2.block", "must be a name"]),
    ("block_args is a string", lambda d: d["stages"][2].update(block_args="ab"), ["stages.2.block_args", "list"]),
    ("taps is a string", lambda d: d["decoder"].update(taps="234"), ["decoder.taps", "must be a list"]),
    ("taps hold floats", lambda d: d["decoder"].update(taps=[2.0, 3, 4]), ["decoder.taps", "2.0"]),
    ("schema 2", lambda d: d.update(schema=2), ["schema 2", "schema 1"]),
    ("inject is a string", lambda d: d["stages"][2].update(inject="yes"), ["stages.2.inject", "'yes'"]),
    ("first_leads is an int", lambda d: d["stages"][2].update(first_leads=1), ["stages.2.first_leads", "1"]),
    ("first_leads without concat_first", lambda d: d["stages"][2].update(first_leads=True),
     ["stages.2.first_leads", "needs concat_first", "!cat!lead"]),
    ("align_corners is a string", lambda d: d["heads"].update(align_corners="yes"),
     ["heads.align_corners", "'yes'"]),
    ("align_corners is an int", lambda d: d["heads"].update(align_corners=1), ["heads.align_corners", "1"]),
    ("main head is a string", lambda d: d["heads"].update(main="seg_head"), ["heads.main", "must be an object"]),
    ("extra is a number", lambda d: d["heads"].update(extra=3), ["heads.extra", "must be a list"]),
    ("head name is a number", lambda d: d["heads"]["main"].update(name=3), ["heads.main.name", "must be a name"]),
    ("tap index is a string", lambda d: d["heads"]["extra"][0].update(index="1"), ["heads.extra.0.index", "'1'"]),
    ("unknown role", lambda d: d["heads"]["extra"][0].update(role="foo"), ["heads.extra.0.role", "'foo'"]),
    ("unknown block", lambda d: d["stages"][2].update(block="stdcc"), ["stages.2.block", "'stdcc'", "stdc"]),
    ("argument out of range", lambda d: d["stages"][2]["args"].update(num_blocks=9),
     ["stages.2.args", "num_blocks", "9", "[2, 5]"]),
]


@pytest.mark.parametrize("mutate,needles", [(m, n) for _, m, n in JSON_ERRORS], ids=[c for c, _, _ in JSON_ERRORS])
def test_bad_json_raises_genome_error_naming_the_key_path(mutate, needles):
    d = _mutated(mutate)
    with pytest.raises(GenomeError) as e:
        G.from_dict(d)
    msg = str(e.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in {msg!r}"
    with pytest.raises(GenomeError):  # the same through the text form
        G.from_json(json.dumps(d))


def test_resolve_is_idempotent_and_genomes_are_frozen():
    g = presets.get("espnet").genome
    assert G.resolve(G.resolve(g)) == g
    with pytest.raises(AttributeError):
        g.stages = ()  # type: ignore[misc]
    assert hash(g) == hash(G.parse(G.to_string(g)))
    narrower = replace(g, stages=(replace(g.stages[0], width=8),) + g.stages[1:])
    assert G.genome_id(narrower) != G.genome_id(g)


def test_hand_built_genome_gets_the_canonical_json_and_id():
    hand = G.Genome(stages=(G.Stage("conv", 1, 32, 2), G.Stage("stdc", 2, 64, 2)),
                    decoder=G.Decoder("chain", (1,), fusions=(G.Fusion("arm", 32),)),
                    heads=G.Heads(G.Module("seg_head")))
    resolved = G.resolve(hand)
    assert hand != resolved  # the hand-built one leaves the defaults out
    assert G.to_json(hand) == G.to_json(resolved)
    assert G.genome_id(hand) == G.genome_id(resolved)
    assert G.to_string(hand) == G.to_string(resolved) == "v1|conv1x32s2/stdc2x64s2|chain@1:arm32|seg_head"


@pytest.mark.parametrize("text,needle", [
    ("v1|stdc999x256s2|chain@0:uafm64|seg_head", "depth"),
    ("v1|stdc2x99999999999s2|chain@0:uafm64|seg_head", "width"),
])
def test_absurd_sizes_are_refused_before_allocation(text, needle):
    with pytest.raises(GenomeError, match=needle):
        G.parse(text)


# ------------------------------------------------------------------------- the first_leads field (added)
def test_first_leads_is_written_only_when_set():
    """first_leads was added to schema 1 after its release: genomes without it keep their JSON and id, a
    genome with it says so in its JSON and string (which an older nasseg refuses instead of misreading)."""
    g = presets.get("espnet").genome
    assert g.stages[2].first_leads and not g.stages[1].first_leads
    d = G.to_dict(g)
    assert d["stages"][2]["first_leads"] is True and "first_leads" not in d["stages"][1]
    assert "esp9x128s2!cat!lead|" in G.to_string(g)
    assert G.parse(G.to_string(g)) == g == G.from_json(G.to_json(g))
    old = G.replace(g, stages=g.stages[:2] + (G.replace(g.stages[2], first_leads=False),))
    assert "first_leads" not in G.to_json(old)
    assert G.genome_id(old) != G.genome_id(g)


def test_lead_flag_needs_cat():
    with pytest.raises(GenomeError, match=r"stages\.1\.first_leads .* needs concat_first"):
        G.parse("v1|conv1x16s2/esp3x64s2!lead|espnet_c_decoder@1|-")
