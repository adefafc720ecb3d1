"""Quarantine reason codes: why a raw row was rejected (one code per row, first rule that fails).

The order of :data:`PRECEDENCE` is the order in which the rules are checked, so a row that breaks
several rules is filed under the most fundamental one.
"""
from __future__ import annotations

from enum import StrEnum


class QuarantineReason(StrEnum):
    # File-level: the file, not the row, is at fault (see recsys.etl.landing).
    UNREADABLE_FILE = "unreadable_file"      # one row per file nothing can be read from
    TRUNCATED_FILE = "truncated_file"        # one row for what follows the damage in a gzip stream
    BAD_COLUMNS = "bad_columns"              # every row of a file whose header/schema breaks the contract
    # Row-level.
    ERASED_USER = "erased_user"              # the user asked to be forgotten (recsys forget): payload dropped
    BAD_ENCODING = "bad_encoding"            # not valid UTF-8, or U+FFFD (a byte a reader could not decode)
    MALFORMED_ROW = "malformed_row"          # not one JSON object per line / CSV with wrong column count
    MISSING_ID = "missing_id"                # event_id, user_id or item_id null or blank
    MALFORMED_ID = "malformed_id"            # an id that breaks clean.id_pattern
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    BAD_TS = "bad_ts"                        # ts missing or unparseable
    TS_OUT_OF_WINDOW = "ts_out_of_window"    # outside [ds - late tolerance, ds + 1 day + early]
    BAD_VALUE = "bad_value"                  # rating/quantity not numeric or out of range
    INTERNAL_USER = "internal_user"          # user on clean.internal_users
    BOT_USER = "bot_user"                    # more events in the day than clean.bot_max_events_per_day


PRECEDENCE = tuple(QuarantineReason)
