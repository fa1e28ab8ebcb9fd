"""``--threads 0`` is refused in one line by every command that has the flag (it used to mean torch's default)."""
import argparse

import pytest
import torch

from uniconvnet.cli.main import build_parser, main
from uniconvnet.host import torch_threads

COMMANDS = {
    'train': ['train'],
    'detect train': ['detect', 'train'],
    'segment train': ['segment', 'train'],
    'eval': ['eval', '--checkpoint', 'absent'],
    'predict': ['predict', 'absent.png', '--checkpoint', 'absent'],
    'bench': ['bench'],
}


def _commands_with_threads():
    """Every (sub)command whose parser has --threads, by walking the parser: none is left out of COMMANDS."""
    found, stack = [], [((), build_parser())]
    while stack:
        path, parser = stack.pop()
        if any('--threads' in a.option_strings for a in parser._actions):
            found.append(' '.join(path))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend((path + (name,), child) for name, child in action.choices.items())
    return sorted(found)


def test_every_command_with_threads_is_covered():
    assert _commands_with_threads() == sorted(COMMANDS)


@pytest.mark.parametrize('command', sorted(COMMANDS))
def test_threads_zero_is_refused_in_one_line(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written, and nothing is
    assert main([*COMMANDS[command], '--threads', '0']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("--threads must be at least 1, got 0 (leave it out for torch's default, "
                                             "one thread per core)"), err
    assert list(tmp_path.iterdir()) == []


def test_torch_threads_restores_the_callers_setting():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before
