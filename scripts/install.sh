#!/usr/bin/env bash
# Creates the virtualenv and installs the pinned dependency set plus this package (editable).
# uv resolves in ~40 s where pip takes minutes; pip is only used to bootstrap uv.
set -euo pipefail
PY=${1:-python3.11}
VENV=${2:-.venv}
command -v "$PY" >/dev/null || PY=python3
"$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found %s" % sys.version' 
# The browser end-to-end test (tests/e2e/test_airflow_api.py) drives the Airflow and MLflow UIs
# with the system's headless Chromium and its driver; nothing is downloaded at test time.
CHROMIUM=${RECSYS_CHROMIUM:-/usr/bin/chromium}
CHROMEDRIVER=${RECSYS_CHROMEDRIVER:-/usr/bin/chromedriver}
if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ]; then
    echo "Installing chromium and chromium-driver (apt-get) for the browser test"
    if [ "$(id -u)" -eq 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else SUDO=(false); fi
    if ! command -v apt-get >/dev/null || ! { "${SUDO[@]}" apt-get update -q \
            && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }; then
        echo "WARNING: could not install chromium and chromium-driver: this needs apt-get, run as root" \
             "or with sudo. Without them the browser end-to-end test fails. Install them by hand, or" \
             "point RECSYS_CHROMIUM and RECSYS_CHROMEDRIVER at a Chromium and its matching driver." >&2
    fi
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check uv
# torch 2.13.0: a CPU wheel may lie on local disk (uv does not look there by itself).
# Without one, PyPI's default Linux wheel (CUDA build) is installed. GPU users: see README "GPU".
TORCH_WHEEL=$(ls /opt/wheels/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -n1 || true)
echo "Installing dependencies into $VENV ${TORCH_WHEEL:+(torch from $TORCH_WHEEL)}"
"$VENV/bin/uv" pip install --python "$VENV/bin/python" \
    -r requirements.txt -r requirements-dev.txt --override overrides.txt \
    ${TORCH_WHEEL:+"$TORCH_WHEEL"} -e .
# pyspark-client (a dependency of the Spark provider) would overwrite pyspark's files; it is
# excluded by overrides.txt. Check that the Python side matches the Spark jars.
"$VENV/bin/python" - <<'PY'
import pathlib, pyspark
jars = pathlib.Path(pyspark.__file__).parent / "jars"
core = sorted(jars.glob("spark-core_*.jar"))
assert core, "pyspark has no jars: pyspark-client overwrote it; reinstall pyspark==4.3.0 --no-deps"
jar_version = core[0].stem.rsplit("-", 1)[-1]
assert pyspark.__version__ == jar_version, f"pyspark {pyspark.__version__} != jars {jar_version}"
import torch, airflow, mlflow
print(f"ok: pyspark {pyspark.__version__}, torch {torch.__version__}, airflow {airflow.__version__}, mlflow {mlflow.__version__}")
PY
