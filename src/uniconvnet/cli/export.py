"""``uniconvnet export``: ONNX, OpenVINO IR, TorchScript or ExportedProgram files (see :mod:`uniconvnet.export`)."""
import argparse


def add_parser(sub) -> None:
    p = sub.add_parser('export', help='export a model to ONNX, OpenVINO IR, TorchScript or an ExportedProgram',
                       description='ONNX and OpenVINO IR of a UniConvNet are its deployment form, with the '
                                   'deformable sampling as the runtime\'s own operator (DeformConv for '
                                   'onnxruntime, DeformableConvolution for OpenVINO) where it has one and '
                                   'GridSample otherwise; the image size is fixed unless --dynamic-size, the batch '
                                   'dynamic. OpenVINO IR needs pip install "uniconvnet[openvino]".')
    p.add_argument('--model', required=True, help='model name, e.g. uniconvnet_t (any timm name works)')
    p.add_argument('--checkpoint', help='weights to load: an official .pth or our .safetensors')
    p.add_argument('--format', default='onnx',
                   help='onnx (default), openvino (--out NAME.xml, weights in NAME.bin), torchscript or '
                        'exported-program')
    p.add_argument('--out', required=True, help='output file; its folder must exist')
    p.add_argument('--size', type=int, default=None, help='image size (default: the model\'s own)')
    p.add_argument('--opset', type=int, default=None,
                   help='ONNX opset, 16 to 20 (default: 20 with DeformConv, 17 with GridSample)')
    p.add_argument('--sampling', default='auto',
                   help='DCN sampling operator in ONNX and OpenVINO: auto (default: deformconv where the installed '
                        'runtime runs it), deformconv or gridsample (standard operators only)')
    p.add_argument('--dynamic-size', action='store_true',
                   help='ONNX/OpenVINO graphs that take any image size (slower to run than a fixed size)')
    p.add_argument('--no-fuse', action='store_true',
                   help='keep layer scales and norm affines unfolded (TorchScript, ExportedProgram; the ONNX and '
                        'OpenVINO forms always fold them)')
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_pretrained, exported_sampling
    out = export_pretrained(args.model, args.out, args.format, checkpoint=args.checkpoint, fuse=not args.no_fuse,
                            image_size=args.size, opset=args.opset, sampling=args.sampling,
                            dynamic_size=args.dynamic_size)
    print(f'wrote {out} ({args.format}, {args.model})')
    if args.format in ('onnx', 'openvino'):
        operator, reason = exported_sampling(out)
        if operator is not None:
            print(f'DCN sampling: {operator} ({reason})')
    return 0
