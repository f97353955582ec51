"""neural3d: neural rendering and 3D scenes in PyTorch."""

__version__ = "0.1.0"

from neural3d import _compat
from neural3d.api import LoadedScene, load

_compat.install()

__all__ = ["LoadedScene", "__version__", "load"]
