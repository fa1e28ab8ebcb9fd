"""Model families. Importing this registers every UniConvNet variant with timm."""
from .uniconvnet import (
    VARIANTS,
    UniConvNet,
    UniConvNetBlock,
    UniConvNetStage,
    checkpoint_filter_fn,
    convert_official_key,
    infer_variant,
    unwrap_state_dict,
)

__all__ = ['VARIANTS', 'UniConvNet', 'UniConvNetBlock', 'UniConvNetStage', 'checkpoint_filter_fn',
           'convert_official_key', 'infer_variant', 'unwrap_state_dict']
