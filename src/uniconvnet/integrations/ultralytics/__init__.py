"""ultralytics (YOLO) integration: the RFA as plug-in blocks for model YAMLs, UniConvNet as a YOLO backbone,
training with COCO AP by object size, and plain or sliced (SAHI) prediction on large images.

Optional extra ``ultralytics`` (``pip install "uniconvnet[ultralytics]"``; sliced prediction also needs the
``sahi`` extra); ``import uniconvnet`` never imports it. Usage::

    from ultralytics import YOLO
    from uniconvnet.integrations import ultralytics as uyolo

    uyolo.register()                                          # once per process; idempotent
    model = YOLO(uyolo.model_yaml('yolo11n-rfa-neck.yaml'))   # or any YAML naming the blocks below
    model.train(data='my-data.yaml', trainer=uyolo.DetectionTrainer,   # DDP workers register by themselves
                **uyolo.training_recipe(model, batch=16))             # a UniConvNet backbone's recipe

YAML names (ultralytics' conventions: the parser supplies the input channels, the YAML gives the output
channels first, scaled by the model's width multiple like ultralytics' own blocks):

``RFABlock``            ``[c2, kernel_sizes=[7, 9, 11]]``: ``x + RFA(x)`` (then a 1x1 Conv when ``c2`` differs).
``C3k2RFA``             ``[c2, c3k=False, e=0.5, kernel_sizes=[7, 9, 11]]``: ultralytics' C3k2 with RFA
                        blocks in place of its bottlenecks; a drop-in replacement for a ``C3k2`` row.
``UniConvNetBackbone``  ``[c2, variant='uniconvnet_a', out_indices=[1, 2, 3], weights=None, in_chans=3,
                        drop_path_rate=0.0, model_kwargs={}, trunk_norm='auto']``: a timm ``features_only``
                        model returning a list of stage outputs, picked by ``Index`` rows as for ultralytics'
                        ``TorchVision`` layer; it normalises its [0, 1] input with the model's mean and std, and
                        from scratch its stem and downsampling LayerNorms are BatchNorms (docs/yolo.md: why).

Modules: ``blocks`` (the layers), ``parser`` (``register()``: the one place that extends ultralytics' YAML
parser, and why), ``configs`` (shipped YAMLs), ``trainer`` (``DetectionTrainer``, ultralytics' trainer class with
our blocks registered), ``task`` (``train``, ``evaluate`` (alias ``val``), ``training_recipe``: what
``uniconvnet yolo train|eval`` calls; ``training`` is its old name), ``predict`` (plain and sliced prediction),
``safe_loading`` (the ``weights_only`` allow-list).

Importing this package, training, evaluating and predicting through it leave the caller's PyTorch and numba thread
counts and environment as they were (ultralytics changes them; :func:`uniconvnet.host.kept_host_settings`).

Importing this package puts the YAML names where ultralytics' parser looks them up (so that a YAML built before
``register()`` gets our message, not a ``KeyError``) and our classes on torch's ``weights_only`` allow-list.
Saved models (``best.pt``) are ordinary ultralytics checkpoints: in a fresh process, importing this package is
all that loading, predicting and exporting need.
"""
from ...host import kept_host_settings

# importing ultralytics writes OMP_NUM_THREADS and other variables: not ours to change, so undone after
with kept_host_settings():
    try:
        import ultralytics  # noqa: F401
    except ImportError as e:  # the extra is optional: say which one brings it
        raise ImportError('the ultralytics integration needs ultralytics: pip install "uniconvnet[ultralytics]" '
                          '(or pip install ultralytics)') from e

    from .blocks import YAML_MODULES, C3k2RFA, C3kRFA, RFABlock, UniConvNetBackbone, is_registered
    from .configs import MODEL_YAML_DIR, list_model_yamls, model_yaml
    from .parser import expose_names, register
    from .predict import predict
    from .safe_loading import allow_safe_loading, safe_globals
    from .task import (BUILTIN_IMGSZ, DEFAULT_DATA_ROOT, builtin_data, evaluate, load_model, to_coco_results, train,
                       training_recipe, val)
    from .trainer import DetectionTrainer

__all__ = ['RFABlock', 'C3kRFA', 'C3k2RFA', 'UniConvNetBackbone', 'YAML_MODULES', 'register', 'is_registered',
           'model_yaml', 'list_model_yamls', 'MODEL_YAML_DIR', 'builtin_data', 'train', 'evaluate', 'val',
           'to_coco_results', 'DetectionTrainer', 'load_model', 'training_recipe', 'predict', 'safe_globals', 'allow_safe_loading',
           'BUILTIN_IMGSZ', 'DEFAULT_DATA_ROOT']

expose_names()
allow_safe_loading()
