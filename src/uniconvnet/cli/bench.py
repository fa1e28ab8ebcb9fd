"""``uniconvnet bench``: speed and memory of models side by side (:mod:`uniconvnet.speed.benchmark`), or the
accuracy-latency-memory frontier of UniConvNet against timm peers (``--frontier``,
:mod:`uniconvnet.speed.frontier`)."""
import argparse
import sys
from pathlib import Path

from ..host import check_threads

DEFAULT_MODELS = ['uniconvnet_t', 'convnext_tiny']
DEFAULT_REFERENCE = 'convnext_tiny'


def add_parser(sub) -> None:
    p = sub.add_parser('bench', help='inference latency, training step and memory of models, with ratios; '
                                     '--frontier: UniConvNet against timm peers of published top-1',
                       description='Measures models side by side in one process (interleaved runs) and prints '
                                   'Markdown tables; modes after a colon: NAME:plain, NAME:fused, NAME:compile. '
                                   'With --frontier: each UniConvNet variant against the fastest timm peer at '
                                   'least as accurate in every runtime (eager fp32 and bf16, onnxruntime, '
                                   'OpenVINO default and f32), and plots of top-1 against latency per runtime.')
    p.add_argument('--models', nargs='+', default=None, metavar='SPEC',
                   help='timm model names, optionally with modes, e.g. uniconvnet_t uniconvnet_t:plain '
                        f'uniconvnet_t:fused convnext_tiny (default: {" ".join(DEFAULT_MODELS)})')
    p.add_argument('--reference', default=None,
                   help=f'the model ratios are taken against (default {DEFAULT_REFERENCE})')
    p.add_argument('--size', type=int, default=224, help='square image size (default 224)')
    p.add_argument('--batch', type=int, nargs='+', default=[1, 8], help='inference batch sizes (default 1 8)')
    p.add_argument('--train-batch', type=int, default=16, help='training batch size; 0 skips training (default 16)')
    p.add_argument('--runs', type=int, default=10, help='timed inference runs per model and batch (default 10)')
    p.add_argument('--warmup', type=int, default=3, help='untimed runs first (default 3)')
    p.add_argument('--train-runs', type=int, default=5, help='timed training steps per model (default 5)')
    p.add_argument('--threads', type=int, default=None,
                   help='torch, onnxruntime and OpenVINO threads, at least 1 (default: torch\'s)')
    p.add_argument('--device', default='cpu', help='cpu (default) or cuda; the runtimes run on the CPU only')
    p.add_argument('--no-onnxruntime', action='store_true', help='skip onnxruntime even when installed')
    p.add_argument('--no-openvino', action='store_true',
                   help='skip OpenVINO (default precision and f32) even when installed')
    p.add_argument('--no-memory', action='store_true', help='skip the peak-memory measurement')
    p.add_argument('--profile', action='store_true', help='also print where inference time goes, per model')
    p.add_argument('--json', metavar='PATH', help='also write the full report as JSON (--frontier: read it first '
                                                  'and measure only what it lacks, saving after every step)')
    frontier = p.add_argument_group('frontier (--frontier)')
    frontier.add_argument('--frontier', action='store_true',
                          help='UniConvNet variants against timm peers with published top-1: table and plots')
    frontier.add_argument('--variants', nargs='+', default=None, metavar='NAME',
                          help='variants, e.g. A P0 N0 T (default: every variant with ImageNet-1k weights at 224)')
    frontier.add_argument('--peers', nargs='+', default=None, metavar='NAME[=TOP1]',
                          help='timm peers from the shipped table, or NAME=TOP1 for any other timm model '
                               '(default: the shipped table)')
    frontier.add_argument('--runtimes', nargs='+', default=None, metavar='RUNTIME',
                          help='runtimes to time in: eager eager_bf16 onnxruntime openvino openvino_f32 '
                               '(default: all that are installed)')
    frontier.add_argument('--plots', metavar='PREFIX', default=None,
                          help='write PREFIX_<runtime>.png per runtime and PREFIX_memory.png (default: the --json '
                               'path without .json; no plots without either)')
    frontier.add_argument('--plot-only', action='store_true',
                          help='measure nothing: print the table and draw the plots of the --json report')
    p.set_defaults(func=run)


