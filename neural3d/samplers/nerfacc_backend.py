"""nerfacc (PyPI 0.5.x) as the CUDA backend of occupancy marching, imported lazily.

nerfacc compiles its CUDA extension on first use (needs a CUDA torch and nvcc). ``usable(device)``
answers whether that works for tensors on ``device`` (cached); ``march`` calls its grid traversal with
our grid tensors (same ``[levels, x, y, z]`` layout and cascaded boxes) and returns our packed samples.
"""

from __future__ import annotations

import functools
import logging

import torch
from torch import Tensor

from neural3d.core.packing import packed_info_from_ray_indices
from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples

log = logging.getLogger(__name__)


@functools.cache
def _probe() -> str:
    """'' if nerfacc's CUDA ops load, else the reason they do not."""
    if not torch.cuda.is_available():
        return "CUDA is not available"
    try:
        from nerfacc.cuda._backend import _C  # JIT-builds the extension on first import
        from nerfacc.grid import traverse_grids  # noqa: F401
    except Exception as e:  # ImportError, build failures (RuntimeError, OSError, subprocess errors)
        return f"nerfacc unavailable: {type(e).__name__}: {e}"
    if _C is None:
        return "nerfacc is installed but its CUDA extension is not built (no nvcc?)"
    return ""


def usable(device: torch.device) -> bool:
    return device.type == "cuda" and _probe() == ""


def require(device: torch.device) -> None:
    if device.type != "cuda":
        raise ValueError("marching_backend=nerfacc needs CUDA tensors (use auto or torch on the CPU)")
    reason = _probe()
    if reason:
        raise ValueError(f"marching_backend=nerfacc requested but {reason}")


def march(
    rays: RayBundle, aabbs: Tensor, binaries: Tensor | None, *, step_size: float, cone_angle: float, stratified: bool
) -> PackedRaySamples:
    """nerfacc ``traverse_grids`` on unit-length rays; intervals returned in ``t`` units of ``rays.directions``."""
    from nerfacc.grid import traverse_grids

    dnorm = torch.linalg.norm(rays.directions, dim=-1).clamp_min(1e-12)
    unit = (rays.directions / dnorm[:, None]).contiguous()
    near, far = (rays.nears * dnorm).contiguous(), (rays.fars * dnorm).contiguous()
    if stratified:
        near = near + torch.rand_like(near) * step_size
    if binaries is None:
        binaries = torch.ones(aabbs.shape[0], 1, 1, 1, dtype=torch.bool, device=aabbs.device)
    intervals, samples, _ = traverse_grids(
        rays.origins.contiguous(),
        unit,
        binaries.contiguous(),
        aabbs.contiguous(),
        near_planes=near,
        far_planes=far,
        step_size=step_size,
        cone_angle=cone_angle,
    )
    ri = samples.ray_indices.long()
    starts = intervals.vals[intervals.is_left] / dnorm[ri]
    ends = intervals.vals[intervals.is_right] / dnorm[ri]
    return PackedRaySamples(rays, starts, ends, ri, packed_info_from_ray_indices(ri, len(rays)))
