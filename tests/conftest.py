import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get('UNICONVNET_FIXTURES', REPO.parent / 'shared' / 'fixtures' / 'official'))


def _fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        if os.environ.get('UNICONVNET_REQUIRE_FIXTURES'):
            pytest.fail(f'official fixture {path} is missing (set UNICONVNET_FIXTURES to its folder)')
        pytest.skip(f'official fixtures not found at {FIXTURES} (set UNICONVNET_FIXTURES)')
    return path


@pytest.fixture(scope='session')
def official_a():
    return torch.load(_fixture_path('official_uniconvnet_a_random.pt'), weights_only=True)


@pytest.fixture(scope='session')
def official_nfamily():
    return torch.load(_fixture_path('official_nfamily_d1121_w48_random.pt'), weights_only=True)


@pytest.fixture(scope='session')
def official_shapes():
    import json
    return json.loads(_fixture_path('official_state_dict_shapes.json').read_text())


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One torch thread in this process: on a small shared CI machine a second OpenMP thread only spins."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
