"""Applications on top of the rendering core: 2D image dictionaries (NID) and point-cloud classification."""
