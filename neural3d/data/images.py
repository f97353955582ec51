"""Image files: reading with clear errors, area downscaling, alpha compositing.

Images are returned as float32 numpy arrays in [0, 1] with shape [H, W, C] (C = 1, 2, 3 or 4); the
loaders turn them into torch tensors once stacked.

Image size limit: a file whose header claims more than ``NEURAL3D_MAX_IMAGE_PIXELS`` pixels (width x height;
default 178,956,970, about 13,400 x 13,400, Pillow's own decompression-bomb limit) is refused with a
:class:`DatasetError` naming the file and the limit, before any pixel is decoded. Set the environment variable
to read larger images (a limit above Pillow's default also raises ``PIL.Image.MAX_IMAGE_PIXELS`` for the
process, so Pillow agrees).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from neural3d.data.scene import DatasetError, DatasetFileNotFoundError

MAX_IMAGE_PIXELS_ENV = "NEURAL3D_MAX_IMAGE_PIXELS"
DEFAULT_MAX_IMAGE_PIXELS = 178_956_970  # 2 * PIL.Image.MAX_IMAGE_PIXELS: where Pillow raises DecompressionBombError
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


def max_image_pixels() -> int:
    """The largest width x height :func:`read_image` decodes: ``$NEURAL3D_MAX_IMAGE_PIXELS`` or the default."""
    raw = os.environ.get(MAX_IMAGE_PIXELS_ENV, "").strip().replace("_", "")
    if not raw:
        return DEFAULT_MAX_IMAGE_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value < 1:
        raise DatasetError(f"{MAX_IMAGE_PIXELS_ENV}={os.environ[MAX_IMAGE_PIXELS_ENV]!r}: must be a positive integer")
    return value


def _too_large(path: Path, what: str, limit: int) -> DatasetError:
    return DatasetError(
        f"{path}: image {what} is over the limit of {limit:,} pixels (a corrupt or hostile header?); "
        f"set {MAX_IMAGE_PIXELS_ENV} to read larger images"
    )


def _bomb_error(path: Path, e: Exception, limit: int) -> DatasetError:
    """Pillow's DecompressionBombError (raised in ``Image.open``) as our one-line error."""
    m = re.search(r"\((\d+) pixels\)", str(e))
    return _too_large(path, f"of {int(m.group(1)):,} pixels" if m else "size", limit)


def _pixel_limit() -> int:
    """:func:`max_image_pixels`; a limit above Pillow's own also raises Pillow's (else it would refuse first)."""
    from PIL import Image

    limit = max_image_pixels()
    if Image.MAX_IMAGE_PIXELS is not None and limit > 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = limit
    return limit


def read_image(path) -> np.ndarray:
    """Read an 8- or 16-bit image file as float32 in [0, 1].

    Args:
        path: the image file (PNG, JPEG or anything Pillow reads).
    Returns:
        [H, W, C] float32, C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA); palette images are expanded.
    Raises:
        DatasetFileNotFoundError: the file does not exist.
        DatasetError: the file is not a readable image, is corrupt/truncated, or its header claims more than
            :func:`max_image_pixels` pixels.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DatasetFileNotFoundError(f"{path}: image file not found")
    limit = _pixel_limit()
    try:
        with Image.open(path) as im:  # reads the header only
            w, h = im.size
            if w * h > limit:
                raise _too_large(path, f"size {w}x{h} (WxH) = {w * h:,} pixels", limit)
            im.load()  # decodes everything: truncated/corrupt data fails here
            if im.mode in ("P", "PA"):
                im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
            elif im.mode in _CONVERT:
                im = im.convert(_CONVERT[im.mode])
            arr = np.asarray(im)
    except DatasetError:
        raise
    except Image.DecompressionBombError as e:  # Pillow's own check, in Image.open (header size over its limit)
        raise _bomb_error(path, e, limit) from None
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


def image_size(path) -> tuple[int, int]:
    """(H, W) of an image file from its header (nothing is decoded); errors as :func:`read_image`."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    limit = _pixel_limit()
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Image.DecompressionBombError as e:
        raise _bomb_error(path, e, limit) from None
    except FileNotFoundError:
        raise DatasetFileNotFoundError(f"{path}: image file not found") from None
    except UnidentifiedImageError:
        raise DatasetError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: corrupt or truncated image ({e})") from None
    if w * h > limit:
        raise _too_large(path, f"size {w}x{h} (WxH) = {w * h:,} pixels", limit)
    return h, w


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


_CASE_SENSITIVE_FS = sys.platform.startswith("linux")


def _is_inside(path: str, root: str) -> bool:
    """Whether ``path`` lies strictly inside folder ``root`` (both absolute and normalised)."""
    return path.startswith(root.rstrip(os.sep) + os.sep)


