"""Point-cloud files: ``.ply`` (open3d when installed, else the small reader here), COLMAP ``points3D.bin``,
``.txt``/``.xyz`` rows of ``x,y,z[,...]`` (commas or spaces) and ``.npy`` arrays. Errors name the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_PLY_TYPES = {
    "char": "i1",
    "int8": "i1",
    "uchar": "u1",
    "uint8": "u1",
    "short": "i2",
    "int16": "i2",
    "ushort": "u2",
    "uint16": "u2",
    "int": "i4",
    "int32": "i4",
    "uint": "u4",
    "uint32": "u4",
    "float": "f4",
    "float32": "f4",
    "double": "f8",
    "float64": "f8",
}


def _ply_header(path: Path, raw: bytes) -> tuple[str, list[tuple[str, int, list[tuple[str, str]]]], int]:
    """(format, [(element name, count, [(property, numpy type | 'list')])], header byte length)."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise ValueError(f"{path}: not a PLY file (missing 'ply' magic or 'end_header')")
    stop = raw.index(b"\n", end) + 1
    fmt, elements = None, []
    for line in raw[:stop].decode("ascii", errors="replace").splitlines()[1:]:
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info", "end_header"):
            continue
        if parts[0] == "format":
            fmt = parts[1]
        elif parts[0] == "element":
            elements.append((parts[1], int(parts[2]), []))
        elif parts[0] == "property" and elements:
            if parts[1] == "list":
                elements[-1][2].append((parts[-1], "list"))
            elif parts[1] in _PLY_TYPES:
                elements[-1][2].append((parts[2], _PLY_TYPES[parts[1]]))
            else:
                raise ValueError(f"{path}: unknown PLY property type {parts[1]!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise ValueError(f"{path}: unsupported PLY format {fmt!r}")
    return fmt, elements, stop


def read_ply(path) -> dict[str, np.ndarray]:
    """Vertices of a PLY file: ``xyz`` [n_points, 3] float64, plus ``rgb`` [n_points, 3] in [0, 1] and
    ``normals`` [n_points, 3] when present. The vertex element must come before any list-valued element."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: point-cloud file not found")
    raw = path.read_bytes()
    fmt, elements, start = _ply_header(path, raw)
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise ValueError(f"{path}: PLY file has no 'vertex' element")
    before = elements[: names.index("vertex")]
    if any(t == "list" for e in before for _, t in e[2]):
        raise ValueError(f"{path}: PLY elements with list properties before 'vertex' are not supported")
    _, count, props = elements[names.index("vertex")]
    if any(t == "list" for _, t in props):
        raise ValueError(f"{path}: list properties in the 'vertex' element are not supported")
    if fmt == "ascii":
        skip = sum(e[1] for e in before)
        lines = raw[start:].decode("ascii", errors="replace").splitlines()[skip : skip + count]
        try:
            table = np.array([ln.split()[: len(props)] for ln in lines], dtype=np.float64)
        except ValueError as e:
            raise ValueError(f"{path}: malformed ASCII PLY vertex rows: {e}") from None
        if table.shape != (count, len(props)):
            raise ValueError(f"{path}: expected {count} vertex rows of {len(props)} values, got {table.shape}")
        cols = {name: table[:, i] for i, (name, _) in enumerate(props)}
    else:
        order = "<" if fmt == "binary_little_endian" else ">"
        offset = start + sum(e[1] * sum(np.dtype(t).itemsize for _, t in e[2]) for e in before)
        dtype = np.dtype([(name, order + t) for name, t in props])
        if len(raw) < offset + count * dtype.itemsize:
            raise ValueError(f"{path}: truncated binary PLY ({count} vertices of {dtype.itemsize} bytes expected)")
        rec = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        cols = {name: rec[name].astype(np.float64) for name, _ in props}
    return _ply_columns(path, cols)


def _ply_columns(path: Path, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not {"x", "y", "z"} <= set(cols):
        raise ValueError(f"{path}: PLY vertices need x, y, z properties, got {sorted(cols)}")
    out = {"xyz": np.stack([cols["x"], cols["y"], cols["z"]], -1)}
    if {"red", "green", "blue"} <= set(cols):
        rgb = np.stack([cols["red"], cols["green"], cols["blue"]], -1)
        out["rgb"] = rgb / 255.0 if rgb.max(initial=0) > 1.0 else rgb
    if {"nx", "ny", "nz"} <= set(cols):
        out["normals"] = np.stack([cols["nx"], cols["ny"], cols["nz"]], -1)
    return out


def write_ply(path, xyz: np.ndarray, rgb: np.ndarray | None = None, *, binary: bool = True) -> None:
    """Write [n_points, 3] points (and [n_points, 3] colours in [0, 1]) as a PLY file."""
    xyz = np.asarray(xyz, dtype=np.float32)
    props = [("x", "f4"), ("y", "f4"), ("z", "f4")] + (
        [("red", "u1"), ("green", "u1"), ("blue", "u1")] if rgb is not None else []
    )
    rec = np.empty(len(xyz), dtype=[(n, "<" + t) for n, t in props])
    for i, c in enumerate("xyz"):
        rec[c] = xyz[:, i]
    if rgb is not None:
        for i, c in enumerate(("red", "green", "blue")):
            rec[c] = np.clip(np.round(np.asarray(rgb)[:, i] * 255.0), 0, 255)
    kind = {"f4": "float", "u1": "uchar"}
    header = ["ply", f"format {'binary_little_endian' if binary else 'ascii'} 1.0", f"element vertex {len(xyz)}"]
    header += [f"property {kind[t]} {n}" for n, t in props] + ["end_header"]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        if binary:
            f.write(rec.tobytes())
        else:
            f.writelines((" ".join(str(v) for v in row) + "\n").encode("ascii") for row in rec)


def load_points(path) -> dict[str, np.ndarray]:
    """Any supported point file -> ``{'xyz': [n_points, 3], optional 'rgb', 'normals'}`` (float64)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: point-cloud file not found")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        try:
            import open3d as o3d  # optional
        except ImportError:
            return read_ply(path)
        pc = o3d.io.read_point_cloud(str(path))
        out = {"xyz": np.asarray(pc.points, dtype=np.float64)}
        if pc.has_colors():
            out["rgb"] = np.asarray(pc.colors, dtype=np.float64)
        if pc.has_normals():
            out["normals"] = np.asarray(pc.normals, dtype=np.float64)
        if not len(out["xyz"]):
            raise ValueError(f"{path}: no points read (empty or unreadable PLY)")
        return out
    if suffix == ".bin":
        from neural3d.data.colmap import read_points3d_bin

        pts = read_points3d_bin(path)
        return {"xyz": pts.xyz.astype(np.float64), "rgb": pts.rgb.astype(np.float64) / 255.0}
    if suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    elif suffix in (".txt", ".xyz", ".pts", ".csv"):
        arr = read_text_points(path)
    else:
        raise ValueError(f"{path}: unknown point-cloud extension {suffix!r} (use .ply, .bin, .txt, .xyz, .pts, .npy)")
    if arr.ndim != 2 or arr.shape[1] < 3:
        raise ValueError(f"{path}: expected [n_points, >=3] values, got {arr.shape}")
    out = {"xyz": arr[:, :3].astype(np.float64)}
    if arr.shape[1] >= 6:
        out["normals"] = arr[:, 3:6].astype(np.float64)
    return out


def read_text_points(path) -> np.ndarray:
    """Rows of numbers separated by commas or spaces -> [n_rows, n_cols] float32 (errors name the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: point file not found")
    text = path.read_text().replace(",", " ")
    try:
        arr = np.array([ln.split() for ln in text.splitlines() if ln.strip()], dtype=np.float32)
    except ValueError as e:
        raise ValueError(f"{path}: malformed point rows (expected numbers separated by commas/spaces): {e}") from None
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"{path}: no point rows, or rows of different lengths")
    return arr
