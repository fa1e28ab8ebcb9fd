"""Peak training memory on the CPU of models built with keyword arguments (e.g. ``recompute``), each in a fresh
process: the peak resident set size of the second training step (forward, backward, AdamW) above the process's
size before the model was built, as the frontier's memory column measures it.

    PYTHONPATH=src python benchmarks/train_memory_cpu.py --batch 32 uniconvnet_a convnext_femto \\
        'uniconvnet_a:{"recompute": ["rfa"]}'
"""
import argparse
import json
import multiprocessing
import re
from pathlib import Path


def _rss_mb(field: str) -> float:
    return int(re.search(rf'{field}:\s+(\d+)', Path('/proc/self/status').read_text()).group(1)) / 1024


def _worker(name: str, kwargs: dict, batch: int, threads: int, queue) -> None:
    import timm
    import torch

    import uniconvnet  # noqa: F401  (registers the models)
    torch.set_num_threads(threads)
    start = _rss_mb('VmRSS')
    model = timm.create_model(name, **kwargs).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    images, labels = torch.randn(batch, 3, 224, 224), torch.randint(0, 1000, (batch,))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    step()  # the optimizer state exists from here on
    Path('/proc/self/clear_refs').write_text('5')  # reset the peak (VmHWM) to the current size
    step()
    queue.put(_rss_mb('VmHWM') - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='+', help='timm names, optionally NAME:{json keyword arguments}')
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--threads', type=int, default=1)
    args = parser.parse_args()
    context = multiprocessing.get_context('spawn')
    print('| model | batch | peak training memory (MB) |\n|---|---:|---:|')
    for spec in args.models:
        name, _, kwargs = spec.partition(':')
        queue = context.Queue()
        process = context.Process(target=_worker, args=(name, json.loads(kwargs) if kwargs else {}, args.batch,
                                                        args.threads, queue))
        process.start()
        peak = queue.get()
        process.join()
        print(f'| `{spec}` | {args.batch} | {peak:.0f} |', flush=True)


if __name__ == '__main__':
    main()
