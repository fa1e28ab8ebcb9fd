"""Model families and the model factory. Importing this registers every UniConvNet variant with timm."""
from .factory import check_model_name, create_model, is_uniconvnet, list_variants
from .uniconvnet import (
    TRUNK_NORMS,
    VARIANTS,
    UniConvNet,
    UniConvNetBlock,
    UniConvNetStage,
    checkpoint_filter_fn,
    convert_official_key,
    infer_variant,
    trunk_norm_of,
    unwrap_state_dict,
)

__all__ = ['TRUNK_NORMS', 'VARIANTS', 'UniConvNet', 'UniConvNetBlock', 'UniConvNetStage', 'check_model_name',
           'checkpoint_filter_fn', 'convert_official_key', 'create_model', 'infer_variant', 'is_uniconvnet',
           'list_variants', 'trunk_norm_of', 'unwrap_state_dict']
