"""Run the official TensoRF code (a checkout outside the project) as the peer of a race, in turns.

Started by ``benchmarks/race_tensorf.py`` as a subprocess with the project's Python::

    python benchmarks/tensorf_peer.py --tensorf /work/peers/TensoRF --budget 540 --eval-every 60 \
        --data ../shared/data/nerf_synthetic/lego -- --config configs/lego.txt --N_vis 0 ...

Nothing of TensoRF is copied or changed: this module imports its ``train.py`` and runs ``reconstruction``
unchanged, with these stand-ins around it:

* ``torchvision.transforms.ToTensor`` (only image conversion; torchvision is not a dependency of the project),
  and the Blender images: every frame is read, area-downscaled and composited on white by **neural3d's** loader
  (``load_image_stack``), so both sides train and are scored on the same float pixels (TensoRF's own loader
  would resize with Lanczos, and at ``downsample_train != 1`` it does not resize at all: it resets
  ``self.downsample`` to 1 before reading). Alpha is handed over as 1, so TensoRF's blend returns the
  composited colour unchanged. Its ``test`` split is read from ``val`` (the developers' copy has no test).
  LLFF (``--dataset llff``): TensoRF's loader reads ``images_4/<name>`` and resizes it with Lanczos; the stand-in
  hands it ``images_<factor>/<name>`` as neural3d's LLFF loader reads it (the same float pixels; the size is
  checked, nothing is resized). Its poses, NDC rays and hold-out (every 8th view as ``test``) are its own.
* kornia's ``create_meshgrid`` (pixel-index grid), OpenCV, tensorboard's ``SummaryWriter``, plyfile and
  scikit-image when they are not installed: the first feeds ray generation (same integer grid), the others are
  imported but not used by training (logging, mesh export). LPIPS is never called (``--render_test 0``).
* The training loop's progress bar (``tqdm``) is replaced by an iterator that yields the same iteration numbers
  and, between two iterations, keeps the peer's clock, evaluates, and hands the turn back (below).

Clock and turns: the training clock (``--clock``) is the process CPU time (default) or the wall time spent
between consecutive iterations of the loop (loss, backward, Adam, alpha-mask updates and upsampling included;
data loading, set-up and evaluation excluded).
The parent sends ``{"cmd": "run", "until": T}`` on stdin; the peer trains until its clock reaches ``T``,
answers ``{"event": "turn", ...}`` on its protocol pipe and blocks until the next command, so the two sides
never train at the same time and load from other processes falls on both alike. Every ``eval_every`` seconds of
its clock it renders ``n_images`` evenly spaced val views (the parent's choice of views) with TensoRF's own
renderer and reports PSNR; at the budget (or the last iteration) it scores all val views (PSNR, SSIM with
neural3d's metrics) and reports ``{"event": "final", ...}`` with steps, samples per ray and peak memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch


def _protocol_out():
    """A line-buffered writer on the real stdout; ``sys.stdout`` goes to stderr (TensoRF prints a lot)."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _install_stand_ins() -> None:
    """Modules TensoRF imports that are absent here, each replaced by what training uses of it (or nothing)."""

    class ToTensor:  # torchvision.transforms.ToTensor on what our image stand-in returns: [H, W, C] -> [C, H, W]
        def __call__(self, img):
            arr = np.asarray(img, dtype=np.float32)
            arr = arr / 255.0 if np.asarray(img).dtype == np.uint8 else arr
            return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    def create_meshgrid(height, width, normalized_coordinates=True, device=None, dtype=torch.float32):
        """kornia's grid [1, H, W, 2] of (x, y); pixel indices when not normalised."""
        xs = torch.linspace(0, width - 1, width, device=device, dtype=dtype)
        ys = torch.linspace(0, height - 1, height, device=device, dtype=dtype)
        if normalized_coordinates:
            xs, ys = (xs / (width - 1) - 0.5) * 2, (ys / (height - 1) - 0.5) * 2
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)
        return grid[None]

    class SummaryWriter:  # tensorboard logging: not part of training
        def __init__(self, *a, **k):
            pass

        def add_scalar(self, *a, **k):
            pass

    stand_ins = {
        "torchvision": {},
        "torchvision.transforms": {"ToTensor": ToTensor},
        "kornia": {"create_meshgrid": create_meshgrid},
        "cv2": {"COLORMAP_JET": 2},
        "plyfile": {},
        "skimage": {},
        "skimage.measure": {},
        "torch.utils.tensorboard": {"SummaryWriter": SummaryWriter},
    }
    for name, attrs in stand_ins.items():
        try:
            if name == "torchvision.transforms":
                raise ImportError  # always the stand-in (our images are float arrays, not PIL images)
            __import__(name)
        except ImportError:
            mod = types.ModuleType(name)
            mod.__dict__.update(attrs)
            sys.modules[name] = mod
            parent, _, child = name.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, mod)


