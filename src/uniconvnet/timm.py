"""Run one of timm's scripts (train.py, validate.py, benchmark.py, inference.py, onnx_export.py ...) with the
UniConvNet models registered::

    python -m uniconvnet.timm train.py --model uniconvnet_a --data-dir DIR --model-ema --layer-decay 0.7 ...
    torchrun --nproc_per_node 8 -m uniconvnet.timm train.py --model uniconvnet_t ...

``python -m`` imports the ``uniconvnet`` package first, which registers ``uniconvnet_a`` ... ``uniconvnet_xl`` with
timm; then the script runs unchanged, as ``python SCRIPT ARGS`` would run it: as ``__main__``, with its own
``sys.argv``, its folder first on ``sys.path``, its exit code and its tracebacks.

Why a wrapper: timm finds models in its registry only, and has no hook (no plugin entry point) through which an
installed package could add itself; a fresh process that names ``uniconvnet_a`` (in ``--model``, or in the
``config.json`` of a ``local-dir:`` / ``hf-hub:`` folder) without ``import uniconvnet`` fails with timm's
``RuntimeError: Unknown model (uniconvnet_a)``. In your own code, ``import uniconvnet`` is the fix.
"""
import runpy
import sys
from pathlib import Path
from typing import List, Optional

__all__ = ['main']

_USAGE = 'usage: python -m uniconvnet.timm SCRIPT [ARGS ...]   (e.g. timm\'s train.py, validate.py, benchmark.py)'


def main(argv: Optional[List[str]] = None) -> None:
    """Run ``argv[0]`` (a Python file) as ``__main__`` with ``argv[1:]`` as its arguments.

    Meant for ``python -m uniconvnet.timm`` (it replaces this process's ``sys.argv`` and ``sys.path[0]`` as the
    interpreter does for a script); exits with status 2 and one line when no script is given or it is not a file.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(_USAGE, file=sys.stderr)
        sys.exit(0 if argv else 2)
    script = Path(argv[0])
    if not script.is_file():
        print(f'uniconvnet.timm: error: {script} is not a file (timm\'s scripts are not installed with timm: take '
              f'train.py and the others from its repository)', file=sys.stderr)
        sys.exit(2)
    sys.argv = [str(script), *argv[1:]]
    sys.path[0] = str(script.resolve().parent)  # as `python SCRIPT` sets it (here `-m` set the working folder)
    runpy.run_path(str(script), run_name='__main__')


if __name__ == '__main__':
    main()
