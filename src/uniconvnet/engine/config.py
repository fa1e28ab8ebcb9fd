"""Every training setting in one dataclass. The command line is generated from it, so each has a flag."""
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, Dict, Optional

from .. import ops

__all__ = ['DCN_BACKENDS', 'TrainConfig']

#: what ``--dcn-backend`` takes: 'auto' and the backends registered in :mod:`uniconvnet.ops`
DCN_BACKENDS = ('auto', *ops.backend_names())


def _opt(default: Any, help: str, choices: Optional[tuple] = None) -> Any:
    return field(default=default, metadata={'help': help, 'choices': choices})


@dataclass
class TrainConfig:
    """Training settings. ``None`` means "decided by the recipe, the model or the data" (see ``recipes.py``)."""
    # what to train on what
    model: str = _opt('uniconvnet_a', 'model name: uniconvnet_a ... uniconvnet_xl (or any timm model)')
    data: Optional[str] = _opt(None, 'ImageNet-style folder with train/CLASS/*.jpg and val/CLASS/*.jpg; wds/PATH '
                                     '(webdataset shards, `uniconvnet shards`); hfds/NAME or hfids/NAME (Hugging '
                                     'Face dataset, loaded or streamed); a save_to_disk folder (default: the '
                                     'built-in scikit-learn digits)')
    output: Optional[str] = _opt(None, 'output folder (default: runs/MODEL-DATA)')
    recipe: Optional[str] = _opt(None, 'preset: digits (default without --data), in1k (default with --data), '
                                       'ft384, in22k')
    num_classes: Optional[int] = _opt(None, 'classes of the head (default: the number of class folders)')
    finetune: Optional[str] = _opt(None, 'start from these weights (official .pth or ours); the head is '
                                         're-initialised when the class count differs')
    resume: Optional[str] = _opt(None, "'auto' (last.pt in the output folder, if any) or a checkpoint path")
    overwrite: bool = _opt(False, 'start fresh even if the output folder already holds a run')
    # schedule and optimiser
    epochs: int = _opt(300, 'training epochs')
    warmup_epochs: float = _opt(20, 'linear warm-up epochs (per step)')
    batch_size: int = _opt(128, 'images per step per process')
    accum_steps: int = _opt(1, 'gradient accumulation: steps per optimiser update')
    base_lr: float = _opt(4e-3, 'learning rate at --base-batch images per update, scaled linearly to the '
                                'effective batch')
    base_batch: int = _opt(4096, 'effective batch that --base-lr is given for')
    lr: Optional[float] = _opt(None, 'absolute learning rate (overrides --base-lr scaling)')
    min_lr: float = _opt(1e-6, 'final learning rate of the cosine schedule')
    warmup_lr: float = _opt(0.0, 'learning rate at the start of warm-up')
    sched: str = _opt('cosine', "timm scheduler name ('cosine', 'step', 'plateau', ...)")
    opt: str = _opt('adamw', "timm optimiser name ('adamw', 'lamb', 'sgd', ...)")
    opt_eps: float = _opt(1e-8, 'optimiser epsilon')
    weight_decay: float = _opt(0.05, 'weight decay (not applied to norms, biases and layer scales)')
    layer_decay: Optional[float] = _opt(None, 'layer-wise lr decay (e.g. 0.7), through the model\'s group_matcher')
    clip_grad: Optional[float] = _opt(None, 'clip the gradient norm to this value')
    # model regularisation
    drop_path: Optional[float] = _opt(None, 'stochastic depth rate (default: the recipe\'s value for the model)')
    head_init_scale: float = _opt(1.0, 'scale of the initial classifier weights')
    smoothing: float = _opt(0.1, 'label smoothing')
    mixup: float = _opt(0.8, 'mixup alpha (0 = off)')
    cutmix: float = _opt(1.0, 'cutmix alpha (0 = off)')
    mixup_prob: float = _opt(1.0, 'probability of applying mixup or cutmix to a batch')
    mixup_switch_prob: float = _opt(0.5, 'probability of cutmix rather than mixup when both are on')
    ema_decay: float = _opt(0.9999, 'model EMA decay (0 = off); the EMA is evaluated and saved as well')
    # data and augmentation
    image_size: Optional[int] = _opt(None, 'square input size (default: the recipe\'s or the model\'s)')
    crop_pct: Optional[float] = _opt(None, 'eval centre-crop fraction (default: the model\'s)')
    interpolation: Optional[str] = _opt(None, "resize interpolation (default: the model's, e.g. 'bicubic')")
    scale_min: float = _opt(0.08, 'smallest area fraction of the random resized crop')
    hflip: float = _opt(0.5, 'horizontal flip probability')
    color_jitter: float = _opt(0.4, 'colour jitter strength (0 = off)')
    auto_augment: Optional[str] = _opt('rand-m9-mstd0.5-inc1', "timm auto-augment policy ('' = off)")
    reprob: float = _opt(0.25, 'random erasing probability')
    no_aug: bool = _opt(False, 'no augmentation: training images are resized and centre-cropped like validation')
    workers: int = _opt(8, 'data loading worker processes per training process')
    # hardware and numerics
    device: str = _opt('auto', "'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1', ...")
    threads: Optional[int] = _opt(None, "CPU threads of this process, at least 1 (default: torch's, one per core)")
    amp: str = _opt('none', 'mixed precision', ('none', 'bf16', 'fp16'))
    recompute: str = _opt('', "branches of every UniConvNet block that keep only their input and run again in the "
                              "backward pass, comma-separated from rfa, dcn, mlp (less memory, more time; '' none)")
    dcn_backend: Optional[str] = _opt(None, f"DCNv3 sampling backend of a UniConvNet: {', '.join(DCN_BACKENDS)} "
                                            f"(default: UNICONVNET_DCN_BACKEND, else auto)")
    channels_last: bool = _opt(False, 'train in channels_last memory format')
    compile: bool = _opt(False, 'torch.compile the training model')
    deterministic: bool = _opt(False, 'deterministic algorithms and data order: a resumed run repeats an '
                                      'uninterrupted one exactly')
    seed: int = _opt(0, 'random seed')
    max_bad_steps: int = _opt(10, 'stop after this many non-finite (NaN/inf) steps in a row')
    # bookkeeping
    log_interval: int = _opt(20, 'steps between progress lines when not on a terminal')
    limit_train_batches: Optional[int] = _opt(None, 'use only this many training batches per epoch (smoke tests)')
    limit_val_batches: Optional[int] = _opt(None, 'validate on only this many batches per process (smoke tests)')

    @classmethod
    def field_names(cls) -> Dict[str, Any]:
        return {f.name: f for f in fields(cls)}

    @classmethod
    def defaults(cls) -> Dict[str, Any]:
        return {f.name: f.default for f in fields(cls) if f.default is not MISSING}

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)
