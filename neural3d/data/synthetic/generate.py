"""Random scene generation: ``make_scene(seed, kind)`` -> :class:`SynthScene`, deterministic in ``seed``.

Two kinds:

* ``"object"`` (Blender layout): world z up; 2-5 primitives (sphere, box, cylinder, torus) within a ball
  of radius 1.3 about the origin, usually resting on a textured ground disk; empty background.
* ``"forward"`` (LLFF layout): world y up; 3-6 primitives floating around the origin in front of an
  infinite textured backdrop plane at z ~ -1.7, so every camera ray looking down -z hits something.

All randomness comes from one ``numpy.random.Generator`` seeded with ``(seed, kind)``; values are
rounded to 6 decimals so ``scene.json`` holds exactly the numbers that were rendered.
Texture wavelengths are >= 0.4 world units (>= ~9 pixels at 64x64) so the scenes stay learnable.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import replace

import numpy as np

from .scene import KINDS, SynthScene
from .shading import CheckerTexture, Lighting, Material, NoiseTexture, SolidTexture, StripeTexture, Texture
from .shapes import Box, Cylinder, Disk, Plane, Primitive, Sphere
from .torus import Torus

OBJECT_RADIUS = 1.3  # every "object" scene fits in this ball about the origin
_KIND_STREAM = {"object": 1, "forward": 2}


def _r(x) -> float | tuple:
    """Round floats (recursively in tuples) to 6 decimals so JSON round-trips exactly."""
    if isinstance(x, (tuple, list, np.ndarray)):
        return tuple(_r(v) for v in x)
    return round(float(x), 6)


def _rotation(mat: np.ndarray) -> tuple:
    """Rounded proper rotation (re-orthonormalised after rounding via SVD)."""
    u, _, vt = np.linalg.svd(np.round(mat, 6))
    rot = u @ vt
    if np.linalg.det(rot) < 0:
        rot = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    return tuple(tuple(float(v) for v in row) for row in rot)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def _axis_rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation about a unit ``axis``."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k


def _frame_with_z(axis: np.ndarray, spin: float) -> np.ndarray:
    """A rotation whose third column is the unit ``axis``, spun by ``spin`` about it."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, axis)
    x /= np.linalg.norm(x)
    base = np.stack([x, np.cross(axis, x), axis], -1)
    return base @ _axis_rotation(np.array([0.0, 0.0, 1.0]), spin)


def _color(rng: np.random.Generator, hue: float | None = None) -> tuple:
    hue = rng.uniform() if hue is None else hue % 1.0
    return _r(colorsys.hsv_to_rgb(hue, rng.uniform(0.35, 0.85), rng.uniform(0.55, 0.95)))


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _texture(rng: np.random.Generator, scale: float, min_wavelength: float = 0.4) -> Texture:
    """A random band-limited texture whose features are ~``scale`` world units (wavelength >= min)."""
    hue = rng.uniform()
    a, b = _color(rng, hue), _color(rng, hue + rng.choice([-1, 1]) * rng.uniform(0.1, 0.45))
    wavelength = max(min_wavelength, scale * rng.uniform(0.5, 1.2))
    k = 2 * math.pi / wavelength
    choice = rng.choice(4, p=[0.2, 0.3, 0.2, 0.3])
    if choice == 0:
        return SolidTexture(color=a)
    if choice == 1:
        return StripeTexture(
            color_a=a,
            color_b=b,
            wavevector=_r(_unit(rng) * k),
            phase=_r(rng.uniform(0, 6.283)),
            sharpness=_r(rng.uniform(0.5, 2.5)),
        )
    if choice == 2:
        return CheckerTexture(
            color_a=a,
            color_b=b,
            frequency=_r(k / 2),
            offset=_r(rng.uniform(0, 6.283, 3)),
            sharpness=_r(rng.uniform(2.0, 6.0)),
        )
    n_waves = int(rng.integers(2, 5))
    waves = [_unit(rng) * k * rng.uniform(0.6, 1.0) for _ in range(n_waves)]
    tints = [(rng.uniform(-1, 1, 3) * 0.08 + rng.uniform(-0.12, 0.12)) for _ in range(n_waves)]
    return NoiseTexture(color=a, wavevectors=_r(waves), phases=_r(rng.uniform(0, 6.283, n_waves)), tints=_r(tints))


