"""Data-parallel training on ``torch.distributed``, launched by ``torchrun`` (nothing home-made).

Launch (see README, "Distributed training")::

    torchrun --nproc-per-node 2 -m neural3d train CONFIG ...        # or: neural3d train CONFIG --nproc 2
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m neural3d train ...

What each piece does:

* **process group** (:func:`init_from_env`): torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR`` / ``MASTER_PORT``; the group is initialised from them (``env://``) with backend ``nccl``
  when training on CUDA, ``gloo`` on CPU (``trainer.dist_backend`` overrides), and a collective timeout of
  ``trainer.dist_timeout_s`` seconds (default 1800, torch's own default): a rank that waits longer than that
  in a collective (a peer stalled, e.g. a paused live viewer or a long rank-0 evaluation) fails with a
  timeout error instead of hanging forever. On CUDA each process uses GPU ``LOCAL_RANK``. Without those
  variables nothing is initialised and training is the single-process code path, unchanged.
* **gradients** (:func:`all_reduce_gradients`, called by :meth:`Loop.train_step` between ``backward`` and
  gradient clipping): the gradients of ``task.module``'s parameters are summed over ranks with
  ``torch.distributed.all_reduce`` in flat buckets of at most ``bucket_mb`` and divided by the world size.
  Not ``DistributedDataParallel``: DDP only sees gradients of a forward called *through its wrapper*, and
  two tasks compute their loss outside ``module.forward`` (``SceneFamilyTask`` calls ``forward_scenes``,
  the point-cloud retention loss a second forward); an explicit all-reduce after ``backward`` serves every
  task alike and leaves the single-process step untouched. The price is no overlap of communication with
  the backward pass (DDP overlaps bucket by bucket).
* **batches** (:meth:`TrainTask.set_rank`): ``trainer.batch_size`` is the **global** batch; each of ``W``
  ranks trains on ``batch_size / W`` of it (``batch_size`` must divide). Chosen over "per-rank batch" so
  that a config means the same optimisation (batch, learning rate, steps) on any number of processes,
  a checkpoint resumes on another world size with the same batches, and 1 process and ``W`` processes
  are comparable step by step. The ray loader draws the global batch from its seeded generator on every
  rank (a few integers) and each rank takes its own slice: shards never overlap, and the data order is
  that of one process whatever ``W`` is. The other tasks do the same with their items (NID patches, the
  scene family's scenes, point-cloud shapes, LVSM's target images); GNT and LVSM on a scene mixture split
  the scenes instead (each rank loads only its part; ``methods/gnt/batches.py``). SinNeRF also splits every
  unseen patch (:func:`padded_shard`) and hands each rank the whole rendered patch (:func:`gather_shards`, a
  differentiable all-gather) for the patch terms.
* **batch statistics** (:func:`sum_over_ranks`): a loss term that is a statistic of the whole batch (NID's
  cv^2 of the expert importance and load) sums its per-rank parts with a differentiable all-reduce, so every
  rank's loss and the averaged gradient are one process's.
* **random numbers** (:class:`RankRNG`): two streams per process. The *shared* stream (the process's
  global torch RNG as one process would have it, carried in checkpoints as ``rng_cpu`` / ``rng_cuda``)
  drives ``task.step_begin`` -- occupancy / density-grid refreshes, proposal annealing -- so that state,
  which is not a gradient, is computed identically on every rank by construction (same parameters, same
  random cells). The *rank* stream drives everything else of a step (per-ray jitter, density noise) and is
  re-seeded every step from ``(seed, rank, step)``: ranks draw independent numbers, and a resumed run
  draws exactly what the uninterrupted one did, on any world size. Schedulers are functions of the step.
  :func:`replicas_agree` checks parameters and buffers across ranks (the loop does at every checkpoint).
* **one writer**: only :func:`~neural3d.training.run_dir.is_main_process` (rank 0) writes the run
  directory, logs and prints; the loop evaluates on rank 0 only and averages logged train metrics.

* **restarts**: under ``torchrun --max-restarts K`` a failed group is restarted; the CLI then resumes from the
  last checkpoint (``TORCHELASTIC_RESTART_COUNT`` > 0), and each attempt's process group lives under its
  own key prefix of torchrun's store.
* **evaluation and rendering**: ``neural3d eval`` / ``render`` (and ``gnt|lvsm eval|render``) under torchrun
  split the images / frames across ranks (``evaluate_split(..., distributed=True)``,
  ``render_frames(..., distributed=True)``) and rank 0 gathers and writes them, byte for byte what one process
  writes.
* **generated files**: code that writes missing data (a scene family, NID's renders) runs under
  :func:`main_first`: rank 0 writes, the others then read.

One process (no torchrun, or ``--nproc-per-node 1``) never calls a collective: behaviour is unchanged.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

DEFAULT_TIMEOUT_S = 1800.0
BACKENDS = ("auto", "nccl", "gloo")


def _dist():
    return torch.distributed


def is_distributed() -> bool:
    """True when a process group is initialised (torchrun, or the user's own ``init_process_group``)."""
    d = _dist()
    return d.is_available() and d.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if not is_distributed():
        return 0, 1
    return _dist().get_rank(), _dist().get_world_size()


def launched_by_torchrun() -> bool:
    """True when torchrun (or another env:// launcher) set ``RANK`` and ``WORLD_SIZE`` for this process."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_backend(backend: str, device: str = "auto") -> str:
    """``auto``: ``nccl`` when the run trains on CUDA (``device`` auto with CUDA present, or cuda), else ``gloo``."""
    if backend not in BACKENDS:
        raise ValueError(f"trainer.dist_backend must be one of {BACKENDS}, got '{backend}'")
    if backend != "auto":
        return backend
    on_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if on_cuda else "gloo"


def init_from_env(backend: str = "auto", *, device: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """Initialise the default process group from torchrun's environment (a no-op without it, or if done).

    Args:
        backend: ``auto`` | ``nccl`` | ``gloo`` (see :func:`resolve_backend`).
        device: the run's ``device`` setting (``auto`` / ``cpu`` / ``cuda``), for the backend choice; on CUDA
            the process is bound to GPU ``LOCAL_RANK``.
        timeout_s: collective timeout in seconds.
    Returns:
        True when a process group is (now) initialised.
    """
    if is_distributed():
        return True
    if not launched_by_torchrun():
        return False
    name = resolve_backend(backend, device)
    if name == "nccl":
        if not torch.cuda.is_available():
            raise RuntimeError("trainer.dist_backend=nccl needs CUDA; use gloo on CPU")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    timeout = datetime.timedelta(seconds=float(timeout_s))
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # torchrun's agent hosts the store and keeps it across --max-restarts attempts; env:// would reuse the
        # keys of the failed attempt (gloo then connects to the dead workers' addresses), so each attempt
        # gets its own key prefix on the agent's store
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        store = _dist().TCPStore(
            os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world, is_master=False, timeout=timeout
        )
        store = _dist().PrefixStore(f"/neural3d/attempt_{attempt}", store)
        _dist().init_process_group(backend=name, store=store, rank=rank, world_size=world, timeout=timeout)
    else:
        _dist().init_process_group(backend=name, timeout=timeout)
    return True


def shutdown() -> None:
    """Destroy the default process group when one is initialised (end of a command)."""
    if is_distributed():
        _dist().destroy_process_group()


def barrier() -> None:
    if is_distributed() and _dist().get_world_size() > 1:
        _dist().barrier()


def restarted_by_torchrun() -> bool:
    """True in a group that ``torchrun --max-restarts`` restarted after a failure (the command then resumes)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (a no-op without a process group).

    For code that creates files when they are missing (a generated scene family, its renders): rank 0
    writes them, the others find them written and only read, so nothing outside rank 0 writes.
    """
    if rank_and_world()[0] != 0:
        barrier()
    try:
        yield
    finally:
        if rank_and_world()[0] == 0:
            barrier()


def shard_slice(n: int, rank: int, world_size: int, what: str) -> slice | None:
    """Slice ``rank`` of ``world_size`` equal parts of ``n`` items (None for one process).

    Raises:
        ValueError: naming ``what`` (the config key of ``n``) when ``n`` does not divide by ``world_size``.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad rank {rank} of world size {world_size}")
    if world_size == 1:
        return None
    if n % world_size:
        raise ValueError(f"{what} = {n} must be divisible by the {world_size} data-parallel processes")
    per = n // world_size
    return slice(rank * per, (rank + 1) * per)


def padded_shard(n: int, rank: int, world_size: int, device=None) -> Tensor:
    """[ceil(n / world_size)] int64 indices of this rank's contiguous part of ``n`` items (all of them for one
    process); parts are equal-sized for :func:`gather_shards`: the last parts are padded with item ``n - 1``.

    Example: ``n = 5``, 2 ranks: rank 0 ``[0, 1, 2]``, rank 1 ``[3, 4, 4]``.
    """
    per = -(-n // world_size)
    return (torch.arange(per, device=device) + rank * per).clamp_(max=n - 1)


def gather_shards(part: Tensor, n: int) -> Tensor:
    """The ``n`` items of which every rank holds its :func:`padded_shard` ``part`` [ceil(n / W), ...] -> [n, ...].

    Differentiable: every rank gets the whole, and the backward pass sums the ranks' gradients of the whole
    into each rank's part (gloo: all-to-all; NCCL: reduce-scatter), so a loss computed identically on every rank
    from the whole gives, after the loop's gradient averaging, one process's gradient. One process: ``part[:n]``.
    """
    if rank_and_world()[1] == 1:
        return part[:n]
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(part), 0)[:n]


def sum_over_ranks(x: Tensor) -> Tensor:
    """``x`` summed over the ranks, differentiably (``x`` itself without a process group of > 1 ranks).

    For batch statistics of a loss that must be those of the global batch (NID's expert importance and
    load, summed over signals): every rank gets the sum, and the backward pass sums the ranks' output
    gradients into each rank's input gradient, so that after the loop's gradient averaging the step equals
    one process's on the whole batch.
    """
    if rank_and_world()[1] == 1:
        return x
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x)


