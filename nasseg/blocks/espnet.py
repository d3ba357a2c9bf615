"""ESPNet's ESP module (ECCV 2018) and ESPNetv2's EESP unit (CVPR 2019).

Both follow reduce -> split -> transform (parallel dilated 3x3 convs) -> hierarchical feature fusion (HFF)
-> merge.  ESP: Mehta et al., "ESPNet: Efficient Spatial Pyramid of Dilated Convolutions for Semantic
Segmentation" (ESP module, Fig. 1); official code sacmehta/ESPNet ``train/Model.py``.  EESP: Mehta et al.,
"ESPNetv2: A Light-weight, Power Efficient, and General Purpose CNN" (EESP unit); official code
sacmehta/EdgeNets ``nn_layers/eesp.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from nasseg.errors import ConfigError
from nasseg.layers import BNAct, ConvBNAct
from nasseg.registry import Arg, register

# ESPNet uses BN eps 1e-3 everywhere (train/Model.py); EdgeNets' EESP keeps the PyTorch default.
ESP_BN_EPS = 1e-3


def _check_stride(block: str, stride: int) -> None:
    if stride not in (1, 2):
        raise ConfigError(f"block '{block}': stride = {stride!r} is not allowed; allowed: 1, 2")


@register(
    "esp",
    kind="block",
    args=[
        Arg("branches", "int", 5, "parallel dilated branches K; dilations 1, 2, 4, ..., 2^(K-1)",
            low=2, high=6),
        Arg("hff", "bool", True, "hierarchical feature fusion (sum chain) before the concat"),
        Arg("residual", "bool", True, "identity shortcut when stride is 1 and in == out"),
    ],
    examples=[
        {"in_channels": 64, "out_channels": 64, "stride": 1},
        {"in_channels": 19, "out_channels": 64, "stride": 2},
        {"in_channels": 32, "out_channels": 64, "stride": 1, "branches": 2, "hff": False},
        {"in_channels": 64, "out_channels": 64, "stride": 1, "branches": 6, "residual": False},
    ],
)
class ESP(nn.Module):
    """ESP module of ESPNet (Mehta et al., ECCV 2018, Fig. 1).

    Stride 1 (official ``DilatedParllelResidualBlockB``):
    1x1 reduce conv in -> d = out // K (no BN, no act, no bias); K parallel 3x3 convs on the reduced
    tensor with dilations 2^(k-1) (no BN, no act, no bias), the dilation-1 branch giving
    out - (K-1)*d channels (it absorbs the remainder); HFF: running sums of the branches with dilation
    >= 2 (the dilation-1 branch is not in the chain); concat; + input when ``residual`` and the shapes
    match (identity only, never a projection); BN (eps 1e-3) -> PReLU.

    Stride 2 (official ``DownSamplerB``): the same with a 3x3 stride-2 reduce conv and no residual.

    ``hff=False`` concatenates the raw branch outputs (the paper's ESP without HFF).

    Divergences from the official code: K is an argument (official: 5 only, the paper's choice);
    the official stride-1 module adds the input unconditionally when ``add=True`` (and fails when the
    shapes differ), here the shortcut is skipped when they differ.  Parameter counts are identical:
    ESP(64->64) = 7,872, ESP(128->128) = 32,384, ESP(19->64, s2) = 9,156, ESP(131->128, s2) = 58,659.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        branches: int,
        hff: bool,
        residual: bool,
    ):
        super().__init__()
        _check_stride("esp", stride)
        d = out_channels // branches
        if d < 1:
            raise ConfigError(
                f"block 'esp': out_channels = {out_channels} is smaller than branches = {branches}; "
                f"each branch needs at least one channel (out_channels >= branches)"
            )
        d1 = out_channels - (branches - 1) * d
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.hff = hff
        self.use_residual = residual and stride == 1 and in_channels == out_channels

        # Reduce: 1x1 (stride 1) or 3x3 stride 2 (DownSamplerB); no BN, no act, no bias
        k = 1 if stride == 1 else 3
        self.reduce = nn.Conv2d(in_channels, d, k, stride, k // 2, bias=False)
        # Split + transform: branch i has dilation 2^i; branch 0 (dilation 1) takes the remainder
        self.branches = nn.ModuleList(
            nn.Conv2d(d, d1 if i == 0 else d, 3, 1, 2**i, 2**i, bias=False) for i in range(branches)
        )
        self.br = BNAct(out_channels, act="prelu", bn_eps=ESP_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Reduce
        r = self.reduce(x)
        # Split and transform
        outs = [branch(r) for branch in self.branches]
        # HFF: s1 = b2, s2 = s1 + b4, ...; the dilation-1 branch stays out of the chain
        if self.hff:
            for i in range(2, len(outs)):
                outs[i] = outs[i] + outs[i - 1]
        # Merge
        y = torch.cat(outs, 1)
        if self.use_residual:
            y = y + x
        return self.br(y)


def eesp_dilations(branches: int, r_lim: int) -> tuple[int, ...]:
    """Dilation of each EESP branch, as EdgeNets derives them.

    Branch i would have the receptive field 3 + 2i; any field above ``r_lim`` falls back to 3 (dilation 1);
    the fields are then sorted ascending and mapped to dilations (3 -> 1, 5 -> 2, 7 -> 3, ...).
    E.g. K = 4: r_lim >= 9 -> (1, 2, 3, 4); r_lim = 7 -> (1, 1, 2, 3); r_lim = 5 -> (1, 1, 1, 2).
    """
    fields = sorted(f if f <= r_lim else 3 for f in (3 + 2 * i for i in range(branches)))
    return tuple((f - 1) // 2 for f in fields)


@register(
    "eesp",
    kind="block",
    args=[
        Arg("branches", "int", 4, "parallel depthwise dilated branches K (also the 1x1 conv groups)",
            low=2, high=8),
        Arg("r_lim", "int", 7, "largest receptive field of a branch; wider ones fall back to 3x3",
            low=3, high=17),
    ],
    examples=[
        {"in_channels": 128, "out_channels": 128, "stride": 1},
        {"in_channels": 64, "out_channels": 128, "stride": 2, "r_lim": 11},
        {"in_channels": 32, "out_channels": 64, "stride": 1, "branches": 2, "r_lim": 3},
    ],
)
class EESP(nn.Module):
    """EESP unit of ESPNetv2 (Mehta et al., CVPR 2019).

    Stride 1 (official ``EESP(nIn, nOut, stride=1, k, r_lim)``):
    group 1x1 reduce conv (groups K) in -> d = out / K -> BN -> PReLU; K depthwise 3x3 convs with the
    dilations of :func:`eesp_dilations` (no BN, no bias); HFF over all branches (o1 = b1, ok = bk + o(k-1));
    concat -> BN -> PReLU -> group 1x1 conv (groups K) -> BN; + input when the shapes match; PReLU.

    Stride 2 (official ``DownSampler(nin, nout, k, r_lim)``): the strided EESP (depthwise convs with
    stride 2, no residual, no final PReLU) producing out - in channels, concatenated with a 3x3 stride-2
    average pool of the input, then PReLU over all out channels.

    Divergences from the official code:
    * The input-image reinforcement of ``DownSampler`` (the image avg-pooled to the output size ->
      CBR 3x3 (3->3) -> CB 1x1 (3->out), added before the PReLU) is left out: a block sees only its
      input feature map.  It holds 90 + 5*out parameters (e.g. 410 for out = 64).
    * The strided EESP inside the official ``DownSampler`` builds a PReLU(out - in) that its forward never
      uses; it is not built here, so the stride-2 count is the official one minus (out - in).
    Counts: EESP(128->128, K=4, r_lim=9 or 7) = 7,136 (official identical); stride 2, 32->64 (r_lim 13) =
    856 = official ``DownSampler(32, 64, reinf=False)`` 888 - 32 unused.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        *,
        branches: int,
        r_lim: int,
    ):
        super().__init__()
        _check_stride("eesp", stride)
        # stride 2: the EESP path makes only the channels the avg-pooled input does not provide
        width = out_channels if stride == 1 else out_channels - in_channels
        if width < branches or width % branches or in_channels % branches:
            need = "out_channels" if stride == 1 else "out_channels - in_channels (> 0)"
            raise ConfigError(
                f"block 'eesp': in_channels = {in_channels}, out_channels = {out_channels}, "
                f"stride = {stride}, branches = {branches}: in_channels and {need} must be positive "
                f"multiples of branches (group 1x1 convs with {branches} groups, equal-width "
                f"depthwise branches)"
            )
        d = width // branches
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.dilations = eesp_dilations(branches, r_lim)
        self.use_residual = stride == 1 and in_channels == out_channels

        # Reduce: group point-wise conv -> BN -> PReLU
        self.proj_1x1 = ConvBNAct(in_channels, d, 1, groups=branches, act="prelu")
        # Split + transform: depthwise dilated 3x3 convs (strided in the down-sampling unit)
        self.spp_dw = nn.ModuleList(
            nn.Conv2d(d, d, 3, stride, r, r, groups=d, bias=False) for r in self.dilations
        )
        # Merge: BN -> PReLU -> group point-wise conv -> BN
        self.br_after_cat = BNAct(width, act="prelu")
        self.conv_1x1_exp = ConvBNAct(width, width, 1, groups=branches, act="none")
        self.avg = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Reduce
        r = self.proj_1x1(x)
        # Split, transform and HFF over all branches
        outs = [self.spp_dw[0](r)]
        for conv in self.spp_dw[1:]:
            outs.append(conv(r) + outs[-1])
        # Merge
        y = self.conv_1x1_exp(self.br_after_cat(torch.cat(outs, 1)))
        if self.stride == 2:
            # DownSampler: concat with the avg-pooled input (official order: pooled first)
            y = torch.cat([self.avg(x), y], 1)
        elif self.use_residual:
            y = y + x
        return self.act(y)
