"""neural3d: neural rendering and 3D scenes in PyTorch."""
__version__ = "0.1.0"

from neural3d.api import LoadedScene, load

__all__ = ["LoadedScene", "__version__", "load"]
