"""Multiresolution hash encoding (Instant-NGP) in pure PyTorch, index-compatible with tiny-cuda-nn.

Conventions follow ``include/tiny-cuda-nn/encodings/grid.h`` (``GridEncodingTemplated``, ``kernel_grid``,
``grid_index``, ``fast_hash``) and ``pos_fract`` in ``common_device.h``:

* level ``l`` has ``scale_l = exp2(l * log2(per_level_scale)) * base_resolution - 1`` (fp32) and
  ``resolution_l = ceil(scale_l) + 1``;
* rows in level ``l``: ``min(next_multiple(resolution_l^3, 8), 2^log2_hashmap_size)``; levels are stored
  back to back (``offsets``), each row holding ``F`` features, so the flat parameter vector is
  ``params[(offset_l + row) * F + f]`` -- exactly tcnn's ``params`` tensor;
* a position ``x`` in [0, 1]^3 maps to ``pos = fma(x, scale_l, 0.5)``, ``cell = floor(pos)``,
  ``frac = pos - cell``; corner ``c`` (bit ``d`` of ``c`` selects ``cell_d + 1``) has weight
  ``prod_d (frac_d if bit else 1 - frac_d)``;
* levels with ``resolution^3 <= rows`` are dense: ``row = (x + y*res + z*res^2) mod rows``; other levels hash
  ``row = ((x*1) ^ (y*2654435761) ^ (z*805459861) mod 2^32) mod rows``. All index arithmetic is uint32
  (emulated exactly in int64), so the ``+0.5`` wrap-around of the top corner behaves as in tcnn.

Output layout is level-major: channel ``l * F + f`` (as tcnn's encoding output).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from neural3d.fields.backends import candidates, check_backend, pick_fastest, resolve_backend

_MASK32 = 0xFFFFFFFF
HASH_PRIMES = (1, 2654435761, 805459861)


@dataclass(frozen=True)
class GridLayout:
    """Per-level geometry of a multiresolution grid (all Python numbers, shared by every device).

    Attributes:
        scales: [n_levels] fp32-rounded ``scale_l`` (positions are multiplied by these).
        resolutions: [n_levels] vertices per axis ``ceil(scale_l) + 1``.
        sizes: [n_levels] rows of each level's table.
        offsets: [n_levels + 1] first row of each level in the flat table (last = total rows).
        n_features: features per level ``F``.
    """

    scales: tuple[float, ...]
    resolutions: tuple[int, ...]
    sizes: tuple[int, ...]
    offsets: tuple[int, ...]
    n_features: int

    @property
    def n_levels(self) -> int:
        return len(self.scales)

    @property
    def n_rows(self) -> int:
        return self.offsets[-1]

    @property
    def n_params(self) -> int:
        return self.offsets[-1] * self.n_features

    @property
    def hashed(self) -> tuple[bool, ...]:
        """[n_levels] whether a level uses the spatial hash (``res^3 > rows``)."""
        return tuple(r**3 > s for r, s in zip(self.resolutions, self.sizes))


def per_level_scale_for(base_resolution: float, max_resolution: float, n_levels: int) -> float:
    """Growth factor ``exp((ln max_res - ln base_res) / (n_levels - 1))`` (1.0 for a single level)."""
    if n_levels < 1 or base_resolution <= 0 or max_resolution < base_resolution:
        raise ValueError(
            f"hashgrid.py: need n_levels >= 1 and 0 < base_resolution <= max_resolution, got "
            f"n_levels={n_levels}, base_resolution={base_resolution}, max_resolution={max_resolution}"
        )
    if n_levels == 1:
        return 1.0
    return math.exp((math.log(max_resolution) - math.log(base_resolution)) / (n_levels - 1))


def grid_layout(
    *, n_levels: int, n_features_per_level: int, log2_hashmap_size: int, base_resolution: int, per_level_scale: float
) -> GridLayout:
    """The tcnn ``GridEncodingTemplated`` constructor's level table (3-D positions, hash grid type)."""
    if n_features_per_level not in (1, 2, 4, 8):
        raise ValueError(f"hashgrid.py: n_features_per_level must be 1, 2, 4 or 8 (tcnn), got {n_features_per_level}")
    if not 1 <= n_levels <= 32:
        raise ValueError(f"hashgrid.py: n_levels must be in 1..32 (tcnn offset table), got {n_levels}")
    if per_level_scale < 1.0:
        raise ValueError(f"hashgrid.py: per_level_scale must be >= 1, got {per_level_scale}")
    f32 = np.float32
    log2_scale = f32(np.log2(f32(per_level_scale)))  # tcnn: std::log2(float m_per_level_scale)
    max_params = (2**32 - 1) // 2
    scales, resolutions, sizes, offsets = [], [], [], [0]
    for level in range(n_levels):
        scale = f32(np.exp2(f32(level) * log2_scale)) * f32(base_resolution) - f32(1.0)
        resolution = math.ceil(float(scale)) + 1
        dense = resolution**3 if float(resolution) ** 3 <= max_params else max_params
        size = min(-(-dense // 8) * 8, 2**log2_hashmap_size)
        scales.append(float(scale))
        resolutions.append(resolution)
        sizes.append(size)
        offsets.append(offsets[-1] + size)
    return GridLayout(tuple(scales), tuple(resolutions), tuple(sizes), tuple(offsets), n_features_per_level)


def _cell_and_frac(positions01: Tensor, scales: Tensor) -> tuple[Tensor, Tensor]:
    """tcnn ``pos_fract``: [n, 3] positions, [L] scales -> (cell [n, L, 3] int64, frac [n, L, 3] fp32).

    ``fma(x, scale, 0.5)`` in fp32 is emulated by an exact float64 product (24 x 24 bits) and one rounding.
    ``cell`` stays signed: it equals tcnn's uint32 ``pos_grid`` modulo 2^32, which is all the indexing uses.
    """
    x = positions01.float()
    pos = (x.double()[:, None, :] * scales.double()[None, :, None] + 0.5).float()
    cell = torch.floor(pos)
    return cell.long(), pos - cell


def _corner_rows(cell: Tensor, layout: GridLayout, levels: range) -> Tensor:
    """[n, L, 3] cells of a run of levels -> [n, L, 8] corner rows counted from ``layout.offsets[levels.start]``.

    Corner ``c`` takes ``cell_d + ((c >> d) & 1)`` along axis ``d`` (tcnn's loop order). Per-axis terms of the
    two corner coordinates are formed on [n, L, 2] tensors and combined by broadcasting to
    [n, L, 2 (z), 2 (y), 2 (x)], which flattens to ``c = 4 bz + 2 by + bx``. Signed cells (``|c| < 2^31``)
    keep every product inside int64; masking with ``2^32 - 1`` gives tcnn's uint32 results.
    """
    device = cell.device
    sl = slice(levels.start, levels.stop)
    both = torch.stack([cell, cell + 1], dim=-1)  # [n, L, 3, 2]
    sizes = layout.sizes[sl]
    local = torch.tensor(layout.offsets[sl], dtype=torch.int64, device=device) - layout.offsets[levels.start]
    if layout.hashed[levels.start]:
        size = sizes[0]
        if all(s == size for s in sizes) and size & (size - 1) == 0:
            # Equal power-of-two tables: (h mod 2^32) mod size == h & (size - 1) per axis, and the level's
            # offset (level * size) can be OR-ed into one axis term since rows < size.
            m = size - 1
            tx, ty, tz = [(both[:, :, d] * HASH_PRIMES[d]) & m for d in range(3)]
            tz = tz | local[None, :, None]
            return (tx[:, :, None, None, :] ^ ty[:, :, None, :, None] ^ tz[:, :, :, None, None]).flatten(2)
        tx, ty, tz = [(both[:, :, d] * HASH_PRIMES[d]) & _MASK32 for d in range(3)]
        index = tx[:, :, None, None, :] ^ ty[:, :, None, :, None] ^ tz[:, :, :, None, None]
    else:
        res = torch.tensor(layout.resolutions[sl], dtype=torch.int64, device=device)[None, :, None]
        tx, ty, tz = [(both[:, :, d] * res**d) & _MASK32 for d in range(3)]
        index = (tx[:, :, None, None, :] + ty[:, :, None, :, None] + tz[:, :, :, None, None]) & _MASK32
        if min(layout.resolutions[sl]) >= 4 and bool((cell >= 0).all()):
            # In-range cells give index <= (res + 1)^3 - 1 < 2 * rows (rows >= res^3, res >= 4), so the
            # modulo of the top-corner wrap is one conditional subtraction (integer division is slow on CPU).
            size_t = torch.tensor(sizes, dtype=torch.int64, device=device)[None, :, None, None, None]
            index = torch.where(index >= size_t, index - size_t, index)
            return index.flatten(2) + local[None, :, None]
    size_t = torch.tensor(sizes, dtype=torch.int64, device=device)[None, :, None]
    return index.flatten(2) % size_t + local[None, :, None]


def _indices_and_weights(positions01: Tensor, layout: GridLayout, levels: range) -> tuple[Tensor, Tensor]:
    """[n, 3] -> (rows [n, len(levels), 8] int64 counted from ``offsets[levels.start]``, weights [n, len(levels), 8]).

    ``levels`` must be all dense or all hashed.
    """
    if len({layout.hashed[i] for i in levels}) != 1:
        raise ValueError("hashgrid.py: _indices_and_weights needs levels that are all dense or all hashed")
    scales = torch.tensor(layout.scales[levels.start : levels.stop], dtype=torch.float32, device=positions01.device)
    cell, frac = _cell_and_frac(positions01, scales)
    rows = _corner_rows(cell, layout, levels)
    w = torch.stack([1.0 - frac, frac], dim=-1)  # [n, L, 3, 2]
    weights = (w[:, :, 0, None, None, :] * w[:, :, 1, None, :, None] * w[:, :, 2, :, None, None]).flatten(2)
    return rows, weights


def grid_indices(positions01: Tensor, *, scale: float, resolution: int, size: int) -> tuple[Tensor, Tensor]:
    """Corner rows and trilinear weights of one level.

    Args:
        positions01: [n, 3] positions in [0, 1]^3 (values outside wrap like tcnn's uint32 arithmetic).
        scale: the level's fp32 scale (``GridLayout.scales[l]``).
        resolution: vertices per axis (``GridLayout.resolutions[l]``).
        size: rows in the level's table (``GridLayout.sizes[l]``); the level is hashed iff ``resolution^3 > size``.
    Returns:
        (indices [n, 8] int64 rows into the level's table, weights [n, 8] summing to 1).
    """
    layout = GridLayout((float(scale),), (int(resolution),), (int(size),), (0, int(size)), 1)
    rows, weights = _indices_and_weights(_check_positions(positions01), layout, range(1))
    return rows[:, 0], weights[:, 0]


def _check_positions(positions01: Tensor) -> Tensor:
    if positions01.ndim != 2 or positions01.shape[-1] != 3:
        raise ValueError(f"hashgrid.py: expected positions of shape [n, 3], got {tuple(positions01.shape)}")
    return positions01


def _runs(flags: tuple[bool, ...]) -> list[range]:
    """Maximal runs of equal flags, e.g. (F, F, T, T, T) -> [range(0, 2), range(2, 5)]."""
    starts = [i for i in range(len(flags)) if i == 0 or flags[i] != flags[i - 1]]
    return [range(a, b) for a, b in zip(starts, starts[1:] + [len(flags)])]


def hash_encode(positions01: Tensor, table: Tensor, layout: GridLayout) -> Tensor:
    """Multiresolution hash encoding.

    Args:
        positions01: [n, 3] positions in [0, 1]^3 (converted to fp32 like tcnn's input).
        table: [n_rows, F] all levels' feature rows stacked (``layout.offsets``), i.e. tcnn's
            ``params.view(-1, F)``; any float dtype (weights are cast to it).
        layout: the level table from :func:`grid_layout`.
    Returns:
        [n, n_levels * F] features, channel ``l * F + f``.
    """
    positions01 = _check_positions(positions01)
    if table.shape != (layout.n_rows, layout.n_features):
        raise ValueError(
            f"hashgrid.py: table must have shape [{layout.n_rows}, {layout.n_features}], got {tuple(table.shape)}"
        )
    n = positions01.shape[0]
    rows, weights = [], []
    for levels in _runs(layout.hashed):  # dense levels (a prefix in practice), then hashed ones
        r, w = _indices_and_weights(positions01, layout, levels)
        rows.append(r + layout.offsets[levels.start])  # global rows: one gather, no slice of the table
        weights.append(w)
    rows = rows[0] if len(rows) == 1 else torch.cat(rows, dim=1)  # [n, L, 8]
    weights = weights[0] if len(weights) == 1 else torch.cat(weights, dim=1)
    # One gather over all levels: its backward is a single index_add into the table gradient (slicing the table
    # per run would allocate and add a full-size zero gradient per run).
    gathered = table.index_select(0, rows.reshape(-1)).view(-1, 8, layout.n_features)
    mixed = torch.bmm(weights.to(table.dtype).view(-1, 1, 8), gathered)  # [n * L, 1, F] 8-tap sums
    return mixed.view(n, layout.n_levels * layout.n_features)


class HashGridEncoding(nn.Module):
    """Trainable multiresolution hash grid (tcnn ``HashGrid``) with a tcnn-layout flat ``params`` vector.

    Args:
        n_levels: number of levels ``L``.
        n_features_per_level: ``F`` (1, 2, 4 or 8).
        log2_hashmap_size: log2 of the maximum rows per level.
        base_resolution: coarsest resolution ``N_min``.
        max_resolution: finest resolution ``N_max``; sets ``per_level_scale`` unless that is given.
        per_level_scale: growth factor (overrides ``max_resolution``), e.g. from a tcnn config.
        backend: "auto" | "torch" | "cpu" | "tcnn" | "triton" (:mod:`neural3d.fields.backends`); resolved per
            call from the input's device ("auto": the fastest of tcnn / triton / torch on CUDA, measured once; the
            fused C kernel on CPU for float32 tables when it builds; torch elsewhere).

    ``params`` [n_rows * F] is laid out exactly like ``tinycudann.Encoding(...).params`` for the config
    ``{"otype": "HashGrid", n_levels, n_features_per_level, log2_hashmap_size, base_resolution,
    per_level_scale}`` (see :meth:`tcnn_config`), so ``state_dict()["params"]`` moves between backends.

    Shapes: ``[*batch, 3]`` positions in [0, 1]^3 -> ``[*batch, n_levels * F]``.
    """

    def __init__(
        self,
        *,
        n_levels: int = 16,
        n_features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        max_resolution: float = 2048,
        per_level_scale: float | None = None,
        backend: str = "auto",
    ):
        super().__init__()
        self.backend = check_backend(backend, "hashgrid.py")
        self._auto_choice: dict[str, str] = {}  # device -> backend measured for "auto"
        if per_level_scale is None:
            per_level_scale = per_level_scale_for(base_resolution, max_resolution, n_levels)
        self.per_level_scale = float(np.float32(per_level_scale))  # tcnn stores it as a float
        self.base_resolution = int(base_resolution)
        self.log2_hashmap_size = int(log2_hashmap_size)
        self.layout = grid_layout(
            n_levels=n_levels,
            n_features_per_level=n_features_per_level,
            log2_hashmap_size=log2_hashmap_size,
            base_resolution=base_resolution,
            per_level_scale=self.per_level_scale,
        )
        self.params = nn.Parameter(torch.empty(self.layout.n_params).uniform_(-1e-4, 1e-4))

    @property
    def n_levels(self) -> int:
        return self.layout.n_levels

    @property
    def n_features_per_level(self) -> int:
        return self.layout.n_features

    @property
    def out_dim(self) -> int:
        return self.layout.n_levels * self.layout.n_features

    def table(self) -> Tensor:
        """[n_rows, F] view of ``params``."""
        return self.params.view(self.layout.n_rows, self.layout.n_features)

    def tcnn_config(self) -> dict:
        """The tcnn encoding config that produces the same ``params`` layout and outputs."""
        return {
            "otype": "HashGrid",
            "n_levels": self.n_levels,
            "n_features_per_level": self.n_features_per_level,
            "log2_hashmap_size": self.log2_hashmap_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.per_level_scale,
        }

    def forward(self, positions01: Tensor) -> Tensor:
        """[*batch, 3] in [0, 1]^3 -> [*batch, n_levels * F]."""
        if positions01.shape[-1] != 3:
            raise ValueError(
                f"hashgrid.py: HashGridEncoding expects [..., 3] positions, got {tuple(positions01.shape)}"
            )
        batch = positions01.shape[:-1]
        flat = positions01.reshape(-1, 3)
        backend = self.backend_for(flat.device)
        if backend == "cpu" and self.backend == "auto" and self.params.dtype != torch.float32:
            backend = "torch"  # the C kernel computes in fp32; float64 tables (gradient checks) keep their precision
        return self.encode_with(backend, flat, self.table()).reshape(*batch, self.out_dim)

    def encode_with(self, backend: str, flat: Tensor, table: Tensor) -> Tensor:
        """[n, 3] positions -> [n, out_dim] with a concrete backend (tcnn always uses ``self.params``)."""
        if backend == "triton":
            from neural3d.fields.backends.triton_hash import triton_hash_encode

            return triton_hash_encode(flat, table, self.layout)
        if backend == "cpu":
            from neural3d.fields.backends.cpu_hash import cpu_hash_encode

            return cpu_hash_encode(flat, table, self.layout)
        if backend == "tcnn":
            from neural3d.fields.backends.tcnn import tcnn_encode

            return tcnn_encode(self, flat)
        return hash_encode(flat, table, self.layout)

    def backend_for(self, device: torch.device) -> str:
        """The concrete backend used on ``device``; ``auto`` times the CUDA candidates once per device (on CPU the
        fused kernel, when it builds, is always faster than the reference and is taken unmeasured)."""
        if self.backend != "auto":
            return resolve_backend(self.backend, device, "hashgrid.py")
        key = str(device)
        if key not in self._auto_choice:
            names = candidates(device)
            measure = device.type == "cuda" and len(names) > 1
            self._auto_choice[key] = self._measure(names, device) if measure else names[0]
        return self._auto_choice[key]

    def _measure(self, names: list[str], device: torch.device, n_probe: int = 1 << 16) -> str:
        """Time forward + backward of each backend on ``n_probe`` random points (gradients discarded)."""
        with torch.inference_mode(False):
            x = torch.rand(n_probe, 3, device=device)
        grad_before = self.params.grad

        def run(name: str):
            with torch.inference_mode(False), torch.enable_grad():  # forward may run under no_grad
                table = self.table().detach().clone().requires_grad_(True)
                self.encode_with(name, x, table).sum().backward()

        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        try:
            return pick_fastest(
                {n: (lambda n=n: run(n)) for n in names},
                sync=sync,
                what=f"hash grid ({self.n_levels} levels, {device})",
            )
        finally:
            self.params.grad = grad_before  # tcnn's probe writes into self.params.grad

    def extra_repr(self) -> str:
        return (
            f"n_levels={self.n_levels}, F={self.n_features_per_level}, log2_hashmap_size={self.log2_hashmap_size}, "
            f"base_resolution={self.base_resolution}, per_level_scale={self.per_level_scale:.6f}, "
            f"n_params={self.layout.n_params}, backend={self.backend}"
        )
