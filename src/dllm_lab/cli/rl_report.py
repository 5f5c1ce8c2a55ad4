"""``python -m dllm_lab.cli.rl_report [--tracking-uri URI] [--out DIR]``: the RL study table from MLflow."""

from __future__ import annotations

from dllm_lab.cli import study_report_main


def main() -> None:
    from dllm_lab.evaluation.rl_report import write_report

    study_report_main(__doc__, "rl", write_report)


if __name__ == "__main__":
    main()
