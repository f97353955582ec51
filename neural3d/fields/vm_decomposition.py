"""TensoRF's vector-matrix (VM) decomposition of a feature volume (Chen et al., ECCV 2022, arXiv 2203.09517).

A 3D grid of features is a sum over three modes of a plane (matrix) times a line (vector). Mode ``m``
pairs the plane over two axes with the line along the third (TensoRF's ``matMode`` / ``vecMode``)::

    mode 0: plane over (x, y), line along z
    mode 1: plane over (x, z), line along y
    mode 2: plane over (y, z), line along x

    component r of mode m at p = P_m[r](p_a, p_b) * V_m[r](p_c)       (bilinear x linear interpolation)

:meth:`VMDecomposition.forward` returns every component's product, ``[n, sum_m R_m]`` (mode 0's ``R_0``
first); the density of TensoRF is their sum, its appearance a linear map of them (the basis matrix ``B``).

Coordinates are in ``[-1, 1]`` per axis with TensoRF's ``align_corners=True`` convention: ``-1`` is the first
grid node and ``+1`` the last (``res - 1`` cells span the box). Storage follows the official layout: plane
``[1, R, res_b, res_a]`` (rows along the second axis) and line ``[1, R, res_c, 1]``, so ``F.grid_sample``
reads them as images and ``F.interpolate`` upsamples them. Points outside ``[-1, 1]`` read the border's values
(coordinates are clamped); the field zeroes the density outside its box.

Changing the resolution (:meth:`VMDecomposition.upsample`, :meth:`VMDecomposition.crop`) replaces the
parameters' data in place (the ``nn.Parameter`` objects stay, so the optimizer keeps referring to them; its
moments of a resized parameter no longer fit and are dropped, see
:func:`neural3d.training.optim.drop_resized_state`). Loading a state dict resizes the parameters to the stored
shapes first, so a checkpoint written after an upsampling loads into a freshly built (coarse) module.

With ``backend`` ``cpu`` / ``auto`` the features of float32 CPU points come from the fused C kernel
(:mod:`neural3d.fields.backends.cpu_vm`: the same component products bit for bit, sums to float rounding), with a
C backward into the planes and lines for training; points that need a gradient take the PyTorch path below.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neural3d.fields.backends.cpu_vm import (
    KernelWeights,
    check_vm_backend,
    resolve_vm_backend,
    vm_features,
    vm_features_autograd,
)

MAT_MODES = ((0, 1), (0, 2), (1, 2))
"""Axes ``(a, b)`` of each mode's plane (TensoRF's ``matMode``); ``a`` indexes the plane's columns."""
VEC_MODES = (2, 1, 0)
"""Axis of each mode's line (TensoRF's ``vecMode``)."""


