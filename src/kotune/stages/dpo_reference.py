"""The policy and its reference for DPO, starting from a base, a merged/full model, or an SFT adapter dir.

- SFT adapter + `use_peft: true`: the adapter is loaded trainable as `default`; TRL 1.16 copies it into a frozen
  adapter named `ref` and runs reference passes under it, so the reference is the SFT model, not the raw base.
- merged/full model + `use_peft: true`: a new adapter; the reference is the model with its adapter disabled.
- `use_peft: false`: the full model trains against a frozen copy (twice the memory).
Never a ref model and a peft_config together.
"""

from __future__ import annotations

import copy
import logging

from kotune.models.adapter_dirs import adapter_base
from kotune.models.loading import load_base
from kotune.models.lora import attach_lora, prepare_for_adapters

logger = logging.getLogger(__name__)


def load_policy_and_reference(model_args, training_args, tokenizer):
    """(policy, ref_model or None). With PEFT the reference lives in the same weights (no second copy)."""
    from peft import PeftModel

    path = model_args.model_name_or_path
    base_path = adapter_base(path)
    if base_path is None:
        model = load_base(path, model_args, training_args, tokenizer)
        if model_args.use_peft:
            logger.info("DPO: new LoRA adapter; reference = the same model with the adapter disabled")
            return attach_lora(model, model_args, training_args), None
        logger.info("DPO: full fine-tuning against a frozen copy of %s (2x model memory)", path)
        return model, _frozen_copy(model)

    model = load_base(base_path, model_args, training_args, tokenizer)
    if model_args.use_peft:
        model = prepare_for_adapters(model, model_args, training_args)
        model = PeftModel.from_pretrained(model, path, is_trainable=True)
        logger.info("DPO: continuing the SFT adapter %s; reference = the same adapter, frozen as 'ref'", path)
        return model, None
    merged = PeftModel.from_pretrained(model, path).merge_and_unload()
    logger.info("DPO: SFT adapter merged into %s for full fine-tuning against a frozen copy (2x memory)", base_path)
    return merged, _frozen_copy(merged)


def _frozen_copy(model):
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
