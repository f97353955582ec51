"""Method registry: a method name maps to (config dataclass, model class).

Register a method with the :func:`register_method` decorator on its model class::

    @register_method("nerf", NeRFModelConfig)
    class NeRFModel(Model): ...

Built-in methods are imported lazily by :func:`get_method`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

# One line per built-in method module (imported on first lookup).
_BUILTIN_MODULES = (
    "neural3d.methods.nerf.model",
    "neural3d.methods.ngp.model",
    "neural3d.methods.tensorf.model",
    "neural3d.methods.gnt.model",
    "neural3d.methods.lvsm.model",
    "neural3d.methods.nid.model",
    "neural3d.methods.point_field.model",
)


@dataclass(frozen=True)
class Method:
    name: str
    config_class: type
    model_class: type


_REGISTRY: dict[str, Method] = {}


def register_method(name: str, config_class: type) -> Callable[[type], type]:
    def deco(cls: type) -> type:
        _REGISTRY[name] = Method(name, config_class, cls)
        return cls

    return deco


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def get_method(name: str) -> Method:
    _load_builtins()
    if name not in _REGISTRY:
        raise ValueError(f"unknown method '{name}'; registered methods: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def available_methods() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)
