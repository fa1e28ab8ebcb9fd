"""Data: the built-in digits, ImageNet-style folders, transforms and loaders (timm underneath)."""
from .digits import DIGITS_CLASSES, DigitsDataset, export_digits_folder
from .folder import CorruptImageError, ImageFolderDataset, find_split_folder, scan_class_folders
from .loader import ShardSampler, build_loader
from .transforms import Augmentation, Preprocessing, build_transform

__all__ = ['Augmentation', 'CorruptImageError', 'DIGITS_CLASSES', 'DigitsDataset', 'ImageFolderDataset',
           'Preprocessing', 'ShardSampler', 'build_loader', 'build_transform', 'export_digits_folder',
           'find_split_folder', 'scan_class_folders']
