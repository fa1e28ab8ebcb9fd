"""Parameters and MACs are computed from the model (``uniconvnet.speed.complexity``): checked by hand here."""
import torch

import uniconvnet
from uniconvnet.speed import measure_complexity


class _ChannelsLast(torch.nn.Module):
    """The DCNv3 layer takes NHWC; the counter feeds NCHW."""

    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x.permute(0, 2, 3, 1))


def test_dcnv3_macs_match_a_hand_count():
    channels, group, points, h, w = 16, 2, 9, 5, 6
    c = measure_complexity(_ChannelsLast(uniconvnet.DCNv3(channels, group=group)), (channels, h, w))
    # per output pixel: the input and output projections, the offset head (x and y per group and point), the
    # mask head (one weight per group and point), and the 3x3 depthwise convolution that feeds the two heads
    projections = channels * channels + channels * channels
    heads = channels * (group * points * 2) + channels * (group * points)
    depthwise = channels * points
    assert (projections, heads, depthwise) == (512, 864, 144)
    assert c.macs == h * w * (projections + heads + depthwise) == 45600
    # the deformable sampling is counted apart: one multiply-add per channel and sampling point
    assert c.dcn_sampling_macs == h * w * channels * points == 4320
