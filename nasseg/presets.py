"""Paper networks as genome literals, with the figures they are tested against.

Each :class:`Preset` carries the official-code counts (inference parameters and GMACs at the paper's
resolution, counted from the authors' code with fvcore, conv + linear only, one multiply-add = 1) and
the published figures with their sources.  ``tests/test_presets.py`` rebuilds every preset and checks
params and MACs within 0.5 % of the official counts (the way torchvision checks its model metadata).

Sources: ``shared/reference/blocks.md`` (compiled from the official repositories) unless a count says
otherwise; "inference params" exclude auxiliary / detail / boundary heads and classifier weights the
segmentation graph does not use.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from nasseg.errors import ConfigError
from nasseg.genome import Branch, Decoder, Fusion, Genome, Heads, HeadTap, Link, Module, Stage, _args, resolve


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    paper: str
    make: Callable[[], Genome]  # builds the genome literal (lazily, so a broken preset cannot break the rest)
    num_classes: int
    resolution: tuple[int, int]  # (H, W) at which the MACs are stated
    official_params: int | None  # inference params of the official implementation
    official_macs: int | None  # conv+linear MACs of the official implementation at ``resolution``
    source: str  # where the official counts come from
    published: dict[str, Any] = field(default_factory=dict)  # figures printed by the authors (+ source)
    notes: str = ""

    @cached_property
    def genome(self) -> Genome:
        return self.make()


def S(block: str, depth: int, width: int, stride: int = 1, *, down: Module | None = None,
      per_block: dict[str, list[Any]] | None = None, inject: bool = False, concat_first: bool = False,
      first_leads: bool = False, relu_in: bool = False, **args: Any) -> Stage:
    block_args: tuple = ()
    if per_block:
        n = {len(v) for v in per_block.values()}.pop()
        block_args = tuple(_args({k: v[j] for k, v in per_block.items()}) for j in range(n))
    return Stage(block, depth, width, stride, _args(args), block_args, down, inject, concat_first, first_leads,
                 relu_in)


def M(name: str, **args: Any) -> Module:
    return Module(name, _args(args))


# --------------------------------------------------------------------------------- STDC family
def _stdc_backbone(repeats: tuple[int, int, int]) -> tuple[Stage, ...]:
    """STDCNet813 (STDC1, repeats 2-2-2) / STDCNet1446 (STDC2, 4-5-3): two ConvX stems then STDC stages."""
    return (
        S("conv", 1, 32, 2), S("conv", 1, 64, 2),
        S("stdc", repeats[0], 256, 2, num_blocks=4),
        S("stdc", repeats[1], 512, 2, num_blocks=4),
        S("stdc", repeats[2], 1024, 2, num_blocks=4),
    )


def _stdc_seg(repeats: tuple[int, int, int]) -> Genome:
    """STDC-Seg: BiSeNet context path (GAP context, ARM32, ARM16, FFM with the 1/8 feature), detail head."""
    return resolve(Genome(
        stages=_stdc_backbone(repeats),
        decoder=Decoder("chain", (2, 3, 4), context=M("gap"), context_width=128, fusions=(
            Fusion("ffm", 256, _args({"reduction": 4})),
            Fusion("arm", 128),
            Fusion("arm", 128, _args({"refine": "none"})),
        )),
        heads=Heads(M("seg_head", mid_channels=256), extra=(
            HeadTap("aux", "level", 1, M("aux_head", mid_channels=64)),
            HeadTap("aux", "level", 2, M("aux_head", mid_channels=64)),
            HeadTap("detail", "stage", 2, M("detail_head")),
        ), align_corners=True),
    ))


def _ppliteseg_t() -> Genome:
    """PP-LiteSeg-T: STDC1 + SPPM (bins 1,2,4, 128) + FLD of three spatial UAFMs (128, 64, 32)."""
    return resolve(Genome(
        stages=_stdc_backbone((2, 2, 2)),
        decoder=Decoder("chain", (2, 3, 4), context=M("sppm", bins=(1, 2, 4), inter_channels=128), context_width=128,
                        fusions=(Fusion("uafm", 32), Fusion("uafm", 64), Fusion("uafm", 128))),
        heads=Heads(M("seg_head", mid_channels=32), extra=(
            HeadTap("aux", "level", 1, M("aux_head", mid_channels=64)),
            HeadTap("aux", "level", 2, M("aux_head", mid_channels=64)),
        )),
    ))


# ------------------------------------------------------------------------------------- RegSeg
REGSEG_EXP48 = [(1,), (1,), (1, 2)] + [(1, 4)] * 4 + [(1, 14)] * 6


def _regseg(dilations: list[tuple[int, ...]] = REGSEG_EXP48, last: tuple[int, ...] = (1, 14),
            decoder: str = "decoder26") -> Genome:
    """RegSeg exp48 body (stem 32, D-blocks 48 / 3x128 / 13x256 + 1x320 at 1/16) with decoder26."""
    return resolve(Genome(
        stages=(
            S("conv", 1, 32, 2),
            S("dblock", 1, 48, 2),
            S("dblock", 3, 128, 2),
            S("dblock", len(dilations), 256, 2, per_block={"dilations": list(dilations)}),
            S("dblock", 1, 320, 1, dilations=last),
        ),
        decoder=Decoder(decoder, (1, 2, 4)),
        heads=Heads(None),
    ))


# ------------------------------------------------------------------------------ LEDNet / ERFNet
def _lednet() -> Genome:
    down = M("downsampler", odd_pool="zero_pad")  # LEDNet pads odd sides with a zero row/column
    return resolve(Genome(
        stages=(
            S("ssnbt", 3, 32, 2, down=down, dropout=0.03),
            S("ssnbt", 2, 64, 2, down=down, dropout=0.03),
            S("ssnbt", 8, 128, 2, down=down, dropout=0.3, per_block={"dilation": [1, 2, 5, 9, 2, 5, 9, 17]}),
        ),
        decoder=Decoder("apn", (2,)),
        heads=Heads(None, align_corners=True),
    ))


def _erfnet() -> Genome:
    down = M("downsampler")
    return resolve(Genome(
        stages=(
            S("nb1d", 0, 16, 2, down=down),  # ERFNet's first stage is a lone downsampler
            S("nb1d", 5, 64, 2, down=down, dropout=0.03),
            S("nb1d", 8, 128, 2, down=down, dropout=0.3, per_block={"dilation": [2, 4, 8, 16, 2, 4, 8, 16]}),
        ),
        decoder=Decoder("erfnet_decoder", (2,)),
        heads=Heads(None),
    ))


# ------------------------------------------------------------------------------------- ESPNet
def _espnet(p: int = 2, q: int = 8) -> Genome:
    """ESPNet: CBR stem + image reinforcement, strided ESP + p ESP (64), strided ESP + q ESP (128).

    Concatenation orders as in the official ``train/Model.py``: level 2 ``[last ESP, strided ESP, image/4]``,
    level 3 ``[strided ESP, last ESP]`` (``first_leads``).
    """
    return resolve(Genome(
        stages=(
            S("conv", 1, 16, 2, act="prelu", bn_eps=1e-3, inject=True),
            S("esp", p + 1, 64, 2, inject=True, concat_first=True),
            S("esp", q + 1, 128, 2, concat_first=True, first_leads=True),
        ),
        decoder=Decoder("espnet_decoder", (0, 1, 2)),
        heads=Heads(None),
    ))


def _espnet_c(p: int = 2, q: int = 8) -> Genome:
    """ESPNet-C: ESPNet's encoder with a 1x1 classifier on level 3 (official ``ESPNet_Encoder``), logits at 1/8.
    The taps are ESPNet's (the classifier reads the deepest), so ``search_spaces/espnet.yaml`` holds both."""
    enc = _espnet(p, q)
    return resolve(Genome(stages=enc.stages, decoder=Decoder("espnet_c_decoder", (0, 1, 2)), heads=Heads(None)))


