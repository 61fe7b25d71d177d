"""Commands that make and check engines: models, export, build, info, verify."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import DenseNetTRTError
from ..choices import EXPORT_FORMATS as FORMATS, MAX_OPSET, MIN_OPSET
from ..defaults import BACKEND, ENGINES, OPSET, PRECISION, VERIFY_SAMPLES
from ..progress import Stopwatch, reporting, seconds
from ..engine.spec import PRECISIONS, Precision
from .options import SEED, THREADS, BackendFlagsCommand, OutputFile, backend_options, command, model_options, preprocess_options, preprocessing_option, reporter

@command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
def models(as_json: bool) -> None:
    """List the DenseNet presets: parameters, multiply-adds at the default input size (counted
    from the model), default input size and the published accuracy.

    \b
    Example:
      densenet-trt models --json
    """
    from ..model.registry import get_model_info, list_models, preset_stats

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


@command()
@model_options
@click.option("--format", "fmt", required=True,
              type=click.Choice(list(FORMATS)),
              help=f"onnx (opset {MIN_OPSET}-{MAX_OPSET}, input 'input', output 'logits'), torchscript (frozen .ts) "
                   "or exported-program (torch.export .pt2).")
@click.option("--output", "-o", required=True, type=OutputFile(),
              help="File to write; - for standard output (then the summary goes to stderr).")
@click.option("--opset", type=int, default=OPSET, show_default=True,
              help=f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (what this torch's exporter writes).")
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
    from ..engine.export import export_model
    from ..engine.memory import check_build_memory
    from ..model.registry import create_model, get_model_info, model_config
    from ..engine.spec import BatchRange, check_image_size

    say = reporter(quiet)
    info = get_model_info(model_name)
    batch_range = BatchRange.parse(batch)
    size = check_image_size(info, image_size)
    check_build_memory(model_config(model_name, num_classes), batch_range, size)
    model = create_model(model_name, num_classes=num_classes, weights=weights)
    if weights is None:
        say("no --weights: random weights (the graph is real, its predictions are not)")
    with reporting(say):
        results = export_model(model, fmt, output, batch_range, size, opset=opset, force=force, progress=say)
    for n, cmp in results.items():
        say(f"  batch {n}: {cmp}")
    where = "standard output" if output == "-" else f"{output} ({output.stat().st_size / 1e6:.1f} MB)"
    click.echo(f"wrote {where}, {fmt}, batch {batch_range}, {size}x{size}: matches eager PyTorch", err=output == "-")


@command(cls=BackendFlagsCommand)
@model_options
@click.option("--precision", type=click.Choice(PRECISIONS), default=PRECISION,
              show_default=True, help="Engine precision; never changed silently: a backend that "
                                      "cannot do it here is an error naming what it can do.")
@click.option("--backend", default=BACKEND, show_default=True,
              help="auto, tensorrt, tensorrt-onnx, onnxruntime, openvino, inductor or torchscript. "
                   "auto: TensorRT where an NVIDIA GPU and torch-tensorrt (else TensorRT's Python "
                   "API: tensorrt-onnx) are present, else the fastest CPU backend installed; it "
                   "prints which and why.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default=None,
              help="Where the engine runs; default: the backend's preferred device here.")
@click.option("--output", "-o", default=ENGINES, show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Folder the engine folder goes in.")
@click.option("--name", default=None,
              help="Engine folder name; default MODEL-BACKEND-PRECISION-bBATCH-SIZE.")
@click.option("--format", "fmt", default=None,
              help="Artifact format, default the backend's first. tensorrt: exported-program (.ep), "
                   "torchscript (.ts), aot-inductor (.pt2) or engine (raw TensorRT plan); "
                   "tensorrt-onnx: engine; "
                   "onnxruntime: onnx; openvino: openvino-ir; inductor: aot-inductor; "
                   "torchscript: torchscript.")
@click.option("--threads", type=THREADS, default=None,
              help="CPU threads for building and running; recorded in the manifest.")
@backend_options
@preprocess_options
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="int8: the folder `densenet-trt calibrate` wrote for this model, weights and "
                   "image size (e.g. calibration/densenet121-max-224).")
@click.option("--force", is_flag=True, help="Replace an existing engine folder of the same name.")
@click.option("--no-verify", is_flag=True, help="Skip the accuracy gate (recorded in the manifest).")
@click.option("--no-speed-check", is_flag=True,
              help="int8: skip timing the engine against the same backend's float32 engine (built "
                   "in a temporary folder; a few calls each), which warns where int8 is not faster.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON when done.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and the result.")
def build(model_name, weights, num_classes, batch, image_size, precision, backend, device, output,
          name, fmt, threads, options, preprocess, mean, std, calibration, force, no_verify, no_speed_check, as_json,
          quiet):
    """Compile a DenseNet into an engine, check it against eager float32 PyTorch, and write it
    with its manifest as a folder in OUTPUT.

    \b
    Examples:
      densenet-trt build --precision fp16                      # TensorRT on an NVIDIA GPU
      densenet-trt build --model densenet121 --weights densenet121-a639ec97.pth --batch 1:8:32
      densenet-trt build --backend openvino --precision bf16 --threads 2
      densenet-trt build --precision int8 --calibration calibration/densenet121-max-224
    """
    from ..engine.build import build as build_engine
    from ..engine.manifest import SYNTHETIC_CALIBRATION

    watch = Stopwatch()
    artifact = build_engine(
        model_name, weights=weights, num_classes=num_classes, precision=precision, backend=backend,
        device=device, batch=batch, image_size=image_size, output=output, name=name, format=fmt,
        threads=threads, options=options, force=force, verify=not no_verify,
        calibration=calibration, preprocess=preprocessing_option(model_name, image_size, preprocess, mean, std),
        progress=reporter(quiet), speed_check=not no_speed_check,
    )
    m = artifact.manifest
    if as_json:
        click.echo(json.dumps(m.to_json(), indent=2))
        return
    acc = m.accuracy
    reference = "eager PyTorch" if m.precision is not Precision.INT8 else "eager float32 within the calibration's tolerance"
    check = "not verified (--no-verify)" if not acc.verified else f"matches {reference}: " + "; ".join(
        _gate_result(r) for r in acc.results)
    synthetic = f"; {SYNTHETIC_CALIBRATION}" if m.calibration is not None and m.calibration.synthetic else ""
    click.echo(f"built {artifact.file} ({m.backend}, {m.precision}, batch {m.batch}, {m.image_size}x{m.image_size}) "
               f"in {seconds(watch.seconds())} (compiling {seconds(m.build.seconds)}): {check}{synthetic}")
    if m.precision is Precision.INT8:
        click.echo(f"int8 layers: {_layer_precisions(artifact.path)}")
    if m.int8_speed is not None:
        from ..int8.speed import speed_text

        click.echo(f"int8 speed: {speed_text(m.int8_speed)}")


def _gate_result(r: dict) -> str:
    """A gate result in brief: its batch, distance, cosine and top-1 on the decisive samples (or
    not checked where none was), and whether its inputs were repeated to fill the batch."""
    top1 = (f"top-1 not checked (0 of {r['samples']} samples decisive)" if not r["decisive"]
            else f"top-1 {r['decisive_top1']:.0%} of {r['decisive']} decisive")
    distinct = r.get("distinct_inputs")
    repeated = f" ({distinct} distinct inputs, repeated)" if distinct is not None and distinct < r["samples"] else ""
    return f"batch {r['batch']} max abs {r['max_abs']:.2g} cos {r['cosine']:.5f} {top1}{repeated}"


def _layer_precisions(folder: Path) -> str:
    from ..engine.load import load

    layers = load(folder).runtime.layer_precisions()
    return layers if isinstance(layers, str) else layers.text()


@command()
@click.argument("engine", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and the verdict as JSON.")
def info(engine, as_json):
    """Show an engine's manifest and whether this machine can run it.

    \b
    Example:
      densenet-trt info engines/densenet121-onnxruntime-fp32-b1-224
    """
    from ..engine.load import compatibility, load

    manifest, problem = compatibility(engine)
    layers = None
    if manifest.precision is Precision.INT8 and problem is None:
        layers = load(engine).runtime.layer_precisions()
    if as_json:
        click.echo(json.dumps({"manifest": manifest.to_json(), "runs_here": problem is None, "problem": problem,
                               "int8_layers": layers if isinstance(layers, str) or layers is None
                               else layers.as_dict()}, indent=2))
        return
    for key, value in info_rows(manifest, problem):
        click.echo(f"{key:>13}  {value}")
    if layers is not None:
        click.echo(f"{'int8 layers':>13}  {layers if isinstance(layers, str) else layers.text()}")


def info_rows(m, problem: str | None) -> list[tuple[str, str]]:
    """``info``'s table: a label and a value per line."""
    from ..int8.speed import speed_text
    from ..engine.manifest import SYNTHETIC_CALIBRATION

    gpu = m.device.gpu
    where = f"{gpu.name} (compute {gpu.compute_capability}, driver {gpu.driver})" if gpu else m.device.cpu
    weights = m.model.weights.file if m.model.weights else f"random (seed {m.model.seed})"
    steps = m.preprocessing
    cal = m.calibration
    return [
        ("model", f"{m.model.name}, {m.model.num_classes} classes, weights {weights}"),
        ("backend", f"{m.backend} ({m.format}, {m.main_file})"),
        ("precision", str(m.precision)),
        ("batch", str(m.batch)),
        ("input", f"{m.input.name} {m.input.dtype} {m.input.shape}"),
        ("output", f"{m.output.name} {m.output.dtype} {m.output.shape}"),
        ("preprocessing", "not recorded (predict needs --preprocess or --mean/--std at build)" if steps is None
         else f"resize {steps.resize}, crop {steps.crop}, mean {list(steps.mean)}, std {list(steps.std)}"),
        ("built for", f"{m.device.type}: {where}"),
        ("built", f"{m.build.time_utc} in {m.build.seconds:.1f} s"),
        ("versions", ", ".join(f"{k} {v}" for k, v in m.versions.items())),
        ("accuracy", accuracy_text(m)),
        *([("int8 speed", speed_text(m.int8_speed))] if m.int8_speed else []),
        *([("calibration", f"{cal.path} ({cal.method}" + (f", float: {', '.join(cal.exclude)})" if cal.exclude else ")")
            + (f"; {SYNTHETIC_CALIBRATION}" if cal.synthetic else "")),
           ("quantizer", m.backend_settings.get("quantizer", "ModelOpt's Q/DQ (nvidia-modelopt), as calibrated"))]
          if cal else []),
        ("labels", "none recorded: predict shows class indices (or give --labels)" if m.labels is None
         else f"{len(m.labels)} class names ({', '.join(m.labels[:3])}, ...)"),
        ("runs here", "yes" if problem is None else f"no: {problem}"),
    ]


