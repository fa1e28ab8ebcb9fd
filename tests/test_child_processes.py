"""The tests' way of running a child (conftest.run_child): bounded in time, Ctrl-C reaching it whatever the
runner's own SIGINT state (a background job of a shell script starts with SIGINT ignored)."""
import signal
import sys

import pytest

from conftest import run_child

pytestmark = pytest.mark.slow  # children, Ctrl-C


def test_child_gets_ctrl_c_even_when_the_runner_ignores_it():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in `(trap '' INT; python -m pytest ...) &`
    try:
        res = run_child([sys.executable, '-c', 'import signal, time; print("ready", flush=True); time.sleep(60)'],
                        until='ready', then=lambda proc: proc.send_signal(signal.SIGINT), timeout=60)
    finally:
        signal.signal(signal.SIGINT, previous)
    # Python's handler ran (the traceback), then it ended as killed by SIGINT, as Python does
    assert res.returncode == -signal.SIGINT and 'KeyboardInterrupt' in res.stderr


def test_a_child_that_does_not_finish_fails_the_test_instead_of_hanging():
    with pytest.raises(pytest.fail.Exception, match=r'did not finish within 2 s; its last output: started'):
        run_child([sys.executable, '-c', 'import time; print("started", flush=True); time.sleep(60)'], timeout=2)
