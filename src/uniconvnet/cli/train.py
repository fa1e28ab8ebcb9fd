"""``uniconvnet train``: one flag per :class:`~uniconvnet.engine.TrainConfig` field, then ``engine.train``."""
import argparse
from dataclasses import MISSING
from typing import Any, Union, get_args, get_origin

from ..engine.config import TrainConfig


def _value_type(annotation: Any) -> Any:
    if get_origin(annotation) is Union:  # Optional[X]
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    return annotation


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        'train', help='train or fine-tune a classifier (default: UniConvNet-A on the built-in digits)',
        description='Train, fine-tune or resume. Every value of the recipe can be overridden by its flag; '
                    'without --data the built-in scikit-learn digits are used. Multi-GPU / multi-node: '
                    'torchrun --nproc_per_node N -m uniconvnet train ...',
        argument_default=argparse.SUPPRESS)
    for name, f in TrainConfig.field_names().items():
        flag = '--' + name.replace('_', '-')
        kind = _value_type(f.type)
        default = '' if f.default is MISSING or name in ('recipe',) else f' (default: {f.default}, unless the recipe ' \
                                                                          f'sets it)'
        help_text = f.metadata.get('help', '') + ('' if kind is bool else default)
        if kind is bool:
            p.add_argument(flag, action='store_true', help=help_text)
        else:
            p.add_argument(flag, type=kind, choices=f.metadata.get('choices'), help=help_text,
                           metavar=name.upper())
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from ..engine import make_train_config, train
    given = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names()}
    recipe = given.pop('recipe', None)
    train(make_train_config(recipe, **given))
    return 0