# ------------------------------------------------------------------------------------- DWRSeg
def _dwrseg() -> Genome:
    """A DWRSeg-style network: SIR in the low-level stages, DWR in the high-level ones (no official code)."""
    return resolve(Genome(
        stages=(
            S("conv", 1, 32, 2),
            S("sir", 2, 64, 2, expansion=3),
            S("sir", 2, 128, 2, expansion=3),
            S("dwr", 4, 192, 2, down=M("conv")),
            S("dwr", 2, 384, 2, down=M("conv")),
        ),
        decoder=Decoder("dwrseg_decoder", (2, 3, 4)),
        heads=Heads(None),
    ))


# ---------------------------------------------------------------------------------- FasterNet
def _fasternet(embed: int, act: str) -> Genome:
    """FasterNet backbone with its ImageNet classifier (the one preset whose head is a classifier)."""
    merge = M("conv", kernel_size=2, act="none")
    return resolve(Genome(
        stages=(
            S("conv", 1, embed, 4, kernel_size=4, act="none"),
            S("fasternet", 1, embed, 1, act=act),
            S("fasternet", 2, embed * 2, 2, down=merge, act=act),
            S("fasternet", 8, embed * 4, 2, down=merge, act=act),
            S("fasternet", 2, embed * 8, 2, down=merge, act=act),
        ),
        decoder=Decoder("classifier", (4,), _args({"hidden_channels": 1280, "act": act})),
        heads=Heads(None),
    ))


# ------------------------------------------------------------------- GhostNet, ShuffleNet V2, MobileNetV3
def _ghostnet_1x() -> Genome:
    """GhostNet 1.0x (Han et al., CVPR 2020, Table 1) with its ImageNet classifier; one stage per width (the
    official ``blocks.K`` groups split where the width changes), expansion = official #exp / #in."""
    return resolve(Genome(
        stages=(
            S("conv", 1, 16, 2),
            S("ghost", 1, 16, 1, expansion=1.0),
            S("ghost", 2, 24, 2, expansion=3.0),
            S("ghost", 2, 40, 2, kernel_size=5, se=True, expansion=3.0),
            S("ghost", 4, 80, 2, per_block={"expansion": [6.0, 2.5, 2.3, 2.3]}),
            S("ghost", 2, 112, 1, se=True, expansion=6.0),
            S("ghost", 5, 160, 2, kernel_size=5, expansion=6.0, per_block={"se": [True, False, True, False, True]}),
            S("conv", 1, 960, 1, kernel_size=1),
        ),
        decoder=Decoder("mlp_classifier", (7,), _args({"hidden_channels": 1280, "hidden_layer": "conv1x1",
                                                       "act": "relu", "dropout": 0.2})),
        heads=Heads(None),
    ))


def _shufflenetv2_1x() -> Genome:
    """ShuffleNet V2 1.0x (Ma et al., ECCV 2018, Table 5) as torchvision's ``shufflenet_v2_x1_0``."""
    return resolve(Genome(
        stages=(
            S("conv", 1, 24, 2),
            S("maxpool", 1, 24, 2),
            S("shufflev2", 4, 116, 2),
            S("shufflev2", 8, 232, 2),
            S("shufflev2", 4, 464, 2),
            S("conv", 1, 1024, 1, kernel_size=1),
        ),
        decoder=Decoder("classifier", (5,), _args({"hidden_channels": 0})),
        heads=Heads(None),
    ))


def _mobilenetv3_large() -> Genome:
    """MobileNetV3-Large (Howard et al., ICCV 2019, Table 1) as torchvision's ``mobilenet_v3_large``."""
    return resolve(Genome(
        stages=(
            S("conv", 1, 16, 2, act="hardswish", bn_eps=1e-3),
            S("mbv3", 1, 16, 1, expansion=1.0, act="relu"),
            S("mbv3", 2, 24, 2, act="relu", per_block={"expansion": [4.0, 3.0]}),
            S("mbv3", 3, 40, 2, kernel_size=5, act="relu", se=True, expansion=3.0),
            S("mbv3", 4, 80, 2, per_block={"expansion": [6.0, 2.5, 2.3, 2.3]}),
            S("mbv3", 2, 112, 1, se=True, expansion=6.0),
            S("mbv3", 3, 160, 2, kernel_size=5, se=True, expansion=6.0),
            S("conv", 1, 960, 1, kernel_size=1, act="hardswish", bn_eps=1e-3),
        ),
        decoder=Decoder("mlp_classifier", (7,), _args({"hidden_channels": 1280, "act": "hardswish", "dropout": 0.2})),
        heads=Heads(None),
    ))


