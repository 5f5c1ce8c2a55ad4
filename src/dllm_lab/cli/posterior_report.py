"""``python -m dllm_lab.cli.posterior_report [--tracking-uri URI] [--out DIR]``: the posterior SFT study table
from MLflow (experiments/posterior_sft/results.md)."""

from __future__ import annotations

from dllm_lab.cli import study_report_main


def main() -> None:
    from dllm_lab.evaluation.posterior_report import write_report

    study_report_main(__doc__, "posterior_sft", write_report)


if __name__ == "__main__":
    main()
