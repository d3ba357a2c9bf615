"""Latency that can be trusted, on the runtime users deploy with.

* :mod:`nasseg.latency.stats` -- the median's distribution-free interval (:func:`median_interval`) and the
  :class:`StoppingRule` that keeps timing until it is narrow;
* :mod:`nasseg.latency.affinity` -- :func:`pinned`: the measuring thread on cores of its own, restored after;
* :mod:`nasseg.latency.backends` -- :func:`measure_backend` on PyTorch eager, onnxruntime or TensorRT, and
  :func:`check_backend`, the one-line refusal of a combination this machine cannot run.

The record itself, :class:`nasseg.cost.LatencyRecord`, and the eager timing loop live in :mod:`nasseg.cost`;
this package imports it only inside functions (cost imports this package's statistics and pinning).
"""

from nasseg.latency.affinity import pinned
from nasseg.latency.backends import BACKENDS, PRECISIONS, check_backend, measure_backend, precision_name
from nasseg.latency.stats import StoppingRule, latency_stats, median_interval, median_ranks, relative_half_width

__all__ = ["BACKENDS", "PRECISIONS", "StoppingRule", "check_backend", "measure_backend", "median_interval",
           "median_ranks", "latency_stats", "pinned", "precision_name", "relative_half_width"]
