"""ultralytics integration: shipped YAMLs, the parser's bookkeeping, training, reloading, ONNX, bad input."""
import copy
import csv
import json
import math
import os
import pickle
import subprocess
import sys

import pytest
import torch

os.environ.setdefault('YOLO_OFFLINE', '1')  # nothing here needs the internet; ultralytics reads it on import
pytest.importorskip('ultralytics', reason='the ultralytics extra: pip install "uniconvnet[ultralytics]"')

import yaml  # noqa: E402  (ultralytics brings PyYAML)
from ultralytics import YOLO  # noqa: E402
from ultralytics.nn import tasks  # noqa: E402

from uniconvnet.cli.main import main  # noqa: E402
from uniconvnet.data.yolo import small_objects_yolo  # noqa: E402
from uniconvnet.integrations import ultralytics as uyolo  # noqa: E402

from conftest import REPO  # noqa: E402

SHIPPED = ['yolo11n-rfa-neck.yaml', 'yolo11n-c3k2rfa.yaml', 'yolo11n-uniconvnet-a.yaml']
OUR_BLOCKS = (uyolo.RFABlock, uyolo.C3k2RFA, uyolo.UniConvNetBackbone)


def _shipped_dict(name: str, scale: str = 'n') -> dict:
    generic = name.replace('yolo11n-', 'yolo11-')
    return yaml.safe_load((uyolo.MODEL_YAML_DIR / generic).read_text()) | {'scale': scale}


# a model YAML's rows without a head, enough for the parser
SMALL_YAML = {'nc': 10, 'scales': {'n': [0.5, 0.25, 1024], 'm': [0.5, 1.0, 512]},
              'backbone': [[-1, 1, 'Conv', [64, 3, 2]], [-1, 2, 'C3k2RFA', [256, False, 0.5]],
                           [-1, 1, 'RFABlock', [128]]],
              'head': []}


@pytest.fixture(scope='module', autouse=True)
def _registered():
    uyolo.register()


def test_shipped_yamls_are_package_data():
    assert uyolo.list_model_yamls() == sorted(SHIPPED)
    config = (REPO / 'pyproject.toml').read_text()
    # every YAML of the package is package data (.ci/check_wheel.py checks the built wheel holds them)
    assert 'uniconvnet = ["**/*.yaml"]' in config


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_yaml_builds_and_runs_at_batch_1_and_2(name):
    # building runs ultralytics' stride probe: a batch-1 forward on the CPU
    model = tasks.DetectionModel(uyolo.model_yaml(name), nc=10, verbose=False)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert any(isinstance(m, OUR_BLOCKS) for m in model.model)
    model.eval()
    with torch.no_grad():
        for batch in (1, 2):
            out, raw = model(torch.rand(batch, 3, 64, 64))
            # (x, y, w, h) + 10 class scores at 8x8 + 4x4 + 2x2 anchor points: strides 8, 16, 32
            assert out.shape == (batch, 4 + 10, 84)
            assert [tuple(f.shape[-2:]) for f in raw['feats']] == [(8, 8), (4, 4), (2, 2)]
            assert torch.isfinite(out).all()


def test_rfa_neck_adds_exactly_the_rfa_blocks_to_yolo11n():
    # the parser's bookkeeping: inserting RFA rows leaves every other layer of yolo11n as it was
    base = tasks.DetectionModel('yolo11n.yaml', nc=10, verbose=False)
    rfa = tasks.DetectionModel(uyolo.model_yaml('yolo11n-rfa-neck.yaml'), nc=10, verbose=False)
    blocks = [m for m in rfa.model if isinstance(m, uyolo.RFABlock)]
    assert [b.rfa.dim for b in blocks] == [64, 128, 256]  # P3, P4, P5 widths of yolo11n's neck
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(rfa) == count(base) + sum(count(b) for b in blocks)


