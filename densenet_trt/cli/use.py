"""Commands that use engines: calibrate, profile, export-triton, predict."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import DenseNetTRTError
from ..choices import METHODS
from ..defaults import (CALIBRATION_BATCH_SIZE, CALIBRATION_METHOD, CALIBRATION_SAMPLES, CALIBRATIONS, PERCENTILE,
                        PROFILE_BATCH_SIZE, PROFILE_DURATION, PROFILE_GAP, PROFILE_LAYERS, PROFILE_MODE, PROFILE_VS,
                        PROFILE_WARMUP, RANDOM_SEED, SLOWEST_LAYERS, TOP_K, TRITON_INSTANCES)
from ..profiling.report import (MAX_GAP, MAX_REQUESTS, MAX_ROUNDS,
                      MAX_SECONDS, MODES)
from ..profiling.stats import TAIL_SAMPLES
from .options import (MODEL_OPTIONS, SEED, THREADS, Finite, OutputFile, command, deprecated, only_with,
                      preprocess_options, preprocessing_option, renamed, reporter)

@command()
@only_with(percentile=("method", "percentile"), max_float="max_drop", eval_samples="eval_data",
           show_sensitivity="eval_data")
@MODEL_OPTIONS[0]
@MODEL_OPTIONS[1]
@MODEL_OPTIONS[2]
@MODEL_OPTIONS[4]
@click.option("--data", type=str, default=None,
              help="Calibration images: a folder (recursive; JPEG, PNG, BMP, WebP; labels from "
                   "class subfolders), or a .npz with 'images' (N,C,H,W float32, preprocessed) and "
                   "optional 'labels', or a .npy of images.")
@click.option("--synthetic", is_flag=True,
              help="Random images instead of --data: a smoke test of the pipeline, not fit for accuracy.")
@click.option("--eval-data", type=str, default=None,
              help="Held-out data like --data; with labels, float and INT8 (fake-quantized) top-1 "
                   "are reported. Its first images also feed the build's accuracy gate.")
@preprocess_options
@click.option("--samples", type=click.IntRange(min=1), default=CALIBRATION_SAMPLES, show_default=True,
              help="Calibration images to use, drawn with --seed from the data.")
@click.option("--batch-size", type=click.IntRange(min=1), default=CALIBRATION_BATCH_SIZE, show_default=True,
              help="Images per calibration batch; the data must hold at least one batch.")
@click.option("--seed", type=SEED, default=RANDOM_SEED, show_default=True,
              help="Seed of the sample draw: the same data and seed give the same calibration.")
@click.option("--method", type=click.Choice(METHODS), default=CALIBRATION_METHOD,
              show_default=True,
              help="max: ModelOpt's INT8 default (per-channel weight and per-tensor activation "
                   "ranges from the largest values seen); entropy, percentile: activation ranges "
                   "cut from a histogram (KL divergence, --percentile); mse: ModelOpt's mse "
                   "algorithm (weight ranges searched for the least squared error).")
@click.option("--percentile", type=Finite(0, 100, min_open=True), default=PERCENTILE,
              show_default=True, help="--method percentile: the percentile of |activation| kept.")
@click.option("--exclude", multiple=True,
              help="Keep layers in float: a glob over layer names (features.denseblock1.*) or "
                   "stem / classifier; repeatable.")
@click.option("--max-drop", type=Finite(0, 100, max_open=True), default=None,
              help="Accuracy budget in points: keep the fewest layers in float, most sensitive "
                   "first, that hold --eval-data top-1 (agreement with float without labels) within "
                   "this of float, for ModelOpt's placement and ONNX Runtime's own alike (ModelOpt's "
                   "only with --no-onnxruntime); recorded as excluded, so every int8 build keeps them in float. "
                   "Exit 1, nothing written, where no set does.")
@click.option("--max-float", type=click.IntRange(min=0), default=None,
              help="--max-drop: at most this many layers in float [default: half the quantized layers].")
@click.option("--eval-samples", type=click.IntRange(min=1), default=None,
              help="Held-out images to use, drawn from --eval-data [default: all].")
@click.option("--sensitivity", "show_sensitivity", is_flag=True,
              help="Then rank every quantized layer on --eval-data (see `densenet-trt sensitivity`).")
@click.option("--onnxruntime/--no-onnxruntime", default=True, show_default=True,
              help="Also record ONNX Runtime's own activation ranges (its calibrator over the same "
                   "batches), which `build --backend onnxruntime --precision int8` places its Q/DQ "
                   "with. --no-onnxruntime saves that pass (about as long as ModelOpt's) where no "
                   "onnxruntime int8 engine will be built; every other backend still builds.")
@click.option("--skip-bad", is_flag=True,
              help="Image folders: leave out files that cannot be read (counted in the report) "
                   "instead of failing.")
@click.option("--output", "-o", default=CALIBRATIONS, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder the calibration folder goes in.")
@click.option("--name", default=None, help="Calibration folder name; default MODEL-METHOD-SIZE.")
@click.option("--force", is_flag=True, help="Replace an existing calibration folder of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON when done.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and the result.")
def calibrate(model_name, weights, num_classes, image_size, data, synthetic, eval_data, preprocess,
              mean, std, samples, batch_size, seed, method, percentile, exclude, max_drop, max_float,
              eval_samples, show_sensitivity, onnxruntime, skip_bad, output, name, force, as_json, quiet):
    """Calibrate a DenseNet for INT8 with NVIDIA ModelOpt and write a calibration folder
    (ModelOpt's quantizer state, gate inputs and a JSON report) for `build --precision int8`.

    \b
    Examples:
      densenet-trt calibrate --model densenet121 --weights imagenet --data val/ --samples 512
      densenet-trt calibrate --model densenet121 --data calib.npz --method percentile \\
          --percentile 99.9 --exclude stem --exclude classifier --eval-data holdout.npz
      densenet-trt calibrate --model densenet121 --data calib.npz --eval-data holdout.npz --max-drop 0.5
      densenet-trt build --precision int8 --calibration calibration/densenet121-max-224
    """
    from ..int8.calibration import layer_counts
    from ..int8.quantize import calibrate as run_calibration

    if (data is None) == (not synthetic):
        raise DenseNetTRTError("give --data PATH, or --synthetic for a smoke test (not both)")
    say = reporter(quiet)
    steps = preprocessing_option(model_name, image_size, preprocess, mean, std)
    cal = run_calibration(
        model_name, data="synthetic" if synthetic else data, weights=weights, num_classes=num_classes,
        image_size=image_size, preprocess=steps, samples=samples, eval_data=eval_data,
        skip_bad=skip_bad, seed=seed, method=method, percentile=percentile, exclude=exclude,
        batch_size=batch_size, max_drop=max_drop, max_float=max_float, eval_samples=eval_samples,
        onnxruntime=onnxruntime, output=output, name=name, force=force, progress=say,
    )
    r = cal.report
    if show_sensitivity:
        from ..int8.sensitivity import sensitivity

        result = sensitivity(cal.path, eval_data, eval_samples=eval_samples, seed=seed + 1, batch_size=batch_size,
                             preprocess=steps, progress=say)
        click.echo(result.table(), nl=False)
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    ev = r["evaluation"]
    accuracy = ""
    if ev and "float_top1" in ev:
        accuracy = (f"; top-1 on {ev['data']['samples']} held-out: float {ev['float_top1']:.2%}, "
                    f"int8 {ev['int8_top1']:.2%}")
    elif ev:
        accuracy = f"; float and int8 agree on {ev['agreement']:.2%} of {ev['data']['samples']} held-out"
    if r["budget"] is not None:
        accuracy += (f"; within --max-drop {r['budget']['max_drop']:g}: {r['budget']['drop']:.2f} points below "
                     f"float, kept in float: {', '.join(r['budget']['floating']) or 'nothing'}")
    fit = "" if r["data"]["fit_for_accuracy"] else " (synthetic data: not fit for accuracy)"
    click.echo(f"calibration {cal.path}: {r['method']} on {r['data']['used']} samples, "
               f"{layer_counts(r['layers']['quantized'], r['layers']['float'], r['amax'])}{accuracy}{fit}")


def _batch_list(ctx, param, value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers (e.g. 1,8,32)")
    if any(n < 1 for n in sizes):
        raise click.BadParameter(f"{value!r}: batch sizes must be 1 or more")
    return sizes


@command()
@click.argument("engines", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--batch-size", default=None, callback=_batch_list,
              help="Images per request, as in predict and calibrate; several comma-separated (e.g. "
                   "1,8,32) are measured one after another; a size outside an engine's range is "
                   f"skipped with the reason. [default: {PROFILE_BATCH_SIZE}]")
@click.option("--mode", type=click.Choice(MODES), default=PROFILE_MODE, show_default=True,
              help="latency: one request at a time, each after --gap, eager and the engines in "
                   "the same rounds; throughput: measured images completed / wall time, back to "
                   "back and with --requests in flight where the runtime offers it.")
@click.option("--duration", type=float, default=None,
              help=f"Seconds of each measurement (finite, up to {MAX_SECONDS:g}) [default: "
                   f"{PROFILE_DURATION:g}, as trtexec's --duration]; p99 needs {TAIL_SAMPLES} samples or "
                   "more to be a tail (the report says when it is not).")
@click.option("--iterations", type=int, default=None,
              help=f"Or a count per measurement, 1 to {MAX_ROUNDS:,}: rounds (latency), requests (throughput).")
@click.option("--warmup-iterations", type=int, default=None,
              help=f"Warm-up rounds before each measurement, not timed, 0 to {MAX_ROUNDS:,} [default: "
                   f"{PROFILE_WARMUP}].")
@click.option("--warmup-duration", type=float, default=None,
              help=f"Or warm up for this many seconds (finite, up to {MAX_SECONDS:g}; trtexec's "
                   "--warmUp is milliseconds).")
@click.option("--requests", type=click.IntRange(1, MAX_REQUESTS), default=None,
              help="Throughput: requests in flight (OpenVINO infer requests, ONNX Runtime sessions, "
                   "CUDA streams) [default: the runtime's choice].")
@click.option("--layers", type=click.IntRange(min=0), default=PROFILE_LAYERS, is_flag=False, flag_value=SLOWEST_LAYERS,
              help=f"Also list each engine's N slowest layers (--layers alone: {SLOWEST_LAYERS}), where the runtime "
                   "times layers (OpenVINO, ONNX Runtime).")
@click.option("--vs", type=click.Choice(["eager", "none"]), default=PROFILE_VS, show_default=True,
              help="eager: time eager PyTorch (same model and weights; fp32 and the engine's "
                   "precision where PyTorch can run it; on CUDA with cudnn.benchmark): one baseline "
                   "per model, input size and device, in the same rounds as its engines.")
@click.option("--threads", type=THREADS, default=None, help="CPU threads for PyTorch and the engines [default: torch's].")
@click.option("--cuda-graphs", is_flag=True, help="GPU engines: replay the engine from a CUDA graph (latency).")
@click.option("--include-transfers", is_flag=True,
              help="GPU engines: also time host-to-device and device-to-host copies, apart (latency).")
@click.option("--gap", type=float, default=PROFILE_GAP, show_default=True,
              help=f"Seconds of pause before each timed CPU call in latency mode, 0 to {MAX_GAP:g} "
                   "(PyTorch's OpenMP threads spin after eager runs and would slow the next call).")
@click.option("--json", "json_path", type=OutputFile(), default=None,
              help="Write the results as JSON (schema in densenet_trt/profiling/report.py); - for standard "
                   "output (the tables then go to stderr), as for each report file.")
@click.option("--csv", "csv_path", type=OutputFile(), default=None,
              help="Write one CSV row per engine, batch, mode and runner.")
@click.option("--markdown", "md_path", type=OutputFile(), default=None,
              help="Write the tables with their conditions as Markdown.")
@click.option("--plot", "png_path", type=OutputFile(), default=None,
              help="Write a PNG: latency percentiles and throughput against batch size.")
@click.option("--force", is_flag=True, help="Overwrite report files that exist (never the engines profiled).")
@click.option("--quiet", "-q", is_flag=True, help="No progress; print only the tables.")
@deprecated("--batch", "--batch-size")
@deprecated("--warmup", "--warmup-iterations", type=int)
@deprecated("--warmup-time", "--warmup-duration", type=float)
def profile(engines, batch_size, mode, duration, iterations, warmup_iterations, warmup_duration, requests, layers, vs, threads,
            cuda_graphs, include_transfers, gap, json_path, csv_path, md_path, png_path, force, quiet,
            deprecated_batch, deprecated_warmup, deprecated_warmup_time):
    """Measure latency and throughput of built engines against eager PyTorch, as trtexec and
    OpenVINO's benchmark_app do: latency one request at a time, throughput measured (images
    completed / wall time) back to back and with several requests in flight. Each engine's
    speedup is the median of its paired ratios against one eager baseline for the whole run.

    \b
    Option names are shared with the other commands: --batch-size is images per request (as in
    predict and calibrate; build's --batch is an engine's range); --iterations and --duration
    count rounds and seconds, and --warmup-iterations / --warmup-duration the same for warm-up.
    Old spellings --batch, --warmup and --warmup-time still work, with a warning.

    \b
    Examples:
      densenet-trt profile engines/densenet121-onnxruntime-fp32-b1-8-32-224 --batch-size 1,8,32
      densenet-trt profile engines/a engines/b --duration 30 --json out.json --plot out.png
      densenet-trt profile engines/a --mode throughput --requests 4 --duration 10
      densenet-trt profile engines/a --mode latency --iterations 200 --layers 15
    """
    from ..profiling.profiler import profile as run_profile

    batch_size = renamed(batch_size, _batch_list(None, None, deprecated_batch), "--batch-size", "--batch") or [
        PROFILE_BATCH_SIZE]
    warmup_iterations = renamed(warmup_iterations, deprecated_warmup, "--warmup-iterations", "--warmup")
    warmup_duration = renamed(warmup_duration, deprecated_warmup_time, "--warmup-duration", "--warmup-time")
    outputs = {path: writer for path, writer in ((json_path, "write_json"), (csv_path, "write_csv"),
                                                  (md_path, "write_markdown"), (png_path, "plot")) if path}
    report = run_profile(
        engines, batch_size=batch_size, iterations=iterations, duration=duration,
        warmup_iterations=warmup_iterations, warmup_duration=warmup_duration, vs=vs, threads=threads, cuda_graphs=cuda_graphs, mode=mode, requests=requests,
        layers=layers, include_transfers=include_transfers, gap=gap, progress=reporter(quiet),
    )
    click.echo(report.table(), err="-" in outputs)
    for path, writer in outputs.items():
        getattr(report, writer)(path, force)
        reporter(quiet)(f"wrote {path}")


@command("export-triton")
@click.argument("engine", type=click.Path(path_type=Path))
@click.option("--repository", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Triton model repository folder (created if missing).")
@click.option("--model-name", default=None,
              help="Model name in the repository (letters, digits, '_', '-', '.'; not starting with "
                   "'.' or '-'); default: the engine folder's name.")
@click.option("--max-batch-size", type=int, default=None,
              help="Largest batch Triton forms; default and limit: the engine's max batch. (OpenVINO "
                   "configs have max_batch_size 0 and a -1 batch dimension: see docs/deploy.md.)")
@click.option("--instances", type=click.IntRange(min=1), default=TRITON_INSTANCES, show_default=True,
              help="Model instances (instance_group count).")
@click.option("--dynamic-batching/--no-dynamic-batching", default=True, show_default=True,
              help="Let Triton combine requests into batches (not for OpenVINO, whose configs have "
                   "max_batch_size 0).")
@click.option("--force", is_flag=True, help="Replace an existing model of the same name.")
def export_triton(engine, repository, model_name, max_batch_size, instances, dynamic_batching, force):
    """Write a built engine into a Triton Inference Server model repository: the model file in
    NAME/1/ and NAME/config.pbtxt (tensorrt_plan for a raw TensorRT plan, onnxruntime_onnx,
    openvino, pytorch_libtorch for TorchScript), with the engine's thread count; it prints the
    precision and parameters Triton runs it with, and refuses an engine Triton's runner cannot run
    at its precision (OpenVINO fp32 and int8: the openvino backend pins only bf16).

    \b
    Example:
      densenet-trt export-triton engines/densenet121-onnxruntime-fp32-b1-8-32-224 \\
          --repository models --model-name densenet121 --instances 2
    """
    from ..engine.manifest import read_manifest
    from ..deploy.triton import export_triton as run_export, summary

    folder = run_export(engine, repository, model_name=model_name, max_batch_size=max_batch_size,
                        instances=instances, dynamic_batching=dynamic_batching, force=force)
    click.echo(f"wrote {folder} (config.pbtxt, 1/): {summary(read_manifest(engine)[1])}")


@command()
@click.argument("engine", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Class names, one per line (UTF-8), as many as the engine's classes; default: the "
                   "names the engine's manifest records (an engine built from torchvision's ImageNet "
                   "checkpoint has its 1000), else class indices.")
@click.option("--top-k", type=int, default=TOP_K, show_default=True, help="Classes to show per image.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list: per image its path and top classes (index, label, probability).")
@click.option("--batch-size", type=int, default=None,
              help="Images per run, within the engine's batch range; default: its opt batch.")
def predict(engine, images, labels, top_k, as_json, batch_size):
    """Classify image files (or folders of them, searched recursively) with a built engine: each
    image preprocessed as the engine's manifest says, and its top classes with their softmax
    probabilities. An engine built from random weights is said to be so (a warning; in --json,
    "random_weights": true per image): its classes mean nothing.

    \b
    Example:
      densenet-trt predict engines/densenet121-onnxruntime-fp32-b1-8-32-224 cat.jpg photos/ --top-k 3
    """
    from ..deploy.predict import classify

    predictions = classify(engine, images, top_k=top_k, labels=labels, batch_size=batch_size,
                           progress=reporter(as_json))
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in predictions], indent=2))
        return
    names = [[g.label if g.label is not None else str(g.index) for g in p.top] for p in predictions]
    width = max(len(name) for row in names for name in row)
    for prediction, row in zip(predictions, names):
        click.echo(str(prediction.path))
        for name, guess in zip(row, prediction.top):
            click.echo(f"  {name:<{width}}  {guess.probability:7.2%}")
