"""Self-describing checkpoints: round trip, weights-only loading, refusal of pickled objects."""

import pytest
import torch

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.preprocess import PreprocessSpec
from dlcv.train import create_model
from dlcv.train.checkpoint import build_checkpoint, load_checkpoint, metadata_from_checkpoint, model_from_checkpoint, save_checkpoint


def _ckpt():
    model = create_model("fcn8s", num_classes=3, width=0.0625)
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ckpt = build_checkpoint(model, arch="fcn8s", arch_kwargs={"width": 0.0625}, class_names=["a", "b", "c"],
                            preprocess=PreprocessSpec(), palette=[[0, 0, 0], [1, 2, 3], [4, 5, 6]],
                            metrics={"val": {"miou": 0.5}}, epoch=3)  # fmt: skip
    return model, ckpt


def test_round_trip_is_weights_only_and_complete(tmp_path):
    model, ckpt = _ckpt()
    path = save_checkpoint(tmp_path / "best.pt", ckpt)
    raw = torch.load(path, weights_only=True)  # plain data only
    for key in ("arch", "arch_kwargs", "task", "num_classes", "class_names", "palette", "preprocess", "state_dict", "metrics", "dlcv_version"):
        assert key in raw
    loaded = load_checkpoint(path)
    rebuilt = model_from_checkpoint(loaded)
    x = torch.randn(1, 3, 40, 44)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
    md = metadata_from_checkpoint(loaded, source_sha256="ab")
    assert md.task == "segmentation" and md.class_names == ("a", "b", "c") and md.palette[1] == (1, 2, 3)
    assert md.preprocess == PreprocessSpec()


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_objects_are_refused_not_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"arch": "fcn8s", "payload": Payload()}, path)
    with pytest.raises(DlcvError, match="evil.pt: refused: the file holds pickled Python objects"):
        load_checkpoint(path)
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not a readable PyTorch checkpoint"), (b"garbage" * 10, "not a readable PyTorch checkpoint")],
)
def test_corrupt_files_give_one_line(tmp_path, content, message):
    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(DlcvError, match=message):
        load_checkpoint(path)


def test_foreign_state_dict_is_not_a_dlcv_checkpoint(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(create_model("vgg16_bn", num_classes=2, width=0.0625).state_dict(), path)
    with pytest.raises(DlcvError, match="not a dlcv checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(DlcvError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    _, ckpt = _ckpt()
    path = save_checkpoint(tmp_path / "best.pt", ckpt)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, ckpt)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["best.pt"]


@pytest.mark.parametrize("name", ["fcn8s.onnx", "fcn8s.plan", "fcn8s.engine"])
def test_a_deployed_model_is_named_as_such(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"not a torch file")
    with pytest.raises(DlcvError, match=rf"{name}: this is a deployed model .*give the \.pt file"):
        load_checkpoint(path)
