"""FSDP2 runs: accelerate's FSDP plugin (from `fsdp`/`fsdp_config` in the YAML, or from an accelerate config file
with `distributed_type: FSDP`), and the three things kotune adds around it.

1. Machines without an accelerator. accelerate gives the FSDP plugin only to GPU-like process groups; with CPU
   processes (gloo) it silently drops the plugin and the run trains as plain data parallel. torch's FSDP2
   (`fully_shard`) does run over gloo on CPU, so kotune keeps the plugin there: tests and CPU clusters shard for real.
2. Wrapping. Each registered family shards by its own block classes (`ArchitectureSpec.fsdp_blocks`), keeping only
   the names this checkpoint has (a qwen3 model under the qwen2 spec), unless the config names them.
3. The end of a run. Checkpoints stay sharded (every rank writes its shard; resume reads them back), but the output
   dir gets one whole model or adapter that transformers and PEFT load.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("kotune")


def fsdp_in_use(training_values: dict) -> bool:
    """FSDP from the YAML (`fsdp`) or from `accelerate launch --config_file` with `distributed_type: FSDP`."""
    return bool(training_values.get("fsdp")) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"


def keep_fsdp_on_cpu() -> None:
    """Without CUDA, let accelerate's state keep the FSDP plugin for CPU process groups (see the module docstring).
    accelerate copies the process type from PartialState into every new AcceleratorState, so both are set."""
    import torch

    if torch.cuda.is_available():
        return
    from accelerate import state
    from accelerate.utils import DistributedType

    if getattr(state.AcceleratorState.__init__, "kotune_cpu_fsdp", False):
        return
    original = state.AcceleratorState.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        plugin = kwargs.get("fsdp_plugin")
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin
            state.PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    init.kotune_cpu_fsdp = True
    state.AcceleratorState.__init__ = init


def block_classes(model) -> list[str]:
    """The registry's block classes that this model has (every registered family names its own)."""
    from kotune.models.architectures import spec_for

    config = getattr(model, "config", None)
    wanted = spec_for(getattr(config, "model_type", None)).fsdp_blocks
    present = {type(m).__name__ for m in model.modules()}
    return [name for name in wanted if name in present]


def prepare(trainer) -> None:
    """Before training: wrap by the family's blocks unless the config chose; log what is sharded and how."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if plugin is None:
        return
    chosen = (trainer.args.fsdp_config or {}).get("transformer_layer_cls_to_wrap")
    if not chosen and not os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP"):
        blocks = block_classes(trainer.model)
        if blocks:
            plugin.transformer_cls_names_to_wrap = blocks
    logger.info("FSDP%s: sharding %s blocks over %d processes; checkpoints %s, the final model whole",
                plugin.fsdp_version, ", ".join(plugin.transformer_cls_names_to_wrap or ["transformers' default"]),
                trainer.args.world_size, str(plugin.state_dict_type).split(".")[-1].lower())


def whole_final_save(trainer) -> None:
    """The output dir gets a full state dict (or a whole adapter): the Trainer saves nothing under FSDP otherwise
    when checkpoints are sharded."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if plugin is None:
        return
    from torch.distributed.fsdp import StateDictType

    plugin.state_dict_type = StateDictType.FULL_STATE_DICT
