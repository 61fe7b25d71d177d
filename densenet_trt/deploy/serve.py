"""A built engine behind a real Triton Inference Server: PyTriton (``densenet-trt[serve]``)
runs tritonserver 2.51.0 with its Python backend, which hands each batch to this process.

The models served:

- ``NAME``: the tensor model. Input ``input``, float32 (C, H, W) per image; output ``logits``,
  float32 (classes,). Triton's dynamic batcher gathers requests up to the engine's largest
  batch; Triton itself refuses a wrong shape, dtype or a batch over ``max_batch_size``.
- ``NAME_image``, where the engine records its preprocessing: image files' bytes (JPEG, PNG,
  ...), preprocessed as the engine's manifest says. Input ``image``, BYTES, one element per image (1 to the engine's largest batch per
  request); output ``logits`` (images, classes). Each request runs on its own, so that an
  image that cannot be decoded fails only its own request.

A batch below the engine's smallest is padded up to it (the padding's logits are dropped).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..model.data import decode_image
from ..defaults import SERVE_HOST, SERVE_PORTS, SERVE_QUEUE_DELAY_US
from ..engine.load import Engine, load
from ..errors import DenseNetTRTError
from .predict import engine_preprocessing
from .triton import check_model_name

TENSOR_INPUT, IMAGE_INPUT, OUTPUT = "input", "image", "logits"
IMAGE_SUFFIX = "_image"
# PyTriton locks these endpoints behind a token by default; statistics is opened, for the load
# sweep's server-side queue and compute times. Model loading, shared memory, trace and logging
# stay locked.
OPEN_ENDPOINTS = ("statistics",)
INSTALL = 'pip install -e ".[serve]" (in its own environment: it needs numpy<2; docs/deploy.md)'


@dataclasses.dataclass(frozen=True)
class Served:
    """What a running server offers: the two models' names and where to reach them."""

    model: str
    image_model: str | None  # None: the engine records no preprocessing
    max_batch_size: int
    http_url: str
    grpc_url: str
    metrics_url: str

    def lines(self) -> list[str]:
        images = (f"model {self.image_model}: input {IMAGE_INPUT!r} image file bytes, output {OUTPUT!r}"
                  if self.image_model else "no image model: the engine records no preprocessing (build with "
                                           "--preprocess PRESET or --mean/--std)")
        return [f"model {self.model}: input {TENSOR_INPUT!r} float32, output {OUTPUT!r}, batches up to "
                f"{self.max_batch_size} (dynamic batching)", images,
                f"HTTP {self.http_url}, gRPC {self.grpc_url}, metrics {self.metrics_url}/metrics",
                f"ready: {self.http_url}/v2/models/{self.model}/ready; Ctrl-C or SIGTERM stops it"]


def python_library_path(environ: dict[str, str]) -> None:
    """Put this interpreter's libpython folder first on ``LD_LIBRARY_PATH`` in ``environ``, which
    tritonserver and its Python-backend stub inherit: the stub links ``libpython3.X.so``
    dynamically, and the system's copy of another patch release fails to load the model
    (PyTriton's install guide; PyTriton issue #51)."""
    libdir = sysconfig.get_config_var("LIBDIR")
    paths = [p for p in environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p != libdir]
    environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *paths])


# A Unix socket's path holds at most 107 bytes (sockaddr_un.sun_path); PyTriton names one per
# model instance "WORKSPACE/MODEL_0_0-server.sock" and, past that, crashes the server after it
# starts (measured: an engine folder's default name under ~/.cache/pytriton's workspace).
SOCKET_PATH_MAX = 107


def check_socket_path(workspace: Path, name: str) -> None:
    """Refuse, before the server starts, a model name too long for PyTriton's sockets in ``workspace``."""
    longest = len(str(workspace / f"{name}{IMAGE_SUFFIX}_0_0-server.sock").encode())
    if longest > SOCKET_PATH_MAX:
        allowed = len(name) - (longest - SOCKET_PATH_MAX)
        raise DenseNetTRTError(f"model_name={name!r} is too long for PyTriton's sockets in {workspace} "
                               f"(at most {allowed} characters there): give a shorter model_name")


def check_port_free(host: str, port: int, what: str) -> None:
    """Refuse a port something already listens on, before the server starts (tritonserver
    would fail after its start-up, with a page of log)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise DenseNetTRTError(f"cannot serve {what} on {host}:{port} ({e.strerror}); pass another "
                                   f"{what}_port=PORT") from None


def run_padded(engine: Engine, lock: threading.Lock, batch: np.ndarray) -> np.ndarray:
    """The engine's logits for ``batch``, padded up to the engine's smallest batch; one call at a
    time (a runtime need not take calls from two threads)."""
    n = len(batch)
    if n < engine.batch.min:
        batch = np.concatenate([batch, np.zeros((engine.batch.min - n, *batch.shape[1:]), batch.dtype)])
    with lock:
        return engine(np.ascontiguousarray(batch, np.float32))[:n].numpy()


def tensor_model(engine: Engine, lock: threading.Lock) -> Callable[..., dict[str, np.ndarray]]:
    """The tensor model's inference function: one dynamic batch of float32 images in."""
    from pytriton.decorators import batch

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        return {OUTPUT: run_padded(engine, lock, inputs[TENSOR_INPUT])}

    return infer


