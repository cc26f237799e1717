"""BYOL self-supervised pre-training of a classification backbone (Grill et al., 2020).

An online network (backbone → projector → predictor) learns to predict, for one augmented view
of an image, the projection a target network (backbone → projector) gives another view. The
target is not trained: after every step its weights move towards the online weights by an
exponential moving average whose rate ``tau`` rises from ``cfg.tau`` to 1 on a cosine schedule.
Loss per view pair: 2 − 2·cos(prediction, target projection), summed over both orders.

The result is ``backbone.pt``: the online backbone as a torchvision-format state dict without
its class layer, which :func:`dlcv.train.pretrained.load_pretrained` (``--pretrained``) loads.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dlcv.runtime.atomic import atomic_path, write_text_atomic
from dlcv.runtime.datasets import open_split
from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.imageio import read_image
from dlcv.runtime.preprocess import PreprocessSpec, preprocess_image
from dlcv.runtime.task import get_task

from .data.demo import demo_root
from .device import resolve_device
from .pretrained import output_layer
from .registry import create_model, list_models, model_config, model_info, scaled

LOG_FIELDS = ("epoch", "loss", "tau", "lr", "steps", "seconds")


def view_normalisation(backbone: str) -> PreprocessSpec:
    """How a view becomes the backbone's input: its registered colour order, mean and std, no resizing
    (the views are already cropped to size)."""
    return dataclasses.replace(model_config(backbone).preprocess, resize="none", size=None, resize_shorter=None)


def default_view_size(backbone: str) -> tuple[int, int]:
    """The view size when ``input_size`` is None: the backbone's registered input size (224×224 without one)."""
    return tuple(model_config(backbone).preprocess.size or (224, 224))


