"""Hydra sweeps under DDP that relaunches the script (``trainer=ddp``): one process group per job, never a sweep
per rank.

Lightning's subprocess launcher starts ranks 1..N-1 by running the command line again. Under ``-m`` its Hydra
support repeats the whole sweep (``sys.argv``) with ``hydra.run.dir`` of the sweep, so every rank would run
every job, and the launching process keeps the first job's process group (and port) into the next job, where
the new ranks cannot join it. :func:`install_job_relaunch` makes the relaunch run the current job only (its
own overrides, in its own output directory), and :func:`one_process_group` ends each job's group.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

# Hydra options of the original command line that the relaunch keeps (each takes a value)
CONFIG_FLAGS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd")
# hydra.* overrides that belong to the sweep, or that the relaunch sets itself
SWEEP_ONLY = ("hydra.sweep", "hydra.mode", "hydra.run.dir", "hydra.job.name", "hydra.output_subdir",
              "hydra/sweeper", "hydra/launcher")


def job_command(local_rank: int) -> tuple[list[str], str]:
    """Command line and working directory that start rank ``local_rank`` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from hydra.utils import get_original_cwd, to_absolute_path

    import __main__

    hydra = HydraConfig.get()
    if __main__.__spec__ is None:
        command = [sys.executable, to_absolute_path(sys.argv[0])]
    else:
        command = [sys.executable, "-m", __main__.__spec__.name]
    if hydra.mode == RunMode.MULTIRUN:  # this job's overrides, not the sweep's comma lists
        command += [*_config_flags(sys.argv[1:]), *hydra.overrides.task,
                    *(o for o in hydra.overrides.hydra if not o.startswith(SWEEP_ONLY))]
        run_dir = hydra.runtime.output_dir
    else:  # as Lightning does
        command += sys.argv[1:]
        run_dir = hydra.run.dir
    command += [f'hydra.run.dir="{run_dir}"', f"hydra.job.name={hydra.job.name}_rank{local_rank}",
                "hydra.output_subdir=null"]  # rank 0 alone writes .hydra/
    return command, get_original_cwd()


def _config_flags(argv: list[str]) -> list[str]:
    flags = []
    for i, arg in enumerate(argv):
        if arg in CONFIG_FLAGS and i + 1 < len(argv):
            flags += [arg, argv[i + 1]]
        elif arg.startswith(tuple(f"{f}=" for f in CONFIG_FLAGS)):
            flags.append(arg)
    return flags


def install_job_relaunch() -> None:
    """Make Lightning's script-relaunching launcher (``strategy=ddp``) start the current Hydra job only.

    Lightning builds that command in one private function (``_hydra_subprocess_cmd``, looked up when the ranks
    are launched); it is replaced where the launcher looks it up. Tested against the pinned Lightning 2.x."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    if hasattr(subprocess_script, "_hydra_subprocess_cmd"):
        subprocess_script._hydra_subprocess_cmd = job_command


# what Lightning's launcher writes into the launching process's environment for the ranks it starts
LAUNCH_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@contextlib.contextmanager
def one_process_group() -> Iterator[None]:
    """Around one job: afterwards, end the job's process group and put back the launch variables as they were
    before it. Lightning leaves ``LOCAL_RANK`` behind, which tells the next job's launcher that a launcher already
    started its ranks (it would wait for a rank 1 nobody starts), and the port it chose. Values set before the job,
    by the user or by a launcher such as torchrun, stay."""
    before = {name: os.environ.get(name) for name in LAUNCH_ENV}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
