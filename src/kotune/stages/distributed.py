"""The start of a run under DeepSpeed: the process group first, then the training config that needs it.

Reading a config has no side effects; this is where a run's distributed state begins. DeepSpeed needs its process
group before TrainingArguments reads the world size (else "train_batch_size is not equal to micro_batch_per_gpu *
gradient_acc_step * world_size"), so the stage's training config is built again here, now with `deepspeed`.
"""

from __future__ import annotations

import os
import socket

from kotune.config.library import build_training_config
from kotune.config.schema import RunConfig
from kotune.errors import ConfigError
from kotune.stages.registry import get_stage


def start(cfg: RunConfig) -> RunConfig:
    """For a DeepSpeed run: start the process group and rebuild `cfg.training` with `deepspeed` set. For an FSDP
    run without CUDA: keep accelerate's FSDP plugin on the CPU processes (`kotune.stages.fsdp`)."""
    from kotune.stages.fsdp import fsdp_in_use, keep_fsdp_on_cpu

    if fsdp_in_use(cfg.training_values):
        keep_fsdp_on_cpu()
    if not cfg.training_values.get("deepspeed"):
        return cfg
    init_deepspeed_distributed()
    training, problem = build_training_config(get_stage(cfg.stage).training_config, cfg.training_values)
    if problem:
        raise ConfigError([problem], cfg.source)
    cfg.training = training
    return cfg


def init_deepspeed_distributed() -> None:
    """DeepSpeed's process group. Without a launcher (plain `python train/sft.py ... --deepspeed ...`) a one-process
    group is set up, since DeepSpeed would otherwise look for MPI. Without CUDA it uses gloo and DeepSpeed's CPU
    accelerator."""
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(port)}.items():
            os.environ.setdefault(key, value)
    import deepspeed

    deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