@contextlib.contextmanager
def command_session() -> Iterator[None]:
    """A training command's span under torchrun: other ranks quiet, the process group destroyed at the end."""
    quiet_non_main()
    try:
        yield
    finally:
        shutdown()


def print_main(*args, **kwargs) -> None:
    """``print`` on rank 0 only (every process without a process group)."""
    if rank_and_world()[0] == 0:
        print(*args, **kwargs)


def quiet_non_main() -> None:
    """On ranks other than 0: silence Python warnings and library logging below ERROR (rank 0 speaks for all)."""
    rank = rank_and_world()[0] if is_distributed() else int(os.environ.get("RANK", "0") or 0)
    if rank == 0:
        return
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)


# ---------------------------------------------------------------------------------------------- tensors
def broadcast_module_(module: nn.Module, src: int = 0) -> None:
    """Copy ``module``'s parameters and buffers from rank ``src`` to every rank (the start of training)."""
    for t in [*module.parameters(), *module.buffers()]:
        _dist().broadcast(t.data, src)


def _buckets(tensors: Sequence[Tensor], cap_bytes: int) -> Iterable[list[int]]:
    """Indices of ``tensors`` grouped by (device, dtype), in order, each group at most ``cap_bytes`` (or one tensor)."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((t.device, t.dtype), []).append(i)
    for idx in groups.values():
        cur, size = [], 0
        for i in idx:
            nbytes = tensors[i].numel() * tensors[i].element_size()
            if cur and size + nbytes > cap_bytes:
                yield cur
                cur, size = [], 0
            cur.append(i)
            size += nbytes
        if cur:
            yield cur


def all_reduce_gradients(params: Iterable[nn.Parameter], world_size: int, *, bucket_mb: float = 25.0) -> int:
    """Average the gradients of ``params`` over the ranks in place; returns the bytes all-reduced.

    A parameter whose gradient is None on every rank keeps None (the optimiser skips it, as it would in one
    process); if only some ranks have one, the others contribute zeros. Sparse gradients are made dense.
    """
    d = _dist()
    params = [p for p in params if p.requires_grad]
    if not params:
        return 0
    dev = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=dev)
    d.all_reduce(has)  # which parameters have a gradient on some rank
    grads: list[Tensor] = []
    for p, n in zip(params, has.tolist()):
        if n == 0:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        elif p.grad.is_sparse:
            p.grad = p.grad.to_dense()
        grads.append(p.grad)
    total = 0
    for idx in _buckets(grads, int(bucket_mb * 2**20)):
        flat = torch.cat([grads[i].reshape(-1) for i in idx])
        d.all_reduce(flat)
        flat.div_(world_size)
        total += flat.numel() * flat.element_size()
        offset = 0
        for i in idx:
            g = grads[i]
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
    return total


def all_reduce_mean(values: dict[str, Tensor], world_size: int) -> dict[str, Tensor]:
    """The mean over ranks of detached scalar tensors (one all-reduce; logged train metrics)."""
    if not values:
        return values
    keys = sorted(values)
    dev = values[keys[0]].device
    flat = torch.stack([values[k].detach().float().reshape(()).to(dev) for k in keys])
    _dist().all_reduce(flat)
    flat.div_(world_size)
    return {k: flat[i] for i, k in enumerate(keys)}


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (picklable; returned unchanged by one process)."""
    if not is_distributed() or _dist().get_world_size() == 1:
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src)
    return box[0]


