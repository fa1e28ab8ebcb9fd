"""The ``uniconvnet`` command: thin argument parsing over library calls."""
import argparse
import json
import sys
from typing import List, Optional

from . import bench, erf, export
from .detseg import add_detseg_parsers
from .evaluate import add_eval_parser
from .predict import add_predict_parser
from .train import add_train_parser
from .yolo import add_yolo_parser


def _cmd_models(args: argparse.Namespace) -> int:
    from ..analysis.complexity import format_variants_table, variants_table
    rows = variants_table(args.size, args.names or ())
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_variants_table(rows, args.size))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..checkpoints import convert_official_checkpoint
    out = convert_official_checkpoint(args.src, args.dst, args.model)
    print(f'wrote {out} ({args.model})')
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='uniconvnet', description='UniConvNet models and tools.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True

    p = sub.add_parser('models', help='print the variants table (parameters, MACs), computed from the models')
    p.add_argument('names', nargs='*', help='variants to list (default: all)')
    p.add_argument('--size', type=int, default=224, help='square input size for MACs (default 224)')
    p.add_argument('--json', action='store_true', help='print JSON instead of a Markdown table')
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser('convert', help='convert an official checkpoint to safetensors in our layout')
    p.add_argument('src', help='official .pth checkpoint')
    p.add_argument('dst', help='output .safetensors file')
    p.add_argument('--model', required=True, help='variant name, e.g. uniconvnet_t')
    p.set_defaults(func=_cmd_convert)

    erf.add_parser(sub)
    add_train_parser(sub)
    add_eval_parser(sub)
    add_predict_parser(sub)
    add_detseg_parsers(sub)
    bench.add_parser(sub)
    export.add_parser(sub)
    add_yolo_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..engine.trainer import TrainingDiverged
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as e:  # bad input or a missing extra: one line
        print(f'uniconvnet {args.command}: error: {e}', file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f'uniconvnet {args.command}: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
