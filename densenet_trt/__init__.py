"""densenet-trt: DenseNets compiled into fast, verified inference engines.

The public API; the command line ``densenet-trt`` is a thin layer over these functions. Each
name is imported on first use (PEP 562), so ``import densenet_trt`` loads no torch: the command
line checks its working folder and takes Ctrl-C before torch loads (``console.py``).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING

from .errors import DenseNetTRTError
from .version import __version__

# Each public name -> the module that defines it.
_API = {
    "Artifact": "build",
    "build": "build",
    "verify_engine": "build",
    "compile": "compiling",
    "Engine": "engine",
    "load": "engine",
    "export_model": "export",
    "DenseNet": "models",
    "count_macs": "models",
    "count_parameters": "models",
    "ModelInfo": "registry",
    "create_model": "registry",
    "get_model_info": "registry",
    "list_models": "registry",
    "preset_stats": "registry",
    "profile": "profiler",
    "BatchRange": "spec",
    "load_weights": "weights",
    "read_state_dict": "weights",
}

if TYPE_CHECKING:
    from .build import Artifact, build, verify_engine
    from .compiling import compile
    from .engine import Engine, load
    from .export import export_model
    from .models import DenseNet, count_macs, count_parameters
    from .profiler import profile
    from .registry import ModelInfo, create_model, get_model_info, list_models, preset_stats
    from .spec import BatchRange
    from .weights import load_weights, read_state_dict

__all__ = sorted([*_API, "DenseNetTRTError", "__version__"])


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


class _Package(types.ModuleType):
    """Keeps ``densenet_trt.build`` the function once the module ``densenet_trt.build`` is
    imported (Python then sets the package's attribute of that name to the module)."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and _API.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
