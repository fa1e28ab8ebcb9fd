"""Does the RFA help YOLO on small objects? yolo11n against its RFA variants, trained with the same budget.

Every model is trained from its YAML (no pretrained weights) on the built-in small-object dataset (400 train,
100 val canvases of 128x128 px, digits of 8-24 px: all small by COCO's definition), with the same epochs,
seed, image size and ultralytics defaults otherwise, then evaluated on the 100 validation canvases:

  mAP50-95, mAP50   ultralytics' validator
  AP, APs           pycocotools (uniconvnet.engine.coco_eval) on the model's predictions (conf 0.001, NMS IoU
                    0.7, 300 boxes, as ultralytics validates); APs: objects under 32x32 px
  params            of the trained model (before Conv+BN fusion)
  GFLOPs @640       2 x multiply-accumulates of one 640x640 image (torch.utils.flop_counter, as
                    `uniconvnet models` counts), plus UniConvNet's deformable sampling where there is one
  ONNX vs PyTorch   max |difference| of the raw outputs (boxes in px, class scores) of ultralytics' ONNX
                    export run by onnxruntime and of the PyTorch model, one random image at the training size
  CPU ms            median latency of the fused model at batch 1, at the training size and at 640, all models
                    timed round-robin in one process (the machine is shared: compare the ratios)

    PYTHONPATH=src python benchmarks/yolo_small_objects.py --epochs 20     # the README's table

``train min`` is the training time ultralytics logs (``results.csv``), without evaluation.
"""
import argparse
import csv
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List

os.environ.setdefault('YOLO_OFFLINE', '1')  # nothing to download: models from YAML, data generated locally

import torch  # noqa: E402

MODELS = ['yolo11n.yaml', 'yolo11n-rfa-neck.yaml', 'yolo11n-c3k2rfa.yaml', 'yolo11n-uniconvnet-a.yaml']
# not shipped, and not in the default run (--models ... yolo11n-uniconvnet-a-ls1.yaml): the shipped UniConvNet-A
# YAML with its layer scales starting at 1.0 instead of the paper's 1e-6
DERIVED = {'yolo11n-uniconvnet-a-ls1.yaml': ('yolo11-uniconvnet-a.yaml', {'ls_init_value': 1.0})}


def derived_yaml(name: str, folder: Path) -> str:
    """Write a benchmark-only variant of a shipped YAML (backbone keyword arguments changed); returns its path."""
    import yaml

    from uniconvnet.integrations.ultralytics import MODEL_YAML_DIR
    source, model_kwargs = DERIVED[name]
    d = yaml.safe_load((MODEL_YAML_DIR / source).read_text())
    row = d['backbone'][0]
    assert row[2] == 'UniConvNetBackbone' and len(row[3]) == 3  # [c2, variant, out_indices]
    row[3] += [None, 3, 0.0, model_kwargs]  # weights, in_chans, drop_path_rate, model_kwargs
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name.replace('yolo11n-', 'yolo11-')
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return str(folder / name)  # the scale letter picks the row of `scales`, as for the shipped files


def gflops_640(model: torch.nn.Module) -> float:
    from uniconvnet.analysis.complexity import measure_complexity
    return 2 * measure_complexity(model, (3, 640, 640)).total_macs / 1e9


