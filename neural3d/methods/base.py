"""The method slot: a :class:`Model` = sampler(s) + scene representation + renderer + losses.

Lifecycle (called by the trainer, evaluation and the Python API):

* ``Model(config, scene=SceneInfo)`` builds its modules from its config dataclass.
* ``forward(rays, context=None) -> ModelOutputs`` renders a flat [n_rays] :class:`RayBundle`: ``rgb``
  [n_rays, 3], ``depth`` [n_rays, 1], ``opacity`` [n_rays, 1] (readable as ``outputs["rgb"]`` too), plus
  what the losses need (weights, samples, a loss mask) as typed fields, never as ``loss_*`` entries.
* ``loss_dict(outputs, batch)`` and ``metrics_dict(outputs, batch)`` for training: every loss is computed
  here from the typed outputs.
* ``param_groups()`` names parameter groups (``"encoding"`` groups get no weight decay); ``lr_scales()`` gives
  a group's learning rate as a multiple of ``trainer.optim.lr`` (default 1).
* ``training_step_begin(step)`` is a hook for stateful samplers (occupancy grids): models call their
  samplers' ``step_begin(step, field)`` (:mod:`neural3d.samplers.base`).

Inside ``forward`` every method composes the same three contracts: ``samples = sampler.sample(rays, ...)``
(:class:`~neural3d.samplers.base.Sampler`), ``field(samples, context) -> FieldOutputs``
(:class:`~neural3d.fields.base.Field`) and ``renderer(field_outputs, samples, background) -> RenderOutputs``.

Conditioning hooks (no-ops by default; used by methods rendering from source views, e.g. GNT):

* ``attach_scene(scene)``: the trainer and :func:`neural3d.load` hand over the loaded dataset
  (``needs_scene = True`` tells :func:`neural3d.load` to load it).
* ``prepare_scene(scene)``: a loaded dataset is adjusted to the method's conventions (GNT: its ray depth range);
  ``attach_scene`` and ``LoadedScene.dataset()`` call it.
* ``render_context(cameras, index)``: the ``context`` to render camera ``index`` (None by default);
  evaluation and ``LoadedScene.render`` pass it to ``forward``/``render_rays``.
* ``build_loader(scene, batch_size=, device=, seed=)``: a training batch source replacing the default
  :class:`~neural3d.data.RayLoader` (None keeps it); its batches may carry a ``context``.
* ``prepare_training()``: called once by the trainer before resuming (e.g. initial weights).

Perturbation hook (training strategies such as Aug-NeRF, :mod:`neural3d.training.augment`): a model whose
``perturbation_levels()`` is not empty accepts ``forward(rays, context, perturb=p)`` with a
:class:`~neural3d.fields.perturb.ModelPerturbation`: each field pass takes its samples through
``p.samples(name, ...)`` (so a strategy can replay the samples of a clean pass) and its field hooks from
``p.field(name)``. ``perturb=None`` (the default) is the plain forward.

Whole-image methods (``renders_whole_images = True``, e.g. LVSM): ``forward`` / ``render_rays`` take all rays of
whole images ([H, W] or [t, H, W] bundles) and ignore ``chunk``; callers (``LoadedScene.render``, evaluation,
the viewer) hand over whole images, never row bands or ray chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from neural3d.core.rays import RayBundle
from neural3d.core.samples import PackedRaySamples, RaySamples
from neural3d.evaluation.metrics import mse_to_psnr

RAY_OUTPUTS = ("rgb_coarse", "rgb", "depth", "opacity")  # the per-ray tensors of ModelOutputs, in key order


@dataclass
class ModelOutputs:
    """What :meth:`Model.forward` returns: per-ray renders and the typed inputs of the losses.

    Attributes:
        rgb: [n_rays, 3] colour of every ray of the bundle.
        depth: [n_rays, 1] expected ``t``.
        opacity: [n_rays, 1] accumulated opacity.
        rgb_coarse: optional [n_rays, 3] colour of a coarse pass (hierarchical sampling; gets its own loss).
        samples: the samples the field ran on (their ``ray_subset`` says which rays, when not all).
        weights: compositing weights on ``samples`` ([k, n_samples] padded or [n_samples] packed).
        loss_mask: optional [n_rays] bool: the rays that count in the colour loss (None: all).
        extras: method-specific values (e.g. attention maps).

    ``outputs["rgb"]``, ``keys()``, ``items()`` and ``get`` read the per-ray tensors that are set, in the order
    ``rgb_coarse, rgb, depth, opacity`` (the dict form earlier versions returned).
    """

    rgb: Tensor
    depth: Tensor
    opacity: Tensor
    rgb_coarse: Tensor | None = None
    samples: RaySamples | PackedRaySamples | None = None
    weights: Tensor | None = None
    loss_mask: Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> list[str]:
        return [k for k in RAY_OUTPUTS if getattr(self, k) is not None]

    def items(self) -> list[tuple[str, Tensor]]:
        return [(k, getattr(self, k)) for k in self.keys()]

    def __iter__(self):
        return iter(self.keys())

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __getitem__(self, key: str) -> Tensor:
        if key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default


@dataclass
class SceneInfo:
    """What a model needs to know about its scene.

    Attributes:
        scene_box: [2, 3] axis-aligned box (min corner, max corner) holding the content, in the
            coordinates the rays live in (NDC for forward-facing scenes).
        near, far: default ray bounds.
        ndc: whether rays are in normalised device coordinates.
        background: [3] background colour (None: black / learned by the method).
        ndc_params: (width, height, focal) of the reference camera for :func:`~neural3d.core.rays.ndc_rays`.
    """

    scene_box: Tensor
    near: float
    far: float
    ndc: bool = False
    background: Tensor | None = None
    ndc_params: tuple[float, float, float] | None = None

    def state(self) -> dict[str, Any]:
        return {
            "scene_box": self.scene_box.tolist(),
            "near": self.near,
            "far": self.far,
            "ndc": self.ndc,
            "background": None if self.background is None else self.background.tolist(),
            "ndc_params": None if self.ndc_params is None else list(self.ndc_params),
        }

    @staticmethod
    def from_state(d: dict[str, Any]) -> SceneInfo:
        bg, ndc_p = d.get("background"), d.get("ndc_params")
        return SceneInfo(
            torch.tensor(d["scene_box"], dtype=torch.float32),
            float(d["near"]),
            float(d["far"]),
            bool(d["ndc"]),
            None if bg is None else torch.tensor(bg, dtype=torch.float32),
            None if ndc_p is None else tuple(float(x) for x in ndc_p),
        )

    def image_rays(self, cameras, index: int, pixel_center: float = 0.5) -> RayBundle:
        """[H, W] rays of camera ``index``."""
        from neural3d.core.rays import apply_ndc, image_rays

        rays = image_rays(cameras, index, self.near, self.far, pixel_center)
        return apply_ndc(rays, self.ndc_params if self.ndc else None)


class Model(nn.Module):
    """Base class of methods."""

    needs_scene: bool = False  # True: neural3d.load attaches the run's dataset (attach_scene)
    renders_whole_images: bool = False  # True: forward/render_rays need all rays of whole images (LVSM)

    def __init__(self, config: Any, *, scene: SceneInfo) -> None:
        super().__init__()
        self.config = config
        self.scene = scene
        bg = scene.background if scene.background is not None else torch.zeros(3)
        self.register_buffer("background", bg.clone().float(), persistent=False)

    def forward(self, rays: RayBundle, context: Any = None) -> ModelOutputs:
        raise NotImplementedError

    def perturbation_levels(self) -> frozenset[str]:
        """The perturbation hooks (``coords``, ``features``, ``outputs``) every field pass of this model applies;
        empty (the default): ``forward`` takes no ``perturb`` argument."""
        return frozenset()

    def loss_dict(self, outputs: ModelOutputs, batch: Any) -> dict[str, Tensor]:
        """Default: MSE of every ``rgb*`` output (``rgb_coarse``, ``rgb``) against the target colour."""
        return {f"loss_{k}": torch.mean((v - batch.rgb) ** 2) for k, v in outputs.items() if k.startswith("rgb")}

    def metrics_dict(self, outputs: ModelOutputs, batch: Any) -> dict[str, Tensor]:
        mse = torch.mean((outputs["rgb"].detach() - batch.rgb) ** 2)
        return {"psnr": mse_to_psnr(mse.clamp_min(1e-10))}

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"network": [p for p in self.parameters() if p.requires_grad]}

    def lr_scales(self) -> dict[str, float]:
        """Learning rate of a parameter group (by name) as a multiple of ``trainer.optim.lr``; default: all 1."""
        return {}

    def training_step_begin(self, step: int) -> None:
        """Hook called before every training step. A model may resize parameters here (in place): the loop then
        drops their optimizer moments (:func:`~neural3d.training.optim.drop_resized_state`)."""

    def attach_scene(self, scene: Any) -> None:
        """Hook: the dataset (:class:`~neural3d.data.SceneData`) this model renders; default ignores it."""

    def prepare_scene(self, scene: Any) -> None:
        """Hook: adjust a loaded dataset to the method's conventions, in place (default: nothing)."""

    def render_context(self, cameras: Any, index: int) -> Any:
        """Hook: conditioning ``context`` for rendering camera ``index`` of ``cameras`` (default None)."""
        return None

    def build_loader(self, scene: Any, *, batch_size: int, device: Any, seed: int) -> Any:
        """Hook: a training batch source for ``scene`` (None: the trainer's default RayLoader)."""
        return None

    def prepare_training(self) -> None:
        """Hook called once by the trainer before it resumes or starts training."""

    @torch.no_grad()
    def render_rays(self, rays: RayBundle, chunk: int = 8192, context: Any = None) -> dict[str, Tensor]:
        """Render any [*batch] bundle in chunks of ``chunk`` rays; returns [*batch, C] tensors."""
        shape = rays.shape
        flat = rays.flatten()
        parts: dict[str, list[Tensor]] = {}
        for sub in flat.chunks(chunk):
            out = self(sub, context)
            for k in ("rgb", "depth", "opacity"):
                parts.setdefault(k, []).append(out[k].float())
        return {k: torch.cat(v, 0).reshape(*shape, -1) for k, v in parts.items()}
