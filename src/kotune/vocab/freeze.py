"""`eeve_stage`: open exactly the weights an EEVE stage trains (kotune.vocab.stages), the old rows truly frozen.

Old rows that do not train get no gradient, no weight decay and no optimizer state:

- **Full fine-tuning.** An embedding or lm_head whose new rows train is split with a torch parametrization: its
  `weight` becomes `cat([old rows, new rows])`, the old rows a buffer (outside `parameters()`, so outside the
  optimizer, its weight decay and its state), the new rows the only Parameter. Every forward that reads `.weight`
  (nn.Embedding, scaled embeddings, nn.Linear, TRL's fused LM head) sees the whole matrix. `state_dict()` writes
  the plain `weight` again, so checkpoints and the final model load with plain transformers, and a checkpoint
  loads back into the split module (resume). Tied embeddings share one split.
- **LoRA runs.** PEFT's own row-level training: `trainable_token_indices` (a delta for the chosen rows only) for
  new rows, `modules_to_save` for a whole matrix; stages 1-5 freeze the LoRA matrices, as EEVE freezes the layers.

`embedding_learning_rate` puts the rows that train into param groups of their own (`EmbeddingLearningRate`, a
Trainer mixin that reads what `apply_stage` opened).
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from pathlib import Path

from kotune.errors import ConfigError
from kotune.vocab.stages import PRESETS, RECORD, SOURCE, effective, stage_problems, tied, vocab_record

logger = logging.getLogger(__name__)

EMBEDDING_GROUPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model → (lr, params)


def check_stage(cfg) -> None:
    """Refuse, before anything loads, every setting kotune.vocab.stages finds wrong (all at once)."""
    problems = stage_problems(cfg)
    if problems:
        raise ConfigError(problems, cfg.source)


def split_rows(module, first: int, share=None) -> None:
    """Make `module.weight` = cat([old rows (a buffer), new rows (the Parameter)]); `share`: a module split
    before whose rows this one uses (tied embeddings)."""
    import torch
    from torch.nn.utils import parametrize

    class KeepOldRows(torch.nn.Module):
        def __init__(self, old):
            super().__init__()
            self.register_buffer("old", old)

        def forward(self, new):
            return torch.cat([self.old, new])

        def right_inverse(self, weight):
            return [weight[first:]]  # a list: the parametrization makes a new Parameter, the old one stays whole

    weight = module.weight
    keep = share.parametrizations.weight[0] if share is not None else KeepOldRows(weight.detach()[:first])
    parametrize.register_parametrization(module, "weight", keep, unsafe=True)
    rows = module.parametrizations.weight
    if share is not None:
        rows.original0 = share.parametrizations.weight.original0
    rows.original0.requires_grad_(True)
    names = ("parametrizations.weight.original0", "parametrizations.weight.0.old")

    def save_whole(mod, state, prefix, _):
        new, old = (state.pop(prefix + n) for n in names)
        if share is None:  # a tied head is saved by its embedding, as transformers does
            state[prefix + "weight"] = torch.cat([old.detach(), new.detach()])

    def load_whole(mod, state, prefix, *_):
        if prefix + "weight" in state:
            whole = state.pop(prefix + "weight")
            state[prefix + names[0]], state[prefix + names[1]] = whole[first:], whole[:first]

    def tied_keys_loaded(mod, incompatible):
        incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if not k.endswith(names)]

    module.register_state_dict_post_hook(save_whole)
    module.register_load_state_dict_pre_hook(load_whole)
    if share is not None:
        module.register_load_state_dict_post_hook(tied_keys_loaded)


def open_full(model, preset, first: int, is_tied: bool) -> list:
    """Full fine-tuning: freeze all, then open the preset's weights. Returns the embedding/head tensors that train."""
    emb, head = model.get_input_embeddings(), model.get_output_embeddings()
    matrices = {id(emb.weight), id(head.weight)} if head is not None else {id(emb.weight)}
    for p in model.parameters():
        p.requires_grad_(preset.layers and id(p) not in matrices)
    opened = []
    for module, rows, share in ((emb, preset.inputs, None), (head, preset.outputs, emb if is_tied else None)):
        if module is None or rows == "none" or (is_tied and module is head and rows == "all"):
            continue
        if rows == "all":
            module.weight.requires_grad_(True)
            opened.append(module.weight)
        else:
            split_rows(module, first, share)
            opened.append(module.parametrizations.weight.original0)
    return list({id(p): p for p in opened}.values())


