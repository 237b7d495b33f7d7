"""The stage registry: every training stage kotune runs, by name.

cli, config validation, sweep, plan, eval and launch.sh read this table; nothing else in kotune tests a stage's
name. Adding a stage is one module with a `main(argv) -> int` plus one `register(Stage(...))` here, an entry script
`train/<name>.py`, configs and tests; then `python -m kotune.config --write-library-fields` records its TRL config
fields for the fast config check.

This module imports nothing heavy (no torch, no TRL): a misspelled key must be reported in about a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Stage:
    """One training stage: what it is called, which config it reads, what data it takes, and how it runs."""

    name: str
    summary: str  # one line for `kotune --help`
    training_config: str  # "module:Class" of the TRL/transformers config (its fields are the stage's keys)
    runner: str  # "module:function" taking argv and returning an exit code
    data_formats: tuple[str, ...]  # dataset_mixture formats it reads ("kit19/" means any kit19/<task>)
    kotune_keys: tuple[str, ...] = ()  # kotune fields only this stage reads (e.g. DPO's max_prompt_length)
    reference_copy: bool = False  # full fine-tuning keeps a frozen reference copy of the model (plan counts it)
    evaluates_after: bool = False  # honours eval_tasks at the end of the run
    defaults: tuple[tuple[str, Any], ...] = ()  # training values this stage sets when the user leaves them unset
    ranges: tuple[tuple[str, tuple], ...] = ()  # this stage's own bounds for a key (config.schema.RANGES' layout)
    choices: tuple[tuple[str, tuple, str], ...] = ()  # (key, the values this stage takes, where the others belong)
    lora_task_type: str = "CAUSAL_LM"  # PEFT's task type of its adapter (TRL's reward recipes write SEQ_CLS)

    @property
    def entry_script(self) -> str:
        """The script users launch, relative to the checkout: train/<name>.py."""
        return f"train/{self.name}.py"

    def reads_format(self, fmt: str) -> bool:
        return fmt in self.data_formats or ("kit19/" in self.data_formats and fmt.startswith("kit19/"))


STAGES: dict[str, Stage] = {}


def register(stage: Stage) -> Stage:
    STAGES[stage.name] = stage
    return stage


def get_stage(name: str) -> Stage:
    """The stage called `name` (callers check user input against STAGES first)."""
    return STAGES[name]


def stages_with(attribute: str) -> list[str]:
    """Names of the stages whose boolean `attribute` is true, or that list `attribute` in their kotune_keys."""
    return [s.name for s in STAGES.values() if getattr(s, attribute, False) is True or attribute in s.kotune_keys]


register(Stage(
    name="sft",
    summary="supervised fine-tuning: kotune sft CONFIG.yaml [--key=value ...]",
    training_config="trl:SFTConfig",
    runner="kotune.stages.sft:main",
    data_formats=("instruction", "chat", "sharegpt", "kit19/"),
    kotune_keys=("eeve_stage", "embedding_learning_rate"),
    evaluates_after=True,
))
PAIRWISE = ("preference",)  # {prompt, chosen, rejected}
register(Stage(
    name="dpo",
    summary="preference training (DPO; IPO with loss_type: [ipo]): kotune dpo CONFIG.yaml [--key=value ...]",
    training_config="trl:DPOConfig",
    runner="kotune.stages.dpo:main",
    data_formats=PAIRWISE,
    kotune_keys=("max_prompt_length",),
    reference_copy=True,
))
register(Stage(
    name="orpo",
    summary="SFT + preference in one stage, no reference model (ORPO): kotune orpo CONFIG.yaml [--key=value ...]",
    training_config="trl.experimental.orpo:ORPOConfig",
    runner="kotune.stages.orpo:main",
    data_formats=PAIRWISE,
    kotune_keys=("max_prompt_length",),
))
register(Stage(
    name="simpo",
    summary="reference-free preference training (SimPO): kotune simpo CONFIG.yaml [--key=value ...]",
    training_config="trl.experimental.cpo:CPOConfig",
    runner="kotune.stages.simpo:main",
    data_formats=PAIRWISE,
    kotune_keys=("max_prompt_length",),
    defaults=(("loss_type", "simpo"), ("cpo_alpha", 0.0)),
    choices=(("loss_type", ("simpo", "alphapo"),
              "sigmoid, hinge and ipo are CPO's losses: run the recipe with kotune cpo (train/cpo.py)"),),
))
register(Stage(
    name="cpo",
    summary="contrastive preference optimization (CPO): kotune cpo CONFIG.yaml [--key=value ...]",
    training_config="trl.experimental.cpo:CPOConfig",
    runner="kotune.stages.cpo:main",
    data_formats=PAIRWISE,
    kotune_keys=("max_prompt_length",),
    choices=(("loss_type", ("sigmoid", "hinge", "ipo"),
              "simpo and alphapo are SimPO's losses: run the recipe with kotune simpo (train/simpo.py)"),),
))
register(Stage(
    name="kto",
    summary="preference training on unpaired good/bad answers (KTO): kotune kto CONFIG.yaml [--key=value ...]",
    training_config="trl:KTOConfig",
    runner="kotune.stages.kto:main",
    data_formats=("unpaired", "preference"),  # preference pairs are unpaired into one good and one bad row
    kotune_keys=("max_prompt_length",),
    reference_copy=True,
))
register(Stage(
    name="rm",
    summary="a reward model on preference pairs: kotune rm CONFIG.yaml [--key=value ...]",
    training_config="trl:RewardConfig",
    runner="kotune.stages.rm:main",
    data_formats=PAIRWISE,
    lora_task_type="SEQ_CLS",
    kotune_keys=("max_prompt_length",),
))
register(Stage(
    name="grpo",
    summary="online RL with verifiable rewards (GRPO): kotune grpo CONFIG.yaml [--key=value ...]",
    training_config="trl:GRPOConfig",
    runner="kotune.stages.grpo:main",
    data_formats=("prompt",),  # {prompt, answer?, speech_level?, ...}: the columns reach the rewards
    kotune_keys=("reward_funcs", "max_prompt_length", "system_prompt"),
    ranges=(("beta", ([0], None, "the KL weight; 0 (TRL's default) means no reference model")),),
))
register(Stage(
    name="pt",
    summary="continued pretraining on raw text, every token trained: kotune pt CONFIG.yaml [--key=value ...]",
    training_config="trl:SFTConfig",
    runner="kotune.stages.pt:main",
    data_formats=("text",),
    kotune_keys=("eeve_stage", "embedding_learning_rate"),
))
