"""A full disk while ``uniconvnet train`` writes a checkpoint: one line that says what, where and how much, exit
code 1, and the last good checkpoint intact. Tested for real: on a small tmpfs (in a private mount namespace, so
nothing shows outside the test; needs root) and under a file size limit (RLIMIT_FSIZE, anywhere)."""
import errno
import json
import os
import re
import resource
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # training runs in child processes on a full disk


# 2 epochs of one batch; without EMA a checkpoint of UniConvNet-A (weights and AdamW state) is ~37 MB
TRAIN = ['train', '--image-size', '8', '--batch-size', '4', '--epochs', '2', '--limit-train-batches', '1',
         '--limit-val-batches', '1', '--ema-decay', '0', '--threads', '1']
INSPECT = r'''
import json, os, sys, torch
run = sys.argv[1]
names = sorted(os.listdir(run))
last = torch.load(os.path.join(run, 'last.pt'), weights_only=True)['epoch'] if 'last.pt' in names else None
size = os.path.getsize(os.path.join(run, 'last.pt')) if 'last.pt' in names else None
print(json.dumps({'files': names, 'last_epoch': last, 'last_size': size}))
'''


def _can_mount_tmpfs() -> bool:
    if shutil.which('unshare') is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(['unshare', '--mount', 'sh', '-c', 'mount -t tmpfs -o size=1m tmpfs /mnt'],
                           capture_output=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason='mounting a tmpfs needs root (unshare --mount)')
def test_full_disk_in_the_second_epoch_keeps_the_first_checkpoint(tmp_path):
    # 100 MB: epoch 1 writes last.pt and best.pt (~74 MB); epoch 2's last.pt finds no room beside them
    disk, report = tmp_path / 'disk', tmp_path / 'report.json'
    disk.mkdir()
    script = (f'mount -t tmpfs -o size=100m tmpfs {disk} || exit 99; '
              f'"$0" -m uniconvnet "$@"; code=$?; "$0" -c "$INSPECT" {disk}/run > {report}; exit $code')
    res = subprocess.run(['unshare', '--mount', 'sh', '-c', script, sys.executable, *TRAIN, '--output',
                          str(disk / 'run')], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, INSPECT=INSPECT, OMP_NUM_THREADS='1'))
    assert res.returncode == 1, res.stderr[-2000:]
    err = res.stderr.strip().splitlines()
    assert len(err) == 1, res.stderr[-2000:]
    line = err[0]
    match = re.match(rf'uniconvnet train: training stopped in epoch 2 of 2: no space left on the device while writing '
                     rf'{disk}/run/last.pt: it needs about ([\d.]+) MB and ([\d.]+) MB are free there; nothing was '
                     rf'half-written \(last.pt keeps its previous contents\)\. ', line)
    assert match, line
    needed, free = float(match.group(1)) * 2 ** 20, float(match.group(2)) * 2 ** 20
    assert line.endswith(f'{disk}/run/last.pt is intact and holds the last good state (1 of 2 epochs done): free '
                         f'some space, then continue with --resume auto'), line
    after = json.loads(report.read_text())
    assert after['last_epoch'] == 1  # the first epoch's checkpoint, readable
    assert abs(needed - after['last_size']) < 0.02 * after['last_size'] and free < needed  # what a checkpoint takes
    assert not [name for name in after['files'] if name.endswith('.tmp')]


def _limit_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (20 * 2 ** 20, 20 * 2 ** 20))


def test_file_size_limit_before_the_first_checkpoint(tmp_path):
    out = tmp_path / 'run'
    res = subprocess.run([sys.executable, '-m', 'uniconvnet', *TRAIN, '--output', str(out)], capture_output=True,
                         text=True, timeout=600, preexec_fn=_limit_file_size, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert res.returncode == 1, res.stderr[-2000:]
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        'uniconvnet train: training stopped in epoch 1 of 2: the file size limit is reached (ulimit -f) while '
        f'writing {out}/last.pt: it needs about 3'), res.stderr[-2000:]
    assert err[0].endswith('(last.pt was not created). No checkpoint was written yet: free some space and run the '
                           'command again'), err[0]
    assert sorted(p.name for p in out.iterdir()) == ['curves.png', 'metrics.jsonl', 'train.log']


WRITE_OVER_THE_LIMIT = r'''
import json, os, sys, torch
from uniconvnet.io import OutOfSpaceError, atomic_save, atomic_write_text, save_safetensors
kind, path = sys.argv[1], sys.argv[2]
writers = {'torch': lambda: atomic_save({'w': torch.zeros(2 ** 18)}, path),
           'safetensors': lambda: save_safetensors({'w': torch.zeros(2 ** 18)}, path),
           'text': lambda: atomic_write_text(path, 'x' * 2 ** 20)}
try:
    writers[kind]()
    print(json.dumps({'raised': None}))
except OutOfSpaceError as e:
    print(json.dumps({'raised': str(e), 'errno': e.errno}))
'''


def _limit_to_64k():
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 ** 16, 2 ** 16))


@pytest.mark.parametrize('kind', ['torch', 'safetensors', 'text'])
def test_every_atomic_writer_reports_lack_of_space_and_keeps_the_old_file(kind, tmp_path):
    path = tmp_path / f'out.{kind}'
    path.write_bytes(b'previous')
    res = subprocess.run([sys.executable, '-c', WRITE_OVER_THE_LIMIT, kind, str(path)], capture_output=True, text=True,
                         timeout=300, preexec_fn=_limit_to_64k)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out['errno'] == errno.EFBIG
    assert re.fullmatch(rf'the file size limit is reached \(ulimit -f\) while writing {path}: it needs about 1\.0 MB '
                        rf'and .* free there; nothing was half-written \(out.{kind} keeps its previous contents\)',
                        out['raised']), out['raised']
    assert path.read_bytes() == b'previous' and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_built_in_data_and_the_log_say_which_file_did_not_fit(tmp_path):
    # the built-in small-object data (written on first use) goes through the atomic writers too: its 315 kB
    # annotations.json does not fit under a 256 kB file size limit
    env = dict(os.environ, OMP_NUM_THREADS='1')
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2 ** 18, 2 ** 18))  # noqa: E731
    res = subprocess.run([sys.executable, '-m', 'uniconvnet', 'detect', 'train', '--epochs', '1'], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, preexec_fn=limit, env=env)
    assert res.returncode == 1, res.stderr[-2000:]
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        'uniconvnet detect: the file size limit is reached (ulimit -f) while writing '
        'runs/data/small_objects/train/annotations.json: it needs about 3'), res.stderr[-2000:]
    data = tmp_path / 'runs' / 'data' / 'small_objects'
    assert not list(tmp_path.rglob('*.tmp')) and not (data / 'settings.json').exists()  # regenerated next time
    # a log line that does not fit (train.log is appended to, not replaced): the safety net names the file
    out = tmp_path / 'run'
    out.mkdir()
    (out / 'train.log').write_bytes(b'x' * (2 ** 18 - 10))
    res = subprocess.run([sys.executable, '-m', 'uniconvnet', *TRAIN, '--output', str(out)], capture_output=True,
                         text=True, timeout=600, preexec_fn=limit, env=env)
    assert res.returncode == 1, res.stderr[-2000:]
    assert res.stderr.strip().splitlines() == [
        f'uniconvnet train: file too large while writing {out / "train.log"}; the files written atomically '
        f'(checkpoints, weights, metrics, data) keep their previous contents']
