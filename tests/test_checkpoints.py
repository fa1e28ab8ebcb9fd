"""Checkpoint safety and the errors users see: wrong variant, truncated files, pickles that run code."""
import os

import pytest
import timm
import torch

from uniconvnet.checkpoints import CheckpointError, atomic_save, load_checkpoint_file, load_weights, save_safetensors
from uniconvnet.cli.main import main as cli_main
from uniconvnet.engine import convert_checkpoint
from uniconvnet.models import checkpoint_filter_fn


def test_other_variant_names_shapes_and_variant(official_a):
    model = timm.create_model('uniconvnet_p0')
    with pytest.raises(ValueError, match=r'checkpoint is for uniconvnet_a.*shape mismatches.*stem\.0\.weight'):
        checkpoint_filter_fn(official_a['state_dict'], model)


def test_converter_refuses_other_variant(official_a, tmp_path):
    src = tmp_path / 'a.pth'
    torch.save({'model': official_a['state_dict']}, src)
    with pytest.raises(ValueError, match='checkpoint is for uniconvnet_a'):
        convert_checkpoint(src, tmp_path / 'out.safetensors', 'uniconvnet_n0')
    assert not (tmp_path / 'out.safetensors').exists()


def test_converter_refuses_leftover_and_missing_keys(official_a, tmp_path):
    extra = dict(official_a['state_dict'], **{'stages.0.0.attn.extra.weight': torch.zeros(3)})
    torch.save({'model': extra}, tmp_path / 'extra.pth')
    with pytest.raises(ValueError, match=r'unexpected keys.*stages\.0\.blocks\.0\.attn\.extra\.weight'):
        convert_checkpoint(tmp_path / 'extra.pth', tmp_path / 'o.safetensors', 'uniconvnet_a')
    short = {k: v for k, v in official_a['state_dict'].items() if k != 'stages.1.0.dcn.offset.bias'}
    torch.save({'model': short}, tmp_path / 'short.pth')
    with pytest.raises(ValueError, match=r'missing keys.*stages\.1\.blocks\.0\.dcn\.offset\.bias'):
        convert_checkpoint(tmp_path / 'short.pth', tmp_path / 'o.safetensors', 'uniconvnet_a')


def test_cli_convert(official_a, tmp_path, capsys):
    src = tmp_path / 'a.pth'
    torch.save({'model': official_a['state_dict']}, src)
    assert cli_main(['convert', str(src), str(tmp_path / 'a.safetensors'), '--model', 'uniconvnet_a']) == 0
    assert (tmp_path / 'a.safetensors').is_file()
    assert cli_main(['convert', str(src), str(tmp_path / 'b.safetensors'), '--model', 'uniconvnet_t']) == 2
    assert 'checkpoint is for uniconvnet_a' in capsys.readouterr().err


def test_truncated_and_non_checkpoint_files(official_a, tmp_path):
    good = tmp_path / 'good.pth'
    torch.save({'model': official_a['state_dict']}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match='truncated or not a PyTorch checkpoint'):
        load_checkpoint_file(truncated)
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    with pytest.raises(CheckpointError, match='truncated or not a PyTorch checkpoint'):
        load_checkpoint_file(text)
    bad_st = tmp_path / 'bad.safetensors'
    bad_st.write_bytes(b'\x00' * 10)
    with pytest.raises(CheckpointError, match='safetensors'):
        load_checkpoint_file(bad_st)
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        load_checkpoint_file(tmp_path / 'absent.pth')
    torch.save([1, 2, 3], tmp_path / 'list.pth')
    with pytest.raises(ValueError, match='not a UniConvNet checkpoint'):
        load_weights(timm.create_model('uniconvnet_a'), tmp_path / 'list.pth')


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f'touch {os.environ["PWNED_MARKER"]}',))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / 'pwned'
    monkeypatch.setenv('PWNED_MARKER', str(marker))
    path = tmp_path / 'evil.pth'
    torch.save({'model': {'x': torch.zeros(1)}, 'payload': _RunsCode()}, path)
    with pytest.raises(CheckpointError, match='refusing to load'):
        load_checkpoint_file(path)
    assert not marker.exists()
    # timm's pretrained_cfg_overlay path goes through the same reader
    with pytest.raises(CheckpointError, match='refusing to load'):
        timm.create_model('uniconvnet_a', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    assert not marker.exists()


def test_local_weights_through_timm_name_the_problem(tmp_path):
    # timm alone logs "No checkpoint found" and raises an empty FileNotFoundError; garbage reads as "globals"
    with pytest.raises(FileNotFoundError, match=r'checkpoint not found: .*absent\.pth'):
        timm.create_model('uniconvnet_a', pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / 'absent.pth')))
    (tmp_path / 'garbage.pth').write_bytes(b'garbage')
    with pytest.raises(CheckpointError, match='truncated or not a PyTorch checkpoint'):
        timm.create_model('uniconvnet_a', pretrained=True,
                          pretrained_cfg_overlay=dict(file=str(tmp_path / 'garbage.pth')))
    # safetensors work too (timm re-initialises a head whose class count differs from the cfg's), and the
    # weights are not kept in the model's pretrained_cfg
    source = timm.create_model('uniconvnet_a', num_classes=3, **TINY_A)
    save_safetensors(source.state_dict(), tmp_path / 'w.safetensors')
    model = timm.create_model('uniconvnet_a', num_classes=3, pretrained=True, **TINY_A,
                              pretrained_cfg_overlay=dict(file=str(tmp_path / 'w.safetensors')))
    torch.testing.assert_close(model.stages[3].blocks[0].ls_mlp.gamma, source.stages[3].blocks[0].ls_mlp.gamma)
    assert 'state_dict' not in model.pretrained_cfg and model.pretrained_cfg['file'].endswith('w.safetensors')


