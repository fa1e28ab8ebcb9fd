"""ultralytics (YOLO) integration: the RFA as plug-in blocks for model YAMLs, and UniConvNet as a YOLO backbone.

Optional extra ``ultralytics`` (``pip install "uniconvnet[ultralytics]"``); ``import uniconvnet`` never imports
it. Usage::

    from ultralytics import YOLO
    from uniconvnet.integrations import ultralytics as uyolo

    uyolo.register()                                    # once per process; idempotent
    model = YOLO(uyolo.model_yaml('yolo11n-rfa-neck.yaml'))   # or any YAML naming the blocks below

YAML names (ultralytics' conventions: the parser supplies the input channels, the YAML gives the output
channels first, scaled by the model's width multiple like ultralytics' own blocks):

``RFABlock``            ``[c2, kernel_sizes=[7, 9, 11]]``: ``x + RFA(x)`` (then a 1x1 Conv when ``c2`` differs).
                        The RFA splits its input into ``len(kernel_sizes) + 1`` parts: the width must divide.
``C3k2RFA``             ``[c2, c3k=False, e=0.5, kernel_sizes=[7, 9, 11]]``: ultralytics' C3k2 with RFA
                        blocks in place of its bottlenecks; a drop-in replacement for a ``C3k2`` row.
``UniConvNetBackbone``  ``[c2, variant='uniconvnet_a', out_indices=[1, 2, 3], weights=None, in_chans=3,
                        drop_path_rate=0.0, model_kwargs={}]``: a timm
                        ``features_only`` UniConvNet returning a list of stage outputs (strides 8, 16, 32 for
                        the default indices), picked for the head by ultralytics' ``Index`` rows, as
                        ultralytics' own ``TorchVision`` backbone layer is. ``weights``: a local official or
                        ``uniconvnet`` classification checkpoint (nothing is ever downloaded).

``register()`` puts the names where ultralytics' YAML parser looks them up (``ultralytics.nn.tasks``) and
extends the parser, without touching installed files, so that it does for these blocks the channel bookkeeping
it does for its own: ``RFABlock`` and ``C3k2RFA`` are treated like ``C3k2`` (width multiple, ``max_channels``,
repeats, ``c3k`` at the m/l/x scales), ``UniConvNetBackbone`` like ``TorchVision``. A width the RFA cannot
split is reported with the YAML layer index and the channel count.

Saved models (``best.pt``) are ordinary ultralytics checkpoints: in a fresh process, importing this module is
all that loading, predicting and exporting need (``register()`` is needed again only to build from a YAML,
e.g. to train on from a checkpoint). Like every ultralytics ``.pt``, they are pickles: load trusted files only.
"""
import ast
import inspect
import re
import textwrap
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn

try:
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.nn.modules import C2f, C3, Conv, Index
except ImportError as e:  # the extra is optional: say which one brings it
    raise ImportError('the ultralytics integration needs ultralytics: pip install "uniconvnet[ultralytics]" '
                      '(or pip install ultralytics)') from e

from ..layers.rfa import ReceptiveFieldAggregator

__all__ = ['RFABlock', 'C3kRFA', 'C3k2RFA', 'UniConvNetBackbone', 'YAML_MODULES', 'register', 'is_registered',
           'model_yaml', 'list_model_yamls', 'MODEL_YAML_DIR', 'builtin_data', 'train', 'val', 'to_coco_results']

MODEL_YAML_DIR = Path(__file__).resolve().parent / 'ultralytics_cfg'
_DEFAULT_KERNELS = (7, 9, 11)
_registered = False


def is_registered() -> bool:
    """Whether :func:`register` has run in this process."""
    return _registered


def _require_registered(name: str) -> None:
    # Outside the extended parser the YAML arguments arrive without the input channels: stop with the fix
    # instead of a shape error later. (Every argument after c1 has a default, so that this check, the first
    # line of each constructor, is reached whatever arguments the unextended parser passes.)
    if not _registered:
        raise RuntimeError(f'{name} is used before uniconvnet.integrations.ultralytics.register() was called: call '
                           f'register() once, before building a YOLO model (it also sets up the channel bookkeeping '
                           f'of the YAML parser for {name})')


