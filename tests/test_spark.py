"""get_spark: a JVM it starts gets the config's settings at launch; spark-submit's --master wins."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # starts a JVM of its own (~15 s)

SCRIPT = textwrap.dedent("""
    import json
    from recsys.config import SparkConfig
    from recsys.spark import get_spark

    conf = SparkConfig(master="local[1]", app_prefix="t",
                       conf={"spark.driver.memory": "600m", "spark.ui.enabled": "false"})
    spark = get_spark("heap", conf)
    heap = spark.sparkContext._jvm.java.lang.Runtime.getRuntime().maxMemory()
    print(json.dumps({"heap_mb": heap / 2**20,
                      "memory": spark.conf.get("spark.driver.memory"),
                      "master": spark.sparkContext.master}))
    spark.stop()
""")


def test_a_jvm_started_by_get_spark_has_the_configured_driver_memory():
    # A fresh interpreter: the test session's own JVM is already running with other settings.
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["memory"] == "600m" and got["master"] == "local[1]"
    # The JVM's max heap follows -Xmx600m (a little less is reported); the default would be 1 GiB.
    assert 450 < got["heap_mb"] <= 600


def test_under_spark_submit_its_master_wins_over_the_config(tmp_path):
    script = tmp_path / "app.py"
    script.write_text(textwrap.dedent("""
        from recsys.config import SparkConfig
        from recsys.spark import get_spark

        spark = get_spark("submit", SparkConfig(master="local[3]", conf={"spark.ui.enabled": "false"}))
        print("MASTER=" + spark.sparkContext.master)
        spark.stop()
    """))
    submit = Path(sys.executable).parent / "spark-submit"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([str(submit), "--master", "local[1]", str(script)], capture_output=True,
                         text=True, timeout=180, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "MASTER=local[1]" in out.stdout
