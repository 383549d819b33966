"""Process groups for the data-parallel Hessian estimate (torch.distributed; gloo on CPU, NCCL on GPU).

`launch(fn, args, nproc, device)` runs ``fn(*args)`` on every rank of a group and returns rank 0's
result (``None`` on the other ranks):

* under ``torchrun`` (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT in the environment) each
  process joins the group torchrun describes and runs `fn` itself;
* else with ``nproc > 1`` it spawns `nproc` local workers (torch.multiprocessing, a free
  localhost port) and waits for them; a worker's exception is re-raised here (an InputError stays
  an InputError);
* else `fn` runs in this process (the single-process case of the same code).

Inside `fn`, `current()` is this rank's `Group`: its rank, world size, torch device, and the
collectives the Hessian loop needs (`sum_`: an all-reduce SUM, `agree`: rank 0's decision).
``device="cuda"`` gives each rank its own GPU (LOCAL_RANK under torchrun) and the NCCL backend.
torch is imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import socket
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

from onnx_hawq.errors import HawqError, InputError

log = logging.getLogger("onnx_hawq")
DEVICES = ("cpu", "cuda")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclasses.dataclass(frozen=True)
class Group:
    """One rank's view of the group. `device` None: leave the model where it is (no launch)."""

    rank: int = 0
    world: int = 1
    device: str | None = None

    def sum_(self, tensors: Sequence) -> list:
        """Sum each tensor over all ranks (one flattened all-reduce; tensors of one dtype)."""
        if self.world == 1 or not tensors:
            return list(tensors)
        import torch
        import torch.distributed as dist

        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        sizes = [t.numel() for t in tensors]
        return [part.reshape(t.shape) for part, t in zip(torch.split(flat, sizes), tensors)]

    def agree(self, flag: bool) -> bool:
        """Rank 0's `flag` on every rank (for decisions such as a wall-clock budget)."""
        if self.world == 1:
            return bool(flag)
        import torch
        import torch.distributed as dist

        t = torch.tensor([1.0 if flag else 0.0], device=self.device or "cpu")
        dist.broadcast(t, src=0)
        return bool(t.item())

    def check_same(self, value: float, what: str) -> None:
        """HawqError unless every rank holds the same `value` (e.g. a data fingerprint)."""
        import torch

        t = torch.tensor([value, -value], dtype=torch.float64, device=self.device or "cpu")
        if self.world > 1:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        if float(t[0]) != -float(t[1]):
            raise HawqError(f"{what} differs between ranks; every rank must see the same data in the same order")

    def shard(self, items: Sequence) -> list:
        """This rank's share of `items`: every world-th item from position rank."""
        return list(items)[self.rank::self.world]

    def check_batches(self, batches: Sequence) -> None:
        """HawqError unless every rank holds the same (inputs, target) batches (sizes and a checksum)."""
        if self.world == 1:
            return
        import torch

        total = 0.0
        for j, (inputs, target) in enumerate(batches):
            tensors = [t for t in (*inputs, target) if torch.is_tensor(t)]
            total += (j + 1) * sum(float(torch.nan_to_num(t.double()).sum()) + t.numel() for t in tensors)
        self.check_same(total, "the calibration data")

    def to_device(self, model, weights: dict) -> None:
        """Move `model` to this rank's device (None: leave it); the named weights must move with it."""
        if self.device is None:
            return
        import torch

        model.to(self.device)
        stray = [n for n, w in weights.items() if w.device != torch.device(self.device)]
        if stray:
            raise HawqError(f"layer weight(s) {', '.join(stray[:3])} are not parameters of the model; "
                            f"cannot move them to {self.device}")


_CURRENT: Group | None = None


def current() -> Group | None:
    """The group `launch` set up for this process, or None outside `launch`."""
    return _CURRENT


def torchrun_env() -> bool:
    """Whether this process was started by torchrun (or another env:// launcher)."""
    return all(v in os.environ for v in TORCHRUN_VARS)


def check_device(device: str, nproc: int) -> None:
    """InputError for an unknown device, `cuda` without a GPU, or more local ranks than GPUs."""
    if device not in DEVICES:
        raise InputError(f"--device {device!r} is not one of {', '.join(DEVICES)}")
    if nproc < 1:
        raise InputError("--nproc must be >= 1")
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InputError("--device cuda: no CUDA GPU is visible to torch (torch.cuda.is_available() is False)")
        if nproc > torch.cuda.device_count():
            raise InputError(f"--nproc {nproc} with --device cuda needs {nproc} GPUs; "
                             f"{torch.cuda.device_count()} visible")


