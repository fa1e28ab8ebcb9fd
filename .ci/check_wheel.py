"""Build the wheel and the sdist, validate them, and use the wheel from a fresh environment, as a user would.

1. ``python -m build``: a wheel and an sdist; ``twine check --strict``: their metadata (README included) is valid.
2. Both carry every file of the package that git tracks (modules, the YAML model files, any other data), the
   licence, and the ``uniconvnet`` command.
3. A new virtual environment (not ``--system-site-packages``) that sees, of this Python's packages, only torch,
   torchvision and what they need: everything else (timm, huggingface_hub, safetensors, ...) has to come from
   the wheel's own declared dependencies. A fresh ``pip install torch`` would download several GB of CUDA
   wheels (it did not finish in 8 minutes here), hence torch is lent from this Python.
4. In it, from a folder outside the checkout: ``uniconvnet models`` and ``timm.create_model`` on the installed
   package, whose data files are all there.

Run: ``python .ci/check_wheel.py`` from anywhere (``--keep DIR`` keeps the build and the environment).
"""
import argparse
import importlib.metadata as metadata
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Set, Tuple

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LENT = ('torch', 'torchvision')  # the distributions the environment borrows, with what they require


def run(*command, cwd: Path = REPO) -> str:
    print('+', ' '.join(map(str, command)), flush=True)
    result = subprocess.run([str(c) for c in command], cwd=cwd, text=True, capture_output=True)
    if result.returncode != 0:
        sys.exit(f'failed ({result.returncode}): {" ".join(map(str, command))}\n{result.stdout}\n{result.stderr}')
    return result.stdout


def package_files() -> Set[str]:
    """Every file of the package that git tracks, as a path inside the wheel (``uniconvnet/...``)."""
    tracked = run('git', 'ls-files', 'src/uniconvnet').split()
    return {str(Path(f).relative_to('src')) for f in tracked}


def check_contents(dist: Path) -> None:
    wanted = package_files()
    wheel = zipfile.ZipFile(next(dist.glob('*.whl')))
    names = set(wheel.namelist())
    missing = sorted(wanted - names)
    if missing:
        sys.exit(f'the wheel lacks {len(missing)} package files, e.g. {missing[:5]} (see [tool.setuptools] in '
                 f'pyproject.toml)')
    info = next(n.split('/')[0] for n in names if n.endswith('.dist-info/METADATA'))
    entry_points = wheel.read(f'{info}/entry_points.txt').decode()
    if 'uniconvnet = uniconvnet.cli.main:main' not in entry_points or f'{info}/licenses/LICENSE' not in names:
        sys.exit(f'the wheel lacks the uniconvnet command or the licence: {entry_points!r}')
    with tarfile.open(next(dist.glob('*.tar.gz'))) as sdist:
        root = sdist.getnames()[0].split('/')[0]
        in_sdist = {n.split('/', 1)[1] for n in sdist.getnames() if '/' in n}
    missing = sorted(({f'src/{f}' for f in wanted} | {'README.md', 'LICENSE', 'pyproject.toml'}) - in_sdist)
    if missing:
        sys.exit(f'the sdist {root} lacks {missing[:5]}')
    print(f'wheel and sdist carry all {len(wanted)} package files '
          f'({len([f for f in wanted if not f.endswith(".py")])} data files)')


def requirement_closure(names) -> Dict[str, metadata.Distribution]:
    """The installed distributions ``names`` need, recursively, with the extras they ask for (torch asks for
    ``cuda-toolkit[cublas,...]``); other platforms' needs are left out."""
    found: Dict[str, metadata.Distribution] = {}
    done: Set[Tuple[str, str]] = set()
    todo: List[Tuple[str, str]] = [(name, '') for name in names]
    while todo:
        name, extra = todo.pop()
        name = canonicalize_name(name)
        if (name, extra) in done:
            continue
        done.add((name, extra))
        try:
            found[name] = dist = found.get(name) or metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({'extra': extra}):
                todo += [(requirement.name, e) for e in ('', *requirement.extras)]
    return found


def lend_torch(venv: Path) -> int:
    """Make ``venv`` see torch, torchvision and their requirements (symbolic links + a ``.pth``), nothing else."""
    lent = venv / 'lent'
    lent.mkdir()
    dists = requirement_closure(LENT)
    for dist in dists.values():
        for top in {f.parts[0] for f in dist.files or [] if f.parts and f.parts[0] != '..'}:
            link, target = lent / top, Path(dist.locate_file(top))
            if target.exists() and not link.exists():
                link.symlink_to(target)
    site = next(venv.glob('lib/python*/site-packages'))
    (site / 'lent-torch.pth').write_text(f'{lent}\n')
    return len(dists)


def check_installed(venv: Path, dist: Path, work: Path) -> None:
    python, uniconvnet = venv / 'bin' / 'python', venv / 'bin' / 'uniconvnet'
    run(python, '-m', 'pip', 'install', '-q', next(dist.glob('*.whl')), cwd=work)
    table = run(uniconvnet, 'models', 'uniconvnet_a', 'uniconvnet_n0', cwd=work)
    if '| uniconvnet_a |' not in table or '3.41' not in table:
        sys.exit(f'uniconvnet models printed:\n{table}')
    script = '''
import pathlib, sys, timm, torch, uniconvnet
package = pathlib.Path(uniconvnet.__file__).parent
assert pathlib.Path(sys.prefix) in package.parents, f'uniconvnet imported from {package}, not the environment'
assert pathlib.Path(sys.prefix) in pathlib.Path(timm.__file__).parents, f'timm not from the environment: {timm.__file__}'
model = timm.create_model('uniconvnet_a', num_classes=3).eval()
with torch.no_grad():
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 3)
print(len([p for p in package.rglob('*') if p.is_file() and p.suffix not in ('.py', '.pyc')]))
'''
    installed_data = int(run(python, '-c', script, cwd=work).split()[-1])
    source_data = len([f for f in package_files() if not f.endswith('.py')])
    if installed_data != source_data:
        sys.exit(f'the installed package has {installed_data} data files, the source {source_data}')
    print(f'installed wheel: `uniconvnet models` and timm.create_model work; {installed_data} data files present')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--keep', type=Path, help='build and install here and keep it (default: a temporary folder)')
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix='uniconvnet-wheel-') as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        dist = work / 'dist'
        run(sys.executable, '-m', 'build', '--outdir', dist, REPO)
        run(sys.executable, '-m', 'twine', 'check', '--strict', *sorted(dist.iterdir()))
        check_contents(dist)
        venv = work / 'venv'
        run(sys.executable, '-m', 'venv', venv)
        print(f'environment lends {lend_torch(venv)} distributions (torch, torchvision and their requirements)')
        check_installed(venv, dist, work)


if __name__ == '__main__':
    main()
