"""The MLP branch of a UniConvNet block, lean on activation memory in training.

A plain ``fc2(GELU(fc1(x)))`` keeps two hidden-sized tensors for the backward pass: GELU's input and output, each
four times the block's width. :func:`~.functional.gelu_linear` keeps only the input and recomputes the GELU in the
backward pass (one element-wise op), which takes about a tenth off a UniConvNet's training activations. The layer scale after the
MLP is taken into the second layer's weights, so no third tensor is kept for it either.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .functional import gelu_linear, scale_rows

__all__ = ['Mlp']


class Mlp(nn.Module):
    """``fc2(GELU(fc1(x)))`` over the last dimension, with dropout after each layer; timm's ``Mlp`` layout.

    Args:
        in_features: input and output width.
        hidden_features: hidden width.
        drop: dropout after the GELU and after ``fc2``.
    """

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0, device=None, dtype=None):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features, **dd)
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, in_features, **dd)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, output_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``output_scale``: a per-channel scale of the output (the block's layer scale), applied to ``fc2``'s
        weights rather than to the output, so that the output need not be kept for its gradient."""
        hidden = self.fc1(x)
        weight, bias = scale_rows(self.fc2.weight, self.fc2.bias, output_scale)
        if self.training and self.drop1.p > 0:  # dropout between GELU and fc2: the plain ops
            return self.drop2(F.linear(self.drop1(F.gelu(hidden)), weight, bias))
        return self.drop2(gelu_linear(hidden, weight, bias))
