"""Detection and segmentation: builders, smp, COCO evaluation with known answers, datasets, bad data."""
import json

import pytest
import torch

from uniconvnet.data.detection import CocoDetectionDataset, SegmentationFolderDataset, detection_collate
from uniconvnet.data.small_objects import generate_small_objects
from uniconvnet.evaluation import ConfusionMatrix, coco_evaluate
from uniconvnet.integrations.torchvision import (
    fasterrcnn_uniconvnet_fpn, maskrcnn_uniconvnet_fpn, retinanet_uniconvnet_fpn, uniconvnet_fpn_backbone)


@pytest.fixture(scope='module')
def small_objects(tmp_path_factory):
    return generate_small_objects(tmp_path_factory.mktemp('so'), num_train=6, num_val=4, image_size=64,
                                  size_range=(8, 16), max_objects=3)


def _targets(with_masks=False):
    t = dict(boxes=torch.tensor([[4.0, 6.0, 20.0, 24.0], [30.0, 30.0, 50.0, 44.0]]), labels=torch.tensor([1, 3]))
    if with_masks:
        t['masks'] = torch.zeros(2, 64, 64, dtype=torch.uint8)
        t['masks'][0, 6:24, 4:20] = 1
        t['masks'][1, 30:44, 30:50] = 1
    return t


@pytest.mark.parametrize('builder,masks', [(fasterrcnn_uniconvnet_fpn, False), (maskrcnn_uniconvnet_fpn, True),
                                           (retinanet_uniconvnet_fpn, False)])
def test_builders_forward_backward(builder, masks):
    model = builder(num_classes=5, min_size=64, max_size=64, trainable_stages=3, fpn_channels=32)
    assert model.backbone.out_channels == 32
    frozen = [n for n, p in model.backbone.body.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(('stem', 'stages_0')) for n in frozen)
    model.train()
    losses = model([torch.rand(3, 64, 64), torch.rand(3, 64, 64)], [_targets(masks), _targets(masks)])
    total = sum(losses.values())
    total.backward()
    assert torch.isfinite(total)
    assert model.backbone.body.stages_3.blocks[0].dcn.output_proj.weight.grad is not None
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])
    assert set(out[0]) >= {'boxes', 'labels', 'scores'}


def test_fpn_backbone_levels():
    backbone = uniconvnet_fpn_backbone('uniconvnet_a', out_channels=32)
    feats = backbone(torch.randn(1, 3, 64, 96))
    assert backbone.out_channels == 32
    assert list(feats) == ['0', '1', '2', '3', 'pool']
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    with pytest.raises(ValueError, match='trainable_stages must be between 0 and 4'):
        uniconvnet_fpn_backbone('uniconvnet_a', trainable_stages=5)


def test_fpn_backbone_from_another_timm_model():
    """The comparison baseline: a timm ResNet-18 gives the same four levels (its stride-2 stem level skipped)."""
    backbone = uniconvnet_fpn_backbone('resnet18', out_channels=32)
    assert backbone.body.feature_info.reduction() == [4, 8, 16, 32]
    feats = backbone(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in feats.values()] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    with pytest.raises(ValueError, match='needs a UniConvNet backbone'):
        uniconvnet_fpn_backbone('resnet18', trainable_stages=2)
    with pytest.raises(ValueError, match='no feature level at stride 4'):
        uniconvnet_fpn_backbone('vit_tiny_patch16_224')


def test_backbone_weights_from_official_checkpoint(official_a, tmp_path):
    path = tmp_path / 'a.pth'
    torch.save({'model': official_a['state_dict']}, path)
    backbone = uniconvnet_fpn_backbone('uniconvnet_a', backbone_weights=str(path)).eval()
    with torch.no_grad():
        feats = backbone.body(official_a['input1'])
    assert (feats[3] - official_a['features1'][3]).abs().max() <= 1e-4


def test_smp_upernet():
    smp = pytest.importorskip('segmentation_models_pytorch')
    import uniconvnet  # noqa: F401
    from uniconvnet.integrations.smp import upernet_uniconvnet
    direct = smp.UPerNet(encoder_name='tu-uniconvnet_a', encoder_weights=None, classes=4, decoder_channels=32)
    ours = upernet_uniconvnet(4, decoder_channels=32)
    for model in (direct, ours):
        out = model(torch.randn(2, 3, 64, 64))
        assert out.shape == (2, 4, 64, 64)
        out.mean().backward()


def _gt(boxes, image_size=100):
    return {
        'images': [{'id': 1, 'file_name': 'a.png', 'width': image_size, 'height': image_size}],
        'categories': [{'id': 1, 'name': 'thing'}],
        'annotations': [{'id': i + 1, 'image_id': 1, 'category_id': 1, 'bbox': b, 'area': b[2] * b[3],
                         'iscrowd': 0} for i, b in enumerate(boxes)],
    }


def test_coco_eval_perfect_predictions():
    boxes = [[10.0, 10.0, 20.0, 20.0], [50.0, 40.0, 30.0, 45.0]]
    dets = [{'image_id': 1, 'category_id': 1, 'bbox': b, 'score': 0.9} for b in boxes]
    res = coco_evaluate(_gt(boxes), dets)
    assert res['AP'] == pytest.approx(1.0) and res['AP50'] == pytest.approx(1.0) and res['AP75'] == pytest.approx(1.0)
    assert res['APs'] == pytest.approx(1.0) and res['APm'] == pytest.approx(1.0) and res['APl'] == -1


