"""An export-triton repository's contract, exercised by a real Triton server: the model file in
``1/`` served through PyTriton's tritonserver with the names, dims, data types and batch limit
read back from ``config.pbtxt``. Needs densenet-trt[serve] (docs/deploy.md); skipped without it.

PyTriton's tritonserver has only the Python backend, so the model file is run by its own
runtime inside the served function: what is checked is the repository's contract with the
server (what Triton accepts, batches and refuses by the config), not Triton's ONNX Runtime or
OpenVINO backend.
"""

import os

import numpy as np
import pytest

from test_serve import free_ports, needs_pytriton

pytestmark = [needs_pytriton, pytest.mark.slow]


def onnx_runner(folder, input_name):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {input_name: x})[0]


def openvino_runner(folder, input_name):
    import openvino

    core = openvino.Core()
    # bf16, as the config's HINT_BF16 asks Triton's openvino backend (export-triton refuses fp32
    # and int8 openvino engines: that backend cannot pin another precision).
    compiled = core.compile_model(core.read_model(folder / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"})
    return lambda x: compiled({input_name: x})[compiled.output(0)]


RUNNERS = {"onnxruntime": onnx_runner, "openvino": openvino_runner}
PRECISIONS = {"onnxruntime": "fp32", "openvino": "bf16"}  # what export-triton exports of each


def bind_from_config(triton, config, run):
    """Bind the model ``config`` describes: its name, input and output names, dims and types,
    max_batch_size (0: no batching, the batch a -1 of the dims) and dynamic batching."""
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from tritonclient.grpc import model_config_pb2 as mc

    (inp,), (out,) = config.input, config.output
    dtypes = {mc.TYPE_FP32: np.float32, mc.TYPE_FP16: np.float16}
    batching = config.max_batch_size > 0

    def infer_batch(**inputs):
        return {out.name: run(inputs[inp.name])}

    def infer_requests(requests):
        return [{out.name: run(request[inp.name])} for request in requests]

    model_config = ModelConfig(batching=batching, max_batch_size=config.max_batch_size,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=
                                                      config.dynamic_batching.max_queue_delay_microseconds))
    triton.bind(model_name=config.name, infer_func=batch(infer_batch) if batching else infer_requests,
                inputs=[Tensor(name=inp.name, dtype=dtypes[inp.data_type], shape=tuple(inp.dims))],
                outputs=[Tensor(name=out.name, dtype=dtypes[out.data_type], shape=tuple(out.dims))],
                config=model_config, strict=True)
    return inp, out


@pytest.mark.parametrize("backend", sorted(RUNNERS))
def test_an_exported_repository_is_served_as_its_config_says(backend, small_engine, tmp_path, monkeypatch):
    import tritonclient.http as http
    from google.protobuf import text_format
    from pytriton.triton import Triton, TritonConfig
    from tritonclient.grpc import model_config_pb2 as mc
    from tritonclient.utils import InferenceServerException

    from densenet_trt import load
    from densenet_trt.backends import BACKENDS
    from densenet_trt.deploy.serve import python_library_path
    from densenet_trt.deploy.triton import export_triton

    if not BACKENDS[backend].available().ok:
        pytest.skip(BACKENDS[backend].available().message(backend))
    if PRECISIONS[backend] not in BACKENDS[backend].precisions("cpu"):
        pytest.skip(f"{backend} {PRECISIONS[backend]} does not run on this CPU")
    artifact = small_engine(backend, PRECISIONS[backend])
    folder = export_triton(artifact.path, tmp_path / "repo", model_name="densenet")
    config = text_format.Parse((folder / "config.pbtxt").read_text(), mc.ModelConfig())
    environ = dict(os.environ)
    python_library_path(environ)
    monkeypatch.setenv("LD_LIBRARY_PATH", environ["LD_LIBRARY_PATH"])
    http_port, grpc_port, metrics_port = free_ports(3)
    triton = Triton(config=TritonConfig(http_address="127.0.0.1", http_port=http_port, grpc_address="127.0.0.1",
                                        grpc_port=grpc_port, metrics_port=metrics_port))
    try:
        inp, out = bind_from_config(triton, config, RUNNERS[backend](folder / "1", config.input[0].name))
        triton.run()
        engine = load(artifact.path)
        limit = config.max_batch_size or engine.batch.max
        client = http.InferenceServerClient(f"127.0.0.1:{http_port}")
        x = np.random.default_rng(0).standard_normal((limit + 1, 3, 32, 32), dtype=np.float32)
        for n in sorted({1, 3, limit}):
            tensor = http.InferInput(inp.name, [n, 3, 32, 32], "FP32")
            tensor.set_data_from_numpy(x[:n])
            got = client.infer(config.name, [tensor]).as_numpy(out.name)
            # the same runtime at the same precision; bf16's threads may sum in another order
            tolerance = 1e-4 if PRECISIONS[backend] == "fp32" else 2e-2
            np.testing.assert_allclose(got, engine(x[:n]).numpy(), rtol=tolerance, atol=tolerance)
        if config.max_batch_size:
            tensor = http.InferInput(inp.name, [limit + 1, 3, 32, 32], "FP32")
            tensor.set_data_from_numpy(x)
            with pytest.raises(InferenceServerException, match=f"batch-size must be <= {limit}"):
                client.infer(config.name, [tensor])
    finally:
        triton.stop()
