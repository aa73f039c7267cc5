"""Environment variables hpc_runner itself sets for its ranks (one place for their names)."""

# The first node's address, resolved once per job by the batch script (not once per rank).
JOB_MASTER_VAR = "HPC_RUNNER_MASTER_ADDR"
# Where each rank writes {"rank", "result", "error", "requeue"} as JSON for submitit's wrapper;
# under torchrun the path holds "{rank}", which the rank replaces by its local rank.
RESULT_FILE_VAR = "HPC_RUNNER_RESULT_FILE"
# The code snapshot the job runs (hpc_runner.snapshot): its identity (commit and changes) and its folder.
CODE_VAR = "HPC_RUNNER_CODE"
CODE_DIR_VAR = "HPC_RUNNER_CODE_DIR"
CODE_SOURCE_VAR = "HPC_RUNNER_CODE_SOURCE"  # the project it was copied from
