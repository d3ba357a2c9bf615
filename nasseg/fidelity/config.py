"""What defines a fidelity study: its settings (:class:`FidelityConfig`, checked by :meth:`FidelityConfig.validate`
before anything is opened), the recipe of each rung (:func:`rung_recipe`), the genomes a list names
(:func:`load_genome_list`) and the study metadata a resumed study must match (:func:`study_meta`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasseg import __version__
from nasseg.errors import ConfigError, NassegError
from nasseg.search.config import LatencySpec, check_executor, file_sha
from nasseg.study import check_url

#: fewest genomes ``--genomes`` may sample: Kendall's tau over 3 takes only 4 values, and its bootstrap
#: interval spans [-1, 1]; a rank statistic over fewer than 4 is meaningless
MIN_GENOMES = 4
#: fewest distinct genomes a ``--genomes-from`` list must name (the fewest a rank statistic is defined over)
MIN_LISTED = 3
#: genomes sampled when neither ``genomes`` nor ``genomes_from`` is given
DEFAULT_GENOMES = 12
#: recipe fields that follow the number of steps and so are set per rung (as ``nasseg search`` sets them);
#: two recipes "equal apart from steps" are equal without these
RUNG_FIELDS = ("steps", "warmup_steps", "eval_every")
#: the study metadata a resumed fidelity study must match (what :func:`nasseg.fidelity.find_fidelity` keys on)
DEFINING = ("space_sha", "dataset", "recipe")


@dataclass(frozen=True)
class FidelityConfig:
    """Settings of one fidelity study (see :func:`nasseg.fidelity.run_fidelity`).

    ``genomes`` (K, sampled from ``space``; default :data:`DEFAULT_GENOMES`) or ``genomes_from`` (a file with one
    genome string or preset name per line, or a list of such strings); ``rungs``: strictly increasing step
    counts, the last one the reference every other score is ranked against; ``seeds``: training seeds 0 .. S-1
    per (genome, rung); ``recipe``: the base recipe, whose resolution and batch size are replaced by
    ``proxy_resolution`` and ``proxy_batch`` and whose :data:`RUNG_FIELDS` are set per rung (None: the default
    recipe, AMP only when proxies train on GPUs); ``proxies``: zero-cost proxies to score (None: every one of
    :data:`nasseg.zero_cost.PROXIES`), at the proxy resolution on a synthetic batch of ``max(2, proxy_batch)``
    images; ``seed``: of the genome sample, of the zero-cost proxies and of the bootstrap; ``n_boot``: resamples of
    each bootstrap interval.
    """

    space: str
    storage: str
    study: str
    out: str
    genomes: int | None = None  # None: DEFAULT_GENOMES (when genomes_from is None too)
    genomes_from: str | Sequence[str] | None = None
    rungs: tuple[int, ...] = (100, 300, 500)
    seeds: int = 2
    proxy_resolution: tuple[int, int] = (128, 256)
    proxy_batch: int = 8
    recipe: Any = None  # nasseg.train.Recipe
    dataset: str = "synthetic"
    latency_budget_ms: float | None = None
    latency: LatencySpec = field(default_factory=LatencySpec)
    target_tau: float = 0.6
    proxies: tuple[str, ...] | None = None
    executor: str = "ray"
    seed: int = 0
    ray_address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    concurrency: int | None = None
    artifacts: str | None = None
    n_boot: int = 2000

    def num_genomes(self) -> int | None:
        """K, the genomes to sample (None with a ``genomes_from`` list)."""
        if self.genomes_from is not None:
            return None
        return DEFAULT_GENOMES if self.genomes is None else self.genomes

    def proxy_names(self) -> tuple[str, ...]:
        from nasseg.zero_cost import PROXIES

        return tuple(PROXIES) if self.proxies is None else tuple(self.proxies)

    def base_recipe(self) -> Any:
        """The recipe every rung shares (its steps are the top rung's)."""
        from nasseg.train import Recipe

        base = self.recipe if self.recipe is not None else Recipe(amp=self.gpus_per_trial > 0)
        return rung_recipe(dataclasses.replace(base, resolution=tuple(self.proxy_resolution),
                                               batch_size=self.proxy_batch, steps=max(self.rungs), warmup_steps=0),
                           max(self.rungs))

    def rung_recipes(self) -> dict[int, Any]:
        base = self.base_recipe()
        return {r: rung_recipe(base, r) for r in self.rungs}

    def validate(self) -> None:
        """Every setting, before anything is read or opened; ConfigError naming the option and what is valid."""
        if self.genomes is not None and self.genomes_from is not None:
            raise ConfigError("--genomes and --genomes-from exclude each other; valid: one of them")
        k = self.num_genomes()
        if self.genomes_from is None:
            if isinstance(k, bool) or not isinstance(k, int) or k < MIN_GENOMES:
                raise ConfigError(f"--genomes = {k!r} is too few; valid: an integer >= {MIN_GENOMES} (a rank "
                                  f"statistic over fewer genomes is meaningless)")
        check_rungs(self.rungs)
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ConfigError(f"--seeds = {self.seeds!r} is not allowed; valid: an integer >= 1 (2 or more to see the "
                              "seed noise)")
        res = tuple(self.proxy_resolution)
        if len(res) != 2 or not all(isinstance(v, int) and v >= 16 for v in res):
            shown = "x".join(map(str, res)) if all(isinstance(v, int) for v in res) else repr(self.proxy_resolution)
            raise ConfigError(f"--proxy-resolution = {shown} is not allowed; valid: HxW with both >= 16, e.g. 128x256")
        if isinstance(self.proxy_batch, bool) or not isinstance(self.proxy_batch, int) or self.proxy_batch < 2:
            raise ConfigError(f"--proxy-batch = {self.proxy_batch!r} is not allowed; valid: an integer >= 2 (batch "
                              "norm and the zero-cost proxies need two images or more)")
        if isinstance(self.target_tau, bool) or not isinstance(self.target_tau, (int, float)) \
                or not -1.0 <= float(self.target_tau) <= 1.0:
            raise ConfigError(f"--target-tau = {self.target_tau!r} is not allowed; valid: a number in [-1, 1]")
        check_proxies(self.proxy_names())
        check_executor(self.executor, self.cpus_per_trial, self.gpus_per_trial, self.concurrency)
        if self.latency_budget_ms is not None and not (isinstance(self.latency_budget_ms, (int, float))
                                                       and math.isfinite(self.latency_budget_ms)
                                                       and self.latency_budget_ms > 0):
            raise ConfigError(f"--latency-budget-ms = {self.latency_budget_ms!r} must be a positive number of "
                              "milliseconds")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"--seed = {self.seed!r} is not allowed; valid: an integer >= 0")
        if isinstance(self.n_boot, bool) or not isinstance(self.n_boot, int) or self.n_boot < 100:
            raise ConfigError(f"--bootstrap = {self.n_boot!r} is not allowed; valid: an integer >= 100 (resamples "
                              "of each interval)")
        check_url(self.storage)
        if not self.study or not isinstance(self.study, str):
            raise ConfigError("--study needs a name")
        out = Path(self.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out = {self.out!r} is a file; valid: a folder (created if missing)")
        if not out.resolve().parent.is_dir():
            raise ConfigError(f"--out = {self.out!r}: its parent folder {out.resolve().parent} does not exist; valid: "
                              "a folder whose parent exists")
        self.base_recipe()  # ConfigError naming a bad recipe field


def check_rungs(rungs: Sequence[int]) -> tuple[int, ...]:
    if isinstance(rungs, (str, bytes)) or not isinstance(rungs, Sequence) or not rungs:
        raise ConfigError(f"--rungs = {rungs!r} is not allowed; valid: strictly increasing positive step counts, "
                          "e.g. 100,300,500")
    for r in rungs:
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise ConfigError(f"--rungs: {r!r} is not a positive integer; valid: strictly increasing positive step "
                              "counts, e.g. 100,300,500")
    for a, b in zip(rungs, rungs[1:]):
        if b <= a:
            raise ConfigError(f"--rungs = {','.join(map(str, rungs))} is not strictly increasing ({b} after {a}); "
                              "valid: strictly increasing step counts, the last one the reference, e.g. 100,300,500")
    return tuple(rungs)


def parse_rungs(text: str) -> tuple[int, ...]:
    """``"100,300,500"`` -> (100, 300, 500); ConfigError naming the bad token."""
    out = []
    for tok in str(text).split(","):
        t = tok.strip()
        if not t.isdigit() or int(t) < 1:
            raise ConfigError(f"--rungs = {text!r}: {t!r} is not a positive integer; valid: strictly increasing "
                              "positive step counts, e.g. 100,300,500")
        out.append(int(t))
    return check_rungs(out)


def check_proxies(names: Sequence[str]) -> tuple[str, ...]:
    import difflib

    from nasseg.zero_cost import PROXIES

    for n in names:
        if n not in PROXIES:
            close = difflib.get_close_matches(str(n), list(PROXIES), n=2)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(f"--proxies: unknown zero-cost proxy {n!r}; {hint}valid: {', '.join(PROXIES)} (or none)")
    if len(set(names)) != len(names):
        raise ConfigError(f"--proxies = {','.join(names)} names a proxy twice; valid: each once")
    return tuple(names)


def parse_proxies(text: str) -> tuple[str, ...]:
    """``"synflow,naswot"`` -> ('synflow', 'naswot'); ``"none"`` or ``""`` -> () (no zero-cost proxy)."""
    t = str(text).strip()
    if t.lower() in ("", "none"):
        return ()
    return check_proxies(tuple(s.strip() for s in t.split(",")))


def rung_recipe(base: Any, steps: int) -> Any:
    """``base`` trained for ``steps``: warm-up ``min(steps - 1, steps // 20)`` (as ``nasseg search`` sets it) and
    one evaluation at the end."""
    return dataclasses.replace(base, steps=int(steps), warmup_steps=min(int(steps) - 1, int(steps) // 20),
                               eval_every=0)


def recipe_key(recipe: Any) -> dict[str, Any]:
    """A recipe (a Recipe or its dict) without the fields a rung sets: what "the same recipe apart from steps"
    compares."""
    d = recipe.to_dict() if hasattr(recipe, "to_dict") else dict(recipe)
    return {k: v for k, v in sorted(d.items()) if k not in RUNG_FIELDS}


# ------------------------------------------------------------------------------------------------ genomes
def load_genome_list(source: str | Sequence[str]) -> list[tuple[str, Any]]:
    """(where, Genome) for each distinct genome a list names, in order: a path of a file with one genome string
    (``v1|...``), JSON genome or preset name per line (blank lines and ``#`` comments skipped), or a sequence of
    such strings.  ConfigError naming the line for one that does not parse, or when fewer than
    :data:`MIN_LISTED` distinct genomes remain."""
    from nasseg import genome as G
    from nasseg import presets

    if isinstance(source, str):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"--genomes-from = {source!r}: cannot read it ({e.strerror}); valid: a text file with "
                              "one genome string or preset name per line") from None
        except UnicodeDecodeError:
            raise ConfigError(f"--genomes-from = {source!r} is not UTF-8 text; valid: a text file with one genome "
                              "string or preset name per line") from None
        lines = [(f"{source}:{i}", line) for i, line in enumerate(text.splitlines(), 1)]
    else:
        lines = [(f"--genomes-from[{i}]", line) for i, line in enumerate(source)]
    out: list[tuple[str, Any]] = []
    seen: set[str] = set()
    for where, line in lines:
        t = str(line).strip()
        if not t.startswith("{"):  # a JSON genome is one line; elsewhere '#' starts a comment
            t = t.split("#", 1)[0].strip()
        if not t:
            continue
        try:
            g = G.load(t) if (t.startswith("v") and "|" in t) or t.startswith("{") else presets.get(t).genome
        except NassegError as e:
            msg = " ".join(str(e).split())
            raise ConfigError(f"{where}: {t[:80]!r} is not a genome: {msg}; valid: a genome string (v1|...), a "
                              "JSON genome or a preset name (nasseg presets)") from None
        gid = G.genome_id(g)
        if gid not in seen:
            seen.add(gid)
            out.append((where, g))
    if len(out) < MIN_LISTED:
        raise ConfigError(f"--genomes-from lists {len(out)} distinct genome(s); valid: at least {MIN_LISTED} (a rank "
                          "statistic over fewer is meaningless)")
    return out


# ----------------------------------------------------------------------------------------------- metadata
def selection(cfg: FidelityConfig, space_sha: str, num_classes: int, listed: Sequence[str] | None) -> dict[str, Any]:
    """What decides which genomes a study holds: the same selection on a resumed study means the same genomes
    (kept from the study, not sampled and measured again)."""
    return {"space_sha": space_sha, "genomes": cfg.num_genomes(), "genomes_from": list(listed) if listed else None,
            "seed": cfg.seed, "num_classes": num_classes, "latency_budget_ms": cfg.latency_budget_ms,
            "latency": cfg.latency.to_dict() if cfg.latency_budget_ms is not None else None}


def study_meta(cfg: FidelityConfig, num_classes: int, genome_ids: Sequence[str],
               listed: Sequence[str] | None) -> dict[str, Any]:
    """The study's :data:`nasseg.study.META_KEY` record (without the result, added when it is computed)."""
    sha = file_sha(cfg.space)
    return {
        "kind": "fidelity", "space": str(cfg.space), "space_sha": sha, "dataset": cfg.dataset,
        "num_classes": num_classes, "recipe": recipe_key(cfg.base_recipe()), "rung_fields": list(RUNG_FIELDS),
        "rungs": list(cfg.rungs), "seeds": list(range(cfg.seeds)), "genome_ids": list(genome_ids),
        "selection": selection(cfg, sha, num_classes, listed), "latency_budget_ms": cfg.latency_budget_ms,
        "latency": cfg.latency.to_dict(), "proxies": list(cfg.proxy_names()),
        "proxy_settings": proxy_settings(cfg, num_classes), "target_tau": float(cfg.target_tau),
        "nasseg_version": __version__,
    }


def proxy_settings(cfg: FidelityConfig, num_classes: int) -> dict[str, Any]:
    """What a zero-cost score depends on besides the genome (scores are stored under a hash of this)."""
    return {"resolution": list(cfg.proxy_resolution), "batch_size": max(2, cfg.proxy_batch), "seed": cfg.seed,
            "num_classes": num_classes, "device": "cpu"}
