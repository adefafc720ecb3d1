"""The clean rules of :mod:`recsys.etl.clean` in DuckDB SQL: the benchmark's reference engine.

Single-node and not used by the pipeline; it exists to measure the Spark job against and to
cross-check its books (both engines must file every row the same way).
"""
from __future__ import annotations

from pathlib import Path

from recsys.config import CleanConfig
from recsys.etl.clean import (
    _EPOCH_MS_THRESHOLD,
    _REPLACEMENT_CHAR,
    _window,
    canonical_id_sql,
)
from recsys.etl.erasures import Erasures
from recsys.etl.landing import discover

_FIELDS = ("event_id", "user_id", "item_id", "event_type", "value", "ts")
_NO_FILE_REASON = "NULL::VARCHAR AS file_reason"


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _files(paths: list[Path]) -> str:
    return "[" + ", ".join(_q(str(p)) for p in paths) + "]"


def _raw_sql(con, folder: Path) -> list[str]:
    files = discover(folder)
    odd = [f.path.name for f in files if f.readable and (f.salvage or f.rows_reason)]
    if odd:  # the reference engine reads sound files only (the benchmark's generated data)
        raise ValueError(f"duck_clean cannot read damaged files or files with bad columns: {odd}")
    parts = []
    # One row per unreadable file, as recsys.etl.landing files it.
    for f in files:
        if f.lost_reason:
            parts.append("SELECT " + ", ".join(f"NULL::VARCHAR AS {c}" for c in _FIELDS) +
                         f", false AS malformed, {_q(f.path.name)} AS source_file, "
                         f"{_q(f.detail)} AS raw, {_q(str(f.lost_reason))} AS file_reason")
    files = [f for f in files if f.readable]
    js = [f.path for f in files if f.format == "json"]
    if js:
        # try(): DuckDB evaluates both sides of AND/CASE vectorized, so guards alone do not help.
        # json_valid() wants the whole line to be one value (no second object); a BOM is no part.
        line = "regexp_replace(line, '^\ufeff', '')"
        valid = f"coalesce(json_valid({line}) AND try(json_type({line})) = 'OBJECT', false)"
        fields = ", ".join(f"CASE WHEN {valid} THEN try(json_extract_string({line}, '$.{c}')) END AS {c}"
                           for c in _FIELDS)
        parts.append(
            f"SELECT {fields}, NOT {valid} AS malformed, parse_filename(filename) AS source_file, "
            f"line AS raw, {_NO_FILE_REASON} "
            f"FROM read_csv({_files(js)}, columns={{'line': 'VARCHAR'}}, header=false, "
            "delim='\x1f', quote='', escape='', auto_detect=false, filename=true) "
            "WHERE trim(line, ' ') <> ''")
    csvs = [f.path for f in files if f.format == "csv"]
    if csvs:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE csv_rows AS SELECT * FROM read_csv({_files(csvs)}, "
            "header=true, all_varchar=true, store_rejects=true, filename=true, "
            "auto_detect=true, quote='\"', escape='\"')")
        cols = con.execute("SELECT * FROM csv_rows LIMIT 0").description
        names = [c[0] for c in cols if c[0] != "filename"]
        record = "to_json(struct_pack(" + ", ".join(f'"{n}" := "{n}"' for n in names) + "))::VARCHAR"
        sel = ", ".join(c if c in names else f"NULL::VARCHAR AS {c}" for c in _FIELDS)
        parts.append(f"SELECT {sel}, false AS malformed, parse_filename(filename) AS source_file, "
                     f"{record} AS raw, {_NO_FILE_REASON} FROM csv_rows")
        # Rows with the wrong number of columns: one per rejected line, the line kept as raw.
        parts.append(
            "SELECT " + ", ".join(f"NULL::VARCHAR AS {c}" for c in _FIELDS) + ", true AS malformed, "
            f"parse_filename(s.file_path) AS source_file, e.csv_line AS raw, {_NO_FILE_REASON} FROM "
            "(SELECT DISTINCT scan_id, file_id, line, csv_line FROM reject_errors) e "
            "JOIN reject_scans s USING (scan_id, file_id)")
    pqs = [f.path for f in files if f.format == "parquet"]
    if pqs:
        sel = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" for c in _FIELDS)
        parts.append(f"SELECT {sel}, false AS malformed, parse_filename(filename) AS source_file, "
                     f"to_json(struct_pack({', '.join(f'{c} := {c}' for c in _FIELDS)}))::VARCHAR AS raw, "
                     f"{_NO_FILE_REASON} "
                     f"FROM read_parquet({_files(pqs)}, filename=true, union_by_name=true)")
    return parts


def _erased_sql(erasures: Erasures | None) -> str:
    """The erased_user rule (:func:`recsys.etl.clean.erased`): the keyed hash of the user id."""
    if not erasures:
        return "false"
    keys = "[" + ", ".join(_q(k) for k in sorted(erasures.user_keys)) + "]::VARCHAR[]"
    return f"coalesce(list_contains({keys}, sha256({_q(erasures.prefix)} || user_id)), false)"


