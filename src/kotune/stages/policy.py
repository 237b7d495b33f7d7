"""The policy a preference stage trains, and its reference where the method has one, starting from a base, a
merged/full model, or an SFT adapter dir.

- SFT adapter + `use_peft: true`: the adapter is loaded trainable as `default`. With a reference (DPO, KTO), TRL 1.16
  copies it into a frozen adapter named `ref` and runs reference passes under it, so the reference is the SFT model,
  not the raw base.
- merged/full model + `use_peft: true`: a new adapter; the reference is the model with its adapter disabled.
- `use_peft: false`: the full model trains; with a reference, against a frozen copy (twice the memory).
Reference-free methods (ORPO, SimPO) never get a second copy. Never a ref model and a peft_config together.
"""

from __future__ import annotations

import copy
import logging

from kotune.models.adapter_dirs import adapter_base
from kotune.models.loading import load_base
from kotune.models.moe import use_router_aux_loss
from kotune.models.lora import attach_lora, prepare_for_adapters

logger = logging.getLogger(__name__)


def load_policy(model_args, training_args, tokenizer, reference: bool, stage: str) -> tuple:
    """(policy, ref_model or None). With PEFT the reference lives in the same weights (no second copy); without a
    reference (`reference=False`) there is never a frozen copy."""
    from peft import PeftModel

    path = model_args.model_name_or_path
    base_path = adapter_base(path)
    name = stage.upper()
    if base_path is None:
        model = load_base(path, model_args, training_args, tokenizer)
        use_router_aux_loss(model)
        if model_args.use_peft:
            logger.info("%s: new LoRA adapter%s", name,
                        "; reference = the same model with the adapter disabled" if reference else "")
            return attach_lora(model, model_args, training_args), None
        if not reference:
            logger.info("%s: full fine-tuning of %s (reference-free: no second copy)", name, path)
            return model, None
        logger.info("%s: full fine-tuning against a frozen copy of %s (2x model memory)", name, path)
        return model, _frozen_copy(model)

    model = load_base(base_path, model_args, training_args, tokenizer)
    use_router_aux_loss(model)
    if model_args.use_peft:
        model = prepare_for_adapters(model, model_args, training_args)
        model = PeftModel.from_pretrained(model, path, is_trainable=True)
        logger.info("%s: continuing the SFT adapter %s%s", name, path,
                    "; reference = the same adapter, frozen as 'ref'" if reference else "")
        return model, None
    merged = PeftModel.from_pretrained(model, path).merge_and_unload().requires_grad_(True)  # loading froze it
    logger.info("%s: SFT adapter merged into %s for full fine-tuning%s", name, base_path,
                " against a frozen copy (2x memory)" if reference else "")
    return merged, (_frozen_copy(merged) if reference else None)


def _frozen_copy(model):
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref
