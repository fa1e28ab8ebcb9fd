"""Data at scale: webdataset shards and Hugging Face datasets, through timm's readers, for ``uniconvnet train``.

``--data`` takes, besides an ImageNet-style folder:

- ``wds/PATH``: webdataset shards with timm's ``_info.json`` (what :func:`write_webdataset_shards` and
  ``uniconvnet shards`` write). Training reads them with timm's ``ReaderWds``: every epoch the shard list is
  shuffled with the run's seed (the same order in every process), each DataLoader worker of each process takes
  every ``G``-th shard (``G`` = processes x workers) and shuffles its samples in a buffer.
- ``hfds/NAME``: a Hugging Face dataset (a Hub name, or a local folder of parquet/arrow/image files) through
  timm's map-style ``ReaderHfds``, sharded by the same ``DistributedSampler`` as image folders.
- ``hfids/NAME``: the same, streamed (timm's ``ReaderHfids``: shards split across processes and workers by
  ``datasets``); its split sizes must be in the dataset's metadata (the scheduler needs the epoch length).
- a folder written by ``datasets``' ``save_to_disk`` (also as ``hfds/PATH``): memory-mapped with
  ``load_from_disk``, no copy into the Hugging Face cache (timm's reader has no such path).

No sample is seen twice in an epoch. A shard-streaming worker must give the same number of samples as every other
(every process runs the same number of steps), and timm's readers repeat a worker's shards when it runs out: so the
epoch is planned (:func:`samples_per_worker`) to the most samples that every worker has for any shard order, in
whole batches; the few left over (fewer than one shard per worker and one batch) are different ones every epoch.
With ``G`` dividing the number of equal shards and the batch dividing a worker's samples, every sample is seen
exactly once per epoch. Map-style sources drop the tail (fewer than one sample per process) instead of padding.
Validation reads each shard once, whole (:class:`WdsValidationShards`): every sample exactly once.

Corrupt samples: timm's readers skip them with a warning (validation shards stop, naming the sample).
``webdataset`` and ``datasets`` are optional (``pip install 'uniconvnet[stream]'``), imported when used.
"""
import importlib
import io
import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from PIL import Image
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from ..io import atomic_write, atomic_write_text
from .folder import CorruptImageError, ImageFolderDataset

__all__ = ['DataSource', 'HfImageDataset', 'WdsValidationShards', 'open_data_source', 'samples_per_worker',
           'write_webdataset_shards']

_PREFIXES = ('wds', 'hfds', 'hfids')
_VAL_SPLITS = ('validation', 'val', 'valid', 'test')
_IMAGE_KEYS = ('jpg', 'jpeg', 'png', 'webp')
_INSTALL = "pip install 'uniconvnet[stream]' (webdataset and datasets)"


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f'{module} is needed for this --data: {_INSTALL}') from e


def _prefix(data: str) -> Tuple[Optional[str], str]:
    """``('wds', 'PATH')`` for ``wds/PATH`` (the prefix in any case, as timm reads it); ``(None, data)`` else."""
    prefix, sep, rest = data.partition('/')
    return (prefix.lower(), rest) if sep and prefix.lower() in _PREFIXES else (None, data)


def _is_saved_dataset(path: Union[str, Path]) -> bool:
    """A folder written by ``datasets``' ``save_to_disk`` (a DatasetDict, or one Dataset)."""
    path = Path(path)
    return (path / 'dataset_dict.json').is_file() or (path / 'state.json').is_file()


