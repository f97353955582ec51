"""Vanilla NeRF field (Mildenhall et al. 2020), layer-for-layer the ``NeRF`` class of nerf-pytorch.

Parameter names and shapes equal nerf-pytorch's (``pts_linears.i``, ``views_linears.0``,
``feature_linear``, ``alpha_linear``, ``rgb_linear``; ``output_linear`` without view directions), so a
``network_fn_state_dict`` / ``network_fine_state_dict`` loads with ``load_state_dict`` unchanged.
The encodings have no parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neural3d.fields.base import Field, broadcast_inputs
from neural3d.fields.encodings import PositionalEncoding
from neural3d.fields.perturb import FieldPerturbation


class NeRFField(Field):
    """NeRF MLP with positional encodings.

    Args:
        depth: number of position layers ``D`` (8).
        width: their width ``W`` (256).
        skips: after which position layers the encoded input is concatenated (``[4]``: layer 5 takes W + 63).
        pos_freqs: frequency bands for positions (10 -> 63 channels).
        dir_freqs: frequency bands for view directions (4 -> 27 channels).
        use_viewdirs: view-dependent colour branch (feature 256 -> [feature, dirs] -> 128 -> rgb).
        output_ch: raw outputs of ``output_linear`` when ``use_viewdirs=False`` (nerf-pytorch uses 4, or 5 when
            ``N_importance > 0``; only the first 4 are used: rgb, alpha).

    Inputs are used as given (world or NDC coordinates, no normalisation), like the original code.

    Perturbation hooks (:mod:`neural3d.fields.perturb`): ``features`` is the trunk's output [*batch, W] (after
    the last position layer, before the density and feature heads: where Aug-NeRF's code adds its feature
    perturbation); ``outputs`` are the raw density and the colour logits (nerf-pytorch's ``raw``).
    """

    perturbation_levels = frozenset({"coords", "features", "outputs"})

    def __init__(
        self,
        *,
        depth: int = 8,
        width: int = 256,
        skips: Sequence[int] = (4,),
        pos_freqs: int = 10,
        dir_freqs: int = 4,
        use_viewdirs: bool = True,
        output_ch: int = 4,
    ):
        super().__init__()
        if not use_viewdirs and output_ch < 4:
            raise ValueError(f"nerf_field.py: output_ch must be >= 4 (rgb + alpha), got {output_ch}")
        self.skips = tuple(skips)
        self.use_viewdirs = use_viewdirs
        self.pos_encoding = PositionalEncoding(n_freqs=pos_freqs)
        self.dir_encoding = PositionalEncoding(n_freqs=dir_freqs)
        in_pts = self.pos_encoding.out_dim
        in_views = self.dir_encoding.out_dim if use_viewdirs else 0  # nerf-pytorch: input_ch_views = 0
        self.pts_linears = nn.ModuleList(
            [nn.Linear(in_pts, width)]
            + [nn.Linear(width + in_pts if i in self.skips else width, width) for i in range(depth - 1)]
        )
        # Official code release: a single view layer of width W // 2 (created, unused, without viewdirs too).
        self.views_linears = nn.ModuleList([nn.Linear(in_views + width, width // 2)])
        if use_viewdirs:
            self.feature_linear = nn.Linear(width, width)
            self.alpha_linear = nn.Linear(width, 1)
            self.rgb_linear = nn.Linear(width // 2, 3)
        else:
            self.output_linear = nn.Linear(width, output_ch)

    def _trunk(self, positions: Tensor, perturb: FieldPerturbation | None = None) -> Tensor:
        """[*batch, 3] -> [*batch, W] position features (after the last position layer's ReLU; ``perturb.features``)."""
        if positions.shape[-1] != 3:
            raise ValueError(f"nerf_field.py: positions must be [..., 3], got {tuple(positions.shape)}")
        x = self.pos_encoding(positions)
        h = x
        for i, layer in enumerate(self.pts_linears):
            h = F.relu(layer(h))
            if i in self.skips:
                h = torch.cat([x, h], dim=-1)
        return h if perturb is None else perturb.features(h)

    def raw_density(self, positions: Tensor) -> Tensor:
        """[*batch, 3] -> [*batch, 1] raw density (before ReLU; renderers may add noise first)."""
        h = self._trunk(positions)
        return self.alpha_linear(h) if self.use_viewdirs else self.output_linear(h)[..., 3:4]

    def raw(self, positions: Tensor, viewdirs: Tensor, perturb: FieldPerturbation | None = None) -> Tensor:
        """nerf-pytorch's network output: [*batch, 3] x2 -> [*batch, 4] = (raw rgb logits, raw density).

        ``perturb``: its ``features`` hook on the trunk's output and its ``outputs`` hook on the raw values.
        """
        if not self.use_viewdirs:
            raw = self.output_linear(self._trunk(positions, perturb))[..., :4]
            if perturb is None:
                return raw
            alpha, rgb = perturb.outputs(raw[..., 3:4], raw[..., :3])
            return torch.cat([rgb, alpha], dim=-1)
        positions, viewdirs = broadcast_inputs(positions, viewdirs, "nerf_field.py")
        h = self._trunk(positions, perturb)
        alpha = self.alpha_linear(h)
        h = torch.cat([self.feature_linear(h), self.dir_encoding(viewdirs)], dim=-1)
        for layer in self.views_linears:
            h = F.relu(layer(h))
        rgb = self.rgb_linear(h)
        if perturb is not None:
            alpha, rgb = perturb.outputs(alpha, rgb)
        return torch.cat([rgb, alpha], dim=-1)

    def density(self, positions: Tensor) -> Tensor:
        """[*batch, 3] -> [*batch, 1] density ``relu(raw)``."""
        return F.relu(self.raw_density(positions))

    def query(
        self, positions: Tensor, viewdirs: Tensor, context: Any = None, perturb: FieldPerturbation | None = None
    ) -> tuple[Tensor, Tensor]:
        """[*batch, 3] positions and unit directions -> (density [*batch, 1] >= 0, rgb [*batch, 3] in (0, 1))."""
        raw = self.raw(positions, viewdirs, perturb)
        return F.relu(raw[..., 3:4]), torch.sigmoid(raw[..., :3])
