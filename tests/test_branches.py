"""Multi-branch genomes (issue #17): branches, links, branch taps, guides, branch head taps.

The networks here use plain ``conv`` blocks so that the tests check the wiring, not a paper's blocks: the
DDRNet-, PIDNet- and BiSeNet-shaped genomes below have the official wiring (where each branch starts, what runs
beside what, which value each exchange reads), and ``test_*_runs_in_the_documented_order`` recompute their
forward by hand from the built modules.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from nasseg import genome as G
from nasseg.build import build
from nasseg.cost import count_macs, count_params
from nasseg.errors import GenomeError
from nasseg.layers import resize_to
from nasseg.screen import CostTable, units

MAIN = "conv1x32s2/conv1x32s2/conv2x32s1/conv2x64s2/conv2x128s2/conv2x256s2!relu/conv1x512s2!relu"
# DDRNet-shaped: the high-resolution branch leaves after main stage 3 (1/8) and exchanges with stages 4 and 5
DDR = (f"v1|{MAIN}|chain@b0,6~dappm>128:add128/passthrough128|seg_head/aux@b0.0=seg_head"
       "|3>conv2x64s1/conv2x64s1!relu/conv1x128s1!relu@4=ddr_bilateral,5=ddr_bilateral")
# PIDNet-shaped: P and D branches from stage 3; Light-Bag joins P, I (the context) and D (the guide)
PID = (f"v1|{MAIN}|chain@b0,6~pappm>128:light_bag128<b1/passthrough128"
       "|seg_head/aux@b0.0=seg_head/boundary@b1.1=boundary_head"
       "|3>conv2x64s1/conv2x64s1!relu/conv1x128s1!relu@4=pid_pag,5=pid_pag"
       ";3>conv1x32s1/conv1x64s1!relu/conv1x128s1!relu@4=pid_diff,5=pid_diff")
# BiSeNet-shaped: a spatial path from the image, tapped by the FFM at 1/8
BISENET = ("v1|conv1x64s2/maxpool1x64s2/conv2x64s1/conv2x128s2/conv2x256s2/conv2x512s2"
           "|chain@b0,4,5~gap>128:ffm256/arm128/arm128|seg_head/aux@l1=seg_head/aux@l2=seg_head"
           "|img>conv1x64s2(kernel_size=7)/conv1x64s2/conv1x64s2/conv1x128s1(kernel_size=1)")
X = (2, 3, 64, 128)


@pytest.mark.parametrize("text", [DDR, PID, BISENET], ids=["ddr", "pid", "bisenet"])
def test_string_and_json_round_trip(text):
    g = G.parse(text)
    assert G.to_string(g) == text
    assert G.from_json(G.to_json(g)) == g
    assert G.parse(G.to_string(g)) == g
    d = json.loads(G.to_json(g))
    assert d["branches"] and all(isinstance(b["stages"], list) for b in d["branches"])
    assert len(G.genome_id(g)) == 12


def test_a_genome_without_branches_keeps_its_json():
    """The added fields are left out of the JSON at their defaults, so an old genome keeps its id."""
    text = ("v1|conv1x32s2/conv1x64s2/stdc2x256s2/stdc2x512s2/stdc2x1024s2|chain@2,3,4~gap>128:ffm256/arm128/"
            "arm128|seg_head")
    d = json.loads(G.to_json(G.parse(text)))
    assert "branches" not in d and "branch_taps" not in d["decoder"]
    assert all("guide" not in f for f in d["decoder"]["fusions"])
    assert all("relu_in" not in s for s in d["stages"])


@pytest.mark.parametrize("text", [DDR, PID, BISENET], ids=["ddr", "pid", "bisenet"])
def test_outputs_heads_and_inference_parameters(text):
    g = G.parse(text)
    torch.manual_seed(0)
    net = build(g, 5)
    x = torch.randn(*X)
    net.eval()
    assert net(x).shape == (2, 5, 64, 128)
    net.train()
    out = net(x)
    assert out["out"].shape == (2, 5, 64, 128)
    assert len(out["aux"]) == sum(t.role == "aux" for t in g.heads.extra)
    if "boundary@" in text:
        assert out["boundary"].shape == (2, 1, 8, 16)  # the D branch's resolution (1/8)
    heads = sum(p.numel() for p in net.train_heads.parameters())
    assert heads > 0 and count_params(net) == sum(p.numel() for p in net.parameters()) - heads
    (out["out"].square().mean() + sum(a.square().mean() for a in out["aux"])).backward()
    for name, p in net.named_parameters():
        if name.startswith("branches."):
            assert p.grad is not None, f"{name}: the branch does not reach the loss"


def test_ddrnet_shaped_network_runs_in_the_documented_order():
    """Beside main stage k run the branch stage k - source - 1; a link reads both values before the exchange;
    a relu_in stage applies ReLU to its input; the chain adds the upsampled context to the branch output."""
    torch.manual_seed(1)
    net = build(G.parse(DDR), 5).eval()
    for m in net.modules():  # non-trivial BN statistics, so that every BN matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(*X)
    br = net.branches[0]
    with torch.no_grad():
        h = x
        for k in range(4):
            h = net.stages[k](h)
        b = br.stages[0](h)  # branch stage 0 beside main stage 4, from main stage 3's output
        m = net.stages[4](h)
        lk = br.links[0]
        m, b = m + lk.down(F.relu(b)), b + resize_to(lk.compress(F.relu(m)), b.shape[-2:], "bilinear", False)
        b, m = br.stages[1].blocks[0](F.relu(b)), net.stages[5].blocks[0](F.relu(m))  # relu_in stages
        b, m = br.stages[1].blocks[1](b), net.stages[5].blocks[1](m)
        lk = br.links[1]
        m, b = m + lk.down(F.relu(b)), b + resize_to(lk.compress(F.relu(m)), b.shape[-2:], "bilinear", False)
        b = br.stages[2].blocks[0](F.relu(b))
        m = net.stages[6].blocks[0](F.relu(m))
        y = b + resize_to(net.decoder.context(m), b.shape[-2:], "bilinear", False)  # add fusion, equal widths
        want = resize_to(net.head(y), x.shape[-2:], "bilinear", False)
        assert torch.equal(net(x), want)


def test_pidnet_shaped_network_guides_the_bag_with_the_d_branch():
    torch.manual_seed(2)
    net = build(G.parse(PID), 5).eval()
    x = torch.randn(*X)
    p_branch, d_branch = net.branches
    with torch.no_grad():
        h = x
        for k in range(4):
            h = net.stages[k](h)
        m4 = net.stages[4](h)
        p = p_branch.links[0](m4, p_branch.stages[0](h))[1]
        d = d_branch.links[0](m4, d_branch.stages[0](h))[1]
        m5 = net.stages[5](m4)
        p = p_branch.links[1](m5, p_branch.stages[1](p))[1]
        d = d_branch.links[1](m5, d_branch.stages[1](d))[1]
        m6 = net.stages[6](m5)
        p, d = p_branch.stages[2](p), d_branch.stages[2](d)
        y = net.decoder.fusions[0](p, net.decoder.context(m6), d)
        assert torch.equal(net(x), resize_to(net.head(y), x.shape[-2:], "bilinear", False))
        # the links leave the main path as it was
        assert torch.equal(p_branch.links[0](m4, p_branch.stages[0](h))[0], m4)


def test_an_image_branch_starts_from_the_input():
    torch.manual_seed(3)
    net = build(G.parse(BISENET), 5).eval()
    x = torch.randn(*X)
    with torch.no_grad():
        s = x
        for stage in net.branches[0].stages:
            s = stage(s)
        feats = net.features(x)
        y, _ = net.decoder([s, feats[4], feats[5]])
        assert torch.equal(net(x), resize_to(net.head(y), x.shape[-2:], "bilinear", False))


@pytest.mark.parametrize("text", [DDR, PID, BISENET], ids=["ddr", "pid", "bisenet"])
def test_cost_table_units_cover_branches_and_links(text):
    g = G.parse(text)
    net = build(g, 5)
    found = [m for _, m in units(net)]
    ids = [id(p) for m in found for p in m.parameters()]
    assert len(ids) == len(set(ids)) and len(ids) == len(list(net.inference_parameters()))
    p = CostTable(warmup=1, runs=3).predict(g, 5, (1, 3, 64, 128))
    mac = count_macs(net, (1, 3, 64, 128))
    assert (p.macs, p.params) == (mac.macs, count_params(net))


def _swap(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("text,message", [
    (_swap(DDR, "@4=ddr_bilateral", "@3=ddr_bilateral"), "branches.0.links.0.at = 3: no stage of this branch runs "
     "beside main stage 3; allowed: one of [4, 5, 6]"),
    (_swap(DDR, "4=ddr_bilateral,5=ddr_bilateral", "5=ddr_bilateral,4=ddr_bilateral"), "increasing main stages"),
    (_swap(DDR, "@4=ddr_bilateral", "@4=ddr_bilateraal"), "unknown link 'ddr_bilateraal' at position"),
    (_swap(DDR, "|3>conv2x64s1", "|4>conv2x64s1"), "branches.0: 3 stage(s) from main stage 4 would run beside main "
     "stages 5..7, but the main path has stages 0..6; allowed: at most 2 branch stage(s) from there"),
    (_swap(DDR, "|3>conv2x64s1", "|-2>conv2x64s1"), "branches.0.source = -2 is not allowed"),
    (_swap(DDR, "chain@b0,6", "chain@b1,6"), "decoder.branch_taps = 1 is not allowed; allowed: one of (0,)"),
    (_swap(DDR, "chain@b0,6", "chain@6,b0"), "branch tap 'b0' at position"),
    (_swap(DDR, "add128/passthrough128", "add128<b0/passthrough128"), "decoder.fusions.0.guide = 0: 'add' takes "
     "two inputs, no guide; the fusions that take one: bag, light_bag"),
    (_swap(PID, "light_bag128<b1", "light_bag128"), "decoder.fusions.0.guide = -1 is not allowed"),
    (_swap(PID, "light_bag128<b1", "light_bag128<b2"), "decoder.fusions.0.guide = 2 is not allowed; allowed: one of "
     "(0, 1)"),
    (_swap(PID, "light_bag128<b1", "light_bag128<s1"), "fusion guide 's1' at position"),
    (_swap(DDR, "aux@b0.0", "aux@b1.0"), "heads.extra.0.branch = 1 is not allowed"),
    (_swap(DDR, "aux@b0.0", "aux@b0.3"), "heads.extra.0.index = 3 is not allowed; allowed: one of (0, 1, 2)"),
    (_swap(DDR, "aux@b0.0", "aux@b0"), "expected '.' and the branch's stage index"),
    (_swap(DDR, "conv2x64s1!relu/", "conv2x64s1!rlu/"), "unknown stage flag 'rlu'"),
    (_swap(DDR, "|3>", "|3"), "expected '>' after the branch source"),
])
def test_bad_branches_fail_with_one_line_naming_the_token(text, message):
    with pytest.raises(GenomeError) as e:
        G.parse(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_link_between_mismatched_strides_is_refused_at_build():
    # the branch halves its resolution in its first stage: main 1/16 against branch 1/16 -> scale 1
    text = _swap(DDR, "|3>conv2x64s1/", "|3>conv2x64s2/")
    with pytest.raises(GenomeError, match=r"branches.0.links.0 .*scale.*allowed: 2, 4, 8"):
        build(G.parse(text), 5)
    text = _swap(DDR, "|3>conv2x64s1/", "|3>conv2x64s4/")  # the branch coarser than the main path
    with pytest.raises(GenomeError, match="a link needs the main path at the branch's stride times a power of two"):
        build(G.parse(text), 5)


def test_a_guide_of_the_wrong_width_is_refused_at_build():
    text = _swap(PID, "conv1x128s1!relu@4=pid_diff", "conv1x96s1!relu@4=pid_diff")
    with pytest.raises(GenomeError, match="takes a 128-channel guide, but branch 1 ends with 96 channels"):
        build(G.parse(text), 5)


# ------------------------------------------------------------------------------------------ spaces
SPACE = """\
name: branched
stages:
  - {block: conv, width: [16, 32], stride: 4}
  - {block: conv, width: 32, depth: [1, 2], stride: 2}
  - {block: conv, width: 64, stride: 2}
  - {block: conv, width: 128, stride: 2, relu_in: true}