# ---------------------------------------------------------------------------------------- CGNet
def _cgnet(m: int = 3, n: int = 21) -> Genome:
    """CGNet M3N21: three CBR 3x3 (32, the first s2) with the image/2 injected; a CG_Down (64, d 2, r 8) and
    M - 1 CG blocks concatenated [last, first, image/4]; a CG_Down (128, d 4, r 16) and N - 1 CG blocks
    concatenated [first, last]; each concatenation BN + PReLU; 1x1 classifier (no bias) at 1/8 (official
    ``Context_Guided_Network(classes, M=3, N=21)``, the same concatenation orders as ESPNet's)."""
    return resolve(Genome(
        stages=(
            S("conv", 3, 32, 2, act="prelu", bn_eps=1e-3, inject=True),
            S("cg", m, 64, 2, dilation=2, reduction=8, inject=True, concat_first=True),
            S("cg", n, 128, 2, dilation=4, reduction=16, concat_first=True, first_leads=True),
        ),
        decoder=Decoder("espnet_c_decoder", (2,)),
        heads=Heads(None),
    ))


# ------------------------------------------------------------------------------------ Fast-SCNN
def _fast_scnn() -> Genome:
    """Fast-SCNN: learning to downsample (32, 48, 64; 1/8), three bottleneck stages (MobileNetV2, t = 6, ReLU:
    3 x 64 s2, 3 x 96 s2, 3 x 128 s1) with pyramid pooling (128) as the chain's context, the feature fusion
    module (128) fusing it with the 1/8 path, and the two-DSConv classifier (Tramac/Fast-SCNN-pytorch)."""
    return resolve(Genome(
        stages=(
            S("ltd", 1, 64, 8),
            S("mbconv", 3, 64, 2, act="relu"),
            S("mbconv", 3, 96, 2, act="relu"),
            S("mbconv", 3, 128, 1, act="relu"),
        ),
        decoder=Decoder("chain", (0, 3), context=M("fastscnn_ppm"), context_width=128,
                        fusions=(Fusion("fastscnn_ffm", 128), Fusion("passthrough", 128))),
        heads=Heads(M("fastscnn_head"), align_corners=True),
    ))


# --------------------------------------------------------------------------------------- ENet
ENET_STAGE2 = {  # bottleneck2.1-2.8 of Table 1 (stage 3 repeats them without the downsampling 2.0)
    "dilation": [1, 2, 1, 4, 1, 8, 1, 16],
    "asymmetric": [False, False, True, False, False, False, True, False],
    "kernel_size": [3, 3, 5, 3, 3, 3, 5, 3],
}


def _enet() -> Genome:
    """ENet (Paszke et al. 2016, Table 1) as the PyTorch port ``davidtvs/PyTorch-ENet`` builds it: initial block,
    stage 1 (downsampling + 4 regular, dropout 0.01), stage 2 (downsampling + the eight of ``ENET_STAGE2``),
    stage 3 (the same eight), PReLU; the decoder taps the inputs of the two downsampling bottlenecks."""
    first = {"dilation": 1, "asymmetric": False, "kernel_size": 3}  # bottleneck2.0: downsampling, plain 3x3
    stage2 = {k: [first[k], *v] for k, v in ENET_STAGE2.items()}
    return resolve(Genome(
        stages=(
            S("enet_initial", 1, 16, 2),
            S("enet", 5, 64, 2, dropout=0.01),
            S("enet", 9, 128, 2, dropout=0.1, per_block=stage2),
            S("enet", 8, 128, 1, dropout=0.1, per_block=ENET_STAGE2),
        ),
        decoder=Decoder("enet_decoder", (0, 1, 3)),
        heads=Heads(None),
    ))


# ---------------------------------------------------------------------------------- SeaFormer
def _seaformer_tiny() -> Genome:
    """SeaFormer-T (official ``local_configs/seaformer/seaformer_tiny.py``): a MobileNetV2 trunk (ReLU; the
    official ``cfg1``-``cfg5`` as kernel, expansion, width, stride) with two SEA stages behind strided
    MobileNetV2 blocks (128 and 160 channels, 2 blocks each, key dims 16 and 24, 4 heads, MLP ratios 2 and 4,
    drop path 0 then 0.1), and the light head on the 1/8, 1/32 and 1/64 features."""
    mb = {"act": "relu"}
    return resolve(Genome(
        stages=(
            S("conv", 1, 16, 2),                                                   # stem
            S("mbconv", 1, 16, 1, expansion=1, **mb),                              # cfg1
            S("mbconv", 2, 16, 2, per_block={"expansion": [4, 3]}, **mb),
            S("mbconv", 2, 32, 2, kernel_size=5, expansion=3, **mb),               # cfg2: 1/8
            S("mbconv", 2, 64, 2, expansion=3, **mb),                              # cfg3: 1/16
            S("sea", 2, 128, 2, down=M("mbconv", kernel_size=5, expansion=3, **mb), key_dim=16, num_heads=4,
              mlp_ratio=2.0, per_block={"drop_path": [0.0, 0.1]}),                 # cfg4 + trans1: 1/32
            S("sea", 2, 160, 2, down=M("mbconv", kernel_size=3, expansion=6, **mb), key_dim=24, num_heads=4,
              mlp_ratio=4.0, per_block={"drop_path": [0.0, 0.1]}),                 # cfg5 + trans2: 1/64
        ),
        decoder=Decoder("seaformer_head", (3, 5, 6)),
        heads=Heads(None),
    ))


def _topformer_tiny() -> Genome:
    """TopFormer-T (official ``local_configs/topformer/topformer_tiny.py``): the token pyramid (MobileNetV2 blocks,
    ReLU, the official ``cfg`` as kernel, expansion, width, stride) tapped at 1/4, 1/8, 1/16 and 1/32, and the
    token pyramid transformer with the simple head as ``topformer_decoder``."""
    mb = {"act": "relu"}
    return resolve(Genome(
        stages=(
            S("conv", 1, 16, 2),                                                   # stem
            S("mbconv", 1, 16, 1, expansion=1, **mb),                              # [3, 1, 16, 1]
            S("mbconv", 2, 16, 2, per_block={"expansion": [4, 3]}, **mb),          # 1/4
            S("mbconv", 2, 32, 2, kernel_size=5, expansion=3, **mb),               # 1/8
            S("mbconv", 2, 64, 2, expansion=3, **mb),                              # 1/16
            S("mbconv", 2, 96, 2, kernel_size=5, expansion=6, **mb),               # 1/32
        ),
        decoder=Decoder("topformer_decoder", (2, 3, 4, 5)),
        heads=Heads(None),
    ))


# ----------------------------------------------------------------------------------- DDRNet / PIDNet
def _last_no_relu(depth: int) -> dict[str, list[bool]]:
    """Official ``_make_layer``: every block of a layer ends in ReLU except the last (``no_relu=True``)."""
    return {"no_relu": [False] * (depth - 1) + [True]}


