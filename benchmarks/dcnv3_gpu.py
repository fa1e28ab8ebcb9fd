#!/usr/bin/env python
"""GPU benchmark of the Triton DCNv3 core (issue 7): one prepared run on a CUDA machine.

    PYTHONPATH=src python benchmarks/dcnv3_gpu.py --json results/dcnv3_gpu.json

Three parts, all in one process so that every ratio compares numbers measured side by side:
  1. correctness on the GPU: the Triton kernels (forward and the three gradients) against the PyTorch core at
     UniConvNet-T's stage shapes (small batch), and a whole UniConvNet-T on both backends;
  2. the sampling core alone at UniConvNet-T's four stage shapes (batch 64, 224x224), float32 and bfloat16:
     forward and forward+backward times, Triton against the PyTorch core (target: fwd+bwd >= 5x faster);
  3. training throughput (images/s) and peak memory of UniConvNet-T (Triton and PyTorch-core backends) against
     timm's convnext_tiny: bfloat16 autocast, channels_last, batch 64, AdamW
     (targets: throughput >= 0.8x convnext_tiny, peak memory <= 1.3x).

Times are medians of CUDA-event timings after warm-up. Prints markdown tables; --json also writes the
numbers. Exits 2 with one line when there is no CUDA GPU or no Triton, 1 when a correctness check fails.
"""
import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

DEVICE = 'cuda'
CORE_ATOL_FP32 = 1e-4  # Triton vs core in float32: only the rounding of the sampling positions differs


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='uniconvnet_t', help='UniConvNet variant whose stage shapes are timed')
    parser.add_argument('--baseline', default='convnext_tiny', help='timm model to compare training against')
    parser.add_argument('--batch', type=int, default=64)
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--reps', type=int, default=20, help='timed repetitions per core measurement')
    parser.add_argument('--train-steps', type=int, default=20, help='timed optimizer steps per model')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--block-q', default='', help='comma-separated pixels per Triton program to sweep, '
                                                       'e.g. 16,32,64 (default: the built-in choice only)')
    parser.add_argument('--compile', action='store_true', help='also time torch.compile-d training')
    parser.add_argument('--skip-core', action='store_true')
    parser.add_argument('--skip-train', action='store_true')
    parser.add_argument('--json', default='', help='write all numbers to this file')
    return parser.parse_args(argv)


def require_gpu() -> None:
    if not torch.cuda.is_available():
        print('dcnv3_gpu.py: error: no CUDA GPU (torch.cuda.is_available() is False); run it on a GPU machine',
              file=sys.stderr)
        sys.exit(2)
    try:
        import triton  # noqa: F401
    except ImportError:
        print('dcnv3_gpu.py: error: Triton is not installed; pip install triton', file=sys.stderr)
        sys.exit(2)


