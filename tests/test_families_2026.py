"""The Korean bases of 2026 train with kotune's defaults through train/sft.py: full fine-tuning, LoRA, QLoRA and
DPO from the SFT output, for a tiny model of each family in its real shape. The chat template is the family's real
one (llama.cpp's copies of the Hub files, which `make vocab` extracts) or the model card's (tests/fixtures/templates,
the source named in each file's test); it is saved byte for byte, its end-of-turn token is learned and generation
stops there. The tokenizer is a small Korean BPE plus the template's special tokens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, base_config, run_sft_inprocess, write_config
from helpers import QA_ROWS, train_qa

LLAMA_CPP_TEMPLATES = Path(os.environ.get("KOTUNE_GGUF_VOCAB", Path.home() / ".cache" / "kotune" / "gguf_vocab"),
                           "templates")
FIXTURES = REPO / "tests" / "fixtures" / "templates"
QWEN = dict(bos=None, eos="<|endoftext|>", specials=["<|im_start|>", "<|im_end|>"], end="<|im_end|>",
            words=["<think>", "</think>"])
DEEPSEEK = dict(bos="<｜begin▁of▁sentence｜>", eos="<｜end▁of▁sentence｜>", specials=["<｜User｜>", "<｜Assistant｜>"],
                end="<｜end▁of▁sentence｜>", words=["<think>", "</think>"])
EXAONE = dict(bos=None, eos="[|endofturn|]", specials=["[|system|]", "[|user|]", "[|assistant|]", "[|tool|]"],
              end="[|endofturn|]", words=["<think>", "</think>"])
# family -> (template file, where it lives, tokens)
FAMILIES = {
    "qwen3_moe": ("Qwen-Qwen3-0.6B.jinja", LLAMA_CPP_TEMPLATES, QWEN),
    "qwen3_5": ("Qwen3.5-4B.jinja", LLAMA_CPP_TEMPLATES, QWEN),
    "qwen3_5_moe": ("Qwen3.5-4B.jinja", LLAMA_CPP_TEMPLATES, QWEN),
    "solar_open": ("upstage-Solar-Open-100B.jinja", LLAMA_CPP_TEMPLATES,
                   dict(bos=None, eos="<|endoftext|>", specials=["<|begin|>", "<|end|>", "<|think|>", "<|content|>"],
                        end="<|end|>", words=[])),
    "deepseek_v3": ("deepseek-ai-DeepSeek-V3.1.jinja", LLAMA_CPP_TEMPLATES, DEEPSEEK),
    "gemma4": ("google-gemma-4-31B-it.jinja", LLAMA_CPP_TEMPLATES,
               dict(bos="<bos>", eos="<eos>", specials=["<|turn>", "<turn|>", "<|channel>", "<channel|>", "<|think|>"],
                    end="<turn|>", words=[])),
    "exaone_moe": ("exaone-4.0.jinja", FIXTURES, EXAONE),  # K-EXAONE keeps EXAONE 4's turn format
    "exaone4_5": ("exaone-4.0.jinja", FIXTURES, EXAONE),
    # No public copy of HyperCLOVA X SEED Think's or A.X K1/K2's template was reachable offline: BUILT ChatML turns
    # (what these families' model cards show), so these check training and stopping, not the real template's bytes.
    "hyperclovax": ("built", None, QWEN),
    "axk1": ("built", None, QWEN),
    "axk2": ("built", None, QWEN),
}
BUILT = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}"
         "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


# The default suite runs one family per test (the rest are `-m slow`: `make test-slow`).
DEFAULT_FULL, DEFAULT_ADAPTERS = "qwen3_moe", "deepseek_v3"


def each_family(default: str) -> list:
    return [f if f == default else pytest.param(f, marks=pytest.mark.slow) for f in FAMILIES]


def template_of(family: str) -> str:
    name, folder, _ = FAMILIES[family]
    if name == "built":
        return BUILT
    path = folder / name
    if not path.is_file():
        pytest.skip(f"{path} is missing: run `make vocab`")
    return path.read_text(encoding="utf-8")


def family_base(family: str, out: Path):
    """A tiny model of the family with a Korean BPE carrying the template's special tokens and its real template."""
    from kotune.testing.tiny import korean_bpe_tokenizer, tiny_model

    template = template_of(family)
    tokens = FAMILIES[family][2]
    tok = korean_bpe_tokenizer(out)
    specials = {"eos_token": tokens["eos"],
                "additional_special_tokens": [t for t in tokens["specials"] if t != tokens["eos"]]}
    if tokens["bos"]:
        specials["bos_token"] = tokens["bos"]
    tok.add_special_tokens(specials)
    tok.add_tokens(tokens["words"])
    tok.chat_template = template
    tiny_model(family, tok, out, hidden=64, layers=2, seed=0, init_std=0.2)
    return out, tok, template


def saved_template(out: Path) -> str:
    return json.loads((out / "tokenizer_config.json").read_text()).get("chat_template") \
        or (out / "chat_template.jinja").read_text(encoding="utf-8")


