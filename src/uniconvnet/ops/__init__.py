"""Sampling operators. ``dcnv3`` is the single entry point; its backends are registered in :mod:`.dcn`."""
from .._deprecation import warn_deprecated
from .dcn import BACKEND_ENV_VAR, BACKENDS, backend_names, dcnv3, describe_backends, select_backend
from .dcn.export_backend import dcnv3_export
from .dcn.gather_backend import dcnv3_gather
from .dcn.geometry import dcnv3_output_size
from .dcn.numba_backend import dcnv3_numba
from .dcn.torch_backend import dcnv3_torch
from .dcn.triton_backend import dcnv3_triton, triton_is_available

__all__ = ['BACKENDS', 'BACKEND_ENV_VAR', 'backend_names', 'dcnv3', 'dcnv3_export', 'dcnv3_gather', 'dcnv3_numba',
           'dcnv3_output_size', 'dcnv3_torch', 'dcnv3_triton', 'describe_backends', 'select_backend',
           'triton_is_available']


def __getattr__(name: str):
    if name == 'dcnv3_cpu':  # the gather backend's function before it had that name
        warn_deprecated('uniconvnet.ops.dcnv3_cpu', 'uniconvnet.ops.dcnv3_gather')
        return dcnv3_gather
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
