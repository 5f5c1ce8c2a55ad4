#!/bin/bash
# dllm-train on N nodes x G GPUs under SLURM: srun starts one process per GPU and Lightning reads its rank from
# SLURM's environment (no torchrun needed). Every process logs through the team MLflow server (README, "Team server").
#
#   export MLFLOW_TRACKING_URI=http://<server>:5000 MLFLOW_TRACKING_USERNAME=... MLFLOW_TRACKING_PASSWORD=...
#   sbatch --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 scripts/slurm_train.sh experiment=rl_countdown \
#     model=llada_8b_instruct data.prompt_style=d1 ...
#
#SBATCH --job-name=dllm-train
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=logs/slurm-%j.out
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
: "${MLFLOW_TRACKING_URI:?set it to the team server: the nodes share no sqlite file}"
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-8}
srun --kill-on-bad-exit=1 .venv/bin/python -m dllm_lab.cli.train trainer=ddp \
  trainer.num_nodes="$SLURM_NNODES" trainer.devices="$SLURM_NTASKS_PER_NODE" "$@"
