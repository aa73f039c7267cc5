#!/bin/bash
# hpc_runner job export: mode threading, launcher srun
# resources: 1 node(s) x 1 task(s) = 1 rank(s); 2 thread(s) per rank; 2 core(s) in total
#SBATCH --cpus-per-task=2
#SBATCH --job-name=export
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --open-mode=append
#SBATCH --output=export-%j.out
#SBATCH --requeue
#SBATCH --signal=USR1@60
#SBATCH --time=00:15:00
set -euo pipefail

# values only the spec may set
if [ -n "${MASTER_ADDR+x}" ]; then echo "hpc_runner: warning: ignoring MASTER_ADDR=${MASTER_ADDR} inherited from the submitting shell; set it in the spec's env: to use it" >&2; unset MASTER_ADDR; fi
if [ -n "${MASTER_PORT+x}" ]; then echo "hpc_runner: warning: ignoring MASTER_PORT=${MASTER_PORT} inherited from the submitting shell; set it in the spec's env: to use it" >&2; unset MASTER_PORT; fi

# setup from the job spec

# environment
export OMP_NUM_THREADS=2
export MKL_NUM_THREADS=2

# code: no snapshot: the job runs the code as it is when it starts (and again when it is requeued);
# hpc-run submit freezes a copy at submit unless --no-snapshot is given

# before launch
command -v /home/user/project/.venv/bin/python >/dev/null || { echo 'hpc_runner: error: the interpreter /home/user/project/.venv/bin/python does not exist on '"$(hostname)"'; set python: in the spec (default: the interpreter that ran hpc-run)' >&2; exit 1; }
if [ -z "${MASTER_ADDR:-}" ] && [ -n "${SLURM_JOB_NODELIST:-}" ]; then HPC_RUNNER_MASTER_ADDR=$(/home/user/project/.venv/bin/python -m hpc_runner.hosts "$SLURM_JOB_NODELIST"); export HPC_RUNNER_MASTER_ADDR; fi

# threading: one process on one node, torch uses OMP_NUM_THREADS threads; no process group.
echo "hpc_runner: job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}"
srun --kill-on-bad-exit=1 --mpi=none --label --ntasks-per-node=1 --cpus-per-task=2 \
  /home/user/project/.venv/bin/python -u -m hpc_runner.entrypoint --mode=threading --output-dir=/home/user/project/runs/export --init-timeout-s=300 --max-restarts=3 --collective-timeout-s=1800 --resume=auto --requeue-handler=auto --data=null --export=null --function=hpc_runner.demo.export_step:export '--params={}'
