import pytest
import torch
import torchvision

import densenet_trt
from densenet_trt import DenseNet, DenseNetTRTError, create_model, get_model_info, list_models
from densenet_trt.model.network import (
    BasicDenseLayer,
    DenseLayer,
    count_parameters,
    min_image_size,
    output_size,
)
from densenet_trt.model.registry import count_preset, preset_stats

TORCHVISION_PARAMS = {
    "densenet121": 7_978_856,
    "densenet161": 28_681_000,
    "densenet169": 14_149_480,
    "densenet201": 20_013_928,
    "densenet264": 33_337_704,
}
# Paper, Table 2 (millions of parameters).
PAPER_CIFAR_PARAMS = {
    "densenet40_k12": 1.0,
    "densenet100_k12": 7.0,
    "densenet100_k24": 27.2,
    "densenet_bc100_k12": 0.8,
    "densenet_bc250_k24": 15.3,
    "densenet_bc190_k40": 25.6,
}


# Not in the paper: the smallest DenseNet-BC, for the digits of the INT8 tests (10 classes, 3 channels).
EXTRA_PARAMS = {"densenet_bc40_k12": 176_122}


def test_registry_lists_every_preset():
    assert set(list_models()) == set(TORCHVISION_PARAMS) | set(PAPER_CIFAR_PARAMS) | set(EXTRA_PARAMS)


def test_extra_presets_have_no_published_figure():
    for name, params in EXTRA_PARAMS.items():
        assert preset_stats(name)["parameters"] == params
        assert get_model_info(name).references == ()


@pytest.mark.parametrize("name", list(TORCHVISION_PARAMS))
def test_imagenet_parameter_counts_equal_torchvision(name):
    assert preset_stats(name)["parameters"] == TORCHVISION_PARAMS[name]
    if hasattr(torchvision.models, name):
        with torch.device("meta"):
            reference = getattr(torchvision.models, name)()
        assert count_parameters(reference) == TORCHVISION_PARAMS[name]


@pytest.mark.parametrize("name", list(PAPER_CIFAR_PARAMS))
def test_cifar_parameter_counts_match_the_paper(name):
    params = preset_stats(name)["parameters"]
    assert abs(params / 1e6 - PAPER_CIFAR_PARAMS[name]) <= 0.05


# Counting builds each preset on the meta device (seconds for the large ones): the small
# presets run by default, every preset with -m slow.
@pytest.mark.parametrize("name", [
    name if get_model_info(name).parameters < 2_000_000 else pytest.param(name, marks=pytest.mark.slow)
    for name in list_models()
])
def test_recorded_counts_equal_the_counted_ones(name):
    assert preset_stats(name) == count_preset(name)


def test_macs_of_densenet121_are_counted_from_the_model():
    assert preset_stats("densenet121")["macs"] == pytest.approx(2.834e9, rel=1e-3)


def full_size_is_slow(names, keep=("densenet121", "densenet40_k12", "densenet_bc100_k12")):
    """``names`` as parameters, all but the default model and two small CIFAR presets (one with
    bottlenecks, one without) in the slow tier: the same code at a larger size."""
    return [n if n in keep else pytest.param(n, marks=pytest.mark.slow) for n in names]


@pytest.mark.parametrize("name", full_size_is_slow(["densenet121", "densenet161", "densenet169", "densenet201"]))
def test_outputs_equal_torchvision_with_the_same_weights(name):
    reference = getattr(torchvision.models, name)().eval()
    ours = DenseNet(**get_model_info(name).config).eval()
    ours.load_state_dict(reference.state_dict())  # key for key, strict
    for batch in (1, 4):
        x = torch.randn(batch, 3, 224, 224)
        with torch.no_grad():
            diff = (ours(x) - reference(x)).abs().max().item()
        assert diff <= 1e-5, (batch, diff)


def test_bottleneck_layers_follow_the_paper():
    model = DenseNet(growth_rate=12, block_config=(2, 2), num_init_features=24, bn_size=4,
                     compression=0.5, num_classes=10, stem="cifar")
    layer = model.features.denseblock1.denselayer2
    assert isinstance(layer, DenseLayer)
    # Layer 2 reads the stem's 24 channels and layer 1's 12.
    assert layer.conv1.in_channels == 24 + 12 and layer.conv1.out_channels == 4 * 12
    assert layer.conv2.kernel_size == (3, 3) and layer.conv2.out_channels == 12
    # Transition: m = 24 + 2 * 12 = 48 channels -> floor(0.5 * 48).
    assert model.features.transition1.conv.out_channels == 24
    assert model.classifier.in_features == 24 + 2 * 12


def test_layers_without_bottleneck_are_bn_relu_conv3x3():
    model = DenseNet(growth_rate=12, block_config=(3,), num_init_features=16, bn_size=0,
                     compression=1.0, num_classes=10, stem="cifar")
    layer = model.features.denseblock1.denselayer3
    assert isinstance(layer, BasicDenseLayer)
    assert layer.conv1.kernel_size == (3, 3)
    assert layer.conv1.in_channels == 16 + 2 * 12 and layer.conv1.out_channels == 12
    assert not hasattr(layer, "conv2")