def _routed_sql(ds: str, cfg: CleanConfig, erasures: Erasures | None = None) -> str:
    lo, hi = _window(ds, cfg)
    types = "[" + ", ".join(_q(t) for t in cfg.event_types) + "]"
    internal = "[" + ", ".join(_q(u) for u in cfg.internal_users) + "]::VARCHAR[]"
    pat = _q(cfg.id_pattern)
    bad_id = " OR ".join(f"NOT regexp_full_match({c}, {pat})" for c in ("event_id", "user_id", "item_id"))
    blank = " OR ".join(f"{c} IS NULL OR {c} = ''" for c in ("event_id", "user_id", "item_id"))
    lo_r, hi_r = cfg.rating_range
    finite = "(value_num IS NOT NULL AND isfinite(value_num))"
    ids = ", ".join(f"{canonical_id_sql(f'trim({c})', 'regexp_matches')} AS {c}"
                    for c in ("event_id", "user_id", "item_id"))
    # DuckDB text is valid UTF-8 by construction: only U+FFFD can mark undecoded bytes.
    bad_text = " OR ".join(f"coalesce(contains({c}, '{_REPLACEMENT_CHAR}'), false)" for c in ("raw", *_FIELDS))
    return f"""
    WITH t0 AS (
      SELECT {ids}, ({bad_text}) AS bad_text,
             lower(trim(event_type)) AS event_type, value AS value_raw,
             TRY_CAST(trim(value) AS DOUBLE) AS value_num, TRY_CAST(ts AS DOUBLE) AS num, ts,
             malformed, file_reason, source_file, raw FROM raw),
    t AS (
      SELECT * EXCLUDE (num, ts), coalesce(
        CASE WHEN num IS NOT NULL AND isfinite(num) AND abs(num) < 1e15 THEN make_timestamp(
          CAST(round(CASE WHEN abs(num) >= {_EPOCH_MS_THRESHOLD} THEN num / 1000 ELSE num END * 1e6) AS BIGINT)) END,
        TRY_CAST(TRY_CAST(trim(ts) AS TIMESTAMPTZ) AS TIMESTAMP)) AS ts_parsed FROM t0),
    r AS (
      SELECT *, CASE
        WHEN file_reason IS NOT NULL THEN file_reason
        WHEN {_erased_sql(erasures)} THEN 'erased_user'
        WHEN bad_text THEN 'bad_encoding'
        WHEN malformed THEN 'malformed_row'
        WHEN {blank} THEN 'missing_id'
        WHEN {bad_id} THEN 'malformed_id'
        WHEN event_type IS NULL OR NOT list_contains({types}, event_type) THEN 'unknown_event_type'
        WHEN ts_parsed IS NULL THEN 'bad_ts'
        WHEN epoch(ts_parsed) < {lo} OR epoch(ts_parsed) >= {hi} THEN 'ts_out_of_window'
        WHEN event_type = 'rating' AND NOT ({finite} AND value_num BETWEEN {lo_r} AND {hi_r}) THEN 'bad_value'
        WHEN event_type = 'purchase' AND NOT ((value_raw IS NULL OR value_raw = '') OR
             ({finite} AND value_num > 0 AND value_num <= {cfg.max_quantity})) THEN 'bad_value'
        WHEN list_contains({internal}, user_id) THEN 'internal_user'
      END AS reason FROM t),
    d AS (
      SELECT *, reason IS NULL AND row_number() OVER (
        PARTITION BY event_id, reason IS NULL ORDER BY ts_parsed, source_file, raw) > 1 AS duplicate
      FROM r),
    bots AS (
      SELECT user_id FROM d WHERE reason IS NULL AND NOT duplicate GROUP BY user_id
      HAVING count(*) > {cfg.bot_max_events_per_day})
    SELECT d.* REPLACE (CASE WHEN d.reason IS NULL AND NOT d.duplicate AND bots.user_id IS NOT NULL
                        THEN 'bot_user' ELSE d.reason END AS reason)
    FROM d LEFT JOIN bots USING (user_id)"""


def _weight_sql(cfg: CleanConfig) -> str:
    cases = " ".join(f"WHEN {_q(t)} THEN {'value_num * ' if t == 'rating' else ''}{float(w)}"
                     for t, w in cfg.event_weights.items())
    return f"CASE event_type {cases} END"


def clean(folder: Path, out: Path, ds: str, cfg: CleanConfig, threads: int = 2,
          erasures: Erasures | None = None) -> dict:
    """Clean ``folder`` into ``out/{clean,quarantine}.parquet``; return the books. ``erasures``
    (the tombstone of ``recsys forget``) files erased users' rows under ``erased_user``, without
    their payload, as the Spark job does."""
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}; SET TimeZone = 'UTC'")
    con.execute("CREATE TEMP TABLE raw AS " + " UNION ALL ".join(_raw_sql(con, folder)))
    con.execute("CREATE TEMP TABLE routed AS " + _routed_sql(ds, cfg, erasures))
    value = "CASE WHEN event_type IN ('rating', 'purchase') THEN value_num END"
    con.execute(f"COPY (SELECT event_id, user_id, item_id, event_type, {value} AS value, "
                f"{_weight_sql(cfg)} AS weight, ts_parsed AS ts FROM routed "
                f"WHERE reason IS NULL AND NOT duplicate) TO {_q(str(out / 'clean.parquet'))} (FORMAT parquet)")
    con.execute(f"COPY (SELECT reason, source_file, CASE WHEN reason <> 'erased_user' THEN raw END AS raw "
                f"FROM routed WHERE reason IS NOT NULL) "
                f"TO {_q(str(out / 'quarantine.parquet'))} (FORMAT parquet)")
    raw, dup, = con.execute("SELECT count(*), count(*) FILTER (duplicate) FROM routed").fetchone()
    clean_n = con.execute(f"SELECT count(*) FROM {_q(str(out / 'clean.parquet'))}").fetchone()[0]
    quar = con.execute(f"SELECT count(*) FROM {_q(str(out / 'quarantine.parquet'))}").fetchone()[0]
    reasons = dict(con.execute("SELECT reason, count(*) FROM routed WHERE reason IS NOT NULL "
                               "GROUP BY reason").fetchall())
    con.close()
    return {"books": {"raw": raw, "clean": clean_n, "duplicates": dup, "quarantined": quar},
            "reasons": reasons}

