"""Fuzz test (issue 23): malformed scene and camera-path files end in the library's own error, never another.

Over Blender (``transforms_{split}.json`` + PNGs), LLFF (``poses_bounds.npy`` + images), instant-ngp /
nerfstudio ``transforms.json``, DTU (IDR / NeuS ``cameras_sphere.npz`` + ``image/`` + ``mask/``) and
``camera_path.json``, hypothesis mutates a small valid input (JSON values
replaced by values of other types or invalid numbers, keys deleted, lists truncated, files truncated or replaced by
random bytes, arrays of other shapes / dtypes / non-finite entries, matrices of an .npz deleted, singular or
reshaped, masks missing, images damaged). Two properties:

* every mutated input either loads or raises :class:`~neural3d.data.DatasetError` (a ``ValueError``) with a message
  -- no ``TypeError``, ``KeyError``, ``IndexError``, numpy / torch / Pillow error leaks out;
* inputs that are malformed for certain (truncated JSON, a required key missing, a non-rigid pose, a damaged
  image, a wrongly shaped array, a missing or singular ``world_mat``, a mask / image count mismatch) raise it.

Bounded: a fixed number of examples per property (``max_examples``), a per-example deadline, derandomized (the
same examples every run) and no example database written to the repository.
"""

from __future__ import annotations

import copy
import io
import json
import math
import shutil
import tempfile
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, assume, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from neural3d.data import DatasetError, load_blender, load_dtu, load_llff, load_transforms  # noqa: E402
from neural3d.media.camera_path_json import load_camera_path  # noqa: E402

FUZZ = settings(
    max_examples=60,
    deadline=timedelta(seconds=10),
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------------- base inputs
def _png(w=8, h=6, seed=0, mode="RGBA") -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    pixels = rng.integers(0, 256, (h, w, len(mode)), dtype=np.uint8)
    Image.fromarray(pixels[..., 0] if mode == "L" else pixels).save(buf, format="PNG")
    return buf.getvalue()


def _pose(i) -> list:
    a = 0.3 * i
    m = np.eye(4)
    m[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    m[:3, 3] = [4 * np.sin(a), 0.2 * i, 4 * np.cos(a)]
    return m.tolist()


def blender_files() -> dict[str, bytes | object]:
    frames = [{"file_path": f"./train/r_{i}", "transform_matrix": _pose(i)} for i in range(2)]
    return {
        "transforms_train.json": {"camera_angle_x": 0.69, "frames": frames},
        "train/r_0.png": _png(seed=0),
        "train/r_1.png": _png(seed=1),
    }


def transforms_files() -> dict[str, bytes | object]:
    frames = [{"file_path": f"images/f{i}.png", "transform_matrix": _pose(i)} for i in range(3)]
    frames[1]["fl_x"] = 9.0  # a per-frame override
    meta = {"fl_x": 8.0, "fl_y": 8.0, "cx": 4.0, "cy": 3.0, "w": 8, "h": 6, "k1": 0.01, "camera_model": "OPENCV"}
    meta.update(aabb_scale=2, scale=0.33, offset=[0.5, 0.5, 0.5], frames=frames)
    return {"transforms.json": meta, **{f"images/f{i}.png": _png(seed=i, mode="RGB") for i in range(3)}}


def llff_files() -> dict[str, bytes | object]:
    n = 3
    rows = []
    for i in range(n):
        c2w = np.array(_pose(i))[:3]
        c2w[:, 3] = [0.3 * i, 0.1 * i, 0.0]
        # OpenGL (right, up, back) -> LLFF columns (down, right, back)
        llff = np.concatenate([-c2w[:, 1:2], c2w[:, 0:1], c2w[:, 2:4], [[12.0], [16.0], [14.0]]], 1)
        rows.append(np.concatenate([llff.reshape(-1), [2.0 + 0.1 * i, 9.0]]))
    buf = io.BytesIO()
    np.save(buf, np.array(rows))
    return {
        "poses_bounds.npy": buf.getvalue(),
        **{f"images/im{i}.png": _png(16, 12, seed=i, mode="RGB") for i in range(n)},
    }


def _npz(mats: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **mats)
    return buf.getvalue()


def dtu_mats(n: int = 3) -> dict[str, np.ndarray]:
    """``world_mat_i`` = K [R | t] (capture frame, OpenCV) and a scale matrix (scale 50, offset), as IDR / NeuS."""
    K = np.array([[9.0, 0.0, 3.5], [0.0, 9.5, 2.5], [0.0, 0.0, 1.0]])
    S = np.diag([50.0, 50.0, 50.0, 1.0])
    S[:3, 3] = [10.0, -5.0, 300.0]
    mats = {}
    for i in range(n):
        c2w_gl = np.array(_pose(i))
        R_cv = (c2w_gl[:3, :3] * [1.0, -1.0, -1.0]).T
        centre = 50.0 * c2w_gl[:3, 3] + S[:3, 3]
        W = np.eye(4)
        W[:3] = (1.0 + i) * K @ np.concatenate([R_cv, -(R_cv @ centre)[:, None]], 1)
        mats[f"world_mat_{i}"], mats[f"scale_mat_{i}"] = W, S
    return mats


def dtu_files() -> dict[str, bytes | object]:
    return {
        "cameras_sphere.npz": _npz(dtu_mats()),
        **{f"image/{i:06d}.png": _png(seed=i, mode="RGB") for i in range(3)},
        **{f"mask/{i:03d}.png": _png(seed=10 + i, mode="L") for i in range(3)},
    }


def camera_path_files() -> dict[str, bytes | object]:
    entries = [{"camera_to_world": sum(_pose(i), []), "fov": 50.0, "aspect": 1.5} for i in range(3)]
    return {
        "camera_path.json": {
            "camera_type": "perspective",
            "render_width": 12,
            "render_height": 8,
            "fps": 24,
            "seconds": 0.125,
            "camera_path": entries,
        }
    }


LOADERS = {
    "blender": (blender_files, "transforms_train.json", lambda root: load_blender(root)),
    "transforms": (transforms_files, "transforms.json", lambda root: load_transforms(root)),
    "llff": (llff_files, "poses_bounds.npy", lambda root: load_llff(root, factor=1)),
    "dtu": (dtu_files, "cameras_sphere.npz", lambda root: load_dtu(root)),
    "camera_path": (camera_path_files, "camera_path.json", lambda root: load_camera_path(root / "camera_path.json")),
}


def write(root: Path, files: dict) -> None:
    for name, content in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())


def outcome(fmt: str, files: dict):
    """Load ``files`` as ``fmt`` in a fresh folder; returns None (loaded) or the DatasetError raised.

    Any other exception propagates and fails the test.
    """
    root = Path(tempfile.mkdtemp(prefix=f"fuzz_{fmt}_"))
    try:
        write(root, files)
        try:
            LOADERS[fmt][2](root)
        except DatasetError as e:
            msg = str(e)
            assert msg.strip(), f"{type(e).__name__} without a message"
            return e
        return None
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- mutations
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "..", "/etc/passwd", "../../x.png", "\x00", "images", "OPENCV", "FISHEYE", "1e400"]),
)
json_values = st.recursive(
    json_scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=12
)


