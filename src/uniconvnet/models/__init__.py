"""Model families and the model factory. Importing this registers every UniConvNet variant with timm."""
from .factory import check_model_name, create_model, is_uniconvnet, list_variants
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

__all__ = ['VARIANTS', 'UniConvNet', 'UniConvNetBlock', 'UniConvNetStage', 'check_model_name',
           'checkpoint_filter_fn', 'convert_official_key', 'create_model', 'infer_variant', 'is_uniconvnet',
           'list_variants', 'unwrap_state_dict']