def test_head_mismatch_and_in_chans_through_timm(official_a, tmp_path):
    path = tmp_path / 'a.pth'
    torch.save({'model': official_a['state_dict']}, path)
    with pytest.raises(CheckpointError, match='1000-class head but the model has 5 classes'):
        load_weights(timm.create_model('uniconvnet_a', num_classes=5), path)
    # what timm's test_model_load_pretrained does, from a local file: new head, 1-channel stem
    for kwargs in (dict(in_chans=1, num_classes=5), dict(in_chans=1, num_classes=0)):
        model = timm.create_model('uniconvnet_a', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)),
                                  **kwargs)
        torch.testing.assert_close(model.stem[0].weight[:, 0], official_a['state_dict'][
            'downsample_layers.0.0.weight'].sum(1))


def test_atomic_save_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / 'ckpt.pt'
    atomic_save({'a': torch.ones(2)}, path)
    mask = os.umask(0o022)
    try:  # a new file's usual permissions (mkstemp alone would make it owner-only)
        atomic_save({'a': torch.ones(2)}, path)
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(mask)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError('boom')

    with pytest.raises(RuntimeError, match='boom'):
        atomic_save({'a': Unsaveable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)['a'], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ['ckpt.pt']
    with pytest.raises(FileNotFoundError, match='output folder does not exist'):
        atomic_save({}, tmp_path / 'missing' / 'x.pt')


TINY_A = dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128))


def test_load_weights_any_model_file_or_dict(tmp_path):
    # a timm model that is not a UniConvNet, saved as a trainer would ('model' key, DDP 'module.' prefixes)
    source = timm.create_model('resnet10t', num_classes=3)
    path = tmp_path / 'r.pth'
    torch.save({'model': {f'module.{k}': v for k, v in source.state_dict().items()}, 'epoch': 4}, path)
    target = load_weights(timm.create_model('resnet10t', num_classes=3), path)
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
    # the head check is the same for every model: it names both class counts and the fix
    with pytest.raises(CheckpointError, match=r'r\.pth has a 3-class head but the model has 7 classes; create '
                                              r'the model with num_classes=3'):
        load_weights(timm.create_model('resnet10t', num_classes=7), path)
    # another architecture: one line naming the checkpoint, the model and the first misfit
    with pytest.raises(CheckpointError, match=r'^from disk does not fit resnet14t: Missing key\(s\)'):
        load_weights(timm.create_model('resnet14t', num_classes=3), source.state_dict(), source='from disk')


def test_load_weights_reset_head_and_input_channels(tmp_path):
    source = timm.create_model('uniconvnet_a', num_classes=4, **TINY_A)
    notes = []
    model = timm.create_model('uniconvnet_a', num_classes=2, in_chans=1, **TINY_A)
    load_weights(model, source.state_dict(), reset_head=True, source='ft.pth', log=notes.append)
    assert notes == ['ft.pth has a 4-class head and the model has 2 classes: the head is re-initialised']
    # the body is the checkpoint's, the single input channel is the sum over RGB (timm's adapt_input_conv)
    torch.testing.assert_close(model.stages[3].blocks[0].ls_mlp.gamma, source.stages[3].blocks[0].ls_mlp.gamma)
    torch.testing.assert_close(model.stem[0].weight[:, 0], source.stem[0].weight.sum(1))
    assert model.head.fc.weight.shape == (2, 128)


