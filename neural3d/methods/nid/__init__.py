"""Neural implicit dictionaries (NID, Wang et al. ICML 2022): a bank of coordinate-network experts with sparse
signed top-k gating. Here: the dictionary itself (``encodings``, ``experts``, ``gating``, ``combine``, ``losses``,
``dictionary``, ``config``) and the 3D method (``field``, ``model``: ``method: nid``; ``family``: training the
radiance experts across a scene family). The 2D image workflows are in :mod:`neural3d.apps.image_dictionary`."""
