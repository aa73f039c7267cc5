#!/bin/bash
# hpc_runner job check: mode nccl, launcher srun
# resources: 2 node(s) x 4 task(s) = 8 rank(s); 1 thread(s) per rank; 8 core(s) in total; 4 GPU(s) per node, one per rank
#SBATCH --cpus-per-task=1
#SBATCH --gpus-per-node=4
#SBATCH --job-name=check
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --open-mode=append
#SBATCH --output=check-%j.out
#SBATCH --requeue
#SBATCH --signal=USR1@60
#SBATCH --time=00:10:00
set -euo pipefail

# setup from the job spec

# environment
export OMP_NUM_THREADS=1
export MKL_NUM_THREADS=1
export NCCL_DEBUG=WARN
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1

# nccl: one rank per GPU; each rank uses CUDA device = its local rank. The entrypoint stops
# with a clear message where CUDA or enough GPUs are missing.
echo "hpc_runner: job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}"
srun --kill-on-bad-exit=1 --mpi=none --label --nodes=2 --ntasks=8 --ntasks-per-node=4 --cpus-per-task=1 \
  /home/user/project/.venv/bin/python -u -m hpc_runner.entrypoint --mode=nccl --output-dir=/home/user/project/runs/check --init-timeout-s=300 --max-restarts=3 --data=null --function=hpc_runner.demo.check:run '--params={"iterations": 20, "sizes_kib": [1, 16, 256, 4096, 65536]}'
