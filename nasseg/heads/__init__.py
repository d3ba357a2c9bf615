"""Registered modules of this family; importing the package registers them."""

from nasseg.heads import seg  # noqa: F401
from nasseg.heads import detail  # noqa: F401
from nasseg.heads import boundary  # noqa: F401
from nasseg.heads import chain  # noqa: F401
from nasseg.heads import classifier  # noqa: F401
from nasseg.heads import regseg  # noqa: F401
from nasseg.heads import espnet  # noqa: F401
from nasseg.heads import lednet  # noqa: F401
from nasseg.heads import erfnet  # noqa: F401
from nasseg.heads import dwrseg  # noqa: F401
