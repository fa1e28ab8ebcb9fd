"""Does the RFA help YOLO on small objects? yolo11n and its RFA variants, several seeds, the spread shown.

Every model is trained from its YAML (no pretrained weights) with the same budget and seed list, ultralytics'
defaults otherwise except for the model's ``uyolo.training_recipe`` (a UniConvNet backbone from scratch takes an
optimizer step every batch, as ``uyolo.train`` and ``uniconvnet yolo train`` do by default), validated every
epoch (the learning curve) and evaluated on the final (last-epoch) weights:

  mAP50-95, mAP50   ultralytics' validator
  APs               pycocotools on the same predictions (conf 0.001, NMS IoU 0.7, 300 boxes): objects < 32x32 px
  params, GFLOPs    of the model (GFLOPs: 2 x multiply-accumulates of one 640 x 640 image, torch's flop counter,
                    plus UniConvNet's deformable sampling), once per model
  CPU ms            median latency of the fused model at batch 1 at the setting's image size, all models timed
                    round-robin in one process at the end (the machine is shared: compare the ratios)

Settings (``--settings``):

  standard  the built-in set: 400 train / 100 val canvases of 128 px, digits of 8-24 px, 20 epochs, imgsz 128
  standard_nbs16
            the same with an optimizer step every batch (nominal batch 16) for every model: UniConvNet-A's
            recipe given to all, the equal-recipe comparison (its runs are those of ``standard``)
  tiny      tiny objects only: 240 train / 80 val canvases of 128 px with up to 12 digits of 4-12 px each (most
            below 2 P3 cells, the smallest below one), 15 epochs, imgsz 128, and a nominal batch of 16 instead of
            ultralytics' 64 (an optimizer step per batch: ~15 steps per epoch instead of ~4 on 240 images);
            0.45x the images x epochs of ``standard``, so that it fits beside it

Resumable: a run whose ``row.json`` exists with the same budget is skipped; an interrupted run resumes from its
``last.pt``. One training process at a time, one thread (``OMP_NUM_THREADS=1``; ultralytics trains on the CPU
with one thread on this 2-core machine anyway).

    PYTHONPATH=src python benchmarks/yolo_small_objects.py                 # everything, then the tables
    PYTHONPATH=src python benchmarks/yolo_small_objects.py --report-only   # tables from the runs so far

Tables and rows go to ``benchmarks/results/yolo_small_objects.{md,json}``.
"""
import argparse
import csv
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

os.environ.setdefault('YOLO_OFFLINE', '1')  # nothing to download: models from YAML, data generated locally

import torch  # noqa: E402

MODELS = ['yolo11n.yaml', 'yolo11n-c3k2rfa.yaml', 'yolo11n-rfa-neck.yaml', 'yolo11n-uniconvnet-a.yaml']
SEEDS = [0, 1, 2]
SETTINGS: Dict[str, Dict[str, Any]] = {
    'standard': dict(data={}, imgsz=128, epochs=20, batch=16),
    'standard_nbs16': dict(data={}, imgsz=128, epochs=20, batch=16, overrides=dict(nbs=16)),
    'tiny': dict(data=dict(num_train=240, num_val=80, image_size=128, size_range=[4, 12], max_objects=12),
                 imgsz=128, epochs=15, batch=16, overrides=dict(nbs=16)),
}
RESULTS = Path(__file__).resolve().parent / 'results' / 'yolo_small_objects'
CURVE_EPOCHS = (5, 10, 15, 20)


def data_yaml(setting: str, out: Path) -> Path:
    from uniconvnet.integrations import ultralytics as uyolo
    kwargs = SETTINGS[setting]['data']
    return uyolo.builtin_data(None if not kwargs else out / 'data' / setting, **kwargs)


def budget_of(setting: str, seed: int, cfg: str) -> Dict[str, Any]:
    """What a run was trained with: the setting, the seed and the model's training recipe (uyolo.train applies
    it; the setting's overrides win over it)."""
    from uniconvnet.integrations import ultralytics as uyolo
    s = SETTINGS[setting]
    return dict(setting=setting, seed=seed, **s, recipe=uyolo.training_recipe(cfg, s['batch']))


def read_curve(results_csv: Path) -> Dict[str, Any]:
    """Per-epoch mAP50 and mAP50-95 (ultralytics' validation of the EMA weights) and training minutes."""
    epochs, map50, map5095, total, last = [], [], [], 0.0, 0.0
    with results_csv.open() as f:
        for row in csv.DictReader(f):
            row = {k.strip(): v for k, v in row.items()}
            now = float(row['time'])
            if now < last:  # a resumed run: the clock restarted
                total += last
            last = now
            epochs.append(int(float(row['epoch'])))
            map50.append(float(row['metrics/mAP50(B)']))
            map5095.append(float(row['metrics/mAP50-95(B)']))
    return dict(epochs=epochs, map50=map50, map5095=map5095, train_minutes=(total + last) / 60)


