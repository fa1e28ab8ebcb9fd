"""Normalisation layers."""
import torch
import torch.nn as nn

__all__ = ['LayerNorm2d']


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (the official code's ``data_format="channels_first"``).

    Computed as the official code does (mean, biased variance, divide by ``sqrt(var + eps)``) rather than with
    ``F.layer_norm`` on a permuted tensor: both are correct, but in float32 they round differently, and the
    difference accumulates to about 1e-4 in the stage outputs of a deep model. A subclass of ``nn.LayerNorm``,
    so that tools that treat LayerNorms specially (weight-decay exclusion, fusing) recognise it.
    """

    def __init__(self, num_channels: int, eps: float = 1e-6, affine: bool = True, device=None, dtype=None):
        super().__init__(num_channels, eps=eps, elementwise_affine=affine, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        if self.weight is not None and self.bias is not None:
            x = self.weight[:, None, None] * x + self.bias[:, None, None]
        return x

    def forward_channels_last(self, x: torch.Tensor) -> torch.Tensor:
        """The same normalisation, in the same arithmetic, over the last dimension of an NHWC tensor."""
        mean = x.mean(-1, keepdim=True)
        centred = x - mean  # computed once (the official code computes it twice, to the same bits)
        var = centred.square().mean(-1, keepdim=True)
        x = centred / torch.sqrt(var + self.eps)
        if self.weight is not None and self.bias is not None:
            x = self.weight * x + self.bias
        return x
