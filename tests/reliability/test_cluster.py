"""A real two-node Ray cluster on this machine, a PostgreSQL study, and a node that dies mid-run."""

from __future__ import annotations

import signal
import subprocess
import time

import optuna
import pytest

from nasseg import search as S
from nasseg import study as St
from tests.reliability.common import counted, search_cmd
from tests.reliability.servers import RayCluster


def _worker_nodes(url: str) -> tuple[list[optuna.trial.FrozenTrial], int]:
    study = St.load_study(url, "cl", readonly=True)
    trials = study.get_trials(deepcopy=False)
    in_flight = sum(1 for t in trials if t.state == optuna.trial.TrialState.RUNNING and "latency" in t.user_attrs)
    return trials, in_flight


@pytest.mark.slow
def test_search_on_a_two_node_ray_cluster_survives_losing_a_node(postgres_url, tmp_path):
    """`ray start --head` plus a second `ray start --address` (own temp dirs, custom resource node2), a search
    with --ray-address and a PostgreSQL study: trials run on both nodes (each trial records the Ray node id
    of its worker); the second node is killed while it trains, and the search still finishes every trial."""
    cluster = RayCluster()
    proc = None
    try:
        nodes = cluster.nodes()
        head = next(n["id"] for n in nodes if "head" in n["resources"])
        node2 = next(n["id"] for n in nodes if "node2" in n["resources"])
        assert len(nodes) == 2 and all(n["alive"] for n in nodes)

        cmd = search_cmd(postgres_url, "cl", 6, steps=60, extra=(
            "--ray-address", cluster.address, "--concurrency", "2", "--cpus-per-trial", "1",
            "--artifacts", str(tmp_path / "artifacts")))  # one machine: a shared folder for both nodes
        cmd[cmd.index("--executor") + 1] = "ray"
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cluster.env,
                                cwd=tmp_path)
        killed_at, deadline = None, time.time() + 400
        while killed_at is None and time.time() < deadline and proc.poll() is None:
            time.sleep(1.0)
            try:
                trials, in_flight = _worker_nodes(postgres_url)
            except Exception:  # the study is not created yet
                continue
            on_node2 = [t for t in trials if (t.user_attrs.get("worker") or {}).get("ray_node_id") == node2]
            if on_node2 and in_flight == 2:  # one proxy on each node (1 CPU each): node2 is training now
                time.sleep(1.0)
                cluster.node2.kill(signal.SIGKILL)  # its raylet, agents and the worker training there
                killed_at = time.time()
                while cluster.node2.pids() and time.time() < killed_at + 10:
                    time.sleep(0.2)
                assert not cluster.node2.pids(), "node2 did not stop"
        _, err = proc.communicate(timeout=600)
        assert killed_at is not None, f"node2 never trained while the search ran: {err[-2000:]}"
        assert proc.returncode == 0, err[-3000:]
        assert postgres_url.split("@")[0].split(":")[-1] not in err  # the password never reaches the output

        study = St.load_study(postgres_url, "cl")
        trials = study.get_trials(deepcopy=False)
        assert counted(study) == 6 and all(t.state.is_finished() for t in trials)
        where = {t.number: t.user_attrs["worker"]["ray_node_id"] for t in trials if "worker" in t.user_attrs}
        assert set(where.values()) == {head, node2}, where  # trials ran on both nodes
        after = [t for t in trials if t.datetime_complete and t.datetime_complete.timestamp() > killed_at
                 and t.user_attrs.get(S.STATUS_KEY) == "trained"]
        assert after and all(where[t.number] == head for t in after)  # the head carried on alone
        for t in trials:
            if t.state == optuna.trial.TrialState.FAIL:  # the trial node2 was training: retried, or failed
                assert "Ray worker died" in t.user_attrs["reason"]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        cluster.stop()
    assert not cluster.head.pids() and not cluster.node2.pids()
