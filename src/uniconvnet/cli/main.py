"""The ``uniconvnet`` command: thin argument parsing over library calls."""
import argparse
import json
import shlex
import sys
from typing import List, Optional

from ..engine.trainer import TrainingDiverged, TrainingInterrupted
from . import bench, detseg, erf, evaluate, export, predict, shards, train, yolo


def _cmd_models(args: argparse.Namespace) -> int:
    from ..speed.complexity import format_variants_table, variants_table
    rows = variants_table(args.size, args.names or ())
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_variants_table(rows, args.size))
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from ..engine.convert import convert_checkpoint
    convert_checkpoint(args.src, args.dst, args.model, use_ema=args.use_ema)
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

    p = sub.add_parser('convert', help="convert an official .pth or a timm train.py .pth.tar to our safetensors",
                       description="Convert an official UniConvNet .pth, a checkpoint of timm's train.py "
                                   "(model_best.pth.tar: read with only argparse.Namespace allowed besides tensors) "
                                   "or one of ours. DST.safetensors: the weights alone; any other DST: a folder with "
                                   "model.safetensors and config.json that timm, transformers, uniconvnet eval and "
                                   "predict load.")
    p.add_argument('src', help='official .pth, timm train.py .pth.tar, or our last.pt/best.pt')
    p.add_argument('dst', help='output .safetensors file, or output folder')
    p.add_argument('--model', help='model name, e.g. uniconvnet_t (default: recorded in the checkpoint, else '
                                   'recognised from the weights)')
    p.add_argument('--use-ema', action='store_true',
                   help="convert the EMA weights (timm's state_dict_ema, our model_ema) instead of the model's")
    p.set_defaults(func=_cmd_convert)

    # each module adds its subcommands
    for command in (erf, train, shards, evaluate, predict, detseg, bench, export, yolo):
        command.add_parser(sub)
    return parser


def resume_command(argv: List[str], stopped: TrainingInterrupted) -> str:
    """The command line that continues an interrupted run: the same arguments, resuming its checkpoint."""
    kept: List[str] = []
    skip_value = False
    for arg in argv:
        if skip_value:
            skip_value = False
        elif arg == '--resume':
            skip_value = True
        elif not (arg.startswith('--resume=') or arg == '--overwrite'):
            kept.append(arg)
    checkpoint = stopped.checkpoint
    resume = 'auto' if checkpoint == stopped.output / 'last.pt' else str(checkpoint)
    return shlex.join(['uniconvnet', *kept, '--resume', resume])


def _interrupted(error: KeyboardInterrupt, argv: List[str]) -> str:
    if isinstance(error, TrainingInterrupted):
        return str(error) + (f'; resume with: {resume_command(argv, error)}' if error.checkpoint else '')
    return 'interrupted; nothing half-written is left behind (every file is written atomically)'


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, ImportError) as e:  # bad input or a missing extra: one line
        print(f'uniconvnet {args.command}: error: {e}', file=sys.stderr)
        return 2
    except TrainingDiverged as e:
        print(f'uniconvnet {args.command}: {e}', file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:  # Ctrl-C: one line (where it stopped, what to run next), the shell's code 130
        print(f'uniconvnet {args.command}: {_interrupted(e, argv)}', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
