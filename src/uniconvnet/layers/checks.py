"""Input checks at the entry of the layers: one clear line naming the expected layout, as ``nn.Conv2d`` does.

A few integer comparisons per call. The check is a leaf for timm's FX tracing (a call in the graph, not traced
through: the shape of a traced value is not known); it returns its input, so that graph pruning keeps it. It
compiles under TorchScript.
"""
import torch
from timm.layers import register_notrace_function

__all__ = ['check_layout']


@register_notrace_function
def check_layout(layer: str, x: torch.Tensor, channels: int, channels_last: bool) -> torch.Tensor:
    """``x``, if it is 4-D with ``channels`` channels, last (NHWC) or second (NCHW); else a ValueError."""
    channel_dim = 3 if channels_last else 1
    if x.dim() == 4 and x.shape[channel_dim] == channels:
        return x
    expected = 'a channels-last (N, H, W, C)' if channels_last else 'an (N, C, H, W)'
    message = f'{layer} expects {expected} tensor with C={channels}, got shape {list(x.shape)}'
    if x.dim() == 4 and x.shape[4 - channel_dim] == channels:  # the other layout: say how to get this one
        message += f'; it looks {"(N, C, H, W)" if channels_last else "channels-last"}: pass ' \
                   f'x.permute({"0, 2, 3, 1" if channels_last else "0, 3, 1, 2"})'
    raise ValueError(message)
