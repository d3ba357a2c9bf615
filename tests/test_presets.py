"""Paper presets against their official parameter and MAC counts (the way torchvision checks its metadata).

Params: ``nasseg.cost.count_params`` (inference parameters: no auxiliary / detail / boundary heads).
MACs: ``nasseg.cost.count_macs`` (fvcore, conv + linear, one multiply-add = 1) at the preset's resolution.
"""

from __future__ import annotations

import pytest
import torch

from nasseg import presets
from nasseg.build import build
from nasseg.cost import count_macs, count_params

NAMES = presets.names()
TOLERANCE = 0.005  # 0.5 %

# Exact counts of every preset: (params, MACs at the preset resolution).  Where a number is an official
# figure the comment says so and gives its source; every other number is "pinned, not an official figure":
# it records what the current code builds, so that any change to a block, default or preset shows up here.
EXACT = {
    # official: RolandGao/RegSeg, 3,334,951 params (shared/reference/blocks.md §2.5); MACs pinned, not an
    # official figure (the official 38.35 conv GMACs @1024x2048 is rounded)
    "regseg": (3_334_951, 38_353_186_560),
    # official: JierunChen/FasterNet T0, 3,905,500 params (blocks.md §4.4); MACs pinned, not an official figure
    # (official 0.335 GMACs @224 is rounded)
    "fasternet_t0": (3_905_500, 335_422_720),
    # official: sacmehta/ESPNet train/Model.py (b335e48) run beside ours: 365,109 params, 4,780,220,416 MACs
    "espnet": (365_109, 4_780_220_416),
    # official: sacmehta/ESPNet train/Model.py (afe71c3) ESPNet_Encoder(20, 2, 8) run beside ours: 349,449 params;
    # MACs pinned, not an official figure (no official MAC count exists)
    "espnet_c": (349_449, 3_470_155_776),
    # official: xiaoyufenfei/LEDNet, 923,083 inference params with the 20-class APN (blocks.md §6.4); MACs
    # pinned, not an official figure (official 11.21 GMACs is rounded)
    "lednet": (923_083, 11_209_539_328),
    # official: Eromera/erfnet_pytorch run beside ours: 2,064,256 params, 26,612,727,808 MACs
    "erfnet": (2_064_256, 26_612_727_808),
    # official: MichaelFan01/STDC-Seg parts run beside ours (see the preset's source); MACs pinned, not an
    # official figure (official 16.86 GMACs is rounded)
    "stdc1_seg": (8_275_104, 16_863_133_696),
    # official params as stdc1_seg; MACs pinned, not an official figure (no official MAC count exists)
    "stdc2_seg": (12_305_568, 23_456_579_584),
    # official: PaddleSeg modules on the official STDC1 backbone, 8,028,320 (8.03 M, blocks.md §8.2); MACs
    # pinned, not an official figure (official 11.42 GMACs is rounded)
    "ppliteseg_t": (8_028_320, 11_421_139_968),
    # official params: JierunChen/FasterNet run beside ours; MACs pinned, not an official figure
    "fasternet_t1": (7_595_368, 850_511_872),
    "fasternet_t2": (14_982_888, 1_904_334_848),
    # pinned, not an official figure (DWRSeg has no public code): params and MACs
    "dwrseg": (3_988_851, 14_205_517_824),
    # official: huawei-noah/Efficient-AI-Backbones f90e129, ghostnet_pytorch/ghostnet.py, ghostnet() run beside
    # ours (fvcore, conv + linear, 224x224): 5,182,508 params, 141,150,512 MACs
    "ghostnet_1x": (5_182_508, 141_150_512),
    # official: pytorch/vision 0248e36, torchvision/models/shufflenetv2.py, shufflenet_v2_x1_0() run beside ours:
    # 2,278,604 params, 144,907,992 MACs
    "shufflenetv2_1x": (2_278_604, 144_907_992),
    # official: pytorch/vision 00542d9, torchvision/models/mobilenetv3.py, mobilenet_v3_large() run beside ours:
    # 5,483,032 params, 216,589,760 MACs
    "mobilenetv3_large": (5_483_032, 216_589_760),
    # official: wutianyiRosun/CGNet@cfccea3 model/CGNet.py Context_Guided_Network(19, M=3, N=21) run beside ours
    # (torch 2.13 CPU, fvcore 0.1.5, conv + linear): 496,306 params, 6,762,312,704 MACs @512x1024
    "cgnet": (496_306, 6_762_312_704),
    # official (no code from the paper's authors): Tramac/Fast-SCNN-pytorch@0638517 models/fast_scnn.py
    # FastSCNN(19) run beside ours (torch 2.13 CPU, fvcore 0.1.5, conv): 1,138,051 params, 6,708,323,168 MACs
    # @1024x2048
    "fast_scnn": (1_138_051, 6_708_323_168),
    # official: davidtvs/PyTorch-ENet models/enet.py at e17d404 (the PyTorch port; the authors' code is Lua Torch),
    # ENet(20) run beside ours: 351,804 params, 4,056,285,184 MACs @512x1024 (fvcore, its two MaxUnpool2d written
    # as the same scatter, which jit tracing needs and which has no MACs)
    "enet": (351_804, 4_056_285_184),
    # official: fudan-zvg/SeaFormer seaformer-seg at 9718d05, mmseg/models/backbones/seaformer.py (SeaFormer) +
    # mmseg/models/decode_heads/light_head.py (LightHead) as local_configs/seaformer/seaformer_tiny.py builds them
    # (150 classes, mmcv stood in for), run beside ours: 1,667,318 params, 562,569,216 MACs @512x512
    "seaformer_tiny": (1_667_318, 562_569_216),
    # official: hustvl/TopFormer at cc0f436, mmseg/models/backbones/topformer.py (Topformer) +
    # mmseg/models/decode_heads/simple_head.py (SimpleHead) as local_configs/topformer/topformer_tiny.py builds them
    # (150 classes, mmcv stood in for), run beside ours: 1,389,654 params, 534,110,208 MACs @512x512
    "topformer_tiny": (1_389_654, 534_110_208),
    # official: ydhongHIT/DDRNet@de0db31 segmentation/DDRNet_23_slim.py / DDRNet_23.py DualResNet(BasicBlock,
    # [2, 2, 2, 2], 19 classes, planes 32 / 64, spp_planes 128, head_planes 64 / 128, augment=False) run beside ours
    # (torch 2.13 CPU, fvcore 0.1.5, conv + linear): params and MACs @1024x2048
    "ddrnet_23_slim": (5_695_987, 36_281_319_424),
    "ddrnet_23": (20_148_947, 143_060_500_480),
    # official: XuJiacong/PIDNet@4c158cf models/pidnet.py PIDNet(m, n, 19 classes, planes, ppm_planes, head_planes,
    # augment=False) as get_pred_model builds S / M / L, run beside ours: params and MACs @1024x2048
    "pidnet_s": (7_625_715, 47_194_226_688),
    "pidnet_m": (28_538_515, 177_328_717_824),
    "pidnet_l": (36_939_571, 274_933_465_088),
    # official (the authors' code): ycszen/TorchSeg@62eeb15 model/bisenet/cityscapes.bisenet.R18.speed/network.py
    # BiSeNet(19) in eval (main head only) run beside ours (torch 2.13 CPU, fvcore 0.1.5, conv + linear):
    # 12,894,163 params, 58,344,439,808 MACs @768x1536
    "bisenetv1": (12_894_163, 58_344_439_808),
    # official (no code from the paper's authors): CoinCheung/BiSeNet@6b4b67a lib/models/bisenetv2.py
    # BiSeNetV2(19, aux_mode='eval') run beside ours (same tools): 3,358,627 params, 24,603,312,128 MACs @512x1024
    "bisenetv2": (3_358_627, 24_603_312_128),
}


