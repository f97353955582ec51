"""Mapping world positions into the unit cube [0, 1]^3 that grid encodings expect.

* :class:`SceneBox`: an axis-aligned box ``aabb`` [2, 3] (min row, max row) normalised affinely to [0, 1]^3.
  NDC (forward-facing) scenes use :meth:`SceneBox.ndc`, the box [-1, 1]^3.
* :func:`contract`: mip-NeRF 360 / nerfstudio ``SceneContraction``: identity for ``||x|| <= 1``, else
  ``(2 - 1/||x||) x / ||x||`` (norm ``"inf"`` or ``"l2"``), mapping R^3 into the ball of radius 2.
* :func:`normalize_positions`: the box normalisation, or (unbounded scenes) box to [-1, 1]^3, contraction,
  then ``(c + 2) / 4`` so the box occupies the inner half [0.25, 0.75]^3 of the unit cube.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

CONTRACTIONS = ("aabb", "inf", "l2")


@dataclass
class SceneBox:
    """Axis-aligned scene bounds.

    Attributes:
        aabb: [2, 3] tensor, ``aabb[0]`` the minimum corner, ``aabb[1]`` the maximum corner.
    """

    aabb: Tensor

    def __post_init__(self):
        self.aabb = torch.as_tensor(self.aabb, dtype=torch.float32)
        if self.aabb.shape != (2, 3):
            raise ValueError(f"contraction.py: SceneBox aabb must have shape [2, 3], got {tuple(self.aabb.shape)}")
        if not bool((self.aabb[1] > self.aabb[0]).all()):
            raise ValueError(
                f"contraction.py: SceneBox aabb max must exceed min on every axis, got {self.aabb.tolist()}"
            )

    @staticmethod
    def ndc() -> SceneBox:
        """The NDC box [-1, 1]^3 of forward-facing scenes."""
        return SceneBox(torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))

    @staticmethod
    def cube(half_size: float) -> SceneBox:
        """The box [-half_size, half_size]^3."""
        return SceneBox(torch.tensor([[-half_size] * 3, [half_size] * 3]))

    @property
    def size(self) -> Tensor:
        """[3] side lengths."""
        return self.aabb[1] - self.aabb[0]

    def normalize(self, positions: Tensor) -> Tensor:
        """[*batch, 3] world -> [*batch, 3], the box mapped to [0, 1]^3 (outside points fall outside)."""
        return normalize_to_box(positions, self.aabb)


def normalize_to_box(positions: Tensor, aabb: Tensor) -> Tensor:
    """[*batch, 3] positions, [2, 3] aabb -> [*batch, 3] with the box mapped to [0, 1]^3."""
    lo, hi = aabb.to(positions)[0], aabb.to(positions)[1]
    return (positions - lo) / (hi - lo)


def contract(x: Tensor, order: str = "inf") -> Tensor:
    """Scene contraction of mip-NeRF 360 (nerfstudio ``SceneContraction``).

    Args:
        x: [*batch, 3] positions (the region of interest is the unit ball of the chosen norm).
        order: "inf" (L-infinity, cube-shaped inner region; nerfstudio's default) or "l2".
    Returns:
        [*batch, 3] with norm < 2; identity where ``||x|| <= 1``, continuous at ``||x|| = 1``.
    """
    if order not in ("inf", "l2"):
        raise ValueError(f"contraction.py: contraction order must be 'inf' or 'l2', got {order!r}")
    mag = torch.linalg.vector_norm(x, ord=float("inf") if order == "inf" else 2, dim=-1, keepdim=True)
    safe = mag.clamp_min(1.0)  # only used where mag > 1; avoids 0-division and NaN gradients
    return torch.where(mag <= 1.0, x, (2.0 - 1.0 / safe) * (x / safe))


def normalize_positions(positions: Tensor, aabb: Tensor, contraction: str = "aabb") -> Tensor:
    """World positions -> unit-cube coordinates for a grid encoding.

    Args:
        positions: [*batch, 3].
        aabb: [2, 3] scene box.
        contraction: "aabb" (affine box -> [0, 1]^3), or "inf" / "l2" (box -> [-1, 1]^3, :func:`contract`,
            then ``(c + 2) / 4`` into [0, 1]^3).
    Returns:
        [*batch, 3]; inside [0, 1]^3 for every finite input when contracted, for points of the box otherwise.
    """
    if contraction not in CONTRACTIONS:
        raise ValueError(f"contraction.py: contraction must be one of {CONTRACTIONS}, got {contraction!r}")
    x01 = normalize_to_box(positions, aabb)
    if contraction == "aabb":
        return x01
    return (contract(2.0 * x01 - 1.0, contraction) + 2.0) / 4.0
