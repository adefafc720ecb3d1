#!/usr/bin/env bash
# Local Airflow on the embedded stores under $RECSYS_HOME/airflow (default ./var/airflow).
#   bash scripts/airflow.sh start   # api-server (UI + REST), scheduler, dag-processor, triggerer
#   bash scripts/airflow.sh stop    # stops every process group that `start` started
#   bash scripts/airflow.sh status
# AIRFLOW_PORT (default 8780; the task-log server takes the next one) picks the port; the environment comes from recsys/localenv.py, so the
# UI, the scheduler and `make demo` share one metadata DB, one connection set, one RECSYS_HOME.
# Closed by default: the api-server listens on 127.0.0.1 only (recsys/localenv.py), and everything
# this script and Airflow create (metadata DB, secrets, passwords, logs, pid files) is the owner's
# only: umask 077 here, the Airflow home 0700 and its stores 0600 (recsys.localenv).
set -euo pipefail
umask 077
cd "$(dirname "$0")/.."
REPO=$(pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
export RECSYS_HOME=${RECSYS_HOME:-$REPO/var}
PORT=${AIRFLOW_PORT:-8780}
RUN_DIR=$RECSYS_HOME/airflow/run
LOG_DIR=$RECSYS_HOME/airflow/logs/services
# The triggerer runs deferred work, the DAG's deadline alert among it: without it the UI shows a
# red Triggerer health badge and a missed deadline is never reported.
COMPONENTS=(api-server scheduler dag-processor triggerer)

is_running() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

start() {
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    # Shell exports of the Airflow environment, then DB migration + `gpu` pool (once), admin password.
    # A spark_default given by the caller (e.g. the standalone cluster, docs/cluster.md) is kept.
    local spark_conn=${AIRFLOW_CONN_SPARK_DEFAULT:-}
    eval "$("$PY" -m recsys.localenv --port "$PORT" --home "$RECSYS_HOME" env)"
    [ -z "$spark_conn" ] || export AIRFLOW_CONN_SPARK_DEFAULT=$spark_conn
    local password
    password=$("$PY" -m recsys.localenv --port "$PORT" --home "$RECSYS_HOME" init)
    for c in "${COMPONENTS[@]}"; do
        if is_running "$c"; then echo "$c already running (pid $(cat "$RUN_DIR/$c.pid"))"; continue; fi
        # setsid: each component leads its own process group, so `stop` also reaps its workers.
        setsid airflow "$c" >"$LOG_DIR/$c.log" 2>&1 </dev/null &
        echo $! >"$RUN_DIR/$c.pid"
        echo "started $c (pid $!, log $LOG_DIR/$c.log)"
    done
    printf 'waiting for http://127.0.0.1:%s ' "$PORT"
    for _ in $(seq 1 90); do
        if curl -sf "http://127.0.0.1:$PORT/api/v2/monitor/health" >/dev/null 2>&1; then
            echo "up"
            cat <<EOF

Airflow UI:  http://127.0.0.1:$PORT   (user: admin   password: $password)
DAGs:        recsys_nightly (Trigger -> form), recsys_consumer (runs after each publish)
Stores:      $RECSYS_HOME/airflow   logs: $LOG_DIR
Stop with:   make airflow-stop
EOF
            return 0
        fi
        printf '.'; sleep 2
    done
    echo; echo "api-server did not answer in 180 s; see $LOG_DIR/api-server.log" >&2
    return 1
}

stop() {
    local any=0
    for c in "${COMPONENTS[@]}"; do
        local pidfile="$RUN_DIR/$c.pid"
        [ -f "$pidfile" ] || continue
        local pid; pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -KILL -- "-$pid" 2>/dev/null || true
            echo "stopped $c (pid $pid)"; any=1
        fi
        rm -f "$pidfile"
    done
    [ "$any" = 1 ] || echo "no Airflow process started by this script is running"
}

status() {
    for c in "${COMPONENTS[@]}"; do
        if is_running "$c"; then echo "$c: running (pid $(cat "$RUN_DIR/$c.pid"))"; else echo "$c: stopped"; fi
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
