"""trunk_norm through the torchvision and smp builders and the detect/segment commands."""
import json

import pytest
import torch

from uniconvnet.data.small_objects import generate_small_objects
from uniconvnet.integrations.smp import upernet_uniconvnet
from uniconvnet.integrations.torchvision import retinanet_uniconvnet_fpn, uniconvnet_fpn_backbone
from uniconvnet.models import trunk_norm_of


def test_builders_pass_trunk_norm_to_the_backbone():
    backbone = uniconvnet_fpn_backbone('uniconvnet_a', out_channels=16, trunk_norm='batch')
    assert trunk_norm_of(backbone.body) == 'batch'
    assert trunk_norm_of(uniconvnet_fpn_backbone('uniconvnet_a', out_channels=16).body) == 'layer'
    detector = retinanet_uniconvnet_fpn(num_classes=3, fpn_channels=16, trunk_norm='batch', min_size=64, max_size=64)
    assert trunk_norm_of(detector.backbone.body) == 'batch'
    segmenter = upernet_uniconvnet(3, 'uniconvnet_a', decoder_channels=32, trunk_norm='batch')
    assert trunk_norm_of(segmenter.encoder) == 'batch'
    assert segmenter(torch.rand(2, 3, 64, 64)).shape == (2, 3, 64, 64)
    for build in (lambda: uniconvnet_fpn_backbone('resnet18', trunk_norm='batch'),
                  lambda: upernet_uniconvnet(3, 'resnet18', trunk_norm='batch')):
        with pytest.raises(ValueError, match='trunk_norm is an option of UniConvNet backbones; resnet18 keeps its own'):
            build()


def _cli(*args):
    from uniconvnet.cli.main import main
    return main([str(a) for a in args])


@pytest.mark.slow
@pytest.mark.parametrize('kind,extra', [('detect', ['--min-size', '64', '--fpn-channels', '16']), ('segment', [])])
def test_commands_record_trunk_norm_and_eval_rebuilds_it(kind, extra, tmp_path, capsys):
    root = tmp_path / 'data'
    generate_small_objects(root, num_train=4, num_val=2, image_size=64, size_range=(8, 16), max_objects=2)
    out = tmp_path / kind
    assert _cli(kind, 'train', '--data', root, '--output', out, '--epochs', 1, '--batch-size', 2, '--workers', 0,
                '--trunk-norm', 'batch', *extra) == 0
    assert json.loads((out / 'config.json').read_text())['trunk_norm'] == 'batch'
    record = json.loads((out / 'metrics.jsonl').read_text().splitlines()[-1])
    capsys.readouterr()
    # eval rebuilds the BatchNorm trunk from config.json (a LayerNorm trunk would not take the weights)
    assert _cli(kind, 'eval', '--checkpoint', out, '--data', root) == 0
    key = 'val_AP' if kind == 'detect' else 'val_mIoU'
    assert json.loads(capsys.readouterr().out)[key] == pytest.approx(record[key], abs=1e-6)
    capsys.readouterr()
    assert _cli(kind, 'train', '--data', root, '--output', tmp_path / 'r18', '--backbone', 'resnet18',
                '--trunk-norm', 'batch') == 2
    assert 'error: --trunk-norm is an option of UniConvNet backbones; resnet18' in capsys.readouterr().err
