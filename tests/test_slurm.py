"""`kotune slurm` and `launch.sh --slurm`: the sbatch script they write, their errors, and (slow) a tiny SFT that the
script runs on a real one-machine SLURM (Debian's slurm-wlm: slurmctld + slurmd on this host, started here)."""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, base_config, subprocess_env, write_config

KOTUNE_SLURM = [sys.executable, "-m", "kotune.tools.slurm"]  # `kotune slurm`
VENV_BIN = str(Path(sys.executable).parent)


def kotune_slurm(*args, cwd, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*KOTUNE_SLURM, *args], cwd=cwd, env=env or subprocess_env(), capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def config(tmp_path) -> Path:
    """A config whose paths exist (the model dir is only checked for existence when the script is written)."""
    (tmp_path / "base").mkdir()
    return write_config(tmp_path / "sft.yaml", base_config(tmp_path / "base", "runs/sft-8x2"))


def stub_slurm(tmp_path) -> Path:
    """srun and scontrol as a two-node allocation would answer them: srun records the command it was given."""
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    (stubs / "scontrol").write_text('#!/bin/bash\n[ "$1 $2" = "show hostnames" ] && printf "gpu07\\ngpu08\\n"\n')
    (stubs / "srun").write_text('#!/bin/bash\nprintf "%s\\0" "$@" > "$SRUN_ARGS"\necho "$DS_ACCELERATOR" > '
                                '"$SRUN_ARGS.env"\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    return stubs


def test_two_nodes_eight_gpus_zero3_script(config, tmp_path):
    canary = tmp_path / "canary"
    overrides = ["--learning_rate=1e-4", f"--run_name=한국어 실험 $(touch {canary})", "--seed", "3"]
    proc = kotune_slurm("sft", "sft.yaml", "--nodes", "2", "--gpus-per-node", "8", "--zero", "3",
                        "--partition", "gpu", "--time", "24:00:00", "--out", "job.sbatch", "--", *overrides,
                        cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    script = tmp_path / "job.sbatch"
    text = script.read_text()
    logs = tmp_path / "runs" / "slurm-logs"  # next to output_dir, not inside it: kotune refuses a non-empty one
    sbatch = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH ")]
    assert sbatch == ["--job-name=kotune-sft", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8",
                      "--cpus-per-task=32", f"--chdir={tmp_path}", f"--output={logs}/sft-8x2-%j.out",
                      f"--error={logs}/sft-8x2-%j.err", "--partition=gpu", "--time=24:00:00"]
    assert logs.is_dir()  # sbatch does not create the folder of its log files
    assert f"sbatch {script}" in proc.stdout
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0

    # The script as SLURM runs it on the first node of gpu[07-08], with srun and scontrol answering.
    env = {**subprocess_env(), "PATH": f"{stub_slurm(tmp_path)}:{os.environ['PATH']}", "SLURM_JOB_ID": "4242",
           "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "gpu[07-08]", "SRUN_ARGS": str(tmp_path / "srun.args")}
    run = subprocess.run(["bash", str(script)], cwd="/", env=env, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert "job 4242, 2 node(s) x 8 process(es), rendezvous gpu07:24242" in run.stdout
    args = (tmp_path / "srun.args").read_text().split("\0")[:-1]
    assert args[:4] == ["--kill-on-bad-exit=1", "--ntasks-per-node=1", "--cpus-per-task=32",
                        str(Path(sys.executable).parent / "torchrun")]
    assert args[4:14] == ["--nnodes", "2", "--nproc_per_node", "8", "--rdzv_backend", "c10d", "--rdzv_id", "4242",
                          "--rdzv_endpoint", "gpu07:24242"]
    assert args[14:] == [str(REPO / "train/sft.py"), str(tmp_path / "sft.yaml"), *overrides,
                         f"--deepspeed={REPO / 'deepspeed/zero3.json'}"]  # absolute paths; overrides verbatim
    assert all(Path(a).is_absolute() for a in args[3:4] + args[14:16])
    assert not canary.exists()  # the override's $(...) reached the trainer as text, never ran
    if shutil.which("nvidia-smi") is None:
        assert (tmp_path / "srun.args.env").read_text().strip() == "cpu"  # DeepSpeed's CPU accelerator


def test_cpu_partition_and_fsdp(config, tmp_path):
    """--cpu asks SLURM for no GPUs (a GPU request fails on a partition without them); --fsdp adds FSDP2's keys."""
    proc = kotune_slurm("sft", str(config), "--gpus-per-node", "2", "--cpu", "--fsdp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    sbatch = [line for line in proc.stdout.splitlines() if line.startswith("#SBATCH ")]
    assert "#SBATCH --cpus-per-task=2" in sbatch and not any("gpus" in line for line in sbatch)
    assert "--nproc_per_node 2" in proc.stdout
    assert (tmp_path / "runs" / "slurm-logs").is_dir()  # printed for `| sbatch`: its log folder exists already
    assert proc.stdout.rstrip().endswith(f"{config} --fsdp_version=2")  # fsdp: true, FSDP2, as a config writes it


@pytest.mark.parametrize("args,message", [
    (["train", "sft.yaml"], "STAGE: 'train' is not a stage; choose one of sft, dpo"),
    (["sft", "missing.yaml"], "config file 'missing.yaml' not found"),
    (["sft", "sft.yaml", "--nodes", "0"], "--nodes must be at least 1, not 0"),
    (["sft", "sft.yaml", "--zero", "3", "--fsdp"], "--zero and --fsdp both shard the model: choose one"),
    (["sft", "sft.yaml", "--partition", "gpu; rm -rf ~"], "--partition: 'gpu; rm -rf ~' may hold only"),
    (["sft", "sft.yaml", "--", "--lerning_rate=1e-4"], "lerning_rate: unknown key: did you mean 'learning_rate'?"),
    (["sft", "sft.yaml", "--zero", "4"], "--zero: invalid choice: '4'"),
])
def test_bad_input_is_one_clear_error(config, tmp_path, monkeypatch, capsys, args, message):
    from kotune.errors import user_errors_exit
    from kotune.tools.slurm import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_, user_errors_exit():  # as `kotune slurm` runs it
        main([*args, "--out", "job.sbatch"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err, err
    assert not (tmp_path / "job.sbatch").exists() and not (tmp_path / "runs").exists()  # nothing written


def test_submit_without_sbatch_says_where_to_submit(config, tmp_path):
    env = {**subprocess_env(), "PATH": VENV_BIN}  # no SLURM client on PATH
    proc = kotune_slurm("sft", str(config), "--submit", cwd=tmp_path, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "sbatch not found on PATH: submit from a SLURM login node" in proc.stderr
    assert (tmp_path / "runs" / "slurm-logs" / "sft-8x2.sbatch").is_file()  # written, ready to submit there


def test_launch_sh_slurm_delegates(config, tmp_path):
    proc = subprocess.run([str(REPO / "launch.sh"), "sft", "sft.yaml", "--slurm", "--gpus", "8", "--nodes", "2",
                           "--zero", "3-offload", "--", "--learning_rate=1e-4"], cwd=tmp_path,
                          env={**subprocess_env(), "KOTUNE_PYTHON": sys.executable}, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "#SBATCH --nodes=2" in proc.stdout and "#SBATCH --gpus-per-node=8" in proc.stdout
    last = shlex.split(proc.stdout.strip().splitlines()[-1])
    assert last[-2:] == ["--learning_rate=1e-4", f"--deepspeed={REPO / 'deepspeed/zero3_offload.json'}"]


# ---- a real SLURM on this machine ----------------------------------------------------------------------------------

def slurm_binary(name: str) -> str | None:
    return shutil.which(name) or next((p for p in (f"/usr/sbin/{name}",) if os.access(p, os.X_OK)), None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_slurm(tmp_path_factory):
    """slurmctld and slurmd for one node (this host, 2 CPUs), auth/none, state in a temp dir; the env for sbatch."""
    daemons = {name: slurm_binary(name) for name in ("slurmctld", "slurmd", "sbatch", "scontrol")}
    if not all(daemons.values()):
        pytest.skip("SLURM is not installed: `make slurm` (Debian's slurm-wlm) installs slurmctld and slurmd")
    if os.geteuid() != 0:
        pytest.skip("slurmd starts jobs as their user, so it must run as root")
    root = tmp_path_factory.mktemp("slurm")
    host = socket.gethostname()
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=kotunetest", f"SlurmctldHost={host}", f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}", "AuthType=auth/none", "CredType=cred/none", "SlurmUser=root",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool", f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid", "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "MpiDefault=none", "ReturnToService=2",
        "SlurmdParameters=config_overrides",  # CPUs=2 on any machine
        f"NodeName={host} CPUs=2 State=UNKNOWN", "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
    ]) + "\n")
    env = {**subprocess_env(), "SLURM_CONF": str(conf)}
    procs = []
    for name in ("slurmctld", "slurmd"):
        log = open(root / f"{name}.log", "w")
        procs.append(subprocess.Popen([daemons[name], "-D", "-f", str(conf)], stdout=log, stderr=subprocess.STDOUT,
                                      env=env))
    try:
        deadline = time.monotonic() + 30
        while True:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout
            if state.strip() == "idle":
                break
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                logs = "".join((root / f"{n}.log").read_text()[-2000:] for n in ("slurmctld", "slurmd"))
                pytest.fail(f"local SLURM did not come up (sinfo: {state.strip()!r}):\n{logs}")
            time.sleep(0.5)
        yield env
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_for_job(job: str, env: dict, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["scontrol", "show", "job", "-o", job], env=env, capture_output=True, text=True).stdout
        state = re.search(r"JobState=(\S+)", out)
        if state and state.group(1) not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING"):
            return state.group(1)
        time.sleep(2)
    return "still running after the test's timeout"


@pytest.mark.slow  # two processes through a real SLURM: about 50 s each on 2 cores
@pytest.mark.parametrize("sharding,distributed", [([], "MULTI_CPU"), (["--zero", "3"], "DEEPSPEED"),
                                                  (["--fsdp"], "FSDP")], ids=["ddp", "zero3", "fsdp2"])
def test_sbatch_script_trains_on_local_slurm(local_slurm, tiny_bases, tmp_path, sharding, distributed):
    out = tmp_path / "runs" / "sft"
    path = write_config(tmp_path / "c.yaml", base_config(tiny_bases["gpt_neox"], out, max_steps=4))
    proc = kotune_slurm("sft", str(path), "--nodes", "1", "--gpus-per-node", "2", "--cpu", "--submit",
                        *sharding, "--", "--seed=11", cwd=tmp_path, env=local_slurm)
    assert proc.returncode == 0, proc.stderr
    job = re.search(r"submitted: job (\d+)", proc.stdout).group(1)
    state = wait_for_job(job, local_slurm, timeout=600)
    logs = tmp_path / "runs" / "slurm-logs"
    err = logs / f"sft-{job}.err"
    assert state == "COMPLETED", err.read_text()[-4000:] if err.exists() else state
    assert f"job {job}, 1 node(s) x 2 process(es)" in (logs / f"sft-{job}.out").read_text()
    record = json.loads((out / "run_info.json").read_text())
    assert record["world_size"] == 2
    assert record["distributed_type"] == distributed
    trainer_state = json.loads((out / "trainer_state.json").read_text())
    losses = [row["loss"] for row in trainer_state["log_history"] if "loss" in row]
    assert trainer_state["global_step"] == 4 and len(losses) == 4 and all(math.isfinite(x) for x in losses)
    assert (out / "adapter_model.safetensors").stat().st_size > 0 and (out / "adapter_config.json").is_file()
