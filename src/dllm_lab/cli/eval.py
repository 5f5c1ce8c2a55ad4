"""``dllm-eval`` / ``python -m dllm_lab.cli.eval experiment=<name> [overrides]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from dllm_lab.paths import config_dir, ensure_root_env

ensure_root_env()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="eval")
def main(cfg: DictConfig) -> None:
    from dllm_lab.cli import tidy_terminal
    from dllm_lab.cli.launch import install_job_relaunch, one_process_group
    from dllm_lab.factory import wants_verbose
    from dllm_lab.runs import run_eval

    tidy_terminal(wants_verbose(cfg))
    install_job_relaunch()  # under -m with trainer=ddp, ranks 1.. run this job only
    with one_process_group():
        run_eval(cfg)


if __name__ == "__main__":
    main()
