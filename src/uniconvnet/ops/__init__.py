"""Sampling operators. ``dcnv3`` is the single entry point; backends are chosen inside it."""
from .dcnv3 import BACKEND_ENV_VAR, BACKENDS, dcnv3, select_backend
from .dcnv3_cpu import dcnv3_cpu
from .dcnv3_export import dcnv3_export
from .dcnv3_numba import dcnv3_numba
from .dcnv3_torch import dcnv3_output_size, dcnv3_torch
from .dcnv3_triton import dcnv3_triton, triton_is_available

__all__ = ['BACKENDS', 'BACKEND_ENV_VAR', 'dcnv3', 'dcnv3_cpu', 'dcnv3_export', 'dcnv3_numba', 'dcnv3_output_size',
           'dcnv3_torch', 'dcnv3_triton', 'select_backend', 'triton_is_available']