class _Images:
    """Stand-in for ``PIL.Image`` in TensoRF's Blender loader: frames come from neural3d's loader."""

    LANCZOS = None

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def open(self, path):
        from neural3d.data.images import load_image_stack

        rgb, _, _ = load_image_stack([Path(path)], factor=self.factor, background=(1.0, 1.0, 1.0))
        return np.concatenate([rgb[0], np.ones_like(rgb[0][..., :1])], -1)  # RGBA, alpha 1: blend is a no-op


class _LLFFImage:
    """What TensoRF's LLFF loader calls on an opened image (``convert``, ``resize``): the pixels are fixed at open."""

    def __init__(self, rgb: np.ndarray) -> None:
        self.rgb = rgb  # [H, W, 3] float32 in [0, 1]

    def convert(self, _mode):
        return self

    def resize(self, size, _filter=None):
        if tuple(size) != (self.rgb.shape[1], self.rgb.shape[0]):
            raise ValueError(f"tensorf_peer.py: the LLFF stand-in holds {self.rgb.shape[1::-1]} pixels, asked {size}")
        return self

    def __array__(self, dtype=None, copy=None):
        return self.rgb if dtype is None else self.rgb.astype(dtype)


class _LLFFImages:
    """Stand-in for ``PIL.Image`` in TensoRF's LLFF loader, which reads ``images_4/<name>`` and resizes it with
    Lanczos to ``img_wh``: the frame is ``images_<factor>/<name>`` read by **neural3d's** LLFF loader instead (the
    same float pixels neural3d trains on; ``resize`` checks the size and changes nothing)."""

    LANCZOS = None

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def open(self, path):
        from neural3d.data.images import load_image_stack

        path = Path(path)
        small = path.parent.parent / f"images_{self.factor}" / path.name
        rgb, _, _ = load_image_stack([small], keep_alpha=False)
        return _LLFFImage(rgb[0])


class PeerClock:
    """The loop's iterator: yields iteration numbers, keeps the clock, evaluates and hands turns back."""

    def __init__(self, n_iters: int, args, out, evaluator) -> None:
        self.n_iters, self.args, self.out, self.evaluator = n_iters, args, out, evaluator
        self.clock, self.until, self.next_eval = 0.0, 0.0, args.eval_every
        self.wall = self.cpu = 0.0  # wall and process CPU seconds of the training iterations
        self.it, self.last = 0, None
        self.samples = self.rays = 0

    def __iter__(self):
        return self

    def set_description(self, *_a, **_k) -> None:  # the loop calls this on its progress bar
        pass

    def _send(self, **msg) -> None:
        self.out.write(json.dumps(msg) + "\n")

    def _wait_turn(self) -> None:
        self._send(event="turn", t=self.clock, step=self.it)
        cmd = json.loads(sys.stdin.readline() or '{"cmd": "stop"}')
        if cmd["cmd"] != "run":
            os._exit(0)
        self.until = float(cmd["until"])

    def __next__(self) -> int:
        if self.last is not None:  # the iteration that just ended counts on the clocks
            self.wall += time.perf_counter() - self.last[0]
            self.cpu += time.process_time() - self.last[1]
            self.clock = self.cpu if self.args.clock == "cpu" else self.wall
        frame = sys._getframe(1)  # reconstruction(): its model and sample count
        if self.clock >= self.next_eval and self.it > 0:
            psnr = self.evaluator.psnr(frame.f_locals["tensorf"], self.args.eval_images)
            self._send(event="eval", t=self.clock, step=self.it, psnr=psnr)
            self.next_eval += self.args.eval_every
        if self.clock >= self.args.budget or self.it >= self.n_iters:
            self._final(frame.f_locals["tensorf"])
        while self.clock >= self.until:
            self._wait_turn()
        self.it += 1
        self.last = (time.perf_counter(), time.process_time())
        return self.it - 1

    def _final(self, tensorf) -> None:
        res = self.evaluator.score_all(tensorf)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self._send(
            event="final",
            t=self.clock,
            wall_s=self.wall,
            cpu_s=self.cpu,
            step=self.it,
            steps_per_s=self.it / max(self.clock, 1e-9),
            samples_per_ray=self.samples / max(self.rays, 1),
            peak_rss_mb=peak,
            **res,
        )
        os._exit(0)


