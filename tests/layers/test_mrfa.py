"""``MRFA``: the write-up's module, converted to our RFA, gives our RFA's output; bad keys are named."""
import pytest
import torch
import torch.nn as nn

from uniconvnet.layers import MRFA, RFA, convert_mrfa_state_dict
from uniconvnet.layers.mrfa import is_mrfa_state_dict


class _ChannelsFirstLayerNorm(nn.Module):
    """The write-up's LayerNorm: parameters ``gamma`` and ``beta``, normalised over the channels of NCHW."""

    def __init__(self, channels: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        return self.gamma[:, None, None] * (x - mean) / torch.sqrt(var + 1e-6) + self.beta[:, None, None]


class WriteUpMRFA(nn.Module):
    """An ``MRFA(dim)`` written from the issue's description of the popular write-up (its parameter names),
    independently of our code: three stages widening C/4 -> C/2 -> 3C/4 -> C with 7, 9, 11 depthwise kernels."""

    def __init__(self, dim: int):
        super().__init__()
        q = dim // 4
        self.q = q
        self.ln_stage1 = _ChannelsFirstLayerNorm(dim)
        for stage, kernel in zip((1, 2, 3), (7, 9, 11)):
            width = stage * q
            if stage > 1:
                setattr(self, f'ln_stage{stage}', _ChannelsFirstLayerNorm(width))
            setattr(self, f'ctx_branch_s{stage}', nn.Sequential(
                nn.Conv2d(width, width, 1), nn.GELU(), nn.Conv2d(width, width, kernel, padding=kernel // 2,
                                                                 groups=width)))
            setattr(self, f'gate_branch_s{stage}', nn.Conv2d(width, width, 1))
            setattr(self, f'post_gate_s{stage}', nn.Conv2d(width, width, 1))
            setattr(self, f'prep_quarter{stage + 1}', nn.Conv2d(q, q, 1))
            setattr(self, f'refine3x3_s{stage}', nn.Conv2d(q, q, 3, padding=1, groups=q))
            if stage > 1:
                setattr(self, f'proj_ctx_to_q{stage + 1}', nn.Conv2d(width, q, 1))

    def forward(self, x):
        quarters = torch.split(self.ln_stage1(x), self.q, dim=1)
        y = quarters[0]
        for stage in (1, 2, 3):
            if stage > 1:
                y = getattr(self, f'ln_stage{stage}')(y)
            context = getattr(self, f'ctx_branch_s{stage}')(y)
            amplified = getattr(self, f'post_gate_s{stage}')(context * getattr(self, f'gate_branch_s{stage}')(y))
            part = getattr(self, f'refine3x3_s{stage}')(getattr(self, f'prep_quarter{stage + 1}')(quarters[stage]))
            if stage > 1:
                context = getattr(self, f'proj_ctx_to_q{stage + 1}')(context)
            y = torch.cat((part + context, amplified), dim=1)
        return y


def _randomised(module: nn.Module) -> nn.Module:
    with torch.no_grad():  # move the LayerNorms off their identity init, so that a swapped gamma/beta shows
        for name, p in module.named_parameters():
            p.add_(torch.randn_like(p) * (0.3 if name.endswith(('gamma', 'beta')) else 0.0))
    return module.eval()


def test_mrfa_is_our_rfa():
    assert MRFA is RFA and MRFA(32).kernel_sizes == (7, 9, 11)


def test_write_up_state_dict_converts_to_the_same_output():
    source = _randomised(WriteUpMRFA(32))
    ours = MRFA(32).eval()
    ours.load_state_dict(convert_mrfa_state_dict(source.state_dict()))  # strict: every key placed, none missing
    x = torch.randn(2, 32, 13, 11)
    with torch.no_grad():
        expected, got = source(x), ours(x)
    assert got.shape == expected.shape == (2, 32, 13, 11)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_mrfa_submodules_of_a_yolo_checkpoint_convert_into_rfa_blocks():
    # a model holding an MRFA at "model.1." beside other layers, loaded into one whose RFA sits at "model.1.rfa."
    source = nn.Module()
    source.model = nn.Sequential(nn.Conv2d(3, 16, 3), _randomised(WriteUpMRFA(16)))
    target = nn.Module()
    target.model = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Module())
    target.model[1].rfa = MRFA(16)
    state = source.state_dict()
    assert is_mrfa_state_dict(state)
    converted = convert_mrfa_state_dict(state, roots={'model.1.': 'model.1.rfa.'})
    assert converted['model.0.weight'] is state['model.0.weight']  # other layers pass unchanged
    target.load_state_dict(converted)
    x = torch.randn(1, 16, 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(target.model[1].rfa.eval()(x), source.model[1](x), rtol=1e-5, atol=1e-5)


def test_keys_without_a_place_are_named():
    state = WriteUpMRFA(16).state_dict()
    state['se.fc.weight'] = torch.zeros(4, 16)  # an attention branch some copies add
    state['ctx_branch_s1.1.weight'] = torch.zeros(1)  # no parameter at the GELU's position
    with pytest.raises(ValueError, match=r"2 key\(s\) of the MRFA module\(s\) at '' have no place in the RFA: "
                                         r"se\.fc\.weight, ctx_branch_s1\.1\.weight"):
        convert_mrfa_state_dict(state)
    with pytest.raises(ValueError, match='no MRFA module in this state dict'):
        convert_mrfa_state_dict(nn.Conv2d(3, 4, 1).state_dict())
    with pytest.raises(ValueError, match=r"roots names 'model\.9\.', which hold no MRFA module; the MRFA modules "
                                         r"here are at ''"):
        convert_mrfa_state_dict(WriteUpMRFA(16).state_dict(), roots={'model.9.': 'model.9.rfa.'})
