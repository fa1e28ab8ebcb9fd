"""``register()``: our blocks in ultralytics' YAML parser, with the channel bookkeeping it does for its own.

Why this exists: ultralytics builds a model YAML in ``ultralytics.nn.tasks.parse_model``, which resolves layer
names in its own module's namespace and decides how to fill in a layer's arguments by *set membership* (is the
class in the set holding ``Conv`` and ``C3k2``? in the ``TorchVision`` set?). There is no hook to add a class to
those sets. So ``register()`` puts our names on ``ultralytics.nn.tasks`` and replaces ``parse_model`` by a copy of
its own source with our classes added to the sets (an AST transform, recompiled in ``tasks``' namespace). No
installed file is edited; the transform checks that it found each place exactly once and refuses otherwise.

Checked against ultralytics 8.3.100, 8.4.0 and 8.4.190 (the named frozensets of 8.4 and the inline set
literals of 8.3 are both found, by what they hold rather than by name); everything runs on 8.4.190.
"""
import ast
import inspect
import textwrap
import types
from typing import Any, Callable, Dict, List, Optional

import torch.nn as nn
import ultralytics
import ultralytics.nn as ultralytics_nn
from ultralytics.nn import tasks
from ultralytics.nn.modules import Index

from .blocks import EXTENDED_MARK, YAML_MODULES, UniConvNetBackbone

__all__ = ['register', 'expose_names']


class _ParserExtender(ast.NodeTransformer):
    """Adds our blocks to the sets of classes and the check inside ``parse_model`` that drive its bookkeeping.

    The set holding ``Conv`` and ``C3k2`` (input channels first, width-scaled output channels second), the other
    set holding ``C3k2`` (the repeat count third), the set holding ``TorchVision`` (output channels declared in the
    YAML, list outputs for ``Index`` rows); and ``m is C3k2``, which sets ``c3k`` at the m/l/x scales.
    """

    def __init__(self):
        self.found = {'the Conv/C3k2 set': 0, 'the repeat set': 0, 'the TorchVision set': 0, 'm is C3k2': 0}

    @staticmethod
    def _names(*names: str) -> List[ast.expr]:
        return [ast.Name(name, ast.Load()) for name in names]

    def visit_Set(self, node: ast.Set) -> ast.AST:
        held = {e.id for e in node.elts if isinstance(e, ast.Name)}
        if {'Conv', 'C3k2'} <= held:
            node.elts.extend(self._names('RFABlock', 'C3k2RFA'))
            self.found['the Conv/C3k2 set'] += 1
        elif 'C3k2' in held:
            node.elts.extend(self._names('C3k2RFA'))
            self.found['the repeat set'] += 1
        elif 'TorchVision' in held:
            node.elts.extend(self._names('UniConvNetBackbone'))
            self.found['the TorchVision set'] += 1
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        right = node.comparators[0]
        if (isinstance(node.left, ast.Name) and node.left.id == 'm' and len(node.ops) == 1
                and isinstance(node.ops[0], ast.Is) and isinstance(right, ast.Name) and right.id == 'C3k2'):
            self.found['m is C3k2'] += 1  # `m is C3k2` -> `m in (C3k2, C3k2RFA)`
            return ast.Compare(node.left, [ast.In()], [ast.Tuple(self._names('C3k2', 'C3k2RFA'), ast.Load())])
        return node


def _extend_parse_model(original: Callable) -> Callable:
    """``original`` recompiled with our blocks in its bookkeeping, in its own module's namespace."""
    try:
        source = textwrap.dedent(inspect.getsource(original))
    except (OSError, TypeError) as e:  # e.g. an install without .py sources
        raise RuntimeError(f'uniconvnet cannot extend the YAML parser of ultralytics {ultralytics.__version__}: '
                           f'the source of {original.__module__}.{original.__name__} is not available ({e})') from e
    tree = ast.parse(source)
    extender = _ParserExtender()
    tree = extender.visit(tree)
    missing = [k for k, count in extender.found.items() if count != 1]
    if missing:
        raise RuntimeError(
            f'uniconvnet cannot extend the YAML parser of ultralytics {ultralytics.__version__}: its parse_model has '
            f'not exactly one of: {", ".join(missing)}, which this integration extends. Please report it with the '
            f'ultralytics version')
    ast.fix_missing_locations(tree)
    ast.increment_lineno(tree, inspect.getsourcelines(original)[1] - 1)  # tracebacks point into tasks.py
    module_code = compile(tree, inspect.getsourcefile(original) or '<parse_model>', 'exec')
    code = next(c for c in module_code.co_consts if isinstance(c, types.CodeType) and c.co_name == original.__name__)
    return types.FunctionType(code, original.__globals__, original.__name__, original.__defaults__,
                              original.__closure__)


