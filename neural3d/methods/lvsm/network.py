"""LVSM transformer networks (Jin et al., "LVSM: A Large View Synthesis Model with Minimal 3D Inductive Bias",
ICLR 2025): decoder-only and encoder-decoder.

Written from the paper and the facts of the official code (Haian-Jin/LVSM, ``model/transformer.py``,
``model/LVSM_scene_decoder_only.py``, ``model/LVSM_scene_encoder_decoder.py``); module names follow the official
ones so an official state dict maps by name (:mod:`neural3d.methods.lvsm.official`):

* tokenizers ``image_tokenizer`` / ``target_pose_tokenizer``: ``Sequential(patchify, Linear(c·p·p, d, bias=False))``
  (parameter ``.1.weight``), patches flattened ``(ph pw c)`` -- channel fastest;
* blocks: pre-norm, ``x + attn(norm1(x))``, ``x + mlp(norm2(x))``; ``attn.to_qkv`` (d -> 3d), ``attn.fc``,
  ``attn.q_norm`` / ``attn.k_norm`` (RMSNorm over the head dim, eps 1e-5, computed in fp32, one weight shared by
  all heads), ``mlp.mlp.0`` (d -> 4d), GELU, ``mlp.mlp.2`` (4d -> d); no biases; LayerNorms without bias (eps 1e-5);
* no positional embeddings, no attention mask, softmax scale ``head_dim ** -0.5``;
* ``image_token_decoder``: ``Sequential(LayerNorm, Linear(d, p·p·3), Sigmoid)``;
* decoder-only: ``transformer_input_layernorm`` over ``cat(source tokens, target tokens)``, ``transformer_blocks``;
* encoder-decoder: ``n_light_field_latent`` [n_latent, d]; ``transformer_encoder`` over ``cat(latents, source
  tokens)`` (no input LayerNorm); ``transformer_input_layernorm_decoder`` then ``transformer_decoder`` over
  ``cat(target tokens, latents)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


def patchify(x: Tensor, p: int) -> Tensor:
    """[n, c, H, W] -> [n, (H/p)·(W/p), p·p·c] patches, row-major over patches, channel fastest inside one
    (official ``b v c (hh ph) (ww pw) -> (b v) (hh ww) (ph pw c)``)."""
    n, c, H, W = x.shape
    if H % p or W % p:
        raise ValueError(f"patchify: image {H}x{W} is not a multiple of the patch size {p}")
    x = x.reshape(n, c, H // p, p, W // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (H // p) * (W // p), p * p * c)


def unpatchify(tokens: Tensor, p: int, H: int, W: int, c: int = 3) -> Tensor:
    """Inverse of :func:`patchify`: [n, (H/p)·(W/p), p·p·c] -> [n, c, H, W]."""
    n = tokens.shape[0]
    x = tokens.reshape(n, H // p, W // p, p, p, c)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, c, H, W)


class Patchify(nn.Module):
    """:func:`patchify` as a module (slot 0 of the tokenizers, as the official ``Rearrange``)."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = int(patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return patchify(x, self.patch_size)


