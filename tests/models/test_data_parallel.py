"""Data-parallel training (recsys.distributed, loop.data_parallel_loss): the shard arithmetic, and
every data-parallel family trained by 2 ranks under torchrun (gloo), ending with the same weights
on both ranks and still learning the blocks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from recsys import distributed
from recsys.models.registry import model_class

ROOT = Path(__file__).resolve().parents[2]
DATA_PARALLEL = ("mf_bpr", "multvae", "neumf", "two_tower")


def test_the_torch_families_declare_data_parallel():
    assert {n for n in DATA_PARALLEL if model_class(n).data_parallel} == set(DATA_PARALLEL)
    assert not model_class("ease").data_parallel and not model_class("ials").data_parallel


@pytest.mark.parametrize("n, world", [(10, 2), (11, 2), (7, 3), (1, 2), (1000, 4)])
def test_shards_are_disjoint_equal_sized_and_cover_every_row(monkeypatch, n, world):
    monkeypatch.setattr(distributed, "world_size", lambda: world)
    shards = []
    for r in range(world):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shards.append(distributed.shard(n, seed=3))
    assert {len(s) for s in shards} == {-(-n // world)}  # same step count on every rank
    together = np.concatenate(shards)
    assert set(together) == set(range(n))  # every row trains
    assert len(together) - len(set(together)) == len(together) - n  # repeats: only the padding
    assert distributed.local_batch(8192) * world >= 8192


def test_one_process_is_not_sharded():
    assert not distributed.is_distributed() and distributed.is_main()
    np.testing.assert_array_equal(distributed.shard(5, seed=1), np.arange(5))
    assert distributed.local_batch(64) == 64
    assert distributed.all_reduce_sum([1.0, 2.0]) == [1.0, 2.0]


def test_launched_reads_the_marker_or_the_launcher_environment(monkeypatch):
    monkeypatch.delenv(distributed.CHILD_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not distributed.launched()
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun with one process: still a launched rank
    assert distributed.launched()
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv(distributed.CHILD_ENV, "1")
    assert distributed.launched()


def test_the_train_job_relaunches_with_the_same_arguments():
    from jobs._common import to_argv
    from jobs.train import build_parser

    p = build_parser()
    args = p.parse_args(["--ds", "2026-01-02", "--set", "a.b=1", "--set", "train.processes=2",
                         "--models", "mf_bpr,neumf", "--epochs", "3", "--max-restarts", "2"])
    assert p.parse_args(to_argv(p, args)) == args
    cmd = distributed.torchrun_command(2, "jobs.train", to_argv(p, args), max_restarts=2)
    assert cmd[1:3] == ["-m", "torch.distributed.run"] and "--nproc-per-node=2" in cmd
    assert cmd[cmd.index("-m", 3):][:2] == ["-m", "jobs.train"]


def test_a_spark_launch_needs_a_slot_per_rank():
    from types import SimpleNamespace

    spark = SimpleNamespace(sparkContext=SimpleNamespace(defaultParallelism=1))
    with pytest.raises(RuntimeError, match="2 ranks need 2 task slots"):  # not a barrier hang
        distributed.launch_spark(spark, 2, "jobs/train.py", [])
    env = distributed.spark_executor_env("/code")
    assert env["spark.executorEnv.PYTHONPATH"] == "/code"
    assert env[f"spark.executorEnv.{distributed.CHILD_ENV}"] == "1"


WORKER = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    sys.path.insert(0, {tests!r})
    from models.conftest import make_blocks
    from models.test_contract import FAST
    from recsys import distributed
    from recsys.models import FitOptions, build_model
    torch.set_num_threads(1)
    train, held = make_blocks()
    out = {{}}
    with distributed.process_group():
        for name in {families!r}:
            history = []
            model = build_model(name, FAST[name]).fit(
                train, FitOptions(seed=7, on_epoch=lambda e, m: history.append(m)))
            flat = torch.cat([p.detach().flatten() for p in model.module.parameters()])
            everyone = [torch.empty_like(flat) for _ in range(distributed.world_size())]
            torch.distributed.all_gather(everyone, flat)
            items, _ = model.recommend(np.arange(train.n_users), 1)
            out[name] = {{
                "same_weights": all(torch.equal(everyone[0], w) for w in everyone),
                "samples": [m["samples"] for m in history],
                "losses": [m["loss"] for m in history],
                "first": float(np.mean(items[:, 0] == held)),
            }}
    out["world"] = int(__import__("os").environ["WORLD_SIZE"])
    json.dump(out, open(sys.argv[1] + f"/rank{{__import__('os').environ['RANK']}}.json", "w"))
""")


@pytest.mark.slow
def test_every_data_parallel_family_trains_on_two_ranks(tmp_path, blocks):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(ROOT / "tests"), families=DATA_PARALLEL))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           str(script), str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world"] == 2
    n_train = len(blocks[0])
    for name in DATA_PARALLEL:
        r0, r1 = ranks[0][name], ranks[1][name]
        assert r0["same_weights"] and r1["same_weights"], name  # DDP kept the replicas equal
        assert r0["losses"] == r1["losses"] and r0["samples"] == r1["samples"], name  # reduced
        if name != "multvae":  # rows sharded (multvae shards users; samples are their rows)
            assert min(r0["samples"]) >= n_train, (name, r0["samples"])
        # Still learns the blocks: the one unseen item of the user's block first (the contract's
        # test at N=1 asks it of every user; random would be ~1/13).
        assert r0["first"] >= 0.9, (name, r0["first"])