def locate_frame_images(
    root,
    file_paths: Sequence,
    *,
    source,
    suffixes: Sequence[str] = ("",) + IMAGE_EXTENSIONS,
    allow_external: bool = False,
    frame_numbers: Sequence[int] | None = None,
) -> list[Path]:
    """The image file of every frame's ``file_path``, all checked before any image is decoded.

    Each ``file_path`` is taken relative to ``root`` and tried with each of ``suffixes`` appended, in order
    (Blender: ``.png`` then the name as it is, as the original loader; transforms.json: the name, then the
    image extensions). Unless ``allow_external``, a path that leads outside ``root`` -- ``..`` components or an
    absolute path (refused before the file system is touched) or a symlink whose target lies outside (refused
    before the file is opened) -- is a :class:`DatasetError` naming the frame.

    Args:
        root: the scene folder.
        file_paths: [n_frames] the frames' ``file_path`` values as read from ``source``.
        source: the JSON file named in messages.
        suffixes: strings appended to each path, tried in order.
        allow_external: accept files outside ``root`` (``data.allow_external_paths``).
        frame_numbers: [n_frames] the frames' indices in ``source`` (messages; default 0..n_frames-1).
    Returns:
        [n_frames] existing files (not yet opened).
    Raises:
        DatasetError: a ``file_path`` is not a non-empty string, or leads outside ``root``.
        DatasetFileNotFoundError: some images do not exist; says how many and names the first frames.
    """
    root = Path(root)
    root_abs = os.path.abspath(root)
    root_real = os.path.realpath(root)
    numbers = range(len(file_paths)) if frame_numbers is None else frame_numbers
    listings: dict[str, set[str] | None] = {}  # folder -> names of its files (None: no such folder)
    real_dirs: dict[str, str] = {}
    found: list[Path] = []
    missing: list[str] = []

    def files_in(folder: str) -> set[str] | None:  # one directory listing per folder, not a stat per candidate
        if folder not in listings:
            try:
                with os.scandir(folder) as it:
                    listings[folder] = {e.name for e in it if e.is_file()}
            except OSError:
                listings[folder] = None
        return listings[folder]

    def first_file(full: str) -> str | None:
        folder, name = os.path.split(full)
        names = files_in(folder)
        if names is None:
            return None
        for suffix in suffixes:
            if name + suffix in names or (not _CASE_SENSITIVE_FS and os.path.isfile(full + suffix)):
                return full + suffix
        return None

    for n, fp in zip(numbers, file_paths):
        where = f"frames[{n}].file_path"
        if not isinstance(fp, str) or not fp.strip() or "\x00" in fp:
            raise DatasetError(f"{source}: {where} must be a non-empty path string, got {fp!r}")
        full = os.path.normpath(os.path.join(root_abs, fp))
        if not allow_external and not _is_inside(full, root_abs):
            raise DatasetError(
                f"{source}: {where} {fp!r} points outside the scene folder {root}; "
                "set data.allow_external_paths=true to read it anyway"
            )
        hit = first_file(full)
        if hit is None:
            missing.append(where)
            if len(missing) <= 5:
                missing[-1] = f"{where} {fp!r} ({root / (fp + suffixes[0])}: image file not found)"
            continue
        if not allow_external:
            parent, name = os.path.split(hit)
            if parent not in real_dirs:
                real_dirs[parent] = os.path.realpath(parent)
            real = os.path.realpath(hit) if os.path.islink(hit) else os.path.join(real_dirs[parent], name)
            if not _is_inside(real, root_real):
                raise DatasetError(
                    f"{source}: {where} {fp!r} resolves to {real}, outside the scene folder {root} (a symlink); "
                    "set data.allow_external_paths=true to read it anyway"
                    if os.path.islink(hit) or real_dirs[parent] != parent
                    else f"{source}: {where} {fp!r} points outside the scene folder {root}; "
                    "set data.allow_external_paths=true to read it anyway"
                )
        found.append(root / os.path.relpath(hit, root_abs) if not os.path.isabs(fp) else Path(hit))
    if missing:
        more = f", the first {min(len(missing), 5)}" if len(missing) > 5 else ""
        raise DatasetFileNotFoundError(
            f"{source}: {len(missing)} of {len(file_paths)} frame images not found (also tried the names with "
            f"{list(suffixes[1:])} instead of {suffixes[0]!r} appended{more}): {'; '.join(missing[:5])}"
        )
    return found


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
        try:
            small = resize_area(raw, factor)
        except ValueError as e:
            raise DatasetError(f"{p}: {e}") from None
        return raw.shape[:2], composite(small, background)

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
