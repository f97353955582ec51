"""neural3d: neural rendering and 3D scenes in PyTorch."""
__version__ = "0.1.0"

from neural3d.api import LoadedScene, load  # noqa: E402

__all__ = ["LoadedScene", "load", "__version__"]
