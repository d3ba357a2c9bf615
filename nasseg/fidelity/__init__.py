"""Fidelity studies: how well a cheap score ranks architectures the way longer training does.

A fidelity study trains K genomes (sampled from a space, stratified over its block choices, feasible under a
latency budget when one is given; or listed) at every rung of a ladder of step counts with S seeds, and scores
each genome with every zero-cost proxy.  Against the top rung it reports, for every rung and every proxy, Kendall
tau-b and Spearman's rho with 95 % bootstrap intervals, the seed noise of each rung, the classes still at IoU 0 and
the cost, and recommends the cheapest rung whose whole tau interval clears a target::

    from nasseg.fidelity import FidelityConfig, run_fidelity, find_fidelity
    res = run_fidelity(FidelityConfig(space="search_spaces/realtime.yaml", storage="sqlite:///runs/f.db",
                                      study="f", out="runs/f", genomes=12, rungs=(100, 300, 500), seeds=2))
    res["result"]["recommended_rung"]          # e.g. 300, or None

Every run is a trial of an Optuna study (through the search's driver and executors: dedup, resume after a kill,
Ray or in-process); the result is stored in the study's ``nasseg`` attribute with what defines it, so that a
search on the same space, dataset and recipe finds it (:func:`find_fidelity`, :func:`agreement_line`,
:func:`proxy_tau`).  Layout: :mod:`.config` (settings and metadata), :mod:`.select` (which genomes),
:mod:`.runner` (the driver and :func:`run_fidelity`), :mod:`.summary` (the numbers, pure),
:mod:`.render` (the files), :mod:`.lookup` (finding a stored result).  The statistics themselves are
:mod:`nasseg.fidelity_stats`; the command line is :mod:`nasseg.cli.fidelity`.
"""

from nasseg.fidelity.config import (
    DEFINING,
    MIN_GENOMES,
    MIN_LISTED,
    RUNG_FIELDS,
    FidelityConfig,
    load_genome_list,
    parse_proxies,
    parse_rungs,
    recipe_key,
    rung_recipe,
)
from nasseg.fidelity.lookup import agreement_line, find_fidelity, proxy_tau, rung_tau
from nasseg.fidelity.runner import FidelityDriver, finished_runs, run_fidelity, run_line
from nasseg.fidelity.select import select_genomes, stratified_sample
from nasseg.fidelity.summary import summarize

__all__ = [
    "DEFINING", "MIN_GENOMES", "MIN_LISTED", "RUNG_FIELDS", "FidelityConfig", "FidelityDriver", "agreement_line",
    "find_fidelity", "finished_runs", "load_genome_list", "parse_proxies", "parse_rungs", "proxy_tau", "recipe_key",
    "run_fidelity", "run_line", "rung_recipe", "rung_tau", "select_genomes", "stratified_sample", "summarize",
]
