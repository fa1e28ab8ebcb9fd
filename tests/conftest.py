import ctypes
import os

# Triton's interpreter runs the Triton kernels on the CPU for the tests in tests/ops/. It has to be on before
# triton.language is first imported (torch._dynamo, which timm imports, imports it), so it is switched on here,
# for the whole session: every other test uses CPU tensors, where nothing else runs Triton.
os.environ.setdefault('TRITON_INTERPRET', '1')

import queue  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Optional, Sequence  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _find_fixtures() -> Path:
    """The official golden outputs: tests/fixtures/official in this checkout, or UNICONVNET_FIXTURES if set."""
    if os.environ.get('UNICONVNET_FIXTURES'):
        return Path(os.environ['UNICONVNET_FIXTURES'])
    return REPO / 'tests' / 'fixtures' / 'official'


FIXTURES = _find_fixtures()


def _fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.is_file():
        if os.environ.get('UNICONVNET_REQUIRE_FIXTURES'):
            pytest.fail(f'official fixture {path} is missing (tests/fixtures/official holds them; UNICONVNET_FIXTURES '
                        f'overrides the folder)')
        pytest.skip(f'official fixture {path} not found (tests/fixtures/official holds them; UNICONVNET_FIXTURES '
                        f'overrides the folder)')
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


def default_sigint() -> None:
    """``preexec_fn`` of a child that is sent Ctrl-C: it starts with SIGINT's default action whatever the test
    runner's. A background job of a shell script starts with SIGINT ignored, and a Python child started from it
    would ignore Ctrl-C too (Python installs its KeyboardInterrupt handler only over the default action)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class _SignalStack(ctypes.Structure):
    _fields_ = [('ss_sp', ctypes.c_void_p), ('ss_flags', ctypes.c_int), ('ss_size', ctypes.c_size_t)]


def signal_stack() -> tuple:
    """This thread's alternate signal stack (Linux): where signal handlers run. A command run in-process must leave
    it as it found it (tests compare it before and after)."""
    stack = _SignalStack()
    assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack)) == 0
    return stack.ss_sp, stack.ss_size


def run_child(command: Sequence[str], until: Optional[str] = None, then: Optional[Callable] = None,
              stream: str = 'stdout', timeout: float = 300, **popen_kwargs) -> subprocess.CompletedProcess:
    """Run ``command`` (text mode, both streams read); when a line of ``stream`` contains ``until``, call
    ``then(proc)`` once (e.g. send SIGINT). The whole run has ``timeout`` seconds: then the child is killed and the
    test fails with what it printed, so that no test waits forever on a child."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint, **popen_kwargs)
    lines = {'stdout': [], 'stderr': []}
    events: 'queue.Queue' = queue.Queue()

    def pump(name: str) -> None:
        for line in getattr(proc, name):
            events.put((name, line))
        events.put((name, None))

    for name in lines:
        threading.Thread(target=pump, args=(name,), daemon=True).start()
    deadline, open_streams, fired = time.monotonic() + timeout, len(lines), until is None
    try:
        while open_streams:
            name, line = events.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line is None:
                open_streams -= 1
                continue
            lines[name].append(line)
            if not fired and name == stream and until in line:
                fired = True
                then(proc)
        proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
    except (queue.Empty, subprocess.TimeoutExpired):
        proc.kill()
        proc.wait(timeout=30)
        pytest.fail(f'{" ".join(map(str, command[:4]))} ... did not finish within {timeout:g} s; its last output: '
                    f'{"".join(lines["stdout"][-5:] + lines["stderr"][-5:])}')
    return subprocess.CompletedProcess(command, proc.returncode, ''.join(lines['stdout']), ''.join(lines['stderr']))