def samples_per_worker(shard_lengths: Sequence[int], loader_workers: int, batch_size: int) -> int:
    """Samples each of ``loader_workers`` workers (in all processes) gives per epoch without repeating one.

    A worker takes every ``loader_workers``-th shard of the epoch's shuffled list: at least
    ``len(shard_lengths) // loader_workers`` shards, so at least the sum of that many of the smallest. That, in
    whole batches, is what every worker can give for any shuffle.
    """
    shards_each = len(shard_lengths) // loader_workers
    if shards_each == 0:
        raise ValueError(f'{len(shard_lengths)} training shard(s) for {loader_workers} DataLoader workers in all '
                         f'(processes x --workers): each worker needs a shard of its own; write at least '
                         f'{loader_workers} shards (uniconvnet shards --shard-size) or lower --workers')
    least = sum(sorted(shard_lengths)[:shards_each])
    count = least // batch_size * batch_size
    if count == 0:
        raise ValueError(f'a DataLoader worker may get only {least} samples ({shards_each} shard(s)), less than one '
                         f'batch of {batch_size}: lower --batch-size or --workers, or write larger shards')
    return count


def _decode_sample(sample: Dict[str, Any], where: str) -> Tuple[Image.Image, int]:
    """The RGB image and class index of a webdataset sample (``.jpg``/``.png``/``.webp`` and ``.cls``)."""
    key = next((k for k in _IMAGE_KEYS if k in sample), None)
    name = f'{sample.get("__key__")} in {where}'
    if key is None or 'cls' not in sample:
        raise CorruptImageError(f'sample {name} has no image ({"/".join(_IMAGE_KEYS)}) or no .cls label')
    try:
        with Image.open(io.BytesIO(sample[key])) as img:
            return img.convert('RGB'), int(sample['cls'])
    except (OSError, ValueError) as e:
        raise CorruptImageError(f'cannot read sample {name} ({type(e).__name__}: {e})') from e


class WdsValidationShards(IterableDataset):
    """Validation shards, each read once and whole: shard ``i`` goes to process ``i % world_size``, then to its
    DataLoader workers in turn; every sample is seen exactly once, whatever the shard sizes."""

    def __init__(self, root: Union[str, Path], filenames: Sequence[str], shard_lengths: Sequence[int],
                 world_size: int = 1, rank: int = 0, transform: Optional[Callable] = None):
        self.urls = [str(Path(root) / f) for f in filenames][rank::world_size]
        self.num_samples = sum(list(shard_lengths)[rank::world_size]) if shard_lengths else None
        self.transform = transform

    def __len__(self) -> int:
        if self.num_samples is None:
            raise TypeError('the validation split has no shard_lengths in _info.json')
        return self.num_samples

    def __iter__(self) -> Iterator[Tuple[Any, int]]:
        wds = _require('webdataset')
        worker = get_worker_info()
        urls = self.urls if worker is None else self.urls[worker.id::worker.num_workers]
        for url in urls:
            for sample in wds.DataPipeline(wds.SimpleShardList([url]), wds.tarfile_to_samples()):
                img, target = _decode_sample(sample, url)
                yield (self.transform(img) if self.transform is not None else img), target


class HfImageDataset(Dataset):
    """A Hugging Face ``Dataset`` (e.g. from ``load_from_disk``) as ``(transform(PIL RGB image), label)`` pairs."""

    def __init__(self, hf_dataset: Any, image_key: str = 'image', label_key: str = 'label',
                 transform: Optional[Callable] = None):
        missing = [k for k in (image_key, label_key) if k not in hf_dataset.column_names]
        if missing:
            raise ValueError(f'the dataset has no {" or ".join(missing)} column (columns: '
                             f'{", ".join(hf_dataset.column_names)}); image classification needs "{image_key}" and '
                             f'"{label_key}"')
        self.data, self.image_key, self.label_key, self.transform = hf_dataset, image_key, label_key, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        item = self.data[index]
        img = item[self.image_key]
        if not isinstance(img, Image.Image):
            raise CorruptImageError(f'sample {index}: the {self.image_key} column holds no decoded image')
        img = img.convert('RGB')
        return (self.transform(img) if self.transform is not None else img), int(item[self.label_key])


