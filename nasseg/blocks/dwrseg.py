"""DWRSeg blocks: Simple Inverted Residual (SIR) for low-level stages, Dilation-wise Residual (DWR) for high ones.

H. Wei, X. Liu, S. Xu, Z. Dai, Y. Dai, X. Xu, "DWRSeg: Rethinking Efficient Acquisition of Multi-scale
Contextual Information for Real-time Semantic Segmentation", arXiv 2212.01173 (v1 Dec 2022, v3 Sep 2023).

**No official code is public** (the abstract promises it; no repository could be found).  Both blocks are
built from the paper's description and its ablation text, as compiled in the project reference (blocks.md
section 3): the abstract, and the paper summary at developer.aliyun.com/article/1230803.  Every choice the
text leaves open is listed in the class docstrings; a later official release may differ.
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.errors import BlockArgumentError
from nasseg.layers import ConvBNAct
from nasseg.registry import Arg, register


@register(
    "sir",
    kind="block",
    args=[
        Arg("expansion", "int", 3, "lambda: width of the 3x3 conv as a multiple of in_channels "
            "(paper ablation: 3 is best)", low=1, high=8),
    ],
    examples=[
        {"in_channels": 32, "out_channels": 32, "stride": 1},
        {"in_channels": 32, "out_channels": 64, "stride": 2},
        {"in_channels": 16, "out_channels": 24, "stride": 1, "expansion": 2},
    ],
)
class SIR(nn.Module):
    """DWRSeg Simple Inverted Residual: 3x3 conv-BN-ReLU expand to lambda*C, 1x1 conv-BN back, residual.

    DWRSeg (arXiv 2212.01173) Sec. 3 / Fig. 2(b), the low-level-stage module.  **No official code**; this
    is my reading of the paper text:

    * The paper derives SIR from DWR by keeping only the first (d = 1) branch and dropping the depthwise
      "semantic residualization" step, and says the module has "only a tiny 3x3 receptive field" while an
      inverted bottleneck expands the channels.  Without a depthwise conv the receptive field must come from
      the expanding conv, so the expansion conv is **3x3** (dense), not 1x1:
      ``3x3 conv (in -> lambda*in, no bias) -> BN -> ReLU -> 1x1 conv (lambda*in -> out, no bias) -> BN``.
      The ablation "adding a depthwise conv + BN to SIR" confirms the base module has none.
    * ``lambda`` (``expansion``) multiplies ``in_channels`` (the MobileNetV2 convention); paper best = 3.
    * BN after the 1x1 projection (the inverted-residual "linear bottleneck"); the DWR text (its pointwise
      conv has no BN) would suggest none, the paper text does not settle it.
    * No activation after the residual add (none is described; a linear bottleneck as in MobileNetV2).
    * Stride 2 (the SIR stages downsample; the paper's downsampling layer is not described): the 3x3
      expansion conv takes the stride and, as in MobileNetV2, the identity residual is used only when the
      block keeps the shape (stride 1 and in == out); otherwise the block has no shortcut.

    Parameters: ``9 in E + 2 E + E out + 2 out`` with ``E = lambda * in`` (SIR 32, lambda 3: 30,976).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *, expansion: int = 3):
        super().__init__()
        if stride not in (1, 2):
            raise BlockArgumentError("sir", "stride", stride, "allowed: 1, 2")
        hidden = in_channels * expansion
        self.expand = ConvBNAct(in_channels, hidden, 3, stride)
        self.project = ConvBNAct(hidden, out_channels, 1, act="none")
        self.use_residual = stride == 1 and in_channels == out_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # 3x3 expansion conv-BN-ReLU (strided when the block downsamples), 1x1 projection conv-BN
        y = self.project(self.expand(x))
        # identity residual when the shape is kept
        return y + x if self.use_residual else y


