"""Transfer: pretrained weights from local files (torchvision, dlcv, course FCN names) and fine-tuning modes."""
import pytest
import torch
import torchvision

from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.train import create_model, list_models, model_config, model_info
from dlcv.train.models.deeplab import DeepLabV3Logits
from dlcv.train.models.fcn import FCN
from dlcv.train.models.vgg_weights import COURSE_CONV_NAMES, course_key
from dlcv.train.models.fcn_deconv import FCNDeconv
from dlcv.train.models.vgg import VGG16Classifier, vgg16_conv_indices
from dlcv.train.pretrained import (
    HEAD_REPLACED,
    MISSING_IN_MODEL,
    SHAPE_MISMATCH,
    load_pretrained,
    output_layer,
    set_finetune,
)

NARROW = 0.0625


def randomised(model, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.normal_(0, 0.1)
    return model


def save(tmp_path, name, state):
    path = tmp_path / name
    torch.save(state, path)
    return path


def assert_copied(model, state, names):
    own = model.state_dict()
    for name in names:
        assert torch.equal(own[name], state[name]), name


@pytest.mark.parametrize("arch", list_models())
def test_every_registered_model_declares_its_transfer_rules(arch):
    config = model_config(arch)
    model = create_model(arch, num_classes=3, width=NARROW)
    modules = dict(model.named_modules())
    assert any(name in modules for name in config.head)  # a family shares one head list (fcn32s has no score_pool4)
    stages = config.stages(model)
    assert len(stages) >= 2 and all(name in modules for stage in stages for name in stage)


def test_an_unknown_architecture_is_refused_with_the_known_ones(tmp_path):
    model = create_model("cnn_small", num_classes=3, width=NARROW)
    with pytest.raises(DlcvError, match="unknown model 'unet'.*choose one of: .*cnn_small"):
        load_pretrained(model, "unet", save(tmp_path, "w.pth", model.state_dict()))
    with pytest.raises(DlcvError, match="unknown model 'unet'"):
        set_finetune(model, "unet", "head")


# ---------------------------------------------------------------------------------------------
# load_pretrained


def test_torchvision_resnet50_into_resnet50_and_deeplab_backbone(tmp_path):
    ref = torchvision.models.resnet50(weights=None)
    randomised(ref)  # so that running statistics are not the defaults either
    path = save(tmp_path, "resnet50.pth", ref.state_dict())
    state = ref.state_dict()

    model = create_model("resnet50", num_classes=7)
    report = load_pretrained(model, "resnet50", path)
    assert len(report.loaded) == len(state) - 2 == 318
    assert [(s.name, s.reason) for s in report.skipped] == [("fc.weight", HEAD_REPLACED), ("fc.bias", HEAD_REPLACED)]
    assert report.kept == ("fc.weight", "fc.bias")
    assert_copied(model, state, [k for k in state if not k.startswith("fc.")])
    summary = report.summary()
    assert summary.startswith(f"{path}: loaded 318 tensors, skipped 2: fc.weight (head replaced: (1000, 2048) in the file vs (7, 2048) in the model)")

    seg = create_model("deeplabv3_resnet50", num_classes=3)
    report = load_pretrained(seg, "deeplabv3_resnet50", path)
    assert len(report.loaded) == 318 and all(name.startswith("backbone.") for name in report.loaded)
    assert {(s.name, s.reason) for s in report.skipped} == {("fc.weight", MISSING_IN_MODEL), ("fc.bias", MISSING_IN_MODEL)}
    assert torch.equal(seg.backbone.layer4[2].conv3.weight, ref.layer4[2].conv3.weight)
    assert torch.equal(seg.backbone.bn1.running_var, ref.bn1.running_var)
    assert all(k.startswith("classifier.") for k in report.kept)


@pytest.mark.parametrize("arch", ["alexnet", "efficientnet_b2", "convnext_base", "vgg16_bn", "cnn_small"])
def test_torchvision_layout_state_dicts_load_with_a_new_head(arch, tmp_path):
    """A file in the model's torchvision layout (test_zoo proves ours equal at width 1.0) for 1000 classes."""
    source = randomised(create_model(arch, num_classes=1000, width=NARROW))
    state = source.state_dict()
    path = save(tmp_path, f"{arch}.pth", state)
    model = create_model(arch, num_classes=4, width=NARROW)
    report = load_pretrained(model, arch, path)
    head_name, _ = output_layer(model)
    head_keys = {f"{head_name}.weight", f"{head_name}.bias"}
    assert {s.name for s in report.skipped} == head_keys
    assert {s.reason for s in report.skipped} == {HEAD_REPLACED}
    assert len(report.loaded) == len(state) - 2
    assert_copied(model, state, report.loaded)


def test_torchvision_deeplabv3_state_dict_with_aux_head(tmp_path):
    source = randomised(create_model("deeplabv3_resnet50", num_classes=21, width=NARROW, aux=True))
    path = save(tmp_path, "deeplab.pth", source.state_dict())
    model = create_model("deeplabv3_resnet50", num_classes=5, width=NARROW)  # aux off
    report = load_pretrained(model, "deeplabv3_resnet50", path)
    reasons = {s.name: s.reason for s in report.skipped}
    assert reasons.pop("classifier.4.weight") == reasons.pop("classifier.4.bias") == HEAD_REPLACED
    assert reasons and set(reasons.values()) == {MISSING_IN_MODEL} and all(k.startswith("aux_classifier.") for k in reasons)
    assert_copied(model, source.state_dict(), report.loaded)
    assert report.kept == ("classifier.4.weight", "classifier.4.bias")

    classifier = create_model("resnet50", num_classes=5, width=NARROW)  # the backbone alone, the other way round
    report = load_pretrained(classifier, "resnet50", path)
    assert len(report.loaded) == len(classifier.state_dict()) - 2 and report.kept == ("fc.weight", "fc.bias")
    assert torch.equal(classifier.layer3[0].conv2.weight, source.backbone.layer3[0].conv2.weight)


def narrow_vgg16_state(seed=0):
    """A torchvision ``vgg16`` (no batch norm) state dict at narrow width: features.N, classifier.0/3/6."""
    return randomised(VGG16Classifier(num_classes=1000, width=NARROW, batch_norm=False), seed).state_dict()


@pytest.mark.parametrize("arch", ["fcn32s", "fcn16s", "fcn8s"])
def test_vgg16_into_the_fcn_family(arch, tmp_path):
    state = narrow_vgg16_state()
    path = save(tmp_path, "vgg16.pth", state)
    model = create_model(arch, num_classes=3, width=NARROW)
    report = load_pretrained(model, arch, path)
    assert len(report.loaded) == 26 + 4  # 13 convolutions and fc6/fc7, weight and bias each
    assert {(s.name, s.reason) for s in report.skipped} == {("classifier.6.weight", MISSING_IN_MODEL), ("classifier.6.bias", MISSING_IN_MODEL)}
    assert torch.equal(model.features[28].weight, state["features.28.weight"])
    assert torch.equal(model.fc6.weight, state["classifier.0.weight"].view(model.fc6.weight.shape))
    assert torch.equal(model.fc7.bias, state["classifier.3.bias"])
    assert report.source == str(path)


def test_vgg16_into_fcn8s_deconv_encoder(tmp_path):
    state = narrow_vgg16_state()
    model = create_model("fcn8s_deconv", num_classes=3, width=NARROW)
    report = load_pretrained(model, "fcn8s_deconv", save(tmp_path, "vgg16.pth", state))
    assert len(report.loaded) == 26
    assert {s.name for s in report.skipped} == {f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")}
    assert_copied(model, state, report.loaded)


def test_vgg_flavours_are_not_mixed(tmp_path):
    plain = save(tmp_path, "vgg16.pth", narrow_vgg16_state())
    with_bn = save(tmp_path, "vgg16_bn.pth", create_model("vgg16_bn", num_classes=10, width=NARROW).state_dict())
    with pytest.raises(DlcvError, match="vgg16.pth for vgg16_bn: the file holds VGG16 \\(without batch norm\\) encoder weights, but the model needs VGG16-BN"):
        load_pretrained(create_model("vgg16_bn", num_classes=2, width=NARROW), "vgg16_bn", plain)
    with pytest.raises(DlcvError, match="vgg16_bn.pth for fcn8s: the file holds VGG16-BN encoder weights, but the model needs VGG16"):
        load_pretrained(create_model("fcn8s", num_classes=2, width=NARROW), "fcn8s", with_bn)
    with pytest.raises(DlcvError, match="for fcn8s_deconv: the file holds VGG16-BN encoder weights"):
        load_pretrained(create_model("fcn8s_deconv", num_classes=2, width=NARROW), "fcn8s_deconv", with_bn)
    # an FCN built with a batch-norm encoder takes the VGG16-BN file and refuses the plain one
    bn_fcn = create_model("fcn8s", num_classes=2, width=NARROW, batch_norm=True)
    assert len(load_pretrained(bn_fcn, "fcn8s", with_bn).loaded) == 13 * 7 + 4  # conv w/b, BN w/b/mean/var/count; fc6, fc7
    with pytest.raises(DlcvError, match="holds VGG16 \\(without batch norm\\) encoder weights, but the model needs VGG16-BN"):
        load_pretrained(bn_fcn, "fcn8s", plain)


def course_named(state):
    """An FCN state dict renamed to the course's layer names (conv1_1 ... conv5_3)."""
    to_course = {f"features.{i}": name for name, i in zip(COURSE_CONV_NAMES, vgg16_conv_indices())}
    out = {}
    for key, tensor in state.items():
        prefix, _, leaf = key.rpartition(".")
        out[f"{to_course.get(prefix, prefix)}.{leaf}"] = tensor
    return out


def test_course_fcn_names_key_map(tmp_path):
    assert course_key("conv1_1.weight") == "features.0.weight"
    assert course_key("conv3_2.bias") == "features.12.bias"
    assert course_key("conv5_3.weight") == "features.28.weight"
    assert course_key("upscore_pool4.weight") == "upscore_pool4.weight"

    source = randomised(create_model("fcn8s", num_classes=3, width=NARROW)).eval()
    course = course_named(source.state_dict())
    assert {"conv1_1.weight", "conv5_3.bias", "fc6.weight", "score_pool3.bias", "upscore8.weight"} <= set(course)
    assert not any(k.startswith("features.") for k in course)
    path = save(tmp_path, "course_fcn8s.pth", {"epoch": 3, "arch": "FCN8s", "model_state_dict": course})  # pytorch-fcn style

    model = create_model("fcn8s", num_classes=3, width=NARROW).eval()
    report = load_pretrained(model, "fcn8s", path)
    assert len(report.loaded) == len(course) and not report.skipped and not report.kept
    x = torch.randn(1, 3, 45, 53)
    with torch.no_grad():
        assert torch.equal(model(x), source(x))

    fcn16s = create_model("fcn16s", num_classes=3, width=NARROW)
    report = load_pretrained(fcn16s, "fcn16s", path)
    assert {s.name for s in report.skipped} == {"score_pool3.weight", "score_pool3.bias", "upscore_pool4.weight", "upscore8.weight"}
    assert report.kept == ("upscore16.weight",)


def test_dlcv_checkpoint_as_pretrained(make_checkpoint):
    ckpt = make_checkpoint("resnet50")  # narrow, 3 classes
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    model = create_model("resnet50", num_classes=5, width=NARROW)
    report = load_pretrained(model, "resnet50", ckpt)
    assert {s.name for s in report.skipped_for(HEAD_REPLACED)} == {"fc.weight", "fc.bias"}
    assert_copied(model, saved, report.loaded)
    assert len(report.loaded) == len(saved) - 2


def test_wrapper_prefixes_are_removed(tmp_path):
    source = randomised(create_model("cnn_small", num_classes=3, width=NARROW))
    path = save(tmp_path, "ddp.pth", {f"module.{k}": v for k, v in source.state_dict().items()})
    model = create_model("cnn_small", num_classes=3, width=NARROW)
    assert len(load_pretrained(model, "cnn_small", path).loaded) == len(source.state_dict())
    assert_copied(model, source.state_dict(), source.state_dict())


def test_backbone_shape_mismatch_is_reported_and_nothing_fitting_is_an_error(tmp_path):
    wide = create_model("cnn_small", num_classes=3, width=0.125).state_dict()
    narrow = create_model("cnn_small", num_classes=3, width=NARROW)
    with pytest.raises(DlcvError, match="no tensor of this file fits the model's backbone.*features.0.weight \\(shape mismatch"):
        load_pretrained(narrow, "cnn_small", save(tmp_path, "wide.pth", wide))
    mixed = dict(narrow.state_dict(), **{"features.3.weight": wide["features.3.weight"]})
    report = load_pretrained(narrow, "cnn_small", save(tmp_path, "mixed.pth", mixed))
    (bad,) = report.skipped
    assert (bad.name, bad.reason) == ("features.3.weight", SHAPE_MISMATCH)
    assert "features.3.weight (shape mismatch: (8, 4, 3, 3) in the file vs (4, 2, 3, 3) in the model)" in report.summary()


def test_pickled_objects_are_refused(tmp_path):
    model = create_model("cnn_small", num_classes=3, width=NARROW)
    pickled = save(tmp_path, "whole_model.pth", model)  # the module object, not its state dict
    with pytest.raises(DlcvError, match="whole_model.pth: refused: the file holds pickled Python objects"):
        load_pretrained(model, "cnn_small", pickled)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(DlcvError, match="garbage.pth: not a readable PyTorch weights file"):
        load_pretrained(model, "cnn_small", garbage)
    with pytest.raises(DlcvError, match="missing.pth: weights file not found"):
        load_pretrained(model, "cnn_small", tmp_path / "missing.pth")
    no_tensors = save(tmp_path, "numbers.pth", {"epoch": 3})
    with pytest.raises(DlcvError, match="numbers.pth: expected a state dict of tensors"):
        load_pretrained(model, "cnn_small", no_tensors)


# ---------------------------------------------------------------------------------------------
# set_finetune


def _n(params):
    return sum(p.numel() for p in params)


def _final_layer(model, arch):
    if model_info(arch).task == "classification":
        return output_layer(model)[1]
    if isinstance(model, FCN):
        return model.score_fr
    if isinstance(model, FCNDeconv):
        return model.classifier
    assert isinstance(model, DeepLabV3Logits), type(model)
    return model.classifier[4]


@pytest.mark.parametrize("arch", list_models())
def test_head_mode_trains_only_the_head_and_stages_unfreeze_in_order(arch):
    model = create_model(arch, num_classes=3, width=NARROW)
    total = _n(model.parameters())
    head = set_finetune(model, arch, "head")
    assert head == _n(p for p in model.parameters() if p.requires_grad)
    assert 0 < head < total
    assert all(p.requires_grad for p in _final_layer(model, arch).parameters())
    first = next(model.parameters())  # the stem's first convolution
    assert not first.requires_grad

    stages = model_config(arch).stages(model)
    counts = [set_finetune(model, arch, "head", trainable_stages=k) for k in range(len(stages) + 1)]
    assert counts[0] == head and all(a < b for a, b in zip(counts, counts[1:])) and counts[-1] <= total, counts
    assert set_finetune(model, arch, "all") == total


def test_frozen_parameters_get_no_gradient_and_frozen_batchnorm_keeps_its_statistics():
    model = create_model("resnet50", num_classes=3, width=NARROW)
    trainable = set_finetune(model, "resnet50", "head")
    assert trainable == model.fc.weight.numel() + model.fc.bias.numel()
    before = model.layer1[0].bn1.running_mean.clone()
    model.train()
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    assert model.fc.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith("fc."))
    assert torch.equal(model.layer1[0].bn1.running_mean, before)  # inference-mode batch norm while training

    set_finetune(model, "resnet50", "all")
    model.train()
    model(torch.randn(4, 3, 32, 32))
    assert not torch.equal(model.layer1[0].bn1.running_mean, before)


def test_convnext_freeze_all_but_the_last_stages():
    model = create_model("convnext_base", num_classes=3, width=NARROW)
    n = set_finetune(model, "convnext_base", "head", trainable_stages=1)
    expected = _n([*model.classifier.parameters(), *model.features[6].parameters(), *model.features[7].parameters()])
    assert n == expected
    assert not any(p.requires_grad for p in model.features[5].parameters())
    n2 = set_finetune(model, "convnext_base", "head", trainable_stages=2)
    assert n2 == expected + _n([*model.features[4].parameters(), *model.features[5].parameters()])


def test_finetune_usage_errors():
    model = create_model("convnext_base", num_classes=3, width=NARROW)
    with pytest.raises(DlcvUsageError, match="--finetune must be one of all, head"):
        set_finetune(model, "convnext_base", "partial")
    with pytest.raises(DlcvUsageError, match="4 backbone stages; trainable stages must be 0..4, got 5"):
        set_finetune(model, "convnext_base", "head", trainable_stages=5)
    with pytest.raises(DlcvUsageError, match="apply to --finetune head"):
        set_finetune(model, "convnext_base", "all", trainable_stages=1)
