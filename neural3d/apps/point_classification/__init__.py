"""Point-cloud classification and part segmentation with the Simple3D-Former encoder (:mod:`neural3d.pointcloud`):
datasets, augmentation, 2D-teacher distillation, metrics, config and training (``neural3d pointcloud``)."""
