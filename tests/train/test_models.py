"""The shared model tester: every registered model (forward shapes, penultimate features, ONNX parity),
plus the exact sizes of the FCN family (the other published architectures: test_zoo.py)."""
import pytest
import torch
import torchvision

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.preprocess import PreprocessSpec
from dlcv.train import ModelConfig, create_model, list_models, model_info, register_model
from dlcv.train.models.fcn import bilinear_kernel
from dlcv.train.models.vgg import VGG16Classifier
from dlcv.train.pretrained import output_layer

NARROW = 0.0625
SIZES = [(32, 32), (64, 64), (97, 131)]
MIN_SIDE = {"alexnet": 63}  # torchvision's AlexNet: three stride-2 pools after a stride-4 convolution


def on_meta(build):
    """Build on the meta device: shapes without memory or initialisation (for width-1.0 sizes)."""
    with torch.device("meta"):
        return build()


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def vgg16_conv_params():
    cfg = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
           (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]  # fmt: skip
    return sum(conv(a, b, 3) for a, b in cfg)


def fcn_trunk_params(n):
    return vgg16_conv_params() + conv(512, 4096, 7) + conv(4096, 4096, 1) + conv(4096, n, 1)


def test_registry_round_trip_and_unknown_name():
    names = list_models()
    assert {
        "cnn_small", "vgg16_bn", "resnet50", "alexnet", "efficientnet_b2", "convnext_base",
        "fcn32s", "fcn16s", "fcn8s", "fcn8s_deconv", "fcn32s_deconv", "deeplabv3_resnet50",
    } <= set(names)  # fmt: skip
    for name in names:
        assert model_info(name).name == name
    with pytest.raises(DlcvError, match="choose one of: .*fcn8s"):
        create_model("fcn9s", num_classes=3)


def test_duplicate_registration_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_model("fcn8s", ModelConfig(task="segmentation", num_classes=2, preprocess=PreprocessSpec()))(lambda **_: None)
    with pytest.raises(ValueError, match="task must be segmentation or classification"):
        ModelConfig(task="detection", num_classes=2, preprocess=PreprocessSpec())


def test_fcn8s_exact_parameter_count():
    n = 12
    expected = fcn_trunk_params(n) + conv(512, n, 1) + conv(256, n, 1) + 2 * conv(n, n, 4, False) + conv(n, n, 16, False)
    assert n_params(on_meta(lambda: create_model("fcn8s", num_classes=n))) == expected == 134_360_420


def test_fcn32s_exact_parameter_count():
    n = 12
    expected = fcn_trunk_params(n) + conv(n, n, 64, False)
    assert n_params(on_meta(lambda: create_model("fcn32s", num_classes=n))) == expected


def test_vgg16_bn_matches_torchvision():
    ours = on_meta(lambda: create_model("vgg16_bn", num_classes=50))
    ref = on_meta(lambda: torchvision.models.vgg16_bn(weights=None, num_classes=50))
    assert n_params(ours) == n_params(ref) == 134_473_842
    # same layout, so torchvision-format state dicts load unchanged
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]


@pytest.mark.parametrize(
    "name, size", [(name, size) for name in list_models() for size in SIZES if min(size) >= MIN_SIDE.get(name, 32)]
)
def test_forward_shapes(name, size):
    info = model_info(name)
    model = create_model(name, num_classes=5, width=NARROW).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    if info.task == "segmentation":
        assert out.shape == (2, 5, *size)  # logits at the input size, odd sizes included
    else:
        assert out.shape == (2, 5)


@pytest.mark.parametrize("name", [n for n in list_models() if model_info(n).task == "classification"])
def test_forward_features_is_the_input_of_the_class_layer(name):
    model = create_model(name, num_classes=5, width=NARROW).eval()
    _, last = output_layer(model)
    assert last.out_features == 5
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (2, last.in_features)
        assert torch.allclose(last(features), model(x), atol=1e-6)