def _log(message: str) -> None:
    print(f'[bench] {message}', file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    check_threads(args.threads)
    return _run_frontier(args) if args.frontier else _run_side_by_side(args)


def _run_side_by_side(args: argparse.Namespace) -> int:
    from ..speed.benchmark import RUNTIMES, format_benchmark, format_profile, profile_inference, run_benchmark
    from ..speed.benchmark import save_report
    frontier_only = [flag for flag, value in (('--variants', args.variants), ('--peers', args.peers),
                                              ('--runtimes', args.runtimes), ('--plots', args.plots),
                                              ('--plot-only', args.plot_only)) if value]
    if frontier_only:
        raise ValueError(f'{", ".join(frontier_only)} belong to --frontier; add --frontier or drop them')
    skipped = {'onnxruntime': args.no_onnxruntime, 'openvino': args.no_openvino, 'openvino_f32': args.no_openvino}
    report = run_benchmark(args.models or DEFAULT_MODELS, reference=args.reference or DEFAULT_REFERENCE,
                           image_size=args.size, batch_sizes=args.batch, train_batch=args.train_batch or None,
                           runs=args.runs, warmup=args.warmup, train_runs=args.train_runs, threads=args.threads,
                           runtimes=[r for r in RUNTIMES if not skipped[r]], memory=not args.no_memory,
                           device=args.device, log=_log)
    print(format_benchmark(report))
    if args.profile:
        report['profiles'] = []
        for label in report['models']:
            _log(f'profiling {label}')
            profile = profile_inference(label, batch=args.batch[-1], image_size=args.size, threads=args.threads)
            report['profiles'].append(profile)
            print('\n' + format_profile(profile))
    if args.json:
        save_report(report, args.json)
    return 0


def _run_frontier(args: argparse.Namespace) -> int:
    from ..speed.frontier import format_frontier, load_frontier, run_frontier
    from ..speed.plots import plot_frontier
    from ..speed.peers import DEFAULT_PEERS, DEFAULT_VARIANTS, resolve_peers, resolve_variants
    from ..speed.runtimes import RUNTIMES
    side_by_side_only = [flag for flag, value in (('--models', args.models), ('--reference', args.reference),
                                                  ('--profile', args.profile),
                                                  ('--no-onnxruntime', args.no_onnxruntime),
                                                  ('--no-openvino', args.no_openvino)) if value]
    if side_by_side_only:
        raise ValueError(f'{", ".join(side_by_side_only)} do not apply to --frontier; use --variants, --peers and '
                         f'--runtimes')
    plots = args.plots or (str(Path(args.json).with_suffix('')) if args.json else None)
    if args.plot_only:
        if not args.json:
            raise ValueError('--plot-only draws a saved report: pass it with --json PATH')
        report = load_frontier(args.json)
        names = _saved_models(report, args.variants, args.peers)
    else:
        variants = resolve_variants(args.variants or DEFAULT_VARIANTS)
        peers = resolve_peers(args.peers or DEFAULT_PEERS)
        report = run_frontier(variants, peers, image_size=args.size, batch_sizes=args.batch,
                              runtimes=args.runtimes or RUNTIMES,
                              train_batch=args.train_batch or None, runs=args.runs, warmup=args.warmup,
                              train_runs=args.train_runs, threads=args.threads, device=args.device,
                              memory=not args.no_memory, json_path=args.json, log=_log)
        names = report['requested']
    print(format_frontier(report, names))
    if plots:
        for path in plot_frontier(report, plots, names):
            _log(f'wrote {path}')
    return 0


def _saved_models(report, variants, peers):
    """The models of a saved frontier report to show: those named, else every measured one of each family."""
    from ..speed.peers import resolve_peers, resolve_variants
    models = report['models']
    names = []
    for family, requested, resolve in (('uniconvnet', variants, resolve_variants), ('peer', peers, resolve_peers)):
        if requested is None:
            names += [n for n, m in models.items() if m['family'] == family]
        else:
            names += [p.model for p in resolve(requested)]
    missing = [n for n in names if n not in models]
    if missing:
        raise ValueError(f'the saved report has no measurements of {", ".join(missing)}; measure them first')
    return names
