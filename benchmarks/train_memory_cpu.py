"""Peak training memory on the CPU of models built with keyword arguments (e.g. ``recompute``), each in a fresh
process: the peak resident set size of the second training step (forward, backward, AdamW) above the process's
size before the model was built, as the frontier's memory column measures it (``uniconvnet.speed.memory``).

    PYTHONPATH=src python benchmarks/train_memory_cpu.py --batch 32 uniconvnet_a convnext_femto \\
        'uniconvnet_a:{"recompute": ["rfa"]}'
    PYTHONPATH=src python benchmarks/train_memory_cpu.py --smoke      # seconds: A at 64x64, batch 2; prints only
"""
import argparse
import json
import sys

from uniconvnet.speed import ModelSpec, train_peak_memory_mb


def parse_model(text: str) -> ModelSpec:
    """``NAME`` or ``NAME:{json keyword arguments}``."""
    name, _, kwargs = text.partition(':')
    try:
        options = json.loads(kwargs) if kwargs else {}
    except json.JSONDecodeError as e:
        raise SystemExit(f'train_memory_cpu.py: bad model {text!r}: after the colon give JSON keyword arguments, '
                         f'e.g. \'uniconvnet_a:{{"recompute": ["rfa"]}}\' ({e})')
    if not isinstance(options, dict):
        raise SystemExit(f'train_memory_cpu.py: bad model {text!r}: the keyword arguments must be a JSON object')
    return ModelSpec(name, kwargs=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='*', help='timm names, optionally NAME:{json keyword arguments}')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--size', type=int, default=224, help='square image size (default 224)')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--smoke', action='store_true', help='UniConvNet-A at 64x64, batch 2: checks the script runs')
    args = parser.parse_args()
    if args.smoke:
        args.models, args.batch, args.size = ['uniconvnet_a'], 2, 64
    if not args.models:
        parser.error('name at least one model (or pass --smoke)')
    specs = [parse_model(m) for m in args.models]
    print('| model | batch | peak training memory (MB) |\n|---|---:|---:|')
    for text, spec in zip(args.models, specs):
        peak = train_peak_memory_mb(spec, args.batch, args.size, threads=args.threads)
        print(f'| `{text}` | {args.batch} | {peak:.0f} |', flush=True)


if __name__ == '__main__':
    sys.exit(main())
