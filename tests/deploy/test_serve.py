"""densenet-trt serve (a real Triton server through PyTriton) and loadtest; the served tests need
densenet-trt[serve] (its own environment: numpy<2, docs/deploy.md) and are skipped without it."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from densenet_trt import DenseNetTRTError
from densenet_trt.cli import main
from densenet_trt.model.data import decode_image, read_image
from densenet_trt.profiling.loadtest import SERVER, LoadRow, row, run_threads, statistics_delta
from densenet_trt.profiling.loadtest_report import LoadReport
from densenet_trt.deploy.serve import check_port_free, python_library_path
from densenet_trt.profiling.stats import summarize

ROOT = Path(__file__).resolve().parents[2]
NO_PYTRITON = "serve needs nvidia-pytriton: pip install -e '.[serve]' in its own environment (docs/deploy.md)"


def _has_pytriton() -> bool:
    try:
        import pytriton  # noqa: F401
    except ImportError:
        return False
    return True


needs_pytriton = pytest.mark.skipif(not _has_pytriton(), reason=NO_PYTRITON)


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def png_bytes(seed: int, size=(40, 50)) -> bytes:
    pixels = (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def test_python_library_path_puts_this_interpreters_libpython_first():
    libdir = sysconfig.get_config_var("LIBDIR")
    environ = {"LD_LIBRARY_PATH": f"/opt/x:{libdir}"}
    python_library_path(environ)
    assert environ["LD_LIBRARY_PATH"] == f"{libdir}:/opt/x"
    environ = {}
    python_library_path(environ)
    assert environ["LD_LIBRARY_PATH"] == libdir


def test_a_port_in_use_is_refused_before_the_server_starts():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(DenseNetTRTError, match=r"cannot serve grpc on 127.0.0.1:\d+ .*grpc_port=PORT"):
            check_port_free("127.0.0.1", s.getsockname()[1], "grpc")


def test_image_bytes_are_preprocessed_as_the_file_is(tmp_path):
    from densenet_trt.model.data import Preprocessing

    steps = Preprocessing(resize=36, crop=32, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2))
    data = png_bytes(0)
    (tmp_path / "a.png").write_bytes(data)
    assert np.array_equal(decode_image(data, steps), read_image(tmp_path / "a.png", steps))
    with pytest.raises(DenseNetTRTError, match="^image 3: cannot identify image file"):
        decode_image(b"garbage", steps, "image 3")
    with pytest.raises(DenseNetTRTError, match="no bytes"):
        decode_image(b"", steps)


def test_the_servers_queue_and_compute_times_come_from_the_statistics_delta():
    def stats(requests, inferences, executions, queue_ns, infer_ns, as_str=False):
        cast = str if as_str else int
        timing = {"queue": {"count": cast(requests), "ns": cast(queue_ns)},
                  "compute_input": {"count": cast(requests), "ns": cast(1_000_000 * requests)},
                  "compute_infer": {"count": cast(requests), "ns": cast(infer_ns)},
                  "compute_output": {"count": cast(requests), "ns": cast(0)},
                  "success": {"count": cast(requests), "ns": cast(0)}}
        return {"model_stats": [{"inference_count": cast(inferences), "execution_count": cast(executions),
                                 "inference_stats": timing}]}

    for as_str in (False, True):  # HTTP's numbers, gRPC's strings
        before = stats(10, 10, 10, 5_000_000, 50_000_000, as_str)
        after = stats(30, 50, 20, 45_000_000, 250_000_000, as_str)
        delta = statistics_delta(before, after)
        assert delta == pytest.approx({"queue_ms": 2.0, "compute_ms": 11.0, "server_batch": 4.0})
    assert statistics_delta(before, before) == {}


def test_run_threads_counts_failed_requests_and_a_step_with_none_done_is_an_error():
    calls = iter(range(10**6))

    def flaky():
        if next(calls) % 2:
            raise RuntimeError("traceback...\nthe reason")

    step = run_threads(flaky, 2, 0.2)
    assert step.failed > 0 and step.latencies_ms and step.error == "the reason"
    r = row(SERVER, 2, 4, step)
    assert r.images_per_s == pytest.approx(len(step.latencies_ms) * 4 / step.wall_s)
    with pytest.raises(DenseNetTRTError, match="every request failed .*the first: the reason"):
        row(SERVER, 2, 4, run_threads(lambda: flaky() or flaky(), 1, 0.05))


def test_loadtest_report_writers(tmp_path):
    rows = [LoadRow("server", c, 1, summarize([5.0 * c, 6.0 * c, 9.0 * c]), 100.0 * c, 10.0, 0, 0.5, 4.0, 1.5)
            for c in (1, 2)] + [LoadRow("in-process", 1, 1, summarize([4.0, 5.0]), 220.0, 10.0)]
    report = LoadReport("2026-12-04T08:00:00+00:00",
                        {"url": "grpc://127.0.0.1:8001", "model": "e", "batch": 1, "concurrencies": [1, 2],
                         "duration": 10.0, "warmup": 2.0, "seed": 0, "engine": "engines/e"},
                        {"cpu": "cpu", "cpu_count": 2, "python": "3.11", "densenet-trt": "0.1.0",
                         "tritonclient": "2.51.0"}, rows)
    table = report.table()
    assert "| server     | 2           | 3        | 0      | 200.0    | 12.00  |" in table
    assert "fewer than 100 requests" in table
    report.write_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["schema"] == "densenet-trt/loadtest" and data["rows"][0]["queue_ms"] == 0.5
    assert LoadReport.from_dict(data) == report
    report.write_csv(tmp_path / "r.csv")
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0].startswith("url,model,runner,concurrency,batch,images_per_s") and len(lines) == 4
    report.write_markdown(tmp_path / "r.md")
    assert (tmp_path / "r.md").read_text().startswith("# densenet-trt loadtest")
    pytest.importorskip("matplotlib")
    report.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_loadtest_refuses_a_url_it_cannot_use():
    result = CliRunner().invoke(main, ["loadtest", "ftp://x:1", "--model", "e"])
    assert result.exit_code == 1
    assert "server URL 'ftp://x:1' is not http://HOST:PORT or grpc://HOST:PORT" in result.output
    result = CliRunner().invoke(main, ["loadtest", "grpc://x:1", "--model", "e", "--concurrency", "0,2"])
    assert result.exit_code == 2 and "each concurrency must be 1 to 256" in result.output
    port = free_ports(1)[0]
    result = CliRunner().invoke(main, ["loadtest", f"grpc://127.0.0.1:{port}", "--model", "e", "--wait", "1"])
    assert result.exit_code == 1
    assert result.output.startswith(f"error: model 'e' on grpc://127.0.0.1:{port}: ")
    assert result.output.rstrip().endswith("waited 1 s")


def test_serve_refuses_in_one_line_before_starting_anything(shared_engine, tmp_path):
    engine = str(shared_engine.path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        used = str(s.getsockname()[1])
        for args, message in [([str(tmp_path / "gone")], "does not exist"),
                              ([engine, "--model-name", "a b"], "is not a Triton model name"),
                              ([engine, "--http-port", used], f"127.0.0.1:{used} (Address already in use); pass "
                                                              "another --http-port PORT")]:
            result = CliRunner().invoke(main, ["serve", *args])
            assert result.exit_code == 1 and len(result.output.splitlines()) == 1, result.output
            assert message in result.output


@pytest.mark.skipif(_has_pytriton(), reason="checks the error where nvidia-pytriton is absent")
def test_serve_without_pytriton_says_how_to_install_it(shared_engine):
    result = CliRunner().invoke(main, ["serve", str(shared_engine.path), "--http-port", str(free_ports(1)[0])])
    assert result.exit_code == 1
    assert 'serve needs nvidia-pytriton' in result.output and '.[serve]' in result.output


@needs_pytriton
def test_an_engine_without_preprocessing_is_served_without_the_image_model(shared_engine, edit_manifest, tmp_path):
    import shutil

    from densenet_trt import load
    from densenet_trt.deploy.serve import bind_models

    class Recorder:
        def __init__(self):
            self.bound = []

        def bind(self, **kwargs):
            self.bound.append((kwargs["model_name"], [t.name for t in kwargs["inputs"]], kwargs["config"]))

    folder = shutil.copytree(shared_engine.path, tmp_path / "e")
    for engine, expected in ((load(folder), "e_image"), (None, None)):
        if engine is None:
            edit_manifest(folder, lambda m: m.update(preprocessing=None))
            engine = load(folder)
        recorder = Recorder()
        assert bind_models(recorder, engine, "e", 100) == expected
        assert [(n, i) for n, i, _ in recorder.bound] == [("e", ["input"])] + ([("e_image", ["image"])] if expected else [])
        config = recorder.bound[0][2]
        assert (config.max_batch_size, config.batcher.max_queue_delay_microseconds) == (4, 100)


# ----------------------------------------------------------------------------------------------
# A real server (densenet-trt[serve])
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bc40(tmp_path_factory):
    """densenet_bc40_k12, ONNX Runtime fp32, batch 1:8:32, 32x32 (random weights)."""
    from densenet_trt.engine.build import build

    return build("densenet_bc40_k12", backend="onnxruntime", batch="1:8:32",
                 output=tmp_path_factory.mktemp("serve"), name=NAME)


# build's default name: one this long crashed the server from PyTriton's default workspace
# (its socket path passed the 107 bytes a Unix socket's path may have).
NAME = "densenet_bc40_k12-onnxruntime-fp32-b1-8-32-32"


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 180.0) -> None:
    """Until ``url``'s models NAME and NAME_image are ready (the server is ready before them)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            for model in (NAME, NAME + "_image"):
                with urllib.request.urlopen(f"{url}/v2/models/{model}/ready", timeout=2) as response:
                    assert response.status == 200
            return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the server at {url} was not ready in {timeout:g} s")


