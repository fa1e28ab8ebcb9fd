"""UniConvNet's deployment form: the same function as the model, arranged for ONNX runtimes and OpenVINO.

The eager model computes channels-last (matrix products over the channels, LayerNorms over the last dimension),
PyTorch's fastest arrangement. Traced as it is, it gives runtimes a graph they cannot fuse: a transpose around
every depthwise convolution, the RFA's weights sliced and stacked at run time, and the DCN's sampling grid
rebuilt from shape arithmetic in every layer (7,272 ONNX nodes for UniConvNet-A). :func:`deploy_form` builds,
from a model's weights, the form that runtimes run well (timm's reparameterised forms are the precedent):

* NCHW throughout: every 1x1 convolution a ``Conv``, which onnxruntime's NCHWc transformer and OpenVINO's blocked
  layouts fuse with their neighbours; LayerNorms over the channels as reductions over axis 1 (no transposes);
* every weight prepared once: layer scales and norm affines folded (:meth:`UniConvNet.fuse`), the RFA's quarter
  split done by the weights of the convolutions that read the parts (zero columns), so no ``Split`` nodes;
* the DCN sampling as the runtime's own deformable convolution (``DeformConv``, which OpenVINO export turns into
  its ``DeformableConvolution``) or, as the fallback, ``GridSample`` with its kernel grid a constant; the offset and
  mask projections permuted to the operator's layout once, here (:func:`~.ops.dcn.nchw.deform_conv_rows`).

The form is for inference: it is built from a copy and does not train. It equals the model up to float rounding
(``tests/test_deploy.py``).
"""
import copy
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
from timm.layers import LayerNorm2d

from .layers import DCNv3, Mlp, ReceptiveFieldAggregator
from .layers.functional import block_diagonal
from .models.uniconvnet import UniConvNet, UniConvNetBlock
from .ops.dcn.nchw import dcnv3_deform_conv, dcnv3_grid_sample, deform_conv_rows

__all__ = ['SAMPLINGS', 'DeployUniConvNet', 'deploy_form']

# the DCN sampling operator of the form: the runtime's deformable convolution, or standard operators
SAMPLINGS = ('deformconv', 'gridsample')
# LayerNorms on feature maps of at most this stride (the stem and the first stage) as reductions, the others as
# LayerNormalization nodes (see ChannelNorm): measured in onnxruntime, UniConvNet-A at 224x224, 2 threads, both
# batch 1 and 8 faster than either form throughout. OpenVINO runs every norm fastest as reductions (math.inf):
# A and N0, 224x224, 2 threads, 0.91-0.94x the time in f32 and 0.76-0.97x in bf16 at batch 1 and 8
REDUCTION_NORMS_UP_TO_STRIDE = 4


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of an NCHW tensor.

    Neither onnxruntime nor OpenVINO has a LayerNorm over a non-last axis. ``reductions=False``: a
    ``LayerNormalization`` between two transposes (3 nodes); ``True``: reductions over axis 1 (7 nodes, 9 with
    the affine map), no transposes. The runtimes' own kernels decide which is faster where: on the large
    feature maps of the stem and the first stage the transposes' memory traffic costs more than the extra
    nodes (:data:`REDUCTION_NORMS_UP_TO_STRIDE`).
    """

    def __init__(self, norm: nn.LayerNorm, reductions: bool = False):
        super().__init__()
        self.eps = norm.eps
        self.channels = norm.normalized_shape[0]
        self.reductions = reductions
        self.weight = None if norm.weight is None else nn.Parameter(norm.weight.detach().clone(), requires_grad=False)
        self.bias = None if norm.bias is None else nn.Parameter(norm.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.reductions:
            x = nn.functional.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), self.weight, self.bias, self.eps)
            return x.permute(0, 3, 1, 2)
        centred = x - x.mean(1, keepdim=True)
        x = centred / torch.sqrt((centred * centred).mean(1, keepdim=True) + self.eps)
        if self.weight is not None:
            x = x * self.weight.view(-1, 1, 1)
        if self.bias is not None:
            x = x + self.bias.view(-1, 1, 1)
        return x

    def extra_repr(self) -> str:
        return f'{self.channels}, eps={self.eps}, reductions={self.reductions}'


def _pointwise(weight: torch.Tensor, bias: Optional[torch.Tensor]) -> nn.Conv2d:
    """A 1x1 convolution with ``weight`` (``(out, in)`` or ``(out, in, 1, 1)``) and ``bias``."""
    weight = weight.detach().reshape(weight.shape[0], -1)
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], 1, bias=bias is not None)
    conv.weight.data.copy_(weight[:, :, None, None])
    if bias is not None:
        conv.bias.data.copy_(bias.detach())
    return conv.requires_grad_(False)


def _reading_columns(weight: torch.Tensor, start: int, total: int) -> torch.Tensor:
    """``weight`` (``(out, in)``) placed at input columns ``start:start + in`` of ``total``, zeros elsewhere: a
    1x1 convolution that reads a slice of its input without a ``Slice`` node."""
    weight = weight.detach().reshape(weight.shape[0], -1)
    full = weight.new_zeros(weight.shape[0], total)
    full[:, start:start + weight.shape[1]] = weight
    return full


def _padded(channels: int, multiple: int = 4) -> int:
    """``channels`` rounded up to a multiple of 4: onnxruntime runs a depthwise convolution in its blocked layout only
    then, and otherwise several times slower (an 11x11 one on 18 channels at 56x56: 5x)."""
    return -(-channels // multiple) * multiple


def _with_rows(weight: torch.Tensor, bias: torch.Tensor, rows: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """A layer's ``weight`` and ``bias`` with zero output rows appended up to ``rows``: its extra outputs are 0."""
    weight = weight.detach().reshape(weight.shape[0], -1)
    extra = rows - weight.shape[0]
    return (torch.cat((weight, weight.new_zeros(extra, weight.shape[1]))),
            torch.cat((bias.detach(), bias.new_zeros(extra))))