def local_group(nproc: int, device: str) -> Group:
    """The one-process group of a call outside `launch`; on cpu the model stays where it is."""
    if nproc > 1:
        raise HawqError(f"nproc={nproc}: run the estimate through onnx_hawq.calibration.distributed.launch")
    check_device(device, 1)
    return Group(0, 1, None if device == "cpu" else rank_device(device, 0))


def rank_device(device: str, local_rank: int) -> str:
    """The torch device of a rank: 'cpu', or 'cuda:<local rank>' (made the current CUDA device)."""
    if device == "cpu":
        return "cpu"
    import torch

    torch.cuda.set_device(local_rank)
    return f"cuda:{local_rank}"


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_in_group(fn: Callable, args: tuple, group: Group, destroy: bool):
    """fn(*args) with `group` current; tears the process group down afterwards when `destroy`."""
    global _CURRENT
    _CURRENT = group
    try:
        return fn(*args)
    finally:
        _CURRENT = None
        if destroy:
            import torch.distributed as dist

            dist.destroy_process_group()


def _init(backend: str, init_method: str, rank: int, world: int) -> None:
    import torch.distributed as dist

    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world)


def _worker(rank: int, fn: Callable, args: tuple, nproc: int, device: str, port: int, outdir: str,
            level: int) -> None:
    """One spawned rank: join the group, run fn, rank 0 writes its result; an exception is written too."""
    logging.getLogger("onnx_hawq").setLevel(level if rank == 0 else logging.ERROR)
    if rank == 0 and not logging.getLogger().handlers:
        logging.basicConfig(format="%(message)s")
    if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores // nproc))
    try:
        dev = rank_device(device, rank)
        _init("nccl" if device == "cuda" else "gloo", f"tcp://127.0.0.1:{port}", rank, nproc)
        result = _run_in_group(fn, args, Group(rank, nproc, dev), destroy=True)
        if rank == 0:
            Path(outdir, "result.pkl").write_bytes(pickle.dumps(result))
    except BaseException as e:
        try:
            blob = pickle.dumps(e)
        except Exception:
            blob = pickle.dumps(HawqError(f"rank {rank}: {type(e).__name__}: {e}"))
        Path(outdir, f"error{rank}.pkl").write_bytes(blob)
        raise


def _worker_error(outdir: str, first: int | None) -> BaseException | None:
    """The exception of the rank that failed first (as spawn saw it), else a HawqError of any rank,
    else the lowest rank's (the others' are mostly lost connections to it)."""
    found = {int(p.stem[5:]): pickle.loads(p.read_bytes()) for p in Path(outdir).glob("error*.pkl")}
    if first in found:
        return found[first]
    ranked = sorted(found.items(), key=lambda kv: (not isinstance(kv[1], HawqError), kv[0]))
    return ranked[0][1] if ranked else None


def _spawn(fn: Callable, args: tuple, nproc: int, device: str):
    """Run fn on `nproc` spawned local ranks -> rank 0's result; a failing rank's exception is re-raised."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="hawq-dist-") as outdir:
        level = logging.getLogger("onnx_hawq").getEffectiveLevel()
        try:
            mp.spawn(_worker, args=(fn, args, nproc, device, free_port(), outdir, level), nprocs=nproc, join=True)
        except Exception as failure:
            error = _worker_error(outdir, getattr(failure, "error_index", None))
            if error is not None:
                raise error from None
            first_line = (str(failure).strip().splitlines() or [type(failure).__name__])[0]
            raise HawqError(f"a worker process failed: {first_line}") from failure
        return pickle.loads(Path(outdir, "result.pkl").read_bytes())


def _torchrun(fn: Callable, args: tuple, nproc: int, device: str):
    """Join the env:// group torchrun set up and run fn here; rank 0 returns the result."""
    import torch.distributed as dist

    if nproc != 1:
        raise InputError("--nproc is for local runs; under torchrun set the processes with --nproc-per-node")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", 0))
    check_device(device, int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
    dev = rank_device(device, local)
    if rank != 0:
        logging.getLogger("onnx_hawq").setLevel(logging.ERROR)
    owned = not dist.is_initialized()
    if owned:
        _init("nccl" if device == "cuda" else "gloo", "env://", rank, world)
    result = _run_in_group(fn, args, Group(rank, world, dev), destroy=owned)
    return result if rank == 0 else None


def launch(fn: Callable, args: tuple = (), nproc: int = 1, device: str = "cpu") -> Any:
    """fn(*args) on every rank of a process group (see module docstring) -> rank 0's result, None elsewhere.

    `fn` and `args` must be picklable when nproc > 1 (a module-level function).
    """
    if torchrun_env():
        return _torchrun(fn, args, nproc, device)
    check_device(device, nproc)
    if nproc == 1:
        return _run_in_group(fn, args, Group(0, 1, rank_device(device, 0)), destroy=False)
    return _spawn(fn, args, nproc, device)
