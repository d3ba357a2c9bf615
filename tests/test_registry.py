import pytest
from torch import nn

from nasseg import registry
from nasseg.errors import BlockArgumentError, UnknownBlockError
from nasseg.registry import Arg


@pytest.fixture
def toy():
    @registry.register("toy_block_for_tests", kind="block", args=[
        Arg("dilations", "ints", (1, 2), low=1, high=32),
        Arg("ratio", "float", 0.25, low=0.0, high=1.0, low_open=True),
        Arg("act", "str", "relu", choices=("relu", "gelu")),
        Arg("use_se", "bool", True),
        Arg("depth", "int", 2, low=1, high=5),
    ])
    class Toy(nn.Module):
        """A toy block used only by the registry tests; it does nothing at all worth naming."""

        def __init__(self, in_channels, out_channels, stride=1, *, dilations, ratio, act, use_se, depth):
            super().__init__()
            self.out_channels, self.stride = out_channels, stride
            self.kw = dict(dilations=dilations, ratio=ratio, act=act, use_se=use_se, depth=depth)

    yield registry.get("toy_block_for_tests")
    registry.unregister("toy_block_for_tests")


def test_resolve_fills_defaults_and_canonicalises(toy):
    r = toy.resolve({"dilations": [1, 4], "ratio": 1})
    assert r == {"dilations": (1, 4), "ratio": 1.0, "act": "relu", "use_se": True, "depth": 2}
    m = toy.create(8, 16, 2, dilations=[1, 14])
    assert m.kw["dilations"] == (1, 14) and m.out_channels == 16


@pytest.mark.parametrize("given,needle", [
    ({"ratio": 0}, "(0, 1]"),
    ({"ratio": 1.5}, "(0, 1]"),
    ({"dilations": [0]}, "every element"),
    ({"dilations": "12"}, "list of integers"),
    ({"act": "tanh"}, "'relu', 'gelu'"),
    ({"use_se": 1}, "true or false"),
    ({"depth": 2.0}, "an integer"),
    ({"depth": True}, "an integer"),
])
def test_bad_values_name_block_argument_and_allowed(toy, given, needle):
    with pytest.raises(BlockArgumentError) as e:
        toy.resolve(given)
    msg = str(e.value)
    assert "toy_block_for_tests" in msg and next(iter(given)) in msg and needle in msg


def test_unknown_argument_suggests_close_match(toy):
    with pytest.raises(BlockArgumentError, match="did you mean dilations"):
        toy.resolve({"dilation": (1,)})


def test_duplicate_name_raises(toy):
    with pytest.raises(ValueError, match="already taken"):
        registry.register("toy_block_for_tests", kind="block")(type("X", (), {}))


def test_unknown_name_lists_close_matches_and_known_names(toy):
    with pytest.raises(UnknownBlockError) as e:
        registry.get("toy_blok_for_tests")
    msg = str(e.value)
    assert "did you mean 'toy_block_for_tests'" in msg and "known modules:" in msg


def test_wrong_kind_is_unknown(toy):
    with pytest.raises(UnknownBlockError, match="it is a block, not a fusion"):
        registry.get("toy_block_for_tests", kind="fusion")


def test_invalid_default_is_rejected_at_registration():
    with pytest.raises(BlockArgumentError):
        registry.register("bad_default_for_tests", kind="block", args=[Arg("k", "int", 0, low=1)])
    assert "bad_default_for_tests" not in registry.names()
