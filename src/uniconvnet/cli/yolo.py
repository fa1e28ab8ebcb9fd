"""``uniconvnet yolo train|eval|predict``: ultralytics YOLO with the RFA blocks (optional extra ``ultralytics``;
sliced prediction also needs ``sahi``)."""
import argparse
import json
import os
from typing import Any, Dict


def _integration():
    # nothing here needs the internet: models are built from YAMLs and the data is local, so keep ultralytics
    # from trying (font and weight downloads, online checks); it reads this when it is first imported
    os.environ.setdefault('YOLO_OFFLINE', '1')
    try:
        from ..integrations import ultralytics as integration
    except ImportError as e:
        raise ValueError(str(e)) from None  # the missing extra is bad input: one line, exit 2
    return integration


def _common(args: argparse.Namespace) -> Dict[str, Any]:
    return dict(data=args.data, imgsz=args.imgsz, batch=args.batch, device=args.device)


def _cmd_train(args: argparse.Namespace) -> int:
    integration = _integration()
    best = integration.train(args.cfg, epochs=args.epochs, seed=args.seed, project=args.project, name=args.name,
                             workers=args.workers, **_common(args))
    print(f'best weights: {best}')
    print(json.dumps(integration.evaluate(best, **_common(args)), indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    integration = _integration()
    print(json.dumps(integration.evaluate(args.weights or args.cfg, workers=args.workers, **_common(args)), indent=2))
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    integration = _integration()
    try:
        results = integration.predict(args.source, args.weights, out=args.out, slice_size=args.slice,
                                      overlap=args.overlap, imgsz=args.imgsz, conf=args.conf, device=args.device)
    except ImportError as e:  # SAHI missing for --slice: bad input, one line
        raise ValueError(str(e)) from None
    count = len(json.loads(results.read_text()))
    print(f'{count} detections: {results} (annotated images beside it)')
    return 0


def add_parser(sub: Any) -> None:
    """Add ``yolo train``, ``yolo eval`` (alias ``yolo val``, ultralytics' verb) and ``yolo predict`` to the
    ``uniconvnet`` command's subparsers."""
    parser = sub.add_parser('yolo', help='train, evaluate or predict with ultralytics YOLO models with RFA blocks')
    yolo_sub = parser.add_subparsers(dest='yolo_command', metavar='ACTION')
    yolo_sub.required = True

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument('--data', help='data YAML (default: the built-in small-object dataset, in YOLO format)')
        p.add_argument('--imgsz', type=int, help='image size (default: 128 on the built-in data, else 640)')
        p.add_argument('--batch', type=int, default=16, help='batch size (default 16)')
        p.add_argument('--device', default='cpu', help='cpu, 0, 0,1 ... as ultralytics takes it (default cpu)')
        p.add_argument('--workers', type=int, default=2, help='dataloader workers (default 2)')

    p = yolo_sub.add_parser('train', help='train from a model YAML, then evaluate the best weights',
                            description='Train from a model YAML, then evaluate the best weights. A from-scratch '
                            'UniConvNetBackbone trains with an optimizer step every batch (ultralytics: every 64 '
                            'images); docs/yolo.md says why.')
    p.add_argument('--cfg', required=True, help='model YAML: a shipped name (yolo11n-rfa-neck.yaml, '
                   'yolo11n-c3k2rfa.yaml, yolo11n-uniconvnet-a.yaml; any scale letter) or a path')
    common(p)
    p.add_argument('--epochs', type=int, default=100, help='epochs (default 100)')
    p.add_argument('--seed', type=int, default=0, help='random seed (default 0)')
    p.add_argument('--project', default='runs/yolo', help='output folder (default runs/yolo)')
    p.add_argument('--name', help='run name (default: the YAML name)')
    p.set_defaults(func=_cmd_train)

    p = yolo_sub.add_parser('eval', aliases=['val'], help='evaluate on the validation split: mAP50-95, mAP50 and COCO '
                            'AP by object size (also as `yolo val`, ultralytics\' verb)')
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument('--cfg', help='model YAML (random weights: a smoke test of the model)')
    group.add_argument('--weights', help='trained .pt (e.g. runs/yolo/NAME/weights/best.pt)')
    common(p)
    p.set_defaults(func=_cmd_eval)

    p = yolo_sub.add_parser('predict', help='detect objects in images: annotated copies and a COCO results file; '
                            '--slice for large images with small objects (SAHI)')
    p.add_argument('source', help='an image or a folder of images')
    p.add_argument('--weights', required=True, help='trained .pt (e.g. runs/yolo/NAME/weights/best.pt)')
    p.add_argument('--slice', type=int, help='predict overlapping SLICE x SLICE tiles at native resolution and merge '
                   'them (SAHI; pip install sahi); default: the whole image at --imgsz')
    p.add_argument('--overlap', type=float, default=0.2, help='fraction of a slice shared with its neighbour, in '
                   '[0, 1) (default 0.2)')
    p.add_argument('--imgsz', type=int, help='input size of plain prediction (default: the training size)')
    p.add_argument('--conf', type=float, default=0.25, help='lowest score kept (default 0.25)')
    p.add_argument('--device', default='cpu', help='cpu, 0 ... as ultralytics takes it (default cpu)')
    p.add_argument('--out', default='runs/yolo/predict', help='output folder (default runs/yolo/predict)')
    p.set_defaults(func=_cmd_predict)
