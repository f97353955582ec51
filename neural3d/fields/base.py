"""The scene-representation slot: :class:`Field` maps samples (and optional context) to outputs.

A field is an ``nn.Module`` with two entry points:

* ``density(positions)``: [*batch, 3] -> [*batch, 1] non-negative volume density, for samplers that
  need it (occupancy grids, proposal networks) and for mesh export.
* ``forward(samples, context=None)``: :class:`~neural3d.core.samples.RaySamples` [n_rays, n_samples] or
  :class:`~neural3d.core.samples.PackedRaySamples` [n_samples] -> :class:`FieldOutputs` with per-sample
  ``density`` [..., 1] and ``rgb`` [..., 3] (or ``features`` for learned renderers). ``context`` carries
  conditioning: source views (GNT), other points (point fields), a scene code index (dictionaries);
  plain per-scene fields ignore it.

This is the one contract models use: ``renderer(field(samples, context), samples, background)``. Fields of
density and colour implement the per-point hook ``query(positions, viewdirs, context=None)`` and inherit
``forward``; fields of other outputs (GNT's source-view features) override ``forward``.

Perturbation hooks (:mod:`neural3d.fields.perturb`, Aug-NeRF): ``forward(samples, context, perturb=p)`` queries
``p.positions(samples)`` and passes ``perturb=p`` on to ``query``, which calls ``p.features`` and ``p.outputs``
at its intermediate features and raw outputs. ``perturbation_levels`` names the hooks a field applies (none by
default); ``perturb=None`` (the default) costs one ``is None`` test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from neural3d.core.samples import PackedRaySamples, RaySamples
from neural3d.fields.perturb import FieldPerturbation


def broadcast_inputs(positions: Tensor, viewdirs: Tensor, owner: str) -> tuple[Tensor, Tensor]:
    """Broadcast [*batch, 3] positions and directions together; a clear error names ``owner`` otherwise."""
    try:
        return torch.broadcast_tensors(positions, viewdirs)
    except RuntimeError as err:
        raise ValueError(
            f"{owner}: viewdirs {tuple(viewdirs.shape)} do not broadcast with positions {tuple(positions.shape)}"
        ) from err


@dataclass
class FieldOutputs:
    """Per-sample outputs of a field.

    Attributes:
        density: [n_rays, n_samples, 1] non-negative density (None for feature-only fields).
        rgb: [n_rays, n_samples, 3] colour in [0, 1] (None for feature-only fields).
        features: optional [n_rays, n_samples, C] features for learned renderers.
        extras: anything else (e.g. attention maps), keyed by name.
    """

    density: Tensor | None = None
    rgb: Tensor | None = None
    features: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class Field(nn.Module):
    """Base class of scene representations."""

    perturbation_levels: frozenset[str] = frozenset()
    """The perturbation hooks this field applies (``coords``, ``features``, ``outputs``; see the module docstring)."""

    deferred_color: bool = False
    """True when the field implements :meth:`density_and_features` and :meth:`color` with ``query(x, d)`` equal to
    ``(density, color(features, d))``: a renderer may then run the density part on every sample and the colour
    part only where it shows (:mod:`neural3d.render.inference`)."""

    color_weight_thre: float = 0.0
    """Fields whose own render colours only samples of compositing weight above this (0 elsewhere; TensoRF's
    ``rayMarch_weight_thres``) set it, so that the inference render applies the same rule (0: every sample)."""

    def density(self, positions: Tensor) -> Tensor:
        """[*batch, 3] world (or NDC) positions -> [*batch, 1] density."""
        raise NotImplementedError

    def density_and_features(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """[*batch, 3] positions -> (density [*batch, 1], features [*batch, C] that :meth:`color` takes);
        fields with ``deferred_color``."""
        raise NotImplementedError

    def color(self, features: Tensor, viewdirs: Tensor) -> Tensor:
        """[*batch, C] features of :meth:`density_and_features`, [*batch, 3] unit directions -> [*batch, 3] rgb;
        fields with ``deferred_color``."""
        raise NotImplementedError

    def query(
        self, positions: Tensor, viewdirs: Tensor, context: Any = None, perturb: FieldPerturbation | None = None
    ) -> tuple[Tensor, Tensor]:
        """[*batch, 3] positions and unit directions (+ conditioning) -> (density [*batch, 1], rgb [*batch, 3]).

        ``perturb``: the feature and output hooks (only passed to fields whose ``perturbation_levels`` has them).
        """
        raise NotImplementedError

    def forward(
        self,
        samples: RaySamples | PackedRaySamples,
        context: Any = None,
        perturb: FieldPerturbation | None = None,
    ) -> FieldOutputs:
        """Density and colour at the samples' midpoints: [n_rays, n_samples, 1 | 3] (packed: [n_samples, 1 | 3]).

        ``perturb``: perturbation hooks (:mod:`neural3d.fields.perturb`); None runs the field unperturbed.
        """
        if perturb is None:
            density, rgb = self.query(samples.positions, samples.viewdirs, context)
        else:
            density, rgb = self.query(perturb.positions(samples), samples.viewdirs, context, perturb=perturb)
        return FieldOutputs(density=density, rgb=rgb)
