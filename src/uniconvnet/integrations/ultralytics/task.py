"""Training and evaluation of YOLO models on a data YAML (the built-in small-object set by default), with COCO AP by
size: what ``uniconvnet yolo train|eval`` calls (the integration's task module, as ``task.py`` of the torchvision and
smp integrations)."""
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
from ultralytics import YOLO
from ultralytics.models.yolo.detect import DetectionValidator

from ...data.yolo import small_objects_yolo
from ...evaluation import coco_evaluate
from ...host import kept_host_settings
from ...io import CheckpointError
from .blocks import UniConvNetBackbone
from .configs import model_yaml
from .parser import register
from .trainer import DetectionTrainer

__all__ = ['DEFAULT_DATA_ROOT', 'BUILTIN_IMGSZ', 'builtin_data', 'evaluate', 'load_model', 'training_recipe', 'train',
           'val', 'to_coco_results']

DEFAULT_DATA_ROOT = Path('~/.cache/uniconvnet/small_objects').expanduser()
BUILTIN_IMGSZ = 128  # the built-in canvases are 128 x 128: train and predict at their own size


def builtin_data(root: Union[str, Path, None] = None, **generate_kwargs: Any) -> Path:
    """The built-in small-object dataset in YOLO format (written once under ``root``); returns its data YAML."""
    return small_objects_yolo(DEFAULT_DATA_ROOT if root is None else root, **generate_kwargs)


