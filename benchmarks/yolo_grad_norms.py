"""Which part of a YOLO model learns? Per-part gradient and update norms inside ultralytics' optimizer step.

Trains one model YAML on the built-in small-object data with ultralytics' own trainer, subclassed only to
measure around ``optimizer_step``: for each optimizer step, per part of the model (the backbone's timm stages,
the neck, the Detect head), the gradient norm before ultralytics' clipping (``clip_grad_norm_(max_norm=10)``
over the whole model), the clip factor, and the update norm relative to the parameter norm. It also records the
standard deviation of the features the backbone hands to the neck. One JSON line per step goes to ``--log``.

    PYTHONPATH=src python benchmarks/yolo_grad_norms.py --cfg yolo11n-uniconvnet-a.yaml --epochs 20 --stop-after 2
    PYTHONPATH=src python benchmarks/yolo_grad_norms.py --backbone convnext_atto --stop-after 2
    PYTHONPATH=src python benchmarks/yolo_grad_norms.py --smoke     # one epoch on 8 canvases of 64 px (CI)
"""
import argparse
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

os.environ.setdefault('YOLO_OFFLINE', '1')

import torch  # noqa: E402

# timm backbones put through the same UniConvNetBackbone row as UniConvNet-A: out_indices and their channels
TIMM_BACKBONES = {'convnext_atto': ([1, 2, 3], [80, 160, 320]), 'resnet18': ([2, 3, 4], [128, 256, 512]),
                  'uniconvnet_a': ([1, 2, 3], [48, 96, 192])}


def backbone_yaml(variant: str, folder: Path, extra_args: Optional[list] = None) -> str:
    """The shipped UniConvNet-A YAML with another timm backbone in its first row (Index rows adjusted)."""
    import yaml

    from uniconvnet.integrations.ultralytics import MODEL_YAML_DIR
    d = yaml.safe_load((MODEL_YAML_DIR / 'yolo11-uniconvnet-a.yaml').read_text())
    indices, channels = TIMM_BACKBONES[variant]
    d['backbone'][0][3] = [channels[-1], variant, indices] + list(extra_args or [])
    for k in range(3):
        d['backbone'][1 + k][3] = [channels[k], k]
    folder.mkdir(parents=True, exist_ok=True)
    stem = f'yolo11-bb-{variant}'
    (folder / f'{stem}.yaml').write_text(yaml.safe_dump(d, sort_keys=False))
    return str(folder / f'{stem.replace("yolo11-", "yolo11n-")}.yaml')


class OutputNorm(torch.nn.Module):
    """Experiment: a BatchNorm on each feature map a backbone returns."""

    def __init__(self, body: torch.nn.Module, channels: List[int]):
        super().__init__()
        self.body = body
        self.norms = torch.nn.ModuleList(torch.nn.BatchNorm2d(c) for c in channels)

    def forward(self, x):
        return [n(f) for n, f in zip(self.norms, self.body(x))]


def change_backbone(model: torch.nn.Module, change: str) -> None:
    """Experiments on the first layer's timm body: ``kaiming`` (PyTorch's default init of every conv/linear
    instead of timm's trunc_normal(0.02)), ``outbn`` (a BatchNorm on each output)."""
    backbone = model.model[0]
    if change == 'kaiming':
        for m in backbone.body.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)):
                m.reset_parameters()
    elif change == 'outbn':
        backbone.body = OutputNorm(backbone.body, backbone.channels)
    elif change in ('stemeps', 'trunkeps', 'alleps'):  # LayerNorms with eps 1 (near-linear while inputs are small)
        for name, m in backbone.body.named_modules():
            if isinstance(m, torch.nn.LayerNorm) and (change == 'alleps' or 'stem' in name
                                                      or (change == 'trunkeps' and 'downsample' in name)):
                m.eps = 1.0
    elif change in ('stembn', 'dsbn', 'trunkbn'):  # the stem's / downsampling / both LayerNorms -> BatchNorms
        for name, m in list(backbone.body.named_modules()):
            where = 'stem' if 'stem' in name else 'downsample' if 'downsample' in name else ''
            if isinstance(m, torch.nn.LayerNorm) and where and (change == 'trunkbn' or (where == 'stem') == (change == 'stembn')):
                parent = backbone.body.get_submodule(name.rpartition('.')[0]) if '.' in name else backbone.body
                setattr(parent, name.rpartition('.')[2], torch.nn.BatchNorm2d(m.normalized_shape[0]))
    elif change:
        raise ValueError(f'unknown change {change}')


