"""densenet-trt: DenseNets compiled into fast, verified inference engines.

The public API; the command line ``densenet-trt`` is a thin layer over these functions. Each
name is imported on first use (PEP 562), so ``import densenet_trt`` loads no torch: the command
line checks its working folder and takes Ctrl-C before torch loads (``console.py``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import DenseNetTRTError
from .version import __version__

# Each public name -> the module that defines it.
_API = {
    "classify": "deploy.predict",
    "Artifact": "engine.build",
    "build": "engine.build",
    "verify_engine": "engine.build",
    "compile": "engine.compiling",
    "export_model": "engine.export",
    "Engine": "engine.load",
    "load": "engine.load",
    "EngineManifest": "engine.manifest",
    "BatchRange": "engine.spec",
    "Precision": "engine.spec",
    "calibrate": "int8.quantize",
    "Preprocessing": "model.data",
    "image_files": "model.data",
    "load_data": "model.data",
    "read_image": "model.data",
    "DenseNet": "model.network",
    "count_macs": "model.network",
    "count_parameters": "model.network",
    "ModelInfo": "model.registry",
    "create_model": "model.registry",
    "get_model_info": "model.registry",
    "list_models": "model.registry",
    "preset_stats": "model.registry",
    "load_weights": "model.weights",
    "read_state_dict": "model.weights",
    "profile": "profiling.profiler",
}

if TYPE_CHECKING:
    from .deploy.predict import classify
    from .engine.build import Artifact, build, verify_engine
    from .engine.compiling import compile
    from .engine.export import export_model
    from .engine.load import Engine, load
    from .engine.manifest import EngineManifest
    from .engine.spec import BatchRange, Precision
    from .int8.quantize import calibrate
    from .model.data import image_files, load_data, Preprocessing, read_image
    from .model.network import count_macs, count_parameters, DenseNet
    from .model.registry import create_model, get_model_info, list_models, ModelInfo, preset_stats
    from .model.weights import load_weights, read_state_dict
    from .profiling.profiler import profile

__all__ = sorted([*_API, "DenseNetTRTError", "__version__"])


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})