# Exports over ~20 s on the 2-core development machine, and those the default suite already
# exports in tests/export/test_onnx_export.py (fcn8s, fcn32s, vgg16_bn), run with -m slow.
SLOW_EXPORTS = {"efficientnet_b2", "convnext_base", "deeplabv3_resnet50", "fcn8s", "fcn32s", "vgg16_bn"}
SLOW_EXPORTS |= {"fcn32s_deconv"}  # fcn8s_deconv's layers without its skips (test_zoo checks that forward)
ONNX_FP32_BAR = 1e-5  # measured 7e-9..7e-6 for these narrow models (the largest: AlexNet, logits up to ~6)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_EXPORTS else n for n in list_models()]
)
def test_onnx_export_parity(name, make_checkpoint, tmp_path):
    """Every model exports (dynamic batch; dynamic height/width for segmentation) and matches PyTorch."""
    from dlcv.export import ExportConfig, export_onnx

    segmentation = model_info(name).task == "segmentation"
    side = max(32, MIN_SIDE.get(name, 32))
    preprocess = None if segmentation else PreprocessSpec(resize="resize", size=(side, side))
    ckpt = make_checkpoint(name, preprocess=preprocess)
    result = export_onnx(ExportConfig(checkpoint=ckpt, out=tmp_path, input_size=(48, 48) if segmentation else None))
    report = result.verification
    assert report.passed and result.exporter == "dynamo"
    assert report.overall["agreement"] == 1.0
    assert report.overall["max_abs_logit_error"] < ONNX_FP32_BAR * max(1.0, report.overall["max_abs_reference_logit"])
    assert report.overall["max_abs_reference_logit"] > 1e-3  # non-trivial logits
    shapes = [r.shape for r in report.rows]
    assert len(set(shapes)) == 2 and all(s[0] >= 2 for s in shapes)
    if segmentation:
        assert result.input_shape == ("batch", 3, "height", "width")
        assert {s[2:] for s in shapes} == {(48, 48), (97, 131)}
    else:
        assert result.input_shape == ("batch", 3, side, side)  # fixed by the preprocessing
        assert {s[2:] for s in shapes} == {(side, side)}


def test_width_scales_channels():
    small = create_model("fcn8s", num_classes=4, width=0.25)
    assert small.features[0].out_channels == 16 and small.fc6.out_channels == 1024


def test_fcn_heads_initialised_as_specified():
    model = create_model("fcn8s", num_classes=3, width=NARROW)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        layer = getattr(model, name)
        assert torch.count_nonzero(layer.weight) == 0 and torch.count_nonzero(layer.bias) == 0
    for name, k in (("upscore2", 4), ("upscore_pool4", 4), ("upscore8", 16)):
        layer = getattr(model, name)
        assert layer.bias is None
        assert torch.equal(layer.weight, bilinear_kernel(3, k))
    # conv1_1 padding 100, ceil-mode pools
    assert model.features[0].padding == (100, 100)
    assert all(m.ceil_mode for m in model.features if isinstance(m, torch.nn.MaxPool2d))


def test_bilinear_kernel_upsamples_constant_image():
    up = torch.nn.ConvTranspose2d(1, 1, 4, stride=2, bias=False)
    up.weight.data.copy_(bilinear_kernel(1, 4))
    out = up(torch.ones(1, 1, 6, 6))
    assert torch.allclose(out[0, 0, 2:-2, 2:-2], torch.ones(10, 10))


def test_plain_vgg16_matches_torchvision_vgg16():
    """The VGG16 (no batch norm) layout the FCN encoders load from, at width 1.0."""
    ours = on_meta(lambda: VGG16Classifier(num_classes=1000, batch_norm=False))
    ref = on_meta(lambda: torchvision.models.vgg16(weights=None))
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in ref.state_dict().items()]


def test_copy_params_from_vgg16_file(tmp_path):
    vgg = VGG16Classifier(num_classes=1000, width=NARROW, batch_norm=False)  # torchvision's vgg16 layout, narrow
    path = tmp_path / "vgg16.pth"
    torch.save(vgg.state_dict(), path)
    fcn = create_model("fcn8s", num_classes=4, width=NARROW)
    report = fcn.copy_params_from_vgg16(path)
    assert len(report.loaded) == 26 + 4  # 13 convs + fc6/fc7, weight and bias each
    assert [s.name for s in report.skipped] == ["classifier.6.weight", "classifier.6.bias"]
    assert torch.equal(fcn.features[28].weight, vgg.features[28].weight)
    assert torch.equal(fcn.fc6.weight, vgg.classifier[0].weight.view(256, 32, 7, 7))
    assert torch.equal(fcn.fc7.bias, vgg.classifier[3].bias)


def test_copy_params_from_vgg16_rejects_non_weights(tmp_path):
    bad = tmp_path / "notes.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(DlcvError, match="notes.pth"):
        create_model("fcn8s", num_classes=2, width=NARROW).copy_params_from_vgg16(bad)
