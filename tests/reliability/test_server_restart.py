"""The PostgreSQL server of a study restarts under a running search (``pg_ctl restart -m fast``, ``-m immediate``,
and a stop with the server down for seconds): the search reconnects, loses no finished trial, trains nothing twice
and reaches --trials.  Down for longer than the retry window: one line, exit 2, and the same command resumes once
the server is back.  The tests own their server (they restart it); nothing is mocked.

Run with ``-s`` to see the figures (faults injected, trials lost, recovery time) each test measures."""

from __future__ import annotations

import subprocess
import threading
import time

import optuna
import pytest

from nasseg import search as S
from nasseg import study as St
from tests.reliability import servers
from tests.reliability.common import counted, env, finished, search_cmd

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")]

FAST = ("--latency-tolerance", "0")  # a fixed 30 timed runs per candidate: what is tested here is storage


@pytest.fixture(scope="module")
def server():
    """A PostgreSQL server of this module's own (not the shared one: these tests stop and restart it), durable:
    with ``synchronous_commit=off`` an immediate shutdown may drop commits the server already acknowledged."""
    if servers.postgres_bin() is None:
        pytest.skip("PostgreSQL binaries are absent (apt-get install postgresql): the restart tests need a server "
                    "of their own")
    srv = servers.PostgresServer(durable=True)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def db_url(server):
    url, name = servers.fresh_database(server.url)
    yield url
    servers.drop_database(server.url, name)