def open_lora(model, preset, first: int, is_tied: bool) -> list:
    """A PEFT LoRA model: trainable_token_indices for new rows, modules_to_save for whole matrices."""
    from peft.tuners.tuners_utils import BaseTuner
    from peft.utils.other import set_additional_trainable_modules

    base = model.get_base_model()
    leaf = {m: n.rsplit(".", 1)[-1] for n, m in base.named_modules()}
    emb, head = base.get_input_embeddings(), base.get_output_embeddings()
    rows = emb.weight.shape[0]
    peft_config = model.peft_config[model.active_adapter]
    tokens, whole = {}, []  # stage_problems refuses lora_modules_to_save beside eeve_stage
    for module, which in ((emb, preset.inputs), (None if is_tied else head, preset.outputs)):
        if module is not None and which == "new":
            tokens[leaf[module]] = list(range(first, rows))
        elif module is not None and which == "all":
            whole.append(leaf[module])
    if not preset.layers:
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.requires_grad_(False)
    peft_config.trainable_token_indices, peft_config.modules_to_save = tokens or None, whole or None
    if is_tied and whole and head is not None:  # the head uses the embedding's trained copy (PEFT's own tying)
        peft_config.ensure_weight_tying, peft_config.modules_to_tie = True, [leaf[head]]
    set_additional_trainable_modules(base, peft_config, BaseTuner.get_model_config(base), model.active_adapter)
    wrappers = (model.get_input_embeddings(), model.get_output_embeddings())
    if wrappers[1] is not None and not hasattr(wrappers[1], "bias"):
        # TRL's fused LM head reads lm_head.weight and lm_head.bias; PEFT's TrainableTokensWrapper forwards only
        # `weight` (the merged rows), so hand it the base head's bias (None for every causal LM head seen)
        object.__setattr__(wrappers[1], "bias", head.bias)
    return [p for p in {id(p): p for w in wrappers if w is not None for p in w.parameters()}.values()
            if p.requires_grad]


def apply_stage(model, cfg):
    """Open the weights `cfg.kotune.eeve_stage` trains, log which and why, and note them for
    `embedding_learning_rate`. Without eeve_stage: only the embedding learning rate (full fine-tuning)."""
    kot = cfg.kotune
    check_stage(cfg)
    if kot.eeve_stage is None:
        if kot.embedding_learning_rate is not None:
            emb, head = model.get_input_embeddings(), model.get_output_embeddings()
            params = [p for m in (emb, head) if m is not None for p in m.parameters() if p.requires_grad]
            remember(model, kot.embedding_learning_rate, params)
        return model
    record, where = vocab_record(cfg.model.model_name_or_path)
    is_tied = tied(cfg.model.model_name_or_path, record)
    preset = effective(PRESETS[kot.eeve_stage], is_tied)
    first = record["old_vocab_size"]
    lora = hasattr(model, "peft_config") and hasattr(model, "get_base_model")  # a PeftModel
    if lora:
        params = open_lora(model, preset, first, is_tied)
    else:
        params = open_full(model, preset, first, is_tied)
        if cfg.training.gradient_checkpointing and preset.layers and preset.inputs == "none":
            model.enable_input_require_grads()  # checkpointed layers need an input that requires grad
    rows = model.get_input_embeddings().weight.shape[0]
    describe = {"none": "frozen", "new": f"rows {first}-{rows - 1} train ({rows - first} new), rows 0-{first - 1} "
                                          "frozen", "all": f"all {rows} rows train"}
    how = ("PEFT trainable_token_indices / modules_to_save" if lora
           else "old rows a frozen buffer, new rows their own Parameter")
    logger.info("eeve_stage %d: %s (%s %d; split from %s)", kot.eeve_stage, preset.rule, SOURCE, kot.eeve_stage,
                where)
    logger.info("eeve_stage %d: input embeddings %s; lm_head %s; internal layers %s [%s]", kot.eeve_stage,
                describe[preset.inputs], "tied to the input embeddings" if is_tied else describe[preset.outputs],
                ("train (LoRA)" if lora else "train") if preset.layers else "frozen", how)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("eeve_stage %d: %s trainable parameters%s", kot.eeve_stage, f"{trainable:,}",
                "; the frozen old rows get no gradient, weight decay or optimizer state"
                if "new" in (preset.inputs, preset.outputs) else "")
    if params and kot.embedding_learning_rate is not None:
        remember(model, kot.embedding_learning_rate, params)
    carry_record(cfg, record)
    return model


def remember(model, lr: float, params: list) -> None:
    EMBEDDING_GROUPS[model] = (lr, params)
    logger.info("embedding_learning_rate %g: %d embedding/lm_head tensors (%s parameters) in their own param "
                "groups", lr, len(params), f"{sum(p.numel() for p in params):,}")


def carry_record(cfg, record: dict) -> None:
    """The output dir gets kotune_vocab.json with this stage appended, so the next stage can start from it."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    out = Path(cfg.training.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    done = {**record, "stages": [*record.get("stages", []), {"eeve_stage": cfg.kotune.eeve_stage,
                                                             "from": cfg.model.model_name_or_path}]}
    (out / RECORD).write_text(json.dumps(done, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


class EmbeddingLearningRate:
    """Trainer mixin: the embedding/lm_head rows that `apply_stage` opened train at embedding_learning_rate, in
    param groups of their own beside the Trainer's (weight decay kept as the Trainer set it)."""

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        found = EMBEDDING_GROUPS.get(self.model)
        if found is None or optimizer is None:
            return optimizer
        lr, params = found
        ids, extra = {id(p) for p in params}, []
        for group in optimizer.param_groups:
            mine = [p for p in group["params"] if id(p) in ids]
            if mine:
                group["params"] = [p for p in group["params"] if id(p) not in ids]
                extra.append({**group, "params": mine, "lr": lr})
        optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]
        for group in extra:
            optimizer.add_param_group(group)
        return optimizer
