"""Data: the built-in digits, ImageNet-style folders, shards and Hugging Face datasets, transforms and loaders
(timm underneath)."""
from .digits import DIGITS_CLASSES, DigitsDataset, export_digits_folder
from .folder import CorruptImageError, ImageFolderDataset, find_split_folder, scan_class_folders
from .loader import ShardSampler, build_loader, set_epoch
from .streaming import DataSource, open_data_source, write_webdataset_shards
from .transforms import Augmentation, Preprocessing, build_transform

__all__ = ['Augmentation', 'CorruptImageError', 'DIGITS_CLASSES', 'DataSource', 'DigitsDataset', 'ImageFolderDataset',
           'Preprocessing', 'ShardSampler', 'build_loader', 'build_transform', 'export_digits_folder',
           'find_split_folder', 'open_data_source', 'scan_class_folders', 'set_epoch', 'write_webdataset_shards']