@dataclass(frozen=True)
class ByolConfig:
    """A BYOL run. ``data``: a dataset folder in any ``--format`` layout (labels are ignored; the
    train split is used) or ``"demo"``. ``input_size``: the (height, width) of the random
    crops (None = the backbone's registered input size). ``hidden_dim``/``projection_dim`` are
    the MLP sizes at width 1.0 (the paper's 4096 and 256) and scale with ``width``. ``steps_per_epoch`` caps the batches
    per epoch (None = the whole train split)."""

    backbone: str
    data: str
    out: Path
    format: str | None = None
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 1e-6
    width: float = 1.0
    seed: int = 0
    device: str = "cpu"
    input_size: tuple[int, int] | None = (64, 64)
    num_workers: int = 0
    progress: bool = True
    tau: float = 0.996
    hidden_dim: int = 4096
    projection_dim: int = 256
    steps_per_epoch: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        problems = []
        if self.epochs < 1:
            problems.append(f"--epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 2:
            problems.append(f"--batch-size must be at least 2 (the MLPs use batch norm), got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"--lr must be positive, got {self.lr}")
        if not self.width > 0:
            problems.append(f"--width must be positive, got {self.width}")
        if not 0 <= self.tau <= 1:
            problems.append(f"--tau must be within 0..1, got {self.tau}")
        if self.input_size is not None and (len(self.input_size) != 2 or min(self.input_size) < 8):
            problems.append(f"--input-size needs two values of at least 8 (height, width), got {self.input_size}")
        if self.steps_per_epoch is not None and self.steps_per_epoch < 1:
            problems.append(f"steps_per_epoch must be at least 1, got {self.steps_per_epoch}")
        if problems:
            raise DlcvUsageError("; ".join(problems))


@dataclass(frozen=True)
class ByolResult:
    backbone_path: Path
    log_path: Path
    history: tuple[dict, ...]


# ---------------------------------------------------------------------------------------------
# the two augmented views (numpy + OpenCV on uint8 RGB images)


@dataclass(frozen=True)
class ViewAugment:
    """BYOL's augmentation of one view; the two views differ in blur and solarisation odds."""

    blur_p: float
    solarize_p: float
    crop_scale: tuple[float, float] = (0.08, 1.0)
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2


VIEW_AUGMENTS = (ViewAugment(blur_p=1.0, solarize_p=0.0), ViewAugment(blur_p=0.1, solarize_p=0.2))


def random_resized_crop(image: np.ndarray, size: tuple[int, int], scale, rng: np.random.Generator) -> np.ndarray:
    """torchvision's RandomResizedCrop: a random area fraction and aspect ratio, resized to ``size``."""
    h, w = image.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        cw, ch = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            break
    else:  # fall back to the whole image
        top, left, ch, cw = 0, 0, h, w
    crop = image[top : top + ch, left : left + cw]
    return cv2.resize(crop, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _jitter(image: np.ndarray, aug: ViewAugment, rng: np.random.Generator) -> np.ndarray:
    x = image.astype(np.float32) / 255.0
    x = x * rng.uniform(1 - aug.brightness, 1 + aug.brightness)
    mean = (x @ np.float32([0.299, 0.587, 0.114])).mean()
    x = (x - mean) * rng.uniform(1 - aug.contrast, 1 + aug.contrast) + mean
    gray = (x @ np.float32([0.299, 0.587, 0.114]))[..., None]
    x = (x - gray) * rng.uniform(1 - aug.saturation, 1 + aug.saturation) + gray
    hsv = cv2.cvtColor(np.clip(x, 0, 1).astype(np.float32), cv2.COLOR_RGB2HSV)  # hue in degrees
    hsv[..., 0] = (hsv[..., 0] + 360.0 * rng.uniform(-aug.hue, aug.hue)) % 360.0
    return (cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)


def augment_view(image: np.ndarray, size: tuple[int, int], aug: ViewAugment, rng: np.random.Generator) -> np.ndarray:
    """One augmented RGB uint8 view of ``size``: crop, flip, colour jitter, grayscale, blur, solarise."""
    x = random_resized_crop(image, size, aug.crop_scale, rng)
    if rng.random() < 0.5:
        x = x[:, ::-1]
    if rng.random() < aug.jitter_p:
        x = _jitter(x, aug, rng)
    if rng.random() < aug.grayscale_p:
        x = np.repeat(cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    if rng.random() < aug.blur_p:
        kernel = max(3, int(0.1 * min(size)) | 1)  # 23 at 224, as in the paper
        x = cv2.GaussianBlur(np.ascontiguousarray(x), (kernel, kernel), float(rng.uniform(0.1, 2.0)))
    if rng.random() < aug.solarize_p:
        x = np.where(x >= 128, 255 - x, x).astype(np.uint8)
    return np.ascontiguousarray(x)


class TwoViewDataset(Dataset):
    """Images as pairs of augmented, normalised views (float32 3×H×W each); labels are not read."""

    def __init__(self, paths: list[Path], size: tuple[int, int], normalise: PreprocessSpec, seed: int = 0):
        self.paths, self.size, self.normalise, self.seed = list(paths), tuple(size), normalise, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int):
        image = read_image(self.paths[index])
        rng = np.random.default_rng([self.seed, self.epoch, index])
        views = [preprocess_image(augment_view(image, self.size, aug, rng), self.normalise)[0] for aug in VIEW_AUGMENTS]
        return torch.from_numpy(views[0]), torch.from_numpy(views[1])


# ---------------------------------------------------------------------------------------------
# the networks and the update rules


def mlp(in_dim: int, hidden: int, out: int) -> nn.Sequential:
    """BYOL's projector/predictor: Linear → BatchNorm → ReLU → Linear."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class Encoder(nn.Module):
    """A classifier's ``forward_features`` followed by a projector MLP."""

    def __init__(self, backbone: nn.Module, projector: nn.Module):
        super().__init__()
        self.backbone, self.projector = backbone, projector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone.forward_features(x))


class Byol(nn.Module):
    """Online encoder + predictor (trained) and target encoder (an EMA of the online one)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, hidden: int, projection: int):
        super().__init__()
        self.online = Encoder(backbone, mlp(feature_dim, hidden, projection))
        self.predictor = mlp(projection, hidden, projection)
        self.target = copy.deepcopy(self.online)
        self.target.requires_grad_(False)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor) -> torch.Tensor:
        """The symmetrised loss for a batch of view pairs."""
        both = torch.cat([view1, view2])  # one pass: batch norm sees both views, as the target does
        p1, p2 = self.predictor(self.online(both)).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target(both).chunk(2)
        return byol_loss(p1, z2) + byol_loss(p2, z1)


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 2 − 2·cos(prediction, target) (0 when aligned, 4 when opposite)."""
    return (2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1)).mean()


def tau_schedule(step: int, total_steps: int, base: float) -> float:
    """BYOL's target decay: ``1 − (1 − base)·(cos(π·step/total) + 1)/2``, from ``base`` to 1."""
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target ← tau·target + (1 − tau)·online`` for parameters; buffers (BN statistics) are copied."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.mul_(tau).add_(o.detach(), alpha=1 - tau)
    for t, o in zip(target.buffers(), online.buffers(), strict=True):
        t.copy_(o)


def backbone_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The classifier's state dict without its class layer: what ``--pretrained`` loads."""
    name, _ = output_layer(model)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items() if not k.startswith(name + ".")}


