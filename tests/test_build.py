"""Genome -> nn.Module: every sampled genome builds and runs; train-mode outputs; parameter accounting."""

from __future__ import annotations

import time

import pytest
import torch

from nasseg import genome as G
from nasseg import presets
from nasseg.build import Network, build
from nasseg.cost import count_params
from nasseg.errors import GenomeError
from nasseg.space import load_space, space_files

SPACES = {p.stem: p for p in space_files()}
CLASSIFIER_SPACES = {"fasternet", "mobile_imagenet", "shufflenet_imagenet"}  # ImageNet classifiers: (N, 1000) at 224
SEG_SAMPLES, CLASSIFIER_SAMPLES = 200, 20


def _forward_eval(net: Network, shape: tuple[int, ...]) -> torch.Tensor:
    net.eval()
    with torch.no_grad():
        return net(torch.randn(shape))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SPACES))
def test_sampled_genomes_build_and_run(name):
    """200 random members of every segmentation space (20 of the classifier space) build and run a forward.

    64x128 keeps it fast (every space has output stride <= 32, so every stage still has >= 2x4 pixels);
    batch 1, one thread, no_grad.  Measured on the 2-core CI box: ~2-5 s per segmentation space.
    """
    torch.set_num_threads(1)
    space = load_space(SPACES[name])
    classifier = name in CLASSIFIER_SPACES
    n, (h, w), classes = (CLASSIFIER_SAMPLES, (224, 224), 1000) if classifier else (SEG_SAMPLES, (64, 128), 7)
    start, failures = time.perf_counter(), []
    for seed in range(n):
        g = space.random(seed)
        try:
            net = build(g, classes)
            y = _forward_eval(net, (1, 3, h, w))
        except Exception as e:  # collect every failure with its genome, then fail once
            failures.append(f"seed {seed}: {G.to_string(g)}: {type(e).__name__}: {e}")
            continue
        expected = (1, classes) if classifier else (1, classes, h, w)
        if tuple(y.shape) != expected or not torch.isfinite(y).all():
            failures.append(f"seed {seed}: {G.to_string(g)}: output {tuple(y.shape)}, expected {expected}")
    elapsed = time.perf_counter() - start
    print(f"{name}: {n} genomes built and run in {elapsed:.1f} s")
    assert not failures, f"{len(failures)}/{n} sampled genomes failed:\n" + "\n".join(failures[:10])


# ------------------------------------------------------------------------------------ train mode
def test_train_mode_returns_out_aux_detail_boundary():
    g = presets.get("stdc1_seg").genome
    net = build(g, 19).train()
    x = torch.randn(2, 3, 64, 128)
    out = net(x)
    assert set(out) == {"out", "aux", "detail", "boundary"}
    assert out["out"].shape == (2, 19, 64, 128)
    assert len(out["aux"]) == 2 and all(a.shape == (2, 19, 64, 128) for a in out["aux"])
    assert out["detail"].shape == (2, 1, 8, 16)  # STDC detail head on stage 2 (1/8), one channel
    assert out["boundary"] is None
    out["out"].mean().backward()  # the graph is differentiable end to end
    net.eval()
    with torch.no_grad():
        y = net(x)
    assert isinstance(y, torch.Tensor) and y.shape == (2, 19, 64, 128)


def test_train_mode_without_extra_heads_is_still_a_dict():
    net = build(presets.get("regseg").genome, 5).train()
    out = net(torch.randn(2, 3, 64, 128))
    assert out["out"].shape == (2, 5, 64, 128)
    assert out["aux"] == [] and out["detail"] is None and out["boundary"] is None


def test_boundary_head_lands_under_its_role():
    g = G.parse("v1|conv1x32s2/stdc2x64s2/stdc2x128s2|chain@1,2~gap>64:arm32/arm64|seg_head"
                "/aux@l1=aux_head/boundary@s1=boundary_head")
    out = build(g, 3).train()(torch.randn(2, 3, 32, 64))
    assert out["boundary"].shape == (2, 1, 8, 16) and out["detail"] is None
    assert len(out["aux"]) == 1 and out["aux"][0].shape == (2, 3, 32, 64)


# ------------------------------------------------------------------------------- parameter counts
def test_inference_parameters_exclude_training_heads():
    net = build(presets.get("stdc1_seg").genome, 19)
    everything = sum(p.numel() for p in net.parameters())
    heads = sum(p.numel() for p in net.train_heads.parameters())
    inference = sum(p.numel() for p in net.inference_parameters())
    assert heads > 0 and inference == everything - heads == count_params(net)
    ids = {id(p) for p in net.inference_parameters()}
    assert not ids & {id(p) for p in net.train_heads.parameters()}
    # with no extra heads the two agree
    plain = build(presets.get("regseg").genome, 19)
    assert count_params(plain) == sum(p.numel() for p in plain.parameters())