class RFABlock(nn.Module):
    """Residual Receptive Field Aggregator for YOLO models: ``x + RFA(x)``, then a 1x1 Conv if ``c2 != c1``.

    The RFA is UniConvNet's (``uniconvnet.layers.RFA``, LayerNorm first, so it is safe at batch 1), not
    RFAConv, an unrelated module with a similar name.

    Args:
        c1: input channels (supplied by the YAML parser); must be divisible by ``len(kernel_sizes) + 1``.
        c2: output channels (default: ``c1``).
        kernel_sizes: one odd depthwise kernel per layer operator; the paper's ``(7, 9, 11)`` by default.
        shortcut: add the input (a residual branch, as in UniConvNet's blocks).
    """

    def __init__(self, c1: int, c2: Optional[int] = None, kernel_sizes: Sequence[int] = _DEFAULT_KERNELS,
                 shortcut: bool = True):
        _require_registered(type(self).__name__)
        super().__init__()
        self.rfa = ReceptiveFieldAggregator(c1, kernel_sizes)
        self.add = shortcut
        self.proj = Conv(c1, c2, 1) if c2 is not None and c2 != c1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.rfa(x)
        return self.proj(x + y if self.add else y)


class C3kRFA(C3):
    """ultralytics' C3k with RFA blocks instead of bottlenecks (the inner block of ``C3k2RFA(c3k=True)``)."""

    def __init__(self, c1: int, c2: int, n: int = 2, shortcut: bool = True, e: float = 0.5,
                 kernel_sizes: Sequence[int] = _DEFAULT_KERNELS):
        _require_registered(type(self).__name__)
        super().__init__(c1, c2, n, shortcut, 1, e)
        hidden = int(c2 * e)
        self.m = nn.Sequential(*(RFABlock(hidden, hidden, kernel_sizes, shortcut) for _ in range(n)))


class C3k2RFA(C2f):
    """ultralytics' C3k2 (a C2f) whose inner blocks are RFA blocks; arguments in the order of ``C3k2``'s.

    Args:
        c1: input channels (supplied by the YAML parser).
        c2: output channels (default: ``c1``).
        n: inner blocks (the YAML repeat count, scaled by the depth multiple).
        c3k: each inner block a ``C3kRFA`` of two RFA blocks (set by the parser at the m/l/x scales, as for
            ``C3k2``) instead of one RFA block.
        e: hidden width ``int(c2 * e)``; with ``c3k`` its half must split into ``len(kernel_sizes) + 1`` parts.
        kernel_sizes: the RFA's depthwise kernels.
        shortcut: residual RFA blocks.
    """

    def __init__(self, c1: int, c2: Optional[int] = None, n: int = 1, c3k: bool = False, e: float = 0.5,
                 kernel_sizes: Sequence[int] = _DEFAULT_KERNELS, shortcut: bool = True):
        _require_registered(type(self).__name__)
        c2 = c1 if c2 is None else c2
        super().__init__(c1, c2, n, shortcut, 1, e)
        self.m = nn.ModuleList(
            C3kRFA(self.c, self.c, 2, shortcut, kernel_sizes=kernel_sizes) if c3k
            else RFABlock(self.c, self.c, kernel_sizes, shortcut)
            for _ in range(n))


class UniConvNetBackbone(nn.Module):
    """A UniConvNet variant as a YOLO backbone layer: returns the list of the requested stage outputs.

    Put it first in the YAML and pick its outputs with ultralytics' ``Index`` rows, whose first argument is the
    stage's channel count (``channels`` below; checked when the model is built).

    Args:
        variant: a UniConvNet variant name (any timm model with ``features_only`` works too).
        out_indices: stages to return; ``(1, 2, 3)`` are strides 8, 16, 32 (P3, P4, P5).
        weights: a local classification checkpoint (official ``.pth`` or ``uniconvnet`` safetensors), or None
            (write ``None`` in a YAML: ultralytics' parser cannot take an empty string).
        in_chans: image channels.
        drop_path_rate: stochastic depth.
        model_kwargs: more keyword arguments of the model, e.g. ``{ls_init_value: 1.0}``. The layer scales start
            at the paper's 1e-6, made for ImageNet training and for starting from its weights: trained from
            scratch for a short schedule, the blocks then stay close to the identity (see the README's YOLO
            benchmark).
    """

    def __init__(self, variant: str = 'uniconvnet_a', out_indices: Sequence[int] = (1, 2, 3),
                 weights: Optional[str] = None,
                 in_chans: int = 3, drop_path_rate: float = 0.0, model_kwargs: Optional[Dict[str, Any]] = None):
        _require_registered(type(self).__name__)
        super().__init__()
        from .. import create_model
        kwargs: Dict[str, Any] = dict(features_only=True, out_indices=tuple(out_indices), in_chans=in_chans,
                                      drop_path_rate=drop_path_rate, **(model_kwargs or {}))
        if weights:
            if not Path(weights).is_file():
                raise FileNotFoundError(f'UniConvNetBackbone weights not found: {weights}')
            kwargs.update(pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)))
        self.variant = variant
        self.body = create_model(variant, **kwargs)
        self.channels: List[int] = list(self.body.feature_info.channels())

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return list(self.body(x))


