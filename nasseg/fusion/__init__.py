"""Registered modules of this family; importing the package registers them."""

from nasseg.fusion import (
    basic,  # noqa: F401
    bisenet,  # noqa: F401
    fastscnn,  # noqa: F401
    icnet,  # noqa: F401
    pidnet,  # noqa: F401
    ppliteseg,  # noqa: F401
    sfnet,  # noqa: F401
)
