"""``dllm-train`` / ``python -m dllm_lab.cli.train experiment=<name> [overrides]``."""

from __future__ import annotations

import signal

import hydra
from omegaconf import DictConfig

from dllm_lab.paths import config_dir, ensure_root_env

ensure_root_env()


@hydra.main(version_base="1.3", config_path=str(config_dir()), config_name="train")
def main(cfg: DictConfig) -> None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from dllm_lab.cli import tidy_terminal
    from dllm_lab.cli.launch import install_job_relaunch, one_process_group
    from dllm_lab.factory import wants_verbose
    from dllm_lab.runs import run_train

    tidy_terminal(wants_verbose(cfg))
    install_job_relaunch()  # under -m with trainer=ddp, ranks 1.. run this job only
    try:
        with one_process_group():
            run_train(cfg)
    except SIGTERMException:  # Lightning's is a SystemExit with code 0; a stopped job must not look successful
        raise SystemExit(128 + signal.SIGTERM) from None


if __name__ == "__main__":
    main()
