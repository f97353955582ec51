"""Scene representations (fields) and their building blocks."""

from neural3d.fields.base import Field, FieldOutputs
from neural3d.fields.contraction import SceneBox, contract, normalize_positions
from neural3d.fields.encodings import PositionalEncoding, SHEncoding, spherical_harmonics
from neural3d.fields.hashgrid import GridLayout, HashGridEncoding, grid_indices, grid_layout, hash_encode
from neural3d.fields.mlp import MLP
from neural3d.fields.nerf_field import NeRFField
from neural3d.fields.ngp_field import NGPField, trunc_exp
from neural3d.fields.tensorf_field import TensoRFField
from neural3d.fields.vm_decomposition import VMDecomposition

__all__ = [
    "MLP",
    "Field",
    "FieldOutputs",
    "GridLayout",
    "HashGridEncoding",
    "NGPField",
    "NeRFField",
    "PositionalEncoding",
    "SHEncoding",
    "SceneBox",
    "TensoRFField",
    "VMDecomposition",
    "contract",
    "grid_indices",
    "grid_layout",
    "hash_encode",
    "normalize_positions",
    "spherical_harmonics",
    "trunc_exp",
]
