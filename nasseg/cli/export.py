"""Temporary: replaced by the export package's CLI module at merge."""
from nasseg.export import _add_export_args as add_arguments  # noqa: F401
from nasseg.export import _run_export as run  # noqa: F401

HELP = "export a study's Pareto front (weights, ONNX, cards)"