class Evaluator:
    """Renders val views with TensoRF's renderer (its test-time sample count) and scores them like neural3d."""

    def __init__(self, dataset, renderer, n_curve: int, n_final: int, ndc_ray: bool = False) -> None:
        self.n_curve, self.n_final = n_curve, n_final  # views of the curve points and of the final score (0: all)
        self.white_bg, self.ndc_ray = bool(dataset.white_bg), bool(ndc_ray)  # as train.py's final evaluation
        self.rays = dataset.all_rays  # [n, H*W, 6]
        self.rgbs = dataset.all_rgbs  # [n, H, W, 3]
        self.renderer = renderer

    @torch.no_grad()
    def _render(self, tensorf, i: int) -> torch.Tensor:
        h, w = self.rgbs.shape[1:3]
        rgb, *_ = self.renderer(
            self.rays[i], tensorf, chunk=4096, N_samples=-1, white_bg=self.white_bg, ndc_ray=self.ndc_ray, device="cpu"
        )
        return rgb.clamp(0.0, 1.0).reshape(h, w, 3)

    def _views(self, n: int) -> list[int]:
        total = len(self.rgbs)
        return list(range(total))[:: max(1, total // n)][:n]

    def psnr(self, tensorf, n: int) -> float:
        from neural3d.evaluation.metrics import psnr

        return float(np.mean([float(psnr(self._render(tensorf, i), self.rgbs[i])) for i in self._views(n)]))

    def score_all(self, tensorf) -> dict:
        from neural3d.evaluation.metrics import psnr, ssim

        ps, ss = [], []
        for i in self._views(self.n_final or len(self.rgbs)):
            pred = self._render(tensorf, i)
            ps.append(float(psnr(pred, self.rgbs[i])))
            ss.append(float(ssim(pred, self.rgbs[i])))
        final_views = self._views(self.n_final or len(self.rgbs))
        views = float(np.mean([ps[final_views.index(i)] for i in self._views(self.n_curve) if i in final_views]))
        return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "n_images": len(ps), "psnr_eval_views": views}


def _count_samples(clock: PeerClock, model_cls) -> None:
    """Counts the points whose density the model evaluates during training, per training ray."""
    original_density, original_forward = model_cls.compute_densityfeature, model_cls.forward

    def density(self, xyz):
        if self.training_ray_count:
            clock.samples += xyz.shape[0]
        return original_density(self, xyz)

    def forward(self, rays_chunk, *a, is_train=False, **k):
        if is_train:
            clock.rays += rays_chunk.shape[0]
        self.training_ray_count = is_train
        try:
            return original_forward(self, rays_chunk, *a, is_train=is_train, **k)
        finally:
            self.training_ray_count = False

    model_cls.compute_densityfeature, model_cls.forward, model_cls.training_ray_count = density, forward, False


def _held_out_dataset(name: str, factor: int, train):
    """Installs the image stand-in in TensoRF's loader ``name`` and returns the dataset class of its held-out
    views: lego's ``val`` (the developers' copy has no ``test``: "test" reads val), LLFF's ``test`` (every 8th)."""
    import dataLoader

    if name == "llff":
        import dataLoader.llff as llff

        llff.Image = _LLFFImages(factor)
        return llff.LLFFDataset
    import dataLoader.blender as blender

    blender.Image = _Images(factor)

    class BlenderVal(blender.BlenderDataset):
        def __init__(self, datadir, split="train", **kw):
            super().__init__(datadir, split="val" if split == "test" else split, **kw)

    train.dataset_dict = {**dataLoader.dataset_dict, "blender": BlenderVal}
    return BlenderVal


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tensorf", type=Path, required=True, help="TensoRF checkout")
    p.add_argument("--budget", type=float, default=540.0, help="training seconds")
    p.add_argument("--eval-every", type=float, default=60.0)
    p.add_argument("--eval-images", type=int, default=4)
    p.add_argument("--final-images", type=int, default=0, help="views of the final score (0: all)")
    p.add_argument("--factor", type=int, default=8)
    p.add_argument("--dataset", choices=("blender", "llff"), default="blender", help="TensoRF's dataset_name")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="what the budget and curve measure")
    p.add_argument("peer_args", nargs=argparse.REMAINDER, help="-- then TensoRF's own arguments")
    args = p.parse_args()
    out = _protocol_out()
    torch.set_num_threads(args.threads)
    _install_stand_ins()
    sys.path.insert(0, str(args.tensorf.resolve()))
    os.chdir(args.tensorf)
    sys.argv = ["train.py", *[a for a in args.peer_args if a != "--"]]

    import train
    from models.tensoRF import TensorVMSplit

    held_out = _held_out_dataset(args.dataset, args.factor, train)
    peer = train.config_parser()
    val = held_out(peer.datadir, split="test", downsample=peer.downsample_train, is_stack=True)
    evaluator = Evaluator(val, train.renderer, args.eval_images, args.final_images, ndc_ray=bool(peer.ndc_ray))
    clock = PeerClock(peer.n_iters, args, out, evaluator)
    _count_samples(clock, TensorVMSplit)
    train.tqdm = lambda *_a, **_k: clock
    torch.manual_seed(20211202)  # as train.py's __main__
    np.random.seed(20211202)
    train.reconstruction(peer)
    clock._final(None)  # not reached: the iterator reports the final score at its last iteration


if __name__ == "__main__":
    main()
