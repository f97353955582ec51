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
   A field whose training path colours only samples above a weight (``Field.color_weight_thre``: TensoRF's
   ``rayMarch_weight_thres``) is coloured by the same rule, so it renders its own image.
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
from neural3d.render import cpu_workers
from neural3d.render.packed import visibility_packed
from neural3d.render.renderers import RenderOutputs, VolumeRenderer

DensityFn = Callable[[Tensor], tuple[Tensor, Tensor | None]]
"""[n, 3] positions -> (density [n, 1], features [n, C] for the colour, or None)."""
ColorFn = Callable[[Tensor | None, Tensor, Tensor | None], Tensor]
"""([n, 3] positions, [n, 3] unit directions, [n, C] features or None) -> [n, 3] rgb in [0, 1]. Positions are None
when features are given: a deferred colour depends on the features and directions only."""

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
    """Densities and colour features of the samples evaluated so far, filled in rounds.

    Densities sit in an [n_samples] buffer; colour features stay in evaluation order (one [m, C] block per round,
    ``feature_row`` [n_samples] says where each sample's row is) instead of being scattered into an
    [n_samples, C] buffer: only the kept samples' rows are ever read, once.
    """

    def __init__(self, samples: PackedRaySamples, density_fn: DensityFn, chunk: int) -> None:
        self.samples, self.density_fn, self.chunk = samples, density_fn, chunk
        n = samples.n_samples
        self.density = samples.starts.new_zeros(n)
        self.feature_blocks: list[Tensor] = []
        self.feature_row = torch.full((n,), -1, dtype=torch.long, device=samples.starts.device)
        self.evaluated = torch.zeros(n, dtype=torch.bool, device=samples.starts.device)

    def run(self, index: Tensor) -> Tensor:
        """Evaluate the samples ``index`` [m]; returns their [m] optical depths ``density * distance``."""
        s = self.samples
        ri = s.ray_indices.index_select(0, index)
        origins, directions = s.rays.origins.index_select(0, ri), s.rays.directions.index_select(0, ri)
        starts, ends = s.starts.index_select(0, index), s.ends.index_select(0, index)
        pos = origins + (0.5 * (starts + ends))[:, None] * directions
        parts = _chunked(self.density_fn, self.chunk, pos)
        density = torch.cat([d.reshape(-1) for d, _ in parts]).to(self.density.dtype)
        if parts[0][1] is not None:
            first = sum(len(b) for b in self.feature_blocks)
            self.feature_blocks.append(torch.cat([f for _, f in parts]))
            self.feature_row.index_copy_(0, index, torch.arange(first, first + len(index), device=index.device))
        self.density.index_copy_(0, index, density)
        self.evaluated.index_fill_(0, index, True)
        return density * (ends - starts) * torch.linalg.norm(directions, dim=-1)

    def features(self, index: Tensor) -> Tensor | None:
        """[k, C] colour features of the evaluated samples ``index`` [k] (None: the field has none)."""
        if not self.feature_blocks:
            return None
        if len(self.feature_blocks) > 1:
            self.feature_blocks = [torch.cat(self.feature_blocks)]
        return self.feature_blocks[0].index_select(0, self.feature_row.index_select(0, index))


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
        index = ((in_ray >= start) & (in_ray < start + size) & alive.index_select(0, ri)).nonzero()[:, 0]
        optical.index_add_(0, ri.index_select(0, index), density.run(index))
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
    color_weight_thre: float = 0.0,
    chunk: int = 1 << 14,
) -> RenderOutputs:
    """Render marched samples without gradients (see the module docstring).

    Args:
        samples: [n_samples] packed samples of [n_rays] rays, sorted per ray (a march's output).
        density_fn, color_fn: the field (:func:`field_callbacks`).
        renderer: compositing (``opaque_far``), :meth:`VolumeRenderer.packed_weights` / ``composite_packed``.
        background: [3] or [n_rays, 3] colour behind the volume (None: black).
        early_stop_eps, alpha_thre: the pruning rule (:func:`~neural3d.render.packed.visibility_packed`).
        color_eps: bound on each pixel's colour change from skipped colours (0: every kept sample's colour).
        color_weight_thre: the field's own rule, colour only samples whose weight exceeds it (TensoRF's
            ``rayMarch_weight_thres``; :attr:`Field.color_weight_thre`), 0 elsewhere: the image its training path
            renders.
        chunk: samples per field call (16,384: 2-12 % faster frames than 8,192 with the oneDNN MLPs, and a
            TensoRF colour input of 9.8 MB, under the viewer's 16 MiB mmap threshold).
    Returns:
        :class:`RenderOutputs` with [n_rays, 3 | 1] rgb, depth, opacity and the kept samples' [k] weights.
    """
    with torch.no_grad():
        density = _DensityPass(samples, density_fn, chunk)
        _visible_prefix(samples, density, early_stop_eps)
        keep = density.evaluated.nonzero()[:, 0]
        seen = samples.take(keep)
        if early_stop_eps > 0 or alpha_thre > 0:
            visible = visibility_packed(
                density.density.index_select(0, keep),
                seen.distances,
                seen.ray_indices,
                seen.packed_info,
                early_stop_eps=early_stop_eps,
                alpha_thre=alpha_thre,
            )
            visible = visible.nonzero()[:, 0]
            seen, keep = seen.take(visible), keep.index_select(0, visible)
        weights = renderer.packed_weights(density.density.index_select(0, keep), seen)
        show = _shown(seen, weights, color_eps, color_weight_thre)
        rgb = _colors(seen, weights, keep, density, color_fn, show, chunk)
        return renderer.composite_packed(weights, rgb, seen, background)