def latencies_ms(models: Dict[str, torch.nn.Module], size: int, rounds: int, runs: int) -> Dict[str, float]:
    """Median ms per image at batch 1, models interleaved round by round so that load changes hit all alike."""
    x = torch.rand(1, 3, size, size)
    times: Dict[str, List[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            model(x)
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                for _ in range(runs):
                    model(x)
                times[name].append((time.perf_counter() - start) / runs * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def _same_budget(args_yaml: Path, budget: Dict[str, int]) -> bool:
    import yaml
    saved = yaml.safe_load(args_yaml.read_text()) if args_yaml.is_file() else {}
    return all(saved.get(k) == v for k, v in budget.items())


def training_minutes(results_csv: Path) -> float:
    """Training time from ultralytics' results.csv (cumulative seconds; the clock restarts on a resume)."""
    total = last = 0.0
    with results_csv.open() as f:
        for row in csv.DictReader(f):
            now = float(row['time'])
            if now < last:  # a resumed run: the time before the interruption is in `last`
                total += last
            last = now
    return (total + last) / 60


def onnx_max_abs_diff(weights: Path, size: int) -> float:
    """Export with ultralytics (ONNX, static shape) and compare onnxruntime with PyTorch on one random image."""
    import onnxruntime as ort
    from ultralytics import YOLO

    path = YOLO(str(weights)).export(format='onnx', imgsz=size, simplify=False, dynamic=False, device='cpu')
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        expected = YOLO(str(weights)).model.float().eval()(x)[0]
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    return float((torch.from_numpy(got) - expected).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=MODELS)
    parser.add_argument('--epochs', type=int, default=20)
    parser.add_argument('--imgsz', type=int, default=128)
    parser.add_argument('--batch', type=int, default=16)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--data-root', default=None, help='where the built-in dataset is written (default: cache)')
    parser.add_argument('--out', default='runs/bench_yolo_small_objects')
    parser.add_argument('--rounds', type=int, default=7, help='latency rounds (default 7)')
    parser.add_argument('--reuse', action='store_true',
                        help='reuse what an earlier run with the same budget finished, resume what it did not')
    args = parser.parse_args()

    from ultralytics import YOLO

    from uniconvnet.analysis.complexity import count_parameters
    from uniconvnet.integrations import ultralytics as uyolo

    uyolo.register()
    data = uyolo.builtin_data(args.data_root)
    out = Path(args.out).resolve()
    rows: List[Dict[str, Any]] = []
    trained: Dict[str, torch.nn.Module] = {}
    budget = dict(epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, seed=args.seed)
    for cfg in args.models:
        name = Path(cfg).stem
        saved = out / name / 'row.json'
        if args.reuse and saved.is_file() and json.loads(saved.read_text())['budget'] == budget:
            row = json.loads(saved.read_text())['row']  # trained and evaluated by an earlier run
        else:
            last = out / name / 'weights' / 'last.pt'
            if args.reuse and last.is_file() and _same_budget(out / name / 'args.yaml', budget):
                YOLO(str(last)).train(resume=True)  # an interrupted run: ultralytics goes on from its last epoch
            else:
                if cfg in DERIVED:
                    cfg = derived_yaml(cfg, out / 'derived_yaml')
                uyolo.train(cfg, data=data, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                            seed=args.seed, workers=0, val=False, project=out, name=name)
            best = out / name / 'weights' / 'best.pt'
            metrics = uyolo.val(best, data=data, imgsz=args.imgsz, batch=args.batch, workers=0,
                                coco_json=Path(data).parent / 'val' / 'annotations.json')
            model = YOLO(str(best)).model.float().eval()
            row = dict(model=name, **{k: metrics[k] for k in ('mAP50-95', 'mAP50', 'AP', 'AP50', 'APs')},
                       params=count_parameters(model), gflops_640=gflops_640(model),
                       onnx_max_abs_diff=onnx_max_abs_diff(best, args.imgsz))
            saved.write_text(json.dumps({'budget': budget, 'row': row}))
        row['train_minutes'] = training_minutes(out / name / 'results.csv')
        rows.append(row)
        trained[name] = YOLO(str(out / name / 'weights' / 'best.pt')).model.float().eval().fuse(verbose=False)
        print(json.dumps(row), flush=True)

    for size, runs in ((args.imgsz, 10), (640, 2)):
        for name, ms in latencies_ms(trained, size, args.rounds, runs).items():
            next(r for r in rows if r['model'] == name)[f'cpu_ms_{size}'] = ms
    base = rows[0]
    lines = [f'| model | mAP50-95 | mAP50 | COCO AP | APs (small) | params (M) | GFLOPs @640 | '
             f'CPU ms @{args.imgsz} | CPU ms @640 | train min | ONNX vs PyTorch |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append(
            f'| {r["model"]} | {r["mAP50-95"]:.3f} | {r["mAP50"]:.3f} | {r["AP"]:.3f} | {r["APs"]:.3f} | '
            f'{r["params"] / 1e6:.2f} | {r["gflops_640"]:.1f} | '
            f'{r[f"cpu_ms_{args.imgsz}"]:.1f} ({r[f"cpu_ms_{args.imgsz}"] / base[f"cpu_ms_{args.imgsz}"]:.2f}x) | '
            f'{r["cpu_ms_640"]:.0f} ({r["cpu_ms_640"] / base["cpu_ms_640"]:.2f}x) | {r["train_minutes"]:.1f} | '
            f'{r["onnx_max_abs_diff"]:.1e} |')
    table = '\n'.join(lines)
    budget = (f'budget: {args.epochs} epochs, imgsz {args.imgsz}, batch {args.batch}, seed {args.seed}, '
              f'ultralytics {__import__("ultralytics").__version__} defaults otherwise, CPU, '
              f'torch {torch.__version__}, {torch.get_num_threads()} threads')
    print(budget)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'results.json').write_text(json.dumps({'budget': budget, 'rows': rows}, indent=2))
    (out / 'results.md').write_text(budget + '\n\n' + table + '\n')


if __name__ == '__main__':
    main()
