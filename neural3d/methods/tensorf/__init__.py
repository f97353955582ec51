"""TensoRF (vector-matrix decomposition, Chen et al. ECCV 2022) as a method: ``method: tensorf``.

Field: :class:`~neural3d.fields.tensorf_field.TensoRFField`; samplers: occupancy marching by default (any of the
library's); schedule of upsamplings and box shrinking: :mod:`neural3d.methods.tensorf.model`.
"""
