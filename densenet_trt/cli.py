"""The ``densenet-trt`` command line: a thin layer over the library."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import click

from .version import __version__
from .errors import DenseNetTRTError


class _Group(click.Group):
    """Prints the package's errors as one line and exits 1; ``--debug`` shows the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DenseNetTRTError as e:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(1)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    click.echo(f"warning: {message}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="densenet-trt")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
def main(debug: bool) -> None:
    """Turn a DenseNet into a fast, verified inference engine.

    \b
    Examples:
      densenet-trt models
      densenet-trt export --model densenet121 --format onnx --batch 1:8:32 --output densenet121.onnx
    """
    warnings.showwarning = _show_warning


_MODEL_OPTIONS = [
    click.option("--model", "model_name", default="densenet121", show_default=True,
                 help="Preset name (see `densenet-trt models`)."),
    click.option("--weights", type=str, default=None,
                 help="Checkpoint (.pth, .pt, .safetensors; torchvision's files and legacy keys "
                      "load as they are), or 'imagenet' for torchvision's file in torch's hub "
                      "cache. Without it the weights are random."),
    click.option("--num-classes", type=click.IntRange(min=1), default=None,
                 help="Classifier outputs; default: the checkpoint's, else the preset's. A different "
                      "number re-initialises the classifier (for fine-tuning)."),
    click.option("--batch", default="1", show_default=True,
                 help="A fixed batch size N, or a range MIN:OPT:MAX such as 1:8:32."),
    click.option("--image-size", type=int, default=None,
                 help="Input side in pixels; default: the preset's (224 ImageNet, 32 CIFAR)."),
]


def _model_options(f):
    """--model, --weights, --num-classes, --batch, --image-size."""
    for option in reversed(_MODEL_OPTIONS):
        f = option(f)
    return f


