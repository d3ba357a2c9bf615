"""Registered modules of this family; importing the package registers them."""

from nasseg.context import (
    aspp,  # noqa: F401
    attention,  # noqa: F401
    basic,  # noqa: F401
    bisenet,  # noqa: F401
    ddrnet,  # noqa: F401
    fastscnn,  # noqa: F401
    pidnet,  # noqa: F401
    ppliteseg,  # noqa: F401
    ppm,  # noqa: F401
)
