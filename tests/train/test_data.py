"""Demo data, dataset formats, augmentation, and the training tensor = runtime tensor contract."""
import numpy as np
import pytest

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import read_image, read_label_map, write_png
from dlcv.runtime.preprocess import PreprocessSpec, preprocess_image
from dlcv.train.data.datasets import Augment, ImageDataset
from dlcv.train.data.demo import SEG_CLASSES, DemoSizes, demo_root
from dlcv.runtime.datasets import get_format

SMALL = DemoSizes(seg=(6, 3, 3), cls=(12, 4, 4))


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return demo_root("segmentation", cache, SMALL), demo_root("classification", cache, SMALL)


def test_demo_is_deterministic_and_in_real_layouts(demo, tmp_path):
    seg, cls = demo
    again = demo_root("segmentation", tmp_path, SMALL)
    for name in ("train/0000.png", "trainannot/0000.png", "test/0002.png"):
        assert (seg / name).read_bytes() == (again / name).read_bytes()
    mask = read_label_map(seg / "trainannot" / "0000.png")
    assert mask.shape == (64, 64) and mask.max() <= 10 and (mask > 0).any()
    assert get_format(None, seg).name == "camvid"
    assert get_format(None, cls).name == "dlcv-cls"
    info = get_format(None, seg).info(seg)
    assert info.class_names == SEG_CLASSES and len(info.palette) == 11
    labels = {s.target for s in get_format(None, cls).samples(cls, "train")}
    assert labels <= set(range(10))


# --- the tensors training evaluates are the deployed runtime's (docs/architecture.md contract 2) -------------

VARIED_SIZES = ((16, 16), (21, 13), (9, 31), (40, 27))  # (h, w): square, portrait, landscape, larger