def test_coco_eval_computable_ap():
    # two objects; the top detection is exact, the second is a false positive, one object is missed:
    # precision 1 up to recall 0.5, never more recall -> 51 of COCO's 101 recall points have precision 1
    boxes = [[10.0, 10.0, 20.0, 20.0], [60.0, 60.0, 20.0, 20.0]]
    dets = [{'image_id': 1, 'category_id': 1, 'bbox': boxes[0], 'score': 0.9},
            {'image_id': 1, 'category_id': 1, 'bbox': [30.0, 70.0, 10.0, 10.0], 'score': 0.8}]
    assert coco_evaluate(_gt(boxes), dets)['AP'] == pytest.approx(51 / 101)
    assert coco_evaluate(_gt(boxes), [])['AP'] == 0.0


def test_confusion_matrix_miou():
    cm = ConfusionMatrix(3, ignore_index=255)
    target = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm.update(target, pred)
    res = cm.compute()
    # class 0: inter 1, union 3; class 1: inter 2, union 3; class 2: inter 1, union 2
    assert res['per_class_iou'] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert res['mIoU'] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert res['pixel_accuracy'] == pytest.approx(4 / 6)


def test_generated_small_objects_are_consistent(small_objects):
    train = CocoDetectionDataset(small_objects['train'].images, small_objects['train'].annotations, with_masks=True)
    assert train.class_names == [str(d) for d in range(10)]
    image, target = train[0]
    assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
    assert len(target['boxes']) == len(target['labels']) == len(target['masks']) >= 1
    widths = target['boxes'][:, 2] - target['boxes'][:, 0]
    assert (widths <= 16).all() and (widths >= 1).all()
    for box, mask in zip(target['boxes'], target['masks']):
        ys, xs = mask.nonzero(as_tuple=True)
        assert [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] == box.tolist()
    seg = SegmentationFolderDataset(small_objects['train'].images, small_objects['train'].masks, num_classes=11)
    _, semantic = seg[0]
    assert set(torch.unique(semantic).tolist()) - {0} == set((target['labels'] + 0).tolist())
    images, targets = detection_collate([train[0], train[1]])
    assert len(images) == len(targets) == 2


def test_bad_coco_json(small_objects, tmp_path, caplog):
    coco = json.loads(small_objects['train'].annotations.read_text())
    missing = dict(coco, images=coco['images'] + [{'id': 999, 'file_name': 'nope.png', 'width': 64, 'height': 64}])
    (tmp_path / 'missing.json').write_text(json.dumps(missing))
    with pytest.raises(FileNotFoundError, match=r'names 1 images that are not in .*nope\.png'):
        CocoDetectionDataset(small_objects['train'].images, tmp_path / 'missing.json')
    anns = [dict(a) for a in coco['annotations']]
    anns[0]['bbox'] = [-5.0, -5.0, 10.0, 10.0]   # reaches outside: clipped
    anns[1]['bbox'] = [10.0, 10.0, 0.0, 5.0]     # zero width: dropped
    (tmp_path / 'bad.json').write_text(json.dumps(dict(coco, annotations=anns)))
    with caplog.at_level('WARNING'):
        ds = CocoDetectionDataset(small_objects['train'].images, tmp_path / 'bad.json')
    assert ds.report['clipped'] == 1 and ds.report['zero_size'] == 1
    assert ds.report['kept'] == len(anns) - 1
    assert '1 zero size (dropped)' in caplog.text and '1 clipped (clipped to the image)' in caplog.text


def test_bad_segmentation_masks(small_objects, tmp_path):
    import shutil
    from PIL import Image
    masks = tmp_path / 'masks'
    shutil.copytree(small_objects['train'].masks, masks)
    first = sorted(masks.iterdir())[0]
    Image.fromarray((torch.ones(64, 64, dtype=torch.uint8) * 12).numpy()).save(first)
    with pytest.raises(ValueError, match=r'class ids \[12\] outside 0\.\.10'):
        SegmentationFolderDataset(small_objects['train'].images, masks, num_classes=11)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ValueError, match='no images'):
        SegmentationFolderDataset(empty, masks, num_classes=11)


def _cli(*args):
    from uniconvnet.cli.main import main
    return main([str(a) for a in args])


@pytest.mark.slow
@pytest.mark.parametrize('kind,extra', [('segment', []), ('detect', ['--arch', 'fasterrcnn', '--min-size', '64'])])
def test_train_then_eval_reproduces_val_metric(kind, extra, small_objects, tmp_path, capsys):
    # the shared trainer: checkpoints, metrics.jsonl, exported weights; eval of the export repeats the last epoch
    root = small_objects['train'].images.parent.parent
    out = tmp_path / kind
    assert _cli(kind, 'train', '--data', root, '--output', out, '--epochs', 1, '--batch-size', 2, '--workers', 0,
                '--limit-train-batches', 2, *extra) == 0
    for name in ('last.pt', 'best.pt', 'metrics.jsonl', 'model.safetensors', 'config.json'):
        assert (out / name).is_file(), name
    record = json.loads((out / 'metrics.jsonl').read_text().splitlines()[-1])
    capsys.readouterr()
    assert _cli(kind, 'eval', '--checkpoint', out, '--data', root) == 0
    metrics = json.loads(capsys.readouterr().out)
    key = 'val_mIoU' if kind == 'segment' else 'val_AP'
    assert metrics[key] == pytest.approx(record[key], abs=1e-6)
    # a second run into the same folder must not silently overwrite it
    assert _cli(kind, 'train', '--data', root, '--output', out, '--epochs', 1, *extra) == 2
