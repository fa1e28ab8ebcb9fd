import os

# Triton's interpreter runs the Triton kernels on the CPU for tests/test_dcnv3_triton.py. It has to be on before
# triton.language is first imported (torch._dynamo, which timm imports, imports it), so it is switched on here,
# for the whole session: every other test uses CPU tensors, where nothing else runs Triton.
os.environ.setdefault('TRITON_INTERPRET', '1')

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

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
