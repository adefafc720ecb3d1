"""`recsys score-pairs`: score given (user, item) pairs with one model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _score_pairs(args: argparse.Namespace) -> int:
    from recsys.models.base import UnsafeModelFile
    from recsys.score.pairs import read_pairs, score_pairs, write_scores
    from recsys.tracking import load_model_uri

    cfg = None
    if args.model_uri.startswith("models:/"):
        from recsys.config import load_config

        cfg = load_config(env=args.env)
    try:
        loaded = load_model_uri(args.model_uri, cfg)
    except UnsafeModelFile as exc:  # a crafted or foreign model file: nothing in it ran
        print(f"recsys score-pairs: {exc}", file=sys.stderr)
        return 2
    out = score_pairs(loaded.bundle, read_pairs(args.pairs))
    write_scores(out, args.out)
    print(f"scored {int(out['score'].notna().sum())} of {len(out)} pairs with "
          f"{loaded.name} v{loaded.version} -> {args.out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score-pairs", help="score given (user, item) pairs with one model")
    p.add_argument("--model-uri", required=True,
                   help="a local model bundle folder, models:/NAME@ALIAS or models:/NAME/VERSION")
    p.add_argument("--pairs", type=Path, required=True,
                   help="CSV or Parquet with user_id,item_id (or user_idx,item_idx)")
    p.add_argument("--out", type=Path, required=True, help="output .csv or .parquet (pairs + score)")
    p.add_argument("--env", default=None, help="config environment for the MLflow registry")
    p.set_defaults(func=_score_pairs)
