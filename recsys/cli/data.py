"""`recsys generate` (synthetic landing logs) and `recsys import movielens|csv`."""
from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    g = sub.add_parser("generate", help="write a seeded synthetic interaction log into a landing folder")
    g.add_argument("--landing", type=Path, required=True)
    g.add_argument("--start", required=True, help="first ds, YYYY-MM-DD")
    g.add_argument("--days", type=int, default=3)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--users", type=int, default=1000)
    g.add_argument("--items", type=int, default=500)
    g.add_argument("--events-per-day", type=int, default=5000)
    g.add_argument("--bad-row-rate", type=float, default=0.02)
    g.add_argument("--internal-rate", type=float, default=0.0,
                   help="share of events from internal/test accounts (quarantined as internal_user)")
    g.add_argument("--internal-users", help="comma-separated internal/test account ids "
                   "(default: clean.internal_users from conf/)")
    g.set_defaults(func=_generate)

    imp = sub.add_parser("import", help="import a public rating data set into a landing folder")
    kinds = imp.add_subparsers(dest="kind", required=True)
    ml = kinds.add_parser("movielens", help="MovieLens 100K / 1M / latest(-small), detected")
    csv = kinds.add_parser("csv", help="a delimited ratings file with a header")
    csv.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                     help="map user_id/item_id/rating/ts to the file's column names (repeatable)")
    csv.add_argument("--sep", default=None, help="delimiter (default: sniffed)")
    for p in (ml, csv):
        p.add_argument("--src", type=Path, required=True)
        p.add_argument("--landing", type=Path, required=True)
        p.add_argument("--default-ds", default="2024-01-01",
                       help="ds for rows without a timestamp (default 2024-01-01)")
        p.set_defaults(func=_import)


def _generate(args) -> int:
    from recsys.data.generator import generate_landing

    if args.internal_users is not None:
        internal = tuple(u.strip() for u in args.internal_users.split(",") if u.strip())
    else:
        from recsys.config import load_config

        internal = load_config().clean.internal_users
    report = generate_landing(args.landing, args.start, args.days, seed=args.seed, n_users=args.users,
                              n_items=args.items, events_per_day=args.events_per_day,
                              bad_row_rate=args.bad_row_rate, internal_users=internal,
                              internal_rate=args.internal_rate)
    print(json.dumps(report, indent=2))
    return 0


def _import(args) -> int:
    from recsys.data import importers
    from recsys.data.landing import write_landing

    if args.kind == "movielens":
        ratings, items, users = importers.read_movielens(args.src)
    else:
        mapping = dict(m.split("=", 1) for m in args.map)
        ratings, items, users = importers.read_delimited(args.src, mapping, sep=args.sep)
    print(json.dumps(write_landing(args.landing, ratings, items, users, args.default_ds), indent=2))
    return 0
