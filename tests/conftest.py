import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def _find_fixtures() -> Path:
    # a checkout sits beside shared/ (CI, the main checkout); a git worktree may sit deeper
    if os.environ.get('UNICONVNET_FIXTURES'):
        return Path(os.environ['UNICONVNET_FIXTURES'])
    for parent in REPO.parents:
        candidate = parent / 'shared' / 'fixtures' / 'official'
        if candidate.is_dir():
            return candidate
    return REPO.parent / 'shared' / 'fixtures' / 'official'


FIXTURES = _find_fixtures()


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
