"""Demo workloads shipped with hpc_runner."""
