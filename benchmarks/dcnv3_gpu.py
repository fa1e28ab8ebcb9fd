#!/usr/bin/env python
"""The GPU check (issue 23): the Triton DCNv3 kernels and UniConvNet on one CUDA GPU, in one short run.

    PYTHONPATH=src python benchmarks/dcnv3_gpu.py --out OUT          # on the GPU: OUT/<gpu-name>/gpu_check.{json,md}
    PYTHONPATH=src python benchmarks/dcnv3_gpu.py --smoke --out TMP  # the same code on the CPU (Triton's interpreter)
    PYTHONPATH=src python benchmarks/dcnv3_gpu.py --report OUT/nvidia-h200/gpu_check.json --out DIR
                                                                     # here, afterwards: GPU table and frontier plot

Sections, in this order, each with its own share of ``--budget-s`` (an error or an overrun is recorded in the JSON
and the next section runs; results are written after every measurement, so a killed run keeps what it measured):
  env          the GPU's name, driver, CUDA, torch, Triton and timm versions.
  correctness  the Triton kernels against the PyTorch core (backend 'torch'): forward and the gradients for input,
               offset and mask at every stage shape of UniConvNet-A, N0 and T (224x224, batch 2), float32 within
               1e-4 and bfloat16 within 2^-8 (bfloat16's unit roundoff) of the largest reference value; then a whole
               UniConvNet-T on both backends (random weights, non-zero offsets and masks, layer scales 1): eval
               logits and train-mode gradients. Each side records which sampling op ran.
  core         the sampling core at UniConvNet-T's four stage shapes (batch 64, 224x224), float32 and bfloat16:
               forward and forward+backward, Triton against the PyTorch core (target: fwd+bwd >= 5x), then the
               launch configs of the Triton kernels side by side (vector channels, atomics, tile size, warps),
               each checked against the core; the fastest is what triton_backend.DEFAULT_CONFIG should be.
  training     UniConvNet-T (Triton, and the PyTorch core) against timm's convnext_tiny: bf16 autocast,
               channels_last, AdamW, batch 64: images/s and peak memory (targets: >= 0.8x, <= 1.3x).
  inference    images/s of A, N0, T (fused) and their frontier peers at batch 1 and 256, bf16 autocast and fp32.
  compile      torch.compile(fullgraph=True) of UniConvNet-T and A (eval, bf16 autocast): compile time, logits
               against eager, images/s; then a compiled training step of T where twice T's compile time is
               still left in the budget.

Without a CUDA device it prints one line and exits 2 (``--smoke`` runs everything on the CPU at tiny sizes, with
the Triton kernels in Triton's interpreter; < 30 s). Exit 1 when a correctness check failed or a section broke.
"""
import argparse
import contextlib
import gc
import importlib
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

if '--smoke' in sys.argv:  # the Triton kernels on the CPU: the interpreter must be on before Triton is imported
    os.environ.setdefault('TRITON_INTERPRET', '1')

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

JSON_NAME = 'gpu_check.json'
MARKDOWN_NAME = 'gpu_check.md'
TABLE_NAME = 'gpu_table.md'
PLOT_NAME = 'gpu_frontier.png'

FP32_TOL = 1e-4  # Triton vs core in float32: only the float32 rounding of the sampling positions differs
# bfloat16 keeps 8 significant bits: rounding a float32 result to nearest moves it by at most 2^-8 of its value.
# The kernels accumulate in float32 and round once, so each output is within 2^-8 of the float32 reference
# (computed from the same bfloat16 inputs), plus the float32 allowance. Triton's interpreter (the smoke run)
# truncates instead of rounding: up to 2^-7 there.
BF16_TOL = 2.0 ** -8
BF16_TOL_INTERPRETED = 2.0 ** -7
MODEL_LOGITS_TOL = 1e-4  # whole model, float32: relative L2 error of the logits (TF32 off)
MODEL_GRADS_TOL = 1e-3  # whole model, float32: worst relative L2 error of a parameter's gradient (24 blocks deep)
COMPILE_LOGITS_TOL = 2e-2  # compiled vs eager, both bf16 autocast: relative L2 error of the logits

# UniConvNet variants with their frontier peers (timm names; top-1 from uniconvnet.speed.peers)
VARIANTS = ('uniconvnet_a', 'uniconvnet_n0', 'uniconvnet_t')
PEERS = ('convnext_tiny', 'convnext_femto', 'efficientnet_b0', 'convnext_base', 'mobilenetv4_conv_medium',
         'efficientvit_b1', 'efficientvit_b2', 'efficientvit_l1')


@dataclass
class Settings:
    """Sizes and budgets of one run: the GPU's (default) or the CPU smoke test's (:func:`smoke_settings`)."""
    device: str = 'cuda'
    img_size: int = 224
    correctness_models: Tuple[str, ...] = VARIANTS
    correctness_stages: Tuple[int, ...] = (0, 1, 2, 3)
    correctness_batch: int = 2
    whole_model: str = 'uniconvnet_t'
    core_model: str = 'uniconvnet_t'
    core_batch: int = 64
    core_stages: Tuple[int, ...] = (0, 1, 2, 3)
    core_dtypes: Tuple[str, ...] = ('bfloat16', 'float32')
    # the launch configs are compared in the dtype training uses (each config and dtype compiles anew)
    config_dtypes: Tuple[str, ...] = ('bfloat16',)
    core_configs: Optional[Tuple[str, ...]] = None  # names from candidate_configs(); None: all
    # vector channels matter most at a group width Triton cannot prove a multiple of 16: A's 8 channels
    width8_model: Optional[str] = 'uniconvnet_a'
    core_warmup: int = 3
    core_reps: int = 10
    train_models: Tuple[Tuple[str, Optional[str]], ...] = (
        ('convnext_tiny', None), ('uniconvnet_t', 'triton'), ('uniconvnet_t', 'torch'))
    train_batch: int = 64
    train_warmup: int = 4
    train_steps: int = 12
    infer_models: Tuple[str, ...] = VARIANTS + PEERS
    infer_batches: Tuple[int, ...] = (1, 256)
    infer_warmup: int = 3
    infer_reps: Tuple[int, ...] = (30, 8)  # per batch size
    # A first: it compiles faster, so one result is in even if T's compile runs past the budget
    compile_models: Tuple[str, ...] = ('uniconvnet_a', 'uniconvnet_t')
    compile_batch: int = 64
    compile_backend: str = 'inductor'
    compile_train_model: Optional[str] = 'uniconvnet_t'  # a compiled training step, where the budget allows
    model_kwargs: Dict[str, Any] = field(default_factory=dict)  # extra create_model arguments of UniConvNets
    # seconds per section; the whole run is their sum plus start-up (about 5 minutes on an H200)
    budgets: Dict[str, float] = field(default_factory=lambda: dict(
        env=10, correctness=55, core=65, training=35, inference=50, compile=90))


def smoke_settings() -> Settings:
    """Tiny sizes on the CPU (Triton's interpreter): every code path of the GPU run in well under a minute."""
    return Settings(
        device='cpu', img_size=32, correctness_models=('uniconvnet_a',), correctness_stages=(0,),
        correctness_batch=1, whole_model='uniconvnet_a', core_model='uniconvnet_a', core_stages=(0,),
        core_dtypes=('bfloat16',), core_configs=('default', 'scalar_channels_acq_rel (before issue 23)'), core_batch=1,
        core_warmup=0, core_reps=1, width8_model=None,
        train_models=(('convnext_atto', None), ('uniconvnet_a', 'triton'), ('uniconvnet_a', 'torch')),
        train_batch=1, train_warmup=0, train_steps=1,
        infer_models=('uniconvnet_a', 'convnext_atto'), infer_batches=(2,), infer_warmup=0, infer_reps=(1,),
        compile_models=('uniconvnet_a',), compile_batch=1, compile_backend='aot_eager', compile_train_model=None,
        # UniConvNet-A's layout with one block per stage and fewer channels: the interpreter runs one Python
        # program per pixel tile and group, so groups cost time
        model_kwargs=dict(depths=(1, 1, 1, 1), dims=(16, 32, 32, 32)),
        budgets=dict(env=10, correctness=60, core=60, training=60, inference=60, compile=60))