def write_varied_camvid(root, classes: int = 3):
    """A CamVid layout whose images differ in size and aspect ratio (PNG, so decoding is exact)."""
    rng = np.random.default_rng(5)
    for split in ("train", "val"):
        for i, (h, w) in enumerate(VARIED_SIZES):
            write_png(root / split / f"{i}.png", rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
            write_png(root / f"{split}annot" / f"{i}.png", rng.integers(0, classes, size=(h, w), dtype=np.uint8))
    return root


def write_varied_dlcv_cls(root, classes: int = 2):
    """The dlcv-cls layout (``<label>_<index>.png``) with images of different sizes and aspect ratios."""
    rng = np.random.default_rng(6)
    for split in ("train_50", "val_50"):
        for i, (h, w) in enumerate(VARIED_SIZES):
            write_png(root / split / f"{i % classes}_{i}.png", rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    return root


def record_eval_inputs(monkeypatch) -> list:
    """The inputs the training loop's model is evaluated on, one array per image (batch size 1)."""
    from dlcv.train import loop

    seen, build = [], loop.build_model

    def build_and_record(*args, **kwargs):
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(lambda m, inputs: None if m.training else seen.extend(inputs[0].detach().cpu().numpy()))
        return model

    monkeypatch.setattr(loop, "build_model", build_and_record)
    return seen


def train_and_compare_with_runtime(model: str, data, out, monkeypatch, input_size=None) -> dict:
    """Train ``model`` one epoch on ``data`` with the real loop; the tensors it evaluated must be
    what the runtime computes from the image files and the checkpoint's preprocessing record."""
    from dlcv.train.checkpoint import load_checkpoint, metadata_from_checkpoint
    from dlcv.train.config import TrainConfig
    from dlcv.runtime.datasets import open_dataset
    from dlcv.train.loop import train

    seen = record_eval_inputs(monkeypatch)
    cfg = TrainConfig(model=model, data=str(data), out=out, epochs=1, batch_size=1, width=0.0625, input_size=input_size,
                      overlays=0, tensorboard=False, progress=False)  # fmt: skip
    ckpt = load_checkpoint(train(cfg).best)
    spec = metadata_from_checkpoint(ckpt).preprocess  # the record as the runtime reads it
    val = open_dataset(data).samples("val")
    assert len(seen) == len(val) == len(VARIED_SIZES)
    for sample, trained_on in zip(val, seen):
        deployed, _ = preprocess_image(read_image(sample.image), spec)
        assert trained_on.shape == deployed.shape, sample.image
        assert np.array_equal(trained_on, deployed), sample.image
    return ckpt


def test_segmentation_training_evaluates_the_runtime_tensor(tmp_path, monkeypatch):
    ckpt = train_and_compare_with_runtime("fcn8s", write_varied_camvid(tmp_path / "data"), tmp_path / "run", monkeypatch)
    assert ckpt["preprocess"]["resize"] == "none"  # each image at its own size


def test_classification_training_evaluates_the_runtime_tensor(tmp_path, monkeypatch):
    ckpt = train_and_compare_with_runtime("vgg16_bn", write_varied_dlcv_cls(tmp_path / "data"), tmp_path / "run", monkeypatch)
    assert ckpt["preprocess"]["resize"] == "shorter_center_crop"  # vgg16_bn's published 256 -> 224 centre crop


def test_input_size_training_evaluates_the_runtime_tensor(tmp_path, monkeypatch):
    ckpt = train_and_compare_with_runtime(
        "vgg16_bn", write_varied_dlcv_cls(tmp_path / "data"), tmp_path / "run", monkeypatch, input_size=(40, 56)
    )
    assert (ckpt["preprocess"]["resize"], ckpt["preprocess"]["size"]) == ("resize", [40, 56])


@pytest.fixture(scope="module")
def colour_coded(tmp_path_factory):
    """A CamVid-layout set whose pixels are exactly their class's colour (lossless PNG)."""
    root = tmp_path_factory.mktemp("coded")
    rng = np.random.default_rng(3)
    for i in range(4):
        labels = np.kron(rng.integers(0, 11, size=(6, 5)), np.ones((5, 5), np.int64))  # 30×25, not square
        write_png(root / "train" / f"{i}.png", CODE_COLOURS[labels])
        write_png(root / "trainannot" / f"{i}.png", labels.astype(np.uint8))
    return root


CODE_COLOURS = np.random.default_rng(11).integers(0, 256, size=(11, 3)).astype(np.uint8)
IDENTITY = PreprocessSpec(mean=(0, 0, 0), std=(1, 1, 1))


def _pixels(x) -> np.ndarray:
    return np.rint(x.numpy().transpose(1, 2, 0) * 255).astype(np.int64)


@pytest.mark.parametrize("seed", range(3))
def test_flips_and_crops_keep_image_and_mask_aligned(colour_coded, seed):
    fmt = get_format(None, colour_coded)
    info = fmt.info(colour_coded)
    aug = Augment(hflip=True, vflip=True, crop=(36, 20))  # taller than the images: padded rows
    ds = ImageDataset(fmt.samples(colour_coded, "train"), fmt, info, IDENTITY, aug, seed=seed)
    flipped = set()
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            x, y = ds[i]
            image, labels = _pixels(x), y.numpy()
            assert labels.shape == (36, 20)
            labelled = labels != info.ignore_index
            assert labelled.sum() == 30 * 20 and (image[~labelled] == 0).all()  # padding: ignored, black
            assert np.array_equal(image[labelled], CODE_COLOURS[labels[labelled]].astype(np.int64))
            flipped.add(bool(labels[0, 0] != fmt.read_labels(ds.samples[i])[0, 0]))
    assert flipped == {True, False}  # the transforms did act


def test_scaling_keeps_image_and_mask_aligned_and_evaluation_does_not_augment(colour_coded):
    fmt = get_format(None, colour_coded)
    info = fmt.info(colour_coded)
    ds = ImageDataset(fmt.samples(colour_coded, "train"), fmt, info, IDENTITY, Augment(scale=(0.6, 1.7)), seed=1)
    sizes = set()
    for i in range(len(ds)):
        x, y = ds[i]
        image, labels = _pixels(x), y.numpy()
        sizes.add(labels.shape)
        # away from class boundaries the interpolated photo is exactly its label's colour
        padded = np.pad(labels, 1, mode="edge")
        inner = np.all([padded[1 + dy : 1 + dy + labels.shape[0], 1 + dx : 1 + dx + labels.shape[1]] == labels
                        for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)  # fmt: skip
        assert inner.mean() > 0.3
        assert np.abs(image[inner] - CODE_COLOURS[labels[inner]]).max() <= 1
    assert len(sizes) > 1
    plain = ImageDataset(ds.samples, fmt, info, IDENTITY)  # how evaluation builds it: the contract only
    x, _ = plain[0]
    runtime_x, _ = preprocess_image(read_image(ds.samples[0].image), IDENTITY)
    assert np.array_equal(x.numpy(), runtime_x)


def test_color_jitter_changes_the_image_only(colour_coded):
    fmt = get_format(None, colour_coded)
    info = fmt.info(colour_coded)
    plain = ImageDataset(fmt.samples(colour_coded, "train"), fmt, info, IDENTITY)
    jit = ImageDataset(plain.samples, fmt, info, IDENTITY, Augment(color_jitter=0.3), seed=0)
    (x0, y0), (x1, y1) = plain[0], jit[0]
    assert np.array_equal(y0.numpy(), y1.numpy()) and not np.array_equal(x0.numpy(), x1.numpy())


def test_unknown_and_mismatched_formats(demo, tmp_path):
    seg, cls = demo
    with pytest.raises(DlcvError, match="unknown dataset format 'voc'"):
        get_format("voc", seg)
    with pytest.raises(DlcvError, match="does not look like the 'camvid' layout"):
        get_format("camvid", cls)
    with pytest.raises(DlcvError, match="no known dataset layout"):
        get_format(None, tmp_path)


def test_missing_mask_is_reported(tmp_path):
    for split in ("train", "trainannot"):
        (tmp_path / split).mkdir()
    write_png(tmp_path / "train" / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DlcvError, match="no mask for 1 image"):
        get_format(None, tmp_path).samples(tmp_path, "train")