def _shown(kept: PackedRaySamples, weights: Tensor, color_eps: float, weight_thre: float) -> Tensor | None:
    """[m] kept samples whose colour is evaluated (None: all): weight above ``weight_thre`` and, with
    ``color_eps``, at least ``color_eps / n`` (``n``: the ray's kept samples)."""
    mask = weights > weight_thre if weight_thre > 0 else None
    if color_eps > 0:
        counts = kept.packed_info[:, 1].to(weights.dtype)
        enough = weights >= color_eps / counts.index_select(0, kept.ray_indices)
        mask = enough if mask is None else mask & enough
    return None if mask is None else mask.nonzero()[:, 0]


def _colors(
    kept: PackedRaySamples,
    weights: Tensor,
    index: Tensor,
    density: _DensityPass,
    color_fn: ColorFn,
    show: Tensor | None,
    chunk: int,
) -> Tensor:
    """[k, 3] colours of the kept samples (``index`` [k] into the marched samples) ``show`` (None: all); 0
    elsewhere."""
    if show is None:
        return _shown_colors(kept, index, density, color_fn, chunk).to(weights.dtype)
    rgb = weights.new_zeros(kept.n_samples, 3)
    if len(show):
        shown = _shown_colors(kept.take(show), index.index_select(0, show), density, color_fn, chunk)
        rgb.index_copy_(0, show, shown.to(rgb.dtype))
    return rgb


def _shown_colors(
    samples: PackedRaySamples, index: Tensor, density: _DensityPass, color_fn: ColorFn, chunk: int
) -> Tensor:
    """[k, 3] colours of ``samples`` (``index`` [k] into the marched samples), ``chunk`` at a time."""
    if samples.n_samples == 0:
        return samples.starts.new_zeros(0, 3)
    features = density.features(index)
    positions = samples.positions if features is None else None
    return torch.cat(_chunked(color_fn, chunk, positions, samples.viewdirs, features))


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
    flat = rays.flatten().contiguous()
    workers = cpu_workers.worker_count(flat.origins.device)

    def render(part: RayBundle) -> RenderOutputs:
        return render_marched(
            sampler.march(part, stratified=False),
            density_fn,
            color_fn,
            renderer,
            background,
            early_stop_eps=sampler.early_stop_eps,
            alpha_thre=sampler.alpha_thre,
            color_eps=sampler.render_color_eps,
            color_weight_thre=field.color_weight_thre,
        )

    outs = cpu_workers.map_parts(render, _ray_parts(flat, chunk, workers), workers)
    joined = {k: torch.cat([getattr(o, k).float() for o in outs]) for k in _OUTPUTS}
    return {k: v.reshape(*rays.shape, v.shape[-1]) for k, v in joined.items()}


_OUTPUTS = ("rgb", "depth", "opacity")
PARTS_PER_WORKER = 2
"""Ray parts per worker thread (:mod:`~neural3d.render.cpu_workers`): parts finish at different times (empty
rays are cheap), so a thread that is done early takes the next part."""
MIN_PART_RAYS = 1024
"""Fewer parts than that when they would hold fewer rays (each part pays its own march and rounds)."""


def _ray_parts(rays: RayBundle, chunk: int, workers: int) -> list[RayBundle]:
    """[n] rays in consecutive parts of at most ``chunk`` rays; when ``workers`` > 1, at least ``workers`` parts and
    up to ``PARTS_PER_WORKER * workers`` of at least ``MIN_PART_RAYS`` rays (equal sizes)."""
    n = len(rays)
    if n == 0:
        return [rays]
    split = min(PARTS_PER_WORKER * workers, max(-(-n // MIN_PART_RAYS), workers)) if workers > 1 else 1
    count = max(-(-n // chunk), split)
    size = max(-(-n // count), 1)
    return list(rays.chunks(size))
