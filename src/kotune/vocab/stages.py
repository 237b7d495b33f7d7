"""EEVE's staged schedule as one table, the old/new row split it reads, and the settings it refuses up front.

Kim et al., "Efficient and Effective Vocabulary Expansion Towards Multilingual Large Language Models" (EEVE,
arXiv 2402.14714) train an extended SOLAR-10.7B in seven stages, each opening more weights than the one before and
freezing all the rest:

    1  the new tokens' input embeddings
    2  the new tokens' output embeddings (lm_head rows)
    3  both
    4  every output embedding (old and new), the input embeddings frozen
    5  the new input embeddings and every output embedding
    6  everything
    7  the internal layers only ("cool down"): embeddings and lm_head frozen

kotune reads the preset from `eeve_stage` and the split from kotune_vocab.json (written by `kotune vocab extend`):
ids below `old_vocab_size` are old, the rest new. A stage's output dir carries the record on, so stages chain by
pointing model_name_or_path at the previous stage's output. No torch import here: `plan` and the config check use it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kotune.models.adapter_dirs import adapter_base

RECORD = "kotune_vocab.json"
SOURCE = "EEVE (Kim et al. 2024, arXiv 2402.14714), stage"


@dataclass(frozen=True)
class Preset:
    inputs: str  # input embedding rows that train: none | new | all
    outputs: str  # output (lm_head) rows that train: none | new | all
    layers: bool  # every other weight (attention, MLP, norms); a LoRA adapter in LoRA runs
    rule: str


PRESETS = {
    1: Preset("new", "none", False, "new input embeddings"),
    2: Preset("none", "new", False, "new output embeddings"),
    3: Preset("new", "new", False, "new input and output embeddings"),
    4: Preset("none", "all", False, "all output embeddings"),
    5: Preset("new", "all", False, "new input embeddings and all output embeddings"),
    6: Preset("all", "all", True, "all parameters"),
    7: Preset("none", "none", True, "internal layers only (embeddings and lm_head frozen)"),
}
SPLIT_STAGES = tuple(k for k, p in PRESETS.items() if "new" in (p.inputs, p.outputs))  # old rows frozen, new train


def vocab_record(model_dir: str) -> tuple[dict, Path] | None:
    """(kotune_vocab.json, where it was found): in the model dir, or in the base an adapter dir names."""
    for where in (model_dir, adapter_base(model_dir)):
        if where and (Path(where) / RECORD).is_file():
            path = Path(where) / RECORD
            return json.loads(path.read_text(encoding="utf-8")), path
    return None


def tied(model_dir: str, record: dict) -> bool:
    if "tied_embeddings" in record:
        return bool(record["tied_embeddings"])
    config = Path(adapter_base(model_dir) or model_dir) / "config.json"
    return config.is_file() and bool(json.loads(config.read_text()).get("tie_word_embeddings", False))


def effective(preset: Preset, is_tied: bool) -> Preset:
    """With tied embeddings one matrix is both input and output: stages 1-3 all train its new rows."""
    if not is_tied or preset.inputs == preset.outputs:
        return preset
    rows = "new" if "new" in (preset.inputs, preset.outputs) else preset.inputs
    return Preset(rows, rows, preset.layers, preset.rule + " (tied embeddings: the new rows of the one matrix)")


def stage_problems(cfg) -> list[str]:
    """Every eeve_stage / embedding_learning_rate setting that cannot do what it says, one line each."""
    kot, model = cfg.kotune, cfg.model
    stage, lr, problems = kot.eeve_stage, kot.embedding_learning_rate, []
    if lr is not None and lr <= 0:
        problems.append(f"embedding_learning_rate: {lr} must be > 0 (or leave it out: learning_rate)")
    if lr is not None and (stage == 7 or (stage is None and model.use_peft)):
        why = "eeve_stage 7 freezes the embeddings and lm_head" if stage == 7 else \
            "a LoRA run without eeve_stage trains no embedding row"
        problems.append(f"embedding_learning_rate: {why}, so it would apply to nothing; remove it or choose an "
                        "eeve_stage that trains embedding rows (1-6)")
    if stage is None:
        return problems
    if stage not in PRESETS:
        return problems + [f"eeve_stage: {stage!r} is not one of 1-7 (EEVE's stages: "
                           + "; ".join(f"{k} {p.rule}" for k, p in PRESETS.items()) + ")"]
    found = vocab_record(model.model_name_or_path)
    if found is None:
        return problems + [f"eeve_stage: '{model.model_name_or_path}' has no {RECORD}, so kotune cannot tell the "
                           "new tokens' rows from the base's; run `kotune vocab extend` first and set "
                           "model_name_or_path to its output dir (or to the output dir of an earlier stage)"]
    record, _ = found
    if model.use_peft and getattr(model, "lora_modules_to_save", None):
        problems.append(f"eeve_stage {stage} decides which embedding and lm_head rows train beside the adapter; "
                        "remove lora_modules_to_save (stages 4-6 train whole matrices through it themselves)")
    if stage in (4, 5) and tied(model.model_name_or_path, record):
        problems.append(f"eeve_stage {stage}: trains all output rows but keeps old input rows frozen, and this "
                        "model ties lm_head to its input embeddings (one matrix), so it cannot; use 3 (the new "
                        "rows) or 6 (everything)")
    from kotune.config.deepspeed_file import deepspeed_stage

    if stage in SPLIT_STAGES and not model.use_peft and deepspeed_stage(cfg.training_values.get("deepspeed")) == 3:
        problems.append(f"eeve_stage {stage} with full fine-tuning splits the embedding into frozen old rows and "
                        "trainable new rows, which ZeRO-3's parameter partitioning does not see; use ZeRO-2, or "
                        "use_peft: true (PEFT's trainable_token_indices)")
    return problems


def stage_trainable(cfg, config, total: int, lora: int) -> int | None:
    """Trainable parameters under eeve_stage for `plan`, from the (extended) model's config: the open rows ×
    hidden size, plus the internal layers (full) or the LoRA adapter (use_peft) where the stage trains them.
    `total`: every parameter; `lora`: the adapter's. None without eeve_stage or without kotune_vocab.json."""
    stage, found = cfg.kotune.eeve_stage, vocab_record(cfg.model.model_name_or_path)
    if stage not in PRESETS or found is None:
        return None
    text = config.get_text_config()
    rows, hidden = text.vocab_size, text.hidden_size
    is_tied = tied(cfg.model.model_name_or_path, found[0])
    preset = effective(PRESETS[stage], is_tied)
    new = max(rows - found[0]["old_vocab_size"], 0)
    count = {"none": 0, "new": new, "all": rows}
    open_rows = count[preset.inputs] + (0 if is_tied else count[preset.outputs])
    matrices = rows * hidden * (1 if is_tied else 2)
    layers = (lora if cfg.model.use_peft else total - matrices) if preset.layers else 0
    return open_rows * hidden + layers
