"""Commands that put engines behind a server: serve, loadtest."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from ..defaults import (LOADTEST_CONCURRENCIES, LOADTEST_DURATION, LOADTEST_WAIT, LOADTEST_WARMUP, SERVE_HOST,
                        SERVE_PORTS, SERVE_QUEUE_DELAY_US)
from ..profiling.loadtest import MAX_CONCURRENCY
from ..profiling.report import MAX_SECONDS
from .options import THREADS, Finite, OutputFile, command, reporter

PORT = click.IntRange(1, 65535)


@command()
@click.argument("engine", type=click.Path(path_type=Path))
@click.option("--host", default=SERVE_HOST, show_default=True,
              help="Address to listen on for HTTP, gRPC and metrics (0.0.0.0: every interface).")
@click.option("--http-port", type=PORT, default=SERVE_PORTS["http"], show_default=True)
@click.option("--grpc-port", type=PORT, default=SERVE_PORTS["grpc"], show_default=True)
@click.option("--metrics-port", type=PORT, default=SERVE_PORTS["metrics"], show_default=True,
              help="Prometheus metrics at /metrics.")
@click.option("--model-name", default=None,
              help="The tensor model's name (the image model's is NAME_image) [default: the engine folder's name].")
@click.option("--queue-delay-us", type=click.IntRange(min=0), default=SERVE_QUEUE_DELAY_US, show_default=True,
              help="Dynamic batching: microseconds a request may wait for others to batch with.")
@click.option("--threads", type=THREADS, default=None, help="CPU threads of the engine [default: the engine's].")
def serve(engine, host, http_port, grpc_port, metrics_port, model_name, queue_delay_us, threads):
    """Serve a built engine with a real Triton Inference Server (PyTriton, installed with
    densenet-trt[serve]), over HTTP and gRPC, until Ctrl-C or SIGTERM.

    \b
    Two models: NAME takes float32 (N, C, H, W) tensors, batched dynamically up to the engine's
    largest batch; NAME_image takes image files' bytes and preprocesses them as the engine's
    manifest says. Both answer logits.

    \b
    Examples:
      densenet-trt serve engines/densenet121-onnxruntime-fp32-b1-8-32-224
      densenet-trt serve engines/x --http-port 9000 --grpc-port 9001 --metrics-port 9002
    """
    from ..deploy.serve import serve as run_server

    def ready(served):
        click.echo(f"serving {engine} with Triton (PyTriton):", err=True)
        for line in served.lines():
            click.echo(f"  {line}", err=True)

    try:
        run_server(engine, host=host, http_port=http_port, grpc_port=grpc_port, metrics_port=metrics_port,
                   model_name=model_name, queue_delay_us=queue_delay_us, threads=threads, ready=ready)
    except KeyboardInterrupt as e:  # the way a server is stopped: the server has stopped by now
        click.echo(f"stopped by {getattr(e, 'signum', signal.SIGINT).name}", err=True)


def _concurrencies(ctx, param, value: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers (e.g. 1,2,4,8)")
    if any(not 1 <= n <= MAX_CONCURRENCY for n in numbers):
        raise click.BadParameter(f"{value!r}: each concurrency must be 1 to {MAX_CONCURRENCY}")
    return numbers


@command()
@click.argument("url")
@click.option("--model", "model", required=True, help="The served model's name (serve's: the engine folder's name).")
@click.option("--engine", type=click.Path(path_type=Path), default=None,
              help="Also run this engine in-process, in the same run, at the same concurrencies.")
@click.option("--concurrency", "concurrencies", default=",".join(map(str, LOADTEST_CONCURRENCIES)),
              show_default=True, callback=_concurrencies, help="Requests in flight, a step each.")
@click.option("--batch-size", "batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Images per request.")
@click.option("--duration", type=Finite(0, MAX_SECONDS, min_open=True), default=LOADTEST_DURATION,
              show_default=True, help="Seconds of each step.")
@click.option("--warmup-duration", "warmup", type=Finite(0, MAX_SECONDS), default=LOADTEST_WARMUP,
              show_default=True, help="Seconds of warm-up before each step, not timed.")
@click.option("--threads", type=THREADS, default=None, help="CPU threads of the in-process engine [default: the engine's].")
@click.option("--wait", type=Finite(0, MAX_SECONDS), default=LOADTEST_WAIT, show_default=True,
              help="Seconds to wait for the server and the model to be ready (a server just started loads it).")
@click.option("--json", "json_path", type=OutputFile(), default=None,
              help="Write the results as JSON (schema in densenet_trt/profiling/loadtest_report.py); - for standard output.")
@click.option("--csv", "csv_path", type=OutputFile(), default=None, help="Write one CSV row per runner and concurrency.")
@click.option("--markdown", "md_path", type=OutputFile(), default=None, help="Write the table with its conditions as Markdown.")
@click.option("--plot", "png_path", type=OutputFile(), default=None,
              help="Write a PNG: latency percentiles and throughput against concurrency.")
@click.option("--force", is_flag=True, help="Overwrite report files that exist.")
@click.option("--quiet", "-q", is_flag=True, help="No progress; print only the table.")
def loadtest(url, model, engine, concurrencies, batch, duration, warmup, threads, wait, json_path, csv_path,
             md_path, png_path, force, quiet):
    """Drive a model a Triton server serves (densenet-trt serve, or any Triton server with a
    one-input FP32 model) at a sweep of concurrencies: throughput, p50/p90/p99 latency with the
    request counts, and the server's queue and compute times from Triton's statistics; with
    --engine, the same engine in-process in the same run.

    \b
    Examples:
      densenet-trt loadtest grpc://127.0.0.1:8001 --model e --engine engines/e
      densenet-trt loadtest http://127.0.0.1:8000 --model e --concurrency 1,2,4,8,16 --plot load.png
    """
    from ..profiling.loadtest_report import loadtest as run_loadtest

    outputs = {path: writer for path, writer in ((json_path, "write_json"), (csv_path, "write_csv"),
                                                  (md_path, "write_markdown"), (png_path, "plot")) if path}
    report = run_loadtest(url, model, engine, concurrencies=concurrencies, batch=batch, duration=duration,
                          warmup=warmup, threads=threads, wait=wait, progress=reporter(quiet))
    click.echo(report.table(), err="-" in outputs)
    for path, writer in outputs.items():
        getattr(report, writer)(path, force)
        reporter(quiet)(f"wrote {path}")
