"""`kotune slurm STAGE CONFIG [--nodes N] [--gpus-per-node G] [--zero 2|3|3-offload] [--fsdp] [--out F] [--submit]
[-- --key=value ...]`: an sbatch script that trains STAGE on N nodes with `srun torchrun`.

The stage and the config (with the overrides and the DeepSpeed/FSDP choice) are checked here, on the login node, so a
typo costs a second rather than a place in the queue. The script uses this checkout's entry script and this Python
(its torchrun), by absolute path, and runs in the current directory, so relative paths in the config mean what they
mean here. Logs go next to output_dir, never inside it: kotune refuses a non-empty output_dir.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from kotune.config.loading import read_config
from kotune.config.validation import check_config
from kotune.errors import ConfigError, KotuneError, user_errors_exit
from kotune.stages.registry import STAGES, get_stage
from kotune.tools.slurm_script import SlurmJob, render

REPO = Path(__file__).resolve().parents[3]
ZERO_CONFIGS = {"2": "zero2.json", "3": "zero3.json", "3-offload": "zero3_offload.json"}
# FSDP2 as a config turns it on (kotune.config.sharding): `fsdp: true` with fsdp_config.version 2, sharded per block.
FSDP_OVERRIDES = ["--fsdp_version=2"]
SLURM_NAME = re.compile(r"[A-Za-z0-9_.,:@+-]+")  # partition and job names: nothing sbatch or a shell would split
SLURM_TIME = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}")  # MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
UNSAFE_PATH = re.compile(r"[\s\"'\\%]")  # #SBATCH lines are not shell lines, and sbatch expands % in log names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kotune slurm", usage="kotune slurm STAGE CONFIG [options] [-- --key=value ...]",
        description="Write (or submit) an sbatch script: srun torchrun on N nodes, rendezvous from SLURM_*. "
        "Training overrides go after --, e.g. -- --learning_rate=1e-4.")
    add = p.add_argument
    add("stage", help=f"the stage to run: {', '.join(STAGES)}")
    add("config", help="the YAML config")
    add("--nodes", metavar="N", type=int, default=1, help="nodes (default 1)")
    add("--gpus-per-node", metavar="G", type=int, default=1, help="processes per node, one per GPU (default 1)")
    add("--cpu", action="store_true", help="a partition without GPUs: request no GPUs; the processes "
        "(--gpus-per-node of them) train on the CPU over gloo")
    add("--cpus-per-task", metavar="C", type=int, help="CPUs per node for its processes (default 4 per GPU, 1 per "
        "process with --cpu)")
    add("--zero", choices=sorted(ZERO_CONFIGS), help="DeepSpeed ZeRO: deepspeed/zero{2,3,3_offload}.json")
    add("--fsdp", action="store_true", help="FSDP2 (adds " + " ".join(FSDP_OVERRIDES) + ")")
    add("--partition", metavar="P", help="SLURM partition (default: the cluster's default)")
    add("--time", metavar="T", help="time limit, e.g. 24:00:00 (default: the partition's)")
    add("--job-name", metavar="NAME", help="default: kotune-STAGE")
    add("--port", metavar="PORT", type=int, help="rendezvous port (default: 20000 + job id %% 20000)")
    add("--logs", metavar="DIR", help="folder of the job's logs (default: slurm-logs next to output_dir)")
    add("--python", metavar="PATH", default=sys.executable, help="the Python the job runs (default: this one)")
    add("--out", metavar="FILE", help="write the script here (default: print it)")
    add("--submit", action="store_true", help="submit it with sbatch and print the job id")
    return p


def main(argv: list[str]) -> int:
    at = argv.index("--") if "--" in argv else len(argv)
    args = parser().parse_args(argv[:at])
    overrides = argv[at + 1:]
    job = build_job(args, overrides, argv)
    text = render(job)
    Path(job.log_out).parent.mkdir(parents=True, exist_ok=True)  # SLURM does not create it: `... | sbatch` works too
    if not (args.out or args.submit):
        print(text, end="")
        return 0
    script = Path(args.out).expanduser().resolve() if args.out else \
        Path(job.log_out).parent / f"{Path(job.log_out).name.split('-%j')[0]}.sbatch"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(text)
    script.chmod(0o755)
    print(f"written: {script} (logs: {job.log_out}, {job.log_err})")
    if args.submit:
        print(f"submitted: job {submit(script)}")
    else:
        print(f"submit with: sbatch {script}")
    return 0


def build_job(args: argparse.Namespace, overrides: list[str], argv: list[str]) -> SlurmJob:
    """Check the options, then the config with the overrides; the job, with absolute paths."""
    if args.stage not in STAGES:
        raise KotuneError(f"STAGE: '{args.stage}' is not a stage; choose one of {', '.join(STAGES)}")
    entry = REPO / get_stage(args.stage).entry_script
    python = Path(args.python).expanduser()
    python = python if python.is_absolute() else Path.cwd() / python
    workdir = Path.cwd()
    problems = option_problems(args)
    if not entry.is_file():
        problems.append(f"{entry} not found: kotune slurm runs the entry scripts of a kotune checkout")
    if not (python.is_file() and os.access(python, os.X_OK)):
        problems.append(f"--python: '{args.python}' is not an executable")
    if UNSAFE_PATH.search(str(workdir)):
        problems.append(f"the current directory '{workdir}' has a space, quote, backslash or %, which an #SBATCH "
                        "line cannot carry: run from another directory")
    if problems:
        raise ConfigError(problems, "command line")
    config = Path(args.config).expanduser().resolve()
    if not config.is_file():
        raise KotuneError(f"config file '{args.config}' not found")
    extra = list(overrides)
    if args.zero:
        extra.append(f"--deepspeed={REPO / 'deepspeed' / ZERO_CONFIGS[args.zero]}")
    if args.fsdp:
        extra += FSDP_OVERRIDES
    _, raw = read_config([str(config), *extra])
    *_, training, _, config_problems = check_config(raw, args.stage)
    if config_problems:
        raise ConfigError(config_problems, args.config)
    output_dir = workdir / Path(str(training["output_dir"])).expanduser()  # an absolute output_dir stays itself
    logs = Path(args.logs).expanduser().resolve() if args.logs else output_dir.parent / "slurm-logs"
    if UNSAFE_PATH.search(str(logs / output_dir.name)):
        raise KotuneError(f"the log path '{logs / output_dir.name}' has a space, quote, backslash or %, which an "
                          "#SBATCH line cannot carry: choose another --logs")
    torchrun = python.parent / "torchrun"
    procs = args.gpus_per_node
    return SlurmJob(
        command=[str(entry), str(config), *extra], python=str(python),
        torchrun=[str(torchrun)] if torchrun.is_file() else [str(python), "-m", "torch.distributed.run"],
        nodes=args.nodes, procs_per_node=procs, gpus=not args.cpu,
        cpus_per_task=args.cpus_per_task or (procs if args.cpu else 4 * procs), workdir=str(workdir),
        log_out=str(logs / f"{output_dir.name}-%j.out"), log_err=str(logs / f"{output_dir.name}-%j.err"),
        job_name=args.job_name or f"kotune-{args.stage}", partition=args.partition, time=args.time, port=args.port,
        generated_by=["kotune", "slurm", *argv])


def option_problems(args: argparse.Namespace) -> list[str]:
    problems = [f"--{name.replace('_', '-')} must be at least 1, not {value}"
                for name, value in (("nodes", args.nodes), ("gpus_per_node", args.gpus_per_node),
                                    ("cpus_per_task", args.cpus_per_task)) if value is not None and value < 1]
    if args.zero and args.fsdp:
        problems.append("--zero and --fsdp both shard the model: choose one")
    for name in ("partition", "job_name"):
        value = getattr(args, name)
        if value is not None and not SLURM_NAME.fullmatch(value):
            problems.append(f"--{name.replace('_', '-')}: '{value}' may hold only letters, digits and _.,:@+-")
    if args.time is not None and not SLURM_TIME.fullmatch(args.time):
        problems.append(f"--time: '{args.time}' is not a SLURM time limit like 24:00:00, 90 or 2-00:00:00")
    if args.port is not None and not 1024 <= args.port <= 65535:
        problems.append(f"--port must be in 1024..65535, not {args.port}")
    return problems


def submit(script: Path) -> str:
    """sbatch SCRIPT → the job id."""
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise KotuneError(f"sbatch not found on PATH: submit from a SLURM login node, or submit {script} there")
    proc = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise KotuneError(f"sbatch refused {script}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.strip().split(";")[0]


if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
