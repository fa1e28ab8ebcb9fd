"""``uniconvnet eval``: top-1, top-5, loss and images/s of a checkpoint."""
import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser('eval', help='evaluate a checkpoint (default data: the built-in digits validation split)')
    p.add_argument('--checkpoint', required=True,
                   help='output folder, model.safetensors (config.json beside it), last.pt/best.pt or official .pth')
    p.add_argument('--model', help='model name (default: from the checkpoint\'s metadata or its weights)')
    p.add_argument('--data', help='ImageNet-style folder; its val/ split is used (default: built-in digits)')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--workers', type=int, default=0, help='data loading worker processes')
    p.add_argument('--device', default='auto')
    p.add_argument('--threads', type=int, help="CPU threads, at least 1 (default: torch's, one per core; 1 on a shared CPU)")
    p.add_argument('--image-size', type=int, help='override the preprocessing input size')
    p.add_argument('--crop-pct', type=float, help='override the centre-crop fraction')
    p.add_argument('--interpolation', help='override the resize interpolation')
    p.add_argument('--json', action='store_true', help='print JSON')
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..engine import evaluate_checkpoint
    m = evaluate_checkpoint(args.checkpoint, args.model, args.data, args.batch_size, args.workers, args.device,
                            args.image_size, args.crop_pct, args.interpolation, args.threads)
    if args.json:
        print(json.dumps(m))
    else:
        print(f'top1 {m["top1"]:.2f}%  top5 {m["top5"]:.2f}%  loss {m["loss"]:.4f}  '
              f'{m["images"]} images  {m["images_per_s"]:.1f} images/s')
    return 0
