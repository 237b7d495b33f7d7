"""The text of an sbatch script that runs one kotune stage with `srun torchrun` on N nodes (`kotune slurm` writes it).

One srun task per node starts torchrun, which starts one process per GPU. The nodes meet through torchrun's c10d
rendezvous on the job's first node, at a port derived from the job id, so two jobs sharing a node do not collide.
Every value that reaches a shell line is quoted with shlex; #SBATCH values are checked by the caller.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field


@dataclass
class SlurmJob:
    """Everything the script needs, as absolute paths and checked values."""

    command: list[str]  # [entry script, config, training arguments...]: what torchrun runs on every process
    python: str  # the interpreter whose environment the job uses (its bin/ goes first on PATH)
    torchrun: list[str]  # torchrun next to `python`, or [python, -m, torch.distributed.run]
    nodes: int
    procs_per_node: int
    gpus: bool  # request --gpus-per-node (False: a CPU-only partition; the processes train on the CPU)
    cpus_per_task: int
    workdir: str  # the job's working directory: relative paths in the config resolve against it
    log_out: str  # %j is the job id
    log_err: str
    job_name: str
    partition: str | None = None
    time: str | None = None
    port: int | None = None  # None: 20000 + job id % 20000
    generated_by: list[str] = field(default_factory=list)  # the command line that wrote the script


def render(job: SlurmJob) -> str:
    q = shlex.quote
    bin_dir = job.python.rsplit("/", 1)[0]
    sbatch = [f"--job-name={job.job_name}", f"--nodes={job.nodes}", "--ntasks-per-node=1"]
    if job.gpus:
        sbatch.append(f"--gpus-per-node={job.procs_per_node}")
    sbatch += [f"--cpus-per-task={job.cpus_per_task}", f"--chdir={job.workdir}",
               f"--output={job.log_out}", f"--error={job.log_err}"]
    sbatch += [f"--partition={job.partition}"] if job.partition else []
    sbatch += [f"--time={job.time}"] if job.time else []
    threads = max(1, job.cpus_per_task // job.procs_per_node)
    port = str(job.port) if job.port else "$((20000 + SLURM_JOB_ID % 20000))"
    torchrun = " ".join(q(part) for part in job.torchrun)
    command = " ".join(q(part) for part in job.command)
    lines = [
        "#!/bin/bash",
        "# Written by: " + " ".join(q(a) for a in job.generated_by).replace("\n", "\\n").replace("\r", "\\r"),
        f"# Submit with: sbatch THIS_FILE. Logs: {job.log_out}, {job.log_err} (%j is the job id).",
        *(f"#SBATCH {line}" for line in sbatch),
        "set -euo pipefail",
        "",
        "# The environment that wrote this script, first on PATH (torch builds DeepSpeed's ops with its ninja).",
        f"export PATH={q(bin_dir)}:\"$PATH\"",
        "# No GPU on the node: the processes train on the CPU over gloo, and DeepSpeed uses its CPU accelerator.",
        "if ! nvidia-smi -L >/dev/null 2>&1; then export DS_ACCELERATOR=cpu; fi",
        f"export OMP_NUM_THREADS=\"${{OMP_NUM_THREADS:-{threads}}}\"",
        "",
        "# Rendezvous on the job's first node; torchrun's c10d numbers the nodes, so no per-node rank is needed.",
        # sed reads every name: `head -n 1` would close the pipe early, and pipefail would end the job on SIGPIPE.
        "head_node=\"$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | sed -n 1p)\"",
        f"port={port}",
        f"echo \"kotune: job $SLURM_JOB_ID, $SLURM_NNODES node(s) x {job.procs_per_node} process(es), "
        "rendezvous $head_node:$port\"",
        "",
        # srun does not pass the job's --cpus-per-task on to its step since Slurm 22.05: say it again.
        f"srun --kill-on-bad-exit=1 --ntasks-per-node=1 --cpus-per-task={job.cpus_per_task} {torchrun} \\",
        f"  --nnodes \"$SLURM_NNODES\" --nproc_per_node {job.procs_per_node} \\",
        "  --rdzv_backend c10d --rdzv_id \"$SLURM_JOB_ID\" --rdzv_endpoint \"$head_node:$port\" \\",
        f"  {command}",
    ]
    return "\n".join(lines) + "\n"
