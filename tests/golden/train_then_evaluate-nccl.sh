#!/bin/bash
# hpc_runner job emulator: mode nccl, launcher srun
# resources: 2 node(s) x 4 task(s) = 8 rank(s); 1 thread(s) per rank; 8 core(s) in total; 4 GPU(s) per node, one per rank
# data: 8192 samples / 8 rank(s) = 1024 samples per rank; batch 64 per rank -> 16 steps per epoch; effective batch 512
#SBATCH --cpus-per-task=1
#SBATCH --gpus-per-node=4
#SBATCH --job-name=emulator
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=4
#SBATCH --open-mode=append
#SBATCH --output=emulator-%j.out
#SBATCH --requeue
#SBATCH --signal=USR1@60
#SBATCH --time=00:20:00
set -euo pipefail

# values only the spec may set
if [ -n "${MASTER_ADDR+x}" ]; then echo "hpc_runner: warning: ignoring MASTER_ADDR=${MASTER_ADDR} inherited from the submitting shell; set it in the spec's env: to use it" >&2; unset MASTER_ADDR; fi
if [ -n "${MASTER_PORT+x}" ]; then echo "hpc_runner: warning: ignoring MASTER_PORT=${MASTER_PORT} inherited from the submitting shell; set it in the spec's env: to use it" >&2; unset MASTER_PORT; fi

# setup from the job spec

# environment
export OMP_NUM_THREADS=1
export MKL_NUM_THREADS=1
export NCCL_DEBUG=WARN
export TORCH_NCCL_ASYNC_ERROR_HANDLING=1

# code: no snapshot: the job runs the code as it is when it starts (and again when it is requeued);
# hpc-run submit freezes a copy at submit unless --no-snapshot is given

# before launch
command -v /home/user/project/.venv/bin/python >/dev/null || { echo 'hpc_runner: error: the interpreter /home/user/project/.venv/bin/python does not exist on '"$(hostname)"'; set python: in the spec (default: the interpreter that ran hpc-run)' >&2; exit 1; }
if [ -z "${MASTER_ADDR:-}" ] && [ -n "${SLURM_JOB_NODELIST:-}" ]; then HPC_RUNNER_MASTER_ADDR=$(/home/user/project/.venv/bin/python -m hpc_runner.hosts "$SLURM_JOB_NODELIST"); export HPC_RUNNER_MASTER_ADDR; fi

# nccl: one rank per GPU; each rank uses CUDA device = its local rank. The entrypoint stops
# with a clear message where CUDA or enough GPUs are missing.
echo "hpc_runner: job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}"
srun --kill-on-bad-exit=1 --mpi=none --label --ntasks-per-node=4 --cpus-per-task=1 \
  /home/user/project/.venv/bin/python -u -m hpc_runner.entrypoint --mode=nccl --output-dir=/home/user/project/runs/emulator --init-timeout-s=300 --max-restarts=3 --collective-timeout-s=1800 --resume=auto --requeue-handler=auto '--data={"audit": true, "batch_size": 64, "samples": 8192, "val_samples": 1024}' --export=null --function=hpc_runner.demo.emulator:train '--params={"epochs": 4, "hidden": 64, "lr": 0.05, "seed": 0}'