def make_trainer(log_path: Path, change: str = '', clip: str = 'model'):
    from uniconvnet.integrations.ultralytics import DetectionTrainer

    class GradNormTrainer(DetectionTrainer):
        """Our detection trainer measuring each optimizer step (the step itself is untouched)."""

        def get_model(self, cfg=None, weights=None, verbose=True):
            model = super().get_model(cfg=cfg, weights=weights, verbose=verbose)
            change_backbone(model, change)
            return model

        def _setup_train(self):
            super()._setup_train()
            self._log = log_path.open('w')
            self._steps = 0
            self._feature_std: Dict[str, float] = {}
            model = self.model
            head_index = len(model.model) - 1
            self._part = {}
            for name, _ in model.named_parameters():
                sub = name.split('.')
                i = int(sub[1])
                self._part[name] = (('bb.' + sub[3]) if sub[2] == 'body' else f'head.{sub[2]}' if i == head_index
                                    else f'L{i:02d}')
            # the features the backbone hands to the neck: outputs of the layers the head-side rows read first
            first = model.model[0]
            if hasattr(first, 'body'):
                def hook(module, inputs, output):
                    if module.training:
                        self._feature_std = {f'P{3 + k}': float(o.detach().float().std()) for k, o in enumerate(output)}
                first.register_forward_hook(hook)

        def _watch_assigner(self):
            """Count the anchors ultralytics' task-aligned assigner makes positive, per pyramid level."""
            criterion = getattr(self.model, 'criterion', None)
            if criterion is None or getattr(criterion, '_watched', False):
                return
            assigner, counts = criterion.assigner, self._assigned
            original = assigner.forward

            def forward(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt):
                out = original(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt)
                fg, scores = out[3], out[2].amax(-1)
                sizes = [int(s) ** 2 for s in (self.args.imgsz // 8, self.args.imgsz // 16, self.args.imgsz // 32)]
                start = 0
                for level, size in zip(('P3', 'P4', 'P5'), sizes):
                    f = fg[:, start:start + size]
                    counts[level] = counts.get(level, 0) + int(f.sum())
                    counts[level + '_score'] = counts.get(level + '_score', 0.0) + float(scores[:, start:start + size][f].sum())
                    start += size
                counts['gt'] = counts.get('gt', 0) + int(mask_gt.sum())
                return out

            assigner.forward = forward
            criterion._watched = True

        def optimizer_step(self):
            if not hasattr(self, '_assigned'):
                self._assigned = {}
            self._watch_assigner()
            named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
            grad_sq: Dict[str, float] = defaultdict(float)
            for n, p in named:
                if p.grad is not None:
                    grad_sq[self._part[n]] += float(p.grad.detach().float().square().sum())
            total = sum(grad_sq.values()) ** 0.5
            clip = min(1.0, 10.0 / (total + 1e-6))
            # the size of a typical gradient element after the clip, next to Adam's eps (1e-8) and its sqrt(v)
            count: Dict[str, int] = defaultdict(int)
            for n, p in named:
                count[self._part[n]] += p.numel()
            grad_rms = {k: clip * (v / count[k]) ** 0.5 for k, v in grad_sq.items()}
            state = self.optimizer.state
            v_sq: Dict[str, float] = defaultdict(float)
            for n, p in named:
                if p in state and 'exp_avg_sq' in state[p]:
                    v_sq[self._part[n]] += float(state[p]['exp_avg_sq'].sum())
            adam_rms = {k: (v / count[k]) ** 0.25 for k, v in v_sq.items()}  # typical sqrt(v)
            before = {n: p.detach().clone() for n, p in named}
            if clip == 'model':
                super().optimizer_step()
            else:  # experiment: ultralytics' step without its clip over the whole model
                self.scaler.unscale_(self.optimizer)
                if clip == 'layer':  # each YOLO layer (and each backbone stage) clipped on its own
                    groups: Dict[str, list] = defaultdict(list)
                    for n, p in named:
                        groups[self._part[n]].append(p)
                    for params in groups.values():
                        torch.nn.utils.clip_grad_norm_(params, max_norm=10.0)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad()
                if self.ema:
                    self.ema.update(self.model)
            upd_sq: Dict[str, float] = defaultdict(float)
            par_sq: Dict[str, float] = defaultdict(float)
            for n, p in named:
                upd_sq[self._part[n]] += float((p.detach() - before[n]).square().sum())
                par_sq[self._part[n]] += float(before[n].square().sum())
            self._steps += 1
            record = dict(step=self._steps, epoch=self.epoch, total_grad=total, clip=clip, grad_rms=grad_rms,
                          adam_sqrt_v=adam_rms,
                          lr={g.get('param_group', str(k)): g['lr'] for k, g in enumerate(self.optimizer.param_groups)},
                          loss={k: float(v) for k, v in (self.tloss or {}).items()},
                          grad={k: v ** 0.5 for k, v in grad_sq.items()},
                          rel_update={k: (upd_sq[k] ** 0.5) / (par_sq[k] ** 0.5 + 1e-12) for k in par_sq},
                          feature_std=self._feature_std, assigned=dict(self._assigned))
            self._assigned.clear()
            self._log.write(json.dumps(record) + '\n')
            self._log.flush()

    return GradNormTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cfg', help='a model YAML (shipped name or path)')
    parser.add_argument('--backbone', choices=sorted(TIMM_BACKBONES), help='instead of --cfg: this timm backbone '
                        'in the UniConvNet-A YAML')
    parser.add_argument('--backbone-args', default='[]', help='JSON list appended to the backbone row')
    parser.add_argument('--epochs', type=int, default=20, help='schedule length (default 20)')
    parser.add_argument('--stop-after', type=int, default=0, help='stop after this many epochs (0: run all)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--val', action='store_true', help='validate every epoch')
    parser.add_argument('--out', default='runs/yolo_grad_norms')
    parser.add_argument('--name', default=None)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--clip', default='model', choices=['model', 'layer', 'none'],
                        help="gradient clipping: ultralytics' (model), per part (layer), none")
    parser.add_argument('--change', default='', choices=['', 'kaiming', 'outbn', 'stembn', 'dsbn', 'trunkbn', 'stemeps', 'trunkeps', 'alleps'], help='experiment on the backbone')
    parser.add_argument('--overrides', default='{}', help='JSON of ultralytics training arguments')
    parser.add_argument('--smoke', action='store_true', help='UniConvNet-A\'s YAML, one epoch on 8 canvases of 64 px '
                        '(CI: the script runs)')
    args = parser.parse_args()
    if args.smoke:
        args.cfg, args.backbone, args.epochs, args.out = 'yolo11n-uniconvnet-a.yaml', None, 1, f'{args.out}/smoke'
    elif not (args.cfg or args.backbone):
        parser.error('give --cfg or --backbone (or --smoke)')
    torch.set_num_threads(args.threads)

    from ultralytics import YOLO

    from uniconvnet.integrations import ultralytics as uyolo
    uyolo.register()
    out = Path(args.out).resolve()
    cfg = backbone_yaml(args.backbone, out / 'yaml', json.loads(args.backbone_args)) if args.backbone \
        else uyolo.model_yaml(args.cfg)
    name = args.name or Path(cfg).stem
    out.mkdir(parents=True, exist_ok=True)
    log = out / f'{name}.jsonl'
    trainer = make_trainer(log, args.change, args.clip)

    def stop_at_epoch_end(tr):
        if args.stop_after and tr.epoch + 1 >= args.stop_after:
            tr.stop = True

    yolo = YOLO(cfg)
    yolo.add_callback('on_train_epoch_end', stop_at_epoch_end)
    data = (uyolo.builtin_data(out / 'data', num_train=8, num_val=4, image_size=64, size_range=(8, 16),
                               max_objects=2) if args.smoke else uyolo.builtin_data())
    settings = dict(data=str(data), epochs=args.epochs, imgsz=64 if args.smoke else 128, batch=4 if args.smoke else 16,
                    device='cpu', seed=args.seed,
                    deterministic=True, pretrained=False, project=str(out), name=name, exist_ok=True, plots=False,
                    verbose=False, workers=0, val=args.val)
    settings.update(json.loads(args.overrides))
    yolo.train(trainer=trainer, **settings)
    summarize(log)


def summarize(log: Path) -> None:
    """Per epoch: mean loss, total gradient norm, clip factor, and per part gradient norm and relative update."""
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    by_epoch: Dict[int, List[dict]] = defaultdict(list)
    for r in rows:
        by_epoch[r['epoch']].append(r)
    for epoch, rs in sorted(by_epoch.items()):
        mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
        parts = sorted(rs[-1]['grad'])
        assigned: Dict[str, float] = defaultdict(float)
        for r in rs:
            for k, v in r.get('assigned', {}).items():
                assigned[k] += v
        fg = {lv: f"{int(assigned[lv])} (mean target {assigned[lv + '_score'] / max(assigned[lv], 1):.3f})"
              for lv in ('P3', 'P4', 'P5')}
        print(f'epoch {epoch}: positives per level {fg}, objects {int(assigned["gt"])}')
        print(f'epoch {epoch}: steps {len(rs)}, loss {rs[-1]["loss"]}, |g| {mean([r["total_grad"] for r in rs]):.3g}, '
              f'clip {mean([r["clip"] for r in rs]):.3g}, features {rs[-1]["feature_std"]}')
        for p in parts:
            print(f'    {p:>12}: |g| {mean([r["grad"].get(p, 0) for r in rs]):9.3g}   '
                  f'|dW|/|W| {mean([r["rel_update"].get(p, 0) for r in rs]):9.3g}   '
                  f'clipped g rms {mean([r.get("grad_rms", {}).get(p, 0) for r in rs]):9.3g}   '
                  f'Adam sqrt(v) {mean([r.get("adam_sqrt_v", {}).get(p, 0) for r in rs]):9.3g}')


if __name__ == '__main__':
    main()
