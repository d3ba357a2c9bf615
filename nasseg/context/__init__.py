"""Registered modules of this family; importing the package registers them."""

from nasseg.context import basic  # noqa: F401
from nasseg.context import ppm  # noqa: F401
from nasseg.context import ppliteseg  # noqa: F401
from nasseg.context import ddrnet  # noqa: F401
from nasseg.context import pidnet  # noqa: F401
from nasseg.context import aspp  # noqa: F401
from nasseg.context import attention  # noqa: F401