def _material(rng: np.random.Generator, scale: float, shiny_prob: float = 0.7) -> Material:
    specular = rng.uniform(0.15, 0.5) if rng.uniform() < shiny_prob else 0.0
    return Material(texture=_texture(rng, scale), specular=_r(specular), shininess=_r(rng.uniform(8.0, 40.0)))


def _shape(rng: np.random.Generator, bound: float, up: np.ndarray) -> Primitive:
    """A random solid with bounding radius ``bound``, centred at the origin (moved later)."""
    kind = rng.choice(["sphere", "box", "cylinder", "torus"], p=[0.3, 0.3, 0.22, 0.18])
    if kind == "sphere":
        return Sphere(radius=_r(bound))
    if kind == "box":
        h = rng.uniform(0.4, 1.0, 3)
        rot = _axis_rotation(up, rng.uniform(0, 2 * math.pi)) if rng.uniform() < 0.6 else _random_rotation(rng)
        return Box(half_size=_r(h * bound / np.linalg.norm(h)), rotation=_rotation(rot))
    if kind == "cylinder":
        r = bound * rng.uniform(0.45, 0.8)
        side = np.cross(up, _unit(rng))
        axis = [up, side / np.linalg.norm(side), _unit(rng)][rng.choice(3, p=[0.5, 0.3, 0.2])]
        rot = _frame_with_z(axis, rng.uniform(0, 2 * math.pi))
        return Cylinder(radius=_r(r), half_height=_r(math.sqrt(bound**2 - r * r)), rotation=_rotation(rot))
    minor = bound * rng.uniform(0.22, 0.38)
    axis = up if rng.uniform() < 0.4 else _unit(rng)
    return Torus(major=_r(bound - minor), minor=_r(minor), rotation=_rotation(_frame_with_z(axis, rng.uniform(0, 6.3))))


def _moved(prim: Primitive, center: np.ndarray) -> Primitive:
    return replace(prim, center=_r(center))


def _place(rng, n_objects, sample_center, up, bound_range, fits) -> list[Primitive]:
    """Rejection-sample ``n_objects`` solids with little overlap; ``sample_center(shape)`` proposes."""
    placed: list[Primitive] = []
    for _ in range(n_objects):
        for _attempt in range(60):
            shape = _shape(rng, rng.uniform(*bound_range), up)
            center = sample_center(shape)
            prim = _moved(shape, center)
            clear = all(
                np.linalg.norm(center - np.array(o.center)) >= 0.9 * (prim.bound_radius() + o.bound_radius())
                for o in placed
            )
            if clear and fits(prim):
                placed.append(prim)
                break
    return placed


def _object_scene(rng: np.random.Generator) -> tuple[list[Primitive], list[Material], Lighting]:
    up = np.array([0.0, 0.0, 1.0])
    ground = rng.uniform() < 0.75
    ground_z = rng.uniform(-0.55, -0.35) if ground else 0.0
    prims: list[Primitive] = []
    mats: list[Material] = []
    if ground:
        radius = rng.uniform(0.95, math.sqrt(1.28**2 - ground_z**2))
        prims.append(Disk(radius=_r(radius), center=(0.0, 0.0, _r(ground_z))))
        mats.append(_material(rng, scale=0.7, shiny_prob=0.25))

    def sample_center(shape: Primitive) -> np.ndarray:
        xy = rng.uniform(-1.0, 1.0, 2)
        z = ground_z + shape.extent_along(up) + 1e-3 if ground else rng.uniform(-0.6, 0.6)
        return np.array([xy[0], xy[1], z])

    def fits(prim: Primitive) -> bool:
        c = np.array(prim.center)
        in_ball = np.linalg.norm(c) + prim.bound_radius() <= OBJECT_RADIUS - 0.02
        on_disk = not ground or np.linalg.norm(c[:2]) <= prims[0].radius - 0.05
        return in_ball and on_disk

    objects = _place(rng, int(rng.integers(2, 6)), sample_center, up, (0.22, 0.5), fits)
    prims += objects
    mats += [_material(rng, scale=p.bound_radius()) for p in objects]
    azimuth = rng.uniform(0, 2 * math.pi)
    key = _spherical(azimuth, rng.uniform(0.5, 1.2), up_axis=2)
    fill = _spherical(azimuth + rng.uniform(2.0, 4.3), rng.uniform(0.3, 1.0), up_axis=2)
    return prims, mats, _lighting(rng, key, fill, up)


