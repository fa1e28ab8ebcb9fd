"""``uniconvnet bench``: speed and memory of models side by side (see :mod:`uniconvnet.analysis.benchmark`)."""
import argparse
import sys


def add_parser(sub) -> None:
    p = sub.add_parser('bench', help='inference latency, training step and memory of models, with ratios',
                       description='Measures models side by side in one process (interleaved runs) and prints '
                                   'Markdown tables; modes after a colon: NAME:plain, NAME:fused, NAME:compile.')
    p.add_argument('--models', nargs='+', default=['uniconvnet_t', 'convnext_tiny'], metavar='SPEC',
                   help='timm model names, optionally with modes, e.g. uniconvnet_t uniconvnet_t:plain '
                        'uniconvnet_t:fused convnext_tiny')
    p.add_argument('--reference', default='convnext_tiny', help='the model ratios are taken against')
    p.add_argument('--size', type=int, default=224, help='square image size (default 224)')
    p.add_argument('--batch', type=int, nargs='+', default=[1, 8], help='inference batch sizes (default 1 8)')
    p.add_argument('--train-batch', type=int, default=16, help='training batch size; 0 skips training (default 16)')
    p.add_argument('--runs', type=int, default=10, help='timed inference runs per model and batch (default 10)')
    p.add_argument('--warmup', type=int, default=3, help='untimed runs first (default 3)')
    p.add_argument('--train-runs', type=int, default=5, help='timed training steps per model (default 5)')
    p.add_argument('--threads', type=int, default=None, help='torch and onnxruntime threads (default: torch\'s)')
    p.add_argument('--no-onnxruntime', action='store_true', help='skip onnxruntime even when installed')
    p.add_argument('--no-memory', action='store_true', help='skip the peak-memory measurement')
    p.add_argument('--profile', action='store_true', help='also print where inference time goes, per model')
    p.add_argument('--json', metavar='PATH', help='also write the full report as JSON')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..analysis.benchmark import format_benchmark, format_profile, profile_inference, run_benchmark, save_report

    def log(message: str) -> None:
        print(f'[bench] {message}', file=sys.stderr, flush=True)

    report = run_benchmark(args.models, reference=args.reference, image_size=args.size, batch_sizes=args.batch,
                           train_batch=args.train_batch or None, runs=args.runs, warmup=args.warmup,
                           train_runs=args.train_runs, threads=args.threads,
                           onnxruntime=not args.no_onnxruntime, memory=not args.no_memory, log=log)
    print(format_benchmark(report))
    if args.profile:
        report['profiles'] = []
        for label in report['models']:
            log(f'profiling {label}')
            profile = profile_inference(label, batch=args.batch[-1], image_size=args.size, threads=args.threads)
            report['profiles'].append(profile)
            print('\n' + format_profile(profile))
    if args.json:
        save_report(report, args.json)
    return 0