def linear_taps(u: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """[*] coordinates in [-1, 1] over ``n`` nodes (``align_corners=True``) -> (left node [*] long, weight of the
    right node [*]). Coordinates outside [-1, 1] extrapolate from the end cells (callers clamp or mask them)."""
    f = (u + 1.0) * (0.5 * (n - 1))
    left = f.floor().clamp(0, n - 2)
    return left.long(), f - left


class _BilinearPlane(torch.autograd.Function):
    """``grid_sample(plane, uv, align_corners=True)`` (``uv`` in [-1, 1]) with a backward by ``index_add_``.

    On a CPU torch's own ``grid_sample`` backward is 1.7-2x slower than this scatter for 16-48 channels and
    40k-100k points (BENCHMARKS.md, "TensoRF's VM field"); the forward is ``grid_sample`` itself. The gradient
    with respect to ``uv`` is not computed (TensoRF detaches the coordinates too).
    """

    @staticmethod
    def forward(ctx, plane: Tensor, uv: Tensor) -> Tensor:  # plane [1, R, H, W], uv [n, 2] -> [R, n]
        ctx.save_for_backward(uv)
        ctx.plane_shape = plane.shape
        return F.grid_sample(plane, uv.view(1, -1, 1, 2), align_corners=True)[0, :, :, 0]

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # grad [R, n]
        (uv,) = ctx.saved_tensors
        _, r, h, w = ctx.plane_shape
        x0, wx = linear_taps(uv[:, 0], w)
        y0, wy = linear_taps(uv[:, 1], h)
        corner = y0 * w + x0
        index = torch.stack([corner, corner + 1, corner + w, corner + w + 1])  # [4, n]
        weight = torch.stack([(1 - wx) * (1 - wy), wx * (1 - wy), (1 - wx) * wy, wx * wy])  # [4, n]
        src = (weight[None] * grad[:, None]).reshape(r, -1)  # [R, 4n]
        out = grad.new_zeros(r, h * w).index_add_(1, index.reshape(-1), src)
        return out.view(1, r, h, w), None


def sample_plane(plane: Tensor, uv: Tensor) -> Tensor:
    """Bilinear samples of ``plane`` [1, R, H, W] at ``uv`` [n, 2] in [-1, 1] ((column, row)) -> [R, n].

    ``uv`` is clamped to [-1, 1] (outside: the border's value; the field zeroes the density outside its box)."""
    uv = uv.clamp(-1.0, 1.0)
    if torch.is_grad_enabled() and plane.requires_grad and not uv.requires_grad:
        return _BilinearPlane.apply(plane, uv)
    return F.grid_sample(plane, uv.view(1, -1, 1, 2), align_corners=True)[0, :, :, 0]


def sample_line(line: Tensor, u: Tensor) -> Tensor:
    """Linear samples of ``line`` [1, R, L, 1] at ``u`` [n] in [-1, 1] -> [R, n].

    Outside [-1, 1] the end node's value (the field zeroes the density outside its box)."""
    vec = line[0, :, :, 0]
    left, w = linear_taps(u.clamp(-1.0, 1.0), vec.shape[1])
    lo = vec.index_select(1, left)
    return lo + (vec.index_select(1, left + 1) - lo) * w


def plane_tv(plane: Tensor) -> Tensor:
    """Total variation of ``plane`` [1, R, H, W] as TensoRF's ``TVLoss``: ``2 (mean_dH + mean_dW)``, the means of
    the squared differences of neighbouring nodes along the rows (``R (H-1) W`` terms) and along the columns
    (``R H (W-1)`` terms). A scalar; its gradient pulls every node toward its neighbours."""
    d_rows = (plane[:, :, 1:, :] - plane[:, :, :-1, :]).square().mean()
    d_cols = (plane[:, :, :, 1:] - plane[:, :, :, :-1]).square().mean()
    return 2.0 * (d_rows + d_cols)


class VMDecomposition(nn.Module):
    """Three plane x line modes of ``n_components[m]`` components each over a ``resolution`` grid.

    Args:
        n_components: components per mode ``(R_0, R_1, R_2)`` (TensoRF: 16 each for density, 48 for appearance).
        resolution: grid nodes per axis ``(res_x, res_y, res_z)``, each >= 2.
        init_scale: the parameters start as ``init_scale * N(0, 1)`` (TensoRF: 0.1).
        backend: ``auto`` | ``torch`` | ``cpu``: how features are computed (:mod:`neural3d.fields.backends.cpu_vm`;
            ``auto``: the C kernel and its backward for float32 CPU tensors when it builds).

    Shapes: ``forward([n, 3]) -> [n, sum(n_components)]``; ``density_sum([n, 3]) -> [n]`` (the sum over all).
    """

    def __init__(
        self,
        *,
        n_components: Sequence[int],
        resolution: Sequence[int],
        init_scale: float = 0.1,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.backend = check_vm_backend(backend, "vm_decomposition.py")
        self._kernel_weights = KernelWeights()  # channels-last copies for the C kernel (not state)
        self.n_components = tuple(int(r) for r in n_components)
        res = _check_resolution(resolution)
        if len(self.n_components) != 3 or min(self.n_components) < 1:
            raise ValueError(f"vm_decomposition.py: n_components must be 3 positive counts, got {n_components}")
        self.planes = nn.ParameterList()
        self.lines = nn.ParameterList()
        for m, (a, b) in enumerate(MAT_MODES):
            r = self.n_components[m]
            self.planes.append(nn.Parameter(init_scale * torch.randn(1, r, res[b], res[a])))
            self.lines.append(nn.Parameter(init_scale * torch.randn(1, r, res[VEC_MODES[m]], 1)))

    @property
    def resolution(self) -> tuple[int, int, int]:
        """Grid nodes per axis ``(res_x, res_y, res_z)``."""
        res = [0, 0, 0]
        for m, (a, b) in enumerate(MAT_MODES):
            res[b], res[a] = self.planes[m].shape[2:]
            res[VEC_MODES[m]] = self.lines[m].shape[2]
        return tuple(res)

    @property
    def out_dim(self) -> int:
        return sum(self.n_components)

    def mode_products(self, x: Tensor) -> list[Tensor]:
        """[n, 3] points in [-1, 1] -> per mode [R_m, n]: plane times line of every component."""
        if x.ndim != 2 or x.shape[-1] != 3:
            raise ValueError(f"vm_decomposition.py: points must be [n, 3], got {tuple(x.shape)}")
        x = x.to(self.planes[0].dtype)
        out = []
        for m, ab in enumerate(MAT_MODES):
            p = sample_plane(self.planes[m], x[:, list(ab)])
            out.append(p * sample_line(self.lines[m], x[:, VEC_MODES[m]]))
        return out

    def uses_kernel(self, x: Tensor) -> bool:
        """Whether features of ``x`` [n, 3] come from the C kernel: ``backend`` resolves to ``cpu`` for these tensors
        and ``x`` needs no gradient (the planes and lines may: the kernel has their backward). ValueError for an
        explicit ``cpu`` that cannot run here."""
        if torch.is_grad_enabled() and x.requires_grad:
            return False
        dtype = self.planes[0].dtype
        return resolve_vm_backend(self.backend, x.device, dtype, "vm_decomposition.py") == "cpu"

    def _kernel(self, x: Tensor, *, reduce: bool = False, basis: Tensor | None = None) -> Tensor:
        if x.ndim != 2 or x.shape[-1] != 3:
            raise ValueError(f"vm_decomposition.py: points must be [n, 3], got {tuple(x.shape)}")
        grad = torch.is_grad_enabled()
        params_grad = grad and any(p.requires_grad for p in self.parameters())
        planes, lines = list(self.planes), list(self.lines)
        if not params_grad and not (grad and basis is not None and basis.requires_grad):
            return vm_features(x, planes, lines, self._kernel_weights, reduce=reduce, basis=basis)
        fn = vm_features_autograd if params_grad else vm_features
        out = fn(x, planes, lines, self._kernel_weights, reduce=reduce)
        return out if basis is None else F.linear(out, basis)

    def forward(self, x: Tensor) -> Tensor:
        """[n, 3] points in [-1, 1] -> [n, sum(n_components)] component products (mode 0 first)."""
        if self.uses_kernel(x):
            return self._kernel(x, reduce=False)
        return torch.cat(self.mode_products(x), dim=0).T

    def projected(self, x: Tensor, matrix: Tensor) -> Tensor:
        """[n, 3] points in [-1, 1], [out, sum(n_components)] matrix -> [n, out] ``forward(x) @ matrix.T`` (TensoRF's
        appearance features through its basis; the C kernel does both in one pass)."""
        if self.uses_kernel(x):
            return self._kernel(x, basis=matrix)
        return F.linear(self(x), matrix)

    def density_sum(self, x: Tensor) -> Tensor:
        """[n, 3] points in [-1, 1] -> [n] sum of all components (TensoRF's density feature)."""
        if self.uses_kernel(x):
            return self._kernel(x, reduce=True)
        return sum(prod.sum(0) for prod in self.mode_products(x))

    def plane_tv(self) -> Tensor:
        """Sum over the modes of :func:`plane_tv` of each plane (TensoRF regularises the planes, not the lines)."""
        return sum(plane_tv(plane) for plane in self.planes)

    @torch.no_grad()
    def upsample(self, resolution: Sequence[int]) -> None:
        """Resample every plane and line to ``resolution`` (bilinear / linear, ``align_corners=True``).

        The grid nodes keep their places at ``-1`` and ``+1``; the represented function is unchanged at the
        points that were grid nodes before and are grid nodes after (e.g. doubling ``res - 1``).
        """
        res = _check_resolution(resolution)
        for m, (a, b) in enumerate(MAT_MODES):
            plane, line = self.planes[m], self.lines[m]
            plane.data = F.interpolate(plane.data, size=(res[b], res[a]), mode="bilinear", align_corners=True)
            line.data = F.interpolate(line.data, size=(res[VEC_MODES[m]], 1), mode="bilinear", align_corners=True)

    @torch.no_grad()
    def crop(self, lo: Sequence[int], hi: Sequence[int]) -> None:
        """Keep grid nodes ``lo[i] .. hi[i] - 1`` along each axis i (TensoRF's bounding-box shrinking)."""
        for m, (a, b) in enumerate(MAT_MODES):
            c = VEC_MODES[m]
            self.planes[m].data = self.planes[m].data[:, :, lo[b] : hi[b], lo[a] : hi[a]].contiguous()
            self.lines[m].data = self.lines[m].data[:, :, lo[c] : hi[c]].contiguous()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a checkpoint written after an upsampling / crop holds other shapes: take them before copying
        for name, params in (("planes", self.planes), ("lines", self.lines)):
            for m, p in enumerate(params):
                stored = state_dict.get(f"{prefix}{name}.{m}")
                if stored is not None and stored.ndim == p.ndim and stored.shape != p.shape:
                    p.data = torch.empty(stored.shape, dtype=p.dtype, device=p.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _check_resolution(resolution: Sequence[int]) -> tuple[int, int, int]:
    res = tuple(int(r) for r in resolution)
    if len(res) != 3 or min(res) < 2:
        raise ValueError(f"vm_decomposition.py: resolution must be 3 node counts >= 2, got {tuple(resolution)}")
    return res
