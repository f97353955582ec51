"""Instant-NGP radiance field (as nerfacc's ``NGPRadianceField``), pure PyTorch.

positions -> unit cube (:func:`~neural3d.fields.contraction.normalize_positions`) -> hash grid ->
``mlp_base`` (out ``1 + geo_feat_dim``) -> density ``trunc_exp(raw - 1)``, zero outside the box;
``mlp_head`` on ``[SH(viewdir), geo features]`` -> sigmoid rgb. Module names (``encoding.params``,
``mlp_base``, ``direction_encoding``, ``mlp_head``) follow nerfacc; the grid's ``params`` is tcnn-layout.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from neural3d.fields.backends.cpu_encoding import applies as encoding_kernel_applies
from neural3d.fields.backends.cpu_encoding import spherical_harmonics_into
from neural3d.fields.base import Field, broadcast_inputs
from neural3d.fields.contraction import CONTRACTIONS, SceneBox, normalize_positions
from neural3d.fields.encodings import SHEncoding
from neural3d.fields.hashgrid import HashGridEncoding
from neural3d.fields.mlp import MLP
from neural3d.fields.perturb import FieldPerturbation


class _TruncExp(torch.autograd.Function):
    """``exp(x)`` whose gradient uses ``exp(min(x, 15))`` (torch-ngp / nerfacc), avoiding inf gradients."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: Tensor) -> Tensor:
    """[*] -> [*] ``exp(x)`` with the gradient clamped at ``x = 15``."""
    return _TruncExp.apply(x)


