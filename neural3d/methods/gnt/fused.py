"""GNT's network for rendering without gradients: the reference function, regrouped to do less work.

:meth:`GNTNetwork.reference <neural3d.methods.gnt.transformer.GNTNetwork.reference>` follows the official code
line by line (it trains, and it is what checkpoints were made with). :func:`fused_forward` evaluates the same
function in eval mode without gradients (``GNTNetwork.run`` picks it; ``model.fused_inference=false`` keeps the
reference). Products of consecutive linear maps are formed once per set of weights (in float64, rounded once to
the weights' dtype; :class:`FoldedNetwork`), so outputs differ from the reference by float rounding only
(tested to 1e-5 against the reference and a float64 re-implementation of the official code).

**View blocks** (their cost is per sample AND per source view). With the token ``t`` of a view, the block's
``attn_fc = W2 relu(W1 . + b1) + b2`` and ``pos = W2p relu(W1p d + b1p) + b2p`` of the ray-direction
difference ``d``, the reference computes ``k = Wk t``, ``v = Wv k``, ``logits = attn_fc(k - Wq LN(q) + pos)``.
Every per-view quantity it needs is linear in ``t`` and in the pos hidden ``h_p = relu(W1p d + b1p)``:

* ``[v + pos | W1 (k + pos) + b1] = [Wv Wk | W1 Wk] t + [W2p | W1 W2p] h_p + [b2p | W1 b2p + b1]``: 72 outputs
  per view (64 + 8) instead of ``k``, ``v`` and ``pos`` (192) and ``W1 (k - q + pos)`` (8);
* the query enters only as ``(W1 Wq) LN(q)``: 8 numbers per sample (no 64-wide ``q_fc``);
* the pos hiddens of all blocks come from one matmul of ``d`` (they do not depend on the query);
* then, as the reference: ``logits = W2 relu(.) + b2``, invalid views -1e9, softmax over views,
  ``sum_views (v + pos) * softmax``.

**Ray blocks**: one ``[Wq; Wk; Wv]`` matmul and :func:`torch.nn.functional.scaled_dot_product_attention` (the
reference's softmax attention, scale ``1 / sqrt(d_head)``, no mask, no dropout); the weights the network returns
(the last block's attention row of the first sample, mean over heads) are computed from that one row.

**CPU backends** (float32 CPU tensors, no gradients; the CUDA path and float64 keep the PyTorch ops): every product
through :func:`neural3d.fields.backends.cpu_linear.linear` (oneDNN, about 2x MKL's speed on the project's AMD CPUs, the
ReLU or the residual addition fused), and the view attention after the token product (the logits layer, the masked
softmax over views, the weighted sum) by the C kernel :mod:`neural3d.fields.backends.cpu_view_attention`, in blocks
of :data:`ATTEND_ROWS` (sample, view) rows so that each block's product is read back from the L2 cache.

Shapes: ``M = n_rays * n_samples`` sample rows, ``V`` views, ``C`` width, ``H = C // 8``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neural3d.fields.backends import cpu_view_attention
from neural3d.fields.backends.cpu_linear import linear

# The blocks are typed as nn.Module: transformer.py (GNTNetwork, ViewTransformer, RayTransformer, FeedForward)
# imports this module, and this one does not import it back.

MASK_FILL = -1e9  # logit of an invalid view (official value)
EXP_FLOOR = -80.0  # softmax logits below the row maximum by more are taken as 80 below: exp(-80) ~ 1.8e-35, not 0;
# exp of the -1e9 of masked views runs 3-4x slower than exp of normal numbers on CPU (measured), and this changes
# a softmax weight by at most 1.8e-35.


ATTEND_ROWS = 2560
"""(sample, view) rows per block of the view attention on CPU (with 10 views: 256 samples; the block's token
product, 2,560 x 73 floats, is 748 kB, inside a 1 MB L2 cache). Measured on the network alone, one thread,
interleaved, three runs on the loaded machine (ms per call, 1,280 / 2,560 / 5,120 / whole group): 64 samples x
32 rays 77.9 / 70.2 / 68.1 / 70.0 and 86.9 / 84.9 / 77.9 / 86.4; 192 x 10 rays 92.9 / 84.3 / 88.1 / 92.9. Blocks
of 2,560 to 5,120 rows are the fastest, by 5-10 % (about the load's noise)."""


@dataclass
class FoldedViewBlock:
    """One view block's folded maps, as ``F.linear`` weights ``[out, in]`` (``C`` width, ``H = C // 8``).

    Attributes:
        token_w: [C + H + 1, C + H + 1] the view row ``[t | h_p | 1]`` -> ``[v + pos | W1 (k + pos) + b1 | 1]``:
            rows ``[Wv Wk, W2p, b2p]``, ``[W1 Wk, W1 W2p, W1 b2p + b1]`` and ``[0, 0, 1]``.
        query_w: [H, C] normalised query -> ``W1 Wq LN(q)``.
        logit_w: [C, H + 1] ``[W2 | b2]`` (the hidden row carries a trailing 1 for the bias).
        logit_wt: [H, C] ``W2`` transposed (the C kernel's layout).
        logit_b: [C] ``b2``.
    """

    token_w: Tensor
    query_w: Tensor
    logit_w: Tensor
    logit_wt: Tensor
    logit_b: Tensor


@dataclass
class FoldedNetwork:
    """The folded weights of a whole network, and what they were made from.

    Attributes:
        key: the parameters' (storage, version) the fold was made from: a new key means stale weights.
        pos_in_w: [depth * H, 4] ray-direction difference -> every block's pos hidden (before the ReLU).
        pos_in_b: [depth * H].
        views: one :class:`FoldedViewBlock` per view block.
        qkv_w: one [3 C, C] ``[Wq; Wk; Wv]`` per ray block.
        feat_out_w: [C + H + 1, C] the token MLP's last layer, writing view rows ``[t | 0 | 1]``: its weight, then
            zero rows for the pos hidden (filled per block) and the constant 1.
        feat_out_b: [C + H + 1] its bias, then zeros, then 1.
    """

    key: tuple
    pos_in_w: Tensor
    pos_in_b: Tensor
    views: list[FoldedViewBlock]
    qkv_w: list[Tensor]
    feat_out_w: Tensor
    feat_out_b: Tensor


def weights_key(net: nn.Module) -> tuple:
    """Identity of the current weights: storage, dtype and version counter (bumped by every in-place update:
    optimizer steps, ``load_state_dict``) of each parameter."""
    return tuple((p.data_ptr(), p.dtype, p._version) for p in net.parameters())


def fold_view_block(block: nn.Module) -> FoldedViewBlock:
    """The folded maps of one view block (products in float64, rounded once)."""
    attn = block.attn

    def w64(m: torch.nn.Linear) -> Tensor:
        return m.weight.detach().double()

    def b64(m: torch.nn.Linear) -> Tensor:
        return m.bias.detach().double()[:, None]

    wk, fc1, pos2, fc2 = w64(attn.k_fc), attn.attn_fc[0], attn.pos_fc[2], attn.attn_fc[2]
    w1 = w64(fc1)
    width, hidden = wk.shape[0], w1.shape[0]
    ones = torch.zeros(1, width + hidden + 1, dtype=torch.float64, device=wk.device)
    ones[0, -1] = 1.0
    token_w = torch.cat(
        [
            torch.cat([w64(attn.v_fc) @ wk, w64(pos2), b64(pos2)], 1),
            torch.cat([w1 @ wk, w1 @ w64(pos2), w1 @ b64(pos2) + b64(fc1)], 1),
            ones,
        ]
    )
    dtype = attn.k_fc.weight.dtype
    return FoldedViewBlock(
        token_w=token_w.to(dtype),
        query_w=(w1 @ w64(attn.q_fc)).to(dtype),
        logit_w=torch.cat([w64(fc2), b64(fc2)], 1).to(dtype),
        logit_wt=fc2.weight.detach().t().contiguous(),
        logit_b=fc2.bias.detach().clone(),
    )


def fold_network(net: nn.Module) -> FoldedNetwork:
    """All folded weights of ``net`` (see the module docstring)."""
    pos_first = [block.attn.pos_fc[0] for block in net.view_blocks]
    ray_attn = [block.attn for block in net.ray_blocks]
    fc2 = net.feat_fc[2]
    hidden = pos_first[0].weight.shape[0]
    feat_out_w = torch.cat([fc2.weight.detach(), fc2.weight.new_zeros(hidden + 1, fc2.weight.shape[1])])
    feat_out_b = torch.cat([fc2.bias.detach(), fc2.bias.new_zeros(hidden), fc2.bias.new_ones(1)])
    return FoldedNetwork(
        key=weights_key(net),
        pos_in_w=torch.cat([m.weight.detach() for m in pos_first]),
        pos_in_b=torch.cat([m.bias.detach() for m in pos_first]),
        views=[fold_view_block(block) for block in net.view_blocks],
        qkv_w=[torch.cat([a.q_fc.weight, a.k_fc.weight, a.v_fc.weight]).detach() for a in ray_attn],
        feat_out_w=feat_out_w,
        feat_out_b=feat_out_b,
    )


def feed_forward_block(block: nn.Module, x: Tensor) -> Tensor:
    """``x + block.ff(block.ff_norm(x))`` in eval mode (no dropout), the ReLU and the residual addition fused into
    the products (:func:`~neural3d.fields.backends.cpu_linear.linear`). [*batch, C] -> [*batch, C]."""
    ff = block.ff
    hidden = linear(block.ff_norm(x), ff.fc1.weight, ff.fc1.bias, relu=True)
    return linear(hidden, ff.fc2.weight, ff.fc2.bias, residual=x)


def view_block(
    block: nn.Module, folded: FoldedViewBlock, q: Tensor, rows: Tensor, pos_hidden: Tensor, valid: Tensor
) -> Tensor:
    """One view block, folded. Equal to ``block(q, tokens, pos, mask)`` up to rounding.

    Float32 CPU tensors: the samples go in blocks of :data:`ATTEND_ROWS` (sample, view) rows through the token
    product and the C kernel of the view attention, so each block's ``[M_b * V, C + H + 1]`` product stays in the
    L2 cache until the kernel reads it. Elsewhere (GPU, float64, no C compiler): whole tensors, attention in PyTorch.

    Args:
        block: the reference block (its LayerNorms, ``out_fc`` and feed-forward are used as they are).
        folded: its folded maps.
        q: [M, C] queries.
        rows: [M * V, C + H + 1] view rows ``[t | h_p | 1]``: tokens, room for a pos hidden, a constant 1.
        pos_hidden: [M * V, H] this block's pos hidden (written into ``rows``).
        valid: [M, V] bool, False where a view is masked.
    Returns:
        [M, C] the updated queries.
    """
    M, V = valid.shape
    C, H = q.shape[-1], pos_hidden.shape[-1]
    q_hidden = F.linear(block.attn_norm(q), folded.query_w)  # [M, H]: W1 Wq LN(q)
    if cpu_view_attention.applies(rows):
        attended = q.new_empty(M, C)
        step = max(1, ATTEND_ROWS // V)
        for s in range(0, M, step):
            e = min(s + step, M)
            part = rows[s * V : e * V]
            part[:, C : C + H] = pos_hidden[s * V : e * V]
            y = linear(part, folded.token_w).view(e - s, V, -1)  # [v + pos | W1 (k + pos) + b1 | 1]
            cpu_view_attention.view_attention(
                y, q_hidden[s:e], folded.logit_wt, folded.logit_b, valid[s:e], out=attended[s:e]
            )
    else:
        rows[:, C : C + H] = pos_hidden
        y = linear(rows, folded.token_w).view(M, V, -1)
        attended = attend_views(y, q_hidden, folded.logit_w, valid)
    x = linear(attended, block.attn.out_fc.weight, block.attn.out_fc.bias, residual=q)
    return feed_forward_block(block, x)


def attend_views(y: Tensor, q_hidden: Tensor, logit_w: Tensor, valid: Tensor) -> Tensor:
    """The view attention after the projections, in PyTorch (what the C kernel
    :func:`~neural3d.fields.backends.cpu_view_attention.view_attention` does in one pass).

    The softmax over views is taken as ``sum_v e_v (v + pos)_v / sum_v e_v`` with
    ``e = exp(max(logits - max_v, EXP_FLOOR))`` (the reference normalises first, then sums), in place.

    Args:
        y: [M, V, C + H + 1] ``[v + pos | W1 (k + pos) + b1 | 1]`` per view.
        q_hidden: [M, H] ``W1 Wq LN(q)``.
        logit_w: [C, H + 1] ``[W2 | b2]``.
        valid: [M, V] bool.
    Returns:
        [M, C] the softmax-weighted sum of ``v + pos`` over views.
    """
    M, V = valid.shape
    C = logit_w.shape[0]
    hidden = (y[..., C:] - F.pad(q_hidden, (0, 1))[:, None]).relu_()  # contiguous [M, V, H + 1], last column 1
    e = linear(hidden.view(M * V, -1), logit_w).view(M, V, C).masked_fill_(~valid[..., None], MASK_FILL)
    e.sub_(e.amax(dim=1, keepdim=True)).clamp_min_(EXP_FLOOR).exp_()
    total = e.sum(dim=1)
    return e.mul_(y[..., :C]).sum(dim=1).div_(total)


def ray_block(block: nn.Module, qkv_w: Tensor, x: Tensor, need_weights: bool) -> tuple[Tensor, Tensor | None]:
    """One ray block with fused attention. ``x`` [n_rays, n_samples, C] -> (same, weights [n_rays, n_samples] of
    the first sample's attention row averaged over heads, or None unless ``need_weights``)."""
    n_rays, n_samples, C = x.shape
    heads = block.attn.n_heads
    qkv = linear(block.attn_norm(x), qkv_w).view(n_rays, n_samples, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)  # [n_rays, heads, n_samples, d_head]
    out = F.scaled_dot_product_attention(q, k, v)
    weights = None
    if need_weights:
        row = q[:, :, :1] @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # [n_rays, heads, 1, n_samples]
        weights = torch.softmax(row, dim=-1).mean(dim=1)[:, 0]
    out_fc = block.attn.out_fc
    x = linear(out.transpose(1, 2).reshape(x.shape), out_fc.weight, out_fc.bias, residual=x)
    return feed_forward_block(block, x), weights


def fused_forward(
    net: nn.Module, rgb_feat: Tensor, ray_diff: Tensor, mask: Tensor, points: Tensor, ray_dirs: Tensor
) -> tuple[Tensor, Tensor]:
    """:meth:`GNTNetwork.reference` for inference (eval mode: no dropout), same arguments and results.

    Args:
        rgb_feat: [n_rays, n_samples, V, 3 + feature_dim].
        ray_diff: [n_rays, n_samples, V, 4].
        mask: [n_rays, n_samples, V, 1] (1 valid, 0 invalid).
        points: [n_rays, n_samples, 3].
        ray_dirs: [n_rays, 3].
    Returns:
        rgb [n_rays, 3] (unclamped), weights [n_rays, n_samples].
    """
    folded = net.folded_weights()
    n_rays, n_samples, V = rgb_feat.shape[:3]
    M = n_rays * n_samples
    viewdirs = ray_dirs / torch.linalg.norm(ray_dirs, dim=-1, keepdim=True)
    pts_enc = net.pos_enc(points)
    dir_enc = net.dir_enc(viewdirs)[:, None, :].expand(n_rays, n_samples, -1)
    fc1 = net.feat_fc[0]
    C, H = net.feat_fc[2].weight.shape[0], folded.pos_in_w.shape[0] // len(net.view_blocks)
    hidden = linear(rgb_feat.reshape(M * V, -1), fc1.weight, fc1.bias, relu=True)
    rows = linear(hidden, folded.feat_out_w, folded.feat_out_b)  # [t | 0 | 1]
    q = rows[:, :C].unflatten(0, (M, V)).amax(dim=1)  # [M, C]
    pos_hidden = F.linear(ray_diff.reshape(M * V, -1), folded.pos_in_w, folded.pos_in_b).relu_()
    valid = (mask != 0).view(M, V)
    weights = None
    for i, (view_b, pe_fc, ray_b) in enumerate(zip(net.view_blocks, net.pe_fcs, net.ray_blocks)):
        pos_i = pos_hidden[:, i * H : (i + 1) * H]
        q = view_block(view_b, folded.views[i], q, rows, pos_i, valid).view(n_rays, n_samples, C)
        if i % 2 == 0:
            pe_in = torch.cat([q, pts_enc, dir_enc], dim=-1)
            q = linear(linear(pe_in, pe_fc[0].weight, pe_fc[0].bias, relu=True), pe_fc[2].weight, pe_fc[2].bias)
        q, weights = ray_block(ray_b, folded.qkv_w[i], q, need_weights=i == len(net.ray_blocks) - 1)
        q = q.reshape(M, C)
    rgb = net.rgb_fc(net.norm(q.view(n_rays, n_samples, C)).mean(dim=1))
    return rgb, weights
