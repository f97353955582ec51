"""Fitting whole images with a frozen dictionary: patches -> codes -> folded image; masks and corruptions.

* :func:`fit_image`: cut an image into (optionally overlapping) patches, choose each patch's support
  (amortised encoder, a dense ridge solve or a MAP solve under the code prior), solve the codes
  (closed-form least squares / MAP, or gradient steps), fold back (averaging overlaps). The prior
  weight can be chosen by validation on held-out observed pixels (:func:`choose_prior_weight`).
* :func:`random_pixel_mask`: observe a random fraction of the pixels (sparse-data fits).
* :func:`corrupt_image`: masked stripes or salt-and-pepper noise for inpainting / occlusion removal
  (the fit does not know where; it uses the robust L1 loss).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from neural3d.apps.image_dictionary.fit import CodeFit, fit_gradient, fit_lstsq
from neural3d.apps.image_dictionary.patches import cut_patches_strided, flatten_patches, fold_patches_mean, patch_coords
from neural3d.apps.image_dictionary.prior import CodePrior
from neural3d.methods.nid.dictionary import NeuralImplicitDictionary

FIT_METHODS = ("lstsq", "gradient")
SUPPORTS = ("topk", "all")
PRIOR_WEIGHT_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
CORRUPTIONS = ("none", "stripes", "saltpepper")


@dataclass
class ImageFit:
    """image [H, W, C] reconstruction, the per-patch :class:`~neural3d.apps.image_dictionary.fit.CodeFit`, and fit
    seconds.

    ``snapshots``: [(step, image [H, W, C])] along a fine-tune (:func:`finetune_image`), else empty;
    ``prior_weight``: the code-prior weight used (given or chosen by validation), None without a prior.
    """

    image: Tensor
    codes: CodeFit
    seconds: float
    snapshots: list = field(default_factory=list)
    prior_weight: float | None = None


def random_pixel_mask(height: int, width: int, fraction: float, seed: int = 0, device=None) -> Tensor:
    """[height, width] bool mask with ``round(fraction * H * W)`` (at least 1) observed pixels."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"nid/workflows.py: observed fraction must be in (0, 1], got {fraction}")
    n = height * width
    gen = torch.Generator().manual_seed(int(seed))
    keep = torch.randperm(n, generator=gen)[: max(1, round(fraction * n))]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[keep] = True
    return mask.reshape(height, width).to(device)


