"""Ablation replay: a paper's ablation table rebuilt as fixed genomes, run through the search's own
measure + proxy path, and printed beside the paper's own numbers.

A study file (``studies/*.yaml``) holds a base genome, a list of named variants each written as a
*change* to the base, the recipe per fidelity (``smoke`` | ``proxy`` | ``full``), the resolution the
paper states its costs at, the latency measurement, and the paper's table as data (mIoU, params, MACs,
field-of-view per row, with the source), plus the paper's claims in words where numbers do not exist.
:func:`load_study` validates the whole file (pydantic for the structure, unknown keys are errors; the
registry and :func:`nasseg.genome.from_dict` for every variant; every variant is built) and errors
name the file, the key path, the bad value and what is valid.

The change language
-------------------
A change is a mapping with up to four operations, applied to the base genome's dict form
(:func:`nasseg.genome.to_dict`) in this order:

``set: {PATH: VALUE}``
    Replace the value at ``PATH``.  A path is dot-separated keys and list indices into the genome
    dict, e.g. ``decoder.kind``, ``stages.2.args.num_blocks``, ``stages.4.width``, ``heads.extra``,
    ``decoder`` (a whole sub-tree; missing fields take their defaults).  Indices may be negative
    (``stages.-1``).  Every segment must exist.  Setting a module's name (a stage's ``block``, the
    decoder's ``kind``, a ``name``) to a different one clears that module's ``args`` (and a stage's
    ``block_args``) unless the same ``set`` gives them: the new module starts from its own defaults.
``per_block: {STAGE_PATH: {ARG: VALUES}}``
    Per-block arguments of one stage (its ``block_args``), ``VALUES`` one per block, either a YAML
    list or the genome string's per-block notation, e.g. ``"[1]*2,[1,2],[1,4]*4,[1,14]*6"``.  The
    stage's ``depth`` becomes the number of values.
``remove: [PATH, ...]``
    Delete list elements or keys (a removed key takes its default, e.g. ``decoder.context`` -> no
    context).  All paths refer to the genome before the removal; list elements go from the end first.
``append: {LIST_PATH: [ITEM, ...]}``
    Append items to a list, e.g. an extra head to ``heads.extra``.

The result must be a valid genome: it is resolved with :func:`nasseg.genome.from_dict`, so a wrong
path, name or value errors at load, naming the variant and the key.

Running
-------
:func:`ablate` runs every variant x seed through :class:`nasseg.search.Driver` (subclassed:
:class:`AblationDriver` proposes the planned runs instead of sampling a space) and the search's
executors (:func:`nasseg.search.run_local` / :func:`nasseg.search.run_ray`, both calling
:func:`nasseg.search.run_job`).  Results live in an Optuna study named ``ablation-<name>-<fidelity>``
in the given storage (default ``sqlite:///runs/ablations.db``); a run is identified by
(genome_id, seed, recipe, dataset), so running the command again trains only what is missing and
re-reports.  Costs (params and MACs at the paper's resolution and class count, latency at the stated
device / resolution, the field-of-view, optional scaling over several resolutions with peak memory)
are measured once per variant, before any proxy trains, and kept in the study's user attributes.

Proxy weights are not written unless asked (``keep_weights`` / ``--keep-weights``): an ablation reads the mIoU.

The verdict rule
----------------
See :data:`VERDICT_RULE`: Delta = variant mean - reference mean of the per-seed proxy mIoU;
SE = sqrt(s_v^2/n_v + s_r^2/n_r) with s the sample standard deviation over seeds.  ``|Delta| < 2 SE``
or fewer than two seeds on either side is *inconclusive* (never agreement); otherwise the sign of
Delta *agrees* with the paper's direction (the sign of the paper's own Delta, or the direction its
text states) or *contradicts* it.  An inconclusive verdict says what would resolve it, e.g.
``inconclusive (needs >= 7 seeds)``.

Power
-----
See :data:`POWER_RULE` (normal approximation of :mod:`nasseg.fidelity_stats`, two-sided 5 %, power 80 %,
z = z_0.975 + z_0.8): every variant reports its seed sd, the minimum detectable difference to the reference
at its seeds, MDD = z sqrt(s_v^2/n_v + s_r^2/n_r), and, where the paper gives its Delta, the seeds per arm
that Delta needs, the least n >= 2 with z s_p sqrt(2/n) <= |Delta| (s_p the pooled seed sd of the variant
and the reference).  ``--fidelity auto --max-hours H`` (:mod:`~nasseg.ablation.plan`) runs a pilot and
chooses seeds and steps that resolve the paper's largest effect within H hours, or says up front that none can.

Layout
------
One concern per module, imported one way (schema <- stats <- plan <- render <- runner):
:mod:`~nasseg.ablation.schema` (the study file, the change language, loading),
:mod:`~nasseg.ablation.stats` (rows, verdicts, power and claim checks as pure functions over records),
:mod:`~nasseg.ablation.plan` (``--fidelity auto``: the pilot's numbers and the plan, pure functions),
:mod:`~nasseg.ablation.render` (CSV, Markdown and plot files), :mod:`~nasseg.ablation.runner` (costs,
the driver, :func:`ablate`).  The ``nasseg ablate`` verb is :mod:`nasseg.cli.ablate`.
"""

from nasseg.ablation.plan import Pilot, Plan, largest_effect, measure_pilot, plan_replay
from nasseg.ablation.render import plot_report, render_markdown, write_report
from nasseg.ablation.runner import (
    AblationConfig,
    AblationDriver,
    ablate,
    field_of_view,
    measure_variant,
    peak_memory_bytes,
)
from nasseg.ablation.schema import (
    FIDELITIES,
    ChangeSpec,
    Fidelity,
    Study,
    StudyFile,
    Variant,
    apply_change,
    load_study,
    parse_paper_number,
    parse_per_block,
    parse_study,
    stated_match,
    study_files,
)
from nasseg.ablation.stats import (
    POWER_RULE,
    VERDICT_RULE,
    VERDICTS,
    ClaimResult,
    Row,
    check_claims,
    mdd,
    pooled_sd,
    seeds_for_effect,
    summarize,
    verdict,
)

__all__ = [
    "FIDELITIES", "POWER_RULE", "VERDICTS", "VERDICT_RULE", "AblationConfig", "AblationDriver", "ChangeSpec",
    "ClaimResult", "Fidelity", "Pilot", "Plan", "Row", "Study", "StudyFile", "Variant", "ablate", "apply_change",
    "check_claims", "field_of_view", "largest_effect", "load_study", "mdd", "measure_pilot", "measure_variant",
    "parse_paper_number", "parse_per_block", "parse_study", "peak_memory_bytes", "plan_replay", "plot_report",
    "pooled_sd", "render_markdown", "seeds_for_effect", "stated_match", "study_files", "summarize", "verdict",
    "write_report",
]
