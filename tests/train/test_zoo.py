"""The architectures of the course reports: exact parameter counts at width 1.0, torchvision layouts, variants.

Width-1.0 models are built on the ``meta`` device (shapes only, no memory, no initialisation
cost); torchvision's constructors are called with ``weights=None`` (nothing is downloaded).
"""
import pytest
import torch
import torch.nn as nn
import torchvision

from dlcv.train import create_model, list_models, model_config, model_info

from .test_models import NARROW, conv, fcn_trunk_params, n_params, on_meta, vgg16_conv_params

tvm = torchvision.models


def layout(model: nn.Module, skip: tuple[str, ...] = ()) -> list[tuple]:
    """Every module's name, type and the settings that decide its weights and its output."""
    rows = []
    for name, m in model.named_modules():
        if any(name == s or name.startswith(s + ".") for s in skip):
            continue
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            rows.append((name, type(m).__name__, m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation, m.groups, m.bias is not None))
        elif isinstance(m, nn.Linear):
            rows.append((name, "Linear", m.in_features, m.out_features, m.bias is not None))
        elif isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            rows.append((name, type(m).__name__, tuple(p.shape for p in m.parameters()), m.eps))
        elif isinstance(m, nn.MaxPool2d):
            rows.append((name, "MaxPool2d", m.kernel_size, m.stride, m.padding, m.ceil_mode))
        elif isinstance(m, (nn.AdaptiveAvgPool2d, nn.Dropout)):
            rows.append((name, type(m).__name__, getattr(m, "output_size", getattr(m, "p", None))))
        elif type(m).__name__ == "StochasticDepth":
            rows.append((name, "StochasticDepth", m.p))
    return rows


def state_layout(model: nn.Module) -> list[tuple[str, tuple]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


# ---------------------------------------------------------------------------------------------
# exact sizes at width 1.0 and the default number of classes


TORCHVISION_TWINS = {
    "resnet50": (lambda n: tvm.resnet50(weights=None, num_classes=n), 23_641_217),
    "alexnet": (lambda n: tvm.alexnet(weights=None, num_classes=n), 57_208_690),
    "efficientnet_b2": (lambda n: tvm.efficientnet_b2(weights=None, num_classes=n), 7_771_444),
    "deeplabv3_resnet50": (
        lambda n: tvm.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=n, aux_loss=False),
        39_638_869,
    ),
    "vgg16_bn": (lambda n: tvm.vgg16_bn(weights=None, num_classes=n), 134_473_842),
}


@pytest.mark.parametrize("name", sorted(TORCHVISION_TWINS))
def test_torchvision_twins_match_exactly(name):
    """Same parameter count, module layout and state-dict names/shapes: torchvision weight files load unchanged."""
    build_ref, expected = TORCHVISION_TWINS[name]
    n = model_info(name).default_num_classes
    ours, ref = on_meta(lambda: create_model(name)), on_meta(lambda: build_ref(n))
    assert n_params(ours) == n_params(ref) == expected
    assert layout(ours) == layout(ref)
    assert state_layout(ours) == state_layout(ref)


def test_convnext_base_with_the_course_head():
    ours = on_meta(lambda: create_model("convnext_base"))  # 50 classes

    def reference():
        model = tvm.convnext_base(weights=None)
        model.classifier[2] = nn.Sequential(nn.Linear(1024, 500), nn.ReLU(), nn.Linear(500, 50))
        return model

    ref = on_meta(reference)
    assert n_params(ours) == n_params(ref) == 88_104_014
    assert layout(ours, skip=("classifier",)) == layout(ref, skip=("classifier",))
    head = [m for m in ours.classifier]
    assert [type(m).__name__ for m in head] == ["LayerNorm2d", "Flatten", "Linear", "ReLU", "Linear"]
    assert (head[2].in_features, head[2].out_features, head[4].in_features, head[4].out_features) == (1024, 500, 500, 50)


def test_deeplabv3_aux_head_matches_torchvision():
    ours = on_meta(lambda: create_model("deeplabv3_resnet50", aux=True))
    ref = on_meta(lambda: tvm.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, num_classes=21, aux_loss=True))
    assert n_params(ours) == n_params(ref) == 42_004_074
    assert state_layout(ours) == state_layout(ref)


def test_cnn_small_is_model_a():
    model = on_meta(lambda: create_model("cnn_small"))
    n = 50
    expected = conv(3, 32, 3) + conv(32, 64, 3) + (64 * 8 * 8 * 128 + 128) + (128 * n + n)
    assert n_params(model) == expected == 550_258
    assert [type(m).__name__ for m in model.features] == ["Conv2d", "ReLU", "MaxPool2d"] * 2


