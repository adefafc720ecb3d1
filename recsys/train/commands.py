"""`recsys train` and `recsys evaluate`: the same code the DAG runs, without Airflow."""
from __future__ import annotations


def register(sub, bench_sub) -> None:
    from jobs._common import job_parser

    for name, help_ in (("train", "train model families for a ds (MLflow run + registered version)"),
                        ("evaluate", "champion/challenger gate for the versions trained for a ds")):
        parent = job_parser(help_)
        p = sub.add_parser(name, help=help_, parents=[parent], add_help=False)
        p.add_argument("--models", default=None, help="comma-separated families")
        if name == "train":
            p.add_argument("--epochs", type=int, default=None)
        p.set_defaults(func=_run(name))


def _run(name: str):
    def func(args) -> int:
        import importlib

        module = importlib.import_module(f"jobs.{name}")
        argv = ["--ds", args.ds] + sum((["--set", s] for s in args.set), [])
        if args.env:
            argv += ["--env", args.env]
        if args.conf_dir:
            argv += ["--conf-dir", str(args.conf_dir)]
        if args.models:
            argv += ["--models", args.models]
        if getattr(args, "epochs", None):
            argv += ["--epochs", str(args.epochs)]
        return module.main(argv)

    return func