@pytest.mark.parametrize("name,stride", [("stdc1_seg", 32), ("ppliteseg_t", 32), ("regseg", 16), ("lednet", 8),
                                         ("erfnet", 8), ("espnet", 8), ("dwrseg", 32), ("fasternet_t0", 32)])
def test_output_stride(name, stride):
    net = build(presets.get(name).genome, 19)
    assert net.output_stride == stride
    assert net.stage_strides[-1] == stride and len(net.stage_strides) == len(net.stages)


def test_stage_channels_are_wired_from_out_channels():
    net = build(presets.get("espnet").genome, 20)
    # ESPNet: 16 + image (3); concat(first ESP 64, last 64) + image (3); concat(128, 128)
    assert net.stage_channels == (19, 131, 256)


def test_concatenation_order_follows_first_leads():
    """ESPNet's level 2 concatenates [last, first, image], its level 3 [first, last] (first_leads)."""
    torch.manual_seed(0)
    g = presets.get("espnet").genome
    net = build(g, 20).eval()
    assert [s.first_leads for s in g.stages] == [False, False, True]
    x = torch.randn(1, 3, 32, 64)
    seen = {}
    for i, stage in enumerate(net.stages):
        stage.blocks[0].register_forward_hook(lambda m, a, y, i=i: seen.__setitem__((i, "first"), y))
        stage.blocks[-1].register_forward_hook(lambda m, a, y, i=i: seen.__setitem__((i, "last"), y))
        stage.merge.register_forward_hook(lambda m, a, y, i=i: seen.__setitem__((i, "cat"), a[0]))
    with torch.no_grad():
        net(x)
    cat1, cat2 = seen[(1, "cat")], seen[(2, "cat")]
    assert torch.equal(cat1[:, :64], seen[(1, "last")]) and torch.equal(cat1[:, 64:128], seen[(1, "first")])
    assert torch.equal(cat2[:, :128], seen[(2, "first")]) and torch.equal(cat2[:, 128:], seen[(2, "last")])


def test_classifier_genome_returns_flat_logits():
    y = _forward_eval(build(presets.get("fasternet_t0").genome, 10), (2, 3, 64, 64))
    assert y.shape == (2, 10)


def test_other_input_channels():
    net = build(presets.get("espnet").genome, 5, in_channels=1)  # input injection uses the 1-channel image
    assert _forward_eval(net, (1, 1, 64, 128)).shape == (1, 5, 64, 128)


@pytest.mark.parametrize("n", [0, -1, True, 2.5, "19", None])
def test_num_classes_is_validated(n):
    with pytest.raises(GenomeError, match="num_classes"):
        build(presets.get("regseg").genome, n)  # type: ignore[arg-type]


def test_build_resolves_the_genome_and_keeps_it():
    g = presets.get("ppliteseg_t").genome
    net = build(g, 19)
    assert net.genome == g and net.num_classes == 19


# --------------------------------------------------------------------------- unbuildable genomes
def test_block_that_cannot_be_built_at_its_width_names_the_stage():
    # parsing only validates arguments; building finds that width 24 does not split into 16-wide groups
    g = G.parse("v1|conv1x32s2/dblock1x24s2/dblock3x128s2|decoder26@0,1,2|-")
    with pytest.raises(GenomeError) as e:
        build(g, 19)
    msg = str(e.value)
    assert "stages.1.block0" in msg and "32->24" in msg and "group_width" in msg


def test_downsampler_that_cannot_narrow_names_the_stage():
    g = G.parse("v1|downsampler>nb1d0x16s2/downsampler>nb1d1x8s2|erfnet_decoder@1|-")
    with pytest.raises(GenomeError, match=r"stages\.1\.down \(16->8, stride 2\)"):
        build(g, 19)


def test_decoder_given_the_wrong_number_of_taps_names_the_decoder():
    g = G.parse("v1|conv1x16s2/esp3x64s2|espnet_decoder@0,1|-")
    with pytest.raises(GenomeError, match=r"^decoder: .*espnet_decoder.*3"):
        build(g, 19)


def test_three_input_fusion_needs_a_branch_as_its_guide():
    with pytest.raises(GenomeError, match=r"decoder\.fusions\.0: 'bag' takes a third input \(a boundary guide\) "
                       r"from a branch, and the genome has no branches"):
        G.parse("v1|conv1x32s2/conv1x64s2|chain@0,1:bag32/bag64|seg_head")


def test_decoder_refusing_num_classes_is_a_genome_error():
    with pytest.raises(GenomeError, match=r"^decoder: .*num_classes = 4"):
        build(presets.get("espnet").genome, 4)  # the ESP-module decoder splits C into 5 branches
