"""``uniconvnet predict``: the most likely classes of image files."""
import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser('predict', help='classify image files with a checkpoint')
    p.add_argument('images', nargs='+', help='image files')
    p.add_argument('--checkpoint', required=True,
                   help='output folder, model.safetensors (config.json beside it), last.pt/best.pt or official .pth')
    p.add_argument('--model', help='model name (default: from the checkpoint\'s metadata or its weights)')
    p.add_argument('--topk', type=int, default=5)
    p.add_argument('--device', default='auto')
    p.add_argument('--threads', type=int, help="CPU threads, at least 1 (default: torch's, one per core; 1 on a shared CPU)")
    p.add_argument('--json', action='store_true', help='print JSON')
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args: argparse.Namespace) -> int:
    from ..engine import predict
    results = predict(args.images, args.checkpoint, args.model, args.topk, args.device, args.threads)
    if args.json:
        print(json.dumps({str(img): [[name, p] for name, p in top] for img, top in zip(args.images, results)}))
        return 0
    for img, top in zip(args.images, results):
        print(f'{img}: ' + ', '.join(f'{name} ({p:.3f})' for name, p in top))
    return 0