def _forward_scene(rng: np.random.Generator) -> tuple[list[Primitive], list[Material], Lighting]:
    up = np.array([0.0, 1.0, 0.0])
    back_z = -rng.uniform(1.5, 1.9)
    prims: list[Primitive] = [Plane(center=(0.0, 0.0, _r(back_z)))]
    mats: list[Material] = [_material(rng, scale=1.0, shiny_prob=0.2)]
    z_axis = np.array([0.0, 0.0, 1.0])

    def sample_center(shape: Primitive) -> np.ndarray:
        return rng.uniform([-1.3, -0.9, -0.8], [1.3, 0.9, 0.8])

    def fits(prim: Primitive) -> bool:
        return prim.center[2] - prim.extent_along(z_axis) >= back_z + 0.15

    objects = _place(rng, int(rng.integers(3, 7)), sample_center, up, (0.28, 0.55), fits)
    prims += objects
    mats += [_material(rng, scale=p.bound_radius()) for p in objects]
    # Lights come from the camera side (+z), above and to either side.
    key = _spherical(rng.uniform(-1.2, 1.2), rng.uniform(0.3, 0.9), up_axis=1)
    fill = _spherical(-np.sign(key[0]) * rng.uniform(0.4, 1.2), rng.uniform(-0.1, 0.5), up_axis=1)
    return prims, mats, _lighting(rng, key, fill, up)


def _spherical(azimuth: float, elevation: float, up_axis: int) -> np.ndarray:
    """Unit vector; for ``up_axis`` 2 (z up) azimuth is about z, for 1 (y up) it is measured from +z."""
    c = math.cos(elevation)
    if up_axis == 2:
        return np.array([c * math.cos(azimuth), c * math.sin(azimuth), math.sin(elevation)])
    return np.array([c * math.sin(azimuth), math.sin(elevation), c * math.cos(azimuth)])


def _lighting(rng: np.random.Generator, key: np.ndarray, fill: np.ndarray, up: np.ndarray) -> Lighting:
    warm = rng.uniform(-0.04, 0.04)
    key_i, fill_i = rng.uniform(0.55, 0.7), rng.uniform(0.12, 0.25)
    return Lighting(
        directions=(_r(key), _r(fill)),
        colors=(_r(key_i * np.array([1 + warm, 1.0, 1 - warm])), _r(fill_i * np.array([1 - warm, 1.0, 1 + warm]))),
        ambient=_r(np.full(3, rng.uniform(0.22, 0.32))),
        up=_r(up),
    )


def make_scene(seed: int, kind: str = "object", *, shadows: bool = True) -> SynthScene:
    """Build the random scene number ``seed`` of the given kind (deterministic, platform-independent).

    Args:
        seed: any non-negative integer.
        kind: "object" (objects around the origin, transparent background; Blender layout) or "forward"
            (objects in front of a textured backdrop, fully opaque; LLFF layout).
        shadows: trace hard shadows.

    Returns:
        :class:`SynthScene`.
    """
    if kind not in KINDS:
        raise ValueError(f"make_scene: kind must be one of {KINDS}, got {kind!r}")
    if int(seed) < 0:
        raise ValueError(f"make_scene: seed must be >= 0, got {seed}")
    rng = np.random.default_rng([int(seed), _KIND_STREAM[kind]])
    prims, mats, lighting = (_object_scene if kind == "object" else _forward_scene)(rng)
    return SynthScene(
        primitives=tuple(prims), materials=tuple(mats), lighting=lighting, kind=kind, seed=int(seed), shadows=shadows
    )