def json_paths(doc, prefix=()):
    """Every (path, value) in a JSON document (the root excluded)."""
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for k, v in items:
        out.append((prefix + (k,), v))
        out += json_paths(v, prefix + (k,))
    return out


def _parent(doc, path):
    for k in path[:-1]:
        doc = doc[k]
    return doc


@st.composite
def mutated_json(draw, doc):
    """``doc`` with 1-3 random edits: a value replaced, a key deleted, a list truncated or extended."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, 3))):
        paths = json_paths(doc)
        if not paths:
            break
        path, old = paths[draw(st.integers(0, len(paths) - 1))]
        parent = _parent(doc, path)
        op = draw(st.sampled_from(["replace", "delete", "truncate", "extend"]))
        if op == "replace" or (op in ("truncate", "extend") and not isinstance(old, list)):
            parent[path[-1]] = draw(json_values)
        elif op == "delete":
            del parent[path[-1]]
        elif op == "truncate":
            del old[draw(st.integers(0, len(old))) :]
        else:
            old.append(draw(json_values))
    return doc


@st.composite
def damaged_bytes(draw, data: bytes):
    """``data`` truncated, with bytes overwritten, or replaced by random bytes."""
    op = draw(st.sampled_from(["truncate", "overwrite", "random", "empty"]))
    if op == "truncate":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if op == "overwrite":
        b = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            b[draw(st.integers(0, len(b) - 1))] = draw(st.integers(0, 255))
        return bytes(b)
    if op == "random":
        return draw(st.binary(min_size=1, max_size=200))
    return b""


def _npy(arr) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


@st.composite
def mutated_llff_array(draw, data: bytes):
    arr = np.load(io.BytesIO(data))
    op = draw(st.sampled_from(["entries", "shape", "dtype"]))
    if op == "entries":
        arr = arr.copy()
        for _ in range(draw(st.integers(1, 4))):
            i, j = draw(st.integers(0, arr.shape[0] - 1)), draw(st.integers(0, 16))
            arr[i, j] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0, 1e308, -3.0, 1e-30, 7.5]))
        return _npy(arr)
    if op == "shape":
        shape = tuple(draw(st.lists(st.integers(0, 20), min_size=0, max_size=3)))
        return _npy(np.ones(shape))
    dtype = draw(st.sampled_from(["<U3", "bool", "int8", "complex128", "float16", "V4"]))
    return _npy(np.zeros((3, 17), dtype=dtype))


@st.composite
def mutated_dtu_npz(draw, data: bytes):
    """The camera archive with 1-3 matrices deleted, reshaped, retyped, given non-finite entries, or added."""
    with np.load(io.BytesIO(data)) as f:
        mats = {k: f[k] for k in f.files}
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(mats) + ["world_mat_3", "scale_mat_7", "camera_mat_0"]))
        op = draw(st.sampled_from(["delete", "shape", "dtype", "entries"]))
        if op == "delete":
            mats.pop(key, None)
        elif op == "shape":
            mats[key] = np.ones(tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=3))))
        elif op == "dtype":
            mats[key] = np.zeros((4, 4), dtype=draw(st.sampled_from(["<U3", "bool", "int8", "complex128", "V4"])))
        else:
            old = mats.get(key)
            numeric = old is not None and old.dtype.kind in "fiub" and old.size > 0
            m = np.array(old if numeric else np.eye(4), dtype=np.float64)
            flat = m.reshape(-1)
            for _ in range(draw(st.integers(1, 4))):
                flat[draw(st.integers(0, flat.size - 1))] = draw(
                    st.sampled_from([np.nan, np.inf, 0.0, -1.0, 1e308, 1e-30])
                )
            mats[key] = m
    return _npz(mats)


# ---------------------------------------------------------------------------------------------- property 1
@pytest.mark.parametrize("fmt", ["blender", "transforms", "camera_path"])
@FUZZ
@given(data=st.data())
def test_mutated_json_inputs_load_or_raise_dataset_error(fmt, data):
    files = LOADERS[fmt][0]()
    key = LOADERS[fmt][1]
    files[key] = data.draw(mutated_json(files[key]))
    outcome(fmt, files)


@pytest.mark.parametrize("fmt", ["blender", "transforms", "llff", "dtu"])
@FUZZ
@given(data=st.data())
def test_damaged_files_load_or_raise_dataset_error(fmt, data):
    files = LOADERS[fmt][0]()
    names = sorted(files)
    name = data.draw(st.sampled_from(names))
    content = files[name] if isinstance(files[name], bytes) else json.dumps(files[name]).encode()
    if fmt == "llff" and name == "poses_bounds.npy" and data.draw(st.booleans()):
        files[name] = data.draw(mutated_llff_array(content))
    elif fmt == "dtu" and name == "cameras_sphere.npz" and data.draw(st.booleans()):
        files[name] = data.draw(mutated_dtu_npz(content))
    else:
        files[name] = data.draw(damaged_bytes(content))
    outcome(fmt, files)


# ---------------------------------------------------------------------------------------------- property 2
def _numeric(s: str) -> bool:
    try:
        return math.isfinite(float(s))
    except ValueError:
        return False


NOT_A_NUMBER = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=5).filter(lambda s: not _numeric(s)),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)

REQUIRED = {
    "blender": [("camera_angle_x",), ("frames",), ("frames", 0, "file_path"), ("frames", 1, "transform_matrix")],
    "transforms": [("frames",), ("frames", 2, "file_path"), ("frames", 0, "transform_matrix")],
    "camera_path": [("render_width",), ("render_height",), ("camera_path",), ("camera_path", 1, "camera_to_world"),
                    ("camera_path", 0, "fov")],
}  # fmt: skip


@pytest.mark.parametrize("fmt", ["blender", "transforms", "camera_path"])
@FUZZ
@given(data=st.data())
def test_certainly_malformed_json_raises_dataset_error(fmt, data):
    files = LOADERS[fmt][0]()
    key = LOADERS[fmt][1]
    doc = files[key]
    kind = data.draw(st.sampled_from(["prefix", "missing", "non_rigid", "wrong_type"]))
    if kind == "prefix":  # a strict prefix of a JSON object is never valid JSON
        text = json.dumps(doc)
        files[key] = text[: data.draw(st.integers(0, len(text) - 1))].encode()
    elif kind == "missing":
        path = data.draw(st.sampled_from(REQUIRED[fmt]))
        del _parent(doc, path)[path[-1]]
    elif kind == "non_rigid":
        m = np.array(data.draw(st.lists(st.floats(-10, 10), min_size=16, max_size=16))).reshape(4, 4)
        r = m[:3, :3]
        assume(np.abs(r.T @ r - np.eye(3)).max() > 1e-2 or abs(np.linalg.det(r) - 1) > 1e-2)
        m[3] = [0, 0, 0, 1]
        entries = doc["camera_path"] if fmt == "camera_path" else doc["frames"]
        i = data.draw(st.integers(0, len(entries) - 1))
        if fmt == "camera_path":
            entries[i]["camera_to_world"] = m.reshape(-1).tolist()
        else:
            entries[i]["transform_matrix"] = m.tolist()
    else:  # a required number (or matrix) given as another JSON type
        bad = data.draw(NOT_A_NUMBER)
        path = {
            "blender": ("camera_angle_x",),
            "transforms": ("fl_x",),
            "camera_path": ("render_width",),
        }[fmt]
        if fmt == "transforms":
            del doc["fl_y"]  # else fl_y would stand in for fl_x
        _parent(doc, path)[path[-1]] = bad
    err = outcome(fmt, files)
    assert err is not None, f"{kind}: a malformed {fmt} input loaded without an error"


def _certainly_bad_dtu(data, files: dict) -> None:
    """Damage the DTU input in a way that must fail: a camera matrix missing / singular / misshapen, counts."""
    mats = dtu_mats()
    i = data.draw(st.integers(0, 2))
    kind = data.draw(st.sampled_from(["missing", "singular", "shape", "nonfinite", "extra", "scale", "masks"]))
    if kind == "missing":
        del mats[data.draw(st.sampled_from([f"world_mat_{i}", f"scale_mat_{i}"]))]
    elif kind == "singular":  # P[:, :3] of rank <= 2: one row a combination of the others
        w = data.draw(st.lists(st.floats(-2, 2), min_size=2, max_size=2))
        mats[f"world_mat_{i}"][2, :3] = w[0] * mats[f"world_mat_{i}"][0, :3] + w[1] * mats[f"world_mat_{i}"][1, :3]
    elif kind == "shape":
        shape = data.draw(st.tuples(st.integers(0, 5), st.integers(0, 5)).filter(lambda s: s not in ((4, 4), (3, 4))))
        mats[f"world_mat_{i}"] = np.ones(shape)
    elif kind == "nonfinite":
        mats[f"scale_mat_{i}"][data.draw(st.integers(0, 3)), data.draw(st.integers(0, 3))] = np.nan
    elif kind == "extra":  # 4 cameras, 3 images (an image missing)
        mats["world_mat_3"], mats["scale_mat_3"] = mats["world_mat_0"], mats["scale_mat_0"]
    elif kind == "scale":  # not a similarity: anisotropic or reflecting
        mats[f"scale_mat_{i}"] = np.diag([*data.draw(st.sampled_from([(1, 2, 1), (-1, 1, 1), (1, 1, 0)])), 1.0])
    else:
        del files[data.draw(st.sampled_from(sorted(n for n in files if n.startswith("mask/"))))]
    files["cameras_sphere.npz"] = _npz(mats)


@pytest.mark.parametrize("fmt", ["blender", "transforms", "llff", "dtu"])
@FUZZ
@given(data=st.data())
def test_damaged_images_and_arrays_raise_dataset_error(fmt, data):
    files = LOADERS[fmt][0]()
    images = sorted(n for n in files if n.endswith(".png"))
    if fmt == "dtu" and data.draw(st.booleans()):
        _certainly_bad_dtu(data, files)
    elif fmt == "llff" and data.draw(st.booleans()):
        arr = np.load(io.BytesIO(files["poses_bounds.npy"]))
        kind = data.draw(st.sampled_from(["shape", "nonfinite", "bounds", "focal", "count"]))
        if kind == "shape":
            shape = data.draw(st.tuples(st.integers(0, 5), st.integers(0, 20)).filter(lambda s: s != (3, 17)))
            arr = np.ones(shape)
        elif kind == "nonfinite":
            arr[data.draw(st.integers(0, 2)), data.draw(st.integers(0, 16))] = data.draw(
                st.sampled_from([np.nan, np.inf])
            )
        elif kind == "bounds":
            arr[data.draw(st.integers(0, 2)), data.draw(st.integers(15, 16))] = data.draw(st.floats(-5, 0))
        elif kind == "focal":
            arr[data.draw(st.integers(0, 2)), 14] = data.draw(st.floats(-5, 0))
        else:
            arr = np.concatenate([arr, arr[:1]])  # 4 poses, 3 images
        files["poses_bounds.npy"] = _npy(arr)
    else:
        name = data.draw(st.sampled_from(images))
        kind = data.draw(st.sampled_from(["truncate", "random", "resize", "empty"]))
        png = files[name]
        if kind == "truncate":  # cut inside the image data (the IDAT chunk), so decoding must fail
            files[name] = png[: data.draw(st.integers(33, len(png) - 40))]
        elif kind == "random":
            files[name] = data.draw(st.binary(min_size=1, max_size=64).filter(lambda b: not b.startswith(b"\x89PNG")))
        elif kind == "resize":  # all images of a scene must share one size
            files[name] = _png(5, 7, mode="RGB")
        else:
            files[name] = b""
    assert outcome(fmt, files) is not None


def test_the_unmutated_inputs_load():
    for fmt, (make, _, _) in LOADERS.items():
        assert outcome(fmt, make()) is None, fmt