def run_one(cfg: str, setting: str, seed: int, out: Path) -> Dict[str, Any]:
    """Train (or resume, or reuse) one model at one seed; returns its row."""
    from ultralytics import YOLO

    from uniconvnet.integrations import ultralytics as uyolo

    name = Path(cfg).stem
    run_dir = out / setting / name / f'seed{seed}'
    saved = run_dir / 'row.json'
    budget = budget_of(setting, seed, cfg)
    if saved.is_file() and json.loads(saved.read_text())['budget'] == budget:
        return json.loads(saved.read_text())['row']
    data = data_yaml(setting, out)
    s = SETTINGS[setting]
    last = run_dir / 'weights' / 'last.pt'
    started = time.time()
    if last.is_file() and (run_dir / 'args.yaml').is_file():
        YOLO(str(last)).train(resume=True, trainer=uyolo.DetectionTrainer)
    else:
        uyolo.train(cfg, data=data, epochs=s['epochs'], imgsz=s['imgsz'], batch=s['batch'], seed=seed, workers=0,
                    val=True, project=run_dir.parent, name=run_dir.name, **s.get('overrides', {}))
    metrics = uyolo.val(last, data=data, imgsz=s['imgsz'], batch=s['batch'], workers=0,
                        coco_json=Path(data).parent / 'val' / 'annotations.json')
    row = dict(model=name, seed=seed, **{k: metrics[k] for k in ('mAP50-95', 'mAP50', 'AP', 'APs')},
               curve=read_curve(run_dir / 'results.csv'), wall_minutes=(time.time() - started) / 60)
    saved.write_text(json.dumps({'budget': budget, 'row': row}))
    return row


def gflops_640(model: torch.nn.Module) -> float:
    from uniconvnet.speed.complexity import measure_complexity
    return 2 * measure_complexity(model, (3, 640, 640)).total_macs / 1e9


def latencies_ms(models: Dict[str, torch.nn.Module], size: int, rounds: int = 7, runs: int = 10) -> Dict[str, float]:
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


def model_costs(setting: str, out: Path, names: List[str]) -> Dict[str, Dict[str, float]]:
    """Params, GFLOPs @640 and CPU latency at the setting's size of the seed-0 weights (cached)."""
    from ultralytics import YOLO

    from uniconvnet.speed.complexity import count_parameters

    cache = out / setting / 'costs.json'
    costs = json.loads(cache.read_text()) if cache.is_file() else {}
    if all(n in costs for n in names):
        return costs
    models = {}
    for name in names:
        weights = next((out / setting / name).glob('seed*/weights/last.pt'))
        models[name] = YOLO(str(weights)).model.float().eval().fuse(verbose=False)
    size = SETTINGS[setting]['imgsz']
    for name, ms in latencies_ms(models, size).items():
        costs[name] = dict(params=count_parameters(models[name]), gflops_640=gflops_640(models[name]), cpu_ms=ms)
    cache.write_text(json.dumps(costs))
    return costs


def _stats(values: List[float]) -> Dict[str, float]:
    return dict(mean=statistics.mean(values), sd=statistics.stdev(values) if len(values) > 1 else 0.0,
                min=min(values), max=max(values), n=len(values))


def _beyond_spread(a: Dict[str, float], b: Dict[str, float]) -> str:
    """'yes' when the seed ranges do not overlap (every seed of one above every seed of the other)."""
    if a['n'] < 2 or b['n'] < 2:
        return 'n/a'
    return 'yes' if a['min'] > b['max'] or a['max'] < b['min'] else 'no'


def _arguments(arguments: Dict[str, Any]) -> str:
    """'nbs=16, lr0=0.01' for a dict of training arguments."""
    return ', '.join(f'{k}={v}' for k, v in arguments.items())


def _for_every_model(setting: Dict[str, Any]) -> str:
    """', nbs=16 for every model' for a setting's overrides ('' without)."""
    overrides = setting.get('overrides', {})
    return f', {_arguments(overrides)} for every model' if overrides else ''


def _recipes(recipes: Dict[str, Dict[str, Any]]) -> str:
    """The recipes the runs were trained with, e.g. 'yolo11n-uniconvnet-a: nbs=16; others: none'."""
    named = [f'{n}: {_arguments(r)}' for n, r in recipes.items() if r]
    return '; '.join(named + ['others: none'] if named else ['none'])


