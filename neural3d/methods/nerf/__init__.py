"""Vanilla NeRF (``method: nerf``): coarse + fine MLPs with hierarchical sampling."""
