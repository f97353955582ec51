"""A Gaussian prior on the codes of a dictionary, and the closed-form MAP (posterior-mean) code solve.

The training codes of a dictionary (codebook gate: its learned codes; conv gate: the encoder outputs on
the training patches), sparsified by the dictionary's signed top-k and stacked with their biases, are
samples ``z = [c (E), b (D)]`` of plausible codes. Their mean ``mu`` and covariance ``Sigma`` define the
prior ``z ~ N(mu, Sigma)``; a new signal observed through rows ``A`` (values ``y``, weights ``w``) then
gets the MAP code

    min_z  sum_r w_r (A_r z - y_r)^2 + lam (z - mu)^T Sigma^{-1} (z - mu)
    => (A^T W A + lam Sigma^{-1}) z = A^T W y + lam Sigma^{-1} mu,

solved batched in float64. With few observations (a 16x16 patch has ~5 observed pixels at 2 %) the
plain least-squares problem is underdetermined; the prior fills the unobserved directions with what the
training codes did there instead of zeros. ``lam`` plays the role of the noise variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def spd_solve(G: Tensor, rhs: Tensor) -> Tensor:
    """Solve ``G x = rhs`` for symmetric positive-definite ``G`` [*, M, M], ``rhs`` [*, M, K] by Cholesky.

    Cholesky rather than ``torch.linalg.solve``: besides being the right factorisation for SPD systems,
    the batched LU solve of torch 2.13's CPU build (MKL) fails with more than one thread ("Pivots given to
    lu_solve must all be greater or equal to 1"). A matrix that is not numerically positive definite gets
    a growing diagonal jitter until it factorises.
    """
    L, info = torch.linalg.cholesky_ex(G)
    jitter = 1e-12 * G.diagonal(dim1=-2, dim2=-1).abs().mean().clamp_min(1e-30)
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device)
    while bool((info > 0).any()):
        L, info = torch.linalg.cholesky_ex(G + jitter * eye)
        jitter = jitter * 100
    return torch.cholesky_solve(rhs, L)


def spd_inverse(G: Tensor) -> Tensor:
    """[*, M, M] inverse of a symmetric positive-definite matrix (see :func:`spd_solve`)."""
    eye = torch.eye(G.shape[-1], dtype=G.dtype, device=G.device).expand_as(G)
    return spd_solve(G, eye.contiguous())


@dataclass
class CodePrior:
    """Gaussian code prior: mean [E + D] and covariance [E + D, E + D] (float64), coefficients then biases."""

    mean: Tensor
    cov: Tensor

    def __post_init__(self):
        n = self.mean.shape[-1]
        if self.mean.ndim != 1 or self.cov.shape != (n, n):
            raise ValueError(
                f"nid/prior.py: prior mean must be [M] and cov [M, M], got {tuple(self.mean.shape)} "
                f"and {tuple(self.cov.shape)}"
            )

    def precision(self, cols: Tensor | None = None, jitter: float = 1e-4) -> Tensor:
        """Inverse of the (jittered) covariance, or of its marginal on ``cols`` [S, m] -> [S, m, m].

        ``jitter`` * mean variance is added to the diagonal (codes of dead directions have ~0 variance).
        Returns [M, M] when ``cols`` is None.
        """
        cov = self.cov.double()
        cov = cov + jitter * cov.diagonal().mean().clamp_min(1e-12) * torch.eye(
            cov.shape[0], dtype=cov.dtype, device=cov.device
        )
        if cols is None:
            return spd_inverse(cov)
        return spd_inverse(cov[cols[:, :, None], cols[:, None, :]])

    def to_state(self) -> dict:
        return {"mean": self.mean.detach().cpu(), "cov": self.cov.detach().cpu()}

    @classmethod
    def from_state(cls, state: dict, device=None) -> CodePrior:
        return cls(mean=state["mean"].double().to(device), cov=state["cov"].double().to(device))


def code_prior_from_codes(logits: Tensor, bias: Tensor, topk: int) -> CodePrior:
    """Prior from training codes: signed top-k of ``logits`` [N, E] (as the dictionary uses them) and ``bias``
    [N, D]."""
    if logits.ndim != 2 or bias.ndim != 2 or logits.shape[0] != bias.shape[0]:
        raise ValueError(
            f"nid/prior.py: need logits [N, E] and bias [N, D], got {tuple(logits.shape)}, {tuple(bias.shape)}"
        )
    if logits.shape[0] < 2:
        raise ValueError("nid/prior.py: a code prior needs at least 2 training codes")
    from neural3d.methods.nid.gating import topk_signed

    z = torch.cat([topk_signed(logits.double(), topk)[0], bias.double()], 1)  # [N, M]
    return CodePrior(mean=z.mean(0), cov=torch.cov(z.T))


def map_solve(A: Tensor, y: Tensor, w: Tensor | None, lam: float, prec: Tensor, mean: Tensor) -> Tensor:
    """Batched MAP solve ``(A^T W A + lam P) z = A^T W y + lam P mu``.

    Args:
        A: [R, M] shared or [S, R, M] per-signal design rows; y: [S, R]; w: [S, R] row weights or None.
        prec: [M, M] or [S, M, M] prior precision ``P``; mean: [M] or [S, M] prior mean.
        lam: prior weight (> 0).
    Returns:
        [S, M] float64 solutions.
    """
    A, y = A.double(), y.double()
    S = y.shape[0]
    if A.ndim == 2:
        G = torch.einsum("rm,sr,rn->smn", A, w.double(), A) if w is not None else (A.T @ A).expand(S, -1, -1)
        rhs = (y if w is None else w.double() * y) @ A
    else:
        G = torch.einsum("srm,srn->smn", A if w is None else A * w.double()[..., None], A)
        rhs = torch.einsum("srm,sr->sm", A, y if w is None else w.double() * y)
    mean = mean.double().expand(S, -1)
    prec = prec.double()
    G = G + lam * prec
    rhs = rhs + lam * (mean @ prec.T if prec.ndim == 2 else torch.einsum("smn,sn->sm", prec, mean))
    return spd_solve(G, rhs[..., None])[..., 0]
