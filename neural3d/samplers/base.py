"""The sampler protocol: every sampler maps rays to samples through one call.

Modelled on nerfacc's estimators (``OccGridEstimator``, ``PropNetEstimator``)::

    sampler.step_begin(step, field)                    # training: refresh state (grids, schedules)
    samples = sampler.sample(rays, density_fn=field.density, prior=None)
    ...                                                # field + renderer on ``samples``
    losses = sampler.loss_dict(samples, weights)       # the sampler's own regularisers (may be empty)

* ``sample(rays [n_rays], *, density_fn=None, prior=None) -> RaySamples | PackedRaySamples``. ``density_fn``
  ([*batch, 3] -> [*batch, 1]) is the field's density, for samplers guided by it (importance, grids,
  pruning); ``prior`` is a :class:`WeightedSamples` to resample (hierarchical sampling, NeRF's fine pass).
  Jittered in ``train()``, deterministic in ``eval()`` (the module mode, as every ``nn.Module``). A sampler
  that skips rays returns the samples of the rays it kept with ``ray_subset`` set (see
  :attr:`Sampler.supervise_skipped_rays`).
* ``step_begin(step, field)``: called once before each training step; stateful samplers update here from
  the :class:`~neural3d.fields.base.Field` (its ``density``; the density-grid cache reads ``unit_density``).
* ``loss_dict(samples, weights)``: losses that train the sampler itself (the proposal networks' interlevel
  loss), from the samples it returned last and the compositing weights [n_rays, n_samples] on them.
* ``spacing_edges(samples)``: the samples' edges in the sampler's normalised spacing ``s`` in [0, 1] (the
  parametrisation of mip-NeRF 360's distortion loss).
* ``encoding_parameters()``: hash-grid tables owned by the sampler (no weight decay).

Samplers hold no reference to the field: it comes in at every call (``density_fn``, as nerfacc's ``sigma_fn``,
and ``field`` in ``step_begin``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples, RaySamples
from neural3d.samplers.spacing import t_to_spacing

DensityFn = Callable[[Tensor], Tensor]  # [*batch, 3] positions -> [*batch, 1] density


@dataclass
class WeightedSamples:
    """Samples and a weight per interval: the ``prior`` a resampling sampler draws from.

    Attributes:
        samples: [n_rays, n_samples] contiguous samples.
        weights: [n_rays, n_samples] non-negative weights (e.g. compositing weights of a coarse pass).
    """

    samples: RaySamples
    weights: Tensor


class Sampler(nn.Module):
    """Base class of samplers (see the module docstring for the protocol)."""

    supervise_skipped_rays: bool = True
    """Rays left out of ``ray_subset`` show the background; True: they still count in the colour loss (they
    meet only empty space), False: they do not (left out by a sample budget, unseen this step)."""

    def sample(
        self, rays: RayBundle, *, density_fn: DensityFn | None = None, prior: WeightedSamples | None = None
    ) -> RaySamples | PackedRaySamples:
        """[n_rays] rays -> samples (padded [n_rays, n_samples] or packed)."""
        raise NotImplementedError

    def step_begin(self, step: int, field: nn.Module | None = None) -> None:
        """Hook called once before training step ``step`` (default: nothing to update)."""

    def loss_dict(self, samples: RaySamples | PackedRaySamples, weights: Tensor) -> dict[str, Tensor]:
        """Losses training the sampler itself, given the field's compositing weights on ``samples`` (default none)."""
        return {}

    def spacing_edges(self, samples: RaySamples) -> Tensor:
        """[n_rays, n_samples + 1] edges of contiguous samples mapped to [0, 1] between near and far (linear)."""
        return t_to_spacing(samples.edges, samples.rays.nears, samples.rays.fars, "uniform")

    def encoding_parameters(self) -> list[nn.Parameter]:
        """Hash-grid parameters of the sampler (the optimiser group without weight decay); default none."""
        return []


def require(value, name: str, owner: str):
    """``value`` unless it is None: then a ValueError saying ``owner`` needs ``name``."""
    if value is None:
        raise ValueError(f"{owner}.sample needs {name}")
    return value
