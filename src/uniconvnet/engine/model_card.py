"""The model card (``README.md``) of a training run's output folder, so that the folder is a Hub model repository.

With ``config.json`` (timm's format) and ``model.safetensors`` beside it, the folder uploads as it is
(``hf upload USER/REPO OUTPUT``) and loads with timm (``local-dir:`` / ``hf-hub:``) and transformers.
"""
import json
import math
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Dict, List, Optional

if TYPE_CHECKING:  # only for the annotations: the trainer imports the tasks that import this module
    from .trainer import Trainer

__all__ = ['classification_model_card']

# what the card shows of the settings (the full set follows in a collapsed block)
_HEADLINE_SETTINGS = ('epochs', 'warmup_epochs', 'batch_size', 'accum_steps', 'opt', 'weight_decay', 'layer_decay',
                      'drop_path', 'mixup', 'cutmix', 'smoothing', 'ema_decay', 'auto_augment', 'reprob',
                      'image_size', 'amp', 'seed')


def _setting(value: Any) -> str:
    if isinstance(value, float):
        return f'{value:g}'
    return '-' if value is None or value == '' else str(value)


def _metric(key: str, value: Any) -> str:
    """Losses with 4 decimals, accuracies (%) with 2; '-' for a missing or non-finite value."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return '-'
    return f'{value:.4f}' if 'loss' in key else f'{value:.2f}'


def _metrics_table(history: List[Dict[str, Any]], main_metric: str) -> List[str]:
    """Final and best epoch, validation metrics (and the EMA's when there is one)."""
    if not history:
        return ['No epoch was trained.']
    best = max(history, key=lambda r: r.get(main_metric) if r.get(main_metric) is not None else -math.inf)
    keys = [k for k in history[-1] if k.startswith('val_')]
    lines = ['| epoch | ' + ' | '.join(keys) + ' |', '|---' * (len(keys) + 1) + '|']
    for label, row in ((f'final ({history[-1]["epoch"]})', history[-1]), (f'best {main_metric} ({best["epoch"]})',
                                                                          best)):
        lines.append(f'| {label} | ' + ' | '.join(_metric(k, row.get(k)) for k in keys) + ' |')
    return lines


def _size(dataset: Any) -> Optional[int]:
    try:
        return len(dataset)
    except TypeError:
        return None


def classification_model_card(trainer: 'Trainer', model_name: str, data_name: str, class_names: List[str],
                              input_size: List[int]) -> str:
    """The card of a finished classification run: what was trained on what, how, the results, how to load it."""
    try:
        package = f'uniconvnet {version("uniconvnet")}'
    except PackageNotFoundError:  # run from a source tree
        package = 'uniconvnet'
    cfg, output = trainer.cfg, trainer.output
    params = sum(p.numel() for p in trainer.model.parameters())
    train_images = trainer.batches_per_epoch * cfg.batch_size * trainer.ctx.world_size
    val_images = _size(trainer.val_loader.dataset)
    names = ', '.join(class_names[:10]) + (f', ... ({len(class_names)} in all)' if len(class_names) > 10 else '')
    settings = cfg.as_dict()
    lines = [
        '---',
        'library_name: timm',
        'pipeline_tag: image-classification',
        'tags:', '- image-classification', '- timm', '- uniconvnet',
        '---',
        f'# {model_name} trained on {data_name}',
        '',
        f'[UniConvNet](https://arxiv.org/abs/2508.09000) `{model_name}` ({params / 1e6:.2f}M parameters), trained '
        f'with `uniconvnet train` ({package}) on **{data_name}**: {len(class_names)} classes '
        f'({names}), {input_size[1]}x{input_size[2]} inputs, {train_images} training images per epoch'
        + (f', {val_images} validation images.' if val_images is not None else '.'),
        '',
        '## Results',
        '',
        *_metrics_table(trainer.history, trainer.task.main_metric),
        '',
    ]
    if (output / 'curves.png').is_file():
        lines += ['![training curves](curves.png)', '']
    lines += [
        '## Training recipe',
        '',
        f'Recipe `{cfg.recipe}`; {trainer.lr_note}; {trainer.ctx.world_size} process(es) on '
        f'{trainer.ctx.device.type}.',
        '',
        '| setting | value |', '|---|---|',
        *(f'| {key} | {_setting(settings[key])} |' for key in _HEADLINE_SETTINGS),
        '',
        '<details><summary>every setting</summary>',
        '',
        '```json', json.dumps(settings, indent=2), '```',
        '',
        '</details>',
        '',
        '## How to use',
        '',
        'The folder holds `config.json` (timm\'s format: architecture, class names, preprocessing) and '
        '`model.safetensors`; `import uniconvnet` registers the architecture with timm first.',
        '',
        '```python',
        'import timm, torch',
        'import uniconvnet  # registers the UniConvNet models with timm',
        '',
        f"model = timm.create_model('local-dir:{output}', pretrained=True).eval()  # or 'hf-hub:USER/REPO'",
        'transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))',
        'probs = model(transform(image).unsqueeze(0)).softmax(-1)  # image: a PIL RGB image',
        'names = model.pretrained_cfg[\'label_names\']',
        '```',
        '',
        'With transformers (its TimmWrapper reads the same `config.json`):',
        '',
        '```python',
        'import uniconvnet  # before loading: timm must know the architecture',
        'from transformers import AutoImageProcessor, AutoModelForImageClassification',
        '',
        f"model = AutoModelForImageClassification.from_pretrained('{output}').eval()",
        f"processor = AutoImageProcessor.from_pretrained('{output}')",
        "logits = model(**processor(image, return_tensors='pt')).logits",
        '```',
        '',
        'From the command line:',
        '',
        '```bash',
        f'uniconvnet predict IMAGE.jpg --checkpoint {output}',
        f'uniconvnet eval --checkpoint {output} --data DIR   # DIR/val/CLASS/*.jpg',
        '```',
        '',
        'Also here: `metrics.jsonl` (every epoch), `train.log`, `last.pt` / `best.pt` (to resume: '
        '`uniconvnet train ... --resume auto`)' + (', `model_ema.safetensors` (the EMA weights)'
                                                   if (output / 'model_ema.safetensors').is_file() else '') + '.',
        '',
    ]
    return '\n'.join(lines)