# ---------------------------------------------------------------------------------------------
# the run


def _image_paths(cfg: ByolConfig) -> list[Path]:
    root = demo_root("classification") if cfg.data == "demo" else Path(cfg.data)
    split = open_split(root, None, "train", format=cfg.format)
    paths = [s.image for s in split.samples]
    if len(paths) < 2:
        raise DlcvError(f"{root}: BYOL needs at least 2 training images, found {len(paths)} ({split.describe()})")
    return paths


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=LOG_FIELDS)
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def train_byol(cfg: ByolConfig) -> ByolResult:
    """Pre-train ``cfg.backbone`` with BYOL; writes ``backbone.pt`` and ``log.csv`` under ``cfg.out``
    (both rewritten atomically after every epoch)."""
    if get_task(model_info(cfg.backbone).task).per_pixel:
        choices = [n for n in list_models() if not get_task(model_info(n).task).per_pixel]
        raise DlcvUsageError(f"BYOL pre-trains a classification backbone, not {cfg.backbone!r}; choose one of: {', '.join(choices)}")
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    size = cfg.input_size or default_view_size(cfg.backbone)
    dataset = TwoViewDataset(_image_paths(cfg), size, view_normalisation(cfg.backbone), cfg.seed)
    backbone = create_model(cfg.backbone, width=cfg.width)
    _, last = output_layer(backbone)
    net = Byol(backbone, last.in_features, scaled(cfg.hidden_dim, cfg.width), scaled(cfg.projection_dim, cfg.width)).to(device)
    params = [*net.online.parameters(), *net.predictor.parameters()]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    batch_size = min(cfg.batch_size, len(dataset))
    full_batches = len(dataset) // batch_size
    steps_per_epoch = min(full_batches, cfg.steps_per_epoch or full_batches)
    total_steps = steps_per_epoch * cfg.epochs
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    backbone_path, log_path = out / "backbone.pt", out / "log.csv"
    history: list[dict] = []
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        net.train()
        dataset.set_epoch(epoch)
        order = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        # drop_last: the MLPs' batch norm needs more than one sample per batch
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, generator=order, num_workers=cfg.num_workers)
        total, count = 0.0, 0
        bar = tqdm(loader, total=steps_per_epoch, desc=f"byol epoch {epoch}/{cfg.epochs}", leave=False, disable=not cfg.progress, unit="batch")
        for view1, view2 in bar:
            if count == steps_per_epoch:
                break
            loss = net(view1.to(device), view2.to(device))
            if not torch.isfinite(loss):
                raise DlcvError(f"BYOL diverged at epoch {epoch} (loss {loss.item()}); lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            tau = tau_schedule(step, total_steps, cfg.tau)
            ema_update(net.target, net.online, tau)
            step += 1
            total += loss.item()
            count += 1
            bar.set_postfix(loss=f"{total / count:.4f}")
        history.append({
            "epoch": epoch, "loss": round(total / max(count, 1), 6), "tau": round(tau, 6), "lr": cfg.lr,
            "steps": count, "seconds": round(time.perf_counter() - t0, 2),
        })  # fmt: skip
        with atomic_path(backbone_path) as tmp:
            torch.save(backbone_state_dict(net.online.backbone), tmp)
        _write_log(log_path, history)
    return ByolResult(backbone_path, log_path, tuple(history))