def test_parser_scales_our_blocks_like_its_own():
    layers, _ = tasks.parse_model(copy.deepcopy(SMALL_YAML) | {'scale': 'n'}, ch=3, verbose=False)
    c3k2rfa, rfa = layers[1], layers[2]
    assert c3k2rfa.cv2.conv.out_channels == 64 and len(c3k2rfa.m) == 1  # width 0.25, depth 0.5 of 2
    assert isinstance(c3k2rfa.m[0], uyolo.RFABlock)
    # the RFA runs at its input width (64), a 1x1 Conv takes it to the scaled output width, 128 * 0.25
    assert rfa.rfa.dim == 64 and rfa.proj.conv.out_channels == 32
    # at the m scale the parser sets c3k, as it does for C3k2: inner blocks become C3kRFA
    layers, _ = tasks.parse_model(copy.deepcopy(SMALL_YAML) | {'scale': 'm'}, ch=3, verbose=False)
    assert isinstance(layers[1].m[0], uyolo.C3kRFA) and layers[1].cv2.conv.out_channels == 256


def test_register_is_idempotent():
    first = tasks.parse_model
    uyolo.register()
    uyolo.register()
    assert tasks.parse_model is first and uyolo.is_registered()
    assert not getattr(first.__wrapped__, '_uniconvnet_extended', False)  # wraps the original, not itself
    assert all(getattr(tasks, name) is cls for name, cls in uyolo.YAML_MODULES.items())


def test_rfa_where_width_does_not_split_names_layer_and_channels():
    d = _shipped_dict('yolo11n-rfa-neck.yaml')
    d['backbone'][0] = [-1, 1, 'RFABlock', [64]]  # on the 3-channel image
    with pytest.raises(ValueError, match=r'layer 0 \(RFABlock.*3 input channels.*3 channels cannot be split '
                                         r'into 4 equal parts'):
        tasks.DetectionModel(d, nc=10, verbose=False)
    d = _shipped_dict('yolo11n-c3k2rfa.yaml')
    d['backbone'][4] = [-1, 2, 'C3k2RFA', [512, False, 0.3]]  # hidden width int(128 * 0.3) = 38
    with pytest.raises(ValueError, match=r'layer 4 \(C3k2RFA.*38 channels cannot be split.*36 or 40'):
        tasks.DetectionModel(d, nc=10, verbose=False)


def test_backbone_loads_local_weights_and_model_kwargs(tmp_path):
    import uniconvnet
    from uniconvnet.checkpoints import save_safetensors
    source = uniconvnet.create_model('uniconvnet_a')
    save_safetensors(source.state_dict(), tmp_path / 'a.safetensors')
    backbone = uyolo.UniConvNetBackbone('uniconvnet_a', weights=str(tmp_path / 'a.safetensors'))
    expected = source.state_dict()  # features_only names stem_0 / stages_1 what the model names stem.0 / stages.1
    loaded = {k.replace('stem_', 'stem.').replace('stages_', 'stages.'): v
              for k, v in backbone.body.state_dict().items()}
    assert loaded and all(torch.equal(v, expected[k]) for k, v in loaded.items())
    fresh = uyolo.UniConvNetBackbone('uniconvnet_a', model_kwargs={'ls_init_value': 1.0})
    assert all(torch.all(p == 1.0) for n, p in fresh.named_parameters() if n.endswith('gamma'))
    with pytest.raises(FileNotFoundError, match='nope.safetensors'):
        uyolo.UniConvNetBackbone('uniconvnet_a', weights=str(tmp_path / 'nope.safetensors'))


TRUNK = ['stem_1', 'stem_4', 'stages_1.downsample.0', 'stages_2.downsample.0', 'stages_3.downsample.0']


def _norms(backbone) -> dict:
    return {n: type(m).__name__ for n, m in backbone.body.named_modules()
            if isinstance(m, (torch.nn.LayerNorm, torch.nn.BatchNorm2d))}


