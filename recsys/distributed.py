"""Data-parallel training: the process group, the rank helpers and the torchrun launcher.

Ground floor, so that the training loop (``models/loop.py``) and the families can ask "which rank
am I, of how many?" without importing upward. A process is one rank of N when a launcher
(torchrun, or Spark's TorchDistributor, which runs torchrun) started it: ``WORLD_SIZE``, ``RANK``
and ``LOCAL_RANK`` are in its environment. :func:`process_group` joins the group (gloo on CPU,
NCCL on CUDA) and leaves it; outside a group every helper answers for a single process (rank 0
of 1) and costs nothing, so the same code trains with 1 process or N.

:func:`launch` is how a job with ``train.processes: N`` re-launches itself: ``torchrun
--standalone --nproc-per-node N -m <module> <args>`` with :data:`CHILD_ENV` set, so the children
train instead of launching again. torch is imported lazily: the launching parent never loads it.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import subprocess
import sys
from typing import Any, Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

#: Set by :func:`launch` in its children's environment: "you are a rank, do not re-launch".
CHILD_ENV = "RECSYS_DDP_CHILD"
#: How long a collective waits for a peer that is alive but elsewhere (a peer that dies is seen
#: by torchrun at once, which stops the others). Long: rank 0 alone trains the families that are
#: not data-parallel and logs every family to MLflow while the other ranks wait.
TIMEOUT = dt.timedelta(hours=2)

def _dist():
    import torch.distributed as dist

    return dist


def _initialized() -> bool:
    if "torch" not in sys.modules:  # nothing could have joined a group without torch
        return False
    dist = _dist()
    return dist.is_available() and dist.is_initialized()


def launched() -> bool:
    """True in a process started by a launcher (torchrun, TorchDistributor, :func:`launch`)."""
    return os.environ.get(CHILD_ENV) == "1" or "WORLD_SIZE" in os.environ


def env_world_size() -> int:
    """The number of ranks the launcher started (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def world_size() -> int:
    """Ranks in the process group: 1 unless :func:`setup` joined one."""
    return _dist().get_world_size() if _initialized() else 1


def rank() -> int:
    return _dist().get_rank() if _initialized() else 0


def is_main() -> bool:
    """True on rank 0 (the rank that logs, registers and checkpoints) and without a group."""
    return rank() == 0


def is_distributed() -> bool:
    return world_size() > 1


def setup() -> None:
    """Join the process group when a launcher started this process as one of several ranks.

    gloo for CPU tensors, plus NCCL for CUDA tensors where CUDA is available. Without a launcher,
    or with a world of one, nothing is joined and every helper here answers for one process.
    """
    if env_world_size() <= 1 or _initialized():
        return
    import torch
    from torch.distributed.rendezvous import rendezvous

    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    store, rank_, world = next(rendezvous("env://", timeout=TIMEOUT))
    # torchrun's ranks share its agent's store, and that store outlives a restart of the ranks:
    # without a namespace per attempt, restarted ranks read the dead ranks' gloo addresses and
    # hang connecting to them (seen with torch 2.13). TORCHELASTIC_RESTART_COUNT numbers attempts.
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = _dist().PrefixStore(f"recsys/attempt_{attempt}", store)
    _dist().init_process_group(backend, store=store, rank=rank_, world_size=world, timeout=TIMEOUT)
    log.info("rank %d of %d joined the process group (%s)", rank(), world_size(), backend)


def teardown() -> None:
    """Leave the process group (a no-op outside one)."""
    if _initialized():
        _dist().destroy_process_group()


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """:func:`setup` on entry, :func:`teardown` on exit: what a job wraps its training in."""
    setup()
    try:
        yield
    finally:
        teardown()


def rank_device(device: Any) -> Any:
    """This rank's device: ``cuda:LOCAL_RANK`` (made current) for CUDA under a launcher, one
    GPU per rank; otherwise ``device`` as is."""
    import torch

    device = torch.device(device)
    if device.type == "cuda" and env_world_size() > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


def shard(n: int, seed: int) -> np.ndarray:
    """This rank's positions among ``n`` rows, sorted: one contiguous slice of a permutation
    seeded with ``seed`` (the same on every rank), so the shards are disjoint and cover all rows.

    Every rank gets ``ceil(n / N)`` rows (the permutation wraps to fill the last shard) so that
    every rank runs the same number of steps: DDP needs all ranks in each gradient all-reduce.
    With one process this is ``arange(n)``: training is unchanged.
    """
    world = world_size()
    if world == 1:
        return np.arange(n)
    per = -(-n // world)
    perm = np.resize(np.random.default_rng(seed).permutation(n), per * world)
    r = rank()
    return np.sort(perm[r * per:(r + 1) * per])


def local_batch(batch_size: int) -> int:
    """Per-rank batch that keeps the global batch at ``batch_size``: DDP averages the ranks'
    gradients, so N ranks of ``batch_size / N`` take the step one process of ``batch_size`` would."""
    return max(1, -(-batch_size // world_size()))


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (the values themselves with one process)."""
    if not is_distributed():
        return [float(v) for v in values]
    import torch

    t = torch.tensor([float(v) for v in values], dtype=torch.float64)  # CPU: gloo
    _dist().all_reduce(t)
    return t.cpu().tolist()


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (picklable) on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    _dist().broadcast_object_list(box, src=src, device="cpu")
    return box[0]


def barrier() -> None:
    if is_distributed():
        _dist().barrier()


def torchrun_command(nproc: int, module: str, args: Sequence[str],
                     max_restarts: int = 1) -> list[str]:
    """``torchrun --standalone`` (as ``python -m torch.distributed.run``) running ``-m module``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}",
            "-m", module, *args]


def launch(nproc: int, module: str, args: Sequence[str], max_restarts: int = 1) -> int:
    """Run ``python -m module args`` as ``nproc`` ranks under torchrun; its exit code.

    A rank that dies makes torchrun stop the others and start all ``nproc`` again, at most
    ``max_restarts`` times; training resumes from rank 0's last checkpoint.
    """
    env = {**os.environ, CHILD_ENV: "1"}
    # torchrun would set 1 thread per rank with a warning; share the cores out explicitly.
    from recsys.device import usable_cpus  # lazily: it imports torch

    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cpus() // nproc)))
    cmd = torchrun_command(nproc, module, args, max_restarts)
    log.info("launching %d ranks: %s", nproc, " ".join(cmd))
    return subprocess.run(cmd, env=env).returncode


def launch_spark(spark: Any, nproc: int, script: str | os.PathLike, args: Sequence[str],
                 use_gpu: bool = False) -> None:
    """Run ``python script args`` as ``nproc`` ranks with Spark's TorchDistributor: one barrier
    task per rank on the executors (one GPU each with ``use_gpu``), each running torchrun.

    The executors must hold the code at the same path, on their PYTHONPATH (see
    :func:`spark_executor_env`): modules shipped with ``addPyFile`` are not visible to the
    torchrun children. A barrier stage waits until all its tasks run at once, so fewer free task
    slots than ``nproc`` would hang: that is checked first. Raises when training fails.
    """
    slots = spark.sparkContext.defaultParallelism
    if slots < nproc:
        raise RuntimeError(f"{nproc} ranks need {nproc} task slots at once (a barrier stage waits "
                           f"for all of them) but this Spark application has {slots}")
    from pyspark.ml.torch.distributor import TorchDistributor

    log.info("launching %d ranks as Spark barrier tasks: %s %s", nproc, script, " ".join(args))
    TorchDistributor(num_processes=nproc, local_mode=False, use_gpu=use_gpu).run(
        str(script), *args)


def spark_executor_env(code_root: str | os.PathLike) -> dict[str, str]:
    """Spark settings that give :func:`launch_spark`'s ranks this process's code and settings:
    ``code_root`` on PYTHONPATH, the rank marker, and RECSYS_HOME / RECSYS_ENV / RECSYS_CONF."""
    env = {"PYTHONPATH": str(code_root), CHILD_ENV: "1"}
    env.update({k: os.environ[k] for k in ("RECSYS_HOME", "RECSYS_ENV", "RECSYS_CONF")
                if k in os.environ})
    return {f"spark.executorEnv.{k}": v for k, v in env.items()}


def relaunch(cfg: Any, module: str, script: str | os.PathLike, args: Sequence[str],
             launcher: str = "torchrun", max_restarts: int = 1) -> int:
    """Run this job again as ``cfg.train.processes`` ranks: ``python -m module args`` under
    torchrun on this machine, or ``python script args`` as Spark barrier tasks on the executors
    of ``cfg.spark`` (``launcher="spark"``). Returns the exit code (0, or raises, for Spark)."""
    nproc = cfg.train.processes
    if launcher != "spark":
        return launch(nproc, module, args, max_restarts=max_restarts)
    from recsys.spark import get_spark

    code_root = os.path.dirname(os.path.dirname(os.path.abspath(script)))
    conf = cfg.spark.model_copy(update={"conf": {**spark_executor_env(code_root), **cfg.spark.conf}})
    spark = get_spark("train", conf)
    try:
        launch_spark(spark, nproc, os.path.abspath(script), args,
                     use_gpu=cfg.train.device == "cuda")
    finally:
        spark.stop()
    return 0
