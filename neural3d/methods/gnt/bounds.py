"""GNT's ray depth range per dataset, as the official code (VITA-Group/GNT) sets it.

* LLFF (``gnt/data_loaders/llff_test.py``, also ``llff.py``): the bounds of ``poses_bounds.npy`` scaled as the NeRF
  loader does (``bd_factor`` 0.75), then ``near = 0.9 * min(bounds)`` and ``far = 1.6 * max(bounds)`` over all the
  scene's images. The NeRF convention of our LLFF loader (``run_nerf.py`` without NDC) is ``0.9 * min`` and
  ``1.0 * max``: the same near, a far 1.6x closer -- an official checkpoint rendered with it is off by 0.10-0.12 in
  RGB (issue 23). On fern (any ``factor``; bounds over all 20 images) the range goes from [1.2, 6.2801] to
  [1.2, 10.0482].
* Blender (``gnt/data_loaders/nerf_synthetic.py``): ``near = 2``, ``far = 6``, the same as the NeRF loader.
* Other layouts (transforms.json): the official code has no loader for them; the scene's own bounds are kept.

:func:`apply_official_depth_range` sets a scene's ``near``/``far`` to these unless the run overrode them
(``data.near`` / ``data.far``: a bound that differs from the loader's default is left as it is). The GNT method
applies it to every scene it renders or trains on (``GNTModel.prepare_scene``).
"""

from __future__ import annotations

import torch

LLFF_NEAR_SCALE = 0.9
LLFF_FAR_SCALE = 1.6
BLENDER_NEAR, BLENDER_FAR = 2.0, 6.0


def official_depth_range(scene) -> tuple[float, float] | None:
    """(near, far) of the official GNT code for ``scene`` (a :class:`~neural3d.data.SceneData`); None: no convention.

    LLFF: ``0.9 * min(bds)``, ``1.6 * max(bds)`` of the loader's scaled bounds (``metadata['bds']``), rounded to
    float32 as the official ``torch.tensor([near * 0.9, far * 1.6])``.
    """
    kind = getattr(scene, "kind", "")
    if kind == "llff" and "bds" in scene.metadata:
        bds = torch.as_tensor(scene.metadata["bds"], dtype=torch.float32)
        rng = torch.tensor([float(bds.min()) * LLFF_NEAR_SCALE, float(bds.max()) * LLFF_FAR_SCALE])
        return float(rng[0]), float(rng[1])
    if kind == "blender":
        return BLENDER_NEAR, BLENDER_FAR
    return None


def apply_official_depth_range(scene) -> tuple[float, float]:
    """Set ``scene.near`` / ``scene.far`` to :func:`official_depth_range`, each unless overridden by the run.

    A bound is overridden when it differs from the loader's own (``metadata['default_bounds']``, e.g. after
    ``data.far=...``); scenes without that record or without an official convention are left unchanged. NDC scenes
    are never changed (GNT refuses them). Returns the scene's (near, far) afterwards.
    """
    official = official_depth_range(scene)
    default = scene.metadata.get("default_bounds")
    if official is not None and default is not None and not scene.ndc:
        if scene.near == default[0]:
            scene.near = official[0]
        if scene.far == default[1]:
            scene.far = official[1]
    return scene.near, scene.far