def corrupt_image(image: Tensor, kind: str, amount: float = 0.1, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Corrupt an image.

    Args:
        image: [H, W, C] in [0, 1].
        kind: ``stripes`` (horizontal black bars covering ``amount`` of the rows, 2 px wide, evenly spread),
            ``saltpepper`` (a fraction ``amount`` of the pixels set to 0 or 1 at random) or ``none``.
    Returns:
        corrupted [H, W, C] and hidden [H, W] bool (True where the clean value is hidden).
    """
    if kind not in CORRUPTIONS:
        raise ValueError(f"nid/workflows.py: corruption must be one of {CORRUPTIONS}, got {kind!r}")
    H, W, _ = image.shape
    hidden = torch.zeros(H, W, dtype=torch.bool, device=image.device)
    out = image.clone()
    if kind == "stripes":
        n_bars = max(1, round(amount * H / 2))
        starts = torch.linspace(0, H - 2, n_bars + 2)[1:-1].round().long() if n_bars > 0 else torch.zeros(0)
        rows = torch.cat([starts, starts + 1]).clamp(max=H - 1).to(image.device)
        hidden[rows] = True
        out[hidden] = 0.0
    elif kind == "saltpepper":
        gen = torch.Generator().manual_seed(int(seed))
        hidden = (torch.rand(H, W, generator=gen) < amount).to(image.device)
        salt = (torch.rand(H, W, generator=gen) < 0.5).to(image.device)
        out[hidden] = salt[hidden].to(image.dtype)[:, None].expand(-1, image.shape[-1])
    return out, hidden


@torch.no_grad()
def encoder_logits(model: NeuralImplicitDictionary, patches: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """Amortised gate outputs of [n, p, p, C] patches -> (logits [n, E], bias [n, D])."""
    if model.gate_type != "conv":
        raise ValueError("nid/workflows.py: init='encoder' needs a dictionary with a conv (amortised) gate")
    raws = [model.gate(patches[i : i + chunk], None)[0] for i in range(0, patches.shape[0], chunk)]
    return model.split_raw(torch.cat(raws, 0))


def fit_image(
    model: NeuralImplicitDictionary,
    image: Tensor,
    *,
    patch: int,
    mask: Tensor | None = None,
    method: str = "lstsq",
    init: str = "auto",
    loss: str = "mse",
    k: int | None = None,
    steps: int = 300,
    lr: float = 1e-2,
    lam: float = 1e-4,
    lam_dense: float = 1e-2,
    fit_bias: bool = True,
    target_psnr: float | None = None,
    prior: CodePrior | None = None,
    prior_weight: float | None = None,
    stride: int | None = None,
    support: str = "topk",
    progress: bool = False,
) -> ImageFit:
    """Represent an unseen image with the frozen dictionary.

    Args:
        model: trained dictionary (its bank is not modified).
        image: [H, W, C] observed (possibly corrupted) image.
        patch: patch size the dictionary was trained on.
        mask: [H, W] observed pixels (None: all).
        method: ``lstsq`` (closed form on the support) or ``gradient`` (Adam on the codes).
        init: ``encoder`` (amortised gate on the masked image), ``ridge`` (dense ridge / MAP solve) or ``auto``
            (encoder for conv gates with every pixel observed and MSE, else ridge).
        loss: ``mse`` or ``l1`` (robust).
        k: experts per patch (default: the dictionary's top-k); ``support="all"`` keeps every expert.
        target_psnr: gradient fits stop once the training PSNR (on observed pixels) reaches it.
        prior: Gaussian code prior (``lstsq``): MAP solves with weight ``prior_weight`` (None: chosen by
            validation on held-out observed pixels, :func:`choose_prior_weight`).
        stride: patch stride (default ``patch``: disjoint patches); smaller strides fit overlapping
            patches and average them when folding back.
        progress: a progress bar over the gradient steps (``method="gradient"``).
    Returns:
        :class:`ImageFit`.
    """
    if method not in FIT_METHODS:
        raise ValueError(f"nid/workflows.py: method must be one of {FIT_METHODS}, got {method!r}")
    if init not in ("auto", "encoder", "ridge"):
        raise ValueError(f"nid/workflows.py: init must be auto | encoder | ridge, got {init!r}")
    if support not in SUPPORTS:
        raise ValueError(f"nid/workflows.py: support must be one of {SUPPORTS}, got {support!r}")
    t0 = time.perf_counter()  # seconds include the prior-weight validation
    if prior is not None and prior_weight is None and method == "lstsq":
        prior_weight = choose_prior_weight(
            model, image, patch=patch, mask=mask, prior=prior, loss=loss, k=k, stride=stride, support=support
        )
    H, W, C = image.shape
    stride = stride or patch
    k = model.num_experts if support == "all" else (k or model.topk)
    with torch.no_grad():
        expert_out = model.bank(patch_coords(patch, image.device))  # [P, E, D]
    observed = image if mask is None else image * mask[..., None].to(image.dtype)
    patches = cut_patches_strided(observed[None], patch, stride)
    targets = flatten_patches(patches)
    pmask = None
    if mask is not None:
        pmask = flatten_patches(cut_patches_strided(mask[None, ..., None].to(image.dtype), patch, stride))[..., 0]
    if init == "auto":
        init = "encoder" if model.gate_type == "conv" and mask is None and loss == "mse" else "ridge"
    logits = bias = indices = None
    if init == "encoder":
        logits, bias = encoder_logits(model, patches)
        indices = None if k >= model.num_experts else logits.abs().topk(k, dim=-1).indices
    if method == "lstsq":
        codes = fit_lstsq(
            expert_out,
            targets,
            k,
            mask=pmask,
            indices=indices,
            loss=loss,
            lam=lam,
            lam_dense=lam_dense,
            fit_bias=fit_bias,
            prior=prior,
            prior_weight=prior_weight or 0.0,
        )
    else:
        if logits is None:
            from neural3d.apps.image_dictionary.fit import dense_ridge

            logits, bias = dense_ridge(expert_out, targets, mask=pmask, lam=lam_dense)
        target_loss = 0.0 if target_psnr is None or loss != "mse" else 10 ** (-target_psnr / 10)
        codes = fit_gradient(
            expert_out,
            targets,
            k,
            mask=pmask,
            init_logits=logits,
            init_bias=bias,
            steps=steps,
            lr=lr,
            loss=loss,
            fit_bias=fit_bias,
            target_loss=target_loss,
            progress=progress,
        )
    recon = fold_patches_mean(codes.preds.reshape(-1, patch, patch, C), H, W, stride)[0].clamp(0.0, 1.0)
    return ImageFit(
        image=recon,
        codes=codes,
        seconds=time.perf_counter() - t0,
        prior_weight=prior_weight if prior is not None and method == "lstsq" else None,
    )


def choose_prior_weight(
    model: NeuralImplicitDictionary,
    image: Tensor,
    *,
    patch: int,
    prior: CodePrior,
    mask: Tensor | None = None,
    loss: str = "mse",
    k: int | None = None,
    stride: int | None = None,
    support: str = "topk",
    holdout: float = 0.2,
    grid=PRIOR_WEIGHT_GRID,
    seed: int = 0,
) -> float:
    """Prior weight with the lowest error on a random ``holdout`` fraction of the observed pixels.

    Each weight of ``grid`` is fitted on the other observed pixels; the error is the mean squared (``mse``)
    or absolute (``l1``, robust to corrupted pixels) difference on the held-out ones.

    Args:
        image: [H, W, C]; mask: [H, W] observed pixels (None: all).
    """
    fit_mask, held = holdout_split(image, mask, holdout, seed)
    if not bool(held.any()) or not bool(fit_mask.any()):
        return float(grid[len(grid) // 2])
    errors = []
    for weight in grid:
        fit = fit_image(
            model,
            image,
            patch=patch,
            mask=fit_mask,
            loss=loss,
            k=k,
            prior=prior,
            prior_weight=float(weight),
            stride=stride,
            support=support,
            init="ridge",
        )
        diff = (fit.image - image)[held]
        errors.append(float((diff**2).mean() if loss == "mse" else diff.abs().mean()))
    return float(grid[min(range(len(grid)), key=errors.__getitem__)])


def finetune_image(
    model: NeuralImplicitDictionary,
    fit: ImageFit,
    image: Tensor,
    *,
    patch: int,
    mask: Tensor | None = None,
    steps: int = 100,
    lr: float = 1e-3,
    code_lr: float = 1e-2,
    loss: str = "mse",
    stride: int | None = None,
    snapshot_every: int = 0,
    progress: bool = False,
) -> ImageFit:
    """Continue a code fit by fine-tuning a *copy* of the bank together with the codes on the support.

    The support stays fixed (``fit.codes.indices``); the dictionary passed in is not modified. Each step
    evaluates the bank only at the p*p shared patch coordinates, so steps are cheap.

    Args:
        fit: result of :func:`fit_image` on the same ``image`` / ``mask``.
        image: [H, W, C] observed image; mask: [H, W] observed pixels; stride: as in the fit.
        snapshot_every: also keep the folded image every this many steps (and at step 0) in
            ``ImageFit.snapshots`` as ``(step, [H, W, C])`` (0: none).
        progress: a progress bar over the steps (:mod:`neural3d.progress`).
    """
    import copy

    from neural3d.apps.image_dictionary.fit import mix_support
    from neural3d.methods.nid.losses import recon_loss
    from neural3d.progress import ProgressBar

    H, W, C = image.shape
    t0 = time.perf_counter()
    bank = copy.deepcopy(model.bank)
    for p in bank.parameters():
        p.requires_grad_(True)
    observed = image if mask is None else image * mask[..., None].to(image.dtype)
    stride = stride or patch
    targets = flatten_patches(cut_patches_strided(observed[None], patch, stride))
    pmask = None
    if mask is not None:
        pmask = flatten_patches(cut_patches_strided(mask[None, ..., None].to(image.dtype), patch, stride))[..., 0]
    coords = patch_coords(patch, image.device)
    values = fit.codes.values.detach().clone().requires_grad_(True)
    bias = fit.codes.bias.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([{"params": list(bank.parameters()), "lr": lr}, {"params": [values, bias], "lr": code_lr}])
    history, snapshots = [], []

    def fold(preds: Tensor) -> Tensor:
        return fold_patches_mean(preds.detach().reshape(-1, patch, patch, C), H, W, stride)[0].clamp(0.0, 1.0)

    bar = ProgressBar(steps, "finetune", unit="step", enabled=progress)
    for step in range(steps + 1):
        preds = mix_support(bank(coords), fit.codes.indices, values, bias)
        if snapshot_every and step % snapshot_every == 0:
            snapshots.append((step, fold(preds)))
        if step == steps:
            break
        value = recon_loss(preds, targets, loss, pmask)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()
        history.append(float(value.detach()))
        bar.update(1)
    bar.close()
    codes = CodeFit(
        indices=fit.codes.indices, values=values.detach(), bias=bias.detach(), preds=preds.detach(), history=history
    )
    return ImageFit(
        image=fold(preds),
        codes=codes,
        seconds=fit.seconds + time.perf_counter() - t0,
        snapshots=snapshots,
        prior_weight=fit.prior_weight,
    )


def holdout_split(image: Tensor, mask: Tensor | None, holdout: float = 0.2, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split the observed pixels ([H, W] ``mask``, None: all) into (fit [H, W], held-out [H, W]) bool masks."""
    H, W = image.shape[:2]
    observed = torch.ones(H, W, dtype=torch.bool, device=image.device) if mask is None else mask.bool()
    gen = torch.Generator().manual_seed(int(seed))
    held = observed & (torch.rand(H, W, generator=gen) < holdout).to(image.device)
    return observed & ~held, held


def choose_finetune_steps(
    model: NeuralImplicitDictionary,
    image: Tensor,
    *,
    patch: int,
    max_steps: int,
    mask: Tensor | None = None,
    every: int = 25,
    holdout: float = 0.2,
    seed: int = 0,
    loss: str = "mse",
    lr: float = 1e-3,
    code_lr: float = 1e-2,
    **fit_kwargs,
) -> int:
    """Fine-tune length in {0, every, 2 every, ..., max_steps} with the lowest error on held-out observed pixels.

    The codes are fitted (``fit_image(**fit_kwargs)``) and fine-tuned on the other observed pixels; the
    result is a step count for :func:`finetune_image` on all of them. No pixel outside ``mask`` is used.
    """
    fit_mask, held = holdout_split(image, mask, holdout, seed)
    if max_steps <= 0 or not bool(held.any()) or not bool(fit_mask.any()):
        return 0
    fit = fit_image(model, image, patch=patch, mask=fit_mask, loss=loss, **fit_kwargs)
    tuned = finetune_image(
        model,
        fit,
        image,
        patch=patch,
        mask=fit_mask,
        steps=max_steps,
        lr=lr,
        code_lr=code_lr,
        loss=loss,
        stride=fit_kwargs.get("stride"),
        snapshot_every=every,
    )
    errors = {}
    for step, recon in tuned.snapshots:
        diff = (recon - image)[held]
        errors[step] = float((diff**2).mean() if loss == "mse" else diff.abs().mean())
    return min(errors, key=errors.get)
