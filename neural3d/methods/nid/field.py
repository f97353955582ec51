"""NID as a 3D scene representation: a dictionary of radiance-field experts with per-scene codes.

Every expert maps a position to raw (density, r, g, b); a scene is a signed top-k combination of
experts plus a bias, given by its code ``[num_experts logits, 4 bias]``:
``raw(x) = sum_k g_k expert_k(x) + b``, ``density = trunc_exp(raw_0 + density_bias)`` (0 outside the
scene box), ``rgb = sigmoid(raw_1:4)`` (view-independent). Positions are mapped from the scene box to
[-1, 1]^3 before the bank's encoding. The field plugs into the shared interface: ``forward(samples,
context)`` where ``context`` selects the scene code (an int, a 0-d tensor, or None for code 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from neural3d.core.samples import RaySamples
from neural3d.fields.base import Field, FieldOutputs
from neural3d.fields.ngp_field import trunc_exp
from neural3d.methods.nid.combine import mix_sparse
from neural3d.methods.nid.experts import ExpertBank
from neural3d.methods.nid.gating import Gates, topk_signed


@dataclass(frozen=True)
class SceneCodes:
    """Field context for several scenes at once: row ``s`` of the samples (their leading axis, or its blocks of
    equal size) is rendered with scene code ``ids[s]``.

    Attributes:
        ids: [n_scenes] code indices.
    """

    ids: Tensor


class NIDRadianceField(Field):
    """Radiance-field experts with a codebook of per-scene codes.

    Args:
        aabb: [2, 3] scene box.
        n_codes: number of scene codes.
        num_experts, topk: dictionary size and experts per scene.
        encoding, n_freqs, n_fourier_features, fourier_scale, hidden_dim, n_layers, activation: bank settings.
        density_bias: added to the raw density before ``trunc_exp``.

    Shapes: ``query(positions [*batch, 3], viewdirs [*batch, 3], code) -> (density [*batch, 1], rgb [*batch, 3])``.
    """

    def __init__(
        self,
        *,
        aabb,
        n_codes: int = 1,
        num_experts: int = 64,
        topk: int = 16,
        encoding: str = "pe",
        n_freqs: int = 6,
        n_fourier_features: int = 256,
        fourier_scale: float = 4.0,
        hidden_dim: int = 128,
        n_layers: int = 3,
        activation: str = "relu",
        density_bias: float = -1.0,
        seed: int = 0,
    ):
        super().__init__()
        aabb = torch.as_tensor(aabb, dtype=torch.float32)
        if aabb.shape != (2, 3) or not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"nid/field3d.py: aabb must be [2, 3] with max > min, got {aabb.tolist()}")
        if not 1 <= topk <= num_experts or n_codes < 1:
            raise ValueError(
                f"nid/field3d.py: need 1 <= topk <= num_experts and n_codes >= 1, got topk={topk}, "
                f"num_experts={num_experts}, n_codes={n_codes}"
            )
        self.register_buffer("aabb", aabb)
        self.topk, self.density_bias = topk, float(density_bias)
        self.bank = ExpertBank(
            in_dim=3,
            out_dim=4,
            num_experts=num_experts,
            encoding=encoding,
            n_freqs=n_freqs,
            n_fourier_features=n_fourier_features,
            fourier_scale=fourier_scale,
            hidden_dim=hidden_dim,
            n_layers=n_layers,
            activation=activation,
            seed=seed,
        )
        gen = torch.Generator().manual_seed(int(seed) + 1)
        self.codes = nn.Parameter(torch.randn(n_codes, num_experts + 4, generator=gen) / (num_experts + 4) ** 0.5)

    @property
    def num_experts(self) -> int:
        return self.bank.num_experts

    def gates(self, code_ids: Tensor) -> Gates:
        """[n_scenes] code indices -> top-k :class:`Gates` (bias [n_scenes, 4])."""
        raw = self.codes[code_ids]
        logits, bias = raw[:, : self.num_experts], raw[:, self.num_experts :]
        gates, idx, vals = topk_signed(logits, self.topk)
        return Gates(
            logits=logits, gates=gates, bias=bias, indices=idx, values=vals, load=(gates != 0).sum(0).to(logits.dtype)
        )

    def unit(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        """[*batch, 3] world -> ([*batch, 3] in [-1, 1] inside the box, [*batch, 1] inside mask)."""
        lo, hi = self.aabb[0], self.aabb[1]
        x = 2.0 * (positions - lo) / (hi - lo) - 1.0
        inside = ((x > -1.0) & (x < 1.0)).all(-1, keepdim=True)
        return x, inside

    def raw_outputs(self, positions: Tensor, gates: Gates) -> tuple[Tensor, Tensor]:
        """[n_scenes, n_points, 3] positions (one row per scene of ``gates``) -> (raw [n_scenes, n_points, 4],
        inside)."""
        x, inside = self.unit(positions)
        expert_out = self.bank(x)  # [S, N, E, 4]
        return mix_sparse(expert_out, gates.indices, gates.values, gates.bias), inside

    def activate(self, raw: Tensor, inside: Tensor) -> tuple[Tensor, Tensor]:
        """raw [..., 4] -> (density [..., 1], rgb [..., 3])."""
        density = trunc_exp(raw[..., :1] + self.density_bias) * inside
        return density, torch.sigmoid(raw[..., 1:])

    def code_ids(self, context: Any, device) -> Tensor:
        if context is None:
            return torch.zeros(1, dtype=torch.long, device=device)
        idx = torch.as_tensor(context, dtype=torch.long, device=device).reshape(-1)
        if idx.numel() != 1 or not 0 <= int(idx) < self.codes.shape[0]:
            raise ValueError(
                f"nid/field3d.py: context must select one of {self.codes.shape[0]} scene codes, got {context!r}"
            )
        return idx

    def scene_ids(self, context: Any, device) -> Tensor:
        """[n_scenes] code indices: a :class:`SceneCodes` context (one code per leading row of the positions)
        or one code index (None: code 0)."""
        return context.ids.to(device) if isinstance(context, SceneCodes) else self.code_ids(context, device)

    def evaluate(self, positions: Tensor, ids: Tensor) -> tuple[Tensor, Tensor, Gates]:
        """[n_scenes, *batch, 3] positions, row ``s`` in scene ``ids[s]`` -> (density [..., 1], rgb [..., 3], gates)."""
        shape = positions.shape[:-1]
        gates = self.gates(ids)
        raw, inside = self.raw_outputs(positions.reshape(ids.shape[0], -1, 3), gates)
        density, rgb = self.activate(raw, inside)
        return density.reshape(*shape, 1), rgb.reshape(*shape, 3), gates

    def query(self, positions: Tensor, viewdirs: Tensor | None = None, context: Any = None) -> tuple[Tensor, Tensor]:
        """[*batch, 3] positions (``context``: a code index, or :class:`SceneCodes` for [n_scenes, ...] rows)
        -> density [*batch, 1], rgb [*batch, 3]."""
        density, rgb, _ = self.evaluate(positions, self.scene_ids(context, positions.device))
        return density, rgb

    def forward(self, samples: RaySamples, context: Any = None) -> FieldOutputs:
        """The field contract; ``extras["gates"]`` holds the scenes' :class:`Gates` (for the balancing loss)."""
        ids = self.scene_ids(context, samples.positions.device)
        density, rgb, gates = self.evaluate(samples.positions, ids)
        return FieldOutputs(density=density, rgb=rgb, extras={"gates": gates})

    def density(self, positions: Tensor, context: Any = None) -> Tensor:
        """[*batch, 3] -> [*batch, 1]."""
        return self.query(positions, None, context)[0]