# ------------------------------------------------------------------------------------------------------------
# Recording: one JSON (and its markdown) rewritten after every measurement
# ------------------------------------------------------------------------------------------------------------

def slug(name: str) -> str:
    """A folder name from a device name: 'NVIDIA H200' -> 'nvidia-h200'."""
    return re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-') or 'device'


class Recorder:
    """The run's results, saved as JSON and markdown after every change (atomic writes)."""

    def __init__(self, folder: Path, settings: Settings, smoke: bool):
        self.folder = folder
        self.results: Dict[str, Any] = dict(kind='gpu_check', smoke=smoke, settings=asdict(settings),
                                            sections={}, errors=[])

    def section(self, name: str) -> Dict[str, Any]:
        return self.results['sections'].setdefault(name, dict(rows=[], status='running'))

    def save(self) -> None:
        from uniconvnet.io import atomic_write_text
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.folder / JSON_NAME, json.dumps(self.results, indent=1, default=str))
        try:
            markdown = format_report(self.results)
        except Exception as error:  # noqa: BLE001 - the JSON holds every number; a table bug must not stop the run
            markdown = f'(the tables could not be formatted: {type(error).__name__}: {error}; see {JSON_NAME})\n'
        atomic_write_text(self.folder / MARKDOWN_NAME, markdown)


class SectionTimeout(BaseException):
    """A section ran past its hard limit (its budget plus a grace period). A BaseException, like Ctrl-C: the
    measurements' own ``except Exception`` (a peer that fails to build, say) must not swallow it."""


@contextlib.contextmanager
def hard_limit(seconds: float) -> Iterator[None]:
    """Raise SectionTimeout in the main thread after ``seconds`` (between Python bytecodes: a running CUDA call or
    compile finishes its current step first). The previous SIGALRM handler is restored afterwards."""
    def expire(signum, frame):
        raise SectionTimeout(f'stopped after its hard limit of {seconds:.0f} s')
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Budget:
    """A section's soft deadline: measurements check ``left()`` and skip what would not fit."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.perf_counter()

    def used(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.seconds - self.used()


def run_section(recorder: Recorder, name: str, settings: Settings, body: Callable[..., None]) -> None:
    """Run one section under its budget; record an error or an overrun and go on."""
    seconds = settings.budgets[name]
    section = recorder.section(name)
    budget = Budget(seconds)
    print(f'\n== {name} (budget {seconds:.0f} s)', flush=True)
    try:
        with hard_limit(seconds * 1.2 + 10):
            body(section, settings, budget, recorder)
        section['status'] = 'done'
    except (Exception, SectionTimeout) as error:  # noqa: BLE001 - every failure is recorded; the next section runs
        section['status'] = 'error'
        section['error'] = f'{type(error).__name__}: {error}'
        section['traceback'] = traceback.format_exc()[-3000:]
        recorder.results['errors'].append(f'{name}: {type(error).__name__}: {str(error)[:300]}')
        print(f'   {name} FAILED: {type(error).__name__}: {str(error)[:500]}', flush=True)
        if is_sticky_cuda_error(error):
            recorder.results['cuda_broken'] = f'{name}: {str(error)[:300]}'
    finally:
        section['seconds'] = round(budget.used(), 1)
        try:
            free_memory(settings.device)
        except Exception as error:  # noqa: BLE001 - a broken CUDA context shows here; record it, do not crash
            recorder.results['cuda_broken'] = recorder.results.get('cuda_broken') or f'{name}: {str(error)[:300]}'
        recorder.save()


def is_sticky_cuda_error(error: BaseException) -> bool:
    """An error after which every CUDA call in this process fails (an illegal address, a device-side assert)."""
    text = str(error)
    return any(s in text for s in ('illegal memory access', 'device-side assert', 'unspecified launch failure',
                                   'misaligned address', 'illegal instruction'))


def free_memory(device: str) -> None:
    gc.collect()
    if device == 'cuda':
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


# ------------------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------------------

def synchronize(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], object], device: str, warmup: int, reps: int) -> float:
    """Median time of ``fn`` in milliseconds after ``warmup`` calls (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    if device != 'cuda':
        times = []
        for _ in range(max(reps, 1)):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        return statistics.median(times)
    events = []
    for _ in range(max(reps, 1)):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        events.append((start, end))
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events)


def compare(got: torch.Tensor, want: torch.Tensor) -> Dict[str, float]:
    """Errors of ``got`` against the reference ``want`` (computed in float32 or float64)."""
    got, want = got.detach().double(), want.detach().double()
    diff = (got - want).abs()
    scale = want.abs().max().item()
    return dict(max_abs=diff.max().item() if diff.numel() else 0.0,
                rel_max=(diff.max().item() / max(scale, 1.0)) if diff.numel() else 0.0,
                rel_l2=(torch.linalg.vector_norm(got - want) / torch.linalg.vector_norm(want).clamp_min(1e-30)).item(),
                finite=bool(torch.isfinite(got).all()))


class OpRecorder(torch.utils._python_dispatch.TorchDispatchMode):
    """Names of the operators that ran (below autograd): which DCNv3 implementation a forward really used."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(str(func))
        return func(*args, **(kwargs or {}))


def dcn_ops_seen(names: Sequence[str]) -> List[str]:
    """Which sampling implementations appear among operator names: 'triton' (the custom op), 'torch' (grid_sample)."""
    seen = []
    if any(n.startswith('uniconvnet.dcnv3_sample') for n in names):
        seen.append('triton')
    if any('grid_sampler' in n for n in names):
        seen.append('torch')
    return seen


def triton_module():
    """The module of the Triton backend (its launchers and TritonConfig), wherever the package keeps it."""
    from uniconvnet.ops import dcnv3_triton
    return importlib.import_module(dcnv3_triton.__module__)


def stage_shapes(model: str, img_size: int) -> List[Dict[str, int]]:
    """The DCNv3 problem of each stage: output size, channels, groups."""
    from uniconvnet import VARIANTS as CONFIGS
    cfg = CONFIGS[model]
    return [dict(stage=i, size=img_size // (4 * 2 ** i), channels=dim, group=dim // cfg['dcn_group_channels'])
            for i, dim in enumerate(cfg['dims'])]


def core_problem(batch: int, size: int, channels: int, group: int, dtype: torch.dtype, device: str, seed: int):
    """Input, offsets and mask of one DCNv3 layer (3x3, stride 1, padding 1), and an output gradient.

    Offsets are a few pixels, with fractional parts in [0.25, 0.75]: away from the kink of bilinear sampling at
    integer positions (where two correct implementations may take different one-sided derivatives)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    kw = dict(device=device, generator=gen)
    x = torch.randn(batch, size, size, channels, **kw)
    offset = torch.randn(batch, size, size, group * 18, **kw) * 2
    offset = offset.floor() + 0.25 + 0.5 * torch.rand(offset.shape, **kw)
    mask = torch.randn(batch, size, size, group * 9, **kw) * 0.3
    grad_out = torch.randn(batch, size, size, channels, **kw)
    return [t.to(dtype) for t in (x, offset, mask)], grad_out.to(dtype)


