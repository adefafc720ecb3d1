"""A scoring run killed midway never damages the live partition; a re-run publishes a full one."""
from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from recsys import io
from recsys.config import ScoreConfig
from recsys.score.engine import pending_path, stage, write_topn
from recsys.score.publish import (
    publish,
    read_table,
    reference_from_training_set,
    verify_partition,
)
from tests.score.conftest import PROV, fit_bundle, make_data

DS = "2024-03-02"
CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from recsys.models import Interactions
    from recsys.score.engine import stage, write_topn
    from recsys.config import ScoreConfig
    from recsys.models.bundle import ModelBundle
    from tests.score.conftest import PROV, Data

    warehouse, bundle_dir, arrays = sys.argv[1:4]
    a = np.load(arrays, allow_pickle=True)
    data = Data(Interactions(a["u"], a["i"], a["w"], int(a["n_users"]), int(a["n_items"])),
                a["user_ids"], a["item_ids"])
    bundle = ModelBundle.load(bundle_dir)

    def slow(done, total):  # one user per block, slowed down so the parent can kill us midway
        print(f"block {done}/{total}", flush=True)
        time.sleep(0.2)

    stage(warehouse, "%s", lambda out: write_topn(
        bundle, data, PROV, out, ScoreConfig(top_n=3, block_size=1), on_block=slow))
    print("finished", flush=True)
""" % DS)


def _publish(warehouse, data):
    ref = reference_from_training_set(data)
    return publish(warehouse, DS, top_n=3, keep=3, reference=ref)


@pytest.mark.slow  # a child Python that imports torch: ~10 s alone, more on a busy machine
def test_killed_scoring_leaves_the_live_partition_and_a_rerun_publishes(tmp_path):
    warehouse = tmp_path / "warehouse"
    data = make_data(n_users=30, n_items=12, per_user=3)
    bundle = fit_bundle(data)
    old = dataclasses.replace(PROV, model_version="1")
    stage(warehouse, DS, lambda out: write_topn(bundle, data, old, out, ScoreConfig(top_n=3)))
    _publish(warehouse, data)
    live = io.partition_path(warehouse, "recommendations", DS)
    before = read_table(live)

    bundle.save(tmp_path / "bundle")
    inter = data.interactions
    np.savez(tmp_path / "data.npz", u=inter.user_idx, i=inter.item_idx, w=inter.weight,
             n_users=inter.n_users, n_items=inter.n_items, user_ids=data.user_ids, item_ids=data.item_ids)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(warehouse), str(tmp_path / "bundle"), str(tmp_path / "data.npz")],
        stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    try:
        blocks = 0
        for line in child.stdout:
            blocks += line.startswith("block")
            if blocks == 3:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait()
    assert blocks == 3, "the child finished or died before it could be killed midway"

    # The half-written attempt sits in staging; nothing is pending; the live partition is intact.
    attempts = list((warehouse / "_staging" / "recommendations").glob(f"ds={DS}.*"))
    assert len(attempts) == 1 and not pending_path(warehouse, DS).exists()
    assert verify_partition(live) and read_table(live).equals(before)
    with pytest.raises(FileNotFoundError, match="nothing staged"):
        _publish(warehouse, data)
    assert verify_partition(live) and read_table(live).equals(before)

    stage(warehouse, DS, lambda out: write_topn(bundle, data, PROV, out, ScoreConfig(top_n=3)))
    manifest = _publish(warehouse, data)
    assert manifest["user_count"] == 30 and manifest["row_count"] == 90
    assert set(read_table(live).column("model_version").to_pylist()) == {PROV.model_version}
    assert verify_partition(live)
    assert not list((warehouse / "_staging" / "recommendations").glob(f"ds={DS}.*"))