def _class_names_of(features: Any, label_key: str = 'label') -> Optional[List[str]]:
    feature = features.get(label_key) if features is not None else None
    names = getattr(feature, 'names', None)
    return list(names) if names else None


@dataclass
class DataSource:
    """Training data that is not an ImageNet-style folder; :meth:`datasets` builds the two splits.

    ``datasets`` is called after the process group is up (timm's shard readers read the rank when they are built).
    """
    kind: str  # 'wds', 'hfds', 'hfids' or 'saved'
    location: str
    name: str
    class_names: List[str]
    val_split: str
    info: Dict[str, Any] = field(default_factory=dict)
    _prebuilt: Optional[Tuple[Dataset, Dataset]] = None

    @property
    def streams(self) -> bool:
        """Whether the training split is an iterable (shard-streaming) dataset."""
        return self.kind in ('wds', 'hfids')

    def datasets(self, world_size: int, rank: int, batch_size: int, workers: int, seed: int,
                 log: Callable[[str], None] = print) -> Tuple[Dataset, Dataset]:
        """``(train, val)`` for process ``rank`` of ``world_size``, planned for ``workers`` DataLoader workers.

        ``log`` gets a note when the shards leave more than one batch per worker out of each epoch.
        """
        if self._prebuilt is not None:
            return self._prebuilt
        from timm.data import create_dataset
        loader_workers = world_size * max(1, workers)
        if self.kind == 'wds':
            train_info = self.info['splits']['train']
            per_worker = samples_per_worker(train_info['shard_lengths'], loader_workers, batch_size)
            left_out = train_info['num_samples'] - per_worker * loader_workers
            if left_out > loader_workers * batch_size:
                log(f'note: {left_out} of {train_info["num_samples"]} training samples are left out of each epoch '
                    f'(different ones every epoch): {len(train_info["shard_lengths"])} shards do not split evenly '
                    f'over {loader_workers} DataLoader workers (processes x --workers); write a multiple of '
                    f'{loader_workers} shards (uniconvnet shards --num-shards)')
            train = create_dataset('wds/', root=self.location, split='train', is_training=True,
                                   batch_size=batch_size, seed=seed, num_samples=per_worker * loader_workers)
            val_info = self.info['splits'][self.val_split]
            val = WdsValidationShards(self.location, val_info['filenames'], val_info.get('shard_lengths', ()),
                                      world_size, rank)
            return train, val
        # hfids: shard sizes are unknown before reading; an even share in whole batches (balanced shards assumed)
        total = int(self.info['train_samples'])
        per_worker = total // loader_workers // batch_size * batch_size
        if per_worker == 0:
            raise ValueError(f'{self.location}: {total} training samples are less than a batch of {batch_size} per '
                             f'DataLoader worker ({loader_workers} in all); lower --batch-size or --workers')
        train = create_dataset(f'hfids/{self.location}', split='train', is_training=True, batch_size=batch_size,
                               seed=seed, num_samples=per_worker * loader_workers)
        val = create_dataset(f'hfids/{self.location}', split=self.val_split, is_training=False)
        return train, val


def _open_wds(path: str) -> DataSource:
    root = Path(path)
    info_file = next((root / n for n in ('_info.json', 'info.json') if (root / n).is_file()), None)
    if info_file is None:
        raise FileNotFoundError(f'--data wds/{path}: no _info.json in {root} (timm\'s shard index: splits with '
                                f'filenames and shard_lengths); write shards with `uniconvnet shards IMAGE_FOLDER '
                                f'{path}`')
    info = json.loads(info_file.read_text())
    splits = info.get('splits', {})
    val_split = next((s for s in _VAL_SPLITS if s in splits), None)
    if 'train' not in splits or val_split is None:
        raise ValueError(f'{info_file} needs a "train" and a "validation" split (has: {", ".join(splits) or "none"})')
    for split in ('train', val_split):
        files = [f for f in splits[split]['filenames'] if not (root / f).is_file()]
        if files:
            raise FileNotFoundError(f'{info_file} lists shards that are not in {root}: {", ".join(files[:3])}')
    names = info.get('label_names') or [str(i) for i in range(int(info.get('num_classes', 0)))]
    if not names:
        raise ValueError(f'{info_file} gives neither label_names nor num_classes: add one of them')
    return DataSource('wds', str(root), root.resolve().name, [str(n) for n in names], val_split, info)