# YAML name -> class; what register() makes visible to ultralytics' parser
YAML_MODULES: Dict[str, type] = {'RFABlock': RFABlock, 'C3k2RFA': C3k2RFA, 'UniConvNetBackbone': UniConvNetBackbone}


# --- extending ultralytics' parser ---------------------------------------------------------------------------------

class _ParserExtender(ast.NodeTransformer):
    """Adds our blocks to the sets of classes and the check inside ``parse_model`` that drive its bookkeeping.

    ``parse_model`` decides how to fill in a block's arguments by set membership: the set holding ``Conv`` and
    ``C3k2`` (input channels first, width-scaled output channels second), the other set holding ``C3k2`` (the
    repeat count third), the set holding ``TorchVision`` (output channels declared in the YAML, list outputs
    for ``Index`` rows); and ``m is C3k2`` sets ``c3k`` at the m/l/x scales. The sets are found by what they
    hold, not by name, so that both the named frozensets of ultralytics 8.4 and the inline set literals of 8.3
    are extended. The names added here resolve, like all names in the parser, in ``ultralytics.nn.tasks``.
    """

    def __init__(self):
        self.found = {'the Conv/C3k2 set': 0, 'the repeat set': 0, 'the TorchVision set': 0, 'm is C3k2': 0}

    @staticmethod
    def _names(*names: str) -> List[ast.expr]:
        return [ast.Name(name, ast.Load()) for name in names]

    def visit_Set(self, node: ast.Set) -> ast.AST:
        held = {e.id for e in node.elts if isinstance(e, ast.Name)}
        if {'Conv', 'C3k2'} <= held:
            node.elts.extend(self._names('RFABlock', 'C3k2RFA'))
            self.found['the Conv/C3k2 set'] += 1
        elif 'C3k2' in held:
            node.elts.extend(self._names('C3k2RFA'))
            self.found['the repeat set'] += 1
        elif 'TorchVision' in held:
            node.elts.extend(self._names('UniConvNetBackbone'))
            self.found['the TorchVision set'] += 1
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        right = node.comparators[0]
        if (isinstance(node.left, ast.Name) and node.left.id == 'm' and len(node.ops) == 1
                and isinstance(node.ops[0], ast.Is) and isinstance(right, ast.Name) and right.id == 'C3k2'):
            self.found['m is C3k2'] += 1  # `m is C3k2` -> `m in (C3k2, C3k2RFA)`
            return ast.Compare(node.left, [ast.In()], [ast.Tuple(self._names('C3k2', 'C3k2RFA'), ast.Load())])
        return node


def _extend_parse_model(original: Callable) -> Callable:
    """``original`` recompiled with our blocks in its bookkeeping, in its own module's namespace."""
    import ultralytics

    try:
        source = textwrap.dedent(inspect.getsource(original))
    except (OSError, TypeError) as e:  # e.g. an install without .py sources
        raise RuntimeError(f'uniconvnet cannot extend the YAML parser of ultralytics {ultralytics.__version__}: '
                           f'the source of {original.__module__}.{original.__name__} is not available ({e})') from e
    tree = ast.parse(source)
    extender = _ParserExtender()
    tree = extender.visit(tree)
    missing = [k for k, count in extender.found.items() if count != 1]
    if missing:
        raise RuntimeError(
            f'uniconvnet cannot extend the YAML parser of ultralytics {ultralytics.__version__}: its parse_model has '
            f'not exactly one of: {", ".join(missing)}, which this integration extends. Please report it with the '
            f'ultralytics version')
    ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, inspect.getsourcelines(original)[1] - 1)  # tracebacks point into tasks.py
    module_code = compile(tree, inspect.getsourcefile(original) or '<parse_model>', 'exec')
    code = next(c for c in module_code.co_consts if isinstance(c, types.CodeType) and c.co_name == original.__name__)
    return types.FunctionType(code, original.__globals__, original.__name__, original.__defaults__,
                              original.__closure__)


def _failing_layer(tb: Optional[types.TracebackType], code: types.CodeType) -> Optional[Dict[str, Any]]:
    """The parser's loop variables (layer index, from, module) in the frame where a block failed to build."""
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return tb.tb_frame.f_locals
        tb = tb.tb_next
    return None