def test_from_scratch_backbone_has_batchnorm_trunk(tmp_path):
    import uniconvnet
    from uniconvnet.checkpoints import save_safetensors
    scratch = _norms(uyolo.UniConvNetBackbone('uniconvnet_a'))
    assert sorted(n for n, kind in scratch.items() if kind == 'BatchNorm2d') == sorted(TRUNK)
    assert sum(kind != 'BatchNorm2d' for kind in scratch.values()) > 20  # the blocks keep their LayerNorms
    assert 'BatchNorm2d' not in _norms(uyolo.UniConvNetBackbone('uniconvnet_a', trunk_norm='model')).values()
    save_safetensors(uniconvnet.create_model('uniconvnet_a').state_dict(), tmp_path / 'a.safetensors')
    # with weights the model is the paper's, unless asked otherwise
    pretrained = _norms(uyolo.UniConvNetBackbone('uniconvnet_a', weights=str(tmp_path / 'a.safetensors')))
    assert 'BatchNorm2d' not in pretrained.values()
    with pytest.raises(ValueError, match="trunk_norm 'group' is not one of auto, batch, layer, model"):
        uyolo.UniConvNetBackbone('uniconvnet_a', trunk_norm='group')
    # the trunk is the model's own option (UniConvNet's trunk_norm), which other timm models do not have
    assert uyolo.UniConvNetBackbone('uniconvnet_a').trunk_norm == 'batch'
    assert uyolo.UniConvNetBackbone('uniconvnet_a', trunk_norm='layer').trunk_norm == 'layer'
    with pytest.raises(ValueError, match="trunk_norm 'batch' is an option of UniConvNet variants; resnet18 keeps"):
        uyolo.UniConvNetBackbone('resnet18', out_indices=(2, 3, 4), trunk_norm='batch')


def test_training_recipe_steps_every_batch_for_a_from_scratch_backbone(tmp_path):
    import uniconvnet
    from uniconvnet.checkpoints import save_safetensors
    assert uyolo.training_recipe('yolo11n-uniconvnet-a.yaml', batch=16) == {'nbs': 16}
    assert uyolo.training_recipe('yolo11s-uniconvnet-a.yaml', batch=32) == {'nbs': 32}
    assert uyolo.training_recipe('yolo11n-uniconvnet-a.yaml', batch=-1) == {'nbs': 16}  # autobatch
    assert uyolo.training_recipe('yolo11n-c3k2rfa.yaml') == {}  # models without the backbone keep the defaults
    assert uyolo.training_recipe('yolo11n.yaml') == {}
    save_safetensors(uniconvnet.create_model('uniconvnet_a').state_dict(), tmp_path / 'a.safetensors')
    pretrained = uyolo.UniConvNetBackbone('uniconvnet_a', weights=str(tmp_path / 'a.safetensors'))
    assert uyolo.training_recipe(torch.nn.Sequential(pretrained)) == {}
    assert uyolo.training_recipe(torch.nn.Sequential(uyolo.UniConvNetBackbone('uniconvnet_a'))) == {'nbs': 16}


def test_training_recipe_reads_backbones_pickled_before_trunk_norm():
    # uniconvnet before trunk_norm swapped the trunk's LayerNorms for BatchNorms after building a LayerNorm model and
    # kept a from_scratch flag; such a backbone (as a best.pt unpickles it) still gets the from-scratch recipe
    old = uyolo.UniConvNetBackbone('uniconvnet_a', trunk_norm='layer')
    for name in TRUNK:
        parent, _, child = name.rpartition('.')
        module = old.body.get_submodule(parent) if parent else old.body
        setattr(module, child, torch.nn.BatchNorm2d(getattr(module, child).normalized_shape[0]))
    old.__dict__['from_scratch'] = True
    restored = pickle.loads(pickle.dumps(old))
    assert restored.trunk_norm == 'batch'
    assert uyolo.training_recipe(torch.nn.Sequential(restored), batch=8) == {'nbs': 8}