def image_model(engine: Engine, lock: threading.Lock) -> Callable[[list], list[dict[str, np.ndarray]]]:
    """The image model's inference function: each request's image bytes decoded, preprocessed
    and run as one batch."""
    steps = engine_preprocessing(engine)

    def infer(requests: list) -> list[dict[str, np.ndarray]]:
        responses = []
        for request in requests:
            images = np.asarray(request[IMAGE_INPUT]).reshape(-1)
            engine.batch.check(len(images), "images per request")
            batch = np.stack([decode_image(bytes(data), steps, f"image {i}") for i, data in enumerate(images)])
            responses.append({OUTPUT: run_padded(engine, lock, batch)})
        return responses

    return infer


def bind_models(triton: Any, engine: Engine, name: str, queue_delay_us: int) -> str | None:
    """Bind the tensor model ``name`` and, where the engine records its preprocessing, the image
    model ``name`` + ``IMAGE_SUFFIX`` to ``triton``; the image model's name, or None."""
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    shape = (engine.in_channels, engine.image_size, engine.image_size)
    classes = engine.manifest.model.num_classes
    lock = threading.Lock()
    triton.bind(model_name=name, infer_func=tensor_model(engine, lock),
                inputs=[Tensor(name=TENSOR_INPUT, dtype=np.float32, shape=shape)],
                outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(classes,))],
                config=ModelConfig(max_batch_size=engine.batch.max,
                                   batcher=DynamicBatcher(max_queue_delay_microseconds=queue_delay_us)),
                strict=True)
    if engine.manifest.preprocessing is None:
        return None
    triton.bind(model_name=name + IMAGE_SUFFIX, infer_func=image_model(engine, lock),
                inputs=[Tensor(name=IMAGE_INPUT, dtype=np.bytes_, shape=(-1,))],
                outputs=[Tensor(name=OUTPUT, dtype=np.float32, shape=(-1, classes))],
                config=ModelConfig(batching=False), strict=True)
    return name + IMAGE_SUFFIX


def _pytriton() -> Any:
    try:
        from pytriton import triton
    except ImportError as e:
        raise DenseNetTRTError(f"serve needs nvidia-pytriton ({e}): {INSTALL}") from None
    return triton


def serve(engine: str | os.PathLike | Engine, *, host: str = SERVE_HOST, http_port: int = SERVE_PORTS["http"],
          grpc_port: int = SERVE_PORTS["grpc"], metrics_port: int = SERVE_PORTS["metrics"],
          model_name: str | None = None, queue_delay_us: int = SERVE_QUEUE_DELAY_US,
          threads: int | None = None, ready: Callable[[Served], None] = lambda served: None) -> None:
    """Serve ``engine`` (a built engine's path, or one loaded) with a real Triton server on
    ``host`` until the server stops or a signal (KeyboardInterrupt) ends the wait; the server
    and its children are stopped on the way out. ``model_name``: default the engine folder's
    name; ``ready`` hears what is served once the models are ready."""
    if not isinstance(engine, Engine):
        engine = load(engine, threads=threads)
    name = check_model_name(model_name if model_name is not None else Path(engine.path).name)
    if not isinstance(queue_delay_us, int) or queue_delay_us < 0:
        raise DenseNetTRTError(f"queue_delay_us must be 0 or more microseconds, got {queue_delay_us!r}")
    ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
    for what, port in ports.items():
        check_port_free(host, port, what)
    triton = _pytriton()
    python_library_path(os.environ)
    folder = Path(tempfile.mkdtemp(prefix="densenet-trt-serve-"))  # short: PyTriton's sockets live in it
    try:
        workspace = folder / "w"
        check_socket_path(workspace, name)
        _run(triton, engine, name, queue_delay_us, ports, host, workspace, ready)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run(triton: Any, engine: Engine, name: str, queue_delay_us: int, ports: dict[str, int], host: str,
         workspace: Path, ready: Callable[[Served], None]) -> None:
    """Start the server in ``workspace``, say it is ``ready``, wait for the end, stop it."""
    http_port, grpc_port, metrics_port = ports["http"], ports["grpc"], ports["metrics"]
    config = triton.TritonConfig(http_address=host, http_port=http_port, grpc_address=host, grpc_port=grpc_port,
                                 metrics_address=host, metrics_port=metrics_port, allow_metrics=True)
    security = triton.TritonSecurityConfig(
        restricted_endpoints=[e for e in triton.DEFAULT_PROTECTED_ENDPOINTS if e not in OPEN_ENDPOINTS])
    server = triton.Triton(config=config, security_config=security, workspace=workspace)
    try:
        images = bind_models(server, engine, name, queue_delay_us)
        server.run()  # starts tritonserver and loads the models
        where = f"[{host}]" if ":" in host else host
        ready(Served(name, images, engine.batch.max, f"http://{where}:{http_port}",
                     f"grpc://{where}:{grpc_port}", f"http://{where}:{metrics_port}"))
        while server.is_alive():
            time.sleep(0.2)
    finally:
        server.stop()  # tritonserver, its Python-backend stubs and PyTriton's workspace
    raise DenseNetTRTError("the Triton server stopped on its own")