def _check_backbone_taps(layers: nn.Sequential, rows: List[list]) -> None:
    """Every ``Index`` row reading a ``UniConvNetBackbone`` must declare the channels that stage really has."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, Index) or not isinstance(layer.f, int):
            continue
        source = layers[layer.f if layer.f >= 0 else i + layer.f]
        if not isinstance(source, UniConvNetBackbone):
            continue
        declared, position = rows[i][3][0], layer.index
        if not -len(source.channels) <= position < len(source.channels):
            raise ValueError(f'model YAML layer {i} (Index): output {position} of layer {source.i} does not exist; '
                             f'{source.variant} returns {len(source.channels)} stage outputs')
        actual = source.channels[position]
        if declared != actual:
            raise ValueError(f'model YAML layer {i} (Index): declares {declared} channels for output {position} of '
                             f'layer {source.i} ({source.variant}), which has {actual}; write [{actual}, {position}]')


def _wrap_parse_model(extended: Callable, original: Callable) -> Callable:
    def parse_model(d, ch, verbose=True):
        rows = [list(r) for r in d['backbone'] + d['head']]
        try:
            layers, save = extended(d, ch, verbose)
        except ValueError as e:
            frame = _failing_layer(e.__traceback__, extended.__code__)
            if frame is None or frame.get('m') not in YAML_MODULES.values():
                raise
            i, m = frame['i'], frame['m']
            f = frame['f']
            channels = frame['ch'][f] if isinstance(f, int) else [frame['ch'][x] for x in f]
            raise ValueError(f'model YAML layer {i} ({m.__name__}, from {f}, {channels} input channels): '
                             f'{e}') from None
        _check_backbone_taps(layers, rows)
        return layers, save

    parse_model.__doc__ = original.__doc__
    parse_model.__wrapped__ = original  # type: ignore[attr-defined]
    parse_model._uniconvnet_extended = True  # type: ignore[attr-defined]
    return parse_model


def _expose_names() -> None:
    """Put the YAML names where ``parse_model`` resolves them (its module's globals).

    Done on import as well: a YAML naming the blocks then reaches their constructors, which say to call
    :func:`register` when it has not run, instead of ultralytics' bare ``KeyError``.
    """
    from ultralytics.nn import tasks
    for name, cls in YAML_MODULES.items():
        setattr(tasks, name, cls)


_expose_names()  # on import: a YAML naming the blocks before register() gets the message, not a KeyError


def register() -> None:
    """Make ``RFABlock``, ``C3k2RFA`` and ``UniConvNetBackbone`` usable in ultralytics model YAMLs.

    Idempotent. Touches no installed file: the names are set on ``ultralytics.nn.tasks`` (where the YAML
    parser resolves them) and its ``parse_model`` is replaced by a recompiled copy that knows their channel
    bookkeeping (see :class:`_ParserExtender`).
    """
    global _registered
    import ultralytics.nn as ultralytics_nn
    from ultralytics.nn import tasks

    _expose_names()
    if not getattr(tasks.parse_model, '_uniconvnet_extended', False):
        original = tasks.parse_model
        tasks.parse_model = _wrap_parse_model(_extend_parse_model(original), original)
        if getattr(ultralytics_nn, 'parse_model', None) is original:
            ultralytics_nn.parse_model = tasks.parse_model
    _registered = True


# --- shipped model YAMLs -------------------------------------------------------------------------------------------

def list_model_yamls() -> List[str]:
    """Names of the shipped model YAMLs at their default (n) scale, e.g. ``yolo11n-rfa-neck.yaml``."""
    return sorted(p.name.replace('yolo11-', 'yolo11n-', 1) for p in MODEL_YAML_DIR.glob('yolo11-*.yaml'))


def _unscaled(name: str) -> str:
    """ultralytics' rule: ``yolo11n-x.yaml`` is ``yolo11-x.yaml`` at scale n."""
    return re.sub(r'(\d+)([nslmx])(.+)?$', r'\1\3', name)


def model_yaml(name: Union[str, Path]) -> str:
    """What to give ``YOLO(...)`` for a shipped YAML name (any scale: ``yolo11s-rfa-neck.yaml``), a path, or
    one of ultralytics' own names (``yolo11n.yaml``).

    As with ultralytics' own ``yolo11n.yaml``, the scale letter in the name picks the row of the YAML's
    ``scales`` table, and the file on disk carries no letter (``yolo11-rfa-neck.yaml``).
    """
    path = Path(name)
    if path.is_file():
        return str(path)
    if path.parent != Path('.'):
        if Path(_unscaled(str(path))).is_file():
            return str(path)  # ultralytics resolves the scale letter to the file without it
    elif (MODEL_YAML_DIR / _unscaled(path.name)).is_file():
        return str(MODEL_YAML_DIR / path.name)
    elif path.suffix == '.yaml':
        from ultralytics.utils.checks import check_yaml
        if check_yaml(_unscaled(path.name), hard=False):
            return path.name  # one of ultralytics' own, e.g. yolo11n.yaml
    raise FileNotFoundError(f'model YAML {name!r} not found: give a path, one of ultralytics\' own names '
                            f'(yolo11n.yaml...) or one of ours: {", ".join(list_model_yamls())} (any scale letter)')


# --- training, validation and COCO evaluation ----------------------------------------------------------------------

DEFAULT_DATA_ROOT = Path('~/.cache/uniconvnet/small_objects').expanduser()
BUILTIN_IMGSZ = 128  # the built-in canvases are 128 x 128: train and predict at their own size


def builtin_data(root: Union[str, Path, None] = None, **generate_kwargs: Any) -> Path:
    """The built-in small-object dataset in YOLO format (written once under ``root``); returns its data YAML."""
    from ..data.yolo import small_objects_yolo
    return small_objects_yolo(DEFAULT_DATA_ROOT if root is None else root, **generate_kwargs)


def _load_model(model: Any):
    """An ultralytics ``YOLO`` from a shipped YAML name, a YAML path or a trained ``.pt`` (or a ``YOLO``)."""
    from ultralytics import YOLO

    register()
    if isinstance(model, YOLO):
        return model
    if str(model).endswith('.pt'):
        if not Path(model).is_file():
            raise FileNotFoundError(f'model weights not found: {model}')
        return YOLO(str(model))
    return YOLO(model_yaml(model))


class _KeepPredictionsValidator(DetectionValidator):
    """ultralytics' detection validator, keeping its COCO-style predictions (``jdict``, with ``save_json``) for
    pycocotools instead of scoring them itself (with faster-coco-eval, which it would try to pip-install)."""

    def eval_json(self, stats: Dict[str, Any]) -> Dict[str, Any]:
        return stats


def to_coco_results(predictions: List[Dict[str, Any]], coco_json: Union[str, Path]) -> List[Dict[str, Any]]:
    """ultralytics' validation predictions (``predictions.json`` entries) with the image and category ids of
    a COCO json: images matched by file name, YOLO class ``k`` (written as ``k + 1``) to the json's ``k``-th
    category (the order :func:`uniconvnet.data.yolo.coco_to_yolo_labels` writes)."""
    import json
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


def val(model: Any, data: Union[str, Path, None] = None, imgsz: Optional[int] = None,
        batch: int = 16, device: str = 'cpu', coco_json: Union[str, Path, None] = None,
        **overrides: Any) -> Dict[str, float]:
    """Validate a YOLO model; returns ``mAP50-95`` and ``mAP50`` (ultralytics' validator) and, given a COCO json
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
    yolo = _load_model(model)
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
        from ..engine.coco_eval import coco_evaluate
        out.update(coco_evaluate(coco_json, to_coco_results(predictions, coco_json)))
    return out


def train(cfg: Union[str, Path], data: Union[str, Path, None] = None, epochs: int = 100,
          imgsz: Optional[int] = None, batch: int = 16, device: str = 'cpu', seed: int = 0,
          project: Union[str, Path] = 'runs/yolo', name: Optional[str] = None, **overrides: Any) -> Path:
    """Train a YOLO model from a model YAML (never from downloaded weights); returns the best ``.pt``.

    Args:
        cfg: a shipped YAML name (``yolo11n-rfa-neck.yaml``, any scale letter) or a YAML path; ultralytics'
            own names (``yolo11n.yaml``) work too.
        data: a data YAML; None: the built-in small-object dataset, written in YOLO format on first use.
        imgsz: training size (default: 128 on the built-in data, else 640).
        overrides: any other ultralytics training argument (``workers``, ``amp``, ``lr0``...).
    """
    data_yaml = Path(data) if data is not None else builtin_data()
    if not data_yaml.is_file():
        raise FileNotFoundError(f'data YAML not found: {data_yaml}')
    yolo = _load_model(cfg)
    settings: Dict[str, Any] = dict(data=str(data_yaml), epochs=epochs, imgsz=imgsz or (BUILTIN_IMGSZ if data is None
                                    else 640), batch=batch, device=device, seed=seed, deterministic=True,
                                    pretrained=False, project=str(Path(project).resolve()),
                                    name=name or Path(str(cfg)).stem, exist_ok=True, plots=False, verbose=False)
    settings.update(overrides)
    yolo.train(**settings)
    return Path(yolo.trainer.best)