def load_model(model: Any) -> YOLO:
    """An ultralytics ``YOLO`` from a shipped YAML name, a YAML path or a trained ``.pt`` (or a ``YOLO``)."""
    register()
    if isinstance(model, YOLO):
        return model
    if str(model).endswith('.pt'):
        if not Path(model).is_file():
            raise FileNotFoundError(f'model weights not found: {model}')
        try:
            return YOLO(str(model))
        except (TypeError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
            # ultralytics answers a corrupt file with several lines of download advice: say it in one
            raise CheckpointError(f'cannot load YOLO weights {model}: the file is empty, truncated or not a YOLO '
                                  f'checkpoint ({_root_cause(e, str(model))}); pass the best.pt or last.pt of a '
                                  f'`uniconvnet yolo train` run') from e
    return YOLO(model_yaml(model))


def _root_cause(error: BaseException, path: str) -> str:
    """``Type: first sentence`` of the innermost error ``error`` was raised from, without ultralytics' banner
    (``ERROR ❌️ PATH ...``) and advice."""
    while error.__cause__ is not None:
        error = error.__cause__
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    reason = lines[0]
    if reason.startswith('ERROR') and path in reason:
        reason = reason.split(path, 1)[1].strip().split('. ')[0].rstrip('.')
    return f'{type(error).__name__}: {reason}'


class _KeepPredictionsValidator(DetectionValidator):
    """ultralytics' detection validator, keeping its COCO-style predictions (``jdict``, with ``save_json``) for
    pycocotools instead of scoring them itself (with faster-coco-eval, which it would try to pip-install)."""

    def eval_json(self, stats: Dict[str, Any]) -> Dict[str, Any]:
        return stats


def to_coco_results(predictions: List[Dict[str, Any]], coco_json: Union[str, Path]) -> List[Dict[str, Any]]:
    """ultralytics' validation predictions (``predictions.json`` entries) with the image and category ids of
    a COCO json: images matched by file name, YOLO class ``k`` (written as ``k + 1``) to the json's ``k``-th
    category (the order :func:`uniconvnet.data.yolo.coco_to_yolo_labels` writes)."""
    coco = json.loads(Path(coco_json).read_text())
    image_id_of = {Path(im['file_name']).name: im['id'] for im in coco['images']}
    category_of = [c['id'] for c in coco['categories']]
    missing = sorted({p['file_name'] for p in predictions} - set(image_id_of))
    if missing:
        raise ValueError(f'{coco_json} has no image named {missing[0]} ({len(missing)} such): it does not describe '
                         f'the validation images')
    return [{'image_id': image_id_of[p['file_name']], 'category_id': category_of[p['category_id'] - 1],
             'bbox': p['bbox'], 'score': p['score']} for p in predictions]


def _builtin_coco_json(data_yaml: Path) -> Optional[Path]:
    """The COCO json of the validation split when the data YAML is the built-in dataset's, else None."""
    candidate = data_yaml.parent / 'val' / 'annotations.json'
    return candidate if (data_yaml.parent / 'settings.json').is_file() and candidate.is_file() else None


@kept_host_settings()
def evaluate(model: Any, data: Union[str, Path, None] = None, imgsz: Optional[int] = None,
             batch: int = 16, device: str = 'cpu', coco_json: Union[str, Path, None] = None,
             **overrides: Any) -> Dict[str, float]:
    """Evaluate a YOLO model on the validation split (``uniconvnet yolo eval``; ``val`` is the same function under
    ultralytics' name); returns ``mAP50-95`` and ``mAP50`` (ultralytics' validator) and, given a COCO json
    of the validation images (automatic for the built-in dataset), pycocotools' ``AP``, ``AP50``, ``AP75``,
    ``APs``, ``APm``, ``APl`` (``APs``: objects under 32x32 px) of the same predictions (conf 0.001, NMS IoU
    0.7, up to 300 boxes per image, multi-label: ultralytics' validation settings).

    Args:
        model: a trained ``.pt``, a model YAML (shipped name or path; random weights), or a ``YOLO``.
        data: a data YAML; None: the built-in small-object dataset.
        imgsz: inference size (default: 128 on the built-in data, else 640).
        coco_json: COCO ground truth of the validation images, for the COCO metrics.
        overrides: passed to ultralytics' ``val``.
    """
    data_yaml = Path(data) if data is not None else builtin_data()
    if not data_yaml.is_file():
        raise FileNotFoundError(f'data YAML not found: {data_yaml}')
    coco_json = Path(coco_json) if coco_json is not None else _builtin_coco_json(data_yaml)
    imgsz = imgsz or (BUILTIN_IMGSZ if data is None else 640)
    yolo = load_model(model)
    with_coco = coco_json is not None and yolo.task == 'detect'
    predictions: List[Dict[str, Any]] = []

    def keep_predictions(validator: Any) -> None:
        predictions.extend(validator.jdict)

    if with_coco:  # the COCO numbers come from the very predictions ultralytics' mAPs are computed from
        overrides = dict(overrides, save_json=True, validator=_KeepPredictionsValidator)
        yolo.add_callback('on_val_end', keep_predictions)
    try:
        metrics = yolo.val(data=str(data_yaml), imgsz=imgsz, batch=batch, device=device, plots=False,
                           verbose=False, **overrides)
    finally:
        if with_coco:
            yolo.callbacks['on_val_end'].remove(keep_predictions)
    out = {'mAP50-95': float(metrics.box.map), 'mAP50': float(metrics.box.map50)}
    if with_coco:
        out.update(coco_evaluate(coco_json, to_coco_results(predictions, coco_json)))
    return out


#: ultralytics' name for :func:`evaluate` (and this function's name before uniconvnet used one verb for evaluating)
val = evaluate


def training_recipe(model: Any, batch: int = 16) -> Dict[str, Any]:
    """The training arguments a model needs beyond ultralytics' defaults (``train`` applies them; pass them to
    ultralytics' own ``train`` yourself): for a ``UniConvNetBackbone`` with the from-scratch trunk (BatchNorms,
    ``trunk_norm='batch'``: what it has without ``weights``, read from the model), an optimizer step every batch
    (``nbs=batch``) instead of every 64 images; nothing for other models.

    Why: the backbone's residual blocks start gated shut (layer scale 1e-6) and AdamW opens each gate by at most
    about one learning rate per step, so a backbone from random weights needs many optimizer steps; ultralytics
    accumulates gradients up to a nominal batch of 64, ~6 steps an epoch on a 400-image set. On the built-in
    data (20 epochs, 3 seeds) UniConvNet-A reaches 0.52x yolo11n's mAP50-95 with the default and 1.5x with a
    step per batch (docs/yolo.md). Weight decay is unchanged (ultralytics scales it by ``batch * accumulate /
    nbs`` = 1).

    Args:
        model: a ``YOLO``, its ``nn.Module``, or anything :func:`load_model` takes.
        batch: the training batch size (autobatch, ``batch <= 0``: 16).
    """
    module = load_model(model).model if not isinstance(model, torch.nn.Module) else model
    from_scratch = any(isinstance(m, UniConvNetBackbone) and m.trunk_norm == 'batch' for m in module.modules())
    return dict(nbs=batch if batch > 0 else 16) if from_scratch else {}


@kept_host_settings()
def train(cfg: Union[str, Path], data: Union[str, Path, None] = None, epochs: int = 100,
          imgsz: Optional[int] = None, batch: int = 16, device: str = 'cpu', seed: int = 0,
          project: Union[str, Path] = 'runs/yolo', name: Optional[str] = None, **overrides: Any) -> Path:
    """Train a YOLO model from a model YAML (never from downloaded weights); returns the best ``.pt``.

    Args:
        cfg: a shipped YAML name (``yolo11n-rfa-neck.yaml``, any scale letter) or a YAML path; ultralytics'
            own names (``yolo11n.yaml``) work too.
        data: a data YAML; None: the built-in small-object dataset, written in YOLO format on first use.
        imgsz: training size (default: 128 on the built-in data, else 640).
        overrides: any other ultralytics training argument (``workers``, ``amp``, ``lr0``...); they win over
            :func:`training_recipe`, which is applied otherwise.
    """
    data_yaml = Path(data) if data is not None else builtin_data()
    if not data_yaml.is_file():
        raise FileNotFoundError(f'data YAML not found: {data_yaml}')
    yolo = load_model(cfg)
    settings: Dict[str, Any] = dict(data=str(data_yaml), epochs=epochs, imgsz=imgsz or (BUILTIN_IMGSZ if data is None
                                    else 640), batch=batch, device=device, seed=seed, deterministic=True,
                                    pretrained=False, project=str(Path(project).resolve()),
                                    name=name or Path(str(cfg)).stem, exist_ok=True, plots=False, verbose=False)
    settings.update(training_recipe(yolo, batch))
    settings.update(overrides)
    yolo.train(trainer=DetectionTrainer, **settings)
    return Path(yolo.trainer.best)
