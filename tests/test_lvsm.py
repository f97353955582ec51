"""LVSM units: Plücker rays in the official convention, patches, QK-norm attention, the official pose
normalisation, official-layout state dicts, encoder-decoder latent reuse, padding."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neural3d.core.cameras import Cameras
from neural3d.core.rays import image_rays
from neural3d.methods.lvsm.network import LVSMNetwork, QKNormSelfAttention, patchify, unpatchify
from neural3d.methods.lvsm.official import official_to_state_dict, state_dict_to_official
from neural3d.methods.lvsm.rays import camera_plucker, normalization_frame, plucker, transform_rays


def _look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0)) -> torch.Tensor:
    """OpenGL camera-to-world [3, 4] looking from ``eye`` at ``target``."""
    eye, target, up = (torch.tensor(v, dtype=torch.float32) for v in (eye, target, up))
    back = F.normalize(eye - target, dim=0)
    right = F.normalize(torch.cross(up, back, dim=0), dim=0)
    upv = torch.cross(back, right, dim=0)
    return torch.stack([right, upv, back, eye], 1)


def _cameras(eyes, f=20.0, w=16, h=16) -> Cameras:
    c2w = torch.stack([_look_at(e) for e in eyes])
    n = len(eyes)
    return Cameras(
        c2w, torch.full((n,), f), torch.full((n,), f), torch.full((n,), w / 2), torch.full((n,), h / 2), w, h
    )


# ---------------------------------------------------------------------------- rays
def test_plucker_against_a_hand_computation():
    # camera at (0, 0, 4) looking down -z (OpenGL identity rotation), f = 2, 4x4 image, cx = cy = 2
    cams = Cameras(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 4]]), 2.0, 2.0, 2.0, 2.0, 4, 4)
    rays = image_rays(cams, 0, 0.0, 1.0, 0.5)
    # pixel (x=3, y=0): centre (3.5, 0.5): OpenCV camera dir ((3.5-2)/2, (0.5-2)/2, 1) = (0.75, -0.75, 1);
    # OpenCV -> OpenGL camera: (0.75, 0.75, -1); identity rotation -> world dir (0.75, 0.75, -1) / sqrt(2.125)
    n = math.sqrt(0.75**2 + 0.75**2 + 1)
    d = torch.tensor([0.75, 0.75, -1.0]) / n
    # o = (0, 0, 4); o x d = (0*(-1) - 4*0.75, 4*0.75 - 0*(-1), 0) / n = (-3, 3, 0) / n
    expected = torch.cat([torch.tensor([-3.0, 3.0, 0.0]) / n, d])
    got = plucker(rays.origins[0, 3], rays.viewdirs[0, 3])
    assert torch.allclose(got, expected, atol=1e-6)
    pmap = camera_plucker(cams, 0.5)  # [1, 6, H, W]
    assert pmap.shape == (1, 6, 4, 4) and torch.allclose(pmap[0, :, 0, 3], expected, atol=1e-6)


def test_our_rays_are_the_official_opencv_rays():
    """Official ``compute_rays``: OpenCV c2w, pixel centres +0.5, direction ((x+.5-cx)/fx, (y+.5-cy)/fy, 1) rotated
    and normalised, origin = camera centre."""
    cams = _cameras([(3.0, 1.0, 2.0), (-2.0, 2.5, 1.0)], f=13.0, w=12, h=8)
    c2w_cv, K = cams.to_opencv()
    for i in range(2):
        ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(12.0), indexing="ij")
        cam = torch.stack(
            [(xs + 0.5 - K[i, 0, 2]) / K[i, 0, 0], (ys + 0.5 - K[i, 1, 2]) / K[i, 1, 1], torch.ones_like(xs)], -1
        )
        d = F.normalize(cam @ c2w_cv[i, :3, :3].T, dim=-1)
        rays = image_rays(cams, i, 0.0, 1.0, 0.5)
        assert torch.allclose(rays.viewdirs, d, atol=1e-6)
        assert torch.allclose(rays.origins, c2w_cv[i, :3, 3].expand(8, 12, 3))


def _official_preprocess_poses(c2ws_cv: torch.Tensor, factor: float = 1.35) -> torch.Tensor:
    """The official ``Dataset.preprocess_poses`` (data/dataset_scene.py), transcribed: OpenCV c2w [n, 4, 4]."""
    center = c2ws_cv[:, :3, 3].mean(0)
    avg_forward = F.normalize(c2ws_cv[:, :3, 2].mean(0), dim=-1)
    avg_down = c2ws_cv[:, :3, 1].mean(0)
    avg_right = F.normalize(torch.cross(avg_down, avg_forward, dim=-1), dim=-1)
    avg_down = F.normalize(torch.cross(avg_forward, avg_right, dim=-1), dim=-1)
    avg_pose = torch.eye(4, dtype=c2ws_cv.dtype)
    avg_pose[:3, :3] = torch.stack([avg_right, avg_down, avg_forward], dim=-1)
    avg_pose[:3, 3] = center
    out = torch.linalg.inv(avg_pose) @ c2ws_cv
    out[:, :3, 3] /= factor * out[:, :3, 3].abs().max()
    return out


def test_pose_normalisation_matches_the_official_loader():
    cams = _cameras([(3.0, 1.0, 2.0), (-2.0, 2.5, 1.0), (0.5, -3.0, 2.5)])
    c2w_cv, _ = cams.to_opencv()
    ref = _official_preprocess_poses(c2w_cv.double())
    S = normalization_frame(cams.camera_to_worlds.double())
    for i in range(3):
        rays = image_rays(cams, i, 0.0, 1.0, 0.5)
        o, d = transform_rays(rays.origins.double(), rays.viewdirs.double(), S)
        # official rays of the normalised OpenCV pose
        ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
        cam = torch.stack([(xs + 0.5 - 8) / 20, (ys + 0.5 - 8) / 20, torch.ones_like(xs)], -1).double()
        d_ref = F.normalize(cam @ ref[i, :3, :3].T, dim=-1)
        assert torch.allclose(d, d_ref, atol=1e-5)
        assert torch.allclose(o, ref[i, :3, 3].expand_as(o), atol=1e-6)
    assert math.isclose(float(ref[:, :3, 3].abs().max()), 1 / 1.35, rel_tol=1e-9)


# ---------------------------------------------------------------------------- patches, attention
def test_patchify_round_trip_and_channel_fastest_layout():
    x = torch.randn(2, 9, 16, 24)
    tok = patchify(x, 8)
    assert tok.shape == (2, 6, 8 * 8 * 9)
    # official "b v c (hh ph) (ww pw) -> (b v) (hh ww) (ph pw c)": patch (hh=1, ww=2), pixel (ph=3, pw=5), channel 4
    assert tok[1, 1 * 3 + 2, (3 * 8 + 5) * 9 + 4] == x[1, 4, 8 + 3, 16 + 5]
    assert torch.equal(unpatchify(patchify(x[:, :3], 8), 8, 16, 24), x[:, :3])
    with pytest.raises(ValueError, match="multiple"):
        patchify(torch.zeros(1, 3, 10, 16), 8)


def test_qk_norm_attention_matches_a_float64_reference():
    torch.manual_seed(0)
    d, dh, n = 128, 64, 7
    attn = QKNormSelfAttention(d, dh)
    with torch.no_grad():
        attn.q_norm.weight.uniform_(0.5, 1.5)
        attn.k_norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, n, d)
    got = attn(x)
    W = {k: v.double() for k, v in attn.state_dict().items()}
    xd = x.double()
    qkv = xd @ W["to_qkv.weight"].T
    q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
    out = torch.zeros(2, n, d, dtype=torch.float64)
    for h in range(d // dh):
        s = slice(h * dh, (h + 1) * dh)
        qh, kh, vh = q[..., s], k[..., s], v[..., s]
        qh = qh / torch.sqrt((qh**2).mean(-1, keepdim=True) + 1e-5) * W["q_norm.weight"]  # one weight, all heads
        kh = kh / torch.sqrt((kh**2).mean(-1, keepdim=True) + 1e-5) * W["k_norm.weight"]
        a = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(dh), -1)  # no mask, scale dh^-1/2
        out[..., s] = a @ vh
    ref = out @ W["fc.weight"].T
    assert torch.allclose(got.double(), ref, atol=1e-5)


def test_no_bias_parameters_anywhere():
    for variant in ("decoder_only", "encoder_decoder"):
        net = LVSMNetwork(variant, dim=128, n_layers=1, encoder_layers=1, decoder_layers=1, n_latents=4)
        assert not [n for n, _ in net.named_parameters() if n.endswith("bias")]


# ---------------------------------------------------------------------------- official state dicts
def _official_layout(variant: str, d: int, layers: tuple[int, ...], p: int = 8, n_latents: int = 0) -> dict:
    """Names and shapes of the official ``Images2LatentScene`` (model/LVSM_scene_{decoder_only,encoder_decoder}.py,
    model/transformer.py: QK_Norm_TransformerBlock, QK_Norm_SelfAttention, MLP, RMSNorm), read off the code:

    * ``image_tokenizer`` = Sequential(Rearrange, Linear(9·p², d, bias=False)) -> ``image_tokenizer.1.weight`` [d, 9p²]
    * ``target_pose_tokenizer.1.weight`` [d, 6p²]
    * ``image_token_decoder`` = Sequential(LayerNorm(d, bias=False), Linear(d, 3p², bias=False), Sigmoid)
    * block: ``norm1.weight`` [d], ``attn.to_qkv.weight`` [3d, d], ``attn.fc.weight`` [d, d] (block passes
      attn_fc_bias=False), ``attn.q_norm.weight`` / ``attn.k_norm.weight`` [d_head=64], ``norm2.weight`` [d],
      ``mlp.mlp.0.weight`` [4d, d], ``mlp.mlp.2.weight`` [d, 4d]
    * decoder-only: ``transformer_blocks.{i}``, ``transformer_input_layernorm.weight`` [d]
    * encoder-decoder: ``n_light_field_latent`` [n_latent_vectors, d], ``transformer_encoder.{i}``,
      ``transformer_decoder.{i}``, ``transformer_input_layernorm_decoder.weight`` [d]
    * ``loss_computer.*``: the frozen VGG of the perceptual loss (dropped by the importer)
    """
    shapes = {
        "image_tokenizer.1.weight": (d, 9 * p * p),
        "target_pose_tokenizer.1.weight": (d, 6 * p * p),
        "image_token_decoder.0.weight": (d,),
        "image_token_decoder.1.weight": (3 * p * p, d),
    }

    def block(prefix):
        for name, shape in [
            ("norm1.weight", (d,)),
            ("attn.to_qkv.weight", (3 * d, d)),
            ("attn.fc.weight", (d, d)),
            ("attn.q_norm.weight", (64,)),
            ("attn.k_norm.weight", (64,)),
            ("norm2.weight", (d,)),
            ("mlp.mlp.0.weight", (4 * d, d)),
            ("mlp.mlp.2.weight", (d, 4 * d)),
        ]:
            shapes[f"{prefix}.{name}"] = shape

    if variant == "decoder_only":
        for i in range(layers[0]):
            block(f"transformer_blocks.{i}")
        shapes["transformer_input_layernorm.weight"] = (d,)
    else:
        shapes["n_light_field_latent"] = (n_latents, d)
        for i in range(layers[0]):
            block(f"transformer_encoder.{i}")
        for i in range(layers[1]):
            block(f"transformer_decoder.{i}")
        shapes["transformer_input_layernorm_decoder.weight"] = (d,)
    sd = {k: torch.randn(s) for k, s in shapes.items()}
    sd["loss_computer.perceptual_loss_module.vgg.0.weight"] = torch.randn(64, 3, 3, 3)
    sd["loss_computer.perceptual_loss_module.vgg.0.bias"] = torch.randn(64)
    return sd


@pytest.mark.parametrize("variant", ["decoder_only", "encoder_decoder"])
def test_official_layout_state_dict_loads_strictly(variant):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.lvsm.model import LVSMModel, LVSMModelConfig

    layers = (3,) if variant == "decoder_only" else (2, 1)
    official = _official_layout(variant, 128, layers, n_latents=16)
    cfg = LVSMModelConfig(
        variant=variant, width=128, n_layers=3, encoder_layers=2, decoder_layers=1, n_latents=16, patch_size=8
    )
    model = LVSMModel(cfg, scene=SceneInfo(torch.tensor([[-1.0] * 3, [1.0] * 3]), 0.0, 1.0))
    ours = official_to_state_dict(official)
    assert not [k for k in ours if "loss_computer" in k]
    model.load_state_dict(ours, strict=True)  # no missing, no unexpected keys, same shapes
    for k, v in official.items():
        if not k.startswith("loss_computer."):
            assert torch.equal(model.state_dict()["net." + k], v)
    back = state_dict_to_official(model.state_dict())
    assert back.keys() == {k for k in official if not k.startswith("loss_computer.")}
    # a DDP-prefixed checkpoint maps the same way
    assert official_to_state_dict({"module." + k: v for k, v in official.items()}).keys() == ours.keys()


# ---------------------------------------------------------------------------- variants
def test_encoder_decoder_latent_reuse_equals_re_encoding():
    torch.manual_seed(1)
    net = LVSMNetwork("encoder_decoder", dim=64, encoder_layers=1, decoder_layers=1, n_latents=8).eval()
    src = torch.randn(2, 3, 9, 16, 16)
    targets = torch.randn(2, 4, 6, 16, 16)
    with torch.no_grad():
        latents = net.encode(src)
        reused = net.decode(latents, targets)
        separate = torch.cat([net(src, targets[:, i : i + 1]) for i in range(4)], 1)
    assert reused.shape == (2, 4, 3, 16, 16)
    assert torch.allclose(reused, separate, atol=1e-6)


def test_decoder_only_targets_are_independent_and_see_sources():
    torch.manual_seed(2)
    net = LVSMNetwork("decoder_only", dim=64, n_layers=2).eval()
    src = torch.randn(1, 2, 9, 16, 8)
    targets = torch.randn(1, 3, 6, 16, 8)
    with torch.no_grad():
        both = net(src, targets)
        one = net(src, targets[:, 1:2])
        other_src = net(src.flip(1), targets[:, 1:2])
    assert torch.allclose(both[:, 1:2], one, atol=1e-6)
    assert ((both >= 0) & (both <= 1)).all()
    assert torch.allclose(other_src, one, atol=1e-5)  # no positional embeddings: source order does not matter
    assert not torch.allclose(net(src[:, :1], targets[:, 1:2]), one, atol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(3)
    net = LVSMNetwork("decoder_only", dim=64, n_layers=2)
    src, tgt = torch.randn(1, 2, 9, 8, 8), torch.randn(1, 1, 6, 8, 8)
    net(src, tgt).sum().backward()
    g = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net.grad_checkpoint = True
    net(src, tgt).sum().backward()
    for a, p in zip(g, net.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


# ---------------------------------------------------------------------------- the whole network in float64
def _ln(x, w):
    """LayerNorm without bias, eps 1e-5."""
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(((x - mu) ** 2).mean(-1, keepdim=True) + 1e-5) * w


def _block_ref(x, W, pre, dh=64):
    """One official ``QK_Norm_TransformerBlock`` over ALL tokens (no mask), float64."""
    d = x.shape[-1]
    h = _ln(x, W[f"{pre}.norm1.weight"])
    q, k, v = (h @ W[f"{pre}.attn.to_qkv.weight"].T).split(d, -1)
    heads = []
    for s in range(0, d, dh):
        qh, kh = q[..., s : s + dh], k[..., s : s + dh]
        qh = qh / torch.sqrt((qh**2).mean(-1, keepdim=True) + 1e-5) * W[f"{pre}.attn.q_norm.weight"]
        kh = kh / torch.sqrt((kh**2).mean(-1, keepdim=True) + 1e-5) * W[f"{pre}.attn.k_norm.weight"]
        heads.append(torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(dh), -1) @ v[..., s : s + dh])
    x = x + torch.cat(heads, -1) @ W[f"{pre}.attn.fc.weight"].T
    h = _ln(x, W[f"{pre}.norm2.weight"])
    return x + F.gelu(h @ W[f"{pre}.mlp.mlp.0.weight"].T) @ W[f"{pre}.mlp.mlp.2.weight"].T


def _tokens_ref(img, w, p):
    """Official ``Rearrange("b v c (hh ph) (ww pw) -> (b v) (hh ww) (ph pw c)")`` then ``Linear`` (no bias), with
    explicit loops over patches: [v, c, H, W] -> [v * n_patches, d]."""
    v, c, H, W = img.shape
    rows = [img[i, :, a : a + p, b : b + p].permute(1, 2, 0).reshape(-1) for i in range(v)
            for a in range(0, H, p) for b in range(0, W, p)]  # fmt: skip
    return torch.stack(rows) @ w.T


def _render_ref(W, variant, src, tgt, p, n_layers):
    """The official forward for one scene and one target in float64: src [v, 9, H, W], tgt [6, H, W] -> [3, H, W]."""
    H, Wd = tgt.shape[-2:]
    s_tok = _tokens_ref(src, W["image_tokenizer.1.weight"], p)
    t_tok = _tokens_ref(tgt[None], W["target_pose_tokenizer.1.weight"], p)
    n = t_tok.shape[0]
    if variant == "decoder_only":
        x = _ln(torch.cat([s_tok, t_tok]), W["transformer_input_layernorm.weight"])
        for i in range(n_layers[0]):
            x = _block_ref(x, W, f"transformer_blocks.{i}")
        out = x[-n:]
    else:
        lat = W["n_light_field_latent"]
        x = torch.cat([lat, s_tok])  # latents first, no input LayerNorm
        for i in range(n_layers[0]):
            x = _block_ref(x, W, f"transformer_encoder.{i}")
        x = _ln(torch.cat([t_tok, x[: lat.shape[0]]]), W["transformer_input_layernorm_decoder.weight"])
        for i in range(n_layers[1]):
            x = _block_ref(x, W, f"transformer_decoder.{i}")
        out = x[:n]
    pix = torch.sigmoid(_ln(out, W["image_token_decoder.0.weight"]) @ W["image_token_decoder.1.weight"].T)
    img = torch.zeros(3, H, Wd, dtype=torch.float64)
    for j, (a, b) in enumerate((a, b) for a in range(0, H, p) for b in range(0, Wd, p)):
        img[:, a : a + p, b : b + p] = pix[j].reshape(p, p, 3).permute(2, 0, 1)
    return img


@pytest.mark.parametrize("variant", ["decoder_only", "encoder_decoder"])
def test_network_matches_a_float64_transcription_of_the_official_forward(variant):
    """Token layout, input LayerNorms, token order (latents first in the encoder, target first in the decoder),
    attention over all tokens (no mask), the pixel decoder: our network against the official forward, float64."""
    torch.manual_seed(4)
    layers = (2,) if variant == "decoder_only" else (1, 2)
    official = _official_layout(variant, 128, layers, p=4, n_latents=5)
    official = {k: 0.1 * v if v.ndim > 1 else 1 + 0.1 * v for k, v in official.items() if "loss_computer" not in k}
    net = LVSMNetwork(
        variant, dim=128, n_layers=layers[0], encoder_layers=layers[0], decoder_layers=layers[-1], n_latents=5,
        patch_size=4,
    ).double()  # fmt: skip
    net.load_state_dict(official, strict=True)
    src, tgt = torch.randn(1, 2, 9, 8, 12, dtype=torch.float64), torch.randn(1, 2, 6, 8, 12, dtype=torch.float64)
    with torch.no_grad():
        got = net(src, tgt)
    W = {k: v.double() for k, v in official.items()}
    for t in range(2):
        ref = _render_ref(W, variant, src[0], tgt[0, t], 4, layers)
        assert torch.allclose(got[0, t], ref, atol=1e-10)


def test_qk_rms_norm_computes_in_float32_for_bfloat16_inputs():
    from neural3d.methods.lvsm.network import RMSNorm

    norm = RMSNorm(64)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = (torch.randn(3, 5, 64) * 1e3).to(torch.bfloat16)
    got = norm(x)
    xf = x.float()
    ref = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-5)).to(torch.bfloat16) * norm.weight.bfloat16()
    assert got.dtype == torch.bfloat16 and torch.equal(got, ref)


# ---------------------------------------------------------------------------- padding
def test_padded_ray_maps_are_the_rays_of_the_larger_image():
    """A 13x10 camera padded to 16x16 (p = 8): the padded pixels carry the rays of the same camera's 16x16 image."""
    from dataclasses import replace

    from neural3d.methods.lvsm.rays import extend_linearly

    cams = _cameras([(3.0, 1.0, 2.0), (-2.0, 2.5, 1.0)], f=11.0, w=13, h=10)
    frame = normalization_frame(cams.camera_to_worlds)
    padded = camera_plucker(cams, 0.5, frame, patch_size=8)
    big = replace(cams, width=torch.full_like(cams.width, 16), height=torch.full_like(cams.height, 16))
    assert padded.shape == (2, 6, 16, 16)
    assert torch.allclose(padded, camera_plucker(big, 0.5, frame), atol=1e-5)
    assert torch.equal(camera_plucker(cams, 0.5, frame, patch_size=1), camera_plucker(cams, 0.5, frame))
    assert extend_linearly(torch.ones(1, 1, 1), 4).shape == (1, 4, 4)  # one pixel: replicated


