"""Sampling operators. ``dcnv3`` is the single entry point; backends are chosen inside it."""
from .dcn import BACKEND_ENV_VAR, BACKENDS, dcnv3, select_backend
from .dcn.gather_backend import dcnv3_cpu
from .dcn.export_backend import dcnv3_export
from .dcn.numba_backend import dcnv3_numba
from .dcn.geometry import dcnv3_output_size, dcnv3_torch
from .dcn.triton_backend import dcnv3_triton, triton_is_available

__all__ = ['BACKENDS', 'BACKEND_ENV_VAR', 'dcnv3', 'dcnv3_cpu', 'dcnv3_export', 'dcnv3_numba', 'dcnv3_output_size',
           'dcnv3_torch', 'dcnv3_triton', 'select_backend', 'triton_is_available']