def _small_object_canvases(n: int = 8, size: int = 64, seed: int = 0):
    """Noisy flat canvases of random grey levels with four 4-8 px squares each, and the squares' mask."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 1, 1, generator=g).expand(n, 3, size, size).clone() * 0.5 + 0.25
    mask = torch.zeros(n, 1, size, size, dtype=torch.bool)
    for i in range(n):
        for _ in range(4):
            side = int(torch.randint(4, 9, (1,), generator=g))
            row, col = torch.randint(0, size - side, (2,), generator=g).tolist()
            x[i, :, row:row + side, col:col + side] = torch.rand(3, 1, 1, generator=g)
            mask[i, :, row:row + side, col:col + side] = True
    return (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1), mask


def _object_contrast(features: torch.Tensor, mask: torch.Tensor) -> float:
    """Energy of each pixel's deviation from its image's mean feature, object pixels over background pixels."""
    energy = (features - features.mean((2, 3), keepdim=True)).pow(2).sum(1, keepdim=True)
    objects = torch.nn.functional.max_pool2d(mask.float(), mask.shape[-1] // features.shape[-1]) > 0
    return (energy[objects].mean() / energy[~objects].mean()).item()


def test_batchnorm_trunk_keeps_small_objects_standing_out():
    # the root cause of the from-scratch failure (docs/yolo.md): a per-pixel LayerNorm after the stem convolution
    # divides every pixel by its own response size, so small objects no longer stand out from the background;
    # the BatchNorm of the from-scratch backbone keeps most of their contrast
    images, mask = _small_object_canvases()
    kept = {}
    for trunk in ('auto', 'model'):
        torch.manual_seed(0)
        backbone = uyolo.UniConvNetBackbone('uniconvnet_a', trunk_norm=trunk).train()
        with torch.no_grad():
            conv = backbone.body.stem_0((images - backbone.input_mean) / backbone.input_std)
            kept[trunk] = _object_contrast(backbone.body.stem_1(conv), mask) / _object_contrast(conv, mask)
    assert kept['auto'] > 0.5 and kept['model'] < 0.4, kept


def test_backbone_index_rows_must_declare_true_channels():
    d = _shipped_dict('yolo11n-uniconvnet-a.yaml')
    d['backbone'][2] = [0, 1, 'Index', [128, 1]]
    with pytest.raises(ValueError, match=r'layer 2 \(Index\): declares 128 channels .* has 96; write \[96, 1\]'):
        tasks.DetectionModel(d, nc=10, verbose=False)


def test_reduced_precision_forward_and_backward():
    # ultralytics trains with AMP only on accelerators; bfloat16 autocast on the CPU runs the same mixed
    # precision path through our blocks (convolutions in reduced precision, the RFA's LayerNorms among them)
    layers, _ = tasks.parse_model(copy.deepcopy(SMALL_YAML) | {'scale': 'n'}, ch=3, verbose=False)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = layers(torch.rand(2, 3, 64, 64))
    assert y.dtype == torch.bfloat16 and y.shape == (2, 32, 32, 32)
    y.float().square().mean().backward()
    grads = [p.grad for p in layers.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


# --- one training run, reused: reload in a fresh process, CLI validation, ONNX export --------------------------------

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """One epoch of a small model holding all three blocks, on a tiny generated set."""
    root = tmp_path_factory.mktemp('yolo')
    data = small_objects_yolo(root / 'data', num_train=16, num_val=8)
    d = _shipped_dict('yolo11n-uniconvnet-a.yaml')
    d['head'][2] = [-1, 1, 'C3k2RFA', [512, False]]  # layer 8
    d['head'][8] = [-1, 1, 'RFABlock', [512]]  # layer 14: 192 -> 128 channels
    cfg = root / 'yolo11n-all-blocks.yaml'
    cfg.write_text(yaml.safe_dump({k: v for k, v in d.items() if k != 'scale'}))
    best = uyolo.train(cfg, data=data, epochs=1, imgsz=64, batch=8, workers=0, project=root / 'runs', name='all')
    return best, data


@pytest.mark.slow
def test_one_epoch_trains_and_saves(trained):
    best, _ = trained
    assert best.is_file() and best.name == 'best.pt'
    rows = list(csv.DictReader((best.parent.parent / 'results.csv').open()))
    assert len(rows) == 1
    losses = {k.strip(): float(v) for k, v in rows[0].items() if 'loss' in k}
    assert losses and all(math.isfinite(v) for v in losses.values())
    layers = [type(m) for m in YOLO(str(best)).model.model]
    assert all(layers.count(cls) == 1 for cls in OUR_BLOCKS)
    # train() applied the from-scratch backbone's recipe: an optimizer step every batch of 8
    assert yaml.safe_load((best.parent.parent / 'args.yaml').read_text())['nbs'] == 8


@pytest.mark.slow
def test_reload_and_predict_in_fresh_process(trained, tmp_path):
    best, data = trained
    image = data.parent / 'val' / 'images' / '00001.png'
    expected = YOLO(str(best)).predict(str(image), imgsz=64, conf=0.001, device='cpu', verbose=False)[0]
    script = tmp_path / 'fresh.py'
    script.write_text(f'''
import json, sys
from ultralytics import YOLO
from ultralytics.nn import tasks
import uniconvnet.integrations.ultralytics as uyolo   # import only: register() is not called
result = YOLO({str(best)!r}).predict({str(image)!r}, imgsz=64, conf=0.001, device='cpu', verbose=False)[0]
try:
    tasks.DetectionModel(uyolo.model_yaml('yolo11n-rfa-neck.yaml'), nc=10, verbose=False)
    message = ''
except RuntimeError as e:
    message = str(e)
print(json.dumps({{'boxes': result.boxes.xyxy.tolist(), 'conf': result.boxes.conf.tolist(), 'message': message}}))
''')
    env = dict(os.environ, YOLO_OFFLINE='1', PYTHONPATH=str(REPO / 'src'))
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    fresh = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(fresh['conf']) == len(expected.boxes) > 0
    assert torch.allclose(torch.tensor(fresh['boxes']), expected.boxes.xyxy, atol=1e-3)
    # building from a YAML before register() says what to do
    assert 'register() was called: call register() once' in fresh['message']


@pytest.mark.slow
def test_cli_val_reports_coco_small_object_ap(trained, capsys):
    best, data = trained
    capsys.readouterr()
    assert main(['yolo', 'eval', '--weights', str(best), '--data', str(data), '--imgsz', '64', '--workers', '0']) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    metrics = json.loads('\n'.join(lines[len(lines) - 1 - lines[::-1].index('{'):]))  # the printed JSON, last
    # ultralytics' mAPs and, from the COCO json of the generated set, pycocotools' AP by object size
    assert set(metrics) >= {'mAP50-95', 'mAP50', 'AP', 'AP50', 'APs', 'APm', 'APl'}
    assert 0 <= metrics['APs'] <= 1 and metrics['APm'] == -1 and metrics['APl'] == -1  # every object is small


@pytest.mark.slow
def test_onnx_export_matches_pytorch(trained):
    ort = pytest.importorskip('onnxruntime')
    best, _ = trained
    model = YOLO(str(best))
    onnx_path = model.export(format='onnx', imgsz=64, simplify=False, dynamic=False, device='cpu')
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = YOLO(str(best)).model.float().eval()(x)[0]
    session = ort.InferenceSession(onnx_path, providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    assert got.shape == tuple(expected.shape)
    assert torch.allclose(torch.from_numpy(got), expected, atol=1e-3, rtol=1e-3)


def test_cli_bad_input_exits_2(capsys):
    assert main(['yolo', 'val', '--cfg', 'yolo11n-nope.yaml']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'yolo11n-nope.yaml' in err[0] and 'yolo11n-rfa-neck.yaml' in err[0]