def test_fcn16s_exact_parameter_count():
    n = 21
    expected = fcn_trunk_params(n) + conv(512, n, 1) + conv(n, n, 4, False) + conv(n, n, 32, False)
    assert n_params(on_meta(lambda: create_model("fcn16s"))) == expected == 134_815_994


@pytest.mark.parametrize("name", ["fcn8s_deconv", "fcn32s_deconv"])
def test_fcn_deconv_exact_parameter_count(name):
    n = 21
    chans = (512, 512, 256, 128, 64, 32)
    decoder = sum(conv(a, b, 3) + 2 * b for a, b in zip(chans, chans[1:]))  # transposed conv + BatchNorm
    expected = vgg16_conv_params() + decoder + conv(32, n, 1)
    assert n_params(on_meta(lambda: create_model(name))) == expected == 18_644_373


# ---------------------------------------------------------------------------------------------
# each model's default preprocessing is the one its weights were published with


PUBLISHED_WEIGHTS = {  # the torchvision weights whose layout each model loads
    "vgg16_bn": tvm.VGG16_BN_Weights.IMAGENET1K_V1,
    "resnet50": tvm.ResNet50_Weights.IMAGENET1K_V1,
    "alexnet": tvm.AlexNet_Weights.IMAGENET1K_V1,
    "efficientnet_b2": tvm.EfficientNet_B2_Weights.IMAGENET1K_V1,
    "convnext_base": tvm.ConvNeXt_Base_Weights.IMAGENET1K_V1,
    "deeplabv3_resnet50": tvm.segmentation.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
    **dict.fromkeys(("fcn32s", "fcn16s", "fcn8s", "fcn8s_deconv", "fcn32s_deconv"), tvm.VGG16_Weights.IMAGENET1K_V1),
}
INTERPOLATION_NAMES = {"InterpolationMode.BILINEAR": "linear", "InterpolationMode.BICUBIC": "cubic"}


@pytest.mark.parametrize("name", sorted(PUBLISHED_WEIGHTS))
def test_default_preprocessing_is_the_published_weights(name):
    spec, published = model_config(name).preprocess, PUBLISHED_WEIGHTS[name].transforms()
    assert (spec.color_order, spec.mean, spec.std) == ("rgb", tuple(published.mean), tuple(published.std))
    assert spec.interpolation == INTERPOLATION_NAMES[str(published.interpolation)]
    if model_info(name).task == "segmentation":
        assert spec.resize == "none"  # fully convolutional: the image keeps its size
    else:  # torchvision's evaluation transform: shorter side to resize_size, centre crop_size
        assert spec.resize == "shorter_center_crop"
        assert (spec.resize_shorter, spec.size) == (published.resize_size[0], (published.crop_size[0],) * 2)


def test_every_model_but_the_course_one_has_published_preprocessing():
    assert set(list_models()) - set(PUBLISHED_WEIGHTS) == {"cnn_small"}
    assert model_config("cnn_small").preprocess.size == (32, 32)  # model A's input: the course's 32×32 images


# ---------------------------------------------------------------------------------------------
# the FCN16s and deconvolution variants compute what their papers/reports describe


def randomised(model: nn.Module, seed: int = 0, std: float = 0.1) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


def test_fcn16s_is_the_papers_fcn16s():
    """Reference forward written out as in the FCN paper's code: score_pool4 cropped at 5, upscore16 at 27."""
    model = randomised(create_model("fcn16s", num_classes=3, width=NARROW))
    assert not hasattr(model, "score_pool3") and not hasattr(model, "upscore8")
    for layer, (k, s) in (("upscore2", (4, 2)), ("upscore16", (32, 16))):
        up = getattr(model, layer)
        assert (up.kernel_size, up.stride, up.bias) == ((k, k), (s, s), None)
    x = torch.randn(2, 3, 45, 61)
    with torch.no_grad():
        pool4_index = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)][3]
        pool4 = model.features[: pool4_index + 1](x)
        h = model.features[pool4_index + 1 :](pool4)
        h = model.score_fr(model.relu7(model.fc7(model.relu6(model.fc6(h)))))
        up2 = model.upscore2(h)
        h = up2 + model.score_pool4(pool4)[:, :, 5 : 5 + up2.shape[2], 5 : 5 + up2.shape[3]]
        want = model.upscore16(h)[:, :, 27 : 27 + 45, 27 : 27 + 61]
        assert torch.allclose(model(x), want, atol=1e-6)


