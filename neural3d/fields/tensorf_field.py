"""TensoRF's radiance field with vector-matrix factors (``TensorVMSplit`` of Chen et al., ECCV 2022).

positions -> box coordinates in [-1, 1] -> density: ``distance_scale * softplus(sum_m sum_r P V + shift)``
(16 components per mode; TensoRF's ``fea2denseAct = softplus``) or ``distance_scale * relu(sum_m sum_r P V)``
(``relu``, its LLFF configs: no shift); appearance: the 3 x 48 component products through the basis matrix ``B``
(no bias) to 27 features -> MLP on ``[features, viewdir, PE(features), PE(viewdir)]`` (2 frequencies each; two hidden
layers of 128, last bias zero) -> sigmoid rgb. The official code multiplies the interval length by
``distance_scale`` (25) inside ``alpha = 1 - exp(-sigma * delta * distance_scale)``; here the density carries it,
so every renderer and sampler of the library composites it unchanged. Outside the box the density is 0.

The box ``aabb`` starts as the scene box and may shrink to the occupied region (:meth:`TensoRFField.shrink`,
TensoRF's bounding-box shrinking); the grids keep their node spacing when cropped, and later upsamplings spread
their nodes over the smaller box.

Appearance is evaluated only where it can be seen: on packed samples (occupancy marching) ``forward`` computes
the density of every sample, the compositing weights without gradient, and the colour only where the weight
exceeds ``app_weight_thre`` (TensoRF's ``rayMarch_weight_thres``, 1e-4); elsewhere the colour is 0, which
changes the render by less than the weights' sum there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neural3d.core.samples import PackedRaySamples, RaySamples
from neural3d.fields.backends.cpu_encoding import applies as encoding_kernel_applies
from neural3d.fields.backends.cpu_encoding import frequency_encode_into
from neural3d.fields.base import Field, FieldOutputs, broadcast_inputs
from neural3d.fields.contraction import SceneBox
from neural3d.fields.encodings import PositionalEncoding
from neural3d.fields.mlp import MLP
from neural3d.fields.perturb import FieldPerturbation
from neural3d.fields.vm_decomposition import VMDecomposition
from neural3d.render.packed import render_weights_packed


class TensoRFField(Field):
    """Vector-matrix radiance field (see the module docstring).

    Args:
        aabb: [2, 3] scene box (min row, max row), nested lists, or a :class:`SceneBox`.
        resolution: initial grid nodes per axis (x, y, z).
        density_components, app_components: components per mode (16, 16, 16) and (48, 48, 48).
        app_dim: appearance features after the basis matrix (27).
        density_shift: added to the density feature before the softplus (-10; unused by ``relu``).
        density_activation: ``softplus`` (shifted) or ``relu`` (TensoRF's ``fea2denseAct``).
        distance_scale: factor on the density (25; TensoRF's factor on interval lengths).
        init_scale: the grids start as ``init_scale * N(0, 1)`` (0.1).
        view_pe, feature_pe: frequencies of the positional encodings of view directions and features (2, 2).
        hidden_dim: width of the two hidden layers of the colour MLP (128).
        app_weight_thre: packed samples whose compositing weight is at most this get no colour evaluation.
        vm_backend: ``auto`` | ``torch`` | ``cpu``: the grids' features (the fused C kernel on CPU and its backward,
            :mod:`neural3d.fields.backends.cpu_vm`; without gradients it also applies the basis); unless ``torch``,
            the colour MLP's input encoding without gradients too (:mod:`neural3d.fields.backends.cpu_encoding`).

    Shapes: ``query([*batch, 3], [*batch, 3]) -> ([*batch, 1], [*batch, 3])``; ``density([*batch, 3]) -> [*batch, 1]``.
    """

    def __init__(
        self,
        *,
        aabb,
        resolution: Sequence[int],
        density_components: Sequence[int] = (16, 16, 16),
        app_components: Sequence[int] = (48, 48, 48),
        app_dim: int = 27,
        density_shift: float = -10.0,
        distance_scale: float = 25.0,
        init_scale: float = 0.1,
        view_pe: int = 2,
        feature_pe: int = 2,
        hidden_dim: int = 128,
        app_weight_thre: float = 1e-4,
        density_activation: str = "softplus",
        vm_backend: str = "auto",
    ) -> None:
        super().__init__()
        aabb = torch.as_tensor(aabb.aabb if isinstance(aabb, SceneBox) else aabb, dtype=torch.float32)
        if aabb.shape != (2, 3) or not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"tensorf_field.py: aabb must be [2, 3] with max > min, got {aabb.tolist()}")
        if density_activation not in ("softplus", "relu"):
            raise ValueError(f"tensorf_field.py: density_activation must be softplus or relu, got {density_activation}")
        self.register_buffer("aabb", aabb.clone())
        self.density_activation = density_activation
        self.density_shift, self.distance_scale, self.app_weight_thre = density_shift, distance_scale, app_weight_thre
        grids = {"resolution": resolution, "init_scale": init_scale, "backend": vm_backend}
        self.density_grid = VMDecomposition(n_components=density_components, **grids)
        self.app_grid = VMDecomposition(n_components=app_components, **grids)
        self.basis = nn.Linear(self.app_grid.out_dim, app_dim, bias=False)
        self.view_encoding = PositionalEncoding(n_freqs=view_pe)
        self.feature_encoding = PositionalEncoding(n_freqs=feature_pe, in_dim=app_dim)
        in_dim = self.view_encoding.out_dim + self.feature_encoding.out_dim
        self.mlp = MLP(in_dim=in_dim, out_dim=3, widths=(hidden_dim, hidden_dim), output_activation="sigmoid")
        nn.init.zeros_(self.mlp.layers[-1].bias)

    def grid_parameters(self) -> list[nn.Parameter]:
        """The planes and lines (TensoRF's ``lr_init`` group; the basis and the MLP are the network group)."""
        return [*self.density_grid.parameters(), *self.app_grid.parameters()]

    def box_coordinates(self, positions: Tensor) -> Tensor:
        """[*batch, 3] world -> [*batch, 3] coordinates in [-1, 1] over ``aabb`` (outside: beyond)."""
        if positions.shape[-1] != 3:
            raise ValueError(f"tensorf_field.py: positions must be [..., 3], got {tuple(positions.shape)}")
        lo, hi = self.aabb[0], self.aabb[1]
        return (positions - lo) * (2.0 / (hi - lo)) - 1.0

    def _density_of(self, x: Tensor) -> Tensor:
        """[n, 3] box coordinates -> [n] density (0 outside the box)."""
        inside = (x.abs() <= 1.0).all(dim=-1)
        feature = self.density_grid.density_sum(x)
        if self.density_activation == "relu":
            return self.distance_scale * F.relu(feature) * inside
        return self.distance_scale * F.softplus(feature + self.density_shift) * inside

    def _rgb_of(self, x: Tensor, viewdirs: Tensor) -> Tensor:
        """[n, 3] box coordinates, [n, 3] unit directions -> [n, 3] colour."""
        features = self.app_grid.projected(x, self.basis.weight)
        return self.mlp(self._mlp_input(features, viewdirs))

    def _mlp_input(self, features: Tensor, viewdirs: Tensor) -> Tensor:
        """[n, app_dim] features, [n, 3] directions -> [n, in_dim] ``[PE(features), PE(viewdirs)]``; without
        gradients on float32 CPU tensors (and ``vm_backend`` not ``torch``) written by the C kernel in one buffer."""
        if self.app_grid.backend == "torch" or not encoding_kernel_applies(features, viewdirs):
            return torch.cat([self.feature_encoding(features), self.view_encoding(viewdirs)], dim=-1)
        split = self.feature_encoding.out_dim
        out = features.new_empty(len(features), split + self.view_encoding.out_dim)
        parts = ((self.feature_encoding, features, out[:, :split]), (self.view_encoding, viewdirs, out[:, split:]))
        for enc, values, cols in parts:
            frequency_encode_into(values, enc.freq_bands, cols, include_input=enc.include_input)
        return out

    deferred_color = True

    @property
    def color_weight_thre(self) -> float:  # type: ignore[override]
        """``app_weight_thre``: the inference render colours by the same rule as :meth:`forward`."""
        return self.app_weight_thre

    def density_and_features(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """[*batch, 3] -> (density [*batch, 1], features [*batch, 3]): the features are the box coordinates, from
        which :meth:`color` reads the appearance planes only for the samples a renderer colours."""
        x = self.box_coordinates(positions)
        return self._density_of(x.reshape(-1, 3)).reshape(*x.shape[:-1], 1), x

    def color(self, features: Tensor, viewdirs: Tensor) -> Tensor:
        """[*batch, 3] box coordinates of :meth:`density_and_features`, [*batch, 3] unit directions -> [*batch, 3]."""
        return self._rgb_of(features.reshape(-1, 3), viewdirs.reshape(-1, 3)).reshape(*features.shape[:-1], 3)

    def density(self, positions: Tensor) -> Tensor:
        """[*batch, 3] -> [*batch, 1] density (0 outside the box)."""
        x = self.box_coordinates(positions)
        return self._density_of(x.reshape(-1, 3)).reshape(*x.shape[:-1], 1)

    def query(
        self, positions: Tensor, viewdirs: Tensor, context: Any = None, perturb: FieldPerturbation | None = None
    ) -> tuple[Tensor, Tensor]:
        """[*batch, 3] positions, [*batch, 3] unit directions -> (density [*batch, 1], rgb [*batch, 3])."""
        positions, viewdirs = broadcast_inputs(positions, viewdirs, "tensorf_field.py")
        batch = positions.shape[:-1]
        x = self.box_coordinates(positions).reshape(-1, 3)
        density = self._density_of(x).reshape(*batch, 1)
        rgb = self._rgb_of(x, viewdirs.reshape(-1, 3)).reshape(*batch, 3)
        return density, rgb

    def forward(
        self, samples: RaySamples | PackedRaySamples, context: Any = None, perturb: FieldPerturbation | None = None
    ) -> FieldOutputs:
        """Density of every sample; packed samples get their colour only where the weight exceeds
        ``app_weight_thre`` (0 elsewhere). [n_samples, 1 | 3] packed, [n_rays, n_samples, 1 | 3] padded."""
        if perturb is not None:
            raise ValueError("tensorf_field.py: the TensoRF field applies no perturbation hooks")
        if not isinstance(samples, PackedRaySamples) or self.app_weight_thre <= 0:
            return super().forward(samples, context)
        x = self.box_coordinates(samples.positions)
        density = self._density_of(x)
        with torch.no_grad():
            weights, _, _ = render_weights_packed(
                density.detach(), samples.distances, samples.ray_indices, samples.packed_info
            )
            seen = (weights > self.app_weight_thre).nonzero()[:, 0]
        rgb_seen = self._rgb_of(x[seen], samples.viewdirs[seen])
        rgb = rgb_seen.new_zeros(len(x), 3).index_copy(0, seen, rgb_seen)
        return FieldOutputs(density=density[:, None], rgb=rgb)

    # ------------------------------------------------------------------ resolution changes
    def upsample(self, resolution: Sequence[int]) -> None:
        """Resample both grids to ``resolution`` nodes per axis (the parameters are resized in place)."""
        self.density_grid.upsample(resolution)
        self.app_grid.upsample(resolution)

    @torch.no_grad()
    def shrink(self, box: Tensor) -> None:
        """Crop the grids to the nodes covering ``box`` [2, 3] (one node of margin) and move ``aabb`` onto them.

        The node spacing is kept: ``aabb`` becomes the box spanned by the kept nodes, which holds ``box``.
        """
        res = torch.tensor(self.density_grid.resolution, dtype=torch.float64)
        aabb = self.aabb.double()
        unit = (aabb[1] - aabb[0]) / (res - 1)
        n = res.long()
        lo = torch.minimum(torch.floor((box[0].double() - aabb[0]) / unit).clamp(min=0).long(), n - 2)
        hi = (torch.ceil((box[1].double() - aabb[0]) / unit).long() + 1).minimum(n)
        hi = torch.maximum(hi, lo + 2)  # at least 2 nodes per axis
        self.density_grid.crop(lo.tolist(), hi.tolist())
        self.app_grid.crop(lo.tolist(), hi.tolist())
        new = torch.stack([aabb[0] + lo * unit, aabb[0] + (hi - 1) * unit]).to(self.aabb)
        self.aabb.copy_(new)
