"""``dllm-report``: a study's dashboard from the runs on any MLflow server.

    dllm-report --experiment dllm-lab/decoding_ablation                 # every finished run of an experiment
    dllm-report --parent <run id>                                       # a sweep: the children of its run
    dllm-report --filter "tags.study = 'rl'" --baseline rl_base         # any MLflow filter on tags/params
    dllm-report --experiment dllm-lab/quickstart --out experiments/quickstart
    dllm-report --filter "tags.study = 'rl'" --ledger experiments/rl/per_problem.json --baseline rl_base --title rl

It prints the table (accuracy, NFE, temporal signals, the change against the baseline with a 95% interval),
writes ``dashboard.html`` (interactive, self-contained), ``dashboard.md`` and the PNG versions to ``--out``
(default ``experiments/<study>``), and logs the page beside the runs: as an artifact of the parent run, of
``--log-to RUN_ID``, or of a run of its own in the first experiment (``--no-log``: nowhere). The server is
``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else the project's ``mlflow.db``; a team server takes
``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` as every client does. A selection that matches
no finished run says so and exits with status 1. ``--ledger`` pools a training study's committed per-problem file
(``per_problem.json``) with the runs found, so a study whose runs were logged to other stores still has its page.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    from dllm_lab.paths import project_root

    root = project_root()
    parser = argparse.ArgumentParser(prog="dllm-report", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1], allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db"))
    parser.add_argument("--experiment", action="append", default=[], metavar="NAME",
                        help="an MLflow experiment (repeat for several)")
    parser.add_argument("--parent", metavar="RUN_ID", help="the children of this run (a sweep's parent run)")
    parser.add_argument("--filter", dest="filter_string", metavar="MLFLOW_FILTER",
                        help="an MLflow search filter, e.g. \"tags.study = 'rl'\" or \"tags.`preset.decoder` = 'med'\"")
    parser.add_argument("--baseline", help="the setting (or decoder preset) the others are paired against")
    parser.add_argument("--title", help="the page's title (default: the parent run's name or the experiment)")
    parser.add_argument("--out", type=Path, help="output folder (default experiments/<title>)")
    parser.add_argument("--ledger", type=Path, metavar="PER_PROBLEM_JSON",
                        help="a training study's per_problem.json, pooled with the runs found (needs --baseline, "
                             "the base model's arm)")
    parser.add_argument("--log-to", metavar="RUN_ID", help="log the page as an artifact of this run")
    parser.add_argument("--no-log", action="store_true", help="write files only; log nothing to MLflow")
    return parser


def main(argv: list[str] | None = None) -> None:
    from dllm_lab.evaluation.dashboard import NoRunsMatched, build_dashboard, dashboard_run, ledger_runs
    from dllm_lab.evaluation.study_runs import load_ledger
    from dllm_lab.paths import project_root

    parser = _parser()
    args = parser.parse_args(argv)
    ledger = []
    if args.ledger is not None:
        if not args.ledger.exists() or args.baseline is None:
            parser.error(f"--ledger {args.ledger}: " + ("no such file" if not args.ledger.exists() else
                                                        "name the base model's arm with --baseline"))
        ledger = ledger_runs(load_ledger(args.ledger), args.baseline)
    try:
        page = build_dashboard(args.tracking_uri, args.experiment, args.parent, args.filter_string, args.baseline,
                               args.title, ledger)
    except NoRunsMatched as err:
        sys.exit(f"dllm-report: {err}")
    except PermissionError as err:
        sys.exit(f"dllm-report: {err}")
    out = args.out or project_root() / "experiments" / page.title.split()[0].replace("/", "_")
    written = page.write(out)
    print(page.table())
    if not args.no_log:
        target = args.parent or args.log_to
        if target is None:
            experiment = args.experiment[0] if args.experiment else page.runs[0].experiment
            target = dashboard_run(args.tracking_uri, experiment, page.title, {"study": page.title})
        page.log_to(args.tracking_uri, target)
        print(f"\ndllm-report: {DASHBOARD} logged to run {target} on {args.tracking_uri}")
    print(f"dllm-report: wrote {', '.join(str(p) for p in written)}")


DASHBOARD = "dashboard.html"

if __name__ == "__main__":
    main()
