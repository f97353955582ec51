"""Neural implicit dictionaries (NID, Wang et al. ICML 2022): a bank of coordinate-network experts with
sparse signed top-k gating, trained on a collection of signals; new signals are fitted by solving
their codes with the dictionary frozen.

Modules: ``encodings`` (Fourier / PE / identity), ``experts`` (the shared-trunk bank, SIREN option),
``gating`` (top-k, noisy top-k, conv and codebook gates), ``combine`` (vectorised mixing), ``losses``
(reconstruction, cv^2 balancing, L1 warm-up), ``dictionary`` (the model), ``patches``, ``data``
(image collections), ``prior`` (Gaussian code prior, MAP solve), ``fit`` (least squares / MAP and
gradient code solves), ``workflows`` (image fits, masks, corruptions), ``train`` (dictionary training),
``config`` (structured configs). The dictionary and the 3D method live in :mod:`neural3d.methods.nid`.
"""

from neural3d.apps.image_dictionary.fit import CodeFit, dense_ridge, fit_gradient, fit_lstsq, lstsq_on_support
from neural3d.apps.image_dictionary.patches import cut_patches, fold_patches, patch_coords
from neural3d.apps.image_dictionary.prior import CodePrior, code_prior_from_codes, map_solve
from neural3d.apps.image_dictionary.train import TrainedDictionary, load_dictionary, train_dictionary
from neural3d.apps.image_dictionary.workflows import ImageFit, corrupt_image, fit_image, random_pixel_mask
from neural3d.methods.nid.dictionary import DictOutput, NeuralImplicitDictionary
from neural3d.methods.nid.experts import CoordinateMLP, ExpertBank
from neural3d.methods.nid.gating import Gates, noisy_topk_signed, topk_signed
from neural3d.methods.nid.losses import cv_squared, l1_sparsity, recon_loss, usage_stats

__all__ = [
    "CodeFit",
    "CodePrior",
    "CoordinateMLP",
    "DictOutput",
    "ExpertBank",
    "Gates",
    "ImageFit",
    "NeuralImplicitDictionary",
    "TrainedDictionary",
    "code_prior_from_codes",
    "corrupt_image",
    "cut_patches",
    "cv_squared",
    "dense_ridge",
    "fit_gradient",
    "fit_image",
    "fit_lstsq",
    "fold_patches",
    "l1_sparsity",
    "load_dictionary",
    "lstsq_on_support",
    "map_solve",
    "noisy_topk_signed",
    "patch_coords",
    "random_pixel_mask",
    "recon_loss",
    "topk_signed",
    "train_dictionary",
    "usage_stats",
]