def max_over_ranks(values: Tensor) -> Tensor:
    """The element-wise maximum of ``values`` over the ranks (in place; one all-reduce)."""
    _dist().all_reduce(values, op=_dist().ReduceOp.MAX)
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on some rank (stop decisions that must agree)."""
    t = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    _dist().all_reduce(t, op=_dist().ReduceOp.MAX)
    return bool(t.item())


def replicas_agree(module: nn.Module) -> list[str]:
    """Names of ``module``'s parameters and buffers whose values differ between ranks ([] when all agree).

    Compares two float64 checksums per tensor (sum, and sum weighted by position) by all-reducing their
    maximum and minimum: equal extremes mean every rank holds the same checksums.
    """
    named = [*module.named_parameters(), *module.named_buffers()]
    if not named:
        return []
    dev = named[0][1].device
    sums = []
    for _, t in named:
        v = t.detach().reshape(-1).double()
        w = torch.arange(1, v.numel() + 1, device=v.device, dtype=torch.float64) / max(v.numel(), 1)
        sums.append(torch.stack([v.sum(), (v * w).sum()]).to(dev))
    s = torch.stack(sums)  # [n, 2]
    both = torch.cat([s, -s], dim=1)
    _dist().all_reduce(both, op=_dist().ReduceOp.MAX)
    hi, lo = both[:, :2], -both[:, 2:]
    same = (hi == lo) | (torch.isnan(hi) & torch.isnan(lo))
    return [name for (name, _), ok in zip(named, same.all(dim=1).tolist()) if not ok]


# ---------------------------------------------------------------------------------------------- RNG
def _mix(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 over the sequence): distinct inputs, unrelated streams."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x = z ^ (z >> 31)
    return x >> 1


def stream_seed(*values: int) -> int:
    """A 63-bit seed of a random stream named by integers, e.g. (seed, rank, step, tag) (see :func:`_mix`)."""
    return _mix(*values)


class RankRNG:
    """The shared and the per-rank random streams of a data-parallel process (see the module docstring).

    Args:
        seed: the run seed. rank: this process's rank. device: the training device (its CUDA stream too).
    """

    def __init__(self, seed: int, rank: int, device: torch.device) -> None:
        self.seed, self.rank, self.device = int(seed), int(rank), device
        self.shared_cpu = torch.get_rng_state()
        self.shared_cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def run_shared(self, fn, *args) -> None:
        """Call ``fn(*args)`` on the shared stream (identical on every rank), then keep its new state."""
        torch.set_rng_state(self.shared_cpu)
        if self.shared_cuda is not None:
            torch.cuda.set_rng_state(self.shared_cuda, self.device)
        try:
            fn(*args)
        finally:
            self.shared_cpu = torch.get_rng_state()
            if self.shared_cuda is not None:
                self.shared_cuda = torch.cuda.get_rng_state(self.device)

    def seed_rank_stream(self, step: int) -> None:
        """Seed the global RNG (CPU and the device's) with the rank stream of ``step``."""
        s = _mix(self.seed, self.rank, step)
        torch.manual_seed(s)  # seeds CPU and every CUDA device

    def state(self) -> dict[str, Tensor]:
        """Checkpoint keys: the shared stream (identical on every rank), as ``rng_cpu`` / ``rng_cuda``."""
        out = {"rng_cpu": self.shared_cpu}
        if self.shared_cuda is not None:
            out["rng_cuda"] = self.shared_cuda
        return out

    def load(self, state: dict) -> None:
        if "rng_cpu" in state:
            self.shared_cpu = state["rng_cpu"].cpu()
        if "rng_cuda" in state and self.shared_cuda is not None:
            self.shared_cuda = state["rng_cuda"].cpu()
