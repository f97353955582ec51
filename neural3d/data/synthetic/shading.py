"""Procedural solid textures and Blinn-Phong shading for the synthetic scenes.

Textures are smooth functions of a primitive's local hit point (3D "solid" textures: no seams and no
UV distortion), band-limited so that a radiance field can learn them:

* :class:`SolidTexture` - one colour.
* :class:`StripeTexture` - two colours blended by a softened sinusoid along a wave vector.
* :class:`CheckerTexture` - two colours blended by a softened 3D product of sinusoids.
* :class:`NoiseTexture` - a base colour plus a few tinted random plane waves ("Fourier noise").

Lighting (all lights directional, in world space)::

    rgb = albedo * ambient * (0.75 + 0.25 <n, up>)                                   (soft sky ambient)
        + sum_l vis_l * light_l * (albedo * max(<n, l>, 0) + ks * max(<n, h_l>, 0)^shininess * [<n, l> > 0])

with ``h_l = normalize(l + v)`` and ``v`` the unit direction towards the camera: the specular term makes
the colour view-dependent. ``vis_l`` is 0 in hard shadow, else 1. The result is clamped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar

import torch
from torch import Tensor

Color = tuple[float, float, float]


def _vec(values, like: Tensor) -> Tensor:
    return torch.tensor(values, dtype=torch.float64, device=like.device)


def _soft(wave: Tensor, sharpness: float) -> Tensor:
    """Softened square wave in [0, 1] from a wave in [-1, 1]; ``sharpness`` -> 0 gives a sinusoid."""
    if sharpness <= 1e-6:
        return 0.5 + 0.5 * wave
    return 0.5 + 0.5 * torch.tanh(sharpness * wave) / torch.tanh(torch.tensor(sharpness, dtype=wave.dtype))


@dataclass(frozen=True, kw_only=True)
class Texture:
    """Base class: ``texture(local [n_rays, 3]) -> albedo [n_rays, 3]`` in [0, 1] (float64)."""

    kind: ClassVar[str] = ""

    def __call__(self, local: Tensor) -> Tensor:
        return self._albedo(local.double()).clamp(0.0, 1.0)

    def _albedo(self, p: Tensor) -> Tensor:
        raise NotImplementedError

    def to_dict(self) -> dict:
        out: dict = {"type": self.kind}
        for f in fields(self):
            out[f.name] = _to_json(getattr(self, f.name))
        return out


def _to_json(value):
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


def _from_json(value):
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    return value


@dataclass(frozen=True, kw_only=True)
class SolidTexture(Texture):
    """A single colour."""

    color: Color
    kind: ClassVar[str] = "solid"

    def _albedo(self, p):
        return _vec(self.color, p).expand(p.shape[0], 3)


@dataclass(frozen=True, kw_only=True)
class StripeTexture(Texture):
    """Stripes: ``mix(color_a, color_b, soft(sin(<wavevector, p> + phase)))``."""

    color_a: Color
    color_b: Color
    wavevector: tuple[float, float, float]
    phase: float = 0.0
    sharpness: float = 1.0
    kind: ClassVar[str] = "stripes"

    def _albedo(self, p):
        w = _soft(torch.sin(p @ _vec(self.wavevector, p) + self.phase), self.sharpness)[:, None]
        return _vec(self.color_a, p) * (1 - w) + _vec(self.color_b, p) * w


@dataclass(frozen=True, kw_only=True)
class CheckerTexture(Texture):
    """Soft 3D checker: ``mix(color_a, color_b, soft(prod_i sin(frequency * (p_i + offset_i))))``."""

    color_a: Color
    color_b: Color
    frequency: float
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sharpness: float = 2.0
    kind: ClassVar[str] = "checker"

    def _albedo(self, p):
        wave = torch.sin(self.frequency * (p + _vec(self.offset, p))).prod(-1)
        w = _soft(wave, self.sharpness)[:, None]
        return _vec(self.color_a, p) * (1 - w) + _vec(self.color_b, p) * w


@dataclass(frozen=True, kw_only=True)
class NoiseTexture(Texture):
    """``color + sum_k tints[k] * sin(<wavevectors[k], p> + phases[k])`` (smooth random pattern)."""

    color: Color
    wavevectors: tuple[tuple[float, float, float], ...]
    phases: tuple[float, ...]
    tints: tuple[Color, ...]
    kind: ClassVar[str] = "noise"

    def __post_init__(self) -> None:
        if not len(self.wavevectors) == len(self.phases) == len(self.tints):
            raise ValueError("NoiseTexture: wavevectors, phases and tints must have the same length")

    def _albedo(self, p):
        if not self.phases:
            return _vec(self.color, p).expand(p.shape[0], 3)
        waves = torch.sin(p @ _vec(self.wavevectors, p).T + _vec(self.phases, p))  # [n_rays, n_waves]
        return _vec(self.color, p) + waves @ _vec(self.tints, p)


TEXTURES: dict[str, type[Texture]] = {
    cls.kind: cls for cls in (SolidTexture, StripeTexture, CheckerTexture, NoiseTexture)
}


def texture_from_dict(spec: dict) -> Texture:
    """Inverse of :meth:`Texture.to_dict`; raises ValueError on an unknown ``type`` or keys."""
    spec = dict(spec)
    kind = spec.pop("type", None)
    if kind not in TEXTURES:
        raise ValueError(f"texture 'type' must be one of {sorted(TEXTURES)}, got {kind!r}")
    try:
        return TEXTURES[kind](**{k: _from_json(v) for k, v in spec.items()})
    except TypeError as err:
        raise ValueError(f"texture of type {kind!r}: {err}") from None


@dataclass(frozen=True, kw_only=True)
class Material:
    """Surface appearance: a texture for the diffuse albedo plus a white Blinn-Phong lobe.

    Attributes:
        texture: albedo as a function of the local hit point.
        specular: ``ks`` >= 0, strength of the view-dependent highlight (0 disables it).
        shininess: Blinn-Phong exponent (> 0); small values give broad, learnable highlights.
    """

    texture: Texture
    specular: float = 0.0
    shininess: float = 16.0

    def __post_init__(self) -> None:
        if self.specular < 0 or self.shininess <= 0:
            raise ValueError(f"Material needs specular >= 0 and shininess > 0, got {self.specular}, {self.shininess}")

    def to_dict(self) -> dict:
        return {"texture": self.texture.to_dict(), "specular": self.specular, "shininess": self.shininess}

    @staticmethod
    def from_dict(spec: dict) -> Material:
        if "texture" not in spec:
            raise ValueError("material is missing the 'texture' key")
        return Material(
            texture=texture_from_dict(spec["texture"]),
            specular=float(spec.get("specular", 0.0)),
            shininess=float(spec.get("shininess", 16.0)),
        )


@dataclass(frozen=True, kw_only=True)
class Lighting:
    """Directional lights plus a soft sky ambient.

    Attributes:
        directions: unit vectors *towards* each light, world space, one per light.
        colors: RGB intensity of each light.
        ambient: RGB ambient intensity.
        up: world up direction for the sky ambient (brighter on upward-facing surfaces).
    """

    directions: tuple[tuple[float, float, float], ...]
    colors: tuple[Color, ...]
    ambient: Color = (0.25, 0.25, 0.25)
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.directions) != len(self.colors):
            raise ValueError("Lighting: directions and colors must have the same length")

    def to_dict(self) -> dict:
        return {f.name: _to_json(getattr(self, f.name)) for f in fields(self)}

    @staticmethod
    def from_dict(spec: dict) -> Lighting:
        try:
            return Lighting(**{k: _from_json(v) for k, v in spec.items()})
        except TypeError as err:
            raise ValueError(f"lighting: {err}") from None


def blinn_phong(
    albedo: Tensor,
    normal: Tensor,
    view: Tensor,
    visibility: Tensor,
    specular: Tensor,
    shininess: Tensor,
    lighting: Lighting,
) -> Tensor:
    """Shade surface points with the model in the module docstring.

    Args:
        albedo: [n_rays, 3] diffuse colour in [0, 1].
        normal: [n_rays, 3] unit normals (facing the viewer side for thin surfaces).
        view: [n_rays, 3] unit directions from the point towards the camera.
        visibility: [n_rays, n_lights] 1 where the light is unoccluded, 0 in shadow.
        specular: [n_rays] specular strength ``ks``.
        shininess: [n_rays] Blinn-Phong exponents.
        lighting: the lights.

    Returns:
        rgb: [n_rays, 3] float64 in [0, 1].
    """
    dirs = _vec(lighting.directions, albedo)  # [n_lights, 3]
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    colors = _vec(lighting.colors, albedo)  # [n_lights, 3]
    up = _vec(lighting.up, albedo)
    sky = 0.75 + 0.25 * (normal @ up)  # [n_rays]
    rgb = albedo * _vec(lighting.ambient, albedo) * sky[:, None]
    n_dot_l = normal @ dirs.T  # [n_rays, n_lights]
    half = dirs[None] + view[:, None]  # [n_rays, n_lights, 3]
    n_dot_h = torch.einsum("rc,rlc->rl", normal, half) / torch.linalg.vector_norm(half, dim=-1).clamp(min=1e-12)
    n_dot_h = n_dot_h.clamp(min=0)
    lobe = specular[:, None] * n_dot_h ** shininess[:, None] * (n_dot_l > 0)
    weight_diffuse = visibility * n_dot_l.clamp(min=0)  # [n_rays, n_lights]
    rgb = rgb + albedo * (weight_diffuse @ colors) + (visibility * lobe) @ colors
    return rgb.clamp(0.0, 1.0)