# The main path of both families (search_spaces/dualbranch.yaml writes it the same way): a stage whose output a
# link sums into (layer3, layer4) ends before its ReLU and every reader applies it (the next stage's ``!relu``,
# the links); the stages before the branches leave (layer1, layer2) end in their ReLU, which the official code
# applies to their output wherever it is read (DDRNet ``self.layer3_(self.relu(layers[1]))``, PIDNet
# ``x = self.relu(self.layer2(self.relu(x)))``).
def _ddrnet_23(planes: int, head_planes: int) -> Genome:
    """DDRNet-23(-slim) (official ``DualResNet(BasicBlock, [2, 2, 2, 2], planes, spp_planes=128, head_planes)``).

    Main (low-resolution) path: ``conv1`` stem to 1/4, ``layer1``..``layer4`` (two basic blocks each, 1/4 .. 1/32)
    and ``layer5`` (one bottleneck, 1/64).  The high-resolution branch starts from ``layer2`` (1/8) and runs
    ``layer3_``, ``layer4_``, ``layer5_`` beside ``layer3``..``layer5``; bilateral fusions after stages 3 and 4.
    A stage after a sum reads ``relu(x)`` (``!relu``).  Decoder: DAPPM on ``layer5``, upsampled to 1/8 and
    added to the branch (``passthrough`` at the main tap, ``add`` at the branch tap: the official
    ``final_layer(up(spp(layer5(relu(x)))) + layer5_(relu(x_)))``).  Training head: ``seghead_extra`` on the
    branch after the stage-3 fusion.
    """
    c, hr = planes, 2 * planes
    layer = _last_no_relu(2)
    return resolve(Genome(
        stages=(
            S("ddr_stem", 1, c, 4),                                                 # conv1: 1/4
            S("resnet_basic", 2, c, 1),                                             # layer1
            S("resnet_basic", 2, 2 * c, 2),                                         # layer2: 1/8
            S("resnet_basic", 2, 4 * c, 2, per_block=layer),                        # layer3: 1/16
            S("resnet_basic", 2, 8 * c, 2, per_block=layer, relu_in=True),          # layer4: 1/32
            S("resnet_bottleneck", 1, 16 * c, 2, per_block={"no_relu": [True]}, relu_in=True),  # layer5: 1/64
        ),
        branches=(Branch(source=2, stages=(
            S("resnet_basic", 2, hr, 1, per_block=layer),                           # layer3_
            S("resnet_basic", 2, hr, 1, per_block=layer, relu_in=True),             # layer4_
            S("resnet_bottleneck", 1, 2 * hr, 1, relu_in=True, no_relu=True),       # layer5_
        ), links=(Link(3, M("ddr_bilateral")), Link(4, M("ddr_bilateral")))),),  # compression3/down3, 4
        decoder=Decoder("chain", (5,), branch_taps=(0,), context=M("dappm", branch_channels=128),
                        context_width=4 * c, fusions=(Fusion("add", 4 * c), Fusion("passthrough", 4 * c))),
        heads=Heads(M("seg_head", mid_channels=head_planes, preact=True, bias=True), extra=(
            HeadTap("aux", "branch", 0, M("aux_head", mid_channels=head_planes, preact=True, bias=True), branch=0),
        )),
    ))


def _pidnet(m: int, n: int, planes: int, ppm_planes: int, head_planes: int, large: bool) -> Genome:
    """PIDNet-S/M/L (official ``PIDNet(m, n, planes, ppm_planes, head_planes)``).

    I (main) path: ``conv1`` stem to 1/4, ``layer1``..``layer4`` (m, m, n, n basic blocks), ``layer5`` (two
    bottlenecks, 1/64, both without the final ReLU: the official ``Bottleneck``'s own default ``no_relu=True``).
    The official forward applies a ReLU after each of ``layer1``..``layer4``; ``layer3`` and ``layer4`` end
    before it here and their readers apply it (the next stage's ``!relu``; ``pid_pag`` and ``pid_diff`` read
    ``relu(main)``), as in DDRNet.  P branch (branch 0, from ``layer2``): ``layer3_``, ``layer4_`` (m basic
    blocks), ``layer5_`` (bottleneck to 4C), with Pag after stages 3 and 4.  D branch (branch 1, from
    ``layer2``): S/M ``layer3_d`` basic 2C -> C, ``layer4_d`` bottleneck C -> 2C; L two basic blocks 2C; then
    ``layer5_d`` bottleneck to 4C; ``diff`` additions after stages 3 and 4.  Decoder: PAPPM (L: DAPPM) on
    ``layer5``, then Light-Bag (L: Bag) of P and I guided by D.  Training heads: ``seghead_p`` on P after Pag 3,
    ``seghead_d`` (boundary) on D after stage 4.
    """
    c = planes
    d_stages = (
        S("resnet_basic", 1, 2 * c, 1, no_relu=True),                               # layer3_d
        S("resnet_basic", 1, 2 * c, 1, relu_in=True, no_relu=True),                 # layer4_d
    ) if large else (
        S("resnet_basic", 1, c, 1, no_relu=True),                                   # layer3_d
        S("resnet_bottleneck", 1, 2 * c, 1, relu_in=True, no_relu=True),            # layer4_d
    )
    return resolve(Genome(
        stages=(
            S("ddr_stem", 1, c, 4),                                                 # conv1: 1/4
            S("resnet_basic", m, c, 1),                                             # layer1
            S("resnet_basic", m, 2 * c, 2),                                         # layer2: 1/8
            S("resnet_basic", n, 4 * c, 2, per_block=_last_no_relu(n)),             # layer3: 1/16
            S("resnet_basic", n, 8 * c, 2, per_block=_last_no_relu(n), relu_in=True),  # layer4: 1/32
            S("resnet_bottleneck", 2, 16 * c, 2, per_block={"no_relu": [True, True]}, relu_in=True),  # layer5
        ),
        branches=(
            Branch(source=2, stages=(                                               # P
                S("resnet_basic", m, 2 * c, 1, per_block=_last_no_relu(m)),         # layer3_
                S("resnet_basic", m, 2 * c, 1, per_block=_last_no_relu(m), relu_in=True),  # layer4_
                S("resnet_bottleneck", 1, 4 * c, 1, relu_in=True, no_relu=True),   # layer5_
            ), links=(Link(3, M("pid_pag")), Link(4, M("pid_pag")))),              # compression3 + pag3, 4
            Branch(source=2, stages=(                                               # D
                *d_stages,
                S("resnet_bottleneck", 1, 4 * c, 1, relu_in=True, no_relu=True),   # layer5_d
            ), links=(Link(3, M("pid_diff")), Link(4, M("pid_diff")))),            # diff3, diff4
        ),
        decoder=Decoder("chain", (5,), branch_taps=(0,),
                        context=M("dappm", branch_channels=ppm_planes) if large
                        else M("pappm", branch_channels=ppm_planes), context_width=4 * c,
                        fusions=(Fusion("bag" if large else "light_bag", 4 * c, guide=1),
                                 Fusion("passthrough", 4 * c))),
        heads=Heads(M("seg_head", mid_channels=head_planes, preact=True, bias=True), extra=(
            HeadTap("aux", "branch", 0, M("aux_head", mid_channels=head_planes, preact=True, bias=True), branch=0),
            HeadTap("boundary", "branch", 1, M("boundary_head"), branch=1),
        )),
    ))