def _deconv_reference(model, x, skip):
    """The reports' decoder at a multiple-of-32 size (no crops needed): bn(relu(deconv(x)) + pool)."""
    pools = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]
    feats, h, start = [], x, 0
    for p in pools:
        h = model.features[start : p + 1](h)
        feats.append(h)
        start = p + 1
    x3, x4, x5 = feats[2], feats[3], feats[4]
    relu = torch.relu
    score = relu(model.deconv1(x5))
    score = model.bn1(score + x4 if skip else score)
    score = relu(model.deconv2(score))
    score = model.bn2(score + x3 if skip else score)
    score = model.bn3(relu(model.deconv3(score)))
    score = model.bn4(relu(model.deconv4(score)))
    score = model.bn5(relu(model.deconv5(score)))
    return model.classifier(score)


@pytest.mark.parametrize("skip", [True, False])
def test_fcn8s_deconv_decoder(skip):
    model = randomised(create_model("fcn8s_deconv", num_classes=4, width=NARROW, skip=skip))
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.allclose(model(x), _deconv_reference(model, x, skip), atol=1e-5)
    for k in range(1, 6):
        d = getattr(model, f"deconv{k}")
        assert (d.kernel_size, d.stride, d.padding, d.output_padding) == ((3, 3), (2, 2), (1, 1), (1, 1))


def test_skip_connections_change_the_output_but_not_the_parameters():
    torch.manual_seed(0)
    with_skip = create_model("fcn8s_deconv", num_classes=4, width=NARROW).eval()  # He initialisation
    without = create_model("fcn32s_deconv", num_classes=4, width=NARROW).eval()
    without.load_state_dict(with_skip.state_dict())  # same names and shapes
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = with_skip(x), without(x)
    assert (a - b).abs().max() > 0.1 * a.abs().max() > 0
    assert create_model("fcn8s_deconv", num_classes=4, width=NARROW, skip=False).skip is False


def test_deeplab_returns_one_tensor_and_aux_on_request():
    model = create_model("deeplabv3_resnet50", num_classes=3, width=NARROW, aux=True).eval()
    x = torch.randn(1, 3, 40, 52)
    with torch.no_grad():
        outputs = model.forward_outputs(x)
        out = model(x)
    assert isinstance(out, torch.Tensor) and torch.equal(out, outputs["out"])
    assert outputs["aux"].shape == out.shape == (1, 3, 40, 52)
    assert create_model("deeplabv3_resnet50", num_classes=3, width=NARROW).aux_classifier is None  # off by default


@pytest.mark.parametrize("name", ["fcn16s", "fcn8s_deconv", "deeplabv3_resnet50"])
def test_more_odd_sizes_give_logits_at_the_input_size(name):
    model = create_model(name, num_classes=2, width=NARROW).eval()
    with torch.no_grad():
        for size in [(33, 47), (50, 35), (65, 129)]:
            assert model(torch.randn(1, 3, *size)).shape == (1, 2, *size)


def test_width_scales_the_new_architectures():
    quarter = 0.25
    assert create_model("resnet50", num_classes=2, width=quarter).fc.in_features == 512
    assert create_model("alexnet", num_classes=2, width=quarter).classifier[-1].in_features == 1024
    assert create_model("convnext_base", num_classes=2, width=quarter).classifier[-1].in_features == 125
    assert create_model("cnn_small", num_classes=2, width=quarter).classifier[-1].in_features == 32
    # EfficientNet rounds channels to multiples of 8, as torchvision does: 1408 * 0.25 -> 352
    assert create_model("efficientnet_b2", num_classes=2, width=quarter).classifier[-1].in_features == 352
    assert create_model("fcn8s_deconv", num_classes=2, width=quarter).classifier.in_channels == 8


@pytest.mark.slow  # two full-width VGG16s
def test_fcn8s_batch_norm_variant_loads_vgg16_bn_weights(tmp_path):
    """FCN8s with a batch-norm encoder (the demo's from-scratch choice) takes torchvision vgg16_bn weights."""
    import torch
    import torchvision

    from dlcv.train import create_model
    from dlcv.runtime.errors import DlcvError
    from dlcv.train.pretrained import load_pretrained

    vgg = torchvision.models.vgg16_bn(weights=None)
    path = tmp_path / "vgg16_bn.pth"
    torch.save(vgg.state_dict(), path)
    fcn = create_model("fcn8s", num_classes=3, batch_norm=True)
    report = load_pretrained(fcn, "fcn8s", path)
    assert torch.equal(fcn.features[1].running_var, vgg.features[1].running_var)
    assert torch.equal(fcn.fc6.weight, vgg.classifier[0].weight.view_as(fcn.fc6.weight))
    assert len(report.loaded) == len([k for k in vgg.state_dict() if k.startswith("features.")]) + 4
    plain = create_model("fcn8s", num_classes=3, width=0.0625)
    with pytest.raises(DlcvError, match="VGG16-BN"):
        load_pretrained(plain, "fcn8s", path)