def generation_prompt_ids(tokenizer, question: str) -> list[int]:
    """The prompt inference sends for the mode these rows trained in (no reasoning: thinking off where the
    template has a switch), as `kotune chat` renders it."""
    from kotune.data.thinking import switch_of, template_kwargs

    mode = "off" if switch_of(tokenizer.chat_template) else "auto"
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True,
                                         **template_kwargs(tokenizer.chat_template, mode))
    return tokenizer(text, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("family", each_family(DEFAULT_FULL))
def test_full_fine_tuning_keeps_the_template_and_stops_at_its_end_of_turn(family, tmp_path):
    from kotune.inference.loading import load_for_inference

    base, tok, template = family_base(family, tmp_path / "base")
    out = train_qa(base, tmp_path, max_steps=40, max_length=512)  # Solar-Open renders a long system prompt
    assert saved_template(out) == template  # byte for byte
    end = tok.convert_tokens_to_ids(FAMILIES[family][2]["end"])
    generation = json.loads((out / "generation_config.json").read_text())
    stops = generation["eos_token_id"] if isinstance(generation["eos_token_id"], list) else [generation["eos_token_id"]]
    assert end in stops

    model, tokenizer = load_for_inference(out)
    for row in QA_ROWS[:2]:
        ids = generation_prompt_ids(tokenizer, row["instruction"])
        with torch.no_grad():
            new = model.generate(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                                 max_new_tokens=30, do_sample=False, pad_token_id=tokenizer.pad_token_id)[0, len(ids):]
        new = new.tolist()
        assert new[-1] == end and len(new) < 30, tokenizer.decode(new)  # stopped at the template's end-of-turn
        assert tokenizer.decode(new, skip_special_tokens=True).strip() == row["output"]


def lora_b_trained(out: Path) -> bool:
    tensors = load_file(out / "adapter_model.safetensors")
    return any("lora_B" in k and t.abs().sum() > 0 for k, t in tensors.items())


def qa_file(tmp_path: Path) -> Path:
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in QA_ROWS) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("family", each_family(DEFAULT_ADAPTERS))
def test_lora_qlora_and_dpo_from_the_sft_output(family, tmp_path):
    """kotune's defaults with nothing family-specific set: LoRA (dropout 0.05), 4-bit QLoRA, then DPO continuing
    the LoRA SFT adapter on the bundled Korean preference pairs."""
    from kotune.testing.preference import run_stage, write_yaml
    from kotune.testing.tiny import sample_path

    base, _, _ = family_base(family, tmp_path / "base")
    data = {"datasets": [{"id": str(qa_file(tmp_path)), "format": "instruction"}]}
    runs = {}
    for method, extra in (("lora", {}), ("qlora", {"load_in_4bit": True})):
        out = tmp_path / method
        cfg = base_config(base, out, dataset_mixture=data, max_steps=4, learning_rate=5e-3, max_length=512, **extra)
        cfg.pop("lora_dropout")
        assert run_sft_inprocess(write_config(tmp_path / f"{method}.yaml", cfg)) == 0, method
        assert lora_b_trained(out), method
        losses = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in h]
        assert len(losses) == 4 and all(map(lambda x: x == x, losses)), (method, losses)
        runs[method] = out

    dpo = tmp_path / "dpo"
    cfg = {"model_name_or_path": str(runs["lora"]), "output_dir": str(dpo), "dtype": "float32",
           "dataset_mixture": {"datasets": [{"id": str(sample_path("preference.jsonl")), "format": "preference"}]},
           "max_steps": 3, "per_device_train_batch_size": 2, "learning_rate": 5e-4, "logging_steps": 1,
           "save_strategy": "no", "bf16": False, "gradient_checkpointing": False, "report_to": [], "max_length": 512,
           "use_peft": True}
    assert run_stage("dpo", write_yaml(tmp_path / "dpo.yaml", cfg)) == 0
    assert lora_b_trained(dpo)
    assert saved_template(dpo) == template_of(family)


REASONING_ROWS = [
    {"messages": [{"role": "user", "content": "대한민국의 수도는 어디인가요?"},
                  {"role": "assistant", "reasoning_content": "대한민국의 행정 수도를 묻는 질문이다.",
                   "content": "서울입니다."}]},
    {"messages": [{"role": "user", "content": "물은 몇 도에서 끓나요?"},
                  {"role": "assistant", "content": "<think>\n1기압 기준으로 답한다.\n</think>\n\n100도에서 끓습니다."}]},
]


@pytest.mark.parametrize("mode", [pytest.param("on", marks=pytest.mark.slow), "off"])
def test_the_thinking_key_reaches_sft_and_dpo(mode, tmp_path):
    """`thinking:` in the YAML decides how train/sft.py renders reasoning rows (off: the reasoning is dropped and
    counted in data_report.json; on: kept), and DPO renders its prompts with the same switch."""
    from kotune.testing.preference import run_stage, write_yaml
    from kotune.testing.tiny import sample_path

    base, tok, _ = family_base("qwen3_moe", tmp_path / "base")
    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in REASONING_ROWS) + "\n", encoding="utf-8")
    out = tmp_path / "sft"
    cfg = base_config(base, out, dataset_mixture={"datasets": [{"id": str(data), "format": "chat"}]}, max_steps=2,
                      max_length=256, thinking=mode, per_device_train_batch_size=2)
    assert run_sft_inprocess(write_config(tmp_path / "sft.yaml", cfg)) == 0
    report = json.loads((out / "data_report.json").read_text())
    source = next(iter(report.values()))
    dropped = sum(source.get("reasoning_dropped", {}).values())
    assert dropped == (2 if mode == "off" else 0), source

    dpo = tmp_path / "dpo"
    dpo_cfg = {"model_name_or_path": str(out), "output_dir": str(dpo), "dtype": "float32", "thinking": mode,
               "dataset_mixture": {"datasets": [{"id": str(sample_path("preference.jsonl")), "format": "preference"}]},
               "max_steps": 1, "per_device_train_batch_size": 2, "logging_steps": 1, "save_strategy": "no",
               "bf16": False, "gradient_checkpointing": False, "report_to": [], "max_length": 256, "use_peft": True}
    assert run_stage("dpo", write_yaml(tmp_path / "dpo.yaml", dpo_cfg)) == 0
    import yaml

    assert yaml.safe_load((dpo / "kotune_config.yaml").read_text())["thinking"] == mode