# ------------------------------------------------------------------------------------ BiSeNet
def _bisenetv1() -> Genome:
    """BiSeNet V1 (ResNet-18) as the authors' TorchSeg ``cityscapes.bisenet.R18.speed`` builds it.

    Main path = the context path's ResNet-18 (7x7 s2 conv stem, 3x3 max pool, four stages of two basic blocks);
    branch 0 from the image = the spatial path (ConvBNReLU 7x7 s2, 3x3 s2, 3x3 s2 -> 64, 1x1 -> 128, at 1/8);
    decoder: global context (GAP -> ConvBNReLU 1x1 -> 128) on C5, ARM32 + context, ARM16 + refine(up), then the
    FFM (reduction 1) over the spatial path and refine(up(context path)); bilinear upsampling with
    align_corners=True inside the context path, as TorchSeg.
    """
    up = "bilinear"
    return resolve(Genome(
        stages=(
            S("conv", 1, 64, 2, kernel_size=7), S("maxpool", 1, 64, 2),
            S("resnet_basic", 2, 64, 1), S("resnet_basic", 2, 128, 2),
            S("resnet_basic", 2, 256, 2), S("resnet_basic", 2, 512, 2),
        ),
        branches=(Branch(source=-1, stages=(
            S("conv", 1, 64, 2, kernel_size=7), S("conv", 1, 64, 2), S("conv", 1, 64, 2),
            S("conv", 1, 128, 1, kernel_size=1),
        )),),
        decoder=Decoder("chain", (4, 5), branch_taps=(0,), context=M("gap"), context_width=128, fusions=(
            Fusion("ffm", 256, _args({"reduction": 1, "upsample": up})),
            Fusion("arm", 128, _args({"upsample": up})),
            Fusion("arm", 128, _args({"refine": "none", "upsample": up})),
        )),
        heads=Heads(M("seg_head", mid_channels=64, bias=True), extra=(
            HeadTap("aux", "level", 1, M("aux_head", mid_channels=128, bias=True)),
            HeadTap("aux", "level", 2, M("aux_head", mid_channels=128, bias=True)),
        )),
    ))


def _bisenetv2() -> Genome:
    """BiSeNet V2 as ``CoinCheung/BiSeNet`` ``lib/models/bisenetv2.py`` builds it (no author code).

    Main path = the semantic branch (stem block to 1/4, GE layers 32 / 64 / 128 at 1/8, 1/16, 1/32); branch 0
    from the image = the detail branch (ConvBNReLU 64, 64 / 64, 64, 64 / 128, 128, 128, the first of each
    stage stride 2); decoder: CE block on the last semantic stage, then BGA with the detail branch; main head
    ConvBNReLU 3x3 -> 1024 -> 1x1; four auxiliary heads on the semantic stages (training only).
    """
    aux = (16, 64, 256, 1024)  # the official aux heads' upsampling conv: up_factor ** 2 for 1/4 ... 1/32
    return resolve(Genome(
        stages=(
            S("bisenetv2_stem", 1, 16, 4),
            S("ge", 2, 32, 2), S("ge", 2, 64, 2), S("ge", 4, 128, 2),
        ),
        branches=(Branch(source=-1, stages=(
            S("conv", 2, 64, 2), S("conv", 3, 64, 2), S("conv", 3, 128, 2),
        )),),
        decoder=Decoder("chain", (3,), branch_taps=(0,), context=M("ce"), context_width=128, fusions=(
            Fusion("bga", 128), Fusion("passthrough", 128),
        )),
        heads=Heads(M("bisenetv2_head", mid_channels=1024), extra=tuple(
            HeadTap("aux", "stage", i, M("bisenetv2_head", mid_channels=128, up_channels=u))
            for i, u in enumerate(aux))),
    ))