@register(
    "dwr",
    kind="block",
    args=[
        Arg("dilations", "ints", (1, 3, 5), "dilation of each depthwise 3x3 branch (paper: 1, 3, 5)",
            low=1, high=64, min_len=1, max_len=8),
        Arg("ratios", "ints", (2, 1, 1), "alpha: channel ratio of the branches, one per dilation "
            "(paper ablation: 2:1:1 is best)", low=1, high=16, min_len=1, max_len=8),
        Arg("rr_ratio", "float", 0.5, "beta: width of the region-residualization conv as a fraction of the "
            "block width (paper ablation: 0.5 is best)", low=0.0, high=2.0, low_open=True),
    ],
    examples=[
        {"in_channels": 64, "out_channels": 64, "stride": 1},
        {"in_channels": 48, "out_channels": 48, "stride": 1, "dilations": (1, 5, 9), "ratios": (1, 1, 1)},
        {"in_channels": 32, "out_channels": 32, "stride": 1, "dilations": (1, 2), "ratios": (3, 1),
         "rr_ratio": 1.0},
    ],
)
class DWR(nn.Module):
    """DWRSeg Dilation-wise Residual: 3x3 region residualization, split into depthwise dilated branches, 1x1.

    DWRSeg (arXiv 2212.01173) Sec. 3 / Fig. 2(a), the high-level-stage module.  **No official code**; this
    follows the paper's two-step description and its ablations (reference blocks.md section 3)::

        RR: 3x3 conv (C -> R = beta*C, no bias) -> BN -> ReLU          "region residualization"
        split R by alpha into groups R_i = R * a_i / sum(a)
        SR: per group i: depthwise 3x3 conv, dilation d_i (groups = R_i, no bias) -> BN
        concat (R channels) -> 1x1 conv (R -> C, bias, no BN)           "point-wise conv"
        + input                                                         (no activation after the add)

    Readings of the text, each a choice the paper leaves open:

    * **The RR output is split, not shared.**  The paper finds "non-shared" region residualization clearly
      better, and describes the second step as filtering *each* region-form feature map with *one* desired
      receptive field (a summary: "the region feature maps are first divided into groups, then each group
      gets a depthwise dilated conv of a different rate").  So every RR channel feeds exactly one branch and
      each depthwise conv has channel multiplier 1: the branch output ratio d1:d3:d5 = 2:1:1 (alpha) is the
      split ratio itself, and no branch needs more channels than its share.  (The widespread YOLO plug-ins
      feed the whole RR output to every branch with dense convs and give the d = 1 branch 2x channels; that
      is the "shared" design and not depthwise, so it is not followed here.)
    * ``rr_ratio`` (beta) is RR width / block width; ``beta * C`` must be a whole number and divisible by
      ``sum(ratios)``, otherwise ``BlockArgumentError`` (naming ``rr_ratio`` or ``ratios``).
    * Non-linearity as the paper's ablation baseline: RR has BN and ReLU, SR has BN and no ReLU, the
      point-wise conv has no BN (so it keeps its bias).  No ReLU after the residual add.
    * Stride and width: DWR is used only in the high-level stages at stride 1, so ``stride != 1`` or
      ``out_channels != in_channels`` raises ``BlockArgumentError``; downsample with ``sir`` (stride 2)
      before a DWR stage.

    Parameters: ``9 C R + 2 R`` (RR) ``+ 11 R`` (depthwise 9 R + BN 2 R) ``+ R C + C`` (point-wise);
    DWR 64 with the defaults (R = 32): 20,960.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, *,
                 dilations: tuple[int, ...] = (1, 3, 5), ratios: tuple[int, ...] = (2, 1, 1),
                 rr_ratio: float = 0.5):
        super().__init__()
        if stride != 1:
            raise BlockArgumentError("dwr", "stride", stride, "allowed: 1 (DWR is a stride-1 high-level-stage "
                                     "module; downsample with 'sir' at stride 2 first)")
        if out_channels != in_channels:
            raise BlockArgumentError("dwr", "out_channels", out_channels,
                                     f"must equal in_channels ({in_channels}): DWR is an identity residual")
        if len(ratios) != len(dilations):
            raise BlockArgumentError("dwr", "ratios", tuple(ratios), f"needs one entry per dilation "
                                     f"({len(dilations)} dilations: {tuple(dilations)})")
        rr = in_channels * rr_ratio
        if rr < 1 or rr != int(rr):
            raise BlockArgumentError("dwr", "rr_ratio", rr_ratio, f"rr_ratio * in_channels ({in_channels}) must "
                                     "be a whole number of channels >= 1")
        rr = int(rr)
        if rr % sum(ratios):
            raise BlockArgumentError("dwr", "ratios", tuple(ratios), f"the {rr} region-residualization channels "
                                     f"(rr_ratio {rr_ratio} x {in_channels}) do not split by the ratios "
                                     f"(sum {sum(ratios)} must divide {rr})")
        self.split_sizes = [rr * a // sum(ratios) for a in ratios]
        # step 1, region residualization
        self.rr = ConvBNAct(in_channels, rr, 3)
        # step 2, semantic residualization: one depthwise dilated conv per group
        self.branches = nn.ModuleList(
            ConvBNAct(c, c, 3, dilation=d, groups=c, act="none") for c, d in zip(self.split_sizes, dilations)
        )
        self.pointwise = nn.Conv2d(rr, out_channels, 1, bias=True)
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # region residualization: 3x3 conv-BN-ReLU to R channels
        groups = self.rr(x).split(self.split_sizes, dim=1)
        # semantic residualization: each group filtered with one receptive field, then concatenated
        y = torch.cat([branch(g) for branch, g in zip(self.branches, groups)], 1)
        # point-wise conv back to C, identity residual
        return self.pointwise(y) + x
