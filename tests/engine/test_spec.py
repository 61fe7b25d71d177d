import pytest

from densenet_trt import BatchRange, DenseNetTRTError, get_model_info
from densenet_trt.engine.spec import check_image_size


@pytest.mark.parametrize(
    "text, expected",
    [("1", (1, 1, 1)), ("8", (8, 8, 8)), ("1:8:32", (1, 8, 32)), ("4:4:4", (4, 4, 4)), (16, (16, 16, 16))],
)
def test_batch_range_parses(text, expected):
    batch = BatchRange.parse(text)
    assert (batch.min, batch.opt, batch.max) == expected
    assert batch.dynamic == (expected[0] != expected[2])


@pytest.mark.parametrize("text", ["0", "8:1:32", "1:64:32", "2:1:1", "1:8", "a:b:c", "", "1:2:3:4", "-1:1:1"])
def test_bad_batch_ranges_are_refused(text):
    with pytest.raises(DenseNetTRTError, match="batch"):
        BatchRange.parse(text)


def test_batch_range_sizes_and_text():
    assert BatchRange.parse("1:8:32").sizes() == [1, 8, 32]
    assert BatchRange.parse("4:4:8").sizes() == [4, 8]
    assert str(BatchRange.parse("1:8:32")) == "1:8:32" and str(BatchRange.parse("3")) == "3"


def test_image_size():
    info = get_model_info("densenet121")
    assert check_image_size(info, None) == 224
    assert check_image_size(info, 29) == 29
    with pytest.raises(DenseNetTRTError, match="at least 29 pixels"):
        check_image_size(info, 28)
    cifar = get_model_info("densenet40_k12")
    assert check_image_size(cifar, None) == 32
    with pytest.raises(DenseNetTRTError, match="at least 4 pixels"):
        check_image_size(cifar, 3)
