"""Registered modules of this family; importing the package registers them."""

from nasseg.fusion import basic  # noqa: F401
from nasseg.fusion import bisenet  # noqa: F401
from nasseg.fusion import ppliteseg  # noqa: F401
from nasseg.fusion import sfnet  # noqa: F401
from nasseg.fusion import icnet  # noqa: F401
from nasseg.fusion import pidnet  # noqa: F401
