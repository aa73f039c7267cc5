#!/bin/bash
# hpc_runner job check: mode gloo, launcher accelerate
# resources: 2 node(s) x 2 task(s) = 4 rank(s); 1 thread(s) per rank; 4 core(s) in total
# accelerate launch --multi_gpu: plain multi-process, one process per rank, no DeepSpeed or FSDP plugin (on CPUs in gloo mode: ACCELERATE_USE_CPU=true); no distributed_type given
#SBATCH --cpus-per-task=1
#SBATCH --job-name=check
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=2
#SBATCH --open-mode=append
#SBATCH --output=check-%j.out
#SBATCH --requeue
#SBATCH --signal=USR1@60
#SBATCH --time=00:10:00
set -euo pipefail

# values only the spec may set
if [ -n "${MASTER_ADDR+x}" ]; then echo "hpc_runner: warning: ignoring MASTER_ADDR=${MASTER_ADDR} inherited from the submitting shell; set it in the spec's env: to use it" >&2; unset MASTER_ADDR; fi
if [ -n "${MASTER_PORT+x}" ]; then echo "hpc_runner: warning: ignoring MASTER_PORT=${MASTER_PORT} inherited from the submitting shell; set it in the spec's env: to use it" >&2; unset MASTER_PORT; fi

# setup from the job spec

# environment
export OMP_NUM_THREADS=1
export MKL_NUM_THREADS=1
export ACCELERATE_USE_CPU=true

# code: no snapshot: the job runs the code as it is when it starts (and again when it is requeued);
# hpc-run submit freezes a copy at submit unless --no-snapshot is given

# before launch
command -v /home/user/project/.venv/bin/python >/dev/null || { echo 'hpc_runner: error: the interpreter /home/user/project/.venv/bin/python does not exist on '"$(hostname)"'; set python: in the spec (default: the interpreter that ran hpc-run)' >&2; exit 1; }
if [ -z "${MASTER_ADDR:-}" ] && [ -n "${SLURM_JOB_NODELIST:-}" ]; then HPC_RUNNER_MASTER_ADDR=$(/home/user/project/.venv/bin/python -m hpc_runner.hosts "$SLURM_JOB_NODELIST"); export HPC_RUNNER_MASTER_ADDR; fi
unset SLURM_NTASKS SLURM_NPROCS

# gloo: one rank per task over torch.distributed Gloo; srun gets --cpus-per-task explicitly
# (Slurm 22.05+ no longer passes sbatch's -c to srun). The entrypoint finds rank, world size,
# master address (the first node's NodeAddr) and a port derived from the job id.
echo "hpc_runner: job ${SLURM_JOB_ID:-?} (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}"
# accelerate launch, once per node; the node's values (machine rank = SLURM_NODEID, process and machine
# counts from the allocation, main process address and port) come from hpc_runner.accelerate_launch on the node
# shellcheck disable=SC2016
srun --kill-on-bad-exit=1 --mpi=none --label --ntasks-per-node=1 --cpus-per-task=2 \
  bash -c 'trap "" USR1 USR2; read -r machine_rank num_machines num_processes main_process_ip main_process_port local_addr rdzv_conf < <("$0" -m hpc_runner.accelerate_launch --nproc-per-node=2 --join-timeout=300) || exit 1; PET_LOCAL_ADDR="$local_addr" exec "$0" -m accelerate.commands.launch --machine_rank="$machine_rank" --num_machines="$num_machines" --num_processes="$num_processes" --main_process_ip="$main_process_ip" --main_process_port="$main_process_port" --rdzv_conf="$rdzv_conf" "$@"' /home/user/project/.venv/bin/python --multi_gpu --rdzv_backend=c10d --max_restarts=0 --mixed_precision=no --dynamo_backend=no --module hpc_runner.entrypoint --mode=gloo --output-dir=/home/user/project/runs/check --init-timeout-s=300 --max-restarts=3 --collective-timeout-s=1800 --resume=auto --requeue-handler=auto --data=null --export=null --function=hpc_runner.demo.check:run '--params={"iterations": 20, "sizes_kib": [1, 16, 256, 4096, 65536]}'