def _presets() -> dict[str, Preset]:
    items = [
        Preset("stdc1_seg", "STDC1-Seg", "Fan et al., Rethinking BiSeNet for Real-time Semantic Segmentation, "
               "CVPR 2021", lambda: _stdc_seg((2, 2, 2)), 19, (512, 1024), 8_275_104, 16_860_000_000,
               "official MichaelFan01/STDC-Seg (8.275 M, 16.86 GMACs @512x1024); the exact integer is the "
               "sum of the official parts each run beside ours: STDCNet813 features 5,318,304 + ContextPath and FFM "
               "2,361,600 + BiSeNetOutput(256, 256, 19) 595,200",
               {"miou_val": "72.2 (Seg50, README)", "fps": "250.4 (1080Ti, TensorRT, 512x1024)"}),
        Preset("stdc2_seg", "STDC2-Seg", "Fan et al., CVPR 2021", lambda: _stdc_seg((4, 5, 3)), 19, (512, 1024),
               12_305_568, None,
               "official MichaelFan01/STDC-Seg: STDCNet1446 features 9,348,768 + ContextPath and FFM 2,361,600 + "
               "BiSeNetOutput(256, 256, 19) 595,200, each run beside ours; no official MAC figure",
               {"miou_val": "74.2 (Seg50, README)", "fps": "188.6"}),
        Preset("ppliteseg_t", "PP-LiteSeg-T", "Peng et al., PP-LiteSeg, arXiv 2204.02681", lambda: _ppliteseg_t(), 19,
               (512, 1024), 8_028_320, 11_420_000_000,
               "official PaddlePaddle/PaddleSeg PP-LiteSeg-T (8.03 M, 11.42 GMACs: PaddleSeg's modules on the official "
               "STDC1 backbone); exact integer: "
               "STDC1 features 5,318,304 + SPPM 542,208 + three UAFMs 2,157,920 (PaddleSeg's own modules run beside "
               "ours; Paddle adds 3 frozen scalars) + seg head 9,888",
               {"miou_val": "73.1 (T1, 512x1024)", "fps": "273.6 (1080Ti, TensorRT)"}),
        Preset("regseg", "RegSeg (exp48_decoder26)", "Gao, Rethinking Dilated Convolution for Real-time Semantic "
               "Segmentation, arXiv 2111.09957", lambda: _regseg(), 19, (1024, 2048), 3_334_951, 38_350_000_000,
               "official RolandGao/RegSeg (3,334,951 params, 38.35 conv GMACs @1024x2048)",
               {"params": "3.34 M", "miou_test": "78.3", "fps": "30 (T4, AMP)"}),
        Preset("lednet", "LEDNet", "Wang et al., LEDNet, ICIP 2019", _lednet, 20, (512, 1024), 923_083,
               11_210_000_000,
               "official xiaoyufenfei/LEDNet (925,534 incl. an unused 2,451-param encoder output "
               "conv, so 923,083 at inference; 11.21 GMACs @512x1024)",
               {"params": "< 1 M (README), 0.94 M [3rd]", "miou_test": "70.6"}),
        Preset("erfnet", "ERFNet", "Romera et al., ERFNet, T-ITS 2018", _erfnet, 20, (512, 1024), 2_064_256,
               26_612_727_808, "official Eromera/erfnet_pytorch train/erfnet.py run beside ours: 2,066,836 params "
               "incl. an unused 2,580-param encoder output conv, so 2,064,256 at inference; 26.61 GMACs @512x1024",
               {"params": "2.06 M [3rd]", "miou_val": "72.1 (PyTorch version README)"}),
        Preset("espnet", "ESPNet (p=2, q=8)", "Mehta et al., ESPNet, ECCV 2018", lambda: _espnet(), 20, (512, 1024),
               365_109, 4_780_220_416,
               "official sacmehta/ESPNet train/Model.py (b335e48) run beside ours: 365,109 params, 4.780 GMACs",
               {"params": "0.364 M", "macs": "424 M 'FLOPs' (resolution not stated)", "miou_test": "60.3"}),
        Preset("espnet_c", "ESPNet-C (p=2, q=8)", "Mehta et al., ESPNet, ECCV 2018", lambda: _espnet_c(), 20,
               (512, 1024), 349_449, None,
               "official sacmehta/ESPNet train/Model.py (afe71c3) ESPNet_Encoder(20, 2, 8) run beside ours: 349,449 "
               "params; no official MAC figure",
               {"miou_val": "ESPNet-C (p=5, q=3): 51.6 (paper, Table 2)"}),
        Preset("dwrseg", "DWRSeg-style network", "Wei et al., DWRSeg, arXiv 2212.01173", _dwrseg, 19, (512, 1024),
               None, None, "no official code is public: no official counts exist",
               {"miou_test": "72.7", "fps": "319.5 (1080Ti)"},
               notes="Stage widths, depths and the decoder are our reading of the paper's description; the "
                     "published network's exact configuration is not public."),
        Preset("fasternet_t0", "FasterNet-T0 (ImageNet)", "Chen et al., Run, Don't Walk: Chasing Higher FLOPS for "
               "Faster Neural Networks, CVPR 2023", lambda: _fasternet(40, "gelu"), 1000, (224, 224),
               3_905_500, 335_000_000,
               "official JierunChen/FasterNet (3,905,500 params, 0.335 GMACs @224)",
               {"params": "3.9 M", "flops": "0.34 G", "top1": "71.9"}),
        Preset("fasternet_t1", "FasterNet-T1 (ImageNet)", "Chen et al., CVPR 2023",
               lambda: _fasternet(64, "gelu"), 1000,
               (224, 224), 7_595_368, 850_000_000, "official JierunChen/FasterNet models/fasternet.py run beside ours; "
               "MACs: the paper's and the official README's 0.85 G at 224x224",
               {"params": "7.6 M", "flops": "0.85 G", "top1": "76.2"}),
        Preset("fasternet_t2", "FasterNet-T2 (ImageNet)", "Chen et al., CVPR 2023",
               lambda: _fasternet(96, "relu"), 1000,
               (224, 224), 14_982_888, 1_900_000_000, "official JierunChen/FasterNet models/fasternet.py run beside "
               "ours; MACs: the paper's and the official README's 1.90 G at 224x224",
               {"params": "15.0 M", "flops": "1.90 G", "top1": "78.9"}),
        Preset("ghostnet_1x", "GhostNet 1.0x (ImageNet)", "Han et al., GhostNet: More Features from Cheap Operations, "
               "CVPR 2020", _ghostnet_1x, 1000, (224, 224), 5_182_508, 141_150_512,
               "official huawei-noah/Efficient-AI-Backbones (f90e129) ghostnet_pytorch/ghostnet.py ghostnet() run "
               "beside ours: 5,182,508 params, 141,150,512 conv + linear MACs @224 (fvcore)",
               {"params": "5.2 M", "flops": "141 M", "top1": "73.9"}),
        Preset("shufflenetv2_1x", "ShuffleNet V2 1.0x (ImageNet)", "Ma et al., ShuffleNet V2: Practical Guidelines "
               "for Efficient CNN Architecture Design, ECCV 2018", _shufflenetv2_1x, 1000, (224, 224),
               2_278_604, 144_907_992,
               "torchvision models/shufflenetv2.py (pytorch/vision 0248e36) shufflenet_v2_x1_0() run beside ours: "
               "2,278,604 params (torchvision's metadata: 2278604), 144,907,992 conv + linear MACs @224 (fvcore; "
               "metadata 0.145 G); the authors' megvii-model/ShuffleNet-Series (aa91feb) 1.0x: 2,278,760 and "
               "145,814,296",
               {"params": "2.3 M", "flops": "146 M", "top1": "69.4 (paper: 30.6 % top-1 error)"},
               notes="Follows torchvision (both branches of a down-sampling unit out/2 wide, shuffle at the end of "
                     "every unit), whose ImageNet weights are the ones people load; see nasseg/blocks/shufflenet.py "
                     "for the authors' code's two differences."),
        Preset("mobilenetv3_large", "MobileNetV3-Large 1.0 (ImageNet)", "Howard et al., Searching for MobileNetV3, "
               "ICCV 2019", _mobilenetv3_large, 1000, (224, 224), 5_483_032, 216_589_760,
               "torchvision models/mobilenetv3.py (pytorch/vision 00542d9) mobilenet_v3_large() run beside ours: "
               "5,483,032 params (torchvision's metadata: 5483032), 216,589,760 conv + linear MACs @224 (fvcore; "
               "metadata 0.217 G)",
               {"params": "5.4 M", "madds": "219 M", "top1": "75.2 (paper) / 74.042 (torchvision V1 weights)"}),
        Preset("cgnet", "CGNet (M=3, N=21)", "Wu et al., CGNet: A Light-weight Context Guided Network for Semantic "
               "Segmentation, IEEE TIP 2021 (arXiv 1811.08201)", lambda: _cgnet(), 19, (512, 1024),
               496_306, 6_762_312_704,
               "official wutianyiRosun/CGNet@cfccea3 model/CGNet.py Context_Guided_Network(19, M=3, N=21) run beside "
               "ours: 496,306 params, 6,762,312,704 conv+linear MACs @512x1024 (fvcore)",
               {"params": "< 0.5 M (README); 0.41 M [3rd]", "miou_test": "64.8 (Cityscapes, README)"}),
        Preset("fast_scnn", "Fast-SCNN", "Poudel et al., Fast-SCNN: Fast Semantic Segmentation Network, BMVC 2019 "
               "(arXiv 1902.04502)", _fast_scnn, 19, (1024, 2048), 1_138_051, 6_708_323_168,
               "no code from the paper's authors; Tramac/Fast-SCNN-pytorch@0638517 models/fast_scnn.py FastSCNN(19) "
               "run beside ours: 1,138,051 params, 6,708,323,168 conv MACs @1024x2048 (fvcore)",
               {"params": "1.11 M [3rd]", "miou_val": "68.6 [3rd]", "miou_test": "68.0 (abstract)",
                "fps": "123.5 (abstract, 1024x2048)"},
               notes="The paper's own network is not public; the preset follows the Tramac re-implementation "
                     "(stem conv without padding, FFM depthwise conv without dilation, classifier dropout 0.1)."),
        Preset("enet", "ENet", "Paszke et al., ENet: A Deep Neural Network Architecture for Real-Time Semantic "
               "Segmentation, arXiv 1606.02147", _enet, 20, (512, 1024), 351_804, 4_056_285_184,
               "the authors' code is Lua Torch (e-lab/ENet-training); counted from the PyTorch port it follows, "
               "davidtvs/PyTorch-ENet models/enet.py (e17d404) ENet(20) run beside ours: 351,804 params, "
               "4,056,285,184 MACs @512x1024",
               {"miou_test": "58.3 (Cityscapes test, paper)", "miou_val_port": "59.5 (the port's README)"},
               notes="The PyTorch port differs from the Lua original (nasseg.blocks.enet lists how); the paper's "
                     "own counts are the Lua network's."),
        Preset("seaformer_tiny", "SeaFormer-T (ADE20K)", "Wan et al., SeaFormer: Squeeze-enhanced Axial Transformer "
               "for Mobile Semantic Segmentation, ICLR 2023", _seaformer_tiny, 150, (512, 512), 1_667_318, 562_569_216,
               "official fudan-zvg/SeaFormer seaformer-seg (9718d05): SeaFormer backbone + LightHead as "
               "local_configs/seaformer/seaformer_tiny.py builds them (150 classes; mmcv stood in for), run beside "
               "ours: 1,667,318 params, 562,569,216 MACs @512x512",
               {"miou_val": "36.5 (ADE20K, single scale, 160k iterations; official README)",
                "backbone_imagenet": "1.8 M params, 0.1 G FLOPs @224, 68.1 top-1 (official README)"}),
        Preset("topformer_tiny", "TopFormer-T (ADE20K)", "Zhang et al., TopFormer: Token Pyramid Transformer for "
               "Mobile Semantic Segmentation, CVPR 2022", _topformer_tiny, 150, (512, 512), 1_389_654, 534_110_208,
               "official hustvl/TopFormer (cc0f436): Topformer + SimpleHead as local_configs/topformer/"
               "topformer_tiny.py builds them (150 classes; mmcv stood in for), run beside ours: 1,389,654 params, "
               "534,110,208 MACs @512x512",
               {"params": "1.4 M (official README)", "flops": "0.6 G @512x512 (official README)",
                "miou_val": "33.6 / 34.6 (ADE20K, 2x8 / 4x8 batches, 160k iterations; official README)"}),
        Preset("ddrnet_23_slim", "DDRNet-23-slim", "Hong et al., Deep Dual-resolution Networks for Real-time and "
               "Accurate Semantic Segmentation of Road Scenes, arXiv 2101.06085", lambda: _ddrnet_23(32, 64), 19,
               (1024, 2048), 5_695_987, 36_281_319_424,
               "official ydhongHIT/DDRNet@de0db31 segmentation/DDRNet_23_slim.py DualResNet(BasicBlock, [2, 2, 2, 2], "
               "num_classes=19, planes=32, spp_planes=128, head_planes=64, augment=False) run beside ours: 5,695,987 "
               "params, 36,281,319,424 conv MACs @1024x2048 (fvcore)",
               {"params": "5.7 M [3rd: zh320/realtime-semantic-segmentation-pytorch]",
                "miou_val": "77.8 (official README)", "miou_test": "77.4 (official README)",
                "fps": "102 (2080Ti; paper abstract)", "imagenet_top1_error": "29.8 (official README)"}),
        Preset("ddrnet_23", "DDRNet-23", "Hong et al., arXiv 2101.06085", lambda: _ddrnet_23(64, 128), 19,
               (1024, 2048), 20_148_947, 143_060_500_480,
               "official ydhongHIT/DDRNet@de0db31 segmentation/DDRNet_23.py DualResNet(BasicBlock, [2, 2, 2, 2], "
               "num_classes=19, planes=64, spp_planes=128, head_planes=128, augment=False) run beside ours: 20,148,947 "
               "params, 143,060,500,480 conv MACs @1024x2048 (fvcore)",
               {"miou_val": "79.5 (official README)", "miou_test": "79.4 (official README)",
                "imagenet_top1_error": "24.1 (official README)"}),
        Preset("pidnet_s", "PIDNet-S", "Xu et al., PIDNet: A Real-time Semantic Segmentation Network Inspired by PID "
               "Controllers, CVPR 2023", lambda: _pidnet(2, 3, 32, 96, 128, False), 19, (1024, 2048),
               7_625_715, 47_194_226_688,
               "official XuJiacong/PIDNet@4c158cf models/pidnet.py PIDNet(m=2, n=3, num_classes=19, planes=32, "
               "ppm_planes=96, head_planes=128, augment=False) run beside ours: 7,625,715 params, 47,194,226,688 conv "
               "MACs @1024x2048 (fvcore)",
               {"params": "7.62 M [3rd: aplux model card]", "miou_val": "78.8 (official README)",
                "miou_test": "78.6 (official README)", "fps": "93.2 (RTX 3090, 1024x2048; official README)",
                "camvid_test": "80.1 @ 153.7 FPS (official README)"},
               notes="Training heads: the official forward's in-place ReLU rectifies the tensors its seghead_p and "
                     "seghead_d keep (the next stage's self.relu(x_)), so officially they see relu(x); here they "
                     "see x, as the paper draws them.  Inference is unaffected (exact)."),
        Preset("pidnet_m", "PIDNet-M", "Xu et al., CVPR 2023", lambda: _pidnet(2, 3, 64, 96, 128, False), 19,
               (1024, 2048), 28_538_515, 177_328_717_824,
               "official XuJiacong/PIDNet@4c158cf models/pidnet.py PIDNet(m=2, n=3, num_classes=19, planes=64, "
               "ppm_planes=96, head_planes=128, augment=False) run beside ours: 28,538,515 params, 177,328,717,824 "
               "conv MACs @1024x2048 (fvcore)",
               {"miou_val": "79.9 (official README)", "miou_test": "79.8 (official README)",
                "fps": "42.2 (RTX 3090, 1024x2048; official README)",
                "camvid_test": "82.0 @ 85.6 FPS (official README)"},
               notes="Training heads: the official forward's in-place ReLU rectifies the tensors its seghead_p and "
                     "seghead_d keep (the next stage's self.relu(x_)), so officially they see relu(x); here they "
                     "see x, as the paper draws them.  Inference is unaffected (exact)."),
        Preset("pidnet_l", "PIDNet-L", "Xu et al., CVPR 2023", lambda: _pidnet(3, 4, 64, 112, 256, True), 19,
               (1024, 2048), 36_939_571, 274_933_465_088,
               "official XuJiacong/PIDNet@4c158cf models/pidnet.py PIDNet(m=3, n=4, num_classes=19, planes=64, "
               "ppm_planes=112, head_planes=256, augment=False) run beside ours: 36,939,571 params, 274,933,465,088 "
               "conv MACs @1024x2048 (fvcore)",
               {"miou_val": "80.9 (official README)", "miou_test": "80.6 (official README)",
                "fps": "31.1 (RTX 3090, 1024x2048; official README)"},
               notes="Training heads: the official forward's in-place ReLU rectifies the tensors its seghead_p and "
                     "seghead_d keep (the next stage's self.relu(x_)), so officially they see relu(x); here they "
                     "see x, as the paper draws them.  Inference is unaffected (exact)."),
        Preset("bisenetv1", "BiSeNet V1 (ResNet-18)", "Yu et al., BiSeNet: Bilateral Segmentation Network for "
               "Real-time Semantic Segmentation, ECCV 2018", _bisenetv1, 19, (768, 1536), 12_894_163, 58_344_439_808,
               "official (the authors' code) ycszen/TorchSeg@62eeb15 model/bisenet/cityscapes.bisenet.R18.speed/"
               "network.py BiSeNet(19) (is_training=False: main head only) run beside ours (torch 2.13 CPU, fvcore "
               "0.1.5, conv + linear): 12,894,163 params, 58,344,439,808 MACs @768x1536.  The re-implementation "
               "CoinCheung/BiSeNet@6b4b67a lib/models/bisenetv1.py counts 13,275,539 / 66,565,341,184 (shared/"
               "reference/blocks.md 8.1: 13.28 M, 66.57 G): its FFM and heads differ",
               {"miou_val": "74.8 (768x1536) [3rd, PaddleSeg pp_liteseg README]", "miou_test": "74.7 [3rd]",
                "fps": "65.5 (Titan XP) [3rd]",
                "xception39": "68.4 test mIoU at 105 FPS (Titan XP), the paper's abstract (no preset)"},
               notes="The paper's 49.0 M params (as quoted by third parties) is not what the authors' code builds "
                     "(12.89 M); the training aux heads tap the chain levels at 1/32 and 1/16 (TorchSeg: the refined "
                     "upsampled levels at 1/16 and 1/8), so they are not imported from checkpoints."),
        Preset("bisenetv2", "BiSeNet V2", "Yu et al., BiSeNet V2: Bilateral Network with Guided Aggregation for "
               "Real-time Semantic Segmentation, IJCV 2021", _bisenetv2, 19, (512, 1024), 3_358_627, 24_603_312_128,
               "re-implementation (the authors published no code) CoinCheung/BiSeNet@6b4b67a lib/models/bisenetv2.py "
               "BiSeNetV2(19, aux_mode='eval') run beside ours (torch 2.13 CPU, fvcore 0.1.5, conv + linear): "
               "3,358,627 params, 24,603,312,128 MACs @512x1024 (shared/reference/blocks.md 8.1: 3.36 M, 24.60 G)",
               {"miou_test": "72.6 (Cityscapes, paper abstract)", "miou_val": "73.4 [3rd, PaddleSeg pp_liteseg README]",
                "fps": "156 (GTX 1080 Ti, 2048x1024 input resized to 512x1024; paper abstract)"},
               notes="The four training aux heads (booster training) are the re-implementation's SegmentHead with "
                     "its upsampling conv (up_factor**2 channels); they are not in the inference counts."),
    ]
    return {p.name: p for p in items}


PRESETS: dict[str, Preset] = {}


def _ensure() -> dict[str, Preset]:
    if not PRESETS:
        PRESETS.update(_presets())
    return PRESETS


def names() -> list[str]:
    return sorted(_ensure())


def get(name: str) -> Preset:
    presets = _ensure()
    if name not in presets:
        close = difflib.get_close_matches(name, list(presets), n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"unknown preset {name!r}; {hint}known presets: {', '.join(sorted(presets))}")
    return presets[name]
