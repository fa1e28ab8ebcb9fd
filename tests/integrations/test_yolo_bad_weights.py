"""``uniconvnet yolo predict|eval`` with a file that is no YOLO checkpoint: one line, not ultralytics' advice."""
import os

import pytest
import torch

os.environ.setdefault('YOLO_OFFLINE', '1')  # nothing here needs the internet; ultralytics reads it on import
pytest.importorskip('ultralytics', reason='the ultralytics extra: pip install "uniconvnet[ultralytics]"')

from PIL import Image  # noqa: E402

from uniconvnet.cli.main import main  # noqa: E402


def _write(kind, path):
    if kind == 'garbage':
        path.write_bytes(b'not a checkpoint')
    elif kind == 'empty':
        path.write_bytes(b'')
    else:  # a real torch file, but of tensors only
        torch.save({'model': torch.zeros(2)}, path)


@pytest.mark.parametrize('kind, reason', [('garbage', 'UnpicklingError'), ('empty', 'EOFError'),
                                          ('tensors', 'references types outside the supported Ultralytics')])
@pytest.mark.parametrize('command', ['predict', 'eval'])
def test_corrupt_weights_answer_in_one_line(kind, reason, command, tmp_path, capsys):
    weights = tmp_path / f'{kind}.pt'
    _write(kind, weights)
    image = tmp_path / 'image.png'
    Image.new('RGB', (64, 64)).save(image)
    out = tmp_path / 'out'
    args = (['predict', str(image), '--out', str(out)] if command == 'predict' else ['eval', '--data', str(image)])
    assert main(['yolo', *args, '--weights', str(weights)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f'uniconvnet yolo: error: cannot load YOLO weights {weights}: the file is empty, '
                             f'truncated or not a YOLO checkpoint ('), err[0]
    assert reason in err[0] and 'Recommended fixes' not in err[0] and 'yolo26n' not in err[0]
    assert not out.exists()
