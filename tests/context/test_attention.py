import math

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from nasseg import registry
from nasseg.context.attention import ISA, DenseSelfAttention, SelfAttentionBlock

MATMUL_OPS = ("matmul", "bmm", "einsum")


def _params(m):
    return sum(p.numel() for p in m.parameters())


def _attention_shapes(module, x):
    """Run ``module`` and record the shape of every attention matrix (softmax output)."""
    sizes = []
    hooks = [m.softmax.register_forward_hook(lambda mod, inp, out: sizes.append(tuple(out.shape)))
             for m in module.modules() if isinstance(m, SelfAttentionBlock)]
    with torch.no_grad():
        module(x)
    for h in hooks:
        h.remove()
    return sizes


def _matmul_macs(module, x):
    flops = FlopCountAnalysis(module, (x,)).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    return sum(by_op.get(op, 0) for op in MATMUL_OPS)


def test_same_output_shape_on_sides_not_multiple_of_down_factor():
    x = torch.randn(2, 32, 37, 61)
    isa = registry.get("isa", kind="context").create(32, 24).train()
    dense = registry.get("nonlocal", kind="context").create(32, 24).train()
    assert isa(x).shape == dense(x).shape == (2, 24, 37, 61)


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (8, 8), (37, 61)])
def test_padding_and_interlacing_round_trip(size):
    # With identity attention and projection the module must give back cat[x, x]: padding, the two
    # regroupings and the crop cancel exactly.
    m = ISA(4, 4, down_factor=(8, 8), key_channels=0)
    m.long_range_sa, m.short_range_sa, m.project = nn.Identity(), nn.Identity(), nn.Identity()
    x = torch.randn(2, 4, *size)
    torch.testing.assert_close(m(x), torch.cat([x, x], 1), rtol=0, atol=0)


def test_long_range_groups_share_in_block_position_short_range_groups_are_blocks():
    m = ISA(3, 3, down_factor=(4, 8), key_channels=0).eval()
    seen = {}
    m.long_range_sa.register_forward_pre_hook(lambda mod, inp: seen.__setitem__("long", inp[0]))
    m.short_range_sa.register_forward_pre_hook(lambda mod, inp: seen.__setitem__("short", inp[0]))
    x = torch.randn(1, 3, 8, 16)  # 2 x 2 blocks of 4 x 8 pixels
    with torch.no_grad():
        m(x)
    long = seen["long"]
    assert long.shape == (4 * 8, 3, 2, 2)  # one group per in-block position, holding one pixel per block
    torch.testing.assert_close(long[1 * 8 + 5], x[0, :, 1::4, 5::8])
    assert seen["short"].shape == (2 * 2, 3, 4, 8)  # one group per block, holding its 4 x 8 pixels


def test_key_channels_default_is_half_of_input():
    m = registry.get("isa", kind="context").create(512, 512)
    assert m.long_range_sa.key_project[0].conv.out_channels == 256
    assert m.long_range_sa.value_project.out_channels == 512
    # official ISANet ISA_Module(512, key 256, value 512, out 512, [[8, 8]]) (openseg.pytorch), per
    # attention block: key and query 2 * (512*256 + 2*256 + 256*256 + 2*256) = 395,264, value 512*512 =
    # 262,144, output 512*512 + 2*512 = 263,168; 920,576 in all...
    attention = 2 * (512 * 256 + 2 * 256 + 256 * 256 + 2 * 256) + 512 * 512 + (512 * 512 + 2 * 512)
    assert _params(m.long_range_sa) == attention == 920_576
    # ...two blocks plus the 1x1 conv 1024->512 + BN: 2,366,464
    assert _params(m) == 2 * attention + 1024 * 512 + 2 * 512 == 2_366_464
    dense = registry.get("nonlocal", kind="context").create(512, 512)
    assert _params(dense) == attention + 1024 * 512 + 2 * 512


@pytest.mark.slow  # dense attention at 64x128 materialises a 8192 x 8192 matrix (twice: hooks, fvcore trace)
def test_isa_attention_memory_and_macs_vs_dense_at_64x128():
    # 64 x 128 features = 8192 positions, 8 x 8 blocks -> 128 blocks of 64 pixels.
    h, w, dh, dw = 64, 128, 8, 8
    n_pos, block, groups = h * w, dh * dw, (h // dh) * (w // dw)
    dense_elements = n_pos ** 2  # 67,108,864
    long_elements = block * groups ** 2  # 64 groups of 128 positions: 1,048,576
    short_elements = groups * block ** 2  # 128 groups of 64 positions: 524,288
    isa_elements = long_elements + short_elements  # 1,572,864
    assert (dense_elements, long_elements, short_elements) == (67_108_864, 1_048_576, 524_288)
    factor = dense_elements / isa_elements
    assert factor == pytest.approx(128 / 3)  # = N / (groups + block) = 8192 / 192, about 42.7x less

    cin, key = 8, 4
    isa = ISA(cin, cin, down_factor=(dh, dw), key_channels=key).eval()
    dense = DenseSelfAttention(cin, cin, key_channels=key).eval()
    x = torch.randn(1, cin, h, w)

    # measured: the shapes of the attention matrices that the softmax actually produced
    isa_shapes, dense_shapes = _attention_shapes(isa, x), _attention_shapes(dense, x)
    assert isa_shapes == [(block, groups, groups), (groups, block, block)]
    assert dense_shapes == [(1, n_pos, n_pos)]
    measured_isa = sum(math.prod(s) for s in isa_shapes)
    measured_dense = sum(math.prod(s) for s in dense_shapes)
    assert (measured_isa, measured_dense) == (isa_elements, dense_elements)
    assert measured_dense / measured_isa == pytest.approx(factor)

    # MACs of the attention products (q k^T and attention @ v) as counted by fvcore
    per_element = key + cin  # key width for q k^T, value width (= in) for attention @ v
    isa_macs, dense_macs = _matmul_macs(isa, x), _matmul_macs(dense, x)
    assert isa_macs == isa_elements * per_element == 18_874_368
    assert dense_macs == dense_elements * per_element == 805_306_368
    assert dense_macs / isa_macs == pytest.approx(factor)
