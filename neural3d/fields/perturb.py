"""Perturbation hooks of the field and model contracts: where an additive perturbation enters (Aug-NeRF).

Three hook points, one per level of Aug-NeRF (Chen et al., CVPR 2022):

* ``coords``: the sample coordinates -- the depths ``t`` of the samples along their rays and the 3D points;
* ``features``: an intermediate feature of the field (NeRF: the position trunk's output; NGP: the last hidden
  layer of the density MLP), which feeds both density and colour;
* ``outputs``: the raw density and colour before their activations (before compositing).

A :class:`FieldPerturbation` is handed to a field as ``field(samples, context, perturb=p)``; the field calls
``p.positions(samples)``, ``p.features(h)`` and ``p.outputs(raw_density, raw_rgb)`` at those points. Without one
(``perturb=None``, the default) a field runs exactly as before: one ``is None`` test, no extra work. A field
names the hooks it applies in ``perturbation_levels``.

A :class:`ModelPerturbation` is handed to a model as ``model(rays, context, perturb=p)``: for each field pass
(named by the model: ``coarse`` / ``fine`` for NeRF, ``field`` for NGP) the model takes its samples through
``p.samples(name, sample)`` (which may return samples recorded earlier instead of sampling again) and its field
perturbation from ``p.field(name)``. The base class samples as usual and perturbs nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from torch import Tensor

from neural3d.core.samples import PackedRaySamples, RaySamples

LEVELS = ("coords", "features", "outputs")

S = TypeVar("S", RaySamples, PackedRaySamples)


class FieldPerturbation:
    """The hook points a field calls when given a perturbation; this base class changes nothing."""

    def positions(self, samples: RaySamples | PackedRaySamples) -> Tensor:
        """The positions to query: [n_rays, n_samples, 3] (packed: [n_samples, 3]); default ``samples.positions``."""
        return samples.positions

    def features(self, h: Tensor) -> Tensor:
        """[*batch, C] intermediate features -> the features used from there on."""
        return h

    def outputs(self, raw_density: Tensor, raw_rgb: Tensor) -> tuple[Tensor, Tensor]:
        """Raw density [*batch, 1] and raw colour [*batch, 3], before their activations -> the values used."""
        return raw_density, raw_rgb


class ModelPerturbation:
    """What a model's ``forward(rays, context, perturb=...)`` receives; this base class samples as usual."""

    def samples(self, name: str, sample: Callable[[], S]) -> S:
        """The samples of field pass ``name``: ``sample()`` (a subclass may record or replay them)."""
        return sample()

    def field(self, name: str) -> FieldPerturbation | None:
        """The perturbation of field pass ``name`` (None: the field runs unperturbed)."""
        return None


def pass_samples(perturb: ModelPerturbation | None, name: str, sample: Callable[[], S]) -> S:
    """``sample()`` without a perturbation, else ``perturb.samples(name, sample)``."""
    return sample() if perturb is None else perturb.samples(name, sample)


def pass_field(perturb: ModelPerturbation | None, name: str) -> FieldPerturbation | None:
    """None without a perturbation, else ``perturb.field(name)``."""
    return None if perturb is None else perturb.field(name)