class RMSNorm(nn.Module):
    """RMS normalisation over the last dim, computed in fp32 and cast back; weight applied after the cast."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        out = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x)
        return out * self.weight.type_as(x)


class QKNormSelfAttention(nn.Module):
    """Multi-head self-attention with QK-RMSNorm over the head dim (weight shared by all heads), no biases."""

    def __init__(self, dim: int, head_dim: int = 64, use_qk_norm: bool = True) -> None:
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"LVSM: width {dim} must be a multiple of the head dim {head_dim}")
        self.head_dim = head_dim
        self.n_heads = dim // head_dim
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.fc = nn.Linear(dim, dim, bias=False)
        self.use_qk_norm = use_qk_norm
        if use_qk_norm:
            self.q_norm = RMSNorm(head_dim)
            self.k_norm = RMSNorm(head_dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = (t.reshape(b, n, self.n_heads, self.head_dim) for t in self.to_qkv(x).chunk(3, dim=-1))
        if self.use_qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return self.fc(out.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    """``mlp.0`` Linear(d, ratio·d), GELU, ``mlp.2`` Linear(ratio·d, d), no biases (``mlp.3``: the official dropout)."""

    def __init__(self, dim: int, mlp_ratio: int = 4) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden, bias=False), nn.GELU(), nn.Linear(hidden, dim, bias=False), nn.Dropout(0.0)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.mlp(x)


class TransformerBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, head_dim: int = 64, mlp_ratio: int = 4, use_qk_norm: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, bias=False)
        self.attn = QKNormSelfAttention(dim, head_dim, use_qk_norm)
        self.norm2 = nn.LayerNorm(dim, bias=False)
        self.mlp = MLP(dim, mlp_ratio)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def _init_weights(module: nn.Module, std: float = 0.02) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=std)


def _blocks(n: int, dim: int, head_dim: int, mlp_ratio: int, qk_norm: bool) -> nn.ModuleList:
    """``n`` blocks with the official "special init, depth init": std 0.02 / sqrt(2 (i + 1)) in block i."""
    blocks = nn.ModuleList(TransformerBlock(dim, head_dim, mlp_ratio, qk_norm) for _ in range(n))
    for i, block in enumerate(blocks):
        std = 0.02 / (2 * (i + 1)) ** 0.5
        block.apply(lambda m, s=std: _init_weights(m, s))
    return blocks


def run_blocks(blocks: nn.ModuleList, x: Tensor, grad_checkpoint: bool = False) -> Tensor:
    """Pass ``x`` through ``blocks`` (each block recomputed in backward when ``grad_checkpoint`` and training)."""
    for block in blocks:
        if grad_checkpoint and torch.is_grad_enabled():
            x = checkpoint(block, x, use_reentrant=False)
        else:
            x = block(x)
    return x


class LVSMNetwork(nn.Module):
    """Tokenizers, transformer(s) and the image-token decoder of LVSM.

    Args:
        variant: ``decoder_only`` or ``encoder_decoder``.
        dim, head_dim, mlp_ratio: width, attention head width, MLP hidden ratio.
        n_layers: decoder-only blocks; encoder_layers / decoder_layers: encoder-decoder blocks.
        n_latents: latent tokens of the encoder-decoder.
        patch_size: p.
        qk_norm: RMS-normalise queries and keys.
        grad_checkpoint: recompute every block in backward.
    """

    def __init__(
        self,
        variant: str = "decoder_only",
        *,
        dim: int = 128,
        head_dim: int = 64,
        mlp_ratio: int = 4,
        n_layers: int = 4,
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        n_latents: int = 64,
        patch_size: int = 8,
        qk_norm: bool = True,
        grad_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        if variant not in ("decoder_only", "encoder_decoder"):
            raise ValueError(f"LVSM variant must be decoder_only or encoder_decoder, got '{variant}'")
        self.variant, self.patch_size, self.grad_checkpoint = variant, int(patch_size), bool(grad_checkpoint)
        p = self.patch_size
        self.image_tokenizer = nn.Sequential(Patchify(p), nn.Linear(9 * p * p, dim, bias=False))
        self.target_pose_tokenizer = nn.Sequential(Patchify(p), nn.Linear(6 * p * p, dim, bias=False))
        self.image_token_decoder = nn.Sequential(
            nn.LayerNorm(dim, bias=False), nn.Linear(dim, p * p * 3, bias=False), nn.Sigmoid()
        )
        for m in (self.image_tokenizer, self.target_pose_tokenizer, self.image_token_decoder):
            m.apply(_init_weights)
        if variant == "decoder_only":
            self.transformer_blocks = _blocks(n_layers, dim, head_dim, mlp_ratio, qk_norm)
            self.transformer_input_layernorm = nn.LayerNorm(dim, bias=False)
        else:
            self.n_light_field_latent = nn.Parameter(torch.empty(n_latents, dim))
            nn.init.trunc_normal_(self.n_light_field_latent, std=0.02)
            self.transformer_encoder = _blocks(encoder_layers, dim, head_dim, mlp_ratio, qk_norm)
            self.transformer_decoder = _blocks(decoder_layers, dim, head_dim, mlp_ratio, qk_norm)
            self.transformer_input_layernorm_decoder = nn.LayerNorm(dim, bias=False)

    # ------------------------------------------------------------------ tokens
    def source_tokens(self, posed_images: Tensor) -> Tensor:
        """[b, v, 9, H, W] (RGB·2−1, Plücker) -> [b, v·n_patches, d]."""
        b, v = posed_images.shape[:2]
        tok = self.image_tokenizer(posed_images.flatten(0, 1))
        return tok.reshape(b, v * tok.shape[1], tok.shape[2])

    def target_tokens(self, plucker: Tensor) -> Tensor:
        """[b, t, 6, H, W] Plücker maps -> [b·t, n_patches, d]."""
        return self.target_pose_tokenizer(plucker.flatten(0, 1))

    def decode_pixels(self, target_tokens: Tensor, H: int, W: int) -> Tensor:
        """[b·t, n_patches, d] output tokens -> [b·t, 3, H, W] colours in [0, 1]."""
        return unpatchify(self.image_token_decoder(target_tokens), self.patch_size, H, W)

    # ------------------------------------------------------------------ encoder-decoder
    def encode(self, posed_images: Tensor) -> Tensor:
        """Encoder-decoder: source views [b, v, 9, H, W] -> the latent scene [b, n_latents, d]."""
        if self.variant != "encoder_decoder":
            raise ValueError("LVSM.encode: only the encoder_decoder variant has a latent scene")
        src = self.source_tokens(posed_images)
        lat = self.n_light_field_latent.expand(src.shape[0], -1, -1)
        out = run_blocks(self.transformer_encoder, torch.cat([lat, src], 1), self.grad_checkpoint)
        return out[:, : lat.shape[1]]

    def decode(self, latents: Tensor, target_plucker: Tensor) -> Tensor:
        """Encoder-decoder: latents [b, n_latents, d] and target Plücker maps [b, t, 6, H, W] -> [b, t, 3, H, W]."""
        b, t, _, H, W = target_plucker.shape
        tgt = self.target_tokens(target_plucker)
        n = tgt.shape[1]
        lat = latents.repeat_interleave(t, dim=0)
        x = self.transformer_input_layernorm_decoder(torch.cat([tgt, lat], 1))
        x = run_blocks(self.transformer_decoder, x, self.grad_checkpoint)
        return self.decode_pixels(x[:, :n], H, W).reshape(b, t, 3, H, W)

    # ------------------------------------------------------------------ both
    def forward(self, posed_images: Tensor, target_plucker: Tensor) -> Tensor:
        """Source views [b, v, 9, H, W] and target Plücker maps [b, t, 6, H, W] -> renders [b, t, 3, H, W]."""
        if self.variant == "encoder_decoder":
            return self.decode(self.encode(posed_images), target_plucker)
        b, t, _, H, W = target_plucker.shape
        src = self.source_tokens(posed_images).repeat_interleave(t, dim=0)  # each target sees all sources
        tgt = self.target_tokens(target_plucker)
        n = tgt.shape[1]
        x = self.transformer_input_layernorm(torch.cat([src, tgt], 1))
        x = run_blocks(self.transformer_blocks, x, self.grad_checkpoint)
        return self.decode_pixels(x[:, -n:], H, W).reshape(b, t, 3, H, W)
