"""Parameters and multiply-accumulates (MACs), computed from the model, never typed by hand.

MACs of convolutions, linears and matrix products come from ``torch.utils.flop_counter`` (FLOPs / 2), the
same quantities fvcore-style counters report, so they compare with the paper's "FLOPs" column. The DCNv3
sampling is counted separately, as ``H_out * W_out * C * P`` per image: one multiply-add per sampled value and
mask weight, like a depthwise conv with ``P`` taps; the four bilinear weights per sample are not counted.
Counting runs on the meta device: no memory, no compute, any variant in milliseconds.
"""
from dataclasses import asdict, dataclass
from typing import Dict, List, Sequence, Tuple

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from ..layers import DCNv3
from ..models import VARIANTS, create_model

__all__ = ['ModelComplexity', 'count_parameters', 'measure_complexity', 'variants_table', 'format_variants_table']


@dataclass
class ModelComplexity:
    params: int
    macs: int
    dcn_sampling_macs: int

    @property
    def total_macs(self) -> int:
        return self.macs + self.dcn_sampling_macs

    def as_dict(self) -> Dict[str, int]:
        return {**asdict(self), 'total_macs': self.total_macs}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure_complexity(model: nn.Module, input_size: Tuple[int, int, int] = (3, 224, 224)) -> ModelComplexity:
    """Parameters and MACs of one image of ``input_size`` (C, H, W). The model is not modified."""
    device = next(model.parameters()).device
    sampling = []

    def count_sampling(module: DCNv3, _inputs, output: torch.Tensor) -> None:
        n, h, w, c = output.shape
        sampling.append(n * h * w * c * module.kernel_size * module.kernel_size)

    handles = [m.register_forward_hook(count_sampling) for m in model.modules() if isinstance(m, DCNv3)]
    try:
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.zeros((1, *input_size), device=device, dtype=next(model.parameters()).dtype))
    finally:
        for h in handles:
            h.remove()
    return ModelComplexity(count_parameters(model), counter.get_total_flops() // 2, sum(sampling))


def variants_table(image_size: int = 224, names: Sequence[str] = ()) -> List[Dict[str, object]]:
    """One row per UniConvNet variant: parameters and MACs at ``image_size`` (1000 classes)."""
    if image_size < 1:
        raise ValueError(f'image size (--size) must be at least 1, got {image_size}')
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f'unknown variant(s) {", ".join(unknown)}; valid: {", ".join(VARIANTS)}')
    rows = []
    for name in names or VARIANTS:
        model = create_model(name, num_classes=1000, device='meta').eval()
        c = measure_complexity(model, (3, image_size, image_size))
        cfg = VARIANTS[name]
        rows.append(dict(model=name, depths=tuple(cfg['depths']), dims=tuple(cfg['dims']),
                         dcn_group_channels=cfg['dcn_group_channels'], **c.as_dict()))
    return rows


def format_variants_table(rows: List[Dict[str, object]], image_size: int = 224) -> str:
    """Markdown table of :func:`variants_table` rows."""
    lines = [f'| model | depths | dims | DCN group width | params (M) | GMACs @{image_size} | '
             f'+ DCN sampling GMACs |',
             '|---|---|---|---|---:|---:|---:|']
    for r in rows:
        lines.append(f"| {r['model']} | {r['depths']} | {r['dims']} | {r['dcn_group_channels']} | "
                     f"{r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.3f} | {r['dcn_sampling_macs'] / 1e9:.3f} |")
    return '\n'.join(lines)