def tolerance(dtype: torch.dtype) -> float:
    """Largest allowed difference from the float32 core, relative to its largest value (see BF16_TOL)."""
    if dtype == torch.float32:
        return FP32_TOL
    return FP32_TOL + (BF16_TOL_INTERPRETED if triton_module()._kernels().INTERPRETED else BF16_TOL)


def run_core(backend: str, tensors, group: int, grad_out=None):
    """The public entry point ``uniconvnet.ops.dcnv3`` on ``backend``; with ``grad_out``, also the three gradients."""
    from uniconvnet.ops import dcnv3
    leaves = [t.detach().requires_grad_(grad_out is not None) for t in tensors]
    out = dcnv3(*leaves, group=group, backend=backend)
    if grad_out is None:
        return out, None
    return out, torch.autograd.grad(out, leaves, grad_out)


def create(name: str, settings: Settings, **kwargs) -> torch.nn.Module:
    """A model with random weights (pretrained=False); UniConvNets get the run's extra arguments (smoke: 1 block)."""
    import timm

    import uniconvnet  # noqa: F401 - registers the UniConvNet models with timm
    if name.startswith('uniconvnet'):
        kwargs = dict(settings.model_kwargs, **kwargs)
    return timm.create_model(name, pretrained=False, **kwargs)


def randomize_dcn_sampling(model: torch.nn.Module, std: float = 0.02, unit_layer_scales: bool = False) -> None:
    """Trained-like sampling: at init the offsets are zero (every sample on the grid, which flatters a gather
    kernel) and so is the mask (the DCN output would be zero whatever the backend). Small random weights give
    offsets of a fraction of a pixel. Layer scales start at 1e-6, which hides any difference in a branch from the
    output; ``unit_layer_scales`` sets them to 1."""
    from uniconvnet.layers import DCNv3
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, DCNv3):
                module.offset.weight.normal_(std=std)
                module.mask.weight.normal_(std=std)
                module.mask.bias.normal_(std=0.5)
        for name, param in model.named_parameters():
            if unit_layer_scales and name.endswith('gamma'):
                param.fill_(1.0)


@contextlib.contextmanager
def exact_float32() -> Iterator[None]:
    """TF32 off for convolutions and matmuls (correctness checks): otherwise tiny differences in the DCN output
    round differently in TF32 and hide the comparison. The previous settings are restored."""
    previous = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


def peak_memory_gib(device: str) -> Optional[float]:
    return torch.cuda.max_memory_allocated() / 2 ** 30 if device == 'cuda' else None


def reset_peak_memory(device: str) -> None:
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()


def autocast(device: str, enabled: bool = True):
    return torch.autocast(device, dtype=torch.bfloat16, enabled=enabled)


# ------------------------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------------------------

def section_env(section, settings: Settings, budget: Budget, recorder: Recorder) -> None:
    import timm
    import triton

    import uniconvnet
    env = dict(python=platform.python_version(), torch=torch.__version__, triton=triton.__version__,
               timm=timm.__version__, uniconvnet=uniconvnet.__version__, cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version(), interpreted=triton_module()._kernels().INTERPRETED,
               default_config=asdict(triton_module().DEFAULT_CONFIG))
    if settings.device == 'cuda':
        props = torch.cuda.get_device_properties(0)
        capability = '.'.join(map(str, torch.cuda.get_device_capability(0)))
        env.update(gpu=torch.cuda.get_device_name(0), capability=capability,
                   multiprocessors=props.multi_processor_count, memory_gib=round(props.total_memory / 2 ** 30, 1))
        try:
            env['driver'] = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                                           capture_output=True, text=True, timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError) as error:
            env['driver'] = f'unknown ({error})'
    else:
        env.update(gpu=f'CPU ({platform.processor() or platform.machine()}), Triton interpreter', driver='-')
    try:
        env['commit'] = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True,
                                       timeout=10, cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        env['commit'] = None
    section.update(env)
    print('   ' + ', '.join(f'{k} {v}' for k, v in env.items() if k != 'default_config'), flush=True)


def section_correctness(section, settings: Settings, budget: Budget, recorder: Recorder) -> None:
    from uniconvnet.ops import select_backend
    device = settings.device
    rows = section['rows']
    with exact_float32():
        shapes = [(model, shape) for model in settings.correctness_models
                  for shape in stage_shapes(model, settings.img_size) if shape['stage'] in settings.correctness_stages]
        for model, shape in shapes:
            for dtype in (torch.float32, torch.bfloat16):
                if budget.left() < 0:
                    rows.append(dict(model=model, stage=shape['stage'], skipped='budget'))
                    continue
                tensors, grad_out = core_problem(settings.correctness_batch, shape['size'], shape['channels'],
                                                 shape['group'], dtype, device, seed=shape['stage'] + 1)
                ran = {name: select_backend(tensors[0], name) for name in ('triton', 'torch')}
                out, grads = run_core('triton', tensors, shape['group'], grad_out)
                # the reference: the core in float32 on the same (already rounded) values
                ref, ref_grads = run_core('torch', [t.float() for t in tensors], shape['group'], grad_out.float())
                tol = tolerance(dtype)
                row = dict(model=model, stage=shape['stage'], size=shape['size'], channels=shape['channels'],
                           group=shape['group'], dtype=str(dtype).replace('torch.', ''), tolerance=tol,
                           backends=ran, dtypes_out=[str(t.dtype).replace('torch.', '') for t in (out, *grads)])
                for key, got, want in zip(('out', 'grad_input', 'grad_offset', 'grad_mask'), (out, *grads),
                                          (ref, *ref_grads)):
                    row[key] = compare(got, want)
                row['ok'] = (ran == dict(triton='triton', torch='torch') and all(
                    row[k]['finite'] and row[k]['rel_max'] <= tol
                    for k in ('out', 'grad_input', 'grad_offset', 'grad_mask')))
                rows.append(row)
                print(f"   {model} stage {shape['stage']} {row['dtype']}: worst "
                      f"{max(row[k]['rel_max'] for k in ('out', 'grad_input', 'grad_offset', 'grad_mask')):.1e} "
                      f"(tol {tol:.1e}) {'ok' if row['ok'] else 'FAIL'}", flush=True)
                recorder.save()
        if budget.left() > 0:
            section['model'] = whole_model_check(settings)
            recorder.save()
        else:
            section['model'] = dict(skipped='budget')


def whole_model_check(settings: Settings) -> Dict[str, Any]:
    """A whole model on both backends (same weights): eval logits and train-mode gradients, in float32."""
    device = settings.device
    torch.manual_seed(0)
    model = create(settings.whole_model, settings).to(device)
    randomize_dcn_sampling(model, unit_layer_scales=True)
    x = torch.randn(settings.correctness_batch, 3, settings.img_size, settings.img_size, device=device)
    target = torch.randint(0, model.num_classes, (settings.correctness_batch,), device=device)
    logits, grads, ops = {}, {}, {}
    for backend in ('torch', 'triton'):
        model.set_dcn_backend(backend)  # the public option: every DCNv3 layer of the model
        model.eval()
        with torch.no_grad(), OpRecorder() as recorded:
            logits[backend] = model(x).float()
        ops[backend] = dcn_ops_seen(recorded.names)
        model.train()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), target).backward()
        grads[backend] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    result = dict(model=settings.whole_model, ops_seen=ops, logits=compare(logits['triton'], logits['torch']),
                  logits_scale=logits['torch'].abs().max().item())
    worst_name, worst = max(((n, compare(grads['triton'][n], g)) for n, g in grads['torch'].items()),
                            key=lambda item: item[1]['rel_l2'])
    result.update(worst_grad=worst_name, worst_grad_error=worst, grads_compared=len(grads['torch']))
    result['backends_differ'] = ops == dict(torch=['torch'], triton=['triton'])
    result['ok'] = (result['backends_differ'] and result['logits']['rel_l2'] <= MODEL_LOGITS_TOL
                    and worst['rel_l2'] <= MODEL_GRADS_TOL and result['logits']['finite'] and worst['finite'])
    print(f"   whole {settings.whole_model}: ops seen {ops}; logits rel L2 {result['logits']['rel_l2']:.1e} "
          f"(tol {MODEL_LOGITS_TOL:.0e}); worst gradient {worst_name} rel L2 {worst['rel_l2']:.1e} "
          f"(tol {MODEL_GRADS_TOL:.0e}) {'ok' if result['ok'] else 'FAIL'}", flush=True)
    return result