class NGPField(Field):
    """Hash-grid radiance field.

    Args:
        aabb: [2, 3] scene box (min row, max row), nested lists, or a :class:`SceneBox` (NDC scenes:
            ``SceneBox.ndc()``, the box [-1, 1]^3).
        contraction: "aabb" (bounded box; points outside get density 0), "inf" or "l2" (unbounded scene
            contraction of the box's exterior, see :mod:`neural3d.fields.contraction`).
        n_levels, n_features_per_level, log2_hashmap_size, base_resolution, max_resolution, per_level_scale:
            hash grid settings (:class:`~neural3d.fields.hashgrid.HashGridEncoding`).
        max_resolution_per_unit: if given, ``max_resolution = max_resolution_per_unit * largest box side``
            (instant-ngp scales its finest resolution with the scene box this way).
        geo_feat_dim: geometry features passed to the colour MLP (15).
        hidden_dim: MLP width (64).
        n_density_layers: hidden layers of the density MLP (1).
        n_color_layers: hidden layers of the colour MLP (2).
        sh_degree: spherical-harmonics bands of the direction encoding (4 -> 16 channels).
        density_bias: added to the raw density before ``trunc_exp`` (-1, nerfacc).
        mlp_bias: biases in the MLPs. tcnn's fully fused MLPs have none, but in fp32 PyTorch at lr 1e-2 the
            bias-free colour MLP's ReLUs die at dense points (constant grey colour), so biases are the default.
        backend: hash-grid backend, "auto" | "torch" | "cpu" | "tcnn" | "triton" (:mod:`neural3d.fields.backends`).

    Shapes: ``query([*batch, 3], [*batch, 3]) -> ([*batch, 1], [*batch, 3])``; ``density([*batch, 3]) -> [*batch, 1]``.

    Perturbation hooks (:mod:`neural3d.fields.perturb`): ``features`` is the last hidden layer of ``mlp_base``
    [*batch, hidden_dim] (the hash-grid features themselves with ``n_density_layers=0``), which feeds the
    density and the geometry features; ``outputs`` are the raw density (before ``trunc_exp``) and the colour
    logits (before the sigmoid).
    """

    perturbation_levels = frozenset({"coords", "features", "outputs"})
    deferred_color = True

    def __init__(
        self,
        *,
        aabb,
        contraction: str = "aabb",
        n_levels: int = 16,
        n_features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        max_resolution: float = 2048,
        per_level_scale: float | None = None,
        max_resolution_per_unit: float | None = None,
        geo_feat_dim: int = 15,
        hidden_dim: int = 64,
        n_density_layers: int = 1,
        n_color_layers: int = 2,
        sh_degree: int = 4,
        density_bias: float = -1.0,
        mlp_bias: bool = True,
        backend: str = "auto",
    ):
        super().__init__()
        aabb = torch.as_tensor(aabb.aabb if isinstance(aabb, SceneBox) else aabb, dtype=torch.float32)
        if aabb.shape != (2, 3) or not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"ngp_field.py: aabb must be [2, 3] with max > min, got {aabb.tolist()}")
        if contraction not in CONTRACTIONS:
            raise ValueError(f"ngp_field.py: contraction must be one of {CONTRACTIONS}, got {contraction!r}")
        self.register_buffer("aabb", aabb)
        self.contraction = contraction
        self.geo_feat_dim = geo_feat_dim
        self.density_bias = density_bias
        if max_resolution_per_unit is not None:
            max_resolution = max_resolution_per_unit * float((aabb[1] - aabb[0]).max())
        self.encoding = HashGridEncoding(
            n_levels=n_levels,
            n_features_per_level=n_features_per_level,
            log2_hashmap_size=log2_hashmap_size,
            base_resolution=base_resolution,
            max_resolution=max_resolution,
            per_level_scale=per_level_scale,
            backend=backend,
        )
        self.mlp_base = MLP.fully_fused(
            in_dim=self.encoding.out_dim,
            out_dim=1 + geo_feat_dim,
            n_neurons=hidden_dim,
            n_hidden_layers=n_density_layers,
            bias=mlp_bias,
        )
        self.direction_encoding = SHEncoding(degree=sh_degree)
        self.mlp_head = MLP.fully_fused(
            in_dim=self.direction_encoding.out_dim + geo_feat_dim,
            out_dim=3,
            n_neurons=hidden_dim,
            n_hidden_layers=n_color_layers,
            output_activation="sigmoid",
            bias=mlp_bias,
        )

    def normalized_positions(self, positions: Tensor) -> Tensor:
        """[*batch, 3] world -> [*batch, 3] unit-cube coordinates seen by the grid."""
        if positions.shape[-1] != 3:
            raise ValueError(f"ngp_field.py: positions must be [..., 3], got {tuple(positions.shape)}")
        return normalize_positions(positions, self.aabb, self.contraction)

    def density_and_features(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """[*batch, 3] -> (density [*batch, 1] >= 0, geometry features [*batch, geo_feat_dim])."""
        return self.unit_density_and_features(self.normalized_positions(positions))

    def unit_density(self, x: Tensor) -> Tensor:
        """[*batch, 3] unit-cube coordinates (see :meth:`normalized_positions`) -> [*batch, 1] density."""
        return self.unit_density_and_features(x)[0]

    def unit_density_and_features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Like :meth:`density_and_features` for unit-cube coordinates ``x`` [*batch, 3]."""
        if self.contraction == "aabb":
            inside = ((x > 0.0) & (x < 1.0)).all(dim=-1, keepdim=True)  # nerfacc's selector
        else:
            inside = ((x >= 0.0) & (x <= 1.0)).all(dim=-1, keepdim=True)
        h = self.mlp_base(self.encoding(x))
        raw, geo = h.split([1, self.geo_feat_dim], dim=-1)
        density = trunc_exp(raw + self.density_bias) * inside
        return density, geo

    def density(self, positions: Tensor) -> Tensor:
        """[*batch, 3] -> [*batch, 1] density (0 outside the box)."""
        return self.density_and_features(positions)[0]

    def query(
        self, positions: Tensor, viewdirs: Tensor, context: Any = None, perturb: FieldPerturbation | None = None
    ) -> tuple[Tensor, Tensor]:
        """[*batch, 3] positions, [*batch, 3] unit directions -> (density [*batch, 1], rgb [*batch, 3])."""
        positions, viewdirs = broadcast_inputs(positions, viewdirs, "ngp_field.py")
        if perturb is not None:
            return self._perturbed_query(positions, viewdirs, perturb)
        density, geo = self.density_and_features(positions)
        return density, self.color(geo, viewdirs)

    def color(self, features: Tensor, viewdirs: Tensor) -> Tensor:
        """[*batch, geo_feat_dim] geometry features, [*batch, 3] unit directions -> [*batch, 3] rgb (``mlp_head``)."""
        return self.mlp_head(self._head_input(viewdirs, features))

    def _head_input(self, viewdirs: Tensor, features: Tensor) -> Tensor:
        """``[SH(viewdirs), features]`` [*batch, sh + geo_feat_dim]; without gradients on float32 CPU rows the
        harmonics are written by the C kernel straight into the buffer (the same values, no stack and no cat)."""
        enc = self.direction_encoding
        if viewdirs.dim() != 2 or not encoding_kernel_applies(viewdirs, features):
            return torch.cat([enc(viewdirs), features], dim=-1)
        out = features.new_empty(len(features), enc.out_dim + features.shape[-1])
        spherical_harmonics_into(viewdirs, enc.degree, out[:, : enc.out_dim])
        out[:, enc.out_dim :] = features
        return out

    def _perturbed_query(self, positions: Tensor, viewdirs: Tensor, perturb: FieldPerturbation) -> tuple[Tensor, ...]:
        """:meth:`query` with the ``features`` and ``outputs`` hooks of ``perturb`` applied."""
        x = self.normalized_positions(positions)
        if self.contraction == "aabb":
            inside = ((x > 0.0) & (x < 1.0)).all(dim=-1, keepdim=True)
        else:
            inside = ((x >= 0.0) & (x <= 1.0)).all(dim=-1, keepdim=True)
        h = perturb.features(self.mlp_base.hidden(self.encoding(x)))
        raw, geo = self.mlp_base.layers[-1](h).split([1, self.geo_feat_dim], dim=-1)
        head = self.mlp_head
        logits = head.layers[-1](head.hidden(torch.cat([self.direction_encoding(viewdirs), geo], dim=-1)))
        raw, logits = perturb.outputs(raw + self.density_bias, logits)
        return trunc_exp(raw) * inside, head.output_activation(logits)
