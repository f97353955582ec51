"""Point-cloud-conditioned field (``method: point_field``): Simple3D-Former features of the scene's points,
k-NN gathered per query (``field``), the scene's points in the ray frame (``scene_points``), the method (``model``)."""
