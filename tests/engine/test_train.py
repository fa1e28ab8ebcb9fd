"""`uniconvnet train / eval / predict` on the built-in digits, as a user runs them (tiny images, few steps)."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

from conftest import run_child
from uniconvnet.checkpoints import load_checkpoint_file
from uniconvnet.cli.main import main as cli_main
from uniconvnet.data import DIGITS_CLASSES, DigitsDataset, export_digits_folder

# 8x8 inputs keep a step of UniConvNet-A at a few tens of milliseconds
TINY = ['--image-size', '8', '--batch-size', '16', '--log-interval', '1']
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures('one_thread')]  # training runs in child processes (torchrun, Ctrl-C, SIGKILL)


def uniconvnet(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'uniconvnet', *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def metrics(folder: Path, drop=('seconds',)):
    rows = [json.loads(line) for line in (folder / 'metrics.jsonl').read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp('train') / 'run'
    res = uniconvnet('train', *TINY, '--epochs', '2', '--limit-train-batches', '3', '--output', out)
    assert res.returncode == 0, res.stderr
    # the effective batch and the scaled lr are printed at start: digits recipe, 3e-3 at batch 64
    assert 'effective batch 16' in res.stdout and 'lr 0.00075 (= 0.003 x 16 / 64, scaled linearly)' in res.stdout
    assert 'epoch 1/2  step 3/3  loss' in res.stdout and 'img/s  eta' in res.stdout  # plain progress lines
    return out


def test_outputs(trained):
    rows = metrics(trained, drop=())
    assert [r['epoch'] for r in rows] == [1, 2]
    for row in rows:
        assert {'epoch', 'train_loss', 'val_loss', 'val_top1', 'val_top5', 'lr', 'seconds'} <= set(row)
        assert 0 <= row['val_top1'] <= row['val_top5'] <= 100
    config = json.loads((trained / 'config.json').read_text())
    assert config['architecture'] == 'uniconvnet_a' and config['label_names'] == DIGITS_CLASSES
    assert config['pretrained_cfg']['input_size'] == [3, 8, 8] and config['pretrained_cfg']['crop_pct'] == 1.0
    assert (trained / 'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    last = load_checkpoint_file(trained / 'last.pt')  # weights_only: the resume state is plain data
    assert last['epoch'] == 2 and last['step'] == 6 and len(last['history']) == 2
    assert {'model', 'optimizer', 'scheduler', 'rng', 'config'} <= set(last)
    best = load_checkpoint_file(trained / 'best.pt')
    assert best['best_metric'] == max(r['val_top1'] for r in rows)
    # the output folder is a timm model folder
    model = timm.create_model(f'local-dir:{trained}', pretrained=True)
    assert model.num_classes == 10 and model.pretrained_cfg['label_names'] == DIGITS_CLASSES
    torch.testing.assert_close(model.state_dict(), last['model'], rtol=0, atol=0)


def test_output_folder_is_a_hub_model_repository(trained):
    card = (trained / 'README.md').read_text()
    assert card.startswith('---\nlibrary_name: timm\npipeline_tag: image-classification\n')
    last = metrics(trained)[-1]
    assert '# uniconvnet_a trained on digits' in card and '10 classes' in card and '8x8 inputs' in card
    assert 'Recipe `digits`' in card and 'effective batch 16' in card and '![training curves](curves.png)' in card
    assert f'| final (2) | {last["val_loss"]:.4f} | {last["val_top1"]:.2f} | {last["val_top5"]:.2f} |' in card
    assert f"timm.create_model('local-dir:{trained}', pretrained=True)" in card
    assert f"AutoModelForImageClassification.from_pretrained('{trained}')" in card
    # transformers' TimmWrapper passes num_classes itself: config.json must not repeat it in model_args
    config = json.loads((trained / 'config.json').read_text())
    assert config['num_classes'] == 10 and 'num_classes' not in config.get('model_args', {})


def test_transformers_loads_the_output_folder(trained):
    transformers = pytest.importorskip('transformers', reason='transformers is not installed (pip install '
                                                              'transformers; in the dev extra)')
    reference = timm.create_model(f'local-dir:{trained}', pretrained=True).eval()
    model = transformers.AutoModelForImageClassification.from_pretrained(str(trained)).eval()
    assert [model.config.id2label[i] for i in range(10)] == DIGITS_CLASSES
    processor = transformers.AutoImageProcessor.from_pretrained(str(trained))
    image = DigitsDataset('val').image(0)
    pixels = processor(image, return_tensors='pt')['pixel_values']
    assert pixels.shape == (1, 3, 8, 8)  # the preprocessing of config.json: the run's 8x8 inputs
    torch.testing.assert_close(model.timm_model.state_dict(), reference.state_dict(), rtol=0, atol=0)
    with torch.no_grad():  # the same weights; the wrapper's forward differs by float rounding (1e-7) only
        torch.testing.assert_close(model(pixel_values=pixels).logits, reference(pixels), rtol=1e-5, atol=1e-5)


def test_eval_reproduces_last_epoch(trained, capsys):
    for checkpoint in (trained / 'model.safetensors', trained / 'last.pt'):
        assert cli_main(['eval', '--checkpoint', str(checkpoint), '--json']) == 0
        result = json.loads(capsys.readouterr().out)
        last = metrics(trained)[-1]
        assert result['top1'] == pytest.approx(last['val_top1'], abs=1e-9)
        assert result['top5'] == pytest.approx(last['val_top5'], abs=1e-9)
        assert result['loss'] == pytest.approx(last['val_loss'], rel=1e-5)
        assert result['images'] == 360 and result['images_per_s'] > 0


def test_eval_and_predict_on_image_files(trained, tmp_path, capsys):
    folder = export_digits_folder(tmp_path / 'digits', splits=('val',), per_class=1)
    assert cli_main(['eval', '--checkpoint', str(trained), '--data', str(folder), '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result['images'] == 10 and 0 <= result['top1'] <= result['top5'] <= 100
    images = sorted(str(p) for p in (folder / 'val').rglob('*.png'))[:3]
    assert cli_main(['predict', *images, '--checkpoint', str(trained / 'model.safetensors'), '--topk', '3',
                     '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result) == images
    for top in result.values():
        probs = [p for _, p in top]
        assert len(top) == 3 and all(name in DIGITS_CLASSES for name, _ in top)
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert cli_main(['predict', images[0], '--checkpoint', str(trained)]) == 0
    assert capsys.readouterr().out.startswith(f'{images[0]}: ')


def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    args = [*TINY, '--epochs', '2', '--limit-train-batches', '4', '--limit-val-batches', '3', '--deterministic',
            '--resume', 'auto']
    reference = uniconvnet('train', *args, '--output', tmp_path / 'reference')
    assert reference.returncode == 0, reference.stderr
    assert 'nothing to resume' in reference.stdout and 'starting fresh' in reference.stdout

    out = tmp_path / 'killed'
    killed = run_child([sys.executable, '-m', 'uniconvnet', 'train', *args, '--output', str(out)],
                       until='epoch 2/2  step 2/4', then=lambda proc: proc.send_signal(signal.SIGKILL),  # mid-epoch 2
                       env=dict(os.environ, PYTHONUNBUFFERED='1'))
    assert killed.returncode == -signal.SIGKILL
    state = load_checkpoint_file(out / 'last.pt')  # the checkpoint it resumes from loads cleanly
    assert state['epoch'] == 1
    assert not [p.name for p in out.iterdir() if p.name.endswith('.tmp')]

    resumed = uniconvnet('train', *args, '--output', out)
    assert resumed.returncode == 0, resumed.stderr
    assert 'resumed from' in resumed.stdout and '1 of 2 epochs done' in resumed.stdout
    assert metrics(out) == metrics(tmp_path / 'reference')  # bit for bit, every epoch
    torch.testing.assert_close(load_checkpoint_file(out / 'last.pt')['model'],
                               load_checkpoint_file(tmp_path / 'reference' / 'last.pt')['model'], rtol=0, atol=0)


def _interrupt_at(command, marker: str) -> subprocess.CompletedProcess:
    """Run ``command``, send it SIGINT (Ctrl-C) when ``marker`` appears in its output; its exit code and output."""
    return run_child(command, until=marker, then=lambda proc: proc.send_signal(signal.SIGINT),
                     env=dict(os.environ, PYTHONUNBUFFERED='1'))


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(tmp_path):
    out = tmp_path / 'run'
    args = ['train', *TINY, '--epochs', '2', '--limit-train-batches', '4', '--limit-val-batches', '1',
            '--output', str(out), '--overwrite']
    stopped = _interrupt_at([sys.executable, '-m', 'uniconvnet', *args], 'epoch 2/2  step 2/4')
    assert stopped.returncode == 130
    # one line, no traceback: where it stopped, the checkpoint with the last good state, the command to resume
    assert stopped.stderr.strip() == (
        f'uniconvnet train: interrupted in epoch 2 of 2; {out / "last.pt"} holds the last good state (1 of 2 '
        f'epochs done); resume with: uniconvnet {" ".join(args[:-1])} --resume auto'), stopped.stderr
    assert load_checkpoint_file(out / 'last.pt')['epoch'] == 1
    resumed = uniconvnet(*args[:-1], '--resume', 'auto')  # the command it printed
    assert resumed.returncode == 0, resumed.stderr
    assert '1 of 2 epochs done' in resumed.stdout and (out / 'model.safetensors').is_file()


def test_ctrl_c_before_the_first_checkpoint(tmp_path):
    stopped = _interrupt_at([sys.executable, '-m', 'uniconvnet', 'train', *TINY, '--epochs', '1',
                             '--limit-train-batches', '4', '--output', str(tmp_path / 'run')], 'epoch 1/1  step 2/4')
    assert stopped.returncode == 130
    assert stopped.stderr.strip() == ('uniconvnet train: interrupted in epoch 1 of 1, before the first checkpoint: '
                                      'nothing to resume, run the command again'), stopped.stderr


def test_torchrun_two_processes_same_first_step_loss(tmp_path):
    common = ['--image-size', '8', '--epochs', '1', '--limit-train-batches', '1', '--limit-val-batches', '1',
              '--no-aug']
    one = uniconvnet('train', *common, '--batch-size', '16', '--output', tmp_path / 'one')
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', '-m', 'uniconvnet',
         'train', *common, '--batch-size', '8', '--output', str(tmp_path / 'two')],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert two.returncode == 0, two.stderr[-2000:]
    assert 'x 2 process(es)' in two.stdout and 'effective batch 16' in two.stdout
    assert two.stdout.count('output: ') == 1  # rank 0 alone logs
    loss_one, loss_two = metrics(tmp_path / 'one')[0]['train_loss'], metrics(tmp_path / 'two')[0]['train_loss']
    assert loss_two == pytest.approx(loss_one, rel=1e-5, abs=1e-6)
    assert 2.0 < loss_one < 2.6  # about ln(10): the first step of a fresh 10-class head