def _open_saved(path: str) -> DataSource:
    datasets = _require('datasets')
    loaded = datasets.load_from_disk(path)
    if not isinstance(loaded, datasets.DatasetDict) or 'train' not in loaded:
        raise ValueError(f'{path} holds a single dataset: save a DatasetDict with a "train" and a "validation" split '
                         f'(DatasetDict(train=..., validation=...).save_to_disk(PATH))')
    val_split = next((s for s in _VAL_SPLITS if s in loaded), None)
    if val_split is None:
        raise ValueError(f'{path} has no validation split (splits: {", ".join(loaded)}); add one named validation')
    names = _class_names_of(loaded['train'].features)
    if names is None:
        raise ValueError(f'{path}: the label column is not a ClassLabel with names; cast it with '
                         f'dataset.cast_column("label", ClassLabel(names=[...]))')
    sets = (HfImageDataset(loaded['train']), HfImageDataset(loaded[val_split]))
    return DataSource('saved', path, Path(path).resolve().name, names, val_split, _prebuilt=sets)


def _open_hfds(name: str) -> DataSource:
    datasets = _require('datasets')
    from timm.data import create_dataset
    val_split = next((s for s in _VAL_SPLITS if s in datasets.get_dataset_split_names(name)), None)
    if val_split is None:
        raise ValueError(f'hfds/{name} has no validation split ({", ".join(_VAL_SPLITS)})')
    train = create_dataset(f'hfds/{name}', split='train')
    val = create_dataset(f'hfds/{name}', split=val_split)
    mapping = train.reader.class_to_idx
    names = [n for n, _ in sorted(mapping.items(), key=lambda item: item[1])]
    if not names:
        raise ValueError(f'hfds/{name}: the label column is not a ClassLabel with names')
    return DataSource('hfds', name, name.rstrip('/').replace('/', '_'), names, val_split, _prebuilt=(train, val))


def _open_hfids(name: str) -> DataSource:
    datasets = _require('datasets')
    info = datasets.load_dataset_builder(name).info
    splits = info.splits or {}
    val_split = next((s for s in _VAL_SPLITS if s in splits), None)
    names = _class_names_of(info.features)
    if 'train' not in splits or val_split is None or not splits['train'].num_examples or names is None:
        raise ValueError(f'hfids/{name}: streaming needs the split sizes and class names in the dataset\'s metadata '
                         f'(dataset_info in its README.md: features with a class_label, splits with num_examples); '
                         f'use hfds/{name} to load it whole instead')
    return DataSource('hfids', name, name.rstrip('/').replace('/', '_'), names, val_split,
                      {'train_samples': splits['train'].num_examples})


def open_data_source(data: str) -> Optional[DataSource]:
    """The :class:`DataSource` that ``--data`` names, or None for an ImageNet-style folder (and the digits).

    Reads only metadata (class names, split sizes): errors in the source stop here, before training starts.
    """
    prefix, rest = _prefix(data)
    if prefix == 'wds':
        return _open_wds(rest)
    if prefix in ('hfds', None) and _is_saved_dataset(rest):
        return _open_saved(rest)
    if prefix == 'hfds':
        return _open_hfds(rest)
    if prefix == 'hfids':
        return _open_hfids(rest)
    return None


# ------------------------------------------------------------------------------------------------ writing shards

