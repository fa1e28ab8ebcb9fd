"""``uniconvnet train --recompute`` and ``--dcn-backend``: recorded in the run's TrainConfig, applied to the model."""
import pytest

from uniconvnet import ops
from uniconvnet.checkpoints import load_checkpoint_file
from uniconvnet.cli.main import main
from uniconvnet.engine import make_train_config
from uniconvnet.engine.classification import build_classification_model
from uniconvnet.engine.config import DCN_BACKENDS
from uniconvnet.layers import DCNv3
from uniconvnet.models import UniConvNetBlock

pytestmark = pytest.mark.usefixtures('one_thread')

TINY = ['--image-size', '8', '--batch-size', '4', '--epochs', '1', '--limit-train-batches', '1',
        '--limit-val-batches', '1']


@pytest.mark.slow
def test_options_are_recorded_and_applied(tmp_path):
    out = tmp_path / 'run'
    assert main(['train', *TINY, '--recompute', 'rfa,dcn', '--dcn-backend', 'torch', '--output', str(out)]) == 0
    recorded = load_checkpoint_file(out / 'last.pt')['config']
    assert (recorded['recompute'], recorded['dcn_backend']) == ('rfa,dcn', 'torch')
    assert 'recomputed in the backward pass: rfa,dcn; DCNv3 backend torch' in (out / 'train.log').read_text()
    model = build_classification_model(make_train_config(**{k: v for k, v in recorded.items() if k != 'recipe'},
                                                         recipe=recorded['recipe']), 10)
    blocks = [m for m in model.modules() if isinstance(m, UniConvNetBlock)]
    assert blocks and all(b.recompute == [True, True, False] for b in blocks)
    assert all(m.backend == 'torch' for m in model.modules() if isinstance(m, DCNv3))
    plain = build_classification_model(make_train_config(), 10)
    assert all(b.recompute == [False, False, False] for b in plain.modules() if isinstance(b, UniConvNetBlock))


def test_backend_names_follow_the_registry():
    assert DCN_BACKENDS == ('auto', *ops.backend_names())
    assert 'gather' in DCN_BACKENDS and 'cpu' not in DCN_BACKENDS  # 'cpu': the gather backend's deprecated alias


@pytest.mark.parametrize('args, message', [
    (['--recompute', 'rfa,attn'], "--recompute 'rfa,attn': unknown branch 'attn'; give a comma-separated list from "
                                  "rfa, dcn, mlp (e.g. --recompute rfa,dcn)"),
    (['--dcn-backend', 'cuda'], "unknown DCNv3 backend 'cuda' in the --dcn-backend flag; choose one of: " +
     ', '.join(DCN_BACKENDS)),
    (['--model', 'resnet18', '--recompute', 'rfa', '--dcn-backend', 'torch'],
     '--recompute and --dcn-backend: options of UniConvNet models, not of resnet18'),
])
def test_bad_values_answer_in_one_line(args, message, tmp_path, capsys):
    assert main(['train', *TINY, *args, '--output', str(tmp_path / 'run')]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f'uniconvnet train: error: {message}']
    assert not (tmp_path / 'run').exists()  # checked before anything is written
