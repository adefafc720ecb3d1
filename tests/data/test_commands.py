"""`recsys generate` and `recsys import` on tiny inputs; `recsys clean` argument wiring."""
from __future__ import annotations

import pytest

from recsys.cli import build_parser, main


def test_generate_and_import_commands(tmp_path, capsys):
    assert main(["generate", "--landing", str(tmp_path / "gen"), "--start", "2024-01-01",
                 "--days", "1", "--users", "20", "--items", "10", "--events-per-day", "100"]) == 0
    assert (tmp_path / "gen" / "interactions" / "ds=2024-01-01").is_dir()
    src = tmp_path / "r.csv"
    src.write_text("who,what,stars\nA,x,4\n")
    assert main(["import", "csv", "--src", str(src), "--landing", str(tmp_path / "imp"),
                 "--map", "user_id=who", "--map", "item_id=what", "--map", "rating=stars",
                 "--default-ds", "2024-03-01"]) == 0
    assert (tmp_path / "imp" / "interactions" / "ds=2024-03-01" / "imported.parquet").exists()
    assert '"events": 1' in capsys.readouterr().out


def test_generate_with_internal_accounts(tmp_path, capsys):
    import json

    assert main(["generate", "--landing", str(tmp_path / "gen"), "--start", "2024-01-01",
                 "--days", "1", "--users", "20", "--items", "10", "--events-per-day", "400",
                 "--internal-rate", "0.1", "--internal-users", "qa-1,qa-2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 < report["internal_events"] < 400
    # A rate without any internal account to send events from is refused, not ignored.
    with pytest.raises(ValueError):
        main(["generate", "--landing", str(tmp_path / "g2"), "--start", "2024-01-01", "--days", "1",
              "--events-per-day", "50", "--internal-rate", "0.1", "--internal-users", ""])


def test_clean_and_features_take_the_job_arguments():
    args = build_parser().parse_args(["clean", "--ds", "2024-01-10", "--landing", "L", "--warehouse", "W"])
    assert (args.ds, str(args.landing), str(args.warehouse)) == ("2024-01-10", "L", "W")
    args = build_parser().parse_args(["features", "--ds", "2024-01-10", "--set", "features.lookback_days=7"])
    assert args.set == ["features.lookback_days=7"]
