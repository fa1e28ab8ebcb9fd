"""Time and peak memory of an ERF measurement (RepLKNet protocol), one configuration per fresh process.

    PYTHONPATH=src python benchmarks/erf_cost.py                       # UniConvNet-T at 1024, the README's table
    PYTHONPATH=src python benchmarks/erf_cost.py --model uniconvnet_a --size 512 --num-images 2 --stages none 1,2,3,4

Each row runs in its own Python process so that its peak resident memory (Linux VmHWM) is its own. Weights are
random (nothing is downloaded); time and memory do not depend on the weights. Timings on a shared machine are
noisy: compare rows of one run, not across runs.
"""
import argparse
import json
import subprocess
import sys

CHILD = r'''
import json, sys, time
import torch, timm
import uniconvnet
from uniconvnet.analysis.erf import erf_maps
from uniconvnet.speed import peak_rss_mb
cfg = json.loads(sys.argv[1])
if cfg['threads']:
    torch.set_num_threads(cfg['threads'])
model = timm.create_model(cfg['model'])
base = peak_rss_mb()
start = time.perf_counter()
maps = erf_maps(model, None, cfg['stages'], size=cfg['size'], num_images=cfg['num_images'],
                grad_checkpointing=cfg['ckpt'])
first = next(iter(maps.values()))
print(json.dumps(dict(seconds_per_image=first.seconds_per_image, peak_rss_mb=peak_rss_mb(), model_rss_mb=base,
                      images=first.images_used)))
'''


def run(model: str, size: int, num_images: int, stages, ckpt: bool, threads: int) -> dict:
    cfg = dict(model=model, size=size, num_images=num_images, stages=stages, ckpt=ckpt, threads=threads)
    res = subprocess.run([sys.executable, '-c', CHILD, json.dumps(cfg)], capture_output=True, text=True)
    if res.returncode != 0:
        return dict(error=res.stderr.strip().splitlines()[-1] if res.stderr.strip() else 'failed')
    return json.loads(res.stdout.strip().splitlines()[-1])


def _stages(value: str):
    return [None if s == 'none' else int(s) for s in value.split(',')]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='uniconvnet_t')
    p.add_argument('--size', type=int, default=1024)
    p.add_argument('--num-images', type=int, default=2)
    p.add_argument('--stages', type=_stages, nargs='+', default=[[None], [None, 1, 2, 3, 4]],
                   help="comma-separated stage sets, 'none' for the last stage before pooling")
    p.add_argument('--no-ckpt', action='store_true', help='also run without gradient checkpointing')
    p.add_argument('--threads', type=int, default=0, help='torch threads (default: torch decides)')
    args = p.parse_args()
    import torch
    threads = args.threads or torch.get_num_threads()
    print(f'torch {torch.__version__}, {threads} threads, random weights')
    print('| model | size | maps | grad checkpointing | images | s / image | peak RSS (GiB) | model alone (GiB) |')
    print('|---|---:|---|---|---:|---:|---:|---:|')
    for stages in args.stages:
        for ckpt in ([True, False] if args.no_ckpt else [True]):
            r = run(args.model, args.size, args.num_images, stages, ckpt, args.threads)
            label = 'last' if stages == [None] else '+'.join('last' if s is None else str(s) for s in stages)
            if 'error' in r:
                print(f'| {args.model} | {args.size} | {label} | {ckpt} | - | error: {r["error"]} | | |')
                continue
            print(f'| {args.model} | {args.size} | {label} | {"on" if ckpt else "off"} | {r["images"]} | '
                  f'{r["seconds_per_image"]:.1f} | {r["peak_rss_mb"] / 1024:.2f} | {r["model_rss_mb"] / 1024:.2f} |',
                  flush=True)


if __name__ == '__main__':
    main()
