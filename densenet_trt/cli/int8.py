"""Commands that look inside INT8: sensitivity (per layer, on a calibration) and compare (per
block, an engine against eager float32)."""

from __future__ import annotations

from pathlib import Path

import click

from ..defaults import COMPARE_SAMPLES, RANDOM_SEED, SENSITIVITY_BATCH_SIZE, SENSITIVITY_SEED
from .options import SEED, OutputFile, command, preprocess_options, reporter


@command()
@click.argument("calibration", type=click.Path(path_type=Path))
@click.option("--eval-data", required=True,
              help="Held-out data (an image folder with class subfolders, or a .npz with 'images' and "
                   "optional 'labels'): top-1 where it has labels, else agreement with float top-1.")
@click.option("--eval-samples", type=click.IntRange(min=1), default=None,
              help="Held-out images to use, drawn with --seed [default: all].")
@click.option("--seed", type=SEED, default=SENSITIVITY_SEED, show_default=True, help="Seed of the sample draw.")
@click.option("--batch-size", type=click.IntRange(min=1), default=SENSITIVITY_BATCH_SIZE, show_default=True)
@click.option("--layers", multiple=True, help="Only layers matching this glob (repeatable); groups are always scored.")
@click.option("--weights", type=str, default=None, help="The calibrated checkpoint, where it has moved since.")
@preprocess_options
@click.option("--top", type=click.IntRange(min=1), default=None, help="Print only the N most sensitive layers.")
@click.option("--json", "json_path", type=OutputFile(), default=None,
              help="Write every entry as JSON (- for standard output; the table then goes to stderr).")
@click.option("--plot", "png_path", type=OutputFile(), default=None,
              help="Write a PNG: per layer and per group.")
@click.option("--force", is_flag=True, help="Overwrite the --json and --plot files if they exist.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the table.")
def sensitivity(calibration, eval_data, eval_samples, seed, batch_size, layers, weights, preprocess, mean, std,
                top, json_path, png_path, force, quiet):
    """Rank a calibration's quantized layers, and its stem, dense blocks, transitions and
    classifier, by what quantizing each alone costs and what keeping each alone in float
    recovers, on held-out data (ModelOpt's quantizers switched on and off; two passes over the
    data per entry).

    \b
    Example:
      densenet-trt sensitivity calibration/densenet121-max-224 --eval-data holdout.npz --plot sens.png
    """
    from ..int8.calibration import load_calibration
    from ..int8.sensitivity import plot, sensitivity as run

    steps = None
    if preprocess or mean or std:
        from .options import preprocessing_option

        report = load_calibration(calibration).report
        steps = preprocessing_option(report["model"]["name"], report["image_size"], preprocess, mean, std)
    result = run(calibration, eval_data, weights=weights, eval_samples=eval_samples, seed=seed,
                 batch_size=batch_size, layers=list(layers) or None, preprocess=steps, progress=reporter(quiet))
    click.echo(result.table(top), nl=False, err="-" in (json_path, png_path))
    if json_path:
        result.write_json(json_path, force)
        reporter(quiet)(f"wrote {json_path}")
    if png_path:
        plot(result, png_path, force)
        reporter(quiet)(f"wrote {png_path}")


@command()
@click.argument("engine", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Inputs: a .npz/.npy of preprocessed images or an image folder (preprocessed as the "
                   "manifest says) [default: an int8 engine's calibration gate inputs, else random inputs].")
@click.option("--samples", type=click.IntRange(min=1), default=COMPARE_SAMPLES, show_default=True,
              help="Inputs to compare on.")
@click.option("--seed", type=SEED, default=RANDOM_SEED, show_default=True, help="Seed of random inputs and of the draw.")
@click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The checkpoint the engine was built from, where it has moved since.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the table.")
def compare(engine, data, samples, seed, weights, as_json, quiet):
    """Compare an engine with eager float32 PyTorch part by part: the output of the stem, each
    dense block and transition, and the logits (SQNR, largest difference, cosine); for int8
    engines also ModelOpt's fake-quantized model against float32, so the two departures can be
    told apart. ONNX Runtime and OpenVINO engines expose their intermediate outputs (the last line
    says whether the graph with them added still gives the engine's logits bit for bit, i.e.
    whether the readings are the engine's own); for other backends only the logits are compared.

    \b
    Example:
      densenet-trt compare engines/densenet121-openvino-int8-b1-224
    """
    import json

    from ..int8.compare import compare_engine

    result = compare_engine(engine, data=data, samples=samples, seed=seed, weights=weights,
                            progress=reporter(quiet or as_json))
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.table(), nl=as_json)
