"""`kotune ray STAGE CONFIG [--workers N] [--gpus] [--address ADDR] [--storage DIR] [-- --key=value ...]`: one
training stage on a Ray cluster, through Ray Train's TorchTrainer.

Every Ray Train worker runs the stage's own runner (the code of `kotune STAGE` and `train/STAGE.py`) on the same
argv. Ray Train starts the torch process group first (gloo on CPU, NCCL on GPUs) and sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT, so accelerate under HF Trainer sees one N-process run (run_info.json:
world_size N; distributed_type MULTI_CPU on CPU workers, as tested), and only rank 0 writes the output_dir, as
under `accelerate launch`.

The config is checked here, before Ray starts, so a typo costs a second. Ray Train needs a storage folder (else
~/ray_results, shared by every run on the machine); the stage saves its own checkpoints into output_dir and reports
none to Ray, so it holds little more than Ray's marker file. It goes next to the run, in `<output_dir>.ray/`
(`--storage` to change): not inside output_dir, which a new run needs empty and which holds the HF formats only.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import time
from pathlib import Path

from kotune.config.loading import read_config
from kotune.config.recipes import translate
from kotune.config.validation import check_config, field_groups, suggest
from kotune.errors import ConfigError, KotuneError
from kotune.stages.registry import STAGES

USAGE = """usage: kotune ray STAGE CONFIG.yaml [--workers N] [--gpus] [--address auto|ray://HOST:10001] [--storage DIR]
                  [-- --key=value ...]

Runs `kotune STAGE CONFIG` in N Ray Train workers (TorchTrainer): one torch process group, rank 0 writes output_dir.
  --workers N    training processes (default 2); each takes one CPU, or one GPU with --gpus
  --gpus         one GPU per worker (NCCL); without it the workers train on CPU over gloo
  --address A    an existing cluster (`auto`, or ray://HOST:10001); default: a local Ray instance for this run
  --storage DIR  Ray's run folder (default: <output_dir>.ray next to the output_dir; shared storage on many nodes)
Config overrides (--key=value) go after `--`, or after the flags. Needs `pip install kotune[ray]`; on a cluster,
every node needs kotune installed and the config's paths (model, data, output_dir) reachable.
"""
INSTALL = "kotune ray needs Ray Train, which is not installed: pip install 'kotune[ray]' (ray[train]==2.60.0)"
FLAGS = {"--workers": True, "--address": True, "--storage": True, "--gpus": False}  # flag → takes a value


class WorkerUserError(RuntimeError):
    """A KotuneError raised inside a worker, as a plain one-argument exception: Ray pickles it back to the driver,
    where it becomes exit code 2 again (ConfigError itself does not survive pickling: its __init__ takes a list)."""


def parse(argv: list[str]) -> tuple[str, list[str], dict]:
    """(stage, [CONFIG, overrides...], launcher options)."""
    stage, rest = argv[0], argv[1:]
    options: dict = {"--workers": "2", "--address": None, "--storage": None, "--gpus": False}
    config_argv, i = [], 0
    while i < len(rest):
        token = rest[i]
        if token == "--":
            config_argv += rest[i + 1:]
            break
        name, eq, value = token.partition("=")
        if name in FLAGS and FLAGS[name]:
            if not eq:
                if i + 1 >= len(rest) or rest[i + 1].startswith("--"):
                    raise KotuneError(f"{name}: give a value, e.g. {name} {'2' if name == '--workers' else 'auto'}")
                value, i = rest[i + 1], i + 1
            options[name] = value
        elif token == "--gpus":
            options["--gpus"] = True
        else:
            config_argv.append(token)
        i += 1
    text = str(options["--workers"])
    options["--workers"] = int(text) if text.isdigit() else 0
    if options["--workers"] < 1:
        raise KotuneError(f"--workers: '{text}' must be a whole number of workers, 1 or more")
    return stage, config_argv, options


def check_run(stage: str, config_argv: list[str], check_paths: bool) -> tuple[str, dict]:
    """The stage name and the config, checked as the stage will check them, without torch: (config path, the
    output_dir settings). Every problem is raised at once, as `kotune STAGE` would."""
    if stage not in STAGES:
        raise KotuneError(f"stage '{stage}' is not a kotune stage{suggest(stage, STAGES)} "
                          f"(one of: {', '.join(STAGES)})")
    if not config_argv or config_argv[0].startswith("--"):
        raise KotuneError(f"give the config file after the stage: kotune ray {stage} CONFIG.yaml [--workers N]")
    path, raw = read_config(config_argv)
    translation = translate(raw, stage, set().union(*field_groups(stage).values()))
    kotune, _, _, training, _, problems = check_config(translation.raw, stage, check_paths)
    if translation.problems + problems:
        raise ConfigError(translation.problems + problems, path)
    return path, {"output_dir": str(training["output_dir"]), "overwrite": bool(kotune.get("overwrite_output_dir")),
                  "resuming": bool(training.get("resume_from_checkpoint"))}


def train_loop_per_worker(config: dict) -> None:
    """One Ray Train worker: the stage's runner, from the driver's working directory (Ray Train moves each worker
    into its own), with the driver's command line as sys.argv (run_info.json records what the user ran)."""
    if config["cwd"] and os.path.isdir(config["cwd"]):
        os.chdir(config["cwd"])
    sys.argv = list(config["command"])
    module, _, function = config["runner"].partition(":")
    try:
        code = getattr(importlib.import_module(module), function)(list(config["argv"]))
    except KotuneError as err:
        raise WorkerUserError(str(err)) from None
    if code:
        raise RuntimeError(f"kotune {config['stage']} exited with code {code}")


def failure_line(err: BaseException) -> tuple[str, bool]:
    """(the first failed worker's error in one line, whether it is a user mistake) from Ray's exception."""
    failures = getattr(err, "worker_failures", None) or {}
    rank, cause = min(failures.items(), key=lambda item: item[0]) if failures else (None, err)
    while getattr(cause, "cause", None) is not None and cause.cause is not cause:  # RayTaskError wraps the original
        cause = cause.cause
    user = isinstance(cause, WorkerUserError)
    text = str(cause).strip() or type(cause).__name__
    if not user:
        lines = [line for line in text.splitlines() if line.strip()]
        text = f"{type(cause).__name__}: {lines[-1].strip() if lines else ''}"
    return (f"rank {rank}: {text}" if rank is not None else text), user


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    stage, config_argv, options = parse(argv)
    remote_client = str(options["--address"]).startswith("ray://")
    # Through ray:// the workers read the config's paths on the cluster, not here: check keys and values only.
    _, out_settings = check_run(stage, config_argv, check_paths=not remote_client)
    if importlib.util.find_spec("ray") is None:  # after the config: its mistakes are worth fixing first
        raise KotuneError(INSTALL)
    output_dir = out_settings.pop("output_dir")
    try:
        import ray  # noqa: F401  (the whole of Ray Train, before anything starts)
        from ray.train.torch import TorchTrainer  # noqa: F401
    except ImportError as err:
        raise KotuneError(f"{INSTALL}; importing it failed: {err}") from None
    if not remote_client:  # each worker checks it again; here a rerun into a finished run costs no cluster start
        from kotune.stages.safety import check_output_dir

        check_output_dir(output_dir, **out_settings)
    out = Path(output_dir) if remote_client else Path(output_dir).resolve()
    storage = options["--storage"] or str(out.parent / f"{out.name}.ray")
    if not remote_client and "://" not in storage:
        storage = str(Path(storage).resolve())
    return fit(stage, config_argv, options, storage, command=["kotune", "ray", *argv])


def fit(stage: str, config_argv: list[str], options: dict, storage: str, command: list[str]) -> int:
    """Start (or join) Ray, run the stage in `--workers` Ray Train workers, stop; 0, or the first worker's error."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    workers, gpus, address = options["--workers"], options["--gpus"], options["--address"]
    if address:
        ray.init(address=address)
    else:
        import torch

        have = torch.cuda.device_count()
        if gpus and have < workers:  # else Ray waits for GPUs that never come, silently
            fix = f"use --workers {have}" if have else "leave --gpus out to train on CPU"
            raise KotuneError(f"--gpus: {workers} worker(s) need {workers} GPU(s) and this machine has {have}: "
                              f"{fix}, or --address for a cluster")
        ray.init(address="local", num_cpus=max(workers, os.cpu_count() or 1))  # a CPU per worker, even oversubscribed
    trainer = TorchTrainer(
        train_loop_per_worker, scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus),
        train_loop_config={"stage": stage, "runner": STAGES[stage].runner, "argv": config_argv, "cwd": os.getcwd(),
                           "command": command},
        run_config=RunConfig(storage_path=storage, name=f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}"))
    print(f"kotune ray: {stage} {config_argv[0]} on {workers} worker(s) ({'GPU' if gpus else 'CPU'}), "
          f"Ray storage {storage}", flush=True)
    failure = None
    try:
        trainer.fit()
    except Exception as err:  # Ray raises its TrainingFailedError with every worker's exception inside
        failure = failure_line(err)
    finally:
        ray.shutdown()  # first: the workers' streamed logs end here, so the error below is the last line
    if failure and failure[1]:
        raise KotuneError(failure[0])
    if failure:
        print(f"kotune: error: {stage} failed in a Ray worker: {failure[0]}", file=sys.stderr, flush=True)
        return 1
    print("kotune ray: done", flush=True)
    return 0
