"""Issue 13: ``compare`` reads an engine's intermediate outputs from its graph with those outputs
added. Is that still the engine? The graph with them added also gives its logits, compared with
the engine's own: bit-identical on OpenVINO and ONNX Runtime, fp32 and int8, and at fp32 every part
reads as eager float32 within 1e-4."""

import pytest
from click.testing import CliRunner

from densenet_trt.backends import BACKENDS
from densenet_trt.cli import main
from densenet_trt.int8.compare import Error, compare_engine, exposed_text

SAME = "with the parts' outputs added, the logits are bit-identical to the engine's: the readings are its own"


def needs(backend):
    if not BACKENDS[backend].available().ok:
        pytest.skip(BACKENDS[backend].available().message(backend))


# openvino with -m slow (8 s: compare captures the graph again); the default run exposes openvino's parts
# on its int8 engine below.
@pytest.mark.parametrize("backend", [pytest.param("openvino", marks=pytest.mark.slow), "onnxruntime"])
def test_exposing_the_parts_leaves_a_float32_engine_bit_identical_and_each_part_reads_as_eager(small_engine, backend):
    needs(backend)
    engine = small_engine(backend, "fp32")
    shown = compare_engine(engine.path, samples=4)
    assert shown.note is None and shown.exposed == Error(None, 0.0, shown.exposed.cosine)
    assert all(s.engine is not None and s.engine.max_abs < 1e-4 for s in shown.stages), shown.table()
    result = CliRunner().invoke(main, ["compare", str(engine.path), "--samples", "2", "--quiet"])
    assert result.exit_code == 0 and result.stdout.splitlines()[-1] == SAME, result.output


def test_an_openvino_int8_engine_departs_where_modelopts_fake_quantized_model_does(small_int8_engine):
    engine = small_int8_engine("openvino")
    shown = compare_engine(engine.path, samples=4)
    assert shown.exposed.sqnr_db is None and shown.exposed.max_abs == 0
    assert shown.note is None and all(s.engine is not None for s in shown.stages)
    stem, block1 = shown.stages[:2]
    assert stem.engine.max_abs < 1e-4  # the stem stays float32
    # The first quantized part departs from float32 by as much as ModelOpt's fake-quantized model does.
    assert block1.engine.sqnr_db < 60 and block1.engine.sqnr_db == pytest.approx(block1.fake_quantized.sqnr_db, abs=1)


def test_a_graph_changed_by_its_exposed_outputs_is_said():
    assert exposed_text(Error(None, 0.0, 1.0)) == SAME
    assert exposed_text(Error(61.3, 0.0042, 0.99999)) == (
        "with the parts' outputs added, the logits differ from the engine's own (max abs 0.0042, SQNR 61.3 dB): "
        "the runtime computed differently with them exposed, so the parts' readings are of that graph, not "
        "exactly of the engine")