def report(out: Path, settings: List[str], models: List[str]) -> str:
    """Markdown tables of everything finished so far; also writes the JSON of all rows."""
    from ultralytics import __version__ as ultralytics_version

    sections, everything = [], {}
    for setting in settings:
        names = [Path(m).stem for m in models]
        saved = {n: [json.loads(p.read_text()) for p in sorted((out / setting / n).glob('seed*/row.json'))]
                 for n in names}
        rows = {n: [run['row'] for run in runs] for n, runs in saved.items()}
        names = [n for n in names if rows[n]]
        recipes = {n: saved[n][0]['budget']['recipe'] for n in names}
        if not names:
            continue
        costs = model_costs(setting, out, names)
        s = SETTINGS[setting]
        base = names[0]
        summary = {n: {k: _stats([r[k] for r in rows[n]]) for k in ('mAP50-95', 'mAP50', 'APs')} for n in names}
        lines = [f'**{setting}**: {s["data"] or "built-in data (400/100 canvases of 128 px, 8-24 px digits)"}, '
                 f'{s["epochs"]} epochs, imgsz {s["imgsz"]}, batch {s["batch"]}{_for_every_model(s)}, '
                 f'final-epoch weights, '
                 f'ultralytics {ultralytics_version} defaults and each model\'s training_recipe otherwise '
                 f'({_recipes(recipes)}); mean +- sd over seeds; "beyond spread": '
                 f'the seed ranges of the model and of {base} do not overlap.', '',
                 f'| model | seeds | mAP50-95 | mAP50 | APs | mAP50-95 vs {base} | beyond spread | params (M) | '
                 f'GFLOPs @640 | CPU ms @{s["imgsz"]} | train min |',
                 '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
        for n in names:
            m, c = summary[n], costs[n]
            delta = m['mAP50-95']['mean'] - summary[base]['mAP50-95']['mean']
            lines.append(
                f'| {n} | {m["mAP50"]["n"]} | {m["mAP50-95"]["mean"]:.3f} +- {m["mAP50-95"]["sd"]:.3f} | '
                f'{m["mAP50"]["mean"]:.3f} +- {m["mAP50"]["sd"]:.3f} | {m["APs"]["mean"]:.3f} +- {m["APs"]["sd"]:.3f} | '
                f'{delta:+.3f} | {"-" if n == base else _beyond_spread(m["mAP50-95"], summary[base]["mAP50-95"])} | '
                f'{c["params"] / 1e6:.2f} | {c["gflops_640"]:.1f} | {c["cpu_ms"]:.1f} '
                f'({c["cpu_ms"] / costs[base]["cpu_ms"]:.2f}x) | '
                f'{statistics.mean(r["curve"]["train_minutes"] for r in rows[n]):.1f} |')
        curve_epochs = [e for e in CURVE_EPOCHS if e <= s['epochs']]
        lines += ['', f'mAP50 during training (ultralytics\' per-epoch validation, mean over seeds), epochs '
                      f'{", ".join(map(str, curve_epochs))}:', '',
                  '| model | ' + ' | '.join(f'epoch {e}' for e in curve_epochs) + ' |',
                  '|---|' + '---:|' * len(curve_epochs)]
        for n in names:
            cells = [statistics.mean(r['curve']['map50'][e - 1] for r in rows[n]) for e in curve_epochs]
            lines.append(f'| {n} | ' + ' | '.join(f'{v:.3f}' for v in cells) + ' |')
        sections.append('\n'.join(lines))
        everything[setting] = dict(budget={k: v for k, v in s.items()}, summary=summary, costs=costs, runs=rows)
    header = (f'CPU, torch {torch.__version__}, 1 thread per run; files: runs under the --out folder, this table '
              f'from benchmarks/yolo_small_objects.py')
    text = header + '\n\n' + '\n\n'.join(sections) + '\n'
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix('.md').write_text(text)
    RESULTS.with_suffix('.json').write_text(json.dumps(everything, indent=1))
    return text


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', default=MODELS)
    parser.add_argument('--seeds', nargs='+', type=int, default=SEEDS)
    parser.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument('--out', default='runs/bench_yolo_small_objects', help='runs folder (resumable)')
    parser.add_argument('--report-only', action='store_true', help='only write the tables of finished runs')
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out).resolve()
    if not args.report_only:
        for setting in args.settings:  # the standard setting first, seed by seed: partial results stay balanced
            for seed in args.seeds:
                for cfg in args.models:
                    row = run_one(cfg, setting, seed, out)
                    print(json.dumps({k: v for k, v in row.items() if k != 'curve'}), flush=True)
    print(report(out, args.settings, args.models))


if __name__ == '__main__':
    main()
