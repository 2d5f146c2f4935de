"""Run a training function on every visible GPU with torch DDP, or in-process on one device.

Kaggle's T4 machine has two GPUs. A notebook cannot use torchrun, so the workers are forked with
``torch.multiprocessing.start_processes(..., start_method="fork")`` (what accelerate's
``notebook_launcher`` does): a forked worker starts at once with the notebook's imports and its
prepared data, and ``fn`` may also be a function defined in a notebook cell, which the ``spawn``
start method cannot pickle. Each worker joins a ``torch.distributed`` process group (nccl on
GPUs, gloo on CPU) and calls ``fn(rank, world_size, *args)``; ``templates.train`` then wraps the
model in DDP, all-reduces the losses and lets only rank 0 write and print.

Forking needs a parent in which CUDA is NOT initialised yet (a forked child cannot use a CUDA
context it inherited). When it is, ``launch_training`` says so and trains in-process on one GPU
rather than failing.
"""

import os
import pickle
import socket
import sys
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as torch_mp

from compat.torch_compat import cuda_device_count


class TrainingWorkerError(RuntimeError):
    """A forked training worker raised or died; the message holds its traceback or exit code."""


def visible_gpu_count() -> int:
    """CUDA devices torch can see (0 without CUDA); does not initialise CUDA (see
    `cuda_device_count`: `torch.cuda.is_available()` would poison the DDP fork)."""
    return cuda_device_count()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rank_device(rank: int) -> torch.device:
    """The device of worker ``rank``: ``cuda:rank`` when GPUs are visible, else the CPU."""
    return torch.device(f"cuda:{rank}") if visible_gpu_count() > 0 else torch.device("cpu")


def _worker(rank, world_size, backend, port, fn, args, result_path, threads):
    """Body of one forked worker: join the group, run ``fn``, hand rank 0's result back."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
    )
    if threads:
        torch.set_num_threads(threads)  # CPU workers share the cores instead of oversubscribing
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    try:
        result = fn(rank, world_size, *args)
        if rank == 0:
            # A file, not a queue: a large result in a pipe nobody reads until join deadlocks.
            with open(result_path, "wb") as fh:
                pickle.dump(result, fh)
    finally:
        dist.destroy_process_group()


def launch_training(fn, cfg=None, *, num_processes=None, backend=None, args=()):
    """Run ``fn(rank, world_size, *args)`` on every visible GPU; return rank 0's return value.

    ``num_processes``: default one per visible GPU. With <= 1 process, ``fn(0, 1, *args)`` runs
    in this process (no process group). ``backend``: default ``"nccl"`` on GPUs, ``"gloo"`` on
    CPU (CPU multi-process runs are for tests). ``cfg`` is accepted for the notebook's one-line
    call and is not read here (``fn`` gets it through ``args``).
    """
    n_gpu = visible_gpu_count()
    n = n_gpu if num_processes is None else int(num_processes)
    if n <= 1:
        return fn(0, 1, *args)
    if backend is None:
        backend = "nccl" if n_gpu >= n else "gloo"
    if backend == "nccl" and n > n_gpu:
        raise ValueError(f"launch_training: {n} processes asked, only {n_gpu} GPU(s) visible")
    if sys.platform == "win32":
        print("launch_training: fork is unavailable on Windows; training in-process on one device")
        return fn(0, 1, *args)
    if n_gpu and torch.cuda.is_initialized():
        print(
            f"launch_training: CUDA is already initialised in this process, so forked workers "
            f"cannot use the {n_gpu} GPUs; training on ONE GPU. Restart the kernel and run "
            f"training before anything touches CUDA to use all of them."
        )
        return fn(0, 1, *args)
    threads = 0 if backend == "nccl" else max(1, torch.get_num_threads() // n)
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="launch_training_") as tmp:
        result_path = Path(tmp) / "rank0.pkl"
        print(f"launch_training: {n} processes ({backend})", flush=True)
        try:
            torch_mp.start_processes(
                _worker,
                args=(n, backend, port, fn, tuple(args), str(result_path), threads),
                nprocs=n, join=True, start_method="fork",
            )
        except (torch_mp.ProcessRaisedException, torch_mp.ProcessExitedException) as exc:
            # start_processes terminates the other workers (a rank waiting in a collective for
            # the dead one would hang forever) and raises with the worker's traceback.
            raise TrainingWorkerError(
                f"training worker (rank {exc.error_index}) failed, the run ends here:\n{exc}\n"
                f"(A rank waiting for a dead one fails too, e.g. with a closed connection: the "
                f"first cause may be another rank's.) If the multi-GPU path misbehaves on this "
                f"machine, set GPUS = 1 (trains in-process on one GPU)"
            ) from exc
        if not result_path.exists():
            raise RuntimeError("launch_training: rank 0 finished without returning a result")
        with open(result_path, "rb") as fh:
            return pickle.load(fh)


def is_main_process() -> bool:
    """True outside distributed runs and on rank 0 within them."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
