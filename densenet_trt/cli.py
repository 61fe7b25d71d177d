"""The ``densenet-trt`` command line: a thin layer over the library."""

from __future__ import annotations

import functools
import json
import warnings
from pathlib import Path

import click

from . import __version__
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


def _model_options(f):
    """--model, --weights, --num-classes, --batch, --image-size."""

    @click.option("--model", "model_name", default="densenet121", show_default=True,
                  help="Preset name (see `densenet-trt models`).")
    @click.option("--weights", type=str, default=None,
                  help="Checkpoint (.pth, .pt, .safetensors; torchvision's files and legacy keys "
                       "load as they are), or 'imagenet' for torchvision's file in torch's hub "
                       "cache. Without it the weights are random.")
    @click.option("--num-classes", type=click.IntRange(min=1), default=None,
                  help="Classifier outputs; default: the checkpoint's, else the preset's. A different "
                       "number re-initialises the classifier (for fine-tuning).")
    @click.option("--batch", default="1", show_default=True,
                  help="A fixed batch size N, or a range MIN:OPT:MAX such as 1:8:32.")
    @click.option("--image-size", type=int, default=None,
                  help="Input side in pixels; default: the preset's (224 ImageNet, 32 CIFAR).")
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


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
    from .models import get_model_info, list_models, preset_stats

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
        ref = get_model_info(row["name"]).references[0]
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
    from .models import create_model, get_model_info
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