def cuda_time_ms(fn: Callable[[], object], warmup: int, reps: int) -> float:
    """Median wall time of ``fn`` on the GPU in milliseconds (CUDA events, after warm-up)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    events = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events)


def stage_shapes(model: str, img_size: int) -> List[Dict[str, int]]:
    from uniconvnet import VARIANTS
    cfg = VARIANTS[model]
    return [dict(stage=i, size=img_size // (4 * 2 ** i), channels=dim, group=dim // cfg['dcn_group_channels'])
            for i, dim in enumerate(cfg['dims'])]


def core_problem(batch: int, size: int, channels: int, group: int, dtype: torch.dtype, seed: int = 0):
    """Input, offsets and mask of one DCNv3 layer; offsets a few pixels, never on integer positions."""
    gen = torch.Generator(device=DEVICE).manual_seed(seed)
    kw = dict(device=DEVICE, generator=gen)
    x = torch.randn(batch, size, size, channels, **kw)
    offset = torch.randn(batch, size, size, group * 18, **kw) * 2
    # fractional parts in [0.25, 0.75]: away from the kink of bilinear sampling at integer positions
    offset = offset.floor() + 0.25 + 0.5 * torch.rand(offset.shape, **kw)
    mask = torch.randn(batch, size, size, group * 9, **kw) * 0.3
    return [t.to(dtype) for t in (x, offset, mask)]


def run_core(backend: str, tensors, group: int, grad_out=None):
    from uniconvnet.ops import dcnv3
    leaves = [t.detach().requires_grad_(grad_out is not None) for t in tensors]
    out = dcnv3(*leaves, group=group, backend=backend)
    if grad_out is None:
        return out, None
    return out, torch.autograd.grad(out, leaves, grad_out)


def check_correctness(args) -> List[Dict]:
    """Triton vs the PyTorch core on the GPU: stage shapes at batch 2, then a whole model."""
    rows = []
    for shape in stage_shapes(args.model, args.img_size):
        for dtype in (torch.float32, torch.bfloat16):
            tensors = core_problem(2, shape['size'], shape['channels'], shape['group'], dtype, seed=1)
            grad_out = torch.randn(2, shape['size'], shape['size'], shape['channels'], device=DEVICE).to(dtype)
            out, grads = run_core('triton', tensors, shape['group'], grad_out)
            # reference: the core in float32 on the same (already rounded) values
            ref, ref_grads = run_core('torch', [t.float() for t in tensors], shape['group'], grad_out.float())
            errors = [((a.float() - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()
                      for a, b in zip((out,) + tuple(grads), (ref,) + tuple(ref_grads))]
            max_abs = max((a.float() - b).abs().max().item() for a, b in zip((out,) + tuple(grads),
                                                                               (ref,) + tuple(ref_grads)))
            limit = CORE_ATOL_FP32 if dtype == torch.float32 else torch.finfo(dtype).eps
            ok = (max_abs <= limit) if dtype == torch.float32 else max(errors) <= limit
            rows.append(dict(stage=shape['stage'], dtype=str(dtype).replace('torch.', ''), max_abs=max_abs,
                             rel_out=errors[0], rel_grad_input=errors[1], rel_grad_offset=errors[2],
                             rel_grad_mask=errors[3], ok=ok))
    print('\n## Correctness on the GPU: Triton vs the PyTorch core (batch 2; errors relative to the largest value)\n')
    print('| stage | dtype | max abs diff | out | grad input | grad offset | grad mask | ok |')
    print('|---|---|---:|---:|---:|---:|---:|---|')
    for r in rows:
        print(f"| {r['stage']} | {r['dtype']} | {r['max_abs']:.2e} | {r['rel_out']:.1e} | {r['rel_grad_input']:.1e} "
              f"| {r['rel_grad_offset']:.1e} | {r['rel_grad_mask']:.1e} | {'yes' if r['ok'] else 'NO'} |")

    import timm
    from uniconvnet.ops import BACKEND_ENV_VAR
    torch.manual_seed(0)
    model = timm.create_model(args.model).to(DEVICE).eval()
    randomize_dcn_sampling(model, unit_layer_scales=True)
    x = torch.randn(2, 3, args.img_size, args.img_size, device=DEVICE)
    logits = {}
    with torch.no_grad():
        for backend in ('torch', 'triton'):
            os.environ[BACKEND_ENV_VAR] = backend
            logits[backend] = model(x).float()
    os.environ.pop(BACKEND_ENV_VAR)
    diff = (logits['triton'] - logits['torch']).abs().max().item()
    scale = logits['torch'].abs().max().item()
    model_ok = diff <= 1e-4 * scale
    print(f'\nWhole {args.model} (float32, batch 2, layer scales 1): max abs logit difference Triton vs core '
          f"{diff:.2e} ({'ok' if model_ok else 'TOO LARGE'}; logits up to {scale:.2f})")
    rows.append(dict(stage='model', dtype='float32', max_abs=diff, ok=model_ok))
    return rows


def randomize_dcn_sampling(model: torch.nn.Module, std: float = 0.02, unit_layer_scales: bool = False) -> None:
    """Trained-like offsets and mask: at init offsets are zero (samples exactly on the grid, which flatters a
    gather kernel) and so is the mask (the DCN output would be zero whatever the backend). Layer scales start
    at 1e-6, which hides any difference in a branch from the output; ``unit_layer_scales`` sets them to 1."""
    from uniconvnet.layers import DCNv3
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, DCNv3):
                module.offset.weight.normal_(std=std)
                module.mask.weight.normal_(std=std)
        for name, param in model.named_parameters():
            if unit_layer_scales and name.endswith('gamma'):
                param.fill_(1.0)


def time_core(args) -> List[Dict]:
    from uniconvnet.ops.dcn.triton_backend import dcnv3_backward_triton, dcnv3_forward_triton
    block_qs = [int(b) for b in args.block_q.split(',') if b.strip()]
    rows = []
    for shape in stage_shapes(args.model, args.img_size):
        for dtype in (torch.float32, torch.bfloat16):
            tensors = core_problem(args.batch, shape['size'], shape['channels'], shape['group'], dtype)
            grad_out = torch.randn(args.batch, shape['size'], shape['size'], shape['channels'],
                                   device=DEVICE).to(dtype)
            row = dict(stage=shape['stage'], size=shape['size'], channels=shape['channels'], group=shape['group'],
                       dtype=str(dtype).replace('torch.', ''))
            for backend in ('torch', 'triton'):
                with torch.no_grad():
                    row[f'{backend}_fwd_ms'] = cuda_time_ms(lambda: run_core(backend, tensors, shape['group']),
                                                            args.warmup, args.reps)
                row[f'{backend}_fwdbwd_ms'] = cuda_time_ms(
                    lambda: run_core(backend, tensors, shape['group'], grad_out), args.warmup, args.reps)
            row['speedup_fwd'] = row['torch_fwd_ms'] / row['triton_fwd_ms']
            row['speedup_fwdbwd'] = row['torch_fwdbwd_ms'] / row['triton_fwdbwd_ms']
            config = ((3, 3), (1, 1), (1, 1), (1, 1), shape['group'], 1.0)
            for block_q in block_qs:
                row[f'triton_fwdbwd_ms_block_q{block_q}'] = cuda_time_ms(
                    lambda: (dcnv3_forward_triton(*tensors, *config, block_q=block_q),
                             dcnv3_backward_triton(grad_out, *tensors, *config, block_q=block_q)),
                    args.warmup, args.reps)
            rows.append(row)

    print(f'\n## DCNv3 sampling core at {args.model} stage shapes '
          f'(batch {args.batch}, {args.img_size}x{args.img_size})\n')
    print('| stage | HxWxC | groups | dtype | core fwd ms | Triton fwd ms | fwd speed-up | core fwd+bwd ms '
          '| Triton fwd+bwd ms | fwd+bwd speed-up (target >= 5x) |')
    print('|---|---|---:|---|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        mark = '' if r['speedup_fwdbwd'] >= 5 else ' (below target)'
        print(f"| {r['stage']} | {r['size']}x{r['size']}x{r['channels']} | {r['group']} | {r['dtype']} "
              f"| {r['torch_fwd_ms']:.3f} | {r['triton_fwd_ms']:.3f} | {r['speedup_fwd']:.1f}x "
              f"| {r['torch_fwdbwd_ms']:.3f} | {r['triton_fwdbwd_ms']:.3f} | {r['speedup_fwdbwd']:.1f}x{mark} |")
    if block_qs:
        print('\nTriton fwd+bwd ms by pixels per program (--block-q):\n')
        print('| stage | dtype | ' + ' | '.join(f'block_q={b}' for b in block_qs) + ' |')
        print('|---|---|' + '---:|' * len(block_qs))
        for r in rows:
            print(f"| {r['stage']} | {r['dtype']} | "
                  + ' | '.join(f"{r[f'triton_fwdbwd_ms_block_q{b}']:.3f}" for b in block_qs) + ' |')
    return rows


def time_training(name: str, backend: Optional[str], args, compile_model: bool = False) -> Dict:
    """Images/s and peak memory of training steps: bf16 autocast, channels_last, AdamW, random data."""
    import timm
    from uniconvnet.ops import BACKEND_ENV_VAR
    if backend is not None:
        os.environ[BACKEND_ENV_VAR] = backend
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=1000).to(DEVICE).to(memory_format=torch.channels_last).train()
    if name.startswith('uniconvnet'):
        randomize_dcn_sampling(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    step_model = torch.compile(model) if compile_model else model
    x = torch.randn(args.batch, 3, args.img_size, args.img_size, device=DEVICE).to(
        memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), device=DEVICE)

    def step():
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            loss = F.cross_entropy(step_model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    for _ in range(args.warmup + (3 if compile_model else 0)):
        step()
    torch.cuda.synchronize()
    warmup_s = time.perf_counter() - started
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.train_steps):
        step()
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    result = dict(model=name, backend=backend or '-', compiled=compile_model,
                  images_per_s=args.batch * args.train_steps / elapsed,
                  peak_mem_gib=torch.cuda.max_memory_allocated() / 2 ** 30, warmup_s=warmup_s)
    os.environ.pop(BACKEND_ENV_VAR, None)
    return result  # the model and optimizer are freed on return, before the next model is built


def time_all_training(args) -> List[Dict]:
    runs = [(args.baseline, None), (args.model, 'triton'), (args.model, 'torch')]
    rows = [time_training(name, backend, args) for name, backend in runs]
    if args.compile:
        rows += [time_training(name, backend, args, compile_model=True) for name, backend in runs[:2]]
    print(f'\n## Training: batch {args.batch}, {args.img_size}x{args.img_size}, bf16 autocast, channels_last, '
          f'AdamW ({args.train_steps} timed steps)\n')
    print(f'| model | DCN backend | compiled | images/s | vs {args.baseline} | peak memory GiB | vs {args.baseline} |')
    print('|---|---|---|---:|---:|---:|---:|')
    for r in rows:
        base = next(b for b in rows if b['model'] == args.baseline and b['compiled'] == r['compiled'])
        r['throughput_ratio'] = r['images_per_s'] / base['images_per_s']
        r['memory_ratio'] = r['peak_mem_gib'] / base['peak_mem_gib']
        print(f"| {r['model']} | {r['backend']} | {'yes' if r['compiled'] else 'no'} | {r['images_per_s']:.0f} "
              f"| {r['throughput_ratio']:.2f}x | {r['peak_mem_gib']:.2f} | {r['memory_ratio']:.2f}x |")
    print(f'\nTargets for {args.model} with Triton (eager): throughput >= 0.8x, peak memory <= 1.3x '
          f'of {args.baseline}.')
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    require_gpu()
    import triton

    import uniconvnet
    torch.backends.cudnn.benchmark = True
    device = torch.cuda.get_device_name()
    print(f'# DCNv3 GPU benchmark on {device}\n')
    print(f'torch {torch.__version__}, triton {triton.__version__}, uniconvnet {uniconvnet.__version__}, '
          f'CUDA {torch.version.cuda}')
    results: Dict[str, object] = dict(device=device, torch=torch.__version__, triton=triton.__version__,
                                      args=vars(args))
    results['correctness'] = check_correctness(args)
    if not args.skip_core:
        results['core'] = time_core(args)
    if not args.skip_train:
        results['training'] = time_all_training(args)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
        print(f'\nwrote {args.json}')
    failed = [r for r in results['correctness'] if not r['ok']]
    if failed:
        print(f'\nCORRECTNESS FAILED for {len(failed)} case(s); see the first table', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
