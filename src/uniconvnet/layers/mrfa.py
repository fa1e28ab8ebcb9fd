"""``MRFA``: the name under which many YOLO users first meet the RFA, and a converter for its state dicts.

A widely copied write-up presents UniConvNet's Receptive Field Aggregator as ``MRFA(dim)`` ("multi-receptive
field aggregation"): the same arithmetic as :class:`~uniconvnet.layers.ReceptiveFieldAggregator` with kernels
(7, 9, 11), under other parameter names. ``MRFA`` here *is* our RFA (same class, our state-dict keys);
:func:`convert_mrfa_state_dict` renames such a state dict, alone or inside a larger model (a YOLO checkpoint's
MRFA sub-modules), to our keys.

The write-up's layout, stage ``i`` = our layer operator ``i - 1`` (width ``i * dim / 4``)::

    ln_stage1.{gamma,beta}                first LayerNorm, over all channels   -> norm.{weight,bias}
    ln_stage{i}.{gamma,beta}, i >= 2      LayerNorm of the running feature     -> layers.{i-1}.norm.*
    ctx_branch_s{i}.0  (1x1 conv)         context projection                   -> layers.{i-1}.context_pw.*
    ctx_branch_s{i}.2  (k x k depthwise)  context, k = 7, 9, 11                -> layers.{i-1}.context_dw.*
    gate_branch_s{i}   (1x1 conv)         amplifier gate                       -> layers.{i-1}.amp_gate.*
    post_gate_s{i}     (1x1 conv)         amplifier output                     -> layers.{i-1}.amp_proj.*
    prep_quarter{i+1}  (1x1 conv)         discriminator projection of part i+1 -> layers.{i-1}.disc_pw.*
    refine3x3_s{i}     (3x3 depthwise)    discriminator                        -> layers.{i-1}.disc_dw.*
    proj_ctx_to_q{i+1} (1x1 conv), i >= 2 context into the discriminator       -> layers.{i-1}.context_proj.*

Its forward is ours: per stage ``ctx = ctx_branch(x)``, ``amp = post_gate(ctx * gate_branch(x))``,
``dis = refine3x3(prep_quarter(part)) + proj_ctx(ctx)`` (no projection in stage 1), ``x = cat(dis, amp)``.
"""
import re
from typing import Dict, Mapping, Optional

import torch

from .rfa import ReceptiveFieldAggregator

__all__ = ['MRFA', 'convert_mrfa_state_dict', 'is_mrfa_state_dict']

MRFA = ReceptiveFieldAggregator
"""``MRFA(dim)``: UniConvNet's Receptive Field Aggregator with kernels (7, 9, 11) (the write-up's name)."""

# a parameter name inside one MRFA module -> our layer operator `stage - offset`, module name; the write-up has
# each from stage `first` on (stage 1 has no LayerNorm of its own and no context projection)
_RULES = (  # (pattern: stage number, parameter), our module, offset, first
    (re.compile(r'ln_stage(\d+)\.(gamma|beta)'), 'norm', 1, 2),
    (re.compile(r'ctx_branch_s(\d+)\.0\.(weight|bias)'), 'context_pw', 1, 1),
    (re.compile(r'ctx_branch_s(\d+)\.2\.(weight|bias)'), 'context_dw', 1, 1),
    (re.compile(r'gate_branch_s(\d+)\.(weight|bias)'), 'amp_gate', 1, 1),
    (re.compile(r'post_gate_s(\d+)\.(weight|bias)'), 'amp_proj', 1, 1),
    (re.compile(r'prep_quarter(\d+)\.(weight|bias)'), 'disc_pw', 2, 2),
    (re.compile(r'refine3x3_s(\d+)\.(weight|bias)'), 'disc_dw', 1, 1),
    (re.compile(r'proj_ctx_to_q(\d+)\.(weight|bias)'), 'context_proj', 2, 3),
)
_PARAMETER = {'gamma': 'weight', 'beta': 'bias', 'weight': 'weight', 'bias': 'bias'}
_ROOT_KEY = 'ln_stage1.gamma'  # every MRFA module has it: where a key ends in it, an MRFA module starts


def _our_name(name: str) -> Optional[str]:
    """Our key for a parameter name inside one MRFA module, or None where the layout has no such name."""
    if name in ('ln_stage1.gamma', 'ln_stage1.beta'):  # the first LayerNorm covers all channels, before the split
        return 'norm.' + _PARAMETER[name.rpartition('.')[2]]
    for pattern, module, offset, first in _RULES:
        match = pattern.fullmatch(name)
        if match is not None:
            stage = int(match.group(1))
            return f'layers.{stage - offset}.{module}.{_PARAMETER[match.group(2)]}' if stage >= first else None
    return None


def is_mrfa_state_dict(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether the state dict holds at least one MRFA module (a key ending in ``ln_stage1.gamma``)."""
    return any(k == _ROOT_KEY or k.endswith('.' + _ROOT_KEY) for k in state_dict)


def convert_mrfa_state_dict(state_dict: Mapping[str, torch.Tensor],
                            roots: Optional[Mapping[str, str]] = None) -> Dict[str, torch.Tensor]:
    """Rename the MRFA modules of a state dict to our RFA's keys; every other key passes unchanged.

    Works on one ``MRFA`` module's state dict (load the result into ``MRFA(dim)``) and on a model holding MRFA
    sub-modules (e.g. ``model.9.ln_stage1.gamma``...), each found by its ``ln_stage1.gamma`` key.

    Args:
        state_dict: the MRFA (or model) state dict.
        roots: where an MRFA module's parameters go in the model that will load the result, e.g.
            ``{'model.9.': 'model.9.rfa.'}`` for an ``RFABlock`` (which holds its RFA as ``rfa``); default: the
            same path.

    Raises:
        ValueError: naming every key under an MRFA module that the layout has no place for (e.g. an extra
            attention branch some copies add), and the MRFA modules it found.
    """
    prefixes = sorted({k[:-len(_ROOT_KEY)] for k in state_dict if k == _ROOT_KEY or k.endswith('.' + _ROOT_KEY)},
                      key=len, reverse=True)  # the longest first: a nested prefix wins
    if not prefixes:
        raise ValueError('no MRFA module in this state dict: none of its keys ends in "ln_stage1.gamma" '
                         f'(first keys: {", ".join(list(state_dict)[:3])})')
    roots = dict(roots or {})
    unknown_roots = sorted(set(roots) - set(prefixes))
    if unknown_roots:
        raise ValueError(f'roots names {", ".join(map(repr, unknown_roots))}, which hold no MRFA module; the MRFA '
                         f'modules here are at {", ".join(repr(p) for p in sorted(prefixes))}')
    converted: Dict[str, torch.Tensor] = {}
    unplaced = []
    for key, value in state_dict.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            converted[key] = value
            continue
        ours = _our_name(key[len(prefix):])
        if ours is None:
            unplaced.append(key)
            continue
        converted[roots.get(prefix, prefix) + ours] = value
    if unplaced:
        raise ValueError(f'{len(unplaced)} key(s) of the MRFA module(s) at '
                         f'{", ".join(repr(p) for p in sorted(prefixes))} have no place in the RFA: '
                         f'{", ".join(unplaced)}')
    return converted