def _depthwise_with_channels(conv: nn.Conv2d, channels: int) -> nn.Conv2d:
    """A depthwise convolution with zero channels appended up to ``channels`` (zero in, zero out)."""
    padded = nn.Conv2d(channels, channels, conv.kernel_size, padding=conv.padding, groups=channels)
    padded.weight.data.zero_()
    padded.bias.data.zero_()
    padded.weight.data[:conv.out_channels] = conv.weight.detach()
    padded.bias.data[:conv.out_channels] = conv.bias.detach()
    return padded.requires_grad_(False)


def _norm(norm: nn.Module, reductions: bool) -> nn.Module:
    return nn.Identity() if isinstance(norm, nn.Identity) else ChannelNorm(norm, reductions)


def _with_channel_norms(module: nn.Module, reductions: bool) -> nn.Module:
    """A copy of ``module`` (stem, downsampling, head) with its ``LayerNorm2d`` replaced by :class:`ChannelNorm`."""
    module = copy.deepcopy(module)
    for name, child in list(module.named_children()):
        if isinstance(child, LayerNorm2d):
            setattr(module, name, ChannelNorm(child, reductions))
    return module


class DeployRFA(nn.Module):
    """:class:`~.layers.ReceptiveFieldAggregator` in NCHW, without splits: every convolution that reads a part
    reads the whole normalised input through zero columns."""

    def __init__(self, rfa: ReceptiveFieldAggregator, output_scale: Optional[torch.Tensor], reductions: bool):
        super().__init__()
        part, dim = rfa.part_chs, rfa.dim
        self.norm = ChannelNorm(rfa.norm, reductions)
        self.layers = nn.ModuleList()
        for i, layer in enumerate(rfa.layers):
            operator = nn.Module()
            operator.norm = _norm(layer.norm, reductions)
            if layer.first:  # it reads part 0 of the normalised input
                operator.context_pw = _pointwise(_reading_columns(layer.context_pw.weight, 0, dim),
                                                 layer.context_pw.bias)
                operator.amp_gate = _pointwise(_reading_columns(layer.amp_gate.weight, 0, dim), layer.amp_gate.bias)
                operator.context_dw = copy.deepcopy(layer.context_dw).requires_grad_(False)
                operator.amp_proj = _pointwise(layer.amp_proj.weight, layer.amp_proj.bias)
                operator.context_proj = None
            else:  # its context reaches only 1x1 convolutions: free to carry zero channels (see _padded)
                rows = _padded(layer.context_dw.out_channels)
                operator.context_pw = _pointwise(*_with_rows(layer.context_pw.weight, layer.context_pw.bias, rows))
                operator.amp_gate = _pointwise(*_with_rows(layer.amp_gate.weight, layer.amp_gate.bias, rows))
                operator.context_dw = _depthwise_with_channels(layer.context_dw, rows)
                operator.amp_proj = _pointwise(_reading_columns(layer.amp_proj.weight, 0, rows), layer.amp_proj.bias)
                operator.context_proj = _pointwise(_reading_columns(layer.context_proj.weight, 0, rows),
                                                   layer.context_proj.bias)
            self.layers.append(operator)
        # the discriminators of all layers at once: layer i's reads part i + 1 (the columns after part 0)
        layers = rfa.layers
        self.disc_pw = _pointwise(_reading_columns(block_diagonal([m.disc_pw.weight.flatten(1) for m in layers]),
                                                   part, dim), torch.cat([m.disc_pw.bias for m in layers]))
        self.disc_dw = nn.Conv2d(part * len(layers), part * len(layers), 3, padding=1, groups=part * len(layers))
        self.disc_dw.weight.data.copy_(torch.cat([m.disc_dw.weight for m in layers]))
        self.disc_dw.bias.data.copy_(torch.cat([m.disc_dw.bias for m in layers]))
        self.disc_dw.requires_grad_(False)
        self.part = part
        self.register_buffer('output_scale', None if output_scale is None else
                             output_scale.detach().clone().view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        y = x
        discs = self.disc_dw(self.disc_pw(x)).split(self.part, 1)
        for layer, discriminated in zip(self.layers, discs):
            z = layer.norm(y)
            context = layer.context_dw(nn.functional.gelu(layer.context_pw(z)))
            amplified = layer.amp_proj(context * layer.amp_gate(z))
            discriminated = discriminated + (context if layer.context_proj is None else layer.context_proj(context))
            y = torch.cat((discriminated, amplified), 1)
        return y if self.output_scale is None else y * self.output_scale


class DeployDCN(nn.Module):
    """The DCN branch (its norm, :class:`~.layers.DCNv3`, its layer scale) in NCHW, sampling with ``sampling``."""

    def __init__(self, norm: nn.LayerNorm, dcn: DCNv3, output_scale: Optional[torch.Tensor], sampling: str,
                 dynamic_size: bool, reductions: bool):
        super().__init__()
        kernel = (dcn.kernel_size, dcn.kernel_size)
        self.sampling = sampling
        self.dynamic_size = dynamic_size
        self.geometry = dict(kernel_size=kernel, stride=(dcn.stride,) * 2, padding=(dcn.pad,) * 2,
                             dilation=(dcn.dilation,) * 2, group=dcn.group)
        self.norm = ChannelNorm(norm, reductions)
        self.input_proj = _pointwise(dcn.input_proj.weight, dcn.input_proj.bias)
        self.dw_conv = copy.deepcopy(dcn.dw_conv).requires_grad_(False)
        offset_rows, mask_rows = deform_conv_rows(kernel, dcn.group, 'yx' if sampling == 'deformconv' else 'xy')
        offset_weight, offset_bias = self._unscaled_offsets(dcn)
        self.offset = _pointwise(offset_weight[offset_rows], offset_bias[offset_rows])
        self.mask = _pointwise(dcn.mask.weight[mask_rows], dcn.mask.bias[mask_rows])
        weight, bias = dcn.output_proj.weight, dcn.output_proj.bias
        if output_scale is not None:
            weight, bias = weight * output_scale[:, None], bias * output_scale
        self.output_proj = _pointwise(weight, bias)

    @staticmethod
    def _unscaled_offsets(dcn: DCNv3) -> Tuple[torch.Tensor, torch.Tensor]:
        """The offset projection with ``offset_scale`` folded in: the sampling then takes plain pixel offsets.

        DCNv3 samples at ``centre + scale * (point + offset)`` (points centred on the window); a deformable
        convolution at ``centre + point + offset'``. So ``offset' = scale * offset + (scale - 1) * point``.
        """
        weight, bias = dcn.offset.weight.detach(), dcn.offset.bias.detach()
        scale = dcn.offset_scale
        if scale == 1.0:
            return weight, bias
        k, d = dcn.kernel_size, dcn.dilation
        half = d * (k - 1) // 2
        point = torch.arange(k, dtype=weight.dtype) * d - half
        # DCNv3's rows: (group, kx, ky, (dx, dy)), kernel points x-major
        point_xy = torch.stack((point.repeat_interleave(k), point.repeat(k)), dim=-1).reshape(-1)
        return weight * scale, bias * scale + (scale - 1) * point_xy.repeat(dcn.group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm(x)
        value = self.input_proj(z)
        query = self.dw_conv(z)
        offset, mask = self.offset(query), self.mask(query)
        if self.sampling == 'deformconv':
            sampled = dcnv3_deform_conv(value, offset, mask, **self.geometry)
        else:
            sampled = dcnv3_grid_sample(value, offset, mask, **self.geometry, fixed_size=not self.dynamic_size)
        return self.output_proj(sampled)


class DeployMlp(nn.Module):
    """The MLP branch (its norm, :class:`~.layers.Mlp`, its layer scale) in NCHW."""

    def __init__(self, norm: nn.LayerNorm, mlp: Mlp, output_scale: Optional[torch.Tensor], reductions: bool):
        super().__init__()
        self.norm = ChannelNorm(norm, reductions)
        self.fc1 = _pointwise(mlp.fc1.weight, mlp.fc1.bias)
        weight, bias = mlp.fc2.weight, mlp.fc2.bias
        if output_scale is not None:
            weight, bias = weight * output_scale[:, None], bias * output_scale
        self.fc2 = _pointwise(weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(self.norm(x))))


class DeployBlock(nn.Module):
    """:class:`~.models.uniconvnet.UniConvNetBlock` in NCHW: three residual branches."""

    def __init__(self, block: UniConvNetBlock, sampling: str, dynamic_size: bool, reductions: bool):
        super().__init__()
        self.rfa = DeployRFA(block.rfa, block.ls_rfa.gamma, reductions)
        self.dcn = DeployDCN(block.norm_dcn, block.dcn, block.ls_dcn.gamma, sampling, dynamic_size, reductions)
        self.mlp = DeployMlp(block.norm_mlp, block.mlp, block.ls_mlp.gamma, reductions)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.rfa(x)
        x = x + self.dcn(x)
        return x + self.mlp(x)


class DeployUniConvNet(nn.Module):
    """A UniConvNet's deployment form (see the module docstring); build it with :func:`deploy_form`."""

    def __init__(self, model: UniConvNet, sampling: str = 'deformconv', dynamic_size: bool = False,
                 reduction_norms_up_to_stride: float = REDUCTION_NORMS_UP_TO_STRIDE):
        super().__init__()
        model = copy.deepcopy(model).eval().fuse()
        self.sampling = sampling
        self.dynamic_size = dynamic_size
        reductions = lambda stride: stride <= reduction_norms_up_to_stride  # noqa: E731
        strides = [info['reduction'] for info in model.feature_info]
        self.stem = _with_channel_norms(model.stem, reductions(strides[0])).requires_grad_(False)
        stages: List[nn.Module] = []
        for i, stage in enumerate(model.stages):
            # the downsampling norm acts on the previous stage's output
            downsample = _with_channel_norms(stage.downsample, reductions(strides[max(i - 1, 0)]))
            blocks = [DeployBlock(b, sampling, dynamic_size, reductions(strides[i])) for b in stage.blocks]
            stages.append(nn.Sequential(downsample.requires_grad_(False), *blocks))
        self.stages = nn.Sequential(*stages)
        self.head = _with_channel_norms(model.head, reductions(strides[-1])).requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))


