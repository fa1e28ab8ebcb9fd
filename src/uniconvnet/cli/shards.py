"""``uniconvnet shards``: an ImageNet-style folder as webdataset shards, for ``uniconvnet train --data wds/OUT``."""
import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser('shards', help='turn an image folder into webdataset shards (train with --data wds/OUT)',
                       description='Write SRC/train and SRC/val (CLASS/*.jpg) as webdataset shards in OUT: '
                                   'train-000000.tar ..., validation-000000.tar ... (samples shuffled across classes, '
                                   'shard lengths within one of each other) and _info.json (timm\'s shard index with '
                                   'the class names). With a multiple of (training processes x --workers) train shards '
                                   '(--num-shards), an epoch leaves out less than a batch per DataLoader worker '
                                   '(none when the batch divides a worker\'s share); no image is seen twice.')
    p.add_argument('src', help='ImageNet-style folder: SRC/train/CLASS/*.jpg and SRC/val/CLASS/*.jpg')
    p.add_argument('out', help='output folder for the shards and _info.json')
    p.add_argument('--shard-size', type=int, default=1000, help='most images per shard (default 1000)')
    p.add_argument('--num-shards', type=int, help='number of train shards (default: as --shard-size gives); '
                                                      'a multiple of processes x DataLoader workers')
    p.add_argument('--seed', type=int, default=0, help='seed of the shuffle across classes (default 0)')
    p.set_defaults(func=_cmd_shards)


def _cmd_shards(args: argparse.Namespace) -> int:
    from ..data.streaming import write_webdataset_shards
    write_webdataset_shards(args.src, args.out, shard_size=args.shard_size, num_shards=args.num_shards,
                            seed=args.seed)
    return 0
