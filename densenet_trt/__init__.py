"""densenet-trt: DenseNets compiled into fast, verified inference engines.

The public API; the command line ``densenet-trt`` is a thin layer over these functions.
"""

from .build import Artifact, build, verify_engine
from .engine import Engine, load
from .errors import DenseNetTRTError
from .export import export_model
from .models import DenseNet, count_macs, count_parameters
from .registry import ModelInfo, create_model, get_model_info, list_models, preset_stats
from .profiler import profile
from .spec import BatchRange
from .version import __version__
from .weights import load_weights, read_state_dict


__all__ = [
    "Artifact",
    "BatchRange",
    "DenseNet",
    "DenseNetTRTError",
    "Engine",
    "ModelInfo",
    "__version__",
    "build",
    "count_macs",
    "count_parameters",
    "create_model",
    "export_model",
    "get_model_info",
    "list_models",
    "load",
    "load_weights",
    "preset_stats",
    "profile",
    "read_state_dict",
    "verify_engine",
]
