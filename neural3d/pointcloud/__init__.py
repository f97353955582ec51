"""Point-cloud ViT encoders (Simple3D-Former): tokenizers, DeiT-compatible blocks, heads, data, training."""

from neural3d.pointcloud.api import encode
from neural3d.pointcloud.encoder import Encoded, PointViT
from neural3d.pointcloud.ops import farthest_point_sample, interpolate_features, knn
from neural3d.pointcloud.pretrained import LoadReport, load_deit
from neural3d.pointcloud.vit import VIT_SPECS, Block, ViTSpec

__all__ = [
    "VIT_SPECS",
    "Block",
    "Encoded",
    "LoadReport",
    "PointViT",
    "ViTSpec",
    "encode",
    "farthest_point_sample",
    "interpolate_features",
    "knn",
    "load_deit",
]
