r"""Inference rendering of marched samples: one density pass with early ray termination, colour where it shows.

The training path renders occupancy-marched samples in three passes: a gradient-free density pass over every
marched sample to drop those behind opaque space (:func:`~neural3d.samplers.marching.prune_samples`), then the
field again (density *and* colour) on the samples kept, then compositing. Without gradients the same image
needs much less:

1. **One density pass, in rounds with early ray termination.** Round ``r`` evaluates the next ``16 * 2^r``
   samples of every ray still visible (instant-ngp / nerfacc march in such rounds on the GPU). After a round,
   a ray whose transmittance :math:`T = \exp(-\sum_j \sigma_j \delta_j)` is below ``0.999 * early_stop_eps``
   stops: every later sample has ``T < early_stop_eps`` (the sum only grows; the 0.1 % margin covers the
   summation order), so it is one the pruning pass would drop anyway. The samples kept are then chosen by the
   same rule and code as the pruning pass (:func:`~neural3d.render.packed.visibility_packed`), on the same
   densities: exactly the training path's samples.
2. **Densities reused.** Compositing takes the densities of that pass instead of running the field again
   (the training path recomputes them on the kept samples: the same numbers up to the rounding of a matrix
   product of another size, about 1e-7).
3. **Colour only where it shows.** A field with ``deferred_color`` (:class:`~neural3d.fields.base.Field`)
   returns features with its density; its colour part runs on the kept samples only, and with
   ``color_eps > 0`` not on a ray's samples of weight below ``color_eps / n`` (``n``: the ray's kept samples).
   Those weights sum to less than ``color_eps``, so with colours in [0, 1] **each pixel's colour changes by
   less than** ``color_eps`` (depth and opacity do not change). A field without ``deferred_color`` runs
   ``query`` on the samples that show.

Samples are evaluated ``chunk`` at a time (the field's activations stay small and are reused by the allocator
instead of being paged in afresh for every call).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from neural3d.core.packing import positions_in_ray
from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples
from neural3d.render.packed import visibility_packed
from neural3d.render.renderers import RenderOutputs, VolumeRenderer

DensityFn = Callable[[Tensor], tuple[Tensor, Tensor | None]]
"""[n, 3] positions -> (density [n, 1], features [n, C] for the colour, or None)."""
ColorFn = Callable[[Tensor, Tensor, Tensor | None], Tensor]
"""([n, 3] positions, [n, 3] unit directions, [n, C] features or None) -> [n, 3] rgb in [0, 1]."""

FIRST_ROUND = 16
"""Samples per ray of the first early-termination round (each later round doubles it)."""
STOP_MARGIN = 0.999
"""A ray stops when its transmittance is below ``STOP_MARGIN * early_stop_eps`` (see the module docstring)."""


def field_callbacks(field) -> tuple[DensityFn, ColorFn]:
    """The density and colour callbacks of a :class:`~neural3d.fields.base.Field`: its ``density_and_features``
    and ``color`` when it has ``deferred_color``, else ``density`` and the colour of ``query``."""
    if getattr(field, "deferred_color", False):
        return field.density_and_features, lambda x, d, f: field.color(f, d)
    return lambda x: (field.density(x), None), lambda x, d, f: field.query(x, d)[1]


def _chunked(fn: Callable[..., Tensor | tuple], chunk: int, *inputs: Tensor | None) -> list:
    """``fn`` over ``chunk`` rows of the inputs at a time (None inputs stay None); the per-chunk results."""
    n = next(x for x in inputs if x is not None).shape[0]
    return [fn(*(None if x is None else x[i : i + chunk] for x in inputs)) for i in range(0, n, chunk)]


class _DensityPass:
    """Densities and colour features of the samples evaluated so far ([n_samples] buffers, filled in rounds)."""

    def __init__(self, samples: PackedRaySamples, density_fn: DensityFn, chunk: int) -> None:
        self.samples, self.density_fn, self.chunk = samples, density_fn, chunk
        n = samples.n_samples
        self.density = samples.starts.new_zeros(n)
        self.features: Tensor | None = None
        self.evaluated = torch.zeros(n, dtype=torch.bool, device=samples.starts.device)

    def run(self, index: Tensor) -> Tensor:
        """Evaluate the samples ``index`` [m]; returns their [m] optical depths ``density * distance``."""
        s = self.samples
        ri = s.ray_indices[index]
        pos = s.rays.origins[ri] + (0.5 * (s.starts[index] + s.ends[index]))[:, None] * s.rays.directions[ri]
        parts = _chunked(self.density_fn, self.chunk, pos)
        density = torch.cat([d.reshape(-1) for d, _ in parts]).to(self.density.dtype)
        if parts[0][1] is not None:
            feats = torch.cat([f for _, f in parts])
            if self.features is None:
                self.features = feats.new_empty(s.n_samples, feats.shape[-1])
            self.features[index] = feats
        self.density[index] = density
        self.evaluated[index] = True
        distances = (s.ends[index] - s.starts[index]) * torch.linalg.norm(s.rays.directions[ri], dim=-1)
        return density * distances


def _visible_prefix(samples: PackedRaySamples, density: _DensityPass, early_stop_eps: float) -> None:
    """Evaluate each ray's samples front to back in rounds until its transmittance falls below the threshold."""
    ri, info = samples.ray_indices, samples.packed_info
    if early_stop_eps <= 0:
        density.run(torch.arange(samples.n_samples, device=ri.device))
        return
    in_ray = positions_in_ray(ri, info)
    optical = samples.starts.new_zeros(samples.n_rays)
    alive = info[:, 1] > 0
    start, size = 0, FIRST_ROUND
    stop = -torch.log(torch.tensor(STOP_MARGIN * early_stop_eps, dtype=optical.dtype)).item()
    while bool(alive.any()):
        index = ((in_ray >= start) & (in_ray < start + size) & alive[ri]).nonzero()[:, 0]
        optical.index_add_(0, ri[index], density.run(index))
        start, size = start + size, 2 * size
        alive &= (optical < stop) & (info[:, 1] > start)


