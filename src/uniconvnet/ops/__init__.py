"""Sampling operators. ``dcnv3`` is the single entry point; backends are chosen inside it."""
from .dcnv3 import dcnv3
from .dcnv3_cpu import dcnv3_cpu
from .dcnv3_torch import dcnv3_output_size, dcnv3_torch

__all__ = ['dcnv3', 'dcnv3_cpu', 'dcnv3_torch', 'dcnv3_output_size']