@pytest.fixture(scope="module")
def networks():
    return {n: build(presets.get(n).genome, presets.get(n).num_classes) for n in NAMES}


@pytest.fixture(scope="module")
def params(networks):
    return {n: count_params(net) for n, net in networks.items()}


@pytest.fixture(scope="module")
def macs(networks):
    """fvcore runs one real forward per preset at its paper resolution (RegSeg at 1024x2048 is the slowest)."""
    torch.set_num_threads(1)
    return {n: count_macs(net, (1, 3, *presets.get(n).resolution)).macs for n, net in networks.items()}


def _rel(a: int, b: int) -> float:
    return abs(a - b) / b


def test_every_preset_is_pinned():
    assert sorted(EXACT) == NAMES, "pin the exact counts of a new preset in EXACT (and say whether they are official)"


def test_preset_metadata_is_sane():
    for n in NAMES:
        p = presets.get(n)
        assert p.name == n and p.title and p.paper and p.source
        assert isinstance(p.num_classes, int) and p.num_classes > 0
        h, w = p.resolution
        assert h > 0 and w > 0
        assert (p.official_macs is None) or (p.official_macs > 0)


@pytest.mark.parametrize("name", [n for n in NAMES if presets.get(n).official_params])
def test_params_within_half_a_percent_of_official(params, name):
    official = presets.get(name).official_params
    assert _rel(params[name], official) <= TOLERANCE, f"{name}: {params[name]:,} vs official {official:,}"


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if presets.get(n).official_macs])
def test_macs_within_half_a_percent_of_official(macs, name):
    official = presets.get(name).official_macs
    assert _rel(macs[name], official) <= TOLERANCE, f"{name}: {macs[name]:,} vs official {official:,}"


def test_official_figures_verified_by_the_coordinator(params):
    assert params["regseg"] == 3_334_951
    assert params["fasternet_t0"] == 3_905_500
    assert params["espnet"] == 365_109
    assert _rel(params["ppliteseg_t"], 8_030_000) <= TOLERANCE
    # LEDNet's official count is for the 20-class APN (19 Cityscapes classes + void); the preset builds that
    assert presets.get("lednet").num_classes == 20
    assert params["lednet"] == 923_083


