"""The one table of DCNv3 sampling geometries every DCN test draws from, and the inputs made from it.

Each geometry is a problem size and a sampling layout; the inputs come in three kinds:

* ``random``: offsets ``randn * spread`` (any fractional position), for forward passes;
* ``fractional``: offsets a whole number of pixels plus a quarter or three quarters, chosen so that every sample
  lies at least 1/50 pixel from a pixel edge, where bilinear sampling has a kink and two correct
  implementations may take different one-sided derivatives (checked when the inputs are made): for gradients;
* ``huge``: the ``fractional`` inputs with some offsets at +-1e30, sending those samples far beyond any integer
  range both ways (they read zeros and get zero gradients).
"""
import math
from typing import Dict, NamedTuple, Tuple

import torch

from uniconvnet.ops import dcnv3_output_size
from uniconvnet.ops.dcn.geometry import sampling_locations, unnormalize


class Geometry(NamedTuple):
    n: int
    height: int
    width: int
    group: int
    group_channels: int
    kernel_size: Tuple[int, int]
    stride: Tuple[int, int]
    padding: Tuple[int, int]
    dilation: Tuple[int, int]
    offset_scale: float
    spread: float  # offsets in pixels: random ones have this standard deviation, fractional ones this range

    @property
    def args(self) -> tuple:
        """The geometry arguments of every backend's forward, after input, offset and mask."""
        return self.kernel_size, self.stride, self.padding, self.dilation, self.group, self.offset_scale


GEOMETRIES: Dict[str, Geometry] = {
    'three_groups': Geometry(2, 5, 7, 3, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1.0, 3.0),
    'far_outside': Geometry(1, 9, 6, 2, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1.0, 20.0),  # most samples outside
    'stride2_odd_group_width_scaled': Geometry(2, 7, 8, 2, 3, (3, 3), (2, 2), (1, 1), (1, 1), 0.7, 5.0),
    'kernel5_dilation2': Geometry(1, 6, 5, 1, 5, (5, 5), (1, 1), (2, 2), (2, 2), 1.3, 2.0),
    'kernel3x5_unpadded': Geometry(1, 6, 9, 4, 8, (3, 5), (1, 1), (0, 0), (1, 1), 1.0, 1.5),
    'one_channel_per_group': Geometry(1, 8, 8, 4, 1, (3, 3), (2, 2), (0, 0), (1, 1), 2.0, 1.0),
    'single_pixel': Geometry(1, 1, 1, 4, 2, (3, 3), (1, 1), (1, 1), (1, 1), 1.0, 1.0),
    'uniconvnet_layer': Geometry(2, 9, 11, 3, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1.0, 1.5),
    'stride2_half_scale': Geometry(1, 10, 7, 2, 4, (3, 3), (2, 2), (1, 1), (1, 1), 0.5, 1.5),
    'kernel5_dilation2_double_scale': Geometry(2, 8, 8, 1, 5, (5, 5), (1, 1), (2, 2), (2, 2), 2.0, 1.5),
    'unpadded_four_groups': Geometry(1, 7, 9, 4, 3, (3, 3), (1, 1), (0, 0), (1, 1), 1.0, 1.5),
    'unpadded_two_channels': Geometry(1, 6, 5, 4, 2, (3, 3), (1, 1), (0, 0), (1, 1), 1.0, 4.0),
    'stride2_odd_size': Geometry(1, 9, 7, 2, 8, (3, 3), (2, 2), (1, 1), (1, 1), 1.0, 4.0),
    'kernel5_dilation2_scale_below_1': Geometry(1, 7, 6, 2, 5, (5, 5), (1, 1), (2, 2), (2, 2), 0.7, 4.0),
    'non_square_kernel_and_padding': Geometry(1, 6, 7, 1, 3, (3, 5), (1, 1), (1, 2), (1, 1), 1.0, 4.0),
}

INPUT_KINDS = ('random', 'fractional', 'huge')


def _offsets_off_pixel_edges(geometry: Geometry, shape, generator) -> torch.Tensor:
    """Whole pixels plus 1/4 or 3/4: with the table's offset scales every sample stays off pixel edges."""
    spread = math.ceil(geometry.spread)
    whole = torch.randint(-spread, spread + 1, shape, generator=generator)
    quarter = torch.randint(0, 2, shape, generator=generator) * 0.5 + 0.25
    return (whole + quarter).double()


def _distance_to_pixel_edges(offset: torch.Tensor, geometry: Geometry) -> float:
    padded_h = geometry.height + 2 * geometry.padding[0]
    padded_w = geometry.width + 2 * geometry.padding[1]
    loc_x, loc_y = sampling_locations(offset.double(), padded_h, padded_w, geometry.kernel_size, geometry.stride,
                                      geometry.dilation, geometry.group, geometry.offset_scale)
    x, y = unnormalize(loc_x, padded_w), unnormalize(loc_y, padded_h)
    return min((x - x.round()).abs().min().item(), (y - y.round()).abs().min().item())


def make_inputs(geometry: Geometry, dtype: torch.dtype, kind: str = 'random', seed: int = 0
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input, offset, mask)`` for ``geometry`` in ``dtype``, of one of :data:`INPUT_KINDS`; reproducible."""
    g = geometry
    out_h, out_w = dcnv3_output_size(g.height, g.width, g.kernel_size, g.stride, g.padding, g.dilation)
    points = g.kernel_size[0] * g.kernel_size[1]
    generator = torch.Generator().manual_seed(seed * 1000 + g.height * 100 + g.width)
    x = torch.randn(g.n, g.height, g.width, g.group * g.group_channels, generator=generator, dtype=torch.float64)
    offset_shape = (g.n, out_h, out_w, g.group * points * 2)
    if kind == 'random':
        offset = torch.randn(offset_shape, generator=generator, dtype=torch.float64) * g.spread
    else:
        offset = _offsets_off_pixel_edges(g, offset_shape, generator)
        assert _distance_to_pixel_edges(offset, g) >= 0.02, 'fractional offsets put a sample on a pixel edge'
        if kind == 'huge':
            offset.view(-1)[::7] = 1e30
            offset.view(-1)[3::11] = -1e30
    # masks of standard deviation 0.5: the float rounding of sampling locations, where backends differ from the
    # reference, scales with them
    mask = torch.randn(g.n, out_h, out_w, g.group * points, generator=generator, dtype=torch.float64) * 0.5
    return x.to(dtype), offset.to(dtype), mask.to(dtype)
