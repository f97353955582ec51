"""Proposal-network sampling (mip-NeRF 360; nerfacc ``PropNetEstimator``, nerfstudio ``ProposalNetworkSampler``).

Small density fields (hash grid + tiny MLP, :class:`ProposalDensityField`) are evaluated on a first set of
stratified intervals; their compositing weights define a piecewise-constant PDF along each ray, from which the
next round's intervals are drawn (inverse CDF, :func:`~neural3d.samplers.pdf.sample_pdf`), and so on; the last
round's weights give the intervals of the main (NeRF) field. The proposal fields learn only from the
interlevel loss (:func:`neural3d.losses.interlevel_loss`), which asks their weights to bound the NeRF weights.

All resampling happens in the normalised spacing ``s`` in [0, 1] of a spacing function ``g``
(``uniform``, ``lindisp``, ``contracted``: :mod:`neural3d.samplers.spacing`).

Layout: batched ``[n_rays, n_samples]`` :class:`~neural3d.core.samples.RaySamples` (contiguous intervals).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from neural3d.core.rays import RayBundle
from neural3d.core.samples import RaySamples
from neural3d.fields.contraction import CONTRACTIONS, SceneBox, normalize_positions
from neural3d.fields.hashgrid import HashGridEncoding
from neural3d.fields.mlp import MLP
from neural3d.fields.ngp_field import trunc_exp
from neural3d.losses import interlevel_loss
from neural3d.render.volume import render_weights_from_density
from neural3d.samplers.base import DensityFn, Sampler, WeightedSamples
from neural3d.samplers.pdf import sample_pdf
from neural3d.samplers.spacing import SPACINGS, spacing_to_t, stratified_spacing, t_to_spacing

__all__ = ["ProposalDensityField", "ProposalRound", "ProposalSampler", "anneal_power", "spacing_to_t", "t_to_spacing"]


@dataclass
class ProposalRound:
    """One proposal round of a batch of rays.

    Attributes:
        spacing: [n_rays, k + 1] interval edges in normalised spacing ``s``.
        edges: [n_rays, k + 1] the same edges in ``t``.
        weights: [n_rays, k] compositing weights of the proposal density on these intervals (with gradients
            into the proposal field on update steps).
    """

    spacing: Tensor
    edges: Tensor
    weights: Tensor


def anneal_power(step: int, *, anneal_steps: int, slope: float) -> float:
    """nerfstudio's weight-anneal exponent: ``b x / ((b - 1) x + 1)`` with ``x = min(step / anneal_steps, 1)``.

    0 at step 0 (uniform resampling), 1 after ``anneal_steps``; ``anneal_steps <= 0`` disables annealing (1).
    """
    if anneal_steps <= 0:
        return 1.0
    x = min(max(step / anneal_steps, 0.0), 1.0)
    return slope * x / ((slope - 1.0) * x + 1.0)


class ProposalDensityField(nn.Module):
    """Small density-only hash-grid field (nerfacc ``NGPDensityField``, nerfstudio ``HashMLPDensityField``).

    positions -> unit cube (box or contraction) -> hash grid -> MLP -> ``trunc_exp(raw + density_bias)``,
    zero outside the box for ``contraction="aabb"``.

    Shapes: ``[*batch, 3] -> [*batch, 1]``.
    """

    def __init__(
        self,
        *,
        aabb,
        contraction: str = "aabb",
        n_levels: int = 5,
        n_features_per_level: int = 2,
        log2_hashmap_size: int = 17,
        base_resolution: int = 16,
        max_resolution: float = 128,
        hidden_dim: int = 16,
        n_hidden_layers: int = 1,
        density_bias: float = -1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        aabb = torch.as_tensor(aabb.aabb if isinstance(aabb, SceneBox) else aabb, dtype=torch.float32)
        if aabb.shape != (2, 3) or not bool((aabb[1] > aabb[0]).all()):
            raise ValueError(f"proposal.py: aabb must be [2, 3] with max > min, got {aabb.tolist()}")
        if contraction not in CONTRACTIONS:
            raise ValueError(f"proposal.py: contraction must be one of {CONTRACTIONS}, got {contraction!r}")
        self.register_buffer("aabb", aabb)
        self.contraction = contraction
        self.density_bias = density_bias
        self.encoding = HashGridEncoding(
            n_levels=n_levels,
            n_features_per_level=n_features_per_level,
            log2_hashmap_size=log2_hashmap_size,
            base_resolution=base_resolution,
            max_resolution=max(max_resolution, base_resolution),
            backend=backend,
        )
        self.mlp = MLP(in_dim=self.encoding.out_dim, out_dim=1, widths=[hidden_dim] * n_hidden_layers)

    def forward(self, positions: Tensor) -> Tensor:
        """[*batch, 3] world positions -> [*batch, 1] density >= 0."""
        x = normalize_positions(positions, self.aabb, self.contraction)
        raw = self.mlp(self.encoding(x))
        density = trunc_exp(raw + self.density_bias)
        if self.contraction == "aabb":
            density = density * ((x > 0.0) & (x < 1.0)).all(dim=-1, keepdim=True)
        return density

    def density(self, positions: Tensor) -> Tensor:
        """Alias of :meth:`forward` (the :class:`~neural3d.fields.base.Field` density interface)."""
        return self(positions)


class ProposalSampler(Sampler):
    """Rays -> NeRF samples via rounds of proposal density fields and PDF resampling.

    Args:
        aabb: [2, 3] scene box (or :class:`SceneBox`) of the proposal fields.
        n_samples: intervals per ray returned for the main field.
        n_proposal_samples: intervals per ray of each proposal round (its length = number of rounds).
        spacing: "uniform" | "lindisp" | "contracted" (see module docstring).
        spacing_pivot: ``p`` of the contracted spacing, in units of ``t``.
        contraction: contraction of the proposal fields ("aabb", "inf", "l2").
        proposal_max_resolutions: finest hash-grid resolution of each round's field.
        proposal_n_levels, proposal_log2_hashmap_size, proposal_hidden_dim: proposal field settings.
        histogram_padding: added to the (annealed) weights before resampling (nerfstudio: 0.01).
        anneal_steps, anneal_slope: weight annealing ``w ** anneal_power(step)`` (nerfstudio 1000, 10).
        update_every, update_warmup: proposal fields get gradients every step at first, then on every
            ``update_every``-th step once ``update_warmup`` steps passed (nerfstudio 5, 5000; 1 = always).
        backend: hash-grid backend of the proposal fields ("auto" | "torch" | "tcnn" | "triton").
        interlevel_loss_mult: weight of the interlevel loss in :meth:`loss_dict`.

    Call: ``samples, rounds = sampler(rays)`` with ``samples`` [n_rays, n_samples] and one
    :class:`ProposalRound` per proposal round. Jittered in ``train()``, deterministic in ``eval()``.
    Protocol (:mod:`neural3d.samplers.base`): ``step_begin(step)`` sets the schedule; ``sample(rays)`` returns
    the samples and, in training, keeps the rounds for ``loss_dict(samples, weights)`` (the interlevel loss
    on steps that train the proposals), as nerfacc's ``PropNetEstimator`` keeps its ``prop_cache``.
    """

    def __init__(
        self,
        *,
        aabb,
        n_samples: int = 32,
        n_proposal_samples: Sequence[int] = (64, 32),
        spacing: str = "uniform",
        spacing_pivot: float = 1.0,
        contraction: str = "aabb",
        proposal_max_resolutions: Sequence[float] = (128, 256),
        proposal_n_levels: int = 5,
        proposal_log2_hashmap_size: int = 17,
        proposal_hidden_dim: int = 16,
        histogram_padding: float = 0.01,
        anneal_steps: int = 1000,
        anneal_slope: float = 10.0,
        update_every: int = 5,
        update_warmup: int = 5000,
        backend: str = "auto",
        interlevel_loss_mult: float = 1.0,
    ) -> None:
        super().__init__()
        n_proposal_samples = [int(k) for k in n_proposal_samples]
        if n_samples < 1 or not n_proposal_samples or min(n_proposal_samples) < 1:
            raise ValueError(
                f"proposal.py: need n_samples >= 1 and at least one proposal round of >= 1 samples, "
                f"got n_samples={n_samples}, n_proposal_samples={n_proposal_samples}"
            )
        if len(proposal_max_resolutions) < len(n_proposal_samples):
            raise ValueError(
                f"proposal.py: proposal_max_resolutions needs one entry per round "
                f"({len(n_proposal_samples)}), got {list(proposal_max_resolutions)}"
            )
        if spacing not in SPACINGS:
            raise ValueError(f"proposal.py: spacing must be one of {SPACINGS}, got {spacing!r}")
        if histogram_padding < 0 or update_every < 1:
            raise ValueError("proposal.py: histogram_padding must be >= 0 and update_every >= 1")
        self.n_samples = int(n_samples)
        self.n_proposal_samples = n_proposal_samples
        self.spacing_kind, self.spacing_pivot = spacing, float(spacing_pivot)
        self.histogram_padding = float(histogram_padding)
        self.anneal_steps, self.anneal_slope = int(anneal_steps), float(anneal_slope)
        self.update_every, self.update_warmup = int(update_every), int(update_warmup)
        self.fields = nn.ModuleList(
            ProposalDensityField(
                aabb=aabb,
                contraction=contraction,
                n_levels=proposal_n_levels,
                log2_hashmap_size=proposal_log2_hashmap_size,
                max_resolution=res,
                hidden_dim=proposal_hidden_dim,
                backend=backend,
            )
            for res in list(proposal_max_resolutions)[: len(n_proposal_samples)]
        )
        self.anneal = anneal_power(0, anneal_steps=self.anneal_steps, slope=self.anneal_slope)
        self.update_proposals = True
        self.interlevel_loss_mult = float(interlevel_loss_mult)
        self._rounds: list[ProposalRound] | None = None  # the last training call's rounds (for loss_dict)

    # -- schedule --------------------------------------------------------------------------------------
    def training_step_begin(self, step: int) -> None:
        """Set the anneal exponent and whether this step trains the proposal fields (call once per step)."""
        self.anneal = anneal_power(step, anneal_steps=self.anneal_steps, slope=self.anneal_slope)
        self.update_proposals = step < self.update_warmup or step % self.update_every == 0

    def step_begin(self, step: int, field=None) -> None:
        self.training_step_begin(step)

    def encoding_parameters(self) -> list:
        """The proposal hash-grid tables (for the optimiser group without weight decay)."""
        return [p for f in self.fields for p in f.encoding.parameters()]

    # -- spacing ---------------------------------------------------------------------------------------
    def to_t(self, s: Tensor, rays: RayBundle) -> Tensor:
        """[n_rays, k] normalised spacing -> [n_rays, k] ``t``."""
        return spacing_to_t(s, rays.nears, rays.fars, self.spacing_kind, self.spacing_pivot)

    def spacing(self, samples: RaySamples) -> Tensor:
        """[n_rays, n_samples + 1] normalised spacing of contiguous samples' edges (for the distortion loss)."""
        return t_to_spacing(samples.edges, samples.rays.nears, samples.rays.fars, self.spacing_kind, self.spacing_pivot)

    def spacing_edges(self, samples: RaySamples) -> Tensor:
        return self.spacing(samples)

    def resample(self, spacing: Tensor, weights: Tensor, n_intervals: int) -> Tensor:
        """[n_rays, k + 1] edges in ``s``, [n_rays, k] weights -> [n_rays, n_intervals + 1] new sorted edges.

        Edges are drawn from the PDF proportional to ``weights ** anneal + histogram_padding`` (no gradient);
        a ray whose weights are all zero samples uniformly (the padding never drops below 1e-12).
        """
        w = weights.detach().clamp_min(0.0) ** self.anneal
        return sample_pdf(spacing, w, n_intervals + 1, jitter=self.training, padding=max(self.histogram_padding, 1e-12))

    # -- sampling --------------------------------------------------------------------------------------
    def forward(
        self, rays: RayBundle, density_fns: Sequence[Callable[[Tensor], Tensor]] | None = None
    ) -> tuple[RaySamples, list]:
        """[n_rays] rays -> ([n_rays, n_samples] RaySamples, [ProposalRound] * n_rounds).

        ``density_fns`` (one ``[*batch, 3] -> [*batch, 1]`` callable per round) replaces the own fields.
        """
        fns = list(self.fields) if density_fns is None else list(density_fns)
        if len(fns) != len(self.n_proposal_samples):
            raise ValueError(f"proposal.py: need {len(self.n_proposal_samples)} density functions, got {len(fns)}")
        if self.spacing_kind == "lindisp" and bool((rays.nears <= 0).any()):
            raise ValueError("proposal.py: spacing 'lindisp' needs rays with near > 0")
        n_rays = len(rays)
        grad = torch.is_grad_enabled() and self.training and self.update_proposals
        rounds: list[ProposalRound] = []
        s = None
        for i, (fn, k) in enumerate(zip(fns, self.n_proposal_samples)):
            if i == 0:
                s = stratified_spacing(n_rays, k, jitter=self.training, device=rays.device)
            else:
                s = self.resample(s, rounds[-1].weights, k)
            t = self.to_t(s, rays)
            intervals = RaySamples.from_edges(rays, t)
            with torch.set_grad_enabled(grad):
                density = fn(intervals.positions)[..., 0]
                weights = render_weights_from_density(density, intervals.distances)
            rounds.append(ProposalRound(spacing=s, edges=t, weights=weights))
        s = self.resample(s, rounds[-1].weights, self.n_samples)
        return RaySamples.from_edges(rays, self.to_t(s, rays)), rounds

    def sample(
        self, rays: RayBundle, *, density_fn: DensityFn | None = None, prior: WeightedSamples | None = None
    ) -> RaySamples:
        """[n_rays] rays -> [n_rays, n_samples] samples for the main field (own proposal fields)."""
        samples, rounds = self(rays)
        self._rounds = rounds if self.training else None
        return samples

    def loss_dict(self, samples: RaySamples, weights: Tensor) -> dict[str, Tensor]:
        """``{"loss_interlevel"}`` when the last :meth:`sample` trained the proposals (else empty).

        Args:
            samples: [n_rays, n_samples] the samples :meth:`sample` returned.
            weights: [n_rays, n_samples] the main field's compositing weights on them.
        """
        rounds = self._rounds
        if not self.training or not rounds or not rounds[0].weights.requires_grad:
            return {}
        return {"loss_interlevel": self.interlevel_loss_mult * interlevel_loss(rounds, samples.edges, weights)}