def test_each_layer_reads_the_concatenation_of_all_earlier_maps():
    model = DenseNet(growth_rate=4, block_config=(3,), num_init_features=8, bn_size=0,
                     compression=1.0, num_classes=2, stem="cifar").eval()
    block = model.features.denseblock1
    x = torch.randn(1, 8, 6, 6)
    with torch.no_grad():
        y1 = block.denselayer1([x])
        y2 = block.denselayer2([x, y1])
        y3 = block.denselayer3([x, y1, y2])
        assert torch.equal(block(x), torch.cat([x, y1, y2, y3], 1))
        # Changing the block input changes the last layer's output directly, not just via y1, y2.
        direct = block.denselayer3([x + 1, y1, y2])
    assert not torch.allclose(direct, y3)


def test_compression_floors_the_channel_count():
    model = DenseNet(growth_rate=5, block_config=(3, 1), num_init_features=7, bn_size=0,
                     compression=0.3, num_classes=2, stem="cifar")
    assert model.features.transition1.conv.out_channels == int(0.3 * (7 + 15))  # floor(6.6) = 6


def test_stems():
    imagenet = DenseNet(block_config=(1,), num_classes=2)
    assert [n for n, _ in imagenet.features.named_children()][:4] == ["conv0", "norm0", "relu0", "pool0"]
    assert imagenet.features.conv0.kernel_size == (7, 7) and imagenet.features.conv0.stride == (2, 2)
    cifar = DenseNet(block_config=(1,), num_classes=2, stem="cifar")
    assert cifar.features.conv0.kernel_size == (3, 3) and cifar.features.conv0.stride == (1, 1)
    assert not hasattr(cifar.features, "pool0")
    assert cifar(torch.randn(2, 3, 32, 32)).shape == (2, 2)


def test_min_image_size():
    assert min_image_size("imagenet", 4) == 29
    assert output_size(29, "imagenet", 4) == 1 and output_size(28, "imagenet", 4) == 0
    assert min_image_size("cifar", 3) == 4
    model = create_model("densenet121").eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 29, 29)).shape == (1, 1000)


def test_memory_efficient_gives_the_same_outputs_and_gradients():
    torch.manual_seed(1)
    plain = create_model("densenet_bc100_k12", block_config=(3, 3, 3))
    efficient = create_model("densenet_bc100_k12", block_config=(3, 3, 3), memory_efficient=True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), efficient.eval()(x))
    plain.train()(x).square().sum().backward()
    efficient.train()(x).square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_memory_efficient_scripts_and_exports():
    model = create_model("densenet40_k12", block_config=(2, 2, 2), memory_efficient=True)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        # TorchScript's executor may pick other kernels than eager's: float32 round-off only.
        torch.testing.assert_close(torch.jit.script(model)(x), expected, rtol=1e-4, atol=1e-5)
        program = torch.export.export(model, (x,))
        torch.testing.assert_close(program.module()(x), expected)


@pytest.mark.parametrize("name", full_size_is_slow(list(TORCHVISION_PARAMS) + list(PAPER_CIFAR_PARAMS)))
def test_every_preset_scripts(name):
    model = create_model(name)
    size = get_model_info(name).image_size
    x = torch.randn(2, 3, size, size)
    scripted = torch.jit.script(model)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(growth_rate=0), "growth_rate"),
        (dict(growth_rate=2.5), "growth_rate"),
        (dict(bn_size=-1), "bn_size"),
        (dict(compression=0.0), "compression"),
        (dict(compression=1.5), "compression"),
        (dict(block_config=()), "block_config"),
        (dict(block_config=(6, 0)), "block_config"),
        (dict(drop_rate=1.0), "drop_rate"),
        (dict(stem="resnet"), "stem"),
        (dict(num_classes=0), "num_classes"),
        (dict(growth_rate=1, block_config=(1, 1), num_init_features=1, compression=0.1), "no channels"),
    ],
)
def test_invalid_configurations_are_refused(kwargs, message):
    with pytest.raises(DenseNetTRTError, match=message):
        DenseNet(**kwargs)


def test_unknown_model_suggests_the_nearest_names():
    with pytest.raises(DenseNetTRTError, match="did you mean densenet121"):
        create_model("densenet12")


def test_unknown_override_is_refused():
    with pytest.raises(DenseNetTRTError, match="unknown DenseNet argument"):
        create_model("densenet121", depth=3)


def test_create_model_returns_eval_mode_with_overrides():
    model = create_model("densenet_bc100_k12", num_classes=3, block_config=(1, 1, 1))
    assert not model.training
    assert model.classifier.out_features == 3
    assert len(model.block_config) == 3


def test_public_api():
    for name in ("create_model", "list_models", "load_weights", "export_model", "BatchRange"):
        assert hasattr(densenet_trt, name)
