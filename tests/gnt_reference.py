"""Independent float64 reference of the official GNT pipeline, for equivalence tests.

Written from the official code's documented behaviour (VITA-Group/GNT @ 53e0fc3, see
``../shared/reference/gnt_official_conventions.txt``), in a deliberately plain style: parameters are
read by their OFFICIAL names from a flat dict, every layer is a functional call, cameras are the
34-float records (H, W, K 4x4, c2w 4x4 OpenCV) inverted with a general matrix inverse.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ------------------------------------------------------------------------------ official layout


def official_layout(depth: int = 4, width: int = 64, feat: int = 32, fine: bool = False) -> dict[str, tuple]:
    """Names and shapes of an official checkpoint's ``net_coarse`` / ``feature_net`` (/ ``net_fine``)."""
    out: dict[str, tuple] = {}
    ff, enc = 4 * width, 63

    def lin(name, o, i, bias=True):
        out[name + ".weight"] = (o, i)
        if bias:
            out[name + ".bias"] = (o,)

    def ln(name):
        out[name + ".weight"] = (width,)
        out[name + ".bias"] = (width,)

    def net(p):
        lin(f"{p}.rgbfeat_fc.0", width, feat + 3)
        lin(f"{p}.rgbfeat_fc.2", width, width)
        for kind in ("view_selftrans", "view_crosstrans"):
            for i in range(depth):
                b = f"{p}.{kind}.{i}"
                ln(b + ".attn_norm")
                ln(b + ".ff_norm")
                lin(b + ".ff.fc1", ff, width)
                lin(b + ".ff.fc2", width, ff)
                for q in ("q_fc", "k_fc", "v_fc"):
                    lin(f"{b}.attn.{q}", width, width, bias=False)
                if kind == "view_crosstrans":
                    lin(b + ".attn.pos_fc.0", width // 8, 4)
                    lin(b + ".attn.pos_fc.2", width, width // 8)
                    lin(b + ".attn.attn_fc.0", width // 8, width)
                    lin(b + ".attn.attn_fc.2", width, width // 8)
                lin(b + ".attn.out_fc", width, width)
        for i in range(0, depth, 2):
            lin(f"{p}.q_fcs.{i}.0", width, width + 2 * enc)
            lin(f"{p}.q_fcs.{i}.2", width, width)
        ln(p + ".norm")
        lin(p + ".rgb_fc", 3, width)

    def norm(name, c):
        out[name + ".weight"] = (c,)
        out[name + ".bias"] = (c,)

    net("net_coarse")
    f = "feature_net"
    out_ch = feat * (2 if fine else 1)
    out[f + ".conv1.weight"] = (64, 3, 7, 7)
    norm(f + ".bn1", 64)
    c_in = 64
    for li, (c, n) in enumerate(((64, 3), (128, 4), (256, 6)), start=1):
        for b in range(n):
            p = f"{f}.layer{li}.{b}"
            out[p + ".conv1.weight"] = (c, c_in if b == 0 else c, 3, 3)
            norm(p + ".bn1", c)
            out[p + ".conv2.weight"] = (c, c, 3, 3)
            norm(p + ".bn2", c)
            if b == 0:
                out[p + ".downsample.0.weight"] = (c, c_in, 1, 1)
                norm(p + ".downsample.1", c)
        c_in = c
    for name, o, i, up in (
        ("upconv3", 128, 256, True),
        ("iconv3", 128, 256, False),
        ("upconv2", 64, 128, True),
        ("iconv2", out_ch, 128, False),
    ):
        p = f"{f}.{name}.conv" if up else f"{f}.{name}"
        out[p + ".conv.weight"] = (o, i, 3, 3)
        out[p + ".conv.bias"] = (o,)
        norm(p + ".bn", o)
    out[f + ".out_conv.weight"] = (out_ch, out_ch, 1, 1)
    out[f + ".out_conv.bias"] = (out_ch,)
    if fine:
        sub = {k: v for k, v in out.items() if k.startswith("net_coarse.")}
        out.update({"net_fine." + k[len("net_coarse.") :]: v for k, v in sub.items()})
    return out


def random_official_checkpoint(depth: int = 4, seed: int = 0, fine: bool = False) -> dict:
    """A checkpoint dict of the official layout with random, well-scaled values."""
    g = torch.Generator().manual_seed(seed)
    nets: dict[str, dict] = {"net_coarse": {}, "feature_net": {}}
    if fine:
        nets["net_fine"] = {}
    for name, shape in official_layout(depth, fine=fine).items():
        top, key = name.split(".", 1)
        if len(shape) == 1:
            base = 1.0 if key.endswith("weight") else 0.0
            v = base + 0.1 * torch.randn(shape, generator=g)
            if key.startswith("rgb_fc"):
                v = 0.5 + 0.05 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            v = torch.randn(shape, generator=g) / math.sqrt(fan_in)
        nets[top][key] = v
    return {"optimizer": {"state": {}, "param_groups": []}, "scheduler": {"last_epoch": 0}, **nets}


# ------------------------------------------------------------------------------ projector
def ref_project(xyz, query_cam, src_imgs, src_cams, featmaps):
    """xyz [R, S, 3], query_cam [34], src_imgs [V, H, W, 3], src_cams [V, 34], featmaps [V, C, h, w]."""
    R, S = xyz.shape[:2]
    V = src_cams.shape[0]
    pts = xyz.reshape(-1, 3)
    K = src_cams[:, 2:18].reshape(V, 4, 4)
    pose = src_cams[:, 18:34].reshape(V, 4, 4)
    hom = torch.cat([pts, torch.ones_like(pts[:, :1])], -1)
    proj = torch.stack([K[v] @ torch.inverse(pose[v]) @ hom.T for v in range(V)]).permute(0, 2, 1)
    pix = (proj[..., :2] / proj[..., 2:3].clamp(min=1e-8)).clamp(-1e6, 1e6)
    in_front = proj[..., 2] > 0
    h, w = float(src_cams[0, 0]), float(src_cams[0, 1])
    grid = (2 * pix / torch.tensor([w - 1, h - 1], dtype=pix.dtype) - 1).reshape(V, R, S, 2)
    rgb = F.grid_sample(src_imgs.permute(0, 3, 1, 2), grid, align_corners=True).permute(2, 3, 0, 1)
    ft = F.grid_sample(featmaps, grid, align_corners=True).permute(2, 3, 0, 1)
    inb = (pix[..., 0] <= w - 1) & (pix[..., 0] >= 0) & (pix[..., 1] <= h - 1) & (pix[..., 1] >= 0)
    mask = (inb & in_front).to(xyz.dtype).reshape(V, R, S).permute(1, 2, 0)[..., None]
    tar = query_cam[18:34].reshape(4, 4)[:3, 3]
    d_t = tar[None] - pts
    d_t = d_t / (d_t.norm(dim=-1, keepdim=True) + 1e-6)
    diffs = []
    for v in range(V):
        d_s = pose[v, :3, 3][None] - pts
        d_s = d_s / (d_s.norm(dim=-1, keepdim=True) + 1e-6)
        d = d_t - d_s
        dirn = d / d.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        diffs.append(torch.cat([dirn, (d_t * d_s).sum(-1, keepdim=True)], -1))
    ray_diff = torch.stack(diffs).reshape(V, R, S, 4).permute(1, 2, 0, 3)
    return torch.cat([rgb, ft], -1), ray_diff, mask


# ------------------------------------------------------------------------------ network
def _lin(P, name, x, bias=True):
    return F.linear(x, P[name + ".weight"], P.get(name + ".bias") if bias else None)


def _mlp(P, name, x):
    return _lin(P, name + ".2", torch.relu(_lin(P, name + ".0", x)))


def _posenc(x):
    bands = 2.0 ** torch.linspace(0.0, 9.0, 10)
    parts = [x]
    for f in bands.tolist():
        parts += [torch.sin(x * f), torch.cos(x * f)]
    return torch.cat(parts, -1)


def ref_gnt(P, rgb_feat, ray_diff, mask, pts, ray_d, depth):
    """Official GNT.forward with ret_alpha; P: net parameters by official name (no 'net_coarse.')."""

    def ln(name, x, eps):
        return F.layer_norm(x, x.shape[-1:], P[name + ".weight"], P[name + ".bias"], eps)

    vd = ray_d / ray_d.norm(dim=-1, keepdim=True)
    pe = _posenc(pts)
    ve = _posenc(vd)[:, None].expand(*pts.shape[:2], -1)
    feats = _mlp(P, "rgbfeat_fc", rgb_feat)
    q = feats.max(dim=2)[0]
    attn_w = None
    for i in range(depth):
        b = f"view_crosstrans.{i}"
        x = ln(b + ".attn_norm", q, 1e-6)
        qq = _lin(P, b + ".attn.q_fc", x, False)
        k = _lin(P, b + ".attn.k_fc", feats, False)
        v = _lin(P, b + ".attn.v_fc", k, False)
        pos = _mlp(P, b + ".attn.pos_fc", ray_diff)
        a = _mlp(P, b + ".attn.attn_fc", k - qq[:, :, None] + pos)
        a = a.masked_fill(mask == 0, -1e9)
        a = torch.exp(a - a.max(dim=2, keepdim=True)[0])
        a = a / a.sum(dim=2, keepdim=True)
        q = _lin(P, b + ".attn.out_fc", ((v + pos) * a).sum(2)) + q
        q = _lin(P, b + ".ff.fc2", torch.relu(_lin(P, b + ".ff.fc1", ln(b + ".ff_norm", q, 1e-6)))) + q
        if i % 2 == 0:
            q = _mlp(P, f"q_fcs.{i}", torch.cat([q, pe, ve], -1))
        b = f"view_selftrans.{i}"
        x = ln(b + ".attn_norm", q, 1e-6)
        R, S, C = x.shape
        heads = [
            _lin(P, f"{b}.attn.{n}", x, False).reshape(R, S, 4, C // 4).permute(0, 2, 1, 3)
            for n in ("q_fc", "k_fc", "v_fc")
        ]
        logits = heads[0] @ heads[1].transpose(-1, -2) / math.sqrt(C // 4)
        att = torch.softmax(logits, -1)
        o = (att @ heads[2]).permute(0, 2, 1, 3).reshape(R, S, C)
        q = _lin(P, b + ".attn.out_fc", o) + q
        q = _lin(P, b + ".ff.fc2", torch.relu(_lin(P, b + ".ff.fc1", ln(b + ".ff_norm", q, 1e-6)))) + q
        attn_w = att.mean(dim=1)[:, 0]
    rgb = _lin(P, "rgb_fc", ln("norm", q, 1e-5).mean(1))
    return rgb, attn_w


# ------------------------------------------------------------------------------ ResUNet
def _conv(P, name, x, stride=1, bias=False):
    k = P[name + ".weight"].shape[-1]
    pad = (k - 1) // 2
    if pad:
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    return F.conv2d(x, P[name + ".weight"], P.get(name + ".bias") if bias else None, stride=stride)


def _inorm(P, name, x):
    return F.instance_norm(x, weight=P[name + ".weight"], bias=P[name + ".bias"], eps=1e-5)


def ref_resunet(P, x):
    """Official ResUNet.forward (single_net) with InstanceNorm, reflect padding; P by official name."""
    x = torch.relu(_inorm(P, "bn1", _conv(P, "conv1", x, stride=2)))
    skips = []
    for li, n in ((1, 3), (2, 4), (3, 6)):
        for b in range(n):
            p = f"layer{li}.{b}"
            s = 2 if b == 0 else 1
            out = torch.relu(_inorm(P, p + ".bn1", _conv(P, p + ".conv1", x, stride=s)))
            out = _inorm(P, p + ".bn2", _conv(P, p + ".conv2", out))
            idn = _inorm(P, p + ".downsample.1", _conv(P, p + ".downsample.0", x, stride=s)) if b == 0 else x
            x = torch.relu(out + idn)
        skips.append(x)

    def block(name, x):
        return F.elu(_inorm(P, name + ".bn", _conv(P, name + ".conv", x, bias=True)))

    def up_skip(name, x, enc):
        x = block(name + ".conv", F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True))
        dy, dx = x.shape[2] - enc.shape[2], x.shape[3] - enc.shape[3]
        enc = F.pad(enc, (dx // 2, dx - dx // 2, dy // 2, dy - dy // 2))
        return torch.cat([x, enc], 1)

    x = block("iconv3", up_skip("upconv3", skips[2], skips[1]))
    x = block("iconv2", up_skip("upconv2", x, skips[0]))
    return F.conv2d(x, P["out_conv.weight"], P["out_conv.bias"])


def ref_rays(cam, pixels):
    """Official rays: pixels [n, 2] integer coordinates; cam [34]. Returns (origins [n, 3], directions [n, 3])."""
    K = cam[2:18].reshape(4, 4)[:3, :3]
    c2w = cam[18:34].reshape(4, 4)
    hom = torch.cat([pixels, torch.ones_like(pixels[:, :1])], -1).T
    d = (c2w[:3, :3] @ torch.inverse(K) @ hom).T
    return c2w[:3, 3].expand_as(d), d


def ref_z_vals(near, far, n, inv=True):
    j = torch.arange(n, dtype=torch.float64)
    if inv:
        return 1.0 / (1.0 / near + j * (1.0 / far - 1.0 / near) / (n - 1))
    return near + j * (far - near) / (n - 1)


def ref_sample_pdf(bins, weights, n, u):
    """Official ``sample_pdf`` with given ``u`` [R, n] (loop over bins to find the CDF interval)."""
    M = weights.shape[1]
    w = weights + 1e-5
    cdf = torch.cumsum(w / w.sum(-1, keepdim=True), -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)
    above = torch.zeros_like(u, dtype=torch.long)
    for i in range(M):
        above += (u >= cdf[:, i : i + 1]).long()
    below = (above - 1).clamp(min=0)
    idx = torch.stack([below, above], -1)
    cdf_g = torch.gather(cdf[:, None].expand(-1, n, -1), 2, idx)
    bins_g = torch.gather(bins[:, None].expand(-1, n, -1), 2, idx)
    denom = cdf_g[..., 1] - cdf_g[..., 0]
    denom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)
    return bins_g[..., 0] + (u - cdf_g[..., 0]) / denom * (bins_g[..., 1] - bins_g[..., 0])