def render_marched(
    samples: PackedRaySamples,
    density_fn: DensityFn,
    color_fn: ColorFn,
    renderer: VolumeRenderer,
    background: Tensor | None,
    *,
    early_stop_eps: float = 1e-4,
    alpha_thre: float = 0.0,
    color_eps: float = 0.0,
    chunk: int = 1 << 13,
) -> RenderOutputs:
    """Render marched samples without gradients (see the module docstring).

    Args:
        samples: [n_samples] packed samples of [n_rays] rays, sorted per ray (a march's output).
        density_fn, color_fn: the field (:func:`field_callbacks`).
        renderer: compositing (``opaque_far``), :meth:`VolumeRenderer.packed_weights` / ``composite_packed``.
        background: [3] or [n_rays, 3] colour behind the volume (None: black).
        early_stop_eps, alpha_thre: the pruning rule (:func:`~neural3d.render.packed.visibility_packed`).
        color_eps: bound on each pixel's colour change from skipped colours (0: every kept sample's colour).
        chunk: samples per field call.
    Returns:
        :class:`RenderOutputs` with [n_rays, 3 | 1] rgb, depth, opacity and the kept samples' [k] weights.
    """
    with torch.no_grad():
        density = _DensityPass(samples, density_fn, chunk)
        _visible_prefix(samples, density, early_stop_eps)
        done = density.evaluated
        seen = samples.mask(done)
        keep = done.nonzero()[:, 0]
        if early_stop_eps > 0 or alpha_thre > 0:
            visible = visibility_packed(
                density.density[keep],
                seen.distances,
                seen.ray_indices,
                seen.packed_info,
                early_stop_eps=early_stop_eps,
                alpha_thre=alpha_thre,
            )
            seen, keep = seen.mask(visible), keep[visible]
        weights = renderer.packed_weights(density.density[keep], seen)
        rgb = _colors(seen, weights, keep, density.features, color_fn, color_eps, chunk)
        return renderer.composite_packed(weights, rgb, seen, background)


def _colors(
    kept: PackedRaySamples,
    weights: Tensor,
    index: Tensor,
    features: Tensor | None,
    color_fn: ColorFn,
    color_eps: float,
    chunk: int,
) -> Tensor:
    """[k, 3] colours of the kept samples (``index`` [k] into the marched samples); 0 where skipped."""
    rgb = weights.new_zeros(kept.n_samples, 3)
    show = torch.arange(kept.n_samples, device=weights.device)
    if color_eps > 0:
        counts = kept.packed_info[:, 1].to(weights.dtype)
        show = (weights >= color_eps / counts[kept.ray_indices]).nonzero()[:, 0]
    if len(show) == 0:
        return rgb
    ri = kept.ray_indices[show]
    pos = kept.rays.origins[ri] + kept.mids[show][:, None] * kept.rays.directions[ri]
    feats = None if features is None else features[index[show]]
    rgb[show] = torch.cat(_chunked(color_fn, chunk, pos, kept.rays.viewdirs[ri], feats)).to(rgb.dtype)
    return rgb


def render_rays_marched(
    rays: RayBundle, sampler, field, renderer: VolumeRenderer, background: Tensor | None, *, chunk: int = 8192
) -> dict[str, Tensor]:
    """Render a [*batch] bundle through an occupancy sampler with :func:`render_marched`, ``chunk`` rays at a time.

    Args:
        sampler: an :class:`~neural3d.samplers.occupancy.OccupancySampler` (its ``march``, ``early_stop_eps``,
            ``alpha_thre`` and ``render_color_eps``).
        field: the :class:`~neural3d.fields.base.Field` (:func:`field_callbacks`).
    Returns:
        ``rgb`` [*batch, 3], ``depth`` [*batch, 1], ``opacity`` [*batch, 1] (as :meth:`Model.render_rays`).
    """
    density_fn, color_fn = field_callbacks(field)
    parts: dict[str, list[Tensor]] = {"rgb": [], "depth": [], "opacity": []}
    for sub in rays.flatten().chunks(chunk):
        out = render_marched(
            sampler.march(sub, stratified=False),
            density_fn,
            color_fn,
            renderer,
            background,
            early_stop_eps=sampler.early_stop_eps,
            alpha_thre=sampler.alpha_thre,
            color_eps=sampler.render_color_eps,
        )
        for k in parts:
            parts[k].append(getattr(out, k).float())
    return {k: torch.cat(v, 0).reshape(*rays.shape, -1) for k, v in parts.items()}
