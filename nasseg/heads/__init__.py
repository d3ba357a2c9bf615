"""Registered modules of this family; importing the package registers them."""

from nasseg.heads import (
    bisenet,  # noqa: F401
    boundary,  # noqa: F401
    chain,  # noqa: F401
    classifier,  # noqa: F401
    detail,  # noqa: F401
    dwrseg,  # noqa: F401
    enet,  # noqa: F401
    erfnet,  # noqa: F401
    espnet,  # noqa: F401
    fastscnn,  # noqa: F401
    lednet,  # noqa: F401
    regseg,  # noqa: F401
    seaformer,  # noqa: F401
    seg,  # noqa: F401
    topformer,  # noqa: F401
)
