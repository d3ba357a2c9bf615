import os
from pathlib import Path

import pytest
import torch

# CI machines have 2 cores; one intra-op thread keeps tests deterministic and avoids oversubscription
# when pytest and Ray workers share the machine.
torch.set_num_threads(1)
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")

TINY_SPACE = str(Path(__file__).parent / "fixtures" / "tiny_space.yaml")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


# ------------------------------------------------------------------------------------------- PostgreSQL
@pytest.fixture(scope="session")
def postgres_server_url():
    """A PostgreSQL server for the whole session: ``NASSEG_TEST_POSTGRES`` (set by .ci/run), else a throwaway
    server started here from Debian's binaries (initdb + pg_ctl in a temp dir, loopback, free port).  Skips
    only when no PostgreSQL binaries are installed; a server that is there but fails to start is an error."""
    from tests.reliability import servers

    url = os.environ.get(servers.ENV_URL)
    if url:
        yield url
        return
    if servers.postgres_bin() is None:
        pytest.skip("PostgreSQL binaries are absent (apt-get install postgresql, or set NASSEG_TEST_POSTGRES)")
    server = servers.PostgresServer()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server_url):
    """A fresh, empty database on the session's PostgreSQL server (dropped afterwards)."""
    from tests.reliability import servers

    url, name = servers.fresh_database(postgres_server_url)
    try:
        yield url
    finally:
        servers.drop_database(postgres_server_url, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_url(request, tmp_path):
    """The same test against a SQLite file and a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture(scope="session")
def tiny_budget_ms() -> float:
    """A latency budget between the tiny space's fastest and slowest candidates (geometric mean), at 64x128."""
    from nasseg.build import build
    from nasseg.cost import measure_latency
    from nasseg.space import load_space

    space = load_space(TINY_SPACE)
    lat = []
    for width, depth in ((8, 1), (256, 3)):
        for g in (space.random(i) for i in range(200)):
            if g.stages[1].width == width and g.stages[1].depth == depth and g.stages[1].block == "mbconv":
                rec = measure_latency(build(g, 11), (1, 3, 64, 128), runs=30, warmup=3, threads=1)
                lat.append(rec.median_ms)
                break
    assert len(lat) == 2 and lat[1] > 4 * lat[0], lat
    return (lat[0] * lat[1]) ** 0.5