def test_bad_official_checkpoints_name_the_file_and_keys(tmp_path):
    from neural3d.methods.base import SceneInfo
    from neural3d.methods.lvsm.importer import import_official
    from neural3d.methods.lvsm.model import LVSMModel, LVSMModelConfig
    from neural3d.methods.lvsm.official import load_strict

    official = _official_layout("decoder_only", 128, (2,))
    model = LVSMModel(LVSMModelConfig(width=128, n_layers=2), scene=SceneInfo(torch.zeros(2, 3), 0.0, 1.0))
    ours = official_to_state_dict(official)
    bad = {k: v for k, v in ours.items() if "transformer_blocks.1.norm2" not in k}
    bad["net.extra.weight"] = torch.zeros(1)
    bad["net.image_tokenizer.1.weight"] = torch.zeros(128, 9 * 16 * 16)
    with pytest.raises(ValueError) as err:
        load_strict(model, bad, "ckpt.pt")
    msg = str(err.value)
    assert msg.startswith("ckpt.pt:") and "transformer_blocks.1.norm2.weight" in msg
    assert "net.extra.weight" in msg and "net.image_tokenizer.1.weight (128, 2304)" in msg
    torch.save({"model": {"encoder.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not an official LVSM state dict"):
        import_official(tmp_path / "other.pt", tmp_path / "scene", tmp_path / "run")
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt: not an LVSM checkpoint"):
        import_official(tmp_path / "list.pt", tmp_path / "scene", tmp_path / "run")