class Search:
    """The tiny search as a child process, its stderr collected line by line as it comes."""

    def __init__(self, cmd: list[str], **env_kw: str):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=env(**env_kw), stdin=subprocess.DEVNULL)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, timeout: float = 600) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return rc

    def stderr(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.running():
            self.proc.kill()
            self.proc.wait()


def told(url: str, study: str) -> int | None:
    """Finished trials of ``study`` (None while the server does not answer)."""
    try:
        con = servers._connect(url)
    except Exception:  # noqa: BLE001 - down or restarting
        return None
    try:
        with con.cursor() as cur:
            cur.execute("SELECT count(*) FROM trials t JOIN studies s ON s.study_id = t.study_id "
                        "WHERE s.study_name = %s AND t.state NOT IN ('RUNNING', 'WAITING')", (study,))
            return cur.fetchone()[0]
    except Exception:  # noqa: BLE001 - tables not created yet
        return None
    finally:
        con.close()


def wait_for(cond, what: str, search: Search, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not cond():
        assert search.running(), f"the search ended while waiting for {what}:\n{search.stderr()[-3000:]}"
        assert time.time() < deadline, f"timed out waiting for {what}:\n{search.stderr()[-3000:]}"
        time.sleep(0.1)


def server_started(url: str) -> float:
    """When the server's postmaster started (epoch seconds): the moment it came back."""
    con = servers._connect(url)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT extract(epoch FROM pg_postmaster_start_time())")
            return float(cur.fetchone()[0])
    finally:
        con.close()


def recovery_s(trials: list[optuna.trial.FrozenTrial], up: float) -> float:
    """Seconds from the server coming back (``up``) to the next trial the driver told (its datetime_complete,
    the driver's local clock: the same machine)."""
    done = sorted(t.datetime_complete.timestamp() for t in trials if t.datetime_complete is not None
                  and t.datetime_complete.timestamp() > up)
    assert done, "no trial was told after the server came back"
    return done[0] - up


def snapshot(url: str, study: str) -> dict:
    return finished(St.load_study(url, study, readonly=True))


def check_complete(url: str, study: str, total: int, before: dict) -> list[optuna.trial.FrozenTrial]:
    st = St.load_study(url, study, readonly=True)
    trials = st.get_trials(deepcopy=False)
    now = finished(st)
    lost = [k for k in before if now.get(k) != before[k]]
    assert not lost, f"finished trials lost or changed: {lost}"
    assert counted(st) == total
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    trained = [t.user_attrs["genome_id"] for t in trials if t.user_attrs.get(S.STATUS_KEY) == "trained"]
    assert len(trained) == len(set(trained)), "a genome was told trained twice"
    return trials


def test_search_rides_out_server_restarts(server, db_url):
    """Three faults while the search runs, each after one more told trial: ``pg_ctl restart -m fast``, ``pg_ctl
    restart -m immediate`` (crash recovery), and a stop ``-m immediate`` held until the driver has noticed (so the
    retry path certainly runs) before starting the server again.  The search reaches --trials, every trial
    finished before a fault is still there unchanged, and no trial was lost in flight (none crashed, none
    re-queued): nothing was trained twice."""
    total = 6
    search = Search(search_cmd(db_url, "r", total, extra=FAST))
    faults: list[dict] = []
    before: dict = {}
    try:
        for i, fault in enumerate(("restart -m fast", "restart -m immediate", "down until noticed")):
            wait_for(lambda i=i: (told(db_url, "r") or 0) >= i + 1, f"trial {i + 1} before the fault {fault}",
                     search)
            n = told(db_url, "r")
            assert n is not None and n < total, "the fault must land while the search still runs"
            before.update(snapshot(db_url, "r"))
            if fault.startswith("restart"):
                server.restart(fault.split()[-1])
            else:
                server.halt("immediate")
                noticed = len([ln for ln in search.lines if "connection lost" in ln])
                wait_for(lambda noticed=noticed: len([ln for ln in search.lines if "connection lost" in ln]) > noticed,
                         "the driver to notice the server is down", search, timeout=120)
                time.sleep(1.0)  # a few retries against a server that is down
                server.start()
            faults.append({"fault": fault, "told_before": n, "up": server_started(db_url)})
            wait_for(lambda n=n: (told(db_url, "r") or 0) > n, f"a trial told after the fault {fault}", search)
        rc = search.wait()
    finally:
        search.kill()
    err = search.stderr()
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err and "nasseg: error" not in err
    assert any("reconnected after" in ln for ln in search.lines), err[-3000:]
    trials = check_complete(db_url, "r", total, before)
    assert not [t for t in trials if t.user_attrs.get(S.STATUS_KEY) == "crashed" or "requeued_from" in t.user_attrs]
    assert len(faults) == 3
    lost = len(before) - sum(1 for k in before if k in finished(St.load_study(db_url, "r", readonly=True)))
    outages = [ln.split("reconnected after ")[1].split(" s")[0] for ln in search.lines if "reconnected after" in ln]
    print("\nFIGURES postgres restarts: faults injected", len(faults), "| trials lost", lost, "| recovery s "
          "(server up -> next finished trial):", ", ".join(f"{f['fault']} {recovery_s(trials, f['up']):.2f}"
                                                          for f in faults),
          "| driver saw outages of (s):", ", ".join(outages))


def test_server_down_longer_than_the_retry_window_stops_in_one_line_and_resumes(server, db_url):
    """NASSEG_STORAGE_RETRY_S=4 and the server stopped after the first told trial: the search gives up after the
    window with one line naming the masked URL (exit 2); with the server back, the same command resumes and
    reaches --trials, the trial that was in flight re-queued, every finished one kept."""
    total = 3
    cmd = search_cmd(db_url, "w", total, extra=FAST)
    search = Search(cmd, **{St.RETRY_ENV: "4"})
    try:
        wait_for(lambda: (told(db_url, "w") or 0) >= 1, "the first told trial", search)
        before = snapshot(db_url, "w")
        server.halt("fast")
        down = time.time()
        rc = search.wait(timeout=300)
        gave_up_s = time.time() - down
    finally:
        search.kill()
    err = search.stderr()
    errors = [ln for ln in search.lines if ln.startswith("nasseg: error: ")]
    assert rc == 2, err[-3000:]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    shown = St.mask_url(db_url)
    assert shown in errors[0] and "could not reconnect within 4 s" in errors[0], errors[0]
    assert "run the same command again to resume" in errors[0]
    password = db_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    assert password not in err
    server.start()
    up = time.time()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=600, stdin=subprocess.DEVNULL)
    resumed_s = time.time() - up
    assert again.returncode == 0, again.stderr[-3000:]
    trials = check_complete(db_url, "w", total, before)
    crashed = [t for t in trials if t.user_attrs.get(S.STATUS_KEY) == "crashed"]
    assert len(crashed) <= 1, "only the trial in flight when the server went away may be re-queued"
    print(f"\nFIGURES postgres down > window: faults injected 1 | trials lost "
          f"{sum(1 for k in before if k not in finished(St.load_study(db_url, 'w', readonly=True)))} | gave up "
          f"{gave_up_s:.1f} s after the stop (window 4 s) | resumed run to --trials {resumed_s:.1f} s")


def test_a_tell_whose_commit_landed_before_the_connection_died_is_not_told_twice(server, db_url):
    """The connection is cut right after the server received the COMMIT of a tell (through a TCP proxy): the driver
    sees the connection die, reconnects, finds the trial already told, and goes on: no 'already finished' error,
    the value stored once.  The same through a plain RDBStorage fails (the fault is real)."""
    proxy = servers.CuttingProxy(server.port)
    url = db_url.replace(f":{server.port}/", f":{proxy.port}/")
    try:
        storage = St.open_storage(url)
        lines: list[str] = []
        storage.log = lines.append
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name="c", storage=storage)
        trial = study.ask()
        trial.set_user_attr("genome", "x")
        proxy.arm(b"UPDATE trials SET state")
        study.tell(trial, 0.75)  # the cut lands inside this tell's COMMIT
        assert proxy.cuts == 1
        assert any("connection lost" in ln for ln in lines) and any("reconnected after" in ln for ln in lines), lines
        told_ = St.load_study(db_url, "c", readonly=True).trials
        assert [(t.state, t.value) for t in told_] == [(optuna.trial.TrialState.COMPLETE, 0.75)]
        nxt = study.ask()  # the study goes on over a fresh connection
        study.tell(nxt, 0.5)
        assert len(St.load_study(db_url, "c", readonly=True).trials) == 2

        plain = optuna.storages.RDBStorage(St.postgres_driver_url(url))
        other = optuna.load_study(study_name="c", storage=plain)
        t3 = other.ask()
        proxy.arm(b"UPDATE trials SET state")
        with pytest.raises(optuna.exceptions.StorageInternalError):
            other.tell(t3, 0.25)
        assert proxy.cuts == 2
        plain.engine.dispose()
        storage.engine.dispose()
    finally:
        proxy.close()
