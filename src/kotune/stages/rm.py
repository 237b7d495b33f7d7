"""A reward model: the base with a one-output score head, trained on preference pairs so that the chosen answer
scores higher (TRL's RewardTrainer; the body of `train/rm.py` and `kotune rm`).

    accelerate launch train/rm.py configs/rm/polyglot-ko-tiny-demo.yaml [--key=value ...]
    kotune score RUN_DIR pairs.jsonl          # scores {prompt, answer} rows with the saved model

The output is a sequence-classification model (or a LoRA adapter with its score head) plus the tokenizer with the
chat template, so prompts are scored exactly as the policy is prompted. With an eval split the trainer logs
pairwise accuracy (`eval_accuracy`) and the mean margin.
"""

from __future__ import annotations

from kotune.stages.preference_run import Recipe, pairs, run_stage


def joined_pairs(cfg, tokenizer):
    """Pairs as full sequences: prompt + chosen and prompt + rejected (answer + EOS), as RewardTrainer scores them."""
    train, evals, report = pairs(cfg, tokenizer)

    def join(row):
        return {"chosen_ids": row["prompt_ids"] + row["chosen_ids"],
                "rejected_ids": row["prompt_ids"] + row["rejected_ids"]}

    train = train.map(join, remove_columns=["prompt_ids"])
    return train, (evals.map(join, remove_columns=["prompt_ids"]) if evals is not None else None), report


def reward_model(cfg, tokenizer) -> dict:
    """The score model from a base, a merged/full model, or an SFT adapter dir (merged into its base first)."""
    from peft import PeftConfig, PeftModel

    from kotune.models.adapter_dirs import adapter_base
    from kotune.models.loading import load_base
    from kotune.models.lora import attach_lora

    m, args = cfg.model, cfg.training
    path = m.model_name_or_path
    base_path = adapter_base(path)
    model = load_base(base_path or path, m, args, tokenizer, reward_head=True)
    if base_path is not None:  # an SFT adapter: its weights merged into the backbone under the new score head
        adapter = PeftConfig.from_pretrained(path)
        adapter.task_type = None  # the LoRA weights only, not PEFT's causal-LM wrapper (a score model has no generate)
        model = PeftModel.from_pretrained(model, path, config=adapter).merge_and_unload().requires_grad_(True)
    return {"model": attach_lora(model, m, args, reward_head=True) if m.use_peft else model}


def rm_trainer_class():
    from trl import RewardTrainer

    from kotune.stages.safety import NonFiniteLossGuard

    class KotuneRewardTrainer(NonFiniteLossGuard, RewardTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # TRL casts every trainable parameter of a quantized model to bf16 (QLoRA's recipe), the score head
            # included; LoRA layers cast their input, a plain head does not. Feed the head in its own dtype.
            for name, module in self.model.named_modules():
                if name.endswith("score.modules_to_save.default") or name.endswith("score.original_module"):
                    module.register_forward_pre_hook(lambda m, inputs: (inputs[0].to(m.weight.dtype),))

    return KotuneRewardTrainer


RECIPE = Recipe(data=joined_pairs, models=reward_model, trainer=rm_trainer_class)


def main(argv: list[str]) -> int:
    return run_stage(argv, "rm", RECIPE)
