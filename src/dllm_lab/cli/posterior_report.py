"""``python -m dllm_lab.cli.posterior_report [--tracking-uri URI] [--out DIR]``: the posterior SFT study table
from MLflow (experiments/posterior_sft/results.md)."""

from __future__ import annotations

import argparse
import os

from dllm_lab.paths import project_root


def main() -> None:
    from dllm_lab.evaluation.posterior_report import write_report

    root = project_root()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db"))
    parser.add_argument("--out", default=str(root / "experiments" / "posterior_sft"))
    args = parser.parse_args()
    print(write_report(args.tracking_uri, args.out))


if __name__ == "__main__":
    main()