def served_logits(module, address: str, model: str, name: str, data: np.ndarray, datatype: str) -> np.ndarray:
    client = module.InferenceServerClient(address)
    tensor = module.InferInput(name, list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    return client.infer(model, [tensor]).as_numpy("logits")


@needs_pytriton
@pytest.mark.slow
def test_serve_answers_as_the_engine_refuses_bad_requests_and_stops_leaving_nothing(bc40, tmp_path):
    import psutil
    import tritonclient.grpc as grpc
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    from densenet_trt import load
    from densenet_trt.deploy.predict import engine_preprocessing

    http_port, grpc_port, metrics_port = free_ports(3)
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "densenet_trt", "serve", str(bc40.path), "--http-port", str(http_port),
         "--grpc-port", str(grpc_port), "--metrics-port", str(metrics_port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)  # a pipe could fill
    children = []
    try:
        wait_ready(f"http://127.0.0.1:{http_port}", process, log)
        children += psutil.Process(process.pid).children(recursive=True)
        assert any(p.name() == "tritonserver" for p in children)
        engine = load(bc40.path)
        x = np.random.default_rng(0).standard_normal((32, 3, 32, 32), dtype=np.float32)
        for n in (1, 3, 8, 32):
            expected = engine(x[:n]).numpy()
            for module, port in ((http, http_port), (grpc, grpc_port)):
                got = served_logits(module, f"127.0.0.1:{port}", NAME, "input", x[:n], "FP32")
                np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
        images = [png_bytes(seed) for seed in range(3)]
        steps = engine_preprocessing(engine)
        expected = engine(np.stack([decode_image(b, steps) for b in images])).numpy()
        got = served_logits(grpc, f"127.0.0.1:{grpc_port}", NAME + "_image", "image",
                            np.array(images, dtype=np.object_), "BYTES")
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)

        address = f"127.0.0.1:{http_port}"
        bad = [(NAME, "input", x[:2, :, :31], "FP32", "unexpected shape"),
               (NAME, "input", x[:2].astype(np.float64), "FP64", "expects 'FP32'"),
               (NAME, "input", np.concatenate([x, x[:1]]), "FP32", "batch-size must be <= 32"),
               (NAME + "_image", "image", np.array([b"garbage"], dtype=np.object_), "BYTES", "cannot identify image"),
               (NAME + "_image", "image", np.array(images * 11, dtype=np.object_), "BYTES", "images per request 33")]
        for model, name, data, datatype, reason in bad:
            with pytest.raises(InferenceServerException, match=reason):
                served_logits(http, address, model, name, data, datatype)
        np.testing.assert_allclose(served_logits(http, address, NAME, "input", x[:4], "FP32"),
                                   engine(x[:4]).numpy(), rtol=1e-5, atol=1e-5)  # still serving

        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            assert f'nv_inference_request_failure{{model="{NAME}"' in response.read().decode()
        result = CliRunner().invoke(main, ["loadtest", f"grpc://127.0.0.1:{grpc_port}", "--model", NAME,
                                           "--concurrency", "1,2", "--duration", "0.5", "--warmup-duration",
                                           "0.1", "--json", str(tmp_path / "load.json"), "--quiet"])
        assert result.exit_code == 0, result.output
        rows = json.loads((tmp_path / "load.json").read_text())["rows"]
        assert [(r["runner"], r["concurrency"]) for r in rows] == [("server", 1), ("server", 2)]
        assert all(r["latency_ms"]["count"] > 0 and r["compute_ms"] > 0 for r in rows)
    finally:
        if process.poll() is None:
            children += psutil.Process(process.pid).children(recursive=True)  # the ones started since
            process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    output = log.read_text(errors="replace")
    assert process.returncode == 0, output[-3000:]
    assert output.rstrip().endswith("stopped by SIGTERM")
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left running: {alive}"


def test_a_model_name_too_long_for_pytritons_sockets_is_refused_before_the_server_starts(tmp_path):
    from densenet_trt.deploy.serve import check_socket_path

    check_socket_path(Path("/tmp/densenet-trt-serve-abcdefgh/w"), NAME)
    with pytest.raises(DenseNetTRTError, match=r"model_name='x+' is too long for PyTriton's sockets .*at most \d+ characters"):
        check_socket_path(Path("/tmp/densenet-trt-serve-abcdefgh/w"), "x" * 80)