def candidate_configs() -> Dict[str, Any]:
    """The Triton launch configs timed side by side: the default, each of its choices undone, tiles and warps."""
    base = triton_module().DEFAULT_CONFIG
    return {
        'default': base,
        'scalar_channels_acq_rel (before issue 23)': replace(base, vector_channels=False, relaxed_atomics=False),
        'scalar_channels': replace(base, vector_channels=False),
        'acq_rel_atomics': replace(base, relaxed_atomics=False),
        'tile_256': replace(base, tile_elements=256),
        'tile_1024': replace(base, tile_elements=1024),
        'tile_1024_8_warps': replace(base, tile_elements=1024, num_warps=8),
    }


# timed at every config dtype of T's stages: at T's group width 16 the constant width changes little
T_CONFIGS = ('default', 'scalar_channels_acq_rel (before issue 23)', 'acq_rel_atomics', 'tile_256', 'tile_1024',
             'tile_1024_8_warps')
# timed at A's first stage: the constant group width on and off where it matters (width 8)
WIDTH8_CONFIGS = ('default', 'scalar_channels_acq_rel (before issue 23)', 'scalar_channels')


def section_core(section, settings: Settings, budget: Budget, recorder: Recorder) -> None:
    """First Triton against the core at every shape, then the launch configs (each config compiles anew, so
    the configs come second: a tight budget loses configs, not stage shapes)."""
    every = candidate_configs()
    wanted = lambda names: {n: every[n] for n in names  # noqa: E731
                            if settings.core_configs is None or n in settings.core_configs}
    section['configs'] = {name: asdict(c) for name, c in every.items()}
    rows = section['rows']
    problems = [(settings.core_model, shape, getattr(torch, dtype), wanted(T_CONFIGS) if dtype in settings.config_dtypes
                 else {}) for shape in stage_shapes(settings.core_model, settings.img_size)
                if shape['stage'] in settings.core_stages for dtype in settings.core_dtypes]
    if settings.width8_model:
        problems.append((settings.width8_model, stage_shapes(settings.width8_model, settings.img_size)[0],
                         torch.bfloat16, wanted(WIDTH8_CONFIGS)))
    for sweep in (False, True):
        for index, (model, shape, dtype, configs) in enumerate(problems):
            if sweep and not (configs and 'speedup_fwdbwd' in rows[index]):
                continue
            if budget.left() < 0:
                if not sweep:
                    rows.append(dict(model=model, stage=shape['stage'], dtype=str(dtype).replace('torch.', ''),
                                     skipped='budget'))
                continue
            if sweep:
                time_configs(rows[index], shape, dtype, configs, settings, budget)
            else:
                rows.append(core_row(model, shape, dtype, settings))
            free_memory(settings.device)
            recorder.save()
    t_rows = [r for r in rows if r.get('model') == settings.core_model]
    section['fastest_config'] = fastest_config(t_rows, wanted(T_CONFIGS))
    section['kernels'] = compiled_kernels(triton_module())
    if section['fastest_config']:
        best = section['fastest_config']
        print(f"   fastest config over T's stages: {best['name']} = {best['config']} "
              f"({best['total_fwdbwd_ms']:.2f} ms against {best['default_total_fwdbwd_ms']:.2f} ms for the default)",
              flush=True)


def core_row(model: str, shape: Dict[str, int], dtype: torch.dtype, settings: Settings) -> Dict[str, Any]:
    """One stage shape: the core and Triton through the public ``dcnv3(backend=...)``, forward and fwd+bwd."""
    device = settings.device
    tensors, grad_out = core_problem(settings.core_batch, shape['size'], shape['channels'], shape['group'], dtype,
                                     device, seed=0)
    group = shape['group']
    row = dict(model=model, stage=shape['stage'], size=shape['size'], channels=shape['channels'], group=group,
               dtype=str(dtype).replace('torch.', ''), batch=settings.core_batch)
    reps = dict(warmup=settings.core_warmup, reps=settings.core_reps)
    for backend in ('torch', 'triton'):
        with torch.no_grad():
            row[f'{backend}_fwd_ms'] = time_ms(lambda: run_core(backend, tensors, group), device, **reps)
        row[f'{backend}_fwdbwd_ms'] = time_ms(lambda: run_core(backend, tensors, group, grad_out), device, **reps)
    row['speedup_fwd'] = row['torch_fwd_ms'] / row['triton_fwd_ms']
    row['speedup_fwdbwd'] = row['torch_fwdbwd_ms'] / row['triton_fwdbwd_ms']
    print(f"   {model} stage {shape['stage']} {row['dtype']}: core {row['torch_fwdbwd_ms']:.3f} ms, Triton "
          f"{row['triton_fwdbwd_ms']:.3f} ms fwd+bwd: {row['speedup_fwdbwd']:.1f}x", flush=True)
    return row


def time_configs(row: Dict[str, Any], shape: Dict[str, int], dtype: torch.dtype, configs: Dict[str, Any],
                 settings: Settings, budget: Budget) -> None:
    """Each launch config at one stage shape: checked against the core's float32 result on the same values,
    then timed (forward, and forward plus backward, through the launchers)."""
    device, module = settings.device, triton_module()
    tensors, grad_out = core_problem(settings.core_batch, shape['size'], shape['channels'], shape['group'], dtype,
                                     device, seed=0)
    group = shape['group']
    reps = dict(warmup=settings.core_warmup, reps=settings.core_reps)
    ref, ref_grads = run_core('torch', [t.float() for t in tensors], group, grad_out.float())
    geometry = ((3, 3), (1, 1), (1, 1), (1, 1), group, 1.0)
    row['configs'] = {}
    for name, config in configs.items():
        if budget.left() < 0:
            row['configs'][name] = dict(skipped='budget')
            continue
        forward = lambda: module.dcnv3_forward_triton(*tensors, *geometry, config=config)  # noqa: E731
        backward = lambda: module.dcnv3_backward_triton(grad_out, *tensors, *geometry, config=config)  # noqa: E731
        out, grads = forward(), backward()
        worst = max(compare(g, w)['rel_max'] for g, w in zip((out, *grads), (ref, *ref_grads)))
        del out, grads
        row['configs'][name] = dict(fwd_ms=time_ms(forward, device, **reps),
                                    fwdbwd_ms=time_ms(lambda: (forward(), backward()), device, **reps),
                                    worst_error=worst, ok=worst <= tolerance(dtype))
    print(f"   {row['model']} stage {row['stage']} {row['dtype']} configs, fwd+bwd ms: "
          + ', '.join(f"{n} {c['fwdbwd_ms']:.3f}" for n, c in row['configs'].items() if 'fwdbwd_ms' in c), flush=True)


