"""Every script in benchmarks/ runs in its smoke mode (``--smoke``: tiny sizes, seconds): the scripts cannot drift
from the library unnoticed. Scripts are discovered, not listed: a new one is tested as soon as it exists, and one
without a smoke mode fails here, naming what to add."""
import os
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_child

BENCHMARKS = REPO / 'benchmarks'
RESULTS = BENCHMARKS / 'results'
SCRIPTS = sorted(p for p in BENCHMARKS.iterdir() if p.is_file() and p.suffix in ('.py', '.sh'))
TIMEOUT_S = 300  # the convention is under 30 s on 2 cores; the limit leaves room for a loaded CI machine


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob('*')) if p.is_file()} if folder.is_dir() else {}


def test_benchmarks_are_discovered():
    assert {'detseg_small_objects.py', 'train_step_cpu.py'} <= {p.name for p in SCRIPTS}


@pytest.mark.slow
@pytest.mark.parametrize('script', SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_smoke_mode_runs(script, tmp_path):
    if '--smoke' not in script.read_text():
        pytest.fail(f'benchmarks/{script.name} has no --smoke mode: add one (tiny sizes, seconds on 2 cores, exit '
                    f'code 0, nothing written under benchmarks/results)')
    before = _snapshot(RESULTS)
    command = ([sys.executable] if script.suffix == '.py' else ['bash']) + [str(script), '--smoke']
    started = time.monotonic()
    res = run_child(command, timeout=TIMEOUT_S, cwd=tmp_path, env=dict(os.environ, YOLO_OFFLINE='1'))
    output = (res.stdout + res.stderr)[-3000:]
    assert res.returncode == 0, f'{script.name} --smoke exited {res.returncode}:\n{output}'
    assert _snapshot(RESULTS) == before, f'{script.name} --smoke wrote under benchmarks/results'
    print(f'{script.name} --smoke: {time.monotonic() - started:.0f} s')