def deploy_form(model: UniConvNet, sampling: str = 'deformconv', dynamic_size: bool = False,
                reduction_norms_up_to_stride: float = REDUCTION_NORMS_UP_TO_STRIDE) -> DeployUniConvNet:
    """The deployment form of ``model`` (left as it is): NCHW, folded weights, the DCN sampling as ``sampling``.

    Args:
        sampling: ``'deformconv'`` (one ``DeformConv`` per DCN layer in ONNX) or ``'gridsample'`` (standard
            operators only).
        dynamic_size: whether a traced export keeps the image size free. Only the ``GridSample`` form depends on
            it: fixed, its kernel grids and shapes are constants; dynamic, the graph computes them.
        reduction_norms_up_to_stride: the channel norms on feature maps of at most this stride are written as
            reductions over the channels, the others as ``LayerNormalization`` between transposes (see
            :class:`ChannelNorm`); ``math.inf``: all as reductions (OpenVINO's fastest form).
    """
    if not isinstance(model, UniConvNet):
        raise TypeError(f'deploy_form takes a UniConvNet, got {type(model).__name__}')
    if sampling not in SAMPLINGS:
        raise ValueError(f'unknown DCN sampling {sampling!r}; use one of: {", ".join(SAMPLINGS)}')
    return DeployUniConvNet(model, sampling, dynamic_size, reduction_norms_up_to_stride)