def _floats(ctx, param, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers (e.g. 0.485,0.456,0.406)")


_PREPROCESS_OPTIONS = [
    click.option("--preprocess", type=click.Choice(["imagenet", "cifar"]), default=None,
                 help="How images become input: resize, center crop and normalise as torchvision's "
                      "ImageNet evaluation (256 -> 224) or CIFAR (32x32); default: the model's family."),
    click.option("--mean", callback=_floats, default=None,
                 help="Per-channel mean (in [0, 1] units) replacing the preset's, comma-separated; "
                      "one value means grayscale (e.g. --mean 0.305 --std 0.323)."),
    click.option("--std", callback=_floats, default=None, help="Per-channel std, like --mean."),
]


def _preprocess_options(f):
    """--preprocess, --mean, --std."""
    for option in reversed(_PREPROCESS_OPTIONS):
        f = option(f)
    return f


def _preprocessing(model_name: str, image_size: int | None, preset, mean, std):
    """The Preprocessing the options ask for, or None where they ask for nothing."""
    if preset is None and mean is None and std is None:
        return None
    from .data import preprocessing
    from .registry import get_model_info
    from .spec import check_image_size

    info = get_model_info(model_name)
    size = check_image_size(info, image_size)
    return preprocessing(preset or (None if mean and std else info.family), size, mean, std)


def _say(quiet: bool):
    return (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
def models(as_json: bool) -> None:
    """List the DenseNet presets: parameters, multiply-adds at the default input size (counted
    from the model), default input size and the published accuracy.

    \b
    Example:
      densenet-trt models --json
    """
    from .registry import get_model_info, list_models, preset_stats

    rows = []
    for name in list_models():
        info = get_model_info(name)
        stats = preset_stats(name)
        rows.append({
            "name": name,
            "family": info.family,
            "description": info.description,
            "parameters": stats["parameters"],
            "macs": stats["macs"],
            "image_size": info.image_size,
            "num_classes": info.num_classes,
            "references": [
                {"metric": r.metric, "value": r.value, "source": r.source} for r in info.references
            ],
            "pretrained_url": info.pretrained_url,
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = f"{'name':<20} {'parameters':>12} {'MACs':>8} {'input':>7} {'classes':>7}  reference"
    click.echo(header)
    click.echo("-" * len(header))
    for row in rows:
        refs = get_model_info(row["name"]).references
        ref = refs[0] if refs else "no published figure"
        size = f"{row['image_size']}x{row['image_size']}"
        click.echo(
            f"{row['name']:<20} {row['parameters']:>12,} {row['macs'] / 1e9:>6.2f} G {size:>7} "
            f"{row['num_classes']:>7}  {ref}"
        )


@main.command()
@_model_options
@click.option("--format", "fmt", required=True,
              type=click.Choice(["onnx", "torchscript", "exported-program"]),
              help="onnx (opset 17+, input 'input', output 'logits'), torchscript (frozen .ts) "
                   "or exported-program (torch.export .pt2).")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="File to write.")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset (17 or newer).")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors.")
def export(model_name, weights, num_classes, batch, image_size, fmt, output, opset, force, quiet):
    """Capture a DenseNet as ONNX, TorchScript or a torch.export program, and check the file
    against eager PyTorch at the min, opt and max batch before keeping it.

    \b
    Example:
      densenet-trt export --model densenet121 --weights densenet121-a639ec97.pth \\
          --format onnx --batch 1:8:32 --output densenet121.onnx
    """
    from .export import export_model
    from .registry import create_model, get_model_info
    from .spec import BatchRange, check_image_size

    say = _say(quiet)
    info = get_model_info(model_name)
    batch_range = BatchRange.parse(batch)
    size = check_image_size(info, image_size)
    model = create_model(model_name, num_classes=num_classes, weights=weights)
    if weights is None:
        say("no --weights: random weights (the graph is real, its predictions are not)")
    results = export_model(model, fmt, output, batch_range, size, opset=opset, force=force, progress=say)
    for n, cmp in results.items():
        say(f"  batch {n}: {cmp}")
    click.echo(f"wrote {output} ({output.stat().st_size / 1e6:.1f} MB), {fmt}, batch {batch_range}, "
               f"{size}x{size}: matches eager PyTorch")


@main.command()
@_model_options
@click.option("--precision", type=click.Choice(["fp32", "fp16", "bf16", "int8"]), default="fp32",
              show_default=True, help="Engine precision; never changed silently: a backend that "
                                      "cannot do it here is an error naming what it can do.")
@click.option("--backend", default="auto", show_default=True,
              help="auto, tensorrt, onnxruntime, openvino, inductor or torchscript. auto: TensorRT "
                   "where an NVIDIA GPU and torch-tensorrt are present, else the fastest CPU backend "
                   "installed; it prints which and why.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Where the engine runs; default: the backend's preferred device here.")
@click.option("--output", "-o", default="engines", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder the engine folder goes in.")
@click.option("--name", default=None,
              help="Engine folder name; default MODEL-BACKEND-PRECISION-bBATCH-SIZE.")
@click.option("--format", "fmt", default=None,
              help="Artifact format, default the backend's first. tensorrt: exported-program (.ep), "
                   "torchscript (.ts), aot-inductor (.pt2) or engine (raw TensorRT plan); "
                   "onnxruntime: onnx; openvino: openvino-ir; inductor: aot-inductor; "
                   "torchscript: torchscript.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for building and running; recorded in the manifest.")
@click.option("--workspace-gb", type=click.FloatRange(min=0, min_open=True), default=None,
              help="TensorRT: builder workspace limit in GiB.")
@click.option("--opt-level", type=click.IntRange(0, 5), default=None,
              help="TensorRT: builder optimization level 0-5 (higher: longer build, faster engine).")
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TensorRT: timing cache file, reused across builds; default OUTPUT/timing.cache.")
@click.option("--hardware-compatible", is_flag=True,
              help="TensorRT: engine runs on any Ampere or newer GPU (slower).")
@click.option("--version-compatible", is_flag=True,
              help="TensorRT: engine runs on later TensorRT versions.")
@_preprocess_options
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="int8: the folder `densenet-trt calibrate` wrote for this model, weights and "
                   "image size (e.g. calibration/densenet121-max-224).")
@click.option("--force", is_flag=True, help="Replace an existing engine folder of the same name.")
@click.option("--no-verify", is_flag=True, help="Skip the accuracy gate (recorded in the manifest).")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON when done.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and the result.")
def build(model_name, weights, num_classes, batch, image_size, precision, backend, device, output,
          name, fmt, threads, workspace_gb, opt_level, timing_cache, hardware_compatible,
          version_compatible, preprocess, mean, std, calibration, force, no_verify, as_json, quiet):
    """Compile a DenseNet into an engine, check it against eager float32 PyTorch, and write it
    with its manifest as a folder in OUTPUT.

    \b
    Examples:
      densenet-trt build --precision fp16                      # TensorRT on an NVIDIA GPU
      densenet-trt build --model densenet121 --weights densenet121-a639ec97.pth --batch 1:8:32
      densenet-trt build --backend openvino --precision bf16 --threads 2
      densenet-trt build --precision int8 --calibration calibration/densenet121-max-224
    """
    from .build import build as build_engine
    from .spec import BatchRange

    options = {}
    if workspace_gb is not None:
        options["workspace_size"] = int(workspace_gb * (1 << 30))
    if opt_level is not None:
        options["optimization_level"] = opt_level
    if timing_cache is not None:
        options["timing_cache_path"] = str(timing_cache)
    if hardware_compatible:
        options["hardware_compatible"] = True
    if version_compatible:
        options["version_compatible"] = True
    artifact = build_engine(
        model_name, weights=weights, num_classes=num_classes, precision=precision, backend=backend,
        device=device, batch=batch, image_size=image_size, output=output, name=name, format=fmt,
        threads=threads, options=options, force=force, verify=not no_verify,
        calibration=calibration, preprocess=_preprocessing(model_name, image_size, preprocess, mean, std),
        progress=_say(quiet),
    )
    if as_json:
        click.echo(json.dumps(artifact.manifest, indent=2))
        return
    m = artifact.manifest
    acc = m["accuracy"]
    reference = "eager PyTorch" if m["precision"] != "int8" else "eager float32 within the calibration's tolerance"
    check = "not verified (--no-verify)" if not acc["verified"] else f"matches {reference}: " + "; ".join(
        f"batch {r['batch']} max abs {r['max_abs']:.2g} cos {r['cosine']:.5f} top-1 {r['top1_agreement']:.0%}"
        for r in acc["results"]
    )
    click.echo(f"built {artifact.file} ({m['backend']}, {m['precision']}, batch {BatchRange(**m['batch'])}, "
               f"{m['image_size']}x{m['image_size']}, {m['build']['seconds']:.0f} s): {check}")


@main.command()
@click.argument("engine", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and the verdict as JSON.")
def info(engine, as_json):
    """Show an engine's manifest and whether this machine can run it.

    \b
    Example:
      densenet-trt info engines/densenet121-onnxruntime-fp32-b1-224
    """
    from .build import compatibility
    from .spec import BatchRange

    manifest, problem = compatibility(engine)
    if as_json:
        click.echo(json.dumps({"manifest": manifest, "runs_here": problem is None, "problem": problem}, indent=2))
        return
    m = manifest
    dev = m["device"]
    gpu = dev.get("gpu")
    where = f"{gpu['name']} (compute {gpu['compute_capability']}, driver {gpu['driver']})" if gpu else dev["cpu"]
    acc = m["accuracy"]
    rows = [
        ("model", f"{m['model']['name']}, {m['model']['num_classes']} classes, weights "
                  + (m['model']['weights']['file'] if m['model']['weights'] else f"random (seed {m['model']['seed']})")),
        ("backend", f"{m['backend']} ({m['format']}, {m['main_file']})"),
        ("precision", m["precision"]),
        ("batch", str(BatchRange(**m["batch"]))),
        ("input", f"{m['input']['name']} {m['input']['dtype']} {m['input']['shape']}"),
        ("output", f"{m['output']['name']} {m['output']['dtype']} {m['output']['shape']}"),
        ("built for", f"{dev['type']}: {where}"),
        ("built", f"{m['build']['time_utc']} in {m['build']['seconds']:.1f} s"),
        ("versions", ", ".join(f"{k} {v}" for k, v in m["versions"].items())),
        ("accuracy", "passed the gate" if acc.get("passed") else acc.get("reason", "failed")),
        *([("calibration", f"{cal['path']} ({cal['method']}"
                           + (f", float: {', '.join(cal['exclude'])})" if cal["exclude"] else ")"))]
          if (cal := m.get("calibration")) else []),
        ("runs here", "yes" if problem is None else f"no: {problem}"),
    ]
    for key, value in rows:
        click.echo(f"{key:>11}  {value}")


@main.command()
@click.argument("engine", type=click.Path(path_type=Path))
@click.option("--samples", type=click.IntRange(min=1), default=16, show_default=True,
              help="Fresh random inputs to compare, in batches within the engine's range.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The checkpoint the engine was built from, where it has moved since.")
@click.option("--seed", type=int, default=None, help="Seed of the inputs; default: a fresh one.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and the result.")
def verify(engine, samples, weights, seed, quiet):
    """Compare an engine with eager float32 PyTorch on fresh inputs (the same weights, made
    again from the manifest); exits 1 if it is outside its precision's tolerance.

    \b
    Example:
      densenet-trt verify engines/densenet121-onnxruntime-fp32-b1-224 --samples 64
    """
    from .build import verify_engine

    results = verify_engine(engine, samples, weights=weights, seed=seed, progress=_say(quiet))
    for n, cmp in results:
        _say(quiet)(f"  batch {n}: {cmp}")
    failed = [(n, c) for n, c in results if not c.passes()]
    if failed:
        raise DenseNetTRTError(f"engine differs from eager PyTorch at batch {failed[0][0]}: {failed[0][1]}")
    click.echo(f"{engine}: {sum(n for n, _ in results)} fresh samples match eager PyTorch "
               "within the engine's precision tolerance")


@main.command()
@_MODEL_OPTIONS[0]
@_MODEL_OPTIONS[1]
@_MODEL_OPTIONS[2]
@_MODEL_OPTIONS[4]
@click.option("--data", type=str, default=None,
              help="Calibration images: a folder (recursive; JPEG, PNG, BMP, WebP; labels from "
                   "class subfolders), or a .npz with 'images' (N,C,H,W float32, preprocessed) and "
                   "optional 'labels', or a .npy of images.")
@click.option("--synthetic", is_flag=True,
              help="Random images instead of --data: a smoke test of the pipeline, not fit for accuracy.")
@click.option("--eval-data", type=str, default=None,
              help="Held-out data like --data; with labels, float and INT8 (fake-quantized) top-1 "
                   "are reported. Its first images also feed the build's accuracy gate.")
@_preprocess_options
@click.option("--samples", type=click.IntRange(min=1), default=512, show_default=True,
              help="Calibration images to use, drawn with --seed from the data.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per calibration batch; the data must hold at least one batch.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the sample draw: the same data and seed give the same calibration.")
@click.option("--method", type=click.Choice(["max", "entropy", "percentile", "mse"]), default="max",
              show_default=True,
              help="max: ModelOpt's INT8 default (per-channel weight and per-tensor activation "
                   "ranges from the largest values seen); entropy, percentile: activation ranges "
                   "cut from a histogram (KL divergence, --percentile); mse: ModelOpt's mse "
                   "algorithm (weight ranges searched for the least squared error).")
@click.option("--percentile", type=click.FloatRange(0, 100, min_open=True), default=99.99,
              show_default=True, help="--method percentile: the percentile of |activation| kept.")
@click.option("--exclude", multiple=True,
              help="Keep layers in float: a glob over layer names (features.denseblock1.*) or "
                   "stem / classifier; repeatable.")
@click.option("--skip-bad", is_flag=True,
              help="Image folders: leave out files that cannot be read (counted in the report) "
                   "instead of failing.")
@click.option("--output", "-o", default="calibration", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder the calibration folder goes in.")
@click.option("--name", default=None, help="Calibration folder name; default MODEL-METHOD-SIZE.")
@click.option("--force", is_flag=True, help="Replace an existing calibration folder of the same name.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON when done.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and the result.")
def calibrate(model_name, weights, num_classes, image_size, data, synthetic, eval_data, preprocess,
              mean, std, samples, batch_size, seed, method, percentile, exclude, skip_bad, output,
              name, force, as_json, quiet):
    """Calibrate a DenseNet for INT8 with NVIDIA ModelOpt and write a calibration folder
    (ModelOpt's quantizer state, gate inputs and a JSON report) for `build --precision int8`.

    \b
    Examples:
      densenet-trt calibrate --model densenet121 --weights imagenet --data val/ --samples 512
      densenet-trt calibrate --model densenet121 --data calib.npz --method percentile \\
          --percentile 99.9 --exclude stem --exclude classifier --eval-data holdout.npz
      densenet-trt build --precision int8 --calibration calibration/densenet121-max-224
    """
    from .quantize import calibrate as run_calibration

    if (data is None) == (not synthetic):
        raise DenseNetTRTError("give --data PATH, or --synthetic for a smoke test (not both)")
    say = _say(quiet)
    steps = _preprocessing(model_name, image_size, preprocess, mean, std)
    cal = run_calibration(
        model_name, data="synthetic" if synthetic else data, weights=weights, num_classes=num_classes,
        image_size=image_size, preprocess=steps, samples=samples, eval_data=eval_data,
        skip_bad=skip_bad, seed=seed, method=method, percentile=percentile, exclude=exclude,
        batch_size=batch_size, output=output, name=name, force=force, progress=say,
    )
    r = cal.report
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
    fit = "" if r["data"]["fit_for_accuracy"] else " (synthetic data: not fit for accuracy)"
    click.echo(f"calibration {cal.path}: {r['method']} on {r['data']['used']} samples, "
               f"{len(r['layers']['quantized'])} layers int8, {len(r['layers']['float'])} float{accuracy}{fit}")


def _batch_list(ctx, param, value: str) -> list[int]:
    try:
        sizes = [int(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers (e.g. 1,8,32)")
    if any(n < 1 for n in sizes):
        raise click.BadParameter(f"{value!r}: batch sizes must be 1 or more")
    return sizes


@main.command()
@click.argument("engines", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--batch", "batches", default="1", show_default=True, callback=_batch_list,
              help="Batch sizes, comma-separated (e.g. 1,8,32); a size outside an engine's range "
                   "is skipped with the reason.")
@click.option("--warmup", type=int, default=None, help="Warm-up rounds, not timed [default: 3].")
@click.option("--warmup-time", type=float, default=None, help="Or warm up for this many seconds.")
@click.option("--iterations", type=int, default=None, help="Timed rounds [default: 20].")
@click.option("--duration", type=float, default=None, help="Or time rounds for this many seconds.")
@click.option("--vs", type=click.Choice(["eager", "none"]), default="eager", show_default=True,
              help="eager: time eager PyTorch (same model and weights; fp32 and the engine's "
                   "precision where PyTorch can run it) interleaved with the engine.")
@click.option("--threads", type=int, default=None, help="CPU threads for PyTorch and the engines [default: torch's].")
@click.option("--cuda-graphs", is_flag=True, help="GPU engines: replay the engine from a CUDA graph.")
@click.option("--include-transfers", is_flag=True,
              help="GPU engines: also time host-to-device and device-to-host copies, apart.")
@click.option("--gap", type=float, default=0.2, show_default=True,
              help="Seconds of pause before each timed CPU call (PyTorch's OpenMP threads spin "
                   "after eager runs and would slow the next call).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the results as JSON (schema in densenet_trt/report.py).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one CSV row per engine, batch and runner.")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the table with its conditions as Markdown.")
@click.option("--plot", "png_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a PNG: latency percentiles and throughput against batch size.")
@click.option("--quiet", "-q", is_flag=True, help="No progress; print only the table.")
def profile(engines, batches, warmup, warmup_time, iterations, duration, vs, threads, cuda_graphs,
            include_transfers, gap, json_path, csv_path, md_path, png_path, quiet):
    """Measure latency and throughput of built engines against eager PyTorch, interleaved in
    one run; the speedup is the median of the paired ratios.

    \b
    Examples:
      densenet-trt profile engines/densenet121-onnxruntime-fp32-b1-8-32-224 --batch 1,8,32
      densenet-trt profile engines/a engines/b --duration 30 --json out.json --plot out.png
    """
    from .profiler import profile as run_profile
    from .report import check_output

    outputs = {path: writer for path, writer in ((json_path, "write_json"), (csv_path, "write_csv"),
                                                  (md_path, "write_markdown"), (png_path, "plot")) if path}
    for path in outputs:
        check_output(path)
    report = run_profile(
        engines, batches=batches, warmup=warmup, warmup_time=warmup_time, iterations=iterations,
        duration=duration, vs=vs, threads=threads, cuda_graphs=cuda_graphs,
        include_transfers=include_transfers, gap=gap, progress=_say(quiet),
    )
    click.echo(report.table())
    for path, writer in outputs.items():
        getattr(report, writer)(path)
        _say(quiet)(f"wrote {path}")


@main.command("export-triton")
@click.argument("engine", type=click.Path(path_type=Path))
@click.option("--repository", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Triton model repository folder (created if missing).")
@click.option("--model-name", default=None, help="Model name in the repository; default: the engine folder's name.")
@click.option("--max-batch-size", type=int, default=None,
              help="Largest batch Triton forms; default and limit: the engine's max batch.")
@click.option("--instances", type=click.IntRange(min=1), default=1, show_default=True,
              help="Model instances (instance_group count).")
@click.option("--dynamic-batching/--no-dynamic-batching", default=True, show_default=True,
              help="Let Triton combine requests into batches.")
@click.option("--force", is_flag=True, help="Replace an existing model of the same name.")
def export_triton(engine, repository, model_name, max_batch_size, instances, dynamic_batching, force):
    """Write a built engine into a Triton Inference Server model repository: the model file in
    NAME/1/ and NAME/config.pbtxt (tensorrt_plan for a raw TensorRT plan, onnxruntime_onnx,
    openvino, pytorch_libtorch for TorchScript).

    \b
    Example:
      densenet-trt export-triton engines/densenet121-onnxruntime-fp32-b1-8-32-224 \\
          --repository models --model-name densenet121 --instances 2
    """
    from .triton import export_triton as run_export

    folder = run_export(engine, repository, model_name=model_name, max_batch_size=max_batch_size,
                        instances=instances, dynamic_batching=dynamic_batching, force=force)
    click.echo(f"wrote {folder} (config.pbtxt, 1/)")


@main.command()
@click.argument("engine", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Class names, one per line (UTF-8), as many as the engine's classes; default: "
                   "class indices.")
@click.option("--top-k", type=int, default=5, show_default=True, help="Classes to show per image.")
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list: per image its path and top classes (index, label, probability).")
@click.option("--batch-size", type=int, default=None,
              help="Images per run, within the engine's batch range; default: its opt batch.")
def predict(engine, images, labels, top_k, as_json, batch_size):
    """Classify image files (or folders of them, searched recursively) with a built engine: each
    image preprocessed as the engine's manifest says, and its top classes with their softmax
    probabilities.

    \b
    Example:
      densenet-trt predict engines/densenet121-onnxruntime-fp32-b1-8-32-224 cat.jpg photos/ \\
          --labels imagenet_classes.txt --top-k 3
    """
    from .predict import classify

    predictions = classify(engine, images, top_k=top_k, labels=labels, batch_size=batch_size,
                           progress=_say(as_json))
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in predictions], indent=2))
        return
    names = [[g.label if g.label is not None else str(g.index) for g in p.top] for p in predictions]
    width = max(len(name) for row in names for name in row)
    for prediction, row in zip(predictions, names):
        click.echo(str(prediction.path))
        for name, guess in zip(row, prediction.top):
            click.echo(f"  {name:<{width}}  {guess.probability:7.2%}")
