"""densenet-trt: DenseNets compiled into fast, verified inference engines.

The public API; the command line ``densenet-trt`` is a thin layer over these functions.
"""

from .errors import DenseNetTRTError
from .export import export_model
from .models import (
    DenseNet,
    ModelInfo,
    count_macs,
    count_parameters,
    create_model,
    get_model_info,
    list_models,
    preset_stats,
)
from .spec import BatchRange
from .weights import load_weights, read_state_dict

__version__ = "0.1.0"

__all__ = [
    "BatchRange",
    "DenseNet",
    "DenseNetTRTError",
    "ModelInfo",
    "__version__",
    "count_macs",
    "count_parameters",
    "create_model",
    "export_model",
    "get_model_info",
    "list_models",
    "load_weights",
    "preset_stats",
    "read_state_dict",
]
