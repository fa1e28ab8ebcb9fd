"""``uniconvnet yolo predict``: plain and SAHI-sliced prediction, outputs, and one-line errors for bad input."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault('YOLO_OFFLINE', '1')  # nothing here needs the internet; ultralytics reads it on import
pytest.importorskip('ultralytics', reason='the ultralytics extra: pip install "uniconvnet[ultralytics]"')

from PIL import Image  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402

from uniconvnet.cli.main import main  # noqa: E402
from uniconvnet.integrations import ultralytics as uyolo  # noqa: E402
from uniconvnet.integrations.ultralytics.predict import predict_image  # noqa: E402

CANVAS = 64


@pytest.fixture(scope='module')
def weights(tmp_path_factory) -> Path:
    """A yolo11n-rfa-neck checkpoint for 64 px images, saved as ultralytics saves trained ones, with random
    weights: what is tested here is where boxes go, not how good they are. Its output layers are scaled up
    (ultralytics starts every box at the same size and every score near 1e-4), so that boxes differ."""
    uyolo.register()
    torch.manual_seed(0)
    model = DetectionModel(uyolo.model_yaml('yolo11n-rfa-neck.yaml'), nc=10, verbose=False)
    with torch.no_grad():
        for box, cls in zip(model.model[-1].cv2, model.model[-1].cv3):
            box[-1].weight.mul_(30)
            box[-1].bias.view(4, -1)[:, 1] += 6.0  # distances near one stride: boxes of 2 strides, not the image
            cls[-1].weight.mul_(30)
            cls[-1].bias.normal_(-2.0, 1.0)
    model.names = {i: str(i) for i in range(10)}
    model.args = {'imgsz': CANVAS, 'task': 'detect'}
    path = tmp_path_factory.mktemp('predict') / 'random.pt'
    torch.save({'model': model, 'train_args': model.args}, path)
    return path


@pytest.fixture(scope='module')
def tiled(tmp_path_factory) -> Path:
    """A 2x2 tiling of one textured 64 px canvas: 128 x 128 px."""
    rng = np.random.default_rng(0)
    tile = (rng.uniform(0, 1, (CANVAS // 8, CANVAS // 8, 3)).repeat(8, 0).repeat(8, 1) * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp('images') / 'tiled.png'
    Image.fromarray(np.tile(tile, (2, 2, 1))).save(path)
    return path


def test_sliced_prediction_is_plain_prediction_of_each_tile(weights, tiled):
    pytest.importorskip('sahi', reason='the sahi extra: pip install "uniconvnet[sahi]"')
    yolo = uyolo.load_model(weights)
    image = np.asarray(Image.open(tiled).convert('RGB'))
    plain = predict_image(yolo, image[:CANVAS, :CANVAS], imgsz=CANVAS, conf=0.4)
    sliced = predict_image(yolo, image, slice_size=CANVAS, overlap=0.0, conf=0.4)
    assert len(plain) > 10
    # every slice is the same canvas: its boxes, moved back by the slice's offset, are the same in all four
    quadrants = {}
    for d in sliced:
        dx, dy = (CANVAS if d.xyxy[0] >= CANVAS else 0), (CANVAS if d.xyxy[1] >= CANVAS else 0)
        box = (d.xyxy[0] - dx, d.xyxy[1] - dy, d.xyxy[2] - dx, d.xyxy[3] - dy)
        assert max(box[2], box[3]) <= CANVAS + 0.5  # inside its slice
        quadrants.setdefault((dx, dy), []).append((*np.round(box, 1), d.cls, round(d.score, 4)))
    assert sorted(quadrants) == [(0, 0), (0, CANVAS), (CANVAS, 0), (CANVAS, CANVAS)]
    assert all(sorted(q) == sorted(quadrants[0, 0]) for q in quadrants.values())
    # and they are the plain prediction of the canvas after SAHI's merging: each merged box keeps the class and
    # score of one plain box and contains it
    for *box, cls, score in quadrants[0, 0]:
        assert any(p.cls == cls and abs(p.score - score) < 1e-3 and box[0] <= p.xyxy[0] + 0.1
                   and box[1] <= p.xyxy[1] + 0.1 and p.xyxy[2] <= box[2] + 0.1 and p.xyxy[3] <= box[3] + 0.1
                   for p in plain)


def test_cli_predict_writes_annotated_images_and_coco_results(weights, tiled, tmp_path, capsys):
    pytest.importorskip('sahi', reason='the sahi extra: pip install "uniconvnet[sahi]"')
    out = tmp_path / 'out'
    assert main(['yolo', 'predict', str(tiled), '--weights', str(weights), '--slice', '64', '--overlap', '0.25',
                 '--conf', '0.4', '--out', str(out)]) == 0
    assert 'detections' in capsys.readouterr().out
    results = json.loads((out / 'predictions.json').read_text())
    assert results and {r['file_name'] for r in results} == {'tiled.png'}
    assert all(set(r) == {'image_id', 'file_name', 'category_id', 'bbox', 'score'} for r in results)
    assert all(1 <= r['category_id'] <= 10 and r['score'] >= 0.4 for r in results)
    boxes = np.array([r['bbox'] for r in results])  # [x, y, w, h] in the full image
    assert (boxes[:, 2:] > 0).all() and (boxes[:, :2] >= -1).all() and (boxes[:, :2] + boxes[:, 2:] <= 129).all()
    assert Image.open(out / 'tiled.png').size == (128, 128)  # the annotated copy


@pytest.mark.parametrize('args, message', [
    (['--weights', 'missing.pt'], 'weights not found: missing.pt'),
    (['--slice', '256'], 'slice 256 is larger than .*tiled.png \\(128x128\\): use a slice of at most 128 px'),
    (['--slice', '64', '--overlap', '1.0'], 'overlap 1.0 is outside \\[0, 1\\)'),
    (['--slice', '64', '--overlap', '-0.1'], 'overlap -0.1 is outside \\[0, 1\\)'),
])
def test_cli_predict_bad_input_is_one_line(weights, tiled, tmp_path, capsys, args, message):
    argv = ['yolo', 'predict', str(tiled), '--weights', str(weights), '--out', str(tmp_path / 'out')]
    assert main(argv + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert re.search(message, err[0]), err[0]


def test_cli_predict_unreadable_image_and_empty_folder(weights, tmp_path, capsys):
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'not a png')
    assert main(['yolo', 'predict', str(broken), '--weights', str(weights), '--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f'cannot read image {broken}' in err[0]
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert main(['yolo', 'predict', str(empty), '--weights', str(weights), '--out', str(tmp_path / 'o')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f'{empty} holds no image' in err[0]