branches:
  - source: 1
    stages:
      - {block: conv, width: [32, 48]}
      - {block: conv, width: {stage: 0, times: 4}, relu_in: true}
    links:
      - {at: 2, link: {ddr_bilateral: {}, pid_pag: {}}}
      - {at: 3, link: ddr_bilateral, optional: true}
  - source: 1
    optional: true
    stages:
      - {block: conv, width: 32}
      - {block: conv, width: {stage: 0, times: 4}}
    links:
      - {at: 2, link: pid_diff}
decoder:
  taps: [3]
  branch_taps: [0]
  kind:
    chain:
      context: {pappm: {branch_channels: [16, 32]}}
      context_width: {stage: 0, times: 4}
      fusions:
        - {add: {}, light_bag: {}}
        - passthrough
      guides: [1, null]
      widths: [[64, 64]]
heads:
  main: seg_head
  extra:
    - {role: aux, source: branch, branch: 0, index: 0, head: seg_head}
    - {role: boundary, source: branch, branch: 1, index: 1, head: boundary_head}
"""


def test_a_branched_space_samples_encodes_and_builds_its_members():
    import optuna

    from nasseg.space import parse_space

    space = parse_space(SPACE, "branched.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(40):
        trial = study.ask()
        g = space.sample(trial)
        study.tell(trial, 0.0)
        assert space.encode(g) == trial.params  # exactly what Optuna drew
        assert space.sample(optuna.trial.FixedTrial(trial.params)) == g
        d_branch = len(g.branches) == 2
        fusion = g.decoder.fusions[0]
        assert fusion.guide == (1 if fusion.name == "light_bag" else -1)
        assert fusion.name == "add" or d_branch  # no guide, no Bag
        assert g.branches[-1].stages[-1].width == 4 * g.stages[0].width == g.decoder.context_width
        assert [t.role for t in g.heads.extra] == (["aux", "boundary"] if d_branch else ["aux"])
        if not d_branch:
            assert "decoder.fusions.0" not in trial.params  # drawn among the two-input fusions, by another name
        seen.add((d_branch, fusion.name, len(g.branches[0].links)))
        net = build(g, 3).eval()
        with torch.no_grad():
            assert net(torch.randn(1, 3, 32, 64)).shape == (1, 3, 32, 64)
    assert {(False, "add"), (True, "add"), (True, "light_bag")} <= {s[:2] for s in seen}
    assert {1, 2} <= {s[2] for s in seen}  # the optional link


@pytest.mark.parametrize("old,new,message", [
    ("{at: 2, link: pid_diff}", "{at: 4, link: pid_diff}", "key 'branches.1.links.0.at': 4 is not allowed; allowed: "
     "one of [2, 3] (the main stages this branch runs beside)"),
    ("link: pid_diff}", "link: pid_dif}", "key 'branches.1.links.0.link.pid_dif': unknown link 'pid_dif'"),
    ("  - source: 1\n    optional: true", "  - source: 3\n    optional: true", "key 'branches.1.source': 3 is not "
     "allowed; allowed: -1 (the input image) or a main stage index 0..2"),
    ("branch_taps: [0]", "branch_taps: [1]", "key 'decoder.branch_taps.0': branch 1 is optional"),
    ("branch_taps: [0]", "branch_taps: [2]", "key 'decoder.branch_taps.0': 2 is not a branch; allowed: 0..1"),
    ("guides: [1, null]", "guides: [null, null]", "key 'decoder.kind.chain.fusions.0': ['light_bag'] take a third "
     "input (a boundary guide); give the guiding branch in decoder.kind.chain.guides.0"),
    ("{add: {}, light_bag: {}}", "{light_bag: {}}", "branch 1 (the guide) is optional, so this level needs a "
     "two-input fusion choice too"),
    ("width: {stage: 0, times: 4}, relu_in", "width: {stage: 5, times: 4}, relu_in", "key 'branches.0.stages.1."
     "width.stage': 5 is not allowed; allowed: a main stage drawn before this one, 0..3"),
    ("index: 1, head: boundary_head", "index: 2, head: boundary_head", "key 'heads.extra.1.index': 2 is not a stage "
     "of branch 1; allowed: 0..1"),
    ("{block: conv, width: [32, 48]}", "{block: conv, width: [32, 48], stride: 4}", "key 'branches.0.links.0.link."
     "ddr_bilateral' cannot join main stage 2"),
])
def test_bad_branched_spaces_fail_with_one_line(old, new, message):
    from nasseg.errors import ConfigError
    from nasseg.space import parse_space

    text = _swap(SPACE, old, new)
    with pytest.raises(ConfigError) as e:
        parse_space(text, "branched.yaml")
    assert message in str(e.value) and "\n" not in str(e.value)
    assert str(e.value).startswith("branched.yaml: ")


def test_the_branch_heads_train_in_the_proxy_and_stay_out_of_inference():
    """PIDNet-shaped: the auxiliary head on P and the boundary head on D give loss terms (aux, boundary BCE, the
    boundary-awareness CE), training is deterministic per seed, and the exported (eval) network has no head."""
    from nasseg.train import Recipe, _Criterion, proxy_train

    g = G.parse(PID)
    recipe = Recipe(resolution=(64, 128), batch_size=2, steps=2, train_length=4, val_length=2, num_workers=0)
    a, b = proxy_train(g, recipe, "synthetic", seed=3), proxy_train(g, recipe, "synthetic", seed=3)
    assert a.status == "completed" and a.loss_curve == b.loss_curve
    assert a.to_dict()["per_class_iou"] == b.to_dict()["per_class_iou"]  # to_dict: NaN (a class seen nowhere) -> None
    torch.manual_seed(0)
    net = build(g, 11).train()
    out = net(torch.randn(2, 3, 64, 128))
    labels = torch.randint(0, 11, (2, 64, 128))
    criterion = _Criterion(recipe, 255, torch.device("cpu"))
    full, no_heads = criterion(out, labels), criterion({**out, "aux": [], "boundary": None}, labels)
    assert torch.isfinite(full) and full > no_heads
