"""Image and label-map I/O with OpenCV: one decoder for training, export checks and inference.

Decisions (documented in the README):
- Images are returned as RGB uint8 H×W×3. Grayscale is replicated to three channels, the
  alpha channel of RGBA is dropped, 16-bit images are scaled to 8 bits (value // 257).
- EXIF orientation is ignored: pixels are used as stored. Label masks carry no EXIF, so
  rotating the photo would misalign it with its mask; training and inference read alike.
- Paths may hold any unicode: files are read as bytes and decoded in memory.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .atomic import write_bytes_atomic
from .errors import DlcvError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Images above this many pixels are refused before full decoding: 8000×8000 RGB is 192 MB
# of uint8 and four times that as float32 after preprocessing.
DEFAULT_MAX_PIXELS = 8000 * 8000


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has one of the image suffixes dlcv reads."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DlcvError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DlcvError(f"{path}: is a folder, not an image file") from None
    except OSError as exc:
        raise DlcvError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise DlcvError(f"{path}: empty file (0 bytes)")
    return data


def _decoded_size(data: np.ndarray) -> tuple[int, int] | None:
    """Width and height from a PNG or JPEG header without decoding pixels (None if unknown)."""
    raw = data[:65536].tobytes()
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and len(raw) >= 24:
        return int.from_bytes(raw[16:20], "big"), int.from_bytes(raw[20:24], "big")
    if raw.startswith(b"\xff\xd8"):
        i = 2
        while i + 9 < len(raw):
            if raw[i] != 0xFF:
                return None
            marker = raw[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            seg_len = int.from_bytes(raw[i + 2 : i + 4], "big")
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h = int.from_bytes(raw[i + 5 : i + 7], "big")
                w = int.from_bytes(raw[i + 7 : i + 9], "big")
                return w, h
            i += 2 + seg_len
    return None


def _decode(path: Path, flags: int, max_pixels: int | None) -> np.ndarray:
    data = _read_bytes(path)
    if max_pixels is not None:
        size = _decoded_size(data)
        if size is not None and size[0] * size[1] > max_pixels:
            raise DlcvError(
                f"{path}: image is {size[0]}×{size[1]} pixels, above the limit of {max_pixels} "
                "pixels; downscale it or raise the limit (--max-pixels)"
            )
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or ["OpenCV error"]
        raise DlcvError(f"{path}: cannot decode image ({lines[-1][:300]})") from None
    if image is None or image.size == 0:
        raise DlcvError(f"{path}: not a readable image (truncated, corrupt, or not an image format OpenCV decodes)")
    if max_pixels is not None and image.shape[0] * image.shape[1] > max_pixels:
        raise DlcvError(
            f"{path}: image is {image.shape[1]}×{image.shape[0]} pixels, above the limit of {max_pixels} "
            "pixels; downscale it or raise the limit (--max-pixels)"
        )
    return image


def _to_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image // 257).astype(np.uint8)
    raise DlcvError(f"{path}: unsupported pixel type {image.dtype}; convert it to 8- or 16-bit PNG/JPEG")


def read_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB uint8 H×W×3 (see the module notes for the conversions)."""
    path = Path(path)
    image = _to_uint8(_decode(path, cv2.IMREAD_UNCHANGED, max_pixels), path)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise DlcvError(f"{path}: image has {channels} channels; expected 1 (gray), 3 (colour) or 4 (with alpha)")


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """Read an index-PNG label map as an int64 H×W array of class indices.

    A three-channel file is accepted only when its channels are equal (a gray image saved
    as RGB); colour-coded masks need a dataset format that maps colours to classes.
    """
    path = Path(path)
    mask = _decode(path, cv2.IMREAD_UNCHANGED, None)
    if mask.ndim == 3:
        if mask.shape[2] >= 3 and np.array_equal(mask[:, :, 0], mask[:, :, 1]) and np.array_equal(
            mask[:, :, 1], mask[:, :, 2]
        ):
            mask = mask[:, :, 0]
        else:
            raise DlcvError(
                f"{path}: label map has {mask.shape[2]} different colour channels; expected a single-channel "
                "index PNG (one class index per pixel). Colour masks need their dataset --format."
            )
    if mask.dtype not in (np.uint8, np.uint16):
        raise DlcvError(f"{path}: label map pixel type {mask.dtype} is not an integer index type")
    return mask.astype(np.int64)


def encode_png(array: np.ndarray) -> bytes:
    """Encode a uint8 H×W or H×W×3 (RGB) array as PNG bytes."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise DlcvError("cannot encode PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 index map (H×W) or RGB image (H×W×3) as PNG, atomically."""
    write_bytes_atomic(path, encode_png(array))
