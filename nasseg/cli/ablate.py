"""Temporary: replaced by the ablation package's CLI module at merge."""
from nasseg.ablation import _add_args as add_arguments  # noqa: F401
from nasseg.ablation import _run as run  # noqa: F401

HELP = "replay a paper's ablation table (studies/*.yaml)"
