"""Methods (sampler + field + renderer + losses) and their registry."""

from neural3d.methods.base import Model, ModelOutputs, SceneInfo
from neural3d.methods.registry import available_methods, get_method, register_method

__all__ = ["Model", "ModelOutputs", "SceneInfo", "available_methods", "get_method", "register_method"]
