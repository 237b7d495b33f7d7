"""Load a run dir (adapter or full model) and answer a prompt in the format it was trained with."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from kotune.errors import KotuneError
from kotune.prompts import prompt_ids


def load_for_inference(run_dir: str | Path, dtype: torch.dtype = torch.float32):
    """(model, tokenizer) from an output dir: a LoRA adapter on its base, or a full model."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = Path(run_dir)
    if not run.is_dir():
        raise KotuneError(f"'{run_dir}' is not a directory")
    tokenizer = AutoTokenizer.from_pretrained(run)
    adapter = run / "adapter_config.json"
    if adapter.is_file():
        from peft import PeftModel

        base_name = json.loads(adapter.read_text())["base_model_name_or_path"]
        base = AutoModelForCausalLM.from_pretrained(base_name, dtype=dtype)
        if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
            base.resize_token_embeddings(len(tokenizer))
        model = PeftModel.from_pretrained(base, run)
    elif (run / "config.json").is_file():
        model = AutoModelForCausalLM.from_pretrained(run, dtype=dtype)
    else:
        raise KotuneError(f"'{run_dir}' holds neither an adapter (adapter_config.json) nor a model (config.json)")
    model.eval()
    return model, tokenizer


@torch.no_grad()
def answer(model, tokenizer, question: str, max_new_tokens: int = 64, streamer=None) -> str:
    """Greedy answer to one user turn; stops at the EOS that training taught."""
    ids = prompt_ids(tokenizer, [{"role": "user", "content": question}])
    input_ids = torch.tensor([ids], device=model.device)
    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                         max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, streamer=streamer)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()
