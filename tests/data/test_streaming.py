"""Streaming data: webdataset shards and Hugging Face datasets through timm's readers, sharded across torchrun
processes (2 on one machine, and 2 simulated nodes on localhost) and DataLoader workers, every sample once."""
import json
import os
import socket
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from uniconvnet.cli.main import main as cli_main
from uniconvnet.data.streaming import samples_per_worker, write_webdataset_shards

from conftest import REPO

pytest.importorskip('webdataset', reason="pip install 'uniconvnet[stream]'")
datasets = pytest.importorskip('datasets', reason="pip install 'uniconvnet[stream]'")

RECORD = REPO / 'tests' / 'scripts' / 'record_stream_samples.py'
NUM_CLASSES = 3
TRAIN_IDS = list(range(48))  # 8 shards of 6: 2 per DataLoader worker for 2 processes x 2 workers, batch 3
VAL_IDS = list(range(1000, 1014))  # 14: shards of 5, 5 and 4, unevenly spread over the processes


def label_of(sample_id: int) -> int:
    return sample_id % NUM_CLASSES


def image_of(sample_id: int) -> Image.Image:
    """An 8x8 image whose first pixel holds its id (red + 256 * green): read back after any loader."""
    pixels = np.zeros((8, 8, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = sample_id % 256, sample_id // 256, 60 * label_of(sample_id)
    return Image.fromarray(pixels)


def id_of(image: Image.Image) -> int:
    red, green, _ = image.convert('RGB').getpixel((0, 0))
    return red + 256 * green


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    """The same images as an image folder, webdataset shards, a save_to_disk folder and parquet shards."""
    root = tmp_path_factory.mktemp('stream')
    for split, ids in (('train', TRAIN_IDS), ('val', VAL_IDS)):
        for i in ids:
            folder = root / 'folder' / split / f'class{label_of(i)}'
            folder.mkdir(parents=True, exist_ok=True)
            image_of(i).save(folder / f'{i:05d}.png')
    write_webdataset_shards(root / 'folder', root / 'shards', shard_size=6, log=lambda line: None)
    # 10 shards of 4-5: some loader workers get 2 shards, some 3 (timm alone would repeat the short ones' samples)
    write_webdataset_shards(root / 'folder', root / 'uneven', shard_size=5, log=lambda line: None)

    features = datasets.Features({'image': datasets.Image(),
                                  'label': datasets.ClassLabel(names=[f'class{c}' for c in range(NUM_CLASSES)])})

    def hf(ids):
        return datasets.Dataset.from_dict({'image': [image_of(i) for i in ids], 'label': [label_of(i) for i in ids]},
                                          features=features)
    datasets.DatasetDict(train=hf(TRAIN_IDS), validation=hf(VAL_IDS)).save_to_disk(str(root / 'saved'))
    # a Hub-style dataset folder: parquet shards and the dataset card's metadata (what streaming needs)
    parquet = root / 'parquet'
    (parquet / 'data').mkdir(parents=True)
    for k in range(4):
        hf(TRAIN_IDS[12 * k:12 * (k + 1)]).to_parquet(str(parquet / 'data' / f'train-{k:05d}-of-00004.parquet'))
    hf(VAL_IDS).to_parquet(str(parquet / 'data' / 'validation-00000-of-00001.parquet'))
    names = ''.join(f"          '{c}': class{c}\n" for c in range(NUM_CLASSES))
    (parquet / 'README.md').write_text(
        '---\ndataset_info:\n  features:\n  - name: image\n    dtype: image\n  - name: label\n    dtype:\n'
        f'      class_label:\n        names:\n{names}  splits:\n  - name: train\n    num_examples: {len(TRAIN_IDS)}\n'
        f'  - name: validation\n    num_examples: {len(VAL_IDS)}\nconfigs:\n- config_name: default\n  data_files:\n'
        '  - split: train\n    path: data/train-*\n  - split: validation\n    path: data/validation-*\n---\n')
    return root


def _env(tmp_path: Path) -> dict:
    return dict(os.environ, OMP_NUM_THREADS='1', NUMBA_NUM_THREADS='1', HF_HUB_OFFLINE='1',
                HF_DATASETS_CACHE=str(tmp_path / 'hf-cache'))


def _records(out: Path, ranks: int) -> list:
    files = sorted(out.glob('rank*.json'))
    assert len(files) == ranks, [f.name for f in files]
    return [json.loads(f.read_text()) for f in files]


def _check_once_per_epoch(records: list, data: str, epochs: int = 2) -> None:
    """Every training sample exactly once per epoch over all processes and workers, validation exactly once."""
    assert len({r[data]['batches'] for r in records}) == 1, data  # every process runs the same number of steps
    orders = []
    for epoch in range(epochs):
        seen = [tuple(pair) for r in records for pair in r[data]['train'][epoch]]
        counts = Counter(i for i, _ in seen)
        assert sorted(counts) == TRAIN_IDS and set(counts.values()) == {1}, (data, epoch, counts.most_common(3))
        assert all(label == label_of(i) for i, label in seen), data
        orders.append([i for i, _ in seen])
    assert orders[0] != orders[1], data  # reshuffled every epoch
    val = Counter(i for r in records for i, label in r[data]['val'] if label == label_of(i))
    assert sorted(val) == VAL_IDS and set(val.values()) == {1}, (data, val)


@pytest.mark.slow
def test_two_processes_see_every_sample_once_per_epoch(sources, tmp_path):
    data = [f'wds/{sources / "shards"}', str(sources / 'saved'), f'hfds/{sources / "parquet"}',
            f'hfids/{sources / "parquet"}', f'wds/{sources / "uneven"}']
    res = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
                          str(RECORD), '--out', str(tmp_path), '--data', *data],
                         capture_output=True, text=True, timeout=600, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    records = _records(tmp_path, 2)
    for source in data[:-1]:
        _check_once_per_epoch(records, source)
    # uneven shards: no sample twice; each of the 4 workers gives its 2 smallest shards' worth (8) in whole batches
    for epoch in range(2):
        counts = Counter(i for r in records for i, _ in r[data[-1]]['train'][epoch])
        assert set(counts.values()) == {1} and len(counts) == 4 * 6 and set(counts) <= set(TRAIN_IDS), counts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_nodes_on_localhost_see_every_sample_once_per_epoch(sources, tmp_path):
    # two torchrun launches, one per simulated node, meeting at a c10d rendezvous on 127.0.0.1
    data = [f'wds/{sources / "shards"}', str(sources / 'saved')]
    port = _free_port()
    command = [sys.executable, '-m', 'torch.distributed.run', '--nnodes', '2', '--nproc_per_node', '1',
               '--rdzv-backend', 'c10d', '--rdzv-endpoint', f'127.0.0.1:{port}', '--rdzv-id', 'stream-test',
               str(RECORD), '--out', str(tmp_path), '--data', *data]
    nodes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=_env(tmp_path)) for _ in range(2)]
    try:
        results = [node.communicate(timeout=600) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
                node.communicate(timeout=60)
    for node, (_, err) in zip(nodes, results):
        assert node.returncode == 0, err[-3000:]
    records = _records(tmp_path, 2)
    for source in data:
        _check_once_per_epoch(records, source)


def test_shards_hold_every_image_once_with_its_label(sources, capsys):
    info = json.loads((sources / 'shards' / '_info.json').read_text())
    assert info['label_names'] == [f'class{c}' for c in range(NUM_CLASSES)] and info['num_classes'] == NUM_CLASSES
    for split, ids in (('train', TRAIN_IDS), ('validation', VAL_IDS)):
        entry = info['splits'][split]
        assert entry['num_samples'] == len(ids) and sum(entry['shard_lengths']) == len(ids)
        assert max(entry['shard_lengths']) - min(entry['shard_lengths']) <= 1  # balanced
        found = {}
        for name, length in zip(entry['filenames'], entry['shard_lengths']):
            with tarfile.open(sources / 'shards' / name) as tar:
                members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
            keys = {n.rsplit('.', 1)[0] for n in members}
            assert len(keys) == length
            for key in keys:
                with Image.open(__import__('io').BytesIO(members[f'{key}.png'])) as img:
                    found[id_of(img)] = int(members[f'{key}.cls'])
        assert sorted(found) == ids and all(found[i] == label_of(i) for i in ids)
    counted = write_webdataset_shards(sources / 'folder', sources / 'four', num_shards=4, log=lambda line: None)
    assert counted['splits']['train']['shard_lengths'] == [12] * 4
    # shuffled across classes: the first shard is not one class
    assert len({label_of(i) for i in TRAIN_IDS[:6]}) > 1
    assert cli_main(['shards', str(sources / 'folder'), str(sources / 'again'), '--shard-size', '0']) == 2
    assert '--shard-size must be at least 1' in capsys.readouterr().err


def test_samples_per_worker_never_repeats_a_sample():
    # a worker takes every 4th shard of the shuffled list: at least 2 of these 9, at worst the 2 smallest
    assert samples_per_worker([6] * 8, loader_workers=4, batch_size=3) == 12  # even: every sample
    assert samples_per_worker([7, 7, 7, 7, 7, 7, 7, 7, 3], loader_workers=4, batch_size=4) == 8  # 3 + 7, whole batches
    with pytest.raises(ValueError, match='3 training shard.*4 DataLoader workers.*at least 4 shards'):
        samples_per_worker([5, 5, 5], loader_workers=4, batch_size=1)
    with pytest.raises(ValueError, match='less than one batch of 8'):
        samples_per_worker([5, 5], loader_workers=2, batch_size=8)


@pytest.mark.slow
def test_train_on_shards(sources, tmp_path):
    out = tmp_path / 'run'
    res = subprocess.run([sys.executable, '-m', 'uniconvnet', 'train', '--data', f'wds/{sources / "shards"}',
                          '--recipe', 'digits', '--image-size', '8', '--batch-size', '4', '--epochs', '1',
                          '--workers', '0', '--output', str(out)],
                         capture_output=True, text=True, timeout=300, env=_env(tmp_path))
    assert res.returncode == 0, res.stderr[-3000:]
    assert 'data shards: 48 train / 14 val images per process and epoch (streamed)' in res.stdout
    row = json.loads((out / 'metrics.jsonl').read_text().splitlines()[0])
    assert row['val_top1'] * 14 / 100 == pytest.approx(round(row['val_top1'] * 14 / 100))  # all 14 counted
    config = json.loads((out / 'config.json').read_text())
    assert config['label_names'] == [f'class{c}' for c in range(NUM_CLASSES)]


def test_bad_sources_name_the_fix(tmp_path, capsys):
    assert cli_main(['train', '--data', f'wds/{tmp_path}']) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and 'no _info.json' in err and 'uniconvnet shards' in err
    datasets.Dataset.from_dict({'image': [image_of(0)], 'label': [0]}).save_to_disk(str(tmp_path / 'single'))
    assert cli_main(['train', '--data', str(tmp_path / 'single')]) == 2
    assert 'holds a single dataset' in capsys.readouterr().err


def test_sources_are_recognised(sources):
    from uniconvnet.data import open_data_source
    names = [f'class{c}' for c in range(NUM_CLASSES)]
    assert open_data_source(str(sources / 'folder')) is None  # an image folder: the folder reader
    for data, kind in ((f'wds/{sources / "shards"}', 'wds'), (f'WDS/{sources / "shards"}', 'wds'),
                       (str(sources / 'saved'), 'saved'), (f'hfds/{sources / "saved"}', 'saved')):
        source = open_data_source(data)
        assert (source.kind, source.class_names, source.streams) == (kind, names, kind == 'wds'), data
    train, val = open_data_source(str(sources / 'saved')).datasets(1, 0, batch_size=4, workers=0, seed=0)
    assert (len(train), len(val)) == (len(TRAIN_IDS), len(VAL_IDS))
    image, label = train[5]
    assert (id_of(image), label) == (TRAIN_IDS[5], label_of(TRAIN_IDS[5]))
