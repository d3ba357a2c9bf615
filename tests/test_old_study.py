"""A study database written before the search/ablation/export modules were split (nasseg 0.1.0, commit
c87299b) still opens, reads, reports and resumes.  How the fixture was made: tests/fixtures/README.md."""

import hashlib
import shutil
from pathlib import Path

import optuna

from nasseg import genome as G
from nasseg import search as S
from nasseg import study as St
from nasseg.cli import main
from nasseg.train import Recipe

FIXTURE = Path(__file__).parent / "fixtures" / "studies"
DB = FIXTURE / "pre_split.db"
SPACE = FIXTURE / "pre_split_space.yaml"
NAME = "pre-split"
IDS = ["786d8c71d007", "6294b8e33d5f", "291bf0cfeac5", "7049294a2a8a"]  # as the old code stored them


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_old_study_opens_read_only_and_its_records_read_as_before():
    before = _sha(DB)
    study = St.load_study(f"sqlite:///{DB}", NAME, readonly=True)
    df = S.trials_frame(study)
    assert list(df.status) == ["trained"] * 4 and list(df.genome_id) == IDS
    assert df.miou.notna().all() and (df.latency_ms > 0).all()
    for t in study.trials:  # stored genomes parse and keep their ids
        g = G.from_json(t.user_attrs["genome_json"])
        assert G.genome_id(g) == t.user_attrs["genome_id"]
        assert G.to_string(g) == t.user_attrs["genome"]
    assert study.user_attrs[S.META_KEY]["kind"] == "search"
    assert _sha(DB) == before  # reading never writes


def test_old_study_status_and_front(capsys):
    from nasseg.export import pareto_front, trial_record

    before = _sha(DB)
    assert main(["status", "--storage", f"sqlite:///{DB}", "--study", NAME]) == 0
    out = capsys.readouterr().out
    assert all(i in out for i in IDS)
    study = St.load_study(f"sqlite:///{DB}", NAME)
    front = pareto_front([trial_record(t) for t in study.trials],
                         budget_ms=study.user_attrs[S.META_KEY]["latency_budget_ms"])
    assert front and {m.genome_id for m in front} <= set(IDS)
    assert _sha(DB) == before


def test_old_study_resumes_with_its_own_settings(tmp_path):
    db = tmp_path / "study.db"
    shutil.copy(DB, db)
    meta = St.load_study(f"sqlite:///{db}", NAME).user_attrs[S.META_KEY]
    lat = dict(meta["latency"], resolution=tuple(meta["latency"]["resolution"]))
    cfg = S.SearchConfig(space=str(SPACE), storage=f"sqlite:///{db}", study=NAME, trials=5,
                         latency_budget_ms=meta["latency_budget_ms"], latency=S.LatencySpec(**lat),
                         mode=meta["mode"], dataset=meta["dataset"], recipe=Recipe.from_dict(meta["recipe"]),
                         executor="local", progress=False, artifacts=str(tmp_path / "art"))
    summary = S.search(cfg, log=lambda s: None)
    assert summary["finished"] == 5
    study = St.load_study(f"sqlite:///{db}", NAME)
    assert [t.user_attrs["genome_id"] for t in study.trials[:4]] == IDS
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials[:4])
