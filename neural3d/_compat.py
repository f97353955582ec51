"""Old import paths (before the pipeline re-layout) keep working for one release, with a DeprecationWarning.

``import neural3d.models.ngp`` resolves to :mod:`neural3d.methods.ngp.model`; a module that was split (for
example ``neural3d.camera_paths``) becomes a view whose attributes come from its new modules. README.md lists
the moves ("What moved").
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings

# old dotted module -> its new module(s), searched in order for attributes
MOVED: dict[str, tuple[str, ...]] = {
    "neural3d.camera_paths": ("neural3d.core.poses", "neural3d.media.paths", "neural3d.media.camera_path_json"),
    "neural3d.cameras": ("neural3d.core.cameras",),
    "neural3d.demo": ("neural3d.cli.demo",),
    "neural3d.distortion": ("neural3d.core.lens_distortion",),
    "neural3d.gnt": ("neural3d.methods.gnt",),
    "neural3d.gnt.batches": ("neural3d.methods.gnt.batches",),
    "neural3d.gnt.checkpoint": ("neural3d.methods.gnt.checkpoint", "neural3d.methods.gnt.official"),
    "neural3d.gnt.colour": ("neural3d.methods.gnt.colour",),
    "neural3d.gnt.field": ("neural3d.methods.gnt.field",),
    "neural3d.gnt.mixture": ("neural3d.methods.gnt.mixture",),
    "neural3d.gnt.projection": ("neural3d.methods.gnt.projection",),
    "neural3d.gnt.resunet": ("neural3d.methods.gnt.resunet",),
    "neural3d.gnt.sampling": ("neural3d.methods.gnt.sampling",),
    "neural3d.gnt.selection": ("neural3d.methods.gnt.selection",),
    "neural3d.gnt.transformer": ("neural3d.methods.gnt.transformer",),
    "neural3d.lpips": ("neural3d.evaluation.lpips",),
    "neural3d.metrics": ("neural3d.evaluation.metrics",),
    "neural3d.models": ("neural3d.methods",),
    "neural3d.models.base": ("neural3d.methods.base",),
    "neural3d.models.gnt": ("neural3d.methods.gnt.model",),
    "neural3d.models.nerf": ("neural3d.methods.nerf.model",),
    "neural3d.models.ngp": ("neural3d.methods.ngp.model",),
    "neural3d.models.nid": ("neural3d.methods.nid.model",),
    "neural3d.models.point_field": ("neural3d.methods.point_field.model",),
    "neural3d.models.registry": ("neural3d.methods.registry",),
    "neural3d.nid": ("neural3d.apps.image_dictionary", "neural3d.methods.nid"),
    "neural3d.nid.combine": ("neural3d.methods.nid.combine",),
    "neural3d.nid.config": ("neural3d.methods.nid.config",),
    "neural3d.nid.data": ("neural3d.apps.image_dictionary.data",),
    "neural3d.nid.dictionary": ("neural3d.methods.nid.dictionary",),
    "neural3d.nid.encodings": ("neural3d.methods.nid.encodings",),
    "neural3d.nid.experts": ("neural3d.methods.nid.experts",),
    "neural3d.nid.field3d": ("neural3d.methods.nid.field",),
    "neural3d.nid.fit": ("neural3d.apps.image_dictionary.fit",),
    "neural3d.nid.gating": ("neural3d.methods.nid.gating",),
    "neural3d.nid.losses": ("neural3d.methods.nid.losses",),
    "neural3d.nid.patches": ("neural3d.apps.image_dictionary.patches",),
    "neural3d.nid.prior": ("neural3d.apps.image_dictionary.prior",),
    "neural3d.nid.run": ("neural3d.apps.image_dictionary.run",),
    "neural3d.nid.scenes": ("neural3d.methods.nid.family",),
    "neural3d.nid.train": ("neural3d.apps.image_dictionary.train",),
    "neural3d.nid.workflows": ("neural3d.apps.image_dictionary.workflows",),
    "neural3d.pointcloud.augment": ("neural3d.apps.point_classification.augment",),
    "neural3d.pointcloud.config": ("neural3d.apps.point_classification.config",),
    "neural3d.pointcloud.datasets": ("neural3d.apps.point_classification.datasets",),
    "neural3d.pointcloud.distill": ("neural3d.apps.point_classification.distill",),
    "neural3d.pointcloud.field": ("neural3d.methods.point_field.field",),
    "neural3d.pointcloud.metrics": ("neural3d.apps.point_classification.metrics",),
    "neural3d.pointcloud.scene_points": ("neural3d.methods.point_field.scene_points",),
    "neural3d.pointcloud.train": ("neural3d.apps.point_classification.train",),
    "neural3d.rays": ("neural3d.core.rays",),
    "neural3d.render_path": ("neural3d.media.paths",),
    "neural3d.rendering": ("neural3d.media.frames",),
    "neural3d.samples": ("neural3d.core.samples",),
    "neural3d.video": ("neural3d.media.video",),
}


class _MovedModuleLoader(importlib.abc.Loader):
    def __init__(self, old: str, new: tuple[str, ...]) -> None:
        self.old, self.new = old, new

    def create_module(self, spec):
        warnings.warn(
            f"{self.old} moved to {' / '.join(self.new)}; the old import path will be removed",
            DeprecationWarning,
            stacklevel=3,
        )
        parts = [importlib.import_module(n) for n in self.new]
        if len(parts) == 1 and not _has_moved_children(self.old):
            self._real_spec = parts[0].__spec__  # the import system sets module.__spec__ = (the alias) spec
            return parts[0]
        # a view, not the new module itself: importing an old child (neural3d.models.gnt) sets the child as an
        # attribute of its parent, which must not overwrite the new package's own (neural3d.methods.gnt)
        return _SplitModule(self.old, parts)

    def exec_module(self, module) -> None:
        if not isinstance(module, _SplitModule):
            module.__spec__ = self._real_spec  # the new module keeps its own name, origin and loader
        sys.modules[self.old] = module


def _has_moved_children(old: str) -> bool:
    return any(name.startswith(old + ".") for name in MOVED)


class _SplitModule(types.ModuleType):
    """A module that was split, or an old package: attribute lookups search its successors in order."""

    def __init__(self, name: str, parts: list[types.ModuleType]) -> None:
        super().__init__(name)
        self._parts = parts

    def __getattr__(self, attr: str):
        for part in self._parts:
            if hasattr(part, attr):
                return getattr(part, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")


class _MovedModuleFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedModuleLoader(fullname, new))


def install() -> None:
    if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedModuleFinder())