def _failing_layer(tb: Optional[types.TracebackType], code: types.CodeType) -> Optional[Dict[str, Any]]:
    """The parser's loop variables (layer index, from, module) in the frame where a block failed to build."""
    while tb is not None:
        if tb.tb_frame.f_code is code:
            return tb.tb_frame.f_locals
        tb = tb.tb_next
    return None


def _check_backbone_taps(layers: nn.Sequential, rows: List[list]) -> None:
    """Every ``Index`` row reading a ``UniConvNetBackbone`` must declare the channels that stage really has."""
    for i, layer in enumerate(layers):
        if not isinstance(layer, Index) or not isinstance(layer.f, int):
            continue
        source = layers[layer.f if layer.f >= 0 else i + layer.f]
        if not isinstance(source, UniConvNetBackbone):
            continue
        declared, position = rows[i][3][0], layer.index
        if not -len(source.channels) <= position < len(source.channels):
            raise ValueError(f'model YAML layer {i} (Index): output {position} of layer {source.i} does not exist; '
                             f'{source.variant} returns {len(source.channels)} stage outputs')
        actual = source.channels[position]
        if declared != actual:
            raise ValueError(f'model YAML layer {i} (Index): declares {declared} channels for output {position} of '
                             f'layer {source.i} ({source.variant}), which has {actual}; write [{actual}, {position}]')


def _wrap_parse_model(extended: Callable, original: Callable) -> Callable:
    def parse_model(d, ch, verbose=True):
        rows = [list(r) for r in d['backbone'] + d['head']]
        try:
            layers, save = extended(d, ch, verbose)
        except ValueError as e:
            frame = _failing_layer(e.__traceback__, extended.__code__)
            if frame is None or frame.get('m') not in YAML_MODULES.values():
                raise
            i, m, f = frame['i'], frame['m'], frame['f']
            channels = frame['ch'][f] if isinstance(f, int) else [frame['ch'][x] for x in f]
            raise ValueError(f'model YAML layer {i} ({m.__name__}, from {f}, {channels} input channels): '
                             f'{e}') from None
        _check_backbone_taps(layers, rows)
        return layers, save

    parse_model.__doc__ = original.__doc__
    parse_model.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(parse_model, EXTENDED_MARK, True)
    return parse_model


def expose_names() -> None:
    """Put the YAML names where ``parse_model`` resolves them (its module's globals).

    Done on import of the integration as well: a YAML naming the blocks then reaches their constructors, which
    say to call :func:`register` when it has not run, instead of ultralytics' bare ``KeyError``.
    """
    for name, cls in YAML_MODULES.items():
        setattr(tasks, name, cls)


def register() -> None:
    """Make ``RFABlock``, ``C3k2RFA`` and ``UniConvNetBackbone`` usable in ultralytics model YAMLs.

    Idempotent. Touches no installed file: the names are set on ``ultralytics.nn.tasks`` (where the YAML
    parser resolves them) and its ``parse_model`` is replaced by a recompiled copy that knows their channel
    bookkeeping (see the module docstring).
    """
    expose_names()
    if not getattr(tasks.parse_model, EXTENDED_MARK, False):
        original = tasks.parse_model
        tasks.parse_model = _wrap_parse_model(_extend_parse_model(original), original)
        if getattr(ultralytics_nn, 'parse_model', None) is original:
            ultralytics_nn.parse_model = tasks.parse_model
