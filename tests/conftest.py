import os

# Triton's interpreter runs the Triton kernels on the CPU for the tests in tests/ops/. It has to be on before
# triton.language is first imported (torch._dynamo, which timm imports, imports it), so it is switched on here,
# for the whole session: every other test uses CPU tensors, where nothing else runs Triton.
os.environ.setdefault('TRITON_INTERPRET', '1')

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

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


@pytest.fixture(scope='module')
def one_thread():
    """Run a module's small forward/backward passes on one thread, then restore the setting.

    On a shared 2-core machine, two OpenMP threads that wait for each other made the ERF tests' small backward
    passes 20-50x slower than one thread.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