def _image_bytes(path: str) -> Tuple[str, bytes]:
    """``(extension, bytes)`` as a shard stores it: JPEG, PNG and WebP as they are, anything else as PNG."""
    ext = Path(path).suffix.lower().lstrip('.')
    ext = {'jpeg': 'jpg'}.get(ext, ext)
    if ext in ('jpg', 'png', 'webp'):
        return ext, Path(path).read_bytes()
    try:
        with Image.open(path) as img:
            buffer = io.BytesIO()
            img.convert('RGB').save(buffer, format='PNG')
    except (OSError, ValueError) as e:
        raise CorruptImageError(f'cannot read image {path} ({type(e).__name__}: {e}); delete or replace it') from e
    return 'png', buffer.getvalue()


def _write_split(samples: List[Tuple[str, int]], out: Path, split: str, num_shards: int,
                 log: Callable[[str], None]) -> Dict[str, Any]:
    wds = _require('webdataset')
    # balanced: shard lengths differ by one at most, so that every loader worker gets about as many samples
    lengths = [len(samples) // num_shards + (i < len(samples) % num_shards) for i in range(num_shards)]
    filenames, start = [], 0
    for index, length in enumerate(lengths):
        filename = f'{split}-{index:06d}.tar'

        def write(tmp: str, chunk=samples[start:start + length], first=start) -> None:
            with wds.TarWriter(tmp, mtime=0) as sink:
                for offset, (path, target) in enumerate(chunk):
                    ext, data = _image_bytes(path)
                    sink.write({'__key__': f'{split}-{first + offset:08d}', ext: data, 'cls': target})
        atomic_write(out / filename, write)
        filenames.append(filename)
        start += length
    log(f'{split}: {len(samples)} images in {num_shards} shard(s) of {min(lengths)}-{max(lengths)}')
    return {'name': split, 'num_samples': len(samples), 'filenames': filenames, 'shard_lengths': lengths}


def write_webdataset_shards(src: Union[str, Path], out: Union[str, Path], shard_size: int = 1000,
                            num_shards: Optional[int] = None, seed: int = 0,
                            log: Callable[[str], None] = print) -> Dict[str, Any]:
    """Turn an ImageNet-style folder (``SRC/train/CLASS/*.jpg``, ``SRC/val/CLASS/*.jpg``) into webdataset shards.

    Writes ``OUT/train-000000.tar`` ... and ``OUT/validation-000000.tar`` ... (samples shuffled with ``seed``
    across classes, shard lengths within one of each other: at most ``shard_size``, or ``num_shards`` training
    shards; each sample holds the image file as it is, ``.jpg``/``.png``/``.webp``, and its class index as
    ``.cls``) and ``OUT/_info.json`` (timm's shard index, plus ``label_names``). ``uniconvnet train --data
    wds/OUT`` trains on them: with a multiple of (processes x DataLoader workers) training shards, an epoch
    leaves out less than a batch per worker (none when the batch divides a worker's share). Returns the index.
    """
    if shard_size < 1:
        raise ValueError(f'--shard-size must be at least 1, got {shard_size}')
    if num_shards is not None and num_shards < 1:
        raise ValueError(f'--num-shards must be at least 1, got {num_shards}')
    _require('webdataset')
    train = ImageFolderDataset(src, 'train')
    val = ImageFolderDataset(src, 'val', classes=train.classes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = {}
    for split, dataset in (('train', train), ('validation', val)):
        samples = list(dataset.samples)
        random.Random(seed).shuffle(samples)
        count = num_shards if split == 'train' and num_shards else math.ceil(len(samples) / shard_size)
        splits[split] = _write_split(samples, out, split, max(1, min(count, len(samples))), log)
    info = {'name': Path(src).resolve().name, 'num_classes': len(train.classes), 'label_names': train.classes,
            'splits': splits}
    atomic_write_text(out / '_info.json', json.dumps(info, indent=2))
    log(f'wrote {out}/_info.json; train with: uniconvnet train --data wds/{out}')
    return info
