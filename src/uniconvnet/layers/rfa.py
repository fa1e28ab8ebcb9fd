"""Receptive Field Aggregator (RFA), the first branch of every UniConvNet block, usable on its own.

The input channels are split into ``N + 1`` equal parts for ``N`` layer operators. Layer ``i`` takes the
running feature (the first part, then the previous layer's output) and the next untouched part, and widens the
running feature by one part. Each layer operator does, in the official ``ConvMod``'s arithmetic::

    x       = LayerNorm(x)                       (the first layer's norm covers all channels, before the split)
    context = DepthwiseKxK(GELU(Conv1x1(x)))
    amplify = Conv1x1(context * Conv1x1(x))      (the amplifier: context gated by a projection of x)
    discrim = Depthwise3x3(Conv1x1(part)) + Proj1x1(context)   (Proj is the identity for the first layer)
    out     = concat(discrim, amplify)

Everything is computed channels-last: the 1x1 convolutions are matrix products over the last dimension (their
weights keep the official ``(out, in, 1, 1)`` shape, so checkpoints load as they are), the LayerNorms are single
``F.layer_norm`` calls, and the depthwise convolutions read NCHW views of channels-last memory, oneDNN's fast
layout, without copies. The discriminator paths of all layers read only the RFA's normalised input, so the RFA
runs them together: one matrix product (block-diagonal weights) and one depthwise convolution instead of one of
each per layer. In float32 this rounds differently from the official NCHW code, within the official-parity
tolerance (``tests/models/test_parity.py``).
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checks import check_layout
from .functional import (block_diagonal, depthwise_channels_last, leaves_cpu_autocast, pointwise_channels_last,
                         product_linear, scale_rows)
from .fusion import fold_input_affine_, fold_output_scale_, without_affine

__all__ = ['LayerOperator', 'ReceptiveFieldAggregator', 'RFA', 'rfa_valid_widths']


def rfa_valid_widths(dim: int, num_layers: int) -> List[int]:
    """The two widths nearest ``dim`` that split into ``num_layers + 1`` equal, non-empty parts."""
    parts = num_layers + 1
    below = (dim // parts) * parts
    return [w for w in (below, below + parts) if w > 0]


class LayerOperator(nn.Module):
    """One layer of the RFA: widens a running feature of ``in_chs`` channels by ``part_chs`` channels.

    Takes and returns channels-last ``(N, H, W, C)`` tensors. Its discriminator convolutions (``disc_pw``,
    ``disc_dw``) are run by the RFA for all layers at once (:meth:`ReceptiveFieldAggregator.discriminate`); the
    forward takes their output.
    """

    first: torch.jit.Final[bool]  # a constant for TorchScript, which then compiles only the branch taken

    def __init__(
            self,
            in_chs: int,
            part_chs: int,
            kernel_size: int,
            first: bool = False,
            eps: float = 1e-6,
            device=None,
            dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        if first and in_chs != part_chs:
            raise ValueError(f'the first layer operator takes one part: in_chs={in_chs} != part_chs={part_chs}')
        self.first = first
        self.part_chs = part_chs
        # the first layer reads a part of the RFA's own, already normalised input
        self.norm = nn.Identity() if first else nn.LayerNorm(in_chs, eps=eps, **dd)
        self.context_pw = nn.Conv2d(in_chs, in_chs, 1, **dd)
        self.context_dw = nn.Conv2d(in_chs, in_chs, kernel_size, padding=kernel_size // 2, groups=in_chs, **dd)
        self.amp_gate = nn.Conv2d(in_chs, in_chs, 1, **dd)
        self.amp_proj = nn.Conv2d(in_chs, in_chs, 1, **dd)
        self.disc_pw = nn.Conv2d(part_chs, part_chs, 1, **dd)
        self.disc_dw = nn.Conv2d(part_chs, part_chs, 3, padding=1, groups=part_chs, **dd)
        # the first layer's context already has the width of one part
        self.context_proj = nn.Identity() if first else nn.Conv2d(in_chs, part_chs, 1, **dd)

    def forward(self, x: torch.Tensor, discriminated: torch.Tensor,
                output_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``: the running feature; ``discriminated``: ``disc_dw(disc_pw(part))`` of this layer's part.

        ``output_scale``: a per-channel scale of the output, taken into the amplifier's and the context
        projection's weights (``discriminated`` must come scaled); not for the first layer, which adds its
        context unprojected.
        """
        x = self.norm(x)
        context = pointwise_channels_last(x, self.context_pw.weight, self.context_pw.bias)
        context = depthwise_channels_last(context, self.context_dw.weight, self.context_dw.bias, gelu_first=True)
        gate = pointwise_channels_last(x, self.amp_gate.weight, self.amp_gate.bias)
        amp_weight, amp_bias = scale_rows(self.amp_proj.weight.flatten(1), self.amp_proj.bias,
                                          None if output_scale is None else output_scale[self.part_chs:])
        amplified = product_linear(context, gate, amp_weight, amp_bias)
        if self.first:
            discriminated = discriminated + context
        else:
            proj_weight, proj_bias = scale_rows(self.context_proj.weight.flatten(1), self.context_proj.bias,
                                                None if output_scale is None else output_scale[:self.part_chs])
            discriminated = discriminated + F.linear(context, proj_weight, proj_bias)
        return torch.cat((discriminated, amplified), dim=-1)

    @torch.no_grad()
    def fold_input_affine_(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """Take ``x * scale + shift`` (after this layer's norm) into the two 1x1 convolutions that read ``x``."""
        fold_input_affine_(self.context_pw, scale, shift)
        fold_input_affine_(self.amp_gate, scale, shift)

    def reparameterize(self) -> None:
        """Fold the norm's affine parameters into the 1x1 convolutions after it (inference; in place)."""
        if not self.first and self.norm.elementwise_affine:
            self.fold_input_affine_(self.norm.weight, self.norm.bias)
            self.norm = without_affine(self.norm)


class ReceptiveFieldAggregator(nn.Module):
    """RFA over an NCHW tensor; the output has the input's shape (an NCHW view of channels-last memory).

    Computes channels-last inside: an input that is channels-last in memory (``x.contiguous(memory_format=
    torch.channels_last)``, as every UniConvNet block passes) is read without a copy.

    Args:
        dim: channels in and out; must be divisible by ``len(kernel_sizes) + 1``.
        kernel_sizes: one odd depthwise kernel size per layer operator; ``(7, 9, 11)`` is the paper's.
        eps: LayerNorm epsilon.
    """

    # Under CPU autocast an RFA whose matrix products do fewer multiply-adds than this (pixels x dim^2, the same
    # for every stage of a variant) computes in float32: there bfloat16's costs per call (casting inputs and
    # weights, oneDNN's bfloat16 GEMM set-up) outweigh its faster arithmetic. On a 2-core AVX512-BF16 CPU, the RFAs
    # of A, N0 and T at batch 1 (1.8, 7.2, 12.8 M) and of A at batch 8 (14.5 M) ran 1.0-1.46x the float32 time in
    # bfloat16, those of N0 and T at batch 8 (58, 103 M) 0.57-0.88x (`benchmarks/eager_cpu.py --branches`). An
    # attribute: 0 follows autocast always.
    autocast_float32_below: int = 16_000_000

    # non-persistent buffers, None until reparameterize() (see discriminate())
    frozen_pw_weight: Optional[torch.Tensor]
    frozen_pw_bias: Optional[torch.Tensor]
    frozen_dw_weight: Optional[torch.Tensor]
    frozen_dw_bias: Optional[torch.Tensor]

    def __init__(
            self,
            dim: int,
            kernel_sizes: Sequence[int] = (7, 9, 11),
            eps: float = 1e-6,
            device=None,
            dtype=None,
    ):
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        if not kernel_sizes:
            raise ValueError('ReceptiveFieldAggregator needs at least one kernel size, e.g. (7, 9, 11)')
        bad = [k for k in kernel_sizes if k < 1 or k % 2 == 0]
        if bad:
            raise ValueError(f'kernel sizes must be odd and positive (they are centred), got {bad} '
                             f'in kernel_sizes={kernel_sizes}')
        num_parts = len(kernel_sizes) + 1
        if dim % num_parts != 0:
            raise ValueError(
                f'ReceptiveFieldAggregator: {dim} channels cannot be split into {num_parts} equal parts '
                f'({len(kernel_sizes)} layer operators + 1); use a width divisible by {num_parts}, '
                f'e.g. {" or ".join(str(w) for w in rfa_valid_widths(dim, len(kernel_sizes)))}')
        self.dim = dim
        self.kernel_sizes = kernel_sizes
        self.part_chs = dim // num_parts
        self.norm = nn.LayerNorm(dim, eps=eps, **dd)
        self.layers = nn.ModuleList([
            LayerOperator((i + 1) * self.part_chs, self.part_chs, k, first=i == 0, eps=eps, **dd)
            for i, k in enumerate(kernel_sizes)
        ])
        # The discriminator weights of all layer operators merged (see discriminate()): built by every forward
        # that may need their gradients; after reparameterize(), for inference, built once and kept here.
        for name in ('frozen_pw_weight', 'frozen_pw_bias', 'frozen_dw_weight', 'frozen_dw_bias'):
            self.register_buffer(name, None, persistent=False)
        self.register_load_state_dict_post_hook(_refreeze_after_load)

    def forward(self, x: torch.Tensor, output_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``output_scale``: a per-channel scale of the output (the block's layer scale). With two or more layer
        operators it acts through the last one's weights, so that no output-sized tensor is kept for its
        gradient; with one, whose output adds the context unprojected, it multiplies the output.

        Under CPU autocast, an RFA with less matrix-product work than :attr:`autocast_float32_below` computes in
        its weights' dtype with autocast off and returns the input's dtype.
        """
        x = check_layout('ReceptiveFieldAggregator', x, self.dim, channels_last=False)
        if not torch.jit.is_scripting():  # TorchScript: no autocast
            if self.leaves_autocast(x):
                with torch.autocast('cpu', enabled=False):
                    return self.aggregate(x.to(self.norm.weight.dtype), output_scale).to(x.dtype)
        return self.aggregate(x, output_scale)

    def leaves_autocast(self, x: torch.Tensor) -> bool:
        """Whether a forward of ``x`` runs with CPU autocast off: it is on, and the work (pixels x ``dim``^2
        multiply-adds) is below :attr:`autocast_float32_below`."""
        return leaves_cpu_autocast(x, x.numel() * self.dim, self.autocast_float32_below)

    def aggregate(self, x: torch.Tensor, output_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The RFA of ``x`` (NCHW) in the current precision settings; :meth:`forward` without its autocast rule."""
        x = self.norm(x.permute(0, 2, 3, 1))
        through_weights = output_scale is not None and not self.layers[-1].first
        last_scale = output_scale if through_weights else None
        discriminated = self.discriminate(x[..., self.part_chs:], last_scale)
        y = x[..., :self.part_chs]
        for i, layer in enumerate(self.layers):
            scale = last_scale if i == len(self.layers) - 1 else None
            y = layer(y, discriminated[..., i * self.part_chs:(i + 1) * self.part_chs], scale)
        if output_scale is not None and not through_weights:
            y = y * output_scale
        return y.permute(0, 3, 1, 2)

    def discriminate(self, parts: torch.Tensor, last_scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Every layer's ``disc_dw(disc_pw(part))`` at once, for ``parts`` = the normalised parts ``1..N`` (NHWC).

        The 1x1 convolutions act on disjoint parts: one matrix product with their weights on the diagonal (the
        zeros cost ``N``-fold MACs on this small piece, and save ``N - 1`` calls), then one depthwise convolution.
        ``last_scale``: the RFA's output scale, whose first part scales the last layer's depthwise convolution.
        """
        pw_weight, pw_bias, dw_weight, dw_bias = self.frozen_pw_weight, self.frozen_pw_bias, \
            self.frozen_dw_weight, self.frozen_dw_bias
        if pw_weight is None or pw_bias is None or dw_weight is None or dw_bias is None \
                or last_scale is not None or torch.is_grad_enabled():
            pw_weight, pw_bias, dw_weight, dw_bias = self.discriminator_weights(last_scale)
        y = F.linear(parts, pw_weight, pw_bias)
        return depthwise_channels_last(y, dw_weight, dw_bias)

    def discriminator_weights(self, last_scale: Optional[torch.Tensor] = None
                              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The layer operators' discriminator convolutions as one: the block-diagonal pointwise weight, its
        bias, the depthwise weight and its bias (``last_scale`` as in :meth:`discriminate`)."""
        pointwise_weights: List[torch.Tensor] = []
        pointwise_biases: List[torch.Tensor] = []
        depthwise_weights: List[torch.Tensor] = []
        depthwise_biases: List[torch.Tensor] = []
        for layer in self.layers:
            pointwise_bias, depthwise_bias = layer.disc_pw.bias, layer.disc_dw.bias
            assert pointwise_bias is not None and depthwise_bias is not None  # for TorchScript: built with biases
            pointwise_weights.append(layer.disc_pw.weight.flatten(1))
            pointwise_biases.append(pointwise_bias)
            depthwise_weights.append(layer.disc_dw.weight)
            depthwise_biases.append(depthwise_bias)
        if last_scale is not None:
            depthwise_weights[-1] = depthwise_weights[-1] * last_scale[:self.part_chs, None, None, None]
            depthwise_biases[-1] = depthwise_biases[-1] * last_scale[:self.part_chs]
        return (block_diagonal(pointwise_weights), torch.cat(pointwise_biases), torch.cat(depthwise_weights),
                torch.cat(depthwise_biases))

    @torch.no_grad()
    def freeze_(self) -> None:
        """Build the merged discriminator weights once and keep them for inference without gradients (every
        forward with gradients enabled still builds its own). :meth:`reparameterize` calls this; call it again
        after changing the layer operators' weights in place (loading a state dict does)."""
        self.frozen_pw_weight, self.frozen_pw_bias, self.frozen_dw_weight, self.frozen_dw_bias = \
            self.discriminator_weights()

    def reparameterize(self) -> None:
        """Fold the norm's affine parameters into the 1x1 convolutions that read its parts (inference; in place).

        Part 0 feeds the first layer operator's context and gate convolutions; part ``i + 1`` feeds layer ``i``'s
        discriminator convolution.
        """
        if not self.norm.elementwise_affine:
            self.freeze_()
            return
        scales = torch.split(self.norm.weight, self.part_chs)
        shifts = torch.split(self.norm.bias, self.part_chs)
        self.layers[0].fold_input_affine_(scales[0], shifts[0])
        for i, layer in enumerate(self.layers):
            fold_input_affine_(layer.disc_pw, scales[i + 1], shifts[i + 1])
        self.norm = without_affine(self.norm)
        self.freeze_()

    @torch.no_grad()
    def fold_output_scale_(self, scale: torch.Tensor) -> bool:
        """Take a per-channel scale of the output into the last layer operator's convolutions, if it can.

        The output is ``cat(disc_dw(...) + context_proj(context), amp_proj(...))``; with a single layer operator
        the context is added without a projection, so the scale cannot be folded (returns False).
        """
        last = self.layers[-1]
        if last.first:
            return False
        fold_output_scale_(last.disc_dw, scale[:self.part_chs])
        fold_output_scale_(last.context_proj, scale[:self.part_chs])
        fold_output_scale_(last.amp_proj, scale[self.part_chs:])
        if self.frozen_dw_weight is not None:
            self.freeze_()
        return True

    def extra_repr(self) -> str:
        return f'dim={self.dim}, kernel_sizes={self.kernel_sizes}'


def _refreeze_after_load(module: ReceptiveFieldAggregator, incompatible_keys) -> None:
    """After a state dict is loaded into an RFA (its layer operators included): frozen weights follow it."""
    if module.frozen_pw_weight is not None:
        module.freeze_()


RFA = ReceptiveFieldAggregator
