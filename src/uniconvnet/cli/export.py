"""``uniconvnet export``: ONNX, OpenVINO IR, TorchScript or ExportedProgram files (see :mod:`uniconvnet.export`)."""
import argparse


def add_parser(sub) -> None:
    p = sub.add_parser('export', help='export a model to ONNX, OpenVINO IR, TorchScript or an ExportedProgram',
                       description='ONNX uses standard operators only (GridSample for the deformable sampling), '
                                   'with dynamic batch and image size; OpenVINO IR is converted from it '
                                   '(pip install "uniconvnet[openvino]").')
    p.add_argument('--model', required=True, help='model name, e.g. uniconvnet_t (any timm name works)')
    p.add_argument('--checkpoint', help='weights to load: an official .pth or our .safetensors')
    p.add_argument('--format', default='onnx',
                   help='onnx (default), openvino (--out NAME.xml, weights in NAME.bin), torchscript or '
                        'exported-program')
    p.add_argument('--out', required=True, help='output file; its folder must exist')
    p.add_argument('--size', type=int, default=None, help='example image size (default: the model\'s own)')
    p.add_argument('--opset', type=int, default=17, help='ONNX opset, 16 or later (default 17)')
    p.add_argument('--no-fuse', action='store_true', help='keep layer scales and norm affines unfolded')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_pretrained
    out = export_pretrained(args.model, args.out, args.format, checkpoint=args.checkpoint, fuse=not args.no_fuse,
                            image_size=args.size, opset=args.opset)
    print(f'wrote {out} ({args.format}, {args.model})')
    return 0
