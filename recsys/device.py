"""Choose the torch device and the CPU thread count once, at the edge; everything below receives them.

Threads: torch's default is one intra-op thread per CPU the machine *has*, which thrashes when the
process may use fewer (a CPU affinity mask from ``taskset``/Kubernetes cpusets, or a cgroup CPU
quota from ``docker --cpus``/Kubernetes limits) or when N data-parallel ranks share the CPUs.
:func:`usable_cpus` reads what this process may really use; :func:`configure_threads` applies the
``train.threads`` setting (``auto`` = usable CPUs shared out among the local ranks).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")


def choose_device(preference: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if preference == "cpu":
        return torch.device("cpu")
    available = torch.cuda.is_available()
    if preference == "cuda" and not available:
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available "
                           "(install a CUDA build of torch, see README 'GPU', or use device: auto)")
    device = torch.device("cuda" if available else "cpu")
    if device.type == "cuda":
        log.info("training on %s", torch.cuda.get_device_name(device))
    return device


def _quota_v2(text: str) -> float | None:
    """``cpu.max`` of cgroup v2: ``"<quota> <period>"``, quota ``max`` = no limit."""
    parts = text.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = int(parts[0]), int(parts[1])
    return quota / period if quota > 0 and period > 0 else None


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
                     ) -> float | None:
    """The CPU quota (in CPUs, e.g. 1.5) the cgroups of this process impose, or None.

    cgroup v2: the smallest ``cpu.max`` on the path from this process's cgroup up to the root
    (a limit on a parent holds for its children). cgroup v1: ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` of the ``cpu`` controller (-1 = no limit).
    """
    quotas: list[float] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2 (unified)
            node = root / path.lstrip("/")
            while True:
                try:
                    q = _quota_v2((node / "cpu.max").read_text())
                except (OSError, ValueError):
                    q = None
                if q is not None:
                    quotas.append(q)
                if node == root or root not in node.parents:
                    break
                node = node.parent
        elif "cpu" in controllers.split(","):  # cgroup v1
            for base in (root / controllers, root / "cpu", root / "cpu,cpuacct"):
                try:
                    quota = int((base / "cpu.cfs_quota_us").read_text())
                    period = int((base / "cpu.cfs_period_us").read_text())
                except (OSError, ValueError):
                    continue
                if quota > 0 and period > 0:
                    quotas.append(quota / period)
                break
    return min(quotas) if quotas else None


def usable_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by its cgroup CPU quota
    (rounded down: 1.5 CPUs of quota run 1 thread without being throttled). At least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        n = min(n, math.floor(quota))
    return max(1, n)


def choose_threads(setting: int | str = "auto", local_ranks: int = 1, usable: int | None = None) -> int:
    """Intra-op threads for ``setting``: a number is taken as is; ``auto`` takes
    ``OMP_NUM_THREADS`` when it is set (the launcher or the user chose), else the usable CPUs
    shared out among the ``local_ranks`` processes of this machine."""
    if setting != "auto":
        n = int(setting)
        if n < 1:
            raise ValueError(f"threads must be 'auto' or >= 1, got {setting!r}")
        return n
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env)
    return max(1, (usable if usable is not None else usable_cpus()) // max(1, local_ranks))


def configure_threads(setting: int | str = "auto", local_ranks: int | None = None) -> int:
    """Set torch's intra-op threads from ``setting`` (see :func:`choose_threads`); returns them.

    ``local_ranks`` defaults to torchrun's ``LOCAL_WORLD_SIZE`` (1 outside torchrun)."""
    if local_ranks is None:
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    usable = usable_cpus()  # reads the affinity mask and the cgroup files once
    n = choose_threads(setting, local_ranks, usable)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    log.info("torch intra-op threads: %d (setting %s, usable CPUs %d, local ranks %d)",
             n, setting, usable, local_ranks)
    return n