def test_is_uniconvnet_by_name_and_by_model():
    from uniconvnet import is_uniconvnet
    assert is_uniconvnet('uniconvnet_t') and is_uniconvnet('uniconvnet_t.in1k')
    assert not is_uniconvnet('resnet18') and not is_uniconvnet('uniconvnet_zz')
    assert is_uniconvnet(timm.create_model('uniconvnet_a', device='meta'))
    assert is_uniconvnet(timm.create_model('uniconvnet_a', features_only=True, device='meta'))
    assert not is_uniconvnet(timm.create_model('resnet10t', device='meta'))


def _timm_train_checkpoint(folder, args_extra=None):
    """What timm's train.py leaves: CheckpointSaver with the run's argparse.Namespace, EMA and the AMP scaler."""
    import argparse

    from timm.utils import CheckpointSaver, ModelEmaV3, NativeScaler
    model = timm.create_model('uniconvnet_a', num_classes=3)
    ema = ModelEmaV3(model, decay=0.5)
    with torch.no_grad():
        for p in ema.module.parameters():
            p.add_(0.25)  # EMA weights that differ from the model's
    args = argparse.Namespace(model='uniconvnet_a', img_size=32, input_size=None, crop_pct=None, mean=None,
                              std=None, interpolation='', in_chans=None, num_classes=3, lr=None, opt='adamw',
                              decay_milestones=[90, 180], **(args_extra or {}))
    folder.mkdir(parents=True, exist_ok=True)
    saver = CheckpointSaver(model, torch.optim.AdamW(model.parameters()), args=args, model_ema=ema,
                            amp_scaler=NativeScaler(device='cpu'), checkpoint_dir=str(folder),
                            recovery_dir=str(folder))
    saver.save_checkpoint(epoch=0, metric=12.5)
    return folder / 'model_best.pth.tar', model, ema.module


def test_timm_train_checkpoint_converts_to_a_hub_folder(tmp_path, capsys):
    import json

    from safetensors.torch import load_file
    path, model, ema = _timm_train_checkpoint(tmp_path / 'timm-run')
    # every route that loads weights names the command that converts it, in one line
    for args in (['eval', '--checkpoint', path], ['predict', path, '--checkpoint', path]):
        assert cli_main([str(a) for a in args]) == 2
        err = capsys.readouterr().err
        assert err.count('\n') == 1 and f'uniconvnet convert {path} OUTPUT_FOLDER' in err, err
    with pytest.raises(CheckpointError, match="checkpoint of timm's train.py.*uniconvnet convert"):
        load_weights(timm.create_model('uniconvnet_a', num_classes=3), path)

    assert cli_main(['convert', str(path), str(tmp_path / 'out')]) == 0
    weights = load_file(tmp_path / 'out' / 'model.safetensors')
    torch.testing.assert_close(weights, model.state_dict(), rtol=0, atol=0)
    config = json.loads((tmp_path / 'out' / 'config.json').read_text())
    assert config['architecture'] == 'uniconvnet_a' and config['num_classes'] == 3
    assert config['pretrained_cfg']['input_size'] == [3, 32, 32]  # timm's --img-size 32, read from its args
    loaded = timm.create_model(f'local-dir:{tmp_path / "out"}', pretrained=True)
    torch.testing.assert_close(loaded.state_dict(), model.state_dict(), rtol=0, atol=0)

    assert cli_main(['convert', str(path), str(tmp_path / 'ema.safetensors'), '--use-ema']) == 0
    torch.testing.assert_close(load_file(tmp_path / 'ema.safetensors'), ema.state_dict(), rtol=0, atol=0)
    assert 'EMA weights' in capsys.readouterr().out
    # a name that does not fit the weights stops before anything is written
    assert cli_main(['convert', str(path), str(tmp_path / 'p0'), '--model', 'uniconvnet_p0']) == 2
    assert 'checkpoint is for uniconvnet_a' in capsys.readouterr().err and not (tmp_path / 'p0').exists()


def test_timm_train_checkpoint_with_other_objects_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / 'pwned'
    monkeypatch.setenv('PWNED_MARKER', str(marker))
    # the allow-list is argparse.Namespace alone: anything else inside the args is still refused
    path, _, _ = _timm_train_checkpoint(tmp_path / 'evil', args_extra={'payload': _RunsCode()})
    assert cli_main(['convert', str(path), str(tmp_path / 'out')]) == 2
    assert not marker.exists() and not (tmp_path / 'out').exists()
    with pytest.raises(CheckpointError, match='refusing to load'):
        from uniconvnet.checkpoints import load_timm_train_checkpoint
        load_timm_train_checkpoint(path)
    assert not marker.exists()