def accuracy_text(m) -> str:
    """``info``'s accuracy line: the gate's verdict, the batches where top-1 was not checked
    (no sample decisive) and, for an int8 engine from random images, that it is not fit for
    accuracy whatever the gate said."""
    from ..engine.manifest import SYNTHETIC_CALIBRATION

    acc = m.accuracy
    if not acc.passed:
        return acc.reason or "failed"
    unchecked = [r for r in acc.results if not r["decisive"]]
    text = "passed the gate"
    if unchecked:
        text += (f"; top-1 not checked at batch {', '.join(str(r['batch']) for r in unchecked)} "
                 f"(0 of {', '.join(str(r['samples']) for r in unchecked)} samples decisive)")
    if m.calibration is not None and m.calibration.synthetic:
        text += f"; {SYNTHETIC_CALIBRATION}"
    return text


@command()
@click.argument("engine", type=click.Path(path_type=Path))
@click.option("--samples", type=click.IntRange(min=1), default=VERIFY_SAMPLES, show_default=True,
              help="Fresh random inputs to compare, in batches within the engine's range.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The checkpoint the engine was built from, where it has moved since.")
@click.option("--seed", type=SEED, default=None, help="Seed of the inputs; default: a fresh one.")
@click.option("--quiet", "-q", is_flag=True, help="Print only errors and the result.")
def verify(engine, samples, weights, seed, quiet):
    """Compare an engine with eager float32 PyTorch on fresh inputs (the same weights, made
    again from the manifest); exits 1 if it is outside its precision's tolerance.

    \b
    Example:
      densenet-trt verify engines/densenet121-onnxruntime-fp32-b1-224 --samples 64
    """
    from ..engine.build import verify_engine

    watch = Stopwatch()
    verification = verify_engine(engine, samples, weights=weights, seed=seed, progress=reporter(quiet))
    if not verification.passed:
        raise DenseNetTRTError(verification.failure())
    click.echo(f"{engine}: {verification.source} match eager PyTorch within the engine's tolerance "
               f"({seconds(watch.seconds())})")

