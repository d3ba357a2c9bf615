import os

import pytest
import torch

# CI machines have 2 cores; one intra-op thread keeps tests deterministic and avoids oversubscription
# when pytest and Ray workers share the machine.
torch.set_num_threads(1)
os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