def fastest_config(rows: List[Dict[str, Any]], configs: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The config with the least fwd+bwd time summed over all stage shapes and dtypes, among those correct on all."""
    measured = [r for r in rows if 'configs' in r]
    totals = {}
    for name in configs:
        cells = [r['configs'].get(name, {}) for r in measured]
        if cells and all('fwdbwd_ms' in c and c['ok'] for c in cells):
            totals[name] = sum(c['fwdbwd_ms'] for c in cells)
    if not totals or 'default' not in totals:
        return None
    name = min(totals, key=totals.get)
    return dict(name=name, config=asdict(configs[name]), total_fwdbwd_ms=totals[name],
                default_total_fwdbwd_ms=totals['default'], totals=totals)


def compiled_kernels(module) -> List[Dict[str, Any]]:
    """Registers and spills of every kernel Triton compiled in this process (best effort: Triton's cache layout
    differs between versions)."""
    found = []
    for kernel in (module._kernels().dcnv3_forward_kernel, module._kernels().dcnv3_backward_kernel):
        try:
            for device_cache in getattr(kernel, 'device_caches', {}).values():
                cache = device_cache[0] if isinstance(device_cache, tuple) else device_cache
                for compiled in cache.values():
                    constants = getattr(getattr(compiled, 'src', None), 'constants', {}) or {}
                    named = {kernel.arg_names[k[0]] if isinstance(k, tuple) else k: v for k, v in constants.items()}
                    found.append(dict(kernel=kernel.__name__, n_regs=getattr(compiled, 'n_regs', None),
                                      n_spills=getattr(compiled, 'n_spills', None),
                                      num_warps=getattr(compiled.metadata, 'num_warps', None),
                                      **{k: v for k, v in named.items()
                                         if k in ('BLOCK_Q', 'BLOCK_C', 'EVEN_C', 'ATOMIC_SEM', 'WIDE_INDEX')}))
        except Exception as error:  # noqa: BLE001 - a report, not a check
            found.append(dict(kernel=kernel.__name__, error=f'{type(error).__name__}: {error}'))
    return found


def train_throughput(name: str, backend: Optional[str], settings: Settings, budget: Budget,
                     compile_model: bool = False) -> Dict[str, Any]:
    """Images/s and peak memory of training steps: bf16 autocast, channels_last, AdamW, random data."""
    device = settings.device
    torch.manual_seed(0)
    model = create(name, settings).to(device).to(memory_format=torch.channels_last).train()
    if backend is not None:
        model.set_dcn_backend(backend)
        randomize_dcn_sampling(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device == 'cuda')
    step_model = torch.compile(model, fullgraph=True, backend=settings.compile_backend) if compile_model else model
    x = torch.randn(settings.train_batch, 3, settings.img_size, settings.img_size, device=device).to(
        memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (settings.train_batch,), device=device)

    def step():
        with autocast(device):
            loss = F.cross_entropy(step_model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    started = time.perf_counter()
    ops = None
    if compile_model:
        step()  # compiles
    else:
        with OpRecorder() as recorded:  # the first step records which sampling op really ran
            step()
        ops = dcn_ops_seen(recorded.names)
    for _ in range(settings.train_warmup):
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - started
    reset_peak_memory(device)
    steps, started = 0, time.perf_counter()
    while steps < settings.train_steps and (steps == 0 or budget.left() > 0):
        step()
        steps += 1
    synchronize(device)
    elapsed = time.perf_counter() - started
    return dict(model=name, backend=backend or '-', compiled=compile_model, ops_seen=ops, steps=steps,
                images_per_s=settings.train_batch * steps / elapsed, peak_mem_gib=peak_memory_gib(device),
                warmup_s=round(warmup_s, 1))


def section_training(section, settings: Settings, budget: Budget, recorder: Recorder) -> None:
    for name, backend in settings.train_models:
        if budget.left() < 0:
            section['rows'].append(dict(model=name, backend=backend or '-', skipped='budget'))
            continue
        try:
            row = train_throughput(name, backend, settings, budget)
        except torch.cuda.OutOfMemoryError as error:
            row = dict(model=name, backend=backend or '-', error=f'out of memory: {str(error)[:200]}')
        section['rows'].append(row)
        add_training_ratios(section['rows'], settings.train_models[0][0])
        print(f"   {name} ({backend or '-'}): {row.get('images_per_s', float('nan')):.1f} images/s, peak "
              f"{row.get('peak_mem_gib')} GiB, ops {row.get('ops_seen')}", flush=True)
        free_memory(settings.device)
        recorder.save()


def add_training_ratios(rows: List[Dict[str, Any]], baseline: str) -> None:
    base = next((r for r in rows if r['model'] == baseline and 'images_per_s' in r and not r.get('compiled')), None)
    for r in rows:
        if base is not None and 'images_per_s' in r:
            r['throughput_ratio'] = r['images_per_s'] / base['images_per_s']
            if r.get('peak_mem_gib') and base.get('peak_mem_gib'):
                r['memory_ratio'] = r['peak_mem_gib'] / base['peak_mem_gib']


def inference_model(name: str, settings: Settings) -> torch.nn.Module:
    """A model as it is deployed: eval, channels_last; UniConvNet fused (layer scales and norms folded)."""
    model = create(name, settings).to(settings.device).eval()
    if name.startswith('uniconvnet'):
        model.set_dcn_backend('triton')
        randomize_dcn_sampling(model)
        model.fuse()
    return model.to(memory_format=torch.channels_last)


def section_inference(section, settings: Settings, budget: Budget, recorder: Recorder) -> None:
    device = settings.device
    for name in settings.infer_models:
        if budget.left() < 0:
            section['rows'].append(dict(model=name, skipped='budget'))
            continue
        row = dict(model=name)
        section['rows'].append(row)
        try:
            model = inference_model(name, settings)
            for batch, reps in zip(settings.infer_batches, settings.infer_reps):
                x = torch.randn(batch, 3, settings.img_size, settings.img_size, device=device).to(
                    memory_format=torch.channels_last)
                for mode, bf16 in (('bf16', True), ('fp32', False)):
                    if budget.left() < 0:
                        row[f'{mode}_b{batch}'] = None
                        continue

                    def forward():
                        with torch.inference_mode(), autocast(device, enabled=bf16):
                            return model(x)
                    ms = time_ms(forward, device, warmup=settings.infer_warmup, reps=reps)
                    row[f'{mode}_b{batch}'] = batch * 1e3 / ms
            print('   ' + name + ': ' + ', '.join(f'{k} {v:.0f}/s' for k, v in row.items()
                                                  if k != 'model' and v is not None), flush=True)
        except torch.cuda.OutOfMemoryError as error:
            row['error'] = f'out of memory: {str(error)[:200]}'
        except Exception as error:  # noqa: BLE001 - a peer that fails to build or run is recorded, not fatal
            row['error'] = f'{type(error).__name__}: {str(error)[:300]}'
            print(f'   {name}: {row["error"]}', flush=True)
        model = None
        free_memory(device)
        recorder.save()


def section_compile(section, settings: Settings, budget: Budget, recorder: Recorder) -> None:
    for name in settings.compile_models:
        if budget.left() < 0:
            section['rows'].append(dict(model=name, skipped='budget'))
            continue
        row = dict(model=name, mode='eval, bf16 autocast', batch=settings.compile_batch,
                   backend=settings.compile_backend)
        section['rows'].append(row)
        compile_eval(row, settings, budget, recorder)
        free_memory(settings.device)
        recorder.save()
    longest = max((r['compile_s'] for r in section['rows'] if 'compile_s' in r), default=None)
    # a training step compiles the backward too: start it only where about twice an eval compile still fits
    name = settings.compile_train_model
    if name and longest is not None and budget.left() > 2 * longest:
        torch._dynamo.reset()
        row = dict(model=name, mode='train step', batch=settings.train_batch)
        section['rows'].append(row)
        row.update(train_throughput(name, 'triton', settings, budget, compile_model=True))
        print(f"   {name} compiled training: {row['images_per_s']:.0f} images/s (warm-up incl. compile "
              f"{row['warmup_s']} s)", flush=True)
        free_memory(settings.device)


def compile_eval(row: Dict[str, Any], settings: Settings, budget: Budget, recorder: Recorder) -> None:
    """torch.compile(fullgraph=True) of one model in eval (a graph break raises, and is recorded; the model is
    then compiled with breaks allowed), its logits against eager, and both speeds."""
    device = settings.device
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = create(row['model'], settings).to(device).eval().to(memory_format=torch.channels_last)
    model.set_dcn_backend('triton')
    randomize_dcn_sampling(model)
    x = torch.randn(settings.compile_batch, 3, settings.img_size, settings.img_size, device=device).to(
        memory_format=torch.channels_last)

    def run(m):
        with torch.no_grad(), autocast(device):
            return m(x)
    eager_logits = run(model).float()
    compiled, logits = None, None
    for fullgraph in (True, False):
        torch._dynamo.reset()
        try:
            started = time.perf_counter()
            compiled = torch.compile(model, fullgraph=fullgraph, backend=settings.compile_backend)
            logits = run(compiled).float()
            synchronize(device)
            row['compile_s'] = round(time.perf_counter() - started, 1)
            row['fullgraph'] = fullgraph
            break
        except Exception as error:  # noqa: BLE001 - recorded: with fullgraph, a graph break raises here
            if is_sticky_cuda_error(error):
                raise
            row['graph_break' if fullgraph else 'compile_error'] = f'{type(error).__name__}: {str(error)[:1500]}'
            print(f"   {row['model']}: compile (fullgraph={fullgraph}) failed: {type(error).__name__}: "
                  f"{str(error)[:300]}", flush=True)
    if logits is None:
        row['ok'] = False
        return
    row['logits'] = compare(logits, eager_logits)
    row['ok'] = row['fullgraph'] and row['logits']['rel_l2'] <= COMPILE_LOGITS_TOL
    recorder.save()
    if budget.left() > 0:
        reps = dict(warmup=settings.infer_warmup, reps=settings.infer_reps[-1])
        eager_ms = time_ms(lambda: run(model), device, **reps)
        compiled_ms = time_ms(lambda: run(compiled), device, **reps)
        row.update(eager_images_per_s=settings.compile_batch * 1e3 / eager_ms,
                   compiled_images_per_s=settings.compile_batch * 1e3 / compiled_ms, speedup=eager_ms / compiled_ms)
    print(f"   {row['model']}: fullgraph {row['fullgraph']}, compile {row['compile_s']} s, logits rel L2 "
          f"{row['logits']['rel_l2']:.1e} (tol {COMPILE_LOGITS_TOL:.0e}), speed-up {row.get('speedup', 0):.2f}x",
          flush=True)


SECTIONS = dict(env=section_env, correctness=section_correctness, core=section_core, training=section_training,
                inference=section_inference, compile=section_compile)


# ------------------------------------------------------------------------------------------------------------
# The report: markdown tables (on the device, and here for docs/gpu.md) and the frontier plot (here)
# ------------------------------------------------------------------------------------------------------------

def _f(value: Optional[float], digits: int = 1, suffix: str = '') -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return '-'
    return f'{value:.{digits}f}{suffix}'


def _status(section: Dict[str, Any]) -> str:
    status = section.get('status', 'not run')
    extra = f": {section['error']}" if section.get('error') else ''
    return f"_{status}, {section.get('seconds', '?')} s{extra}_"


def short_name(model: str) -> str:
    return model.replace('uniconvnet_', '').upper() if model.startswith('uniconvnet_') else model


def format_report(results: Dict[str, Any]) -> str:
    """All tables of a run as markdown (whatever sections it has so far)."""
    sections = results.get('sections', {})
    env = sections.get('env', {})
    lines = [f"# GPU check on {env.get('gpu', '?')}", '',
             f"driver {env.get('driver', '?')}, CUDA {env.get('cuda', '?')}, torch {env.get('torch', '?')}, "
             f"Triton {env.get('triton', '?')}, timm {env.get('timm', '?')}, uniconvnet {env.get('uniconvnet', '?')}"
             f" (commit {env.get('commit') or '?'}){', SMOKE RUN (CPU, tiny sizes)' if results.get('smoke') else ''}",
             '']
    if results.get('errors'):
        lines += ['Errors: ' + '; '.join(results['errors']), '']
    lines += correctness_tables(sections.get('correctness', {}))
    lines += core_tables(sections.get('core', {}))
    lines += training_table(sections.get('training', {}))
    lines += inference_table(sections.get('inference', {}))
    lines += compile_table(sections.get('compile', {}))
    return '\n'.join(lines) + '\n'


def correctness_tables(section: Dict[str, Any]) -> List[str]:
    if not section:
        return []
    lines = ['## Correctness: Triton against the PyTorch core', '', _status(section), '',
             'Largest difference relative to the largest reference value (at least 1); float32 tolerance '
             f'{FP32_TOL:.0e}, bfloat16 2^-8 + {FP32_TOL:.0e} (8 significant bits, one rounding to nearest; 2^-7 in '
             'the interpreter, which truncates).', '',
             '| model | stage | HxWxC | groups | dtype | out | grad input | grad offset | grad mask | ok |',
             '|---|---:|---|---:|---|---:|---:|---:|---:|---|']
    for r in section.get('rows', []):
        if 'skipped' in r:
            lines.append(f"| {r['model']} | {r['stage']} | skipped ({r['skipped']}) | | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['stage']} | {r['size']}x{r['size']}x{r['channels']} | {r['group']} "
                     f"| {r['dtype']} | " + ' | '.join(f"{r[k]['rel_max']:.1e}" for k in
                                                       ('out', 'grad_input', 'grad_offset', 'grad_mask'))
                     + f" | {'yes' if r['ok'] else 'NO'} |")
    model = section.get('model')
    if model and 'logits' in model:
        lines += ['', f"Whole {model['model']} (float32, random weights, non-zero offsets and masks, layer scales 1): "
                      f"sampling ops seen {model['ops_seen']}; logits relative L2 error "
                      f"{model['logits']['rel_l2']:.1e} (tolerance {MODEL_LOGITS_TOL:.0e}); worst of "
                      f"{model['grads_compared']} parameter gradients in train mode: {model['worst_grad']} "
                      f"{model['worst_grad_error']['rel_l2']:.1e} (tolerance {MODEL_GRADS_TOL:.0e}): "
                      f"{'ok' if model['ok'] else 'FAILED'}."]
    return lines + ['']


def core_tables(section: Dict[str, Any]) -> List[str]:
    if not section:
        return []
    rows = [r for r in section.get('rows', []) if 'torch_fwd_ms' in r]
    lines = ['## DCNv3 sampling core at stage shapes (UniConvNet-T; A for its group width 8)', '', _status(section),
             '', '| model | stage | HxWxC | groups | dtype | core fwd ms | Triton fwd ms | fwd speed-up '
             '| core fwd+bwd ms | Triton fwd+bwd ms | fwd+bwd speed-up (target >= 5x) |',
             '|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        mark = '' if r['speedup_fwdbwd'] >= 5 else ' (below)'
        lines.append(f"| {r.get('model', '')} | {r['stage']} | {r['size']}x{r['size']}x{r['channels']} | {r['group']} "
                     f"| {r['dtype']} "
                     f"| {r['torch_fwd_ms']:.3f} | {r['triton_fwd_ms']:.3f} | {r['speedup_fwd']:.1f}x "
                     f"| {r['torch_fwdbwd_ms']:.3f} | {r['triton_fwdbwd_ms']:.3f} | {r['speedup_fwdbwd']:.1f}x{mark} |")
    with_configs = [r for r in rows if r.get('configs')]
    names = [n for n in section.get('configs', {}) if any(n in r['configs'] for r in with_configs)]
    if names and with_configs:
        lines += ['', 'Triton launch configs, fwd+bwd ms (NO: differs from the core beyond tolerance):', '',
                  '| config | ' + ' | '.join(f"{short_name(r.get('model', ''))} s{r['stage']} {r['dtype']}"
                                             for r in with_configs) + ' |',
                  '|---|' + '---:|' * len(with_configs)]
        for name in names:
            cells = []
            for r in with_configs:
                c = r['configs'].get(name, {})
                cells.append('-' if 'fwdbwd_ms' not in c else f"{c['fwdbwd_ms']:.3f}{'' if c['ok'] else ' NO'}")
            lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    best = section.get('fastest_config')
    if best:
        lines += ['', f"Fastest config over all shapes: **{best['name']}** ({best['total_fwdbwd_ms']:.2f} ms against "
                      f"{best['default_total_fwdbwd_ms']:.2f} ms for the default): `{best['config']}`."]
    kernels = [k for k in section.get('kernels', []) if k.get('n_regs') is not None]
    if kernels:
        lines += ['', 'Compiled kernels (registers per thread, spills):', '',
                  '| kernel | BLOCK_Q x BLOCK_C | EVEN_C | atomics | warps | registers | spills |',
                  '|---|---|---|---|---:|---:|---:|']
        for k in kernels:
            lines.append(f"| {k['kernel']} | {k.get('BLOCK_Q')} x {k.get('BLOCK_C')} | {k.get('EVEN_C')} "
                         f"| {k.get('ATOMIC_SEM', '-')} | {k.get('num_warps')} | {k['n_regs']} | {k['n_spills']} |")
    return lines + ['']


def training_table(section: Dict[str, Any]) -> List[str]:
    if not section:
        return []
    lines = ['## Training: bf16 autocast, channels_last, AdamW', '', _status(section), '',
             '| model | DCN backend | compiled | sampling ops seen | images/s | vs first row | peak GiB '
             '| vs first row |',
             '|---|---|---|---|---:|---:|---:|---:|']
    for r in section.get('rows', []):
        if 'images_per_s' not in r:
            lines.append(f"| {r['model']} | {r.get('backend', '-')} | | | {r.get('skipped') or r.get('error')} | | | |")
            continue
        lines.append(f"| {r['model']} | {r['backend']} | {'yes' if r['compiled'] else 'no'} | {r.get('ops_seen')} "
                     f"| {r['images_per_s']:.0f} | {_f(r.get('throughput_ratio'), 2, 'x')} "
                     f"| {_f(r['peak_mem_gib'], 2)} | {_f(r.get('memory_ratio'), 2, 'x')} |")
    return lines + ['', 'Targets for UniConvNet-T with Triton: >= 0.8x the throughput and <= 1.3x the peak memory '
                        'of the first row (convnext_tiny).', '']


def inference_table(section: Dict[str, Any]) -> List[str]:
    from uniconvnet.speed.peers import matchable_top1
    if not section:
        return []
    rows = section.get('rows', [])
    keys = sorted({k for r in rows for k in r if re.fullmatch(r'(bf16|fp32)_b\d+', k)},
                  key=lambda k: (int(k.split('_b')[1]), k))
    lines = ['## Inference throughput (images/s; UniConvNet fused, channels_last, random weights)', '',
             _status(section), '', '| model | top-1 | ' + ' | '.join(k.replace('_b', ', batch ') for k in keys) + ' |',
             '|---|---:|' + '---:|' * len(keys)]
    for r in rows:
        note = r.get('skipped') or r.get('error')
        lines.append(f"| {r['model']} | {_f(matchable_top1(r['model']))} | "
                     + ' | '.join(_f(r.get(k), 0) for k in keys) + ' |' + (f' {note}' if note else ''))
    return lines + ['']


def compile_table(section: Dict[str, Any]) -> List[str]:
    if not section:
        return []
    lines = ['## torch.compile with the Triton op inside', '', _status(section), '',
             '| model | mode | fullgraph (no graph break) | compile s | logits rel L2 (tol 2e-2) | eager images/s '
             '| compiled images/s | speed-up |', '|---|---|---|---:|---:|---:|---:|---:|']
    for r in section.get('rows', []):
        if r.get('mode') == 'train step':
            if 'images_per_s' not in r:
                lines.append(f"| {r['model']} | train step: did not finish | | | | | | |")
                continue
            lines.append(f"| {r['model']} | train step (bf16 autocast, AdamW), batch {r['batch']} | yes "
                         f"| {r.get('warmup_s')} (with warm-up) | - | - | {_f(r.get('images_per_s'), 0)} | - |")
            continue
        if 'compile_s' not in r:
            note = r.get('skipped') or r.get('compile_error') or r.get('graph_break') or 'did not finish'
            lines.append(f"| {r['model']} | {str(note)[:300].replace('|', '/')} | | | | | | |")
            continue
        lines.append(f"| {r['model']} | {r['mode']}, batch {r['batch']} | {'yes' if r['fullgraph'] else 'NO'} "
                     f"| {r['compile_s']} | {r['logits']['rel_l2']:.1e} | {_f(r.get('eager_images_per_s'), 0)} "
                     f"| {_f(r.get('compiled_images_per_s'), 0)} | {_f(r.get('speedup'), 2, 'x')} |")
        if r.get('graph_break'):
            lines.append(f"|  | graph break: {r['graph_break'][:300].replace('|', '/')} | | | | | | |")
    return lines + ['']


def plot_frontier(results: Dict[str, Any], path: Path, key: Optional[str] = None) -> Path:
    """Top-1 (published, ImageNet-1k at 224) against measured inference throughput: one point per model.

    ``key``: which throughput, e.g. ``'bf16_b256'``; None: bf16 at the largest batch measured."""
    from uniconvnet.speed.peers import matchable_top1
    import matplotlib
    matplotlib.use('Agg')  # files only, no display
    import matplotlib.pyplot as plt
    env = results['sections'].get('env', {})
    measured = results['sections'].get('inference', {}).get('rows', [])
    if key is None:
        batches = [int(k.split('_b')[1]) for r in measured for k in r if re.fullmatch(r'bf16_b\d+', k)]
        key = f'bf16_b{max(batches)}' if batches else 'bf16_b256'
    rows = [r for r in measured if r.get(key) and matchable_top1(r['model']) is not None]
    if not rows:
        raise ValueError(f'no model has both a published top-1 and a {key} throughput in this run')
    figure, ax = plt.subplots(figsize=(7, 4.5), dpi=150)
    for family, color, marker in (('uniconvnet', 'tab:red', 'o'), ('peer', 'tab:blue', 's')):
        points = [(r[key], matchable_top1(r['model']), r['model']) for r in rows
                  if r['model'].startswith('uniconvnet') == (family == 'uniconvnet')]
        if not points:
            continue
        points.sort()
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=marker, color=color,
                linestyle='-' if family == 'uniconvnet' else 'none', label='UniConvNet' if family == 'uniconvnet'
                else 'timm peers')
        for x, y, name in points:
            label = name.replace('uniconvnet_', '').upper() if family == 'uniconvnet' else name
            ax.annotate(label, (x, y), textcoords='offset points', xytext=(4, 4), fontsize=7)
    ax.set_xscale('log')
    mode, batch = key.split('_b')
    size = results.get('settings', {}).get('img_size', 224)
    ax.set_xlabel(f'inference throughput, images/s ({mode}, batch {batch}, {size}x{size})')
    ax.set_ylabel('ImageNet-1k top-1 (%, published)')
    ax.set_title(f"{env.get('gpu', '?')}: torch {env.get('torch', '?')}, Triton {env.get('triton', '?')}, "
                 f"driver {env.get('driver', '?')}", fontsize=8)
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def write_report(json_path: Path, out: Path) -> List[Path]:
    """The report step, here after the run: the GPU tables (markdown) and the frontier plot from the JSON."""
    from uniconvnet.io import atomic_write_text
    try:
        results = json.loads(Path(json_path).read_text())
    except FileNotFoundError:
        raise SystemExit(f'dcnv3_gpu.py: error: no results at {json_path} (the device run writes '
                         f'OUT/<gpu-name>/{JSON_NAME})')
    if results.get('kind') != 'gpu_check':
        raise SystemExit(f'dcnv3_gpu.py: error: {json_path} is not a GPU check result (kind gpu_check)')
    out.mkdir(parents=True, exist_ok=True)
    written = [atomic_write_text(out / TABLE_NAME, format_report(results))]
    try:
        written.append(plot_frontier(results, out / PLOT_NAME))
    except ValueError as error:
        print(f'dcnv3_gpu.py: no plot: {error}', file=sys.stderr)
    return written


# ------------------------------------------------------------------------------------------------------------
# Entry point
# ------------------------------------------------------------------------------------------------------------

def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='', help='folder: the run writes OUT/<gpu-name>/, --report writes OUT/ '
                                                  '(--smoke without --out: a new temporary folder)')
    parser.add_argument('--smoke', action='store_true', help='the CPU check: Triton interpreter, tiny sizes')
    parser.add_argument('--report', default='', metavar='JSON', help=f'write {TABLE_NAME} and {PLOT_NAME} from a '
                                                                     f'finished run\'s {JSON_NAME}, measure nothing')
    parser.add_argument('--sections', default=','.join(SECTIONS), help='comma-separated subset, in run order')
    parser.add_argument('--budget-scale', type=float, default=1.0, help='multiply every section\'s time budget')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    if not args.out:
        if not args.smoke:
            print('dcnv3_gpu.py: error: --out FOLDER is required (where the results go)', file=sys.stderr)
            return 2
        args.out = tempfile.mkdtemp(prefix='gpu_check_smoke_')
    if args.report:
        for path in write_report(Path(args.report), Path(args.out)):
            print(f'wrote {path}')
        return 0
    if not args.smoke and not torch.cuda.is_available():
        print('dcnv3_gpu.py: error: no CUDA device (torch.cuda.is_available() is False); run it on a GPU machine, '
              'or add --smoke for the CPU check', file=sys.stderr)
        return 2
    try:
        import triton  # noqa: F401
    except ImportError:
        print('dcnv3_gpu.py: error: Triton is not installed (pip install triton)', file=sys.stderr)
        return 2
    unknown = [s for s in args.sections.split(',') if s not in SECTIONS]
    if unknown:
        print(f"dcnv3_gpu.py: error: unknown section(s) {unknown}; choose from {', '.join(SECTIONS)}", file=sys.stderr)
        return 2
    settings = smoke_settings() if args.smoke else Settings()
    settings.budgets = {k: v * args.budget_scale for k, v in settings.budgets.items()}
    name = 'cpu-smoke' if args.smoke else slug(torch.cuda.get_device_name(0))
    recorder = Recorder(Path(args.out) / name, settings, smoke=args.smoke)
    if settings.device == 'cuda':
        torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    for section in args.sections.split(','):
        if recorder.results.get('cuda_broken'):  # every later CUDA call would fail the same way
            recorder.section(section).update(status='skipped', error='the CUDA context broke in '
                                             + recorder.results['cuda_broken'])
            recorder.save()
            continue
        run_section(recorder, section, settings, SECTIONS[section])
    recorder.results['total_s'] = round(time.perf_counter() - started, 1)
    recorder.save()
    print('\n' + format_report(recorder.results))
    print('\n'.join(['', '## Summary', ''] + summary_lines(recorder.results)))
    failed = failed_checks(recorder.results)
    print(f"wrote {recorder.folder / JSON_NAME} and {MARKDOWN_NAME} in {recorder.results['total_s']} s; "
          + (f'FAILED: {"; ".join(failed)}' if failed else 'every check passed'))
    return 1 if failed else 0


def summary_lines(results: Dict[str, Any]) -> List[str]:
    """The headline figures in a few lines (printed last: a console that keeps only the end still shows them)."""
    sections, lines = results['sections'], []
    env = sections.get('env', {})
    lines.append(f"{env.get('gpu')}, driver {env.get('driver')}, torch {env.get('torch')}, Triton {env.get('triton')}")
    for name, section in sections.items():
        lines.append(f"{name}: {section.get('status')} in {section.get('seconds')} s"
                     + (f" ({section['error'][:200]})" if section.get('error') else ''))
    rows = [r for r in sections.get('correctness', {}).get('rows', []) if 'ok' in r]
    if rows:
        whole = (sections['correctness'].get('model') or {}).get('ok')
        lines.append(f"correctness: {sum(r['ok'] for r in rows)}/{len(rows)} stage checks within tolerance; "
                     f"whole model: {whole}")
    core = [r for r in sections.get('core', {}).get('rows', []) if 'speedup_fwdbwd' in r]
    if core:
        lines.append('core fwd+bwd speed-up Triton vs PyTorch core: ' + ', '.join(
            f"{short_name(r['model'])} s{r['stage']} {r['dtype']} {r['speedup_fwdbwd']:.1f}x" for r in core))
    best = sections.get('core', {}).get('fastest_config')
    if best:
        lines.append(f"fastest launch config: {best['name']} {best['config']} ({best['total_fwdbwd_ms']:.2f} ms vs "
                     f"default {best['default_total_fwdbwd_ms']:.2f} ms)")
    for r in sections.get('training', {}).get('rows', []):
        if 'images_per_s' in r:
            lines.append(f"training {r['model']} ({r['backend']}): {r['images_per_s']:.0f} images/s "
                         f"({_f(r.get('throughput_ratio'), 2, 'x')}), peak {_f(r['peak_mem_gib'], 2)} GiB "
                         f"({_f(r.get('memory_ratio'), 2, 'x')})")
    for r in sections.get('compile', {}).get('rows', []):
        if 'compile_s' in r:
            lines.append(f"compile {r['model']}: fullgraph {r['fullgraph']}, {r['compile_s']} s, logits rel L2 "
                         f"{r['logits']['rel_l2']:.1e}, speed-up {_f(r.get('speedup'), 2, 'x')}")
    return lines


def failed_checks(results: Dict[str, Any]) -> List[str]:
    """Correctness failures and broken sections, one line each."""
    sections = results['sections']
    failed = list(results.get('errors', []))
    if results.get('cuda_broken'):
        failed.append(f"the CUDA context broke (later sections skipped): {results['cuda_broken']}")
    correctness = sections.get('correctness', {})
    failed += [f"correctness {r['model']} stage {r['stage']} {r['dtype']}" for r in correctness.get('rows', [])
               if 'ok' in r and not r['ok']]
    model = correctness.get('model') or {}
    if 'ok' in model and not model['ok']:
        failed.append(f"whole-model check of {model['model']}")
    core = sections.get('core', {})
    failed += [f"config {name} at stage {r['stage']} {r['dtype']}" for r in core.get('rows', [])
               for name, c in (r.get('configs') or {}).items() if 'ok' in c and not c['ok']]
    failed += [f"compile of {r['model']}" for r in sections.get('compile', {}).get('rows', []) if r.get('ok') is False]
    return failed


if __name__ == '__main__':
    sys.exit(main())
