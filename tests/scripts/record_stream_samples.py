"""Record which samples each process sees, through the data path of `uniconvnet train`
(for tests/data/test_streaming.py).

Run under torchrun: for each --data, builds the datasets and loaders as training does (open_data_source,
DataSource.datasets, build_loader, set_epoch, len(loader) batches per epoch), with a transform that reads the
sample's id from its pixels, and writes OUT/rank{RANK}.json: {data: {"train": [[(id, label), ...] per epoch],
"val": [...], "batches": len(train loader)}}.
"""
import argparse
import json
from pathlib import Path

from uniconvnet.data import build_loader, open_data_source, set_epoch
from uniconvnet.engine import init_distributed


def sample_id(img) -> int:
    """The id the test wrote into the first pixel: red + 256 * green."""
    red, green, _ = img.getpixel((0, 0))
    return red + 256 * green


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument('--data', nargs='+', required=True)
    parser.add_argument('--out', required=True)
    parser.add_argument('--batch-size', type=int, default=3)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--epochs', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    ctx = init_distributed('cpu')
    record = {}
    try:
        for data in args.data:
            source = open_data_source(data)
            train_set, val_set = source.datasets(ctx.world_size, ctx.rank, args.batch_size, args.workers, args.seed)
            train_set.transform = val_set.transform = sample_id
            common = dict(world_size=ctx.world_size, rank=ctx.rank, seed=args.seed, num_workers=args.workers)
            train_loader = build_loader(train_set, args.batch_size, is_training=True, **common)
            val_loader = build_loader(val_set, 2 * args.batch_size, is_training=False, **common)
            epochs = []
            for epoch in range(args.epochs):  # as the trainer: set_epoch, then exactly len(loader) batches
                set_epoch(train_loader, epoch)
                batches = iter(train_loader)
                seen = []
                for _ in range(len(train_loader)):
                    ids, labels = next(batches)
                    seen += zip(ids.tolist(), labels.tolist())
                epochs.append(seen)
            val = [pair for ids, labels in val_loader for pair in zip(ids.tolist(), labels.tolist())]
            record[data] = {'train': epochs, 'val': val, 'batches': len(train_loader)}
        Path(args.out, f'rank{ctx.rank}.json').write_text(json.dumps(record))
    finally:
        ctx.close()


if __name__ == '__main__':
    main()
