"""Compare the ERFs of several models: heatmaps, per-stage heatmaps, and tables of area ratios and AGD metrics.

:func:`erf_report` is what ``uniconvnet erf`` runs. It writes, into one folder:

* ``erf.png``: the models' ERFs side by side on RepLKNet's log scale, one shared colour scale;
* ``erf_stages.png``: one row per model, one column per stage;
* ``erf.json`` and ``erf.md``: for every model and stage, the area ratios at each threshold and the AGD metrics;
* ``erf_maps.npz``: the raw (linear) mean maps, ``<model>`` and ``<model>/stage<k>``, to analyse again.
"""
import json
import math
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from ..io import atomic_write, atomic_write_text
from ..speed.memory import peak_rss_mb
from .agd import AGD_MIN_MONOTONICITY, AGD_MIN_R2
from .erf import DEFAULT_THRESHOLDS, ErfMap, ModelLike, Stage, erf_maps, resolve_stage
from .images import NamedImage, load_images

__all__ = ['erf_report', 'format_erf_markdown', 'summarize_erf']


def summarize_erf(erf: ErfMap, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> Dict[str, Any]:
    """JSON-ready numbers of one ERF: area ratios at each threshold and the AGD metrics (log scale)."""
    agd = erf.agd()
    return dict(
        feature_shape=list(erf.feature_shape),
        images_used=erf.images_used,
        images_skipped_nonfinite=erf.images_skipped,
        area_ratio={f'{a.threshold:g}': dict(reached=a.reached, side=a.side, area_ratio=a.area_ratio)
                    for a in erf.area_ratios(thresholds)},
        agd=agd.as_dict(),
    )


def _json_safe(value: Any) -> Any:
    """NaN and inf (a failed fit, a flat profile) become null: strict JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _stage_key(stage: Stage) -> str:
    return 'last' if stage is None else (f'stage{stage}' if isinstance(stage, int) else str(stage))


def _area_cell(entry: Dict[str, Any]) -> str:
    if not entry['reached']:
        return 'not reached'
    return f"{100 * entry['area_ratio']:.2f}% ({entry['side']} px)"


def _md_row(label: List[str], s: Dict[str, Any], thresholds: Sequence[float]) -> str:
    agd = s['agd']
    cells = label + [str(s['images_used'])]
    cells += [_area_cell(s['area_ratio'][f'{t:g}']) for t in thresholds]
    cells += [f"{agd['sigma']:.1f}", f"{agd['r2']:.3f}", f"{agd['monotonicity']:.3f}",
              'yes' if agd['is_gaussian'] else 'no']
    return '| ' + ' | '.join(cells) + ' |'


def format_erf_markdown(report: Dict[str, Any]) -> str:
    """``erf.md``: the report's tables in Markdown."""
    cfg = report['config']
    thresholds = cfg['thresholds']
    head = [f't={t:g}' for t in thresholds] + ['sigma (px)', 'R^2', 'M', 'AGD']
    lines = [
        '# Effective receptive fields',
        '',
        f"{cfg['num_images_used']} images ({cfg['image_source']}) at {cfg['size']}x{cfg['size']}; "
        f"map: {cfg['stage']}. Area ratio at threshold t: the smallest centred square holding more than t of "
        f"the log-scaled map (its share of the image, and its side). sigma, R^2: 2-D Gaussian fit; M: monotonic "
        f"decrease of the radial profile; AGD: R^2 >= {AGD_MIN_R2} and M >= {AGD_MIN_MONOTONICITY}.",
        '',
        '| model | weights | images | ' + ' | '.join(head) + ' |',
        '|---|---|---:|' + '---:|' * len(head),
    ]
    for name, entry in report['models'].items():
        lines.append(_md_row([name, entry['weights']], entry['erf'], thresholds))
    stage_rows = [(name, key, s) for name, entry in report['models'].items()
                  for key, s in entry.get('stages', {}).items()]
    if stage_rows:
        lines += ['', '## Per stage', '',
                  '| model | stage | images | ' + ' | '.join(head) + ' |',
                  '|---|---|---:|' + '---:|' * len(head)]
        for name, key, s in stage_rows:
            if s.get('available', True):
                lines.append(_md_row([name, key], s, thresholds))
            else:
                lines.append(f"| {name} | {key} | - | {s['reason']} |" + ' |' * (len(head) - 1))
    lines += ['', f"Seconds per image and peak memory: see erf.json ({report['environment']['device']})."]
    return '\n'.join(lines) + '\n'


@dataclass
class _Measured:
    """One model's entry in ``erf.json`` and what goes into the figures and ``erf_maps.npz``."""
    entry: Dict[str, Any]
    main_panel: Tuple[str, np.ndarray]
    stage_row: List[Tuple[str, Optional[np.ndarray]]] = field(default_factory=list)
    raw: Dict[str, np.ndarray] = field(default_factory=dict)


def _split_stages(model: ModelLike, stages: Sequence[int]) -> Tuple[List[int], Dict[int, str]]:
    """The stages ``model`` has, and for each one it lacks the reason (reported as not available)."""
    available: List[int] = []
    missing: Dict[int, str] = {}
    for k in stages:
        try:
            resolve_stage(model, k)
            available.append(k)
        except ValueError as e:
            missing[k] = str(e)
    return available, missing


def _measure(name: str, model: ModelLike, images: Sequence[NamedImage], stage: Stage, stages: Sequence[int],
             thresholds: Sequence[float], weights: str, **erf_options: Any) -> _Measured:
    """The ERFs of ``stage`` and of each of ``stages`` of one model, from one pass over the images."""
    available, missing = _split_stages(model, stages)
    maps = erf_maps(model, images, [stage, *available], desc=name, **erf_options)
    main = maps[stage]
    measured = _Measured(
        entry=dict(weights=weights, seconds_per_image=main.seconds_per_image, peak_rss_mb=peak_rss_mb(),
                   erf=summarize_erf(main, thresholds)),
        main_panel=(name, main.log_scaled()),
        raw={name: main.map.astype(np.float32)})
    if stages:
        measured.entry['stages'] = {}
    for k in stages:
        title = f'{name} stage {k}'
        if k in missing:
            measured.entry['stages'][f'stage{k}'] = dict(available=False, reason=missing[k])
            measured.stage_row.append((title, None))
        else:
            measured.entry['stages'][f'stage{k}'] = summarize_erf(maps[k], thresholds)
            measured.raw[f'{name}/stage{k}'] = maps[k].map.astype(np.float32)
            measured.stage_row.append((title, maps[k].log_scaled()))
    return measured


def _write_report(out_dir: Path, report: Dict[str, Any], measured: Sequence[_Measured], panel_px: int) -> None:
    """``erf.png``, ``erf_stages.png``, ``erf.json``, ``erf.md`` and ``erf_maps.npz``, each written atomically."""
    from .plots import plot_erf_grid
    plot_erf_grid([[m.main_panel for m in measured]], out_dir / 'erf.png', panel_px=panel_px)
    stage_rows = [m.stage_row for m in measured if m.stage_row]
    if stage_rows:
        plot_erf_grid(stage_rows, out_dir / 'erf_stages.png', panel_px=panel_px)
    atomic_write_text(out_dir / 'erf.json', json.dumps(_json_safe(report), indent=1) + '\n')
    atomic_write_text(out_dir / 'erf.md', format_erf_markdown(report))
    raw = {key: value for m in measured for key, value in m.raw.items()}

    def save_maps(tmp: str) -> None:
        with open(tmp, 'wb') as f:  # a file object: given a name, numpy would append '.npz' to the temporary one
            np.savez_compressed(f, **raw)

    atomic_write(out_dir / 'erf_maps.npz', save_maps)


def erf_report(
        models: Mapping[str, ModelLike],
        out_dir: Union[str, Path],
        *,
        images: Optional[Union[str, Path]] = None,
        size: int = 1024,
        num_images: int = 50,
        seed: int = 0,
        stage: Stage = None,
        stages: Sequence[int] = (1, 2, 3, 4),
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
        weights: Optional[Mapping[str, str]] = None,
        batch_size: int = 1,
        grad_checkpointing: bool = True,
        device: Optional[Union[str, torch.device]] = None,
        progress: bool = True,
        panel_px: int = 320,
) -> Dict[str, Any]:
    """Measure every model's ERF on the same images and write the figures and tables into ``out_dir``.

    Args:
        models: ``{name: model}``, in the order to draw them.
        images: a folder of images, or None for the packaged photographs (see
            :func:`uniconvnet.analysis.images.load_images`).
        stage: the map of ``erf.png`` (None: the last stage, before pooling; see :func:`erf_maps`).
        stages: the columns of ``erf_stages.png`` (empty: no per-stage figure). A stage a model lacks is
            reported as not available.
        weights: ``{name: description}`` of each model's weights for the tables (default 'random init').
        panel_px: side of each heatmap in the PNGs, in pixels.

    Returns:
        The content of ``erf.json``.
    """
    if not models:
        raise ValueError('no models to measure')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    loaded = load_images(images, size, num_images, seed)
    weights = dict(weights or {})
    report: Dict[str, Any] = dict(
        protocol='RepLKNet: mean over images of ReLU(d/dx sum_c ReLU(F[c, h//2, w//2])), summed over colour '
                 'channels; area ratios and AGD metrics on log10(x + 1) / max',
        config=dict(size=size, num_images_requested=num_images, num_images_used=len(loaded),
                    image_source=str(images) if images is not None else 'packaged photographs',
                    images=[img.name for img in loaded], seed=seed, stage=_stage_key(stage),
                    stages=list(stages), thresholds=[float(t) for t in thresholds],
                    grad_checkpointing=grad_checkpointing, batch_size=batch_size),
        environment=dict(device=str(device or 'cpu'), torch=torch.__version__, python=platform.python_version(),
                         threads=torch.get_num_threads()),
        models={},
    )
    measured = []
    for i, (name, model) in enumerate(models.items()):
        if progress:
            print(f'[{i + 1}/{len(models)}] {name}: {len(loaded)} images at {size}x{size}', file=sys.stderr,
                  flush=True)
        measured.append(_measure(name, model, loaded, stage, stages, thresholds, weights.get(name, 'random init'),
                                 batch_size=batch_size, grad_checkpointing=grad_checkpointing, device=device,
                                 progress=progress))
        report['models'][name] = measured[-1].entry
    _write_report(out_dir, report, measured, panel_px)
    return report
