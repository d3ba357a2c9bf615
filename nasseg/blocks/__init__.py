"""Registered modules of this family; importing the package registers them."""

from nasseg.blocks import (
    basic,  # noqa: F401
    bisenet,  # noqa: F401
    cgnet,  # noqa: F401
    dwrseg,  # noqa: F401
    enet,  # noqa: F401
    erfnet,  # noqa: F401
    espnet,  # noqa: F401
    fasternet,  # noqa: F401
    fastscnn,  # noqa: F401
    ghostnet,  # noqa: F401
    lednet,  # noqa: F401
    mobilenet,  # noqa: F401
    mobilenetv3,  # noqa: F401
    regseg,  # noqa: F401
    resnet,  # noqa: F401
    seaformer,  # noqa: F401
    shufflenet,  # noqa: F401
    stdc,  # noqa: F401
)
