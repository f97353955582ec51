"""Image files: reading with clear errors, area downscaling, alpha compositing.

Images are returned as float32 numpy arrays in [0, 1] with shape [H, W, C] (C = 1, 2, 3 or 4); the
loaders turn them into torch tensors once stacked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from neural3d.data.scene import DatasetError, DatasetFileNotFoundError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".JPG", ".PNG", ".JPEG")
# Pillow modes turned into one of L, LA, RGB, RGBA (16-bit "I;16" and float "F" are read as they are)
_CONVERT = {
    "1": "L",
    "La": "LA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}


def read_image(path) -> np.ndarray:
    """Read an 8- or 16-bit image file as float32 in [0, 1].

    Args:
        path: the image file (PNG, JPEG or anything Pillow reads).
    Returns:
        [H, W, C] float32, C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); palette images are expanded.
    Raises:
        DatasetFileNotFoundError: the file does not exist.
        DatasetError: the file is not a readable image, or is corrupt/truncated.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DatasetFileNotFoundError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            im.load()  # decodes everything: truncated/corrupt data fails here
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
            elif im.mode in _CONVERT:
                im = im.convert(_CONVERT[im.mode])
            arr = np.asarray(im)
    except UnidentifiedImageError:
        raise DatasetError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: corrupt or truncated image ({e})") from None
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / np.float32(255.0)  # bit-identical to (x / 255.).astype(float32)
    elif arr.dtype.kind in "ui":  # 16-bit PNG (uint16, or int32 in mode "I")
        out = arr.astype(np.float32) / np.float32(65535.0)
    else:  # float ("F") images are taken as they are
        out = arr.astype(np.float32)
    if out.ndim == 2:
        out = out[..., None]
    return out


def find_image(path: Path) -> Path:
    """``path`` if it exists, else ``path`` with the first image extension that exists.

    ``transforms.json`` files name frames with or without extension (``./train/r_0``).
    Raises DatasetFileNotFoundError naming the path when nothing matches.
    """
    path = Path(path)
    if path.is_file():
        return path
    for ext in IMAGE_EXTENSIONS:
        cand = path.with_name(path.name + ext)
        if cand.is_file():
            return cand
    raise DatasetFileNotFoundError(f"{path}: image file not found (also tried extensions {list(IMAGE_EXTENSIONS)})")


def resize_area(img: np.ndarray, factor: int) -> np.ndarray:
    """Downscale by an integer factor with area (box) averaging.

    Equals ``cv2.resize(..., interpolation=cv2.INTER_AREA)`` (used by the original NeRF ``half_res``)
    when ``factor`` divides H and W. Otherwise the last ``H % factor`` rows and ``W % factor``
    columns are dropped first, so that output pixel (u, v) is exactly the mean of input pixels
    [u*f, (u+1)*f) x [v*f, (v+1)*f) and intrinsics scale exactly by 1/f.

    Args:
        img: [H, W, C] or [H, W] array.
        factor: integer >= 1.
    Returns:
        [H // factor, W // factor, C] array of the input dtype (float).
    """
    if int(factor) != factor or factor < 1:
        raise ValueError(f"resize_area: factor must be a positive integer, got {factor}")
    factor = int(factor)
    if factor == 1:
        return img
    H, W = img.shape[0] // factor, img.shape[1] // factor
    if H == 0 or W == 0:
        raise ValueError(f"resize_area: image {img.shape[:2]} is smaller than the factor {factor}")
    x = img[: H * factor, : W * factor]
    x = x.reshape(H, factor, W, factor, *img.shape[2:])
    return x.mean(axis=(1, 3)).astype(img.dtype, copy=False)


def composite(rgba: np.ndarray, background: Sequence[float]) -> tuple[np.ndarray, np.ndarray | None]:
    """Split an image into RGB composited on ``background`` and its alpha.

    Args:
        rgba: [H, W, C] float image, C in (1, 2, 3, 4) (grey is expanded to RGB).
        background: [3] colour.
    Returns:
        rgb [H, W, 3] = ``rgb * alpha + background * (1 - alpha)`` (the original NeRF formula) and
        alpha [H, W, 1] (None without an alpha channel).
    """
    c = rgba.shape[-1]
    alpha = None
    if c in (2, 4):
        rgba, alpha = rgba[..., :-1], rgba[..., -1:]
    rgb = np.broadcast_to(rgba, (*rgba.shape[:2], 3)) if rgba.shape[-1] == 1 else rgba
    if alpha is not None:
        bg = np.asarray(background, dtype=rgb.dtype)
        rgb = rgb * alpha + bg * (1.0 - alpha)
    return np.ascontiguousarray(rgb, dtype=np.float32), alpha


def load_image_stack(
    paths: Sequence[Path], *, factor: int = 1, background=(1.0, 1.0, 1.0), keep_alpha: bool = True
) -> tuple[np.ndarray, np.ndarray | None, tuple[int, int]]:
    """Read, downscale and composite images that must share one size.

    Args:
        paths: ``n_images`` files.
        factor: integer downscale factor (:func:`resize_area`).
        background: [3] compositing colour for RGBA images.
        keep_alpha: False drops alpha channels instead of compositing (the original LLFF loader's ``[..., :3]``).
    Returns:
        images [n_images, H, W, 3] float32, alphas [n_images, H, W, 1] (None when no image has alpha;
        ones for images without alpha otherwise) and the size (H0, W0) of the files before downscaling.
    Raises:
        DatasetError naming the first file whose size differs from the first image's.
    """
    if len(paths) == 0:
        raise DatasetError("no images to load")

    def prepare(p):
        raw = read_image(p)
        if not keep_alpha and raw.shape[-1] in (2, 4):
            raw = raw[..., :-1]
        return raw.shape[:2], composite(resize_area(raw, factor), background)

    images = alphas = first_shape = None
    workers = min(8, os.cpu_count() or 1, len(paths))
    pool = ThreadPoolExecutor(max_workers=workers)  # decoding releases the GIL
    try:
        for i, (shape, (rgb, alpha)) in enumerate(pool.map(prepare, paths)):
            if first_shape is None:
                first_shape = shape
                images = np.empty((len(paths), *rgb.shape), dtype=np.float32)
            elif shape != first_shape:
                raise DatasetError(
                    f"{paths[i]}: image size {shape[1]}x{shape[0]} (WxH) differs from "
                    f"{first_shape[1]}x{first_shape[0]} of {paths[0]}; all images must share one size"
                )
            images[i] = rgb
            if alpha is not None and alphas is None:
                alphas = np.ones((len(paths), *rgb.shape[:2], 1), dtype=np.float32)
            if alphas is not None:
                alphas[i] = 1.0 if alpha is None else alpha
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on an error, skip the images not yet read
    return images, alphas, first_shape