def test_lednet_count_depends_on_its_20_classes():
    assert count_params(build(presets.get("lednet").genome, 19)) != 923_083


@pytest.mark.slow
def test_espnet_macs_are_exact(macs):
    assert macs["espnet"] == 4_780_220_416


@pytest.mark.parametrize("name", NAMES)
def test_exact_params(params, name):
    assert params[name] == EXACT[name][0]


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_exact_macs(macs, name):
    assert macs[name] == EXACT[name][1]


@pytest.mark.slow
def test_fasternet_published_figures(params, macs):
    """FasterNet Table 8 prints 7.6 M / 0.85 G (T1) and 15.0 M / 1.90 G (T2) 'FLOPs' (= MACs) at 224."""
    for name, p, m in (("fasternet_t0", 3.9e6, 0.34e9), ("fasternet_t1", 7.6e6, 0.85e9),
                       ("fasternet_t2", 15.0e6, 1.90e9)):
        assert _rel(params[name], p) < 0.01 and _rel(macs[name], m) < 0.015, name


@pytest.mark.slow
def test_mobile_presets_published_figures(params, macs):
    """GhostNet Table 7: 5.2 M / 141 M FLOPs (= MACs); ShuffleNet V2 Table 8 and megvii README: 2.3 M / 146 M;
    MobileNetV3 Table 3: 5.4 M / 219 M MAdds (torchvision's metadata 5,483,032 / 0.217 G)."""
    for name, p, m in (("ghostnet_1x", 5.2e6, 141e6), ("shufflenetv2_1x", 2.3e6, 146e6),
                       ("mobilenetv3_large", 5.4e6, 219e6)):
        assert _rel(params[name], p) < 0.02 and _rel(macs[name], m) < 0.015, name


def test_genomes_are_built_lazily_and_cached():
    p = presets.get("stdc2_seg")
    assert p.genome is p.genome


def test_unknown_preset_suggests_close_names():
    from nasseg.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean regseg"):
        presets.get("regsg")


@pytest.mark.slow
def test_enet_matches_the_pytorch_port_exactly(params, macs):
    """davidtvs/PyTorch-ENet models/enet.py (e17d404) ENet(20), counted beside ours: params and MACs are equal."""
    assert params["enet"] == presets.get("enet").official_params == 351_804
    assert macs["enet"] == presets.get("enet").official_macs == 4_056_285_184


@pytest.mark.slow
def test_seaformer_tiny_matches_the_official_code_exactly(params, macs):
    """fudan-zvg/SeaFormer (9718d05) SeaFormer-T + LightHead, counted beside ours: params and MACs are equal."""
    assert params["seaformer_tiny"] == presets.get("seaformer_tiny").official_params == 1_667_318
    assert macs["seaformer_tiny"] == presets.get("seaformer_tiny").official_macs == 562_569_216


@pytest.mark.slow
def test_topformer_tiny_matches_the_official_code_exactly(params, macs):
    """hustvl/TopFormer (cc0f436) TopFormer-T + SimpleHead, counted beside ours: params and MACs are equal (the
    official README prints 1.4 M and 0.6 G 'FLOPs' at 512x512, the latter from another counter than fvcore's
    conv + linear + matmul MACs)."""
    assert params["topformer_tiny"] == presets.get("topformer_tiny").official_params == 1_389_654
    assert macs["topformer_tiny"] == presets.get("topformer_tiny").official_macs == 534_110_208
    assert round(params["topformer_tiny"] / 1e6, 1) == 1.4


@pytest.mark.slow
def test_ddrnet_and_pidnet_match_the_official_code_exactly(params, macs):
    """ydhongHIT/DDRNet (de0db31) and XuJiacong/PIDNet (4c158cf), counted beside ours: params and MACs are equal."""
    for name in ("ddrnet_23_slim", "ddrnet_23", "pidnet_s", "pidnet_m", "pidnet_l"):
        p = presets.get(name)
        assert (params[name], macs[name]) == (p.official_params, p.official_macs) == EXACT[name], name
def test_bisenet_training_heads_are_left_out_of_inference_params():
    """BiSeNet V2's four aux heads (CoinCheung's aux2 ... aux5_4: 37,475 + 112,211 + 374,291 + 1,348,883) and V1's
    two (TorchSeg's heads.0/1: 2 x 150,163) are built, trained, and not counted."""
    for name, extra in (("bisenetv2", 37_475 + 112_211 + 374_291 + 1_348_883), ("bisenetv1", 2 * 150_163)):
        net = build(presets.get(name).genome, 19)
        assert sum(p.numel() for p in net.train_heads.parameters()) == extra
        assert sum(p.numel() for p in net.parameters()) == EXACT[name][0] + extra

