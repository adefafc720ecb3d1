"""Threads from the CPUs the process may really use (issue 13 item 5: torch's default one thread
per CPU of the machine thrashed on a 2-core box, multvae 900 s at 2 threads against 54 s at 1)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from recsys import device
from recsys.config import ConfigError, load_config


def _v2(tmp_path: Path, limits: dict[str, str], own: str = "/a/b") -> tuple[Path, Path]:
    root = tmp_path / "cg"
    for rel, text in limits.items():
        folder = root / rel.lstrip("/")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "cpu.max").write_text(text + "\n")
    (root / own.lstrip("/")).mkdir(parents=True, exist_ok=True)
    proc = tmp_path / "cgroup"
    proc.write_text(f"0::{own}\n")
    return root, proc


def test_cgroup_v2_quota_is_the_smallest_on_the_path_up(tmp_path):
    root, proc = _v2(tmp_path, {"/": "max 100000", "/a": "150000 100000", "/a/b": "max 100000"})
    assert device.cgroup_cpu_quota(root, proc) == pytest.approx(1.5)


def test_cgroup_v2_without_limits_has_no_quota(tmp_path):
    root, proc = _v2(tmp_path, {"/a/b": "max 100000"})
    assert device.cgroup_cpu_quota(root, proc) is None


def test_cgroup_v1_quota(tmp_path):
    root = tmp_path / "cg"
    cpu = root / "cpu,cpuacct"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("300000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "cgroup"
    proc.write_text("4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")
    assert device.cgroup_cpu_quota(root, proc) == pytest.approx(3.0)
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    assert device.cgroup_cpu_quota(root, proc) is None


def test_usable_cpus_is_capped_by_the_quota_rounded_down(monkeypatch):
    monkeypatch.setattr(device.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(device, "cgroup_cpu_quota", lambda: 2.5)
    assert device.usable_cpus() == 2
    monkeypatch.setattr(device, "cgroup_cpu_quota", lambda: 0.5)
    assert device.usable_cpus() == 1  # never 0
    monkeypatch.setattr(device, "cgroup_cpu_quota", lambda: None)
    assert device.usable_cpus() == 4


def test_usable_cpus_follows_the_affinity_mask_not_the_machine():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no affinity masks on this platform")
    assert device.usable_cpus() <= len(os.sched_getaffinity(0))


def test_auto_threads_share_the_usable_cpus_among_local_ranks(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "usable_cpus", lambda: 8)
    assert device.choose_threads("auto") == 8
    assert device.choose_threads("auto", local_ranks=2) == 4
    assert device.choose_threads("auto", local_ranks=16) == 1
    assert device.choose_threads(3, local_ranks=2) == 3  # a number is taken as is


def test_omp_num_threads_wins_over_auto(monkeypatch):
    monkeypatch.setattr(device, "usable_cpus", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert device.choose_threads("auto") == 1


def test_configure_threads_sets_torch_and_reads_torchruns_local_world_size(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(device, "usable_cpus", lambda: 4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    try:
        assert device.configure_threads("auto") == 1
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("LOCAL_WORLD_SIZE")
        assert device.configure_threads(2) == 2
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_config_takes_auto_or_a_positive_thread_count(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    assert load_config(env="local").train.threads == "auto"
    assert load_config(env="local", overrides={"train.threads": 1}).train.threads == 1
    for bad in (0, "many", 1.5):
        with pytest.raises(ConfigError, match="threads"):
            load_config(env="local", overrides={"train.threads": bad})
