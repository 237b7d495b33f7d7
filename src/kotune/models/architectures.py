"""The architecture registry: one spec per base family, read by model loading, prompt formats, plan and tests.

A spec says which `model_type`s belong to the family, where LoRA goes, which kotune prompt format `auto` gives a
base of the family, where `plan` finds the configs of its public checkpoints offline, and how to build a tiny
random model of it for tests and the demo. A causal LM of any other type gets `GENERIC`: LoRA on every linear
layer, and komt when the base ships no chat template of its own.

Adding a base family is one `register(ArchitectureSpec(...))` plus a recipe and tests. This module imports nothing
heavy (the tiny config builder imports transformers when it is called).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

# Llama-style blocks keep q/k/v apart (peft#294); GPT-NeoX fuses them into one projection.
LLAMA_STYLE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ArchitectureSpec:
    name: str
    model_types: tuple[str, ...]
    lora_targets: tuple[str, ...] | str  # module names, or "all-linear"
    prompt_format: str | None = None  # kotune format for `prompt_format: auto`; None keeps the base's template
    offline_configs: dict[str, str] = field(default_factory=dict)  # Hub id -> folder in configs/models/
    # (common kwargs: vocab/hidden/layers/heads/ids) -> a transformers config; used by kotune.testing.tiny
    tiny_config: Callable[[dict[str, Any]], Any] | None = None
    tiny_tokenizer: str = "sentencepiece"  # "bpe" (a Korean byte-level BPE) or "sentencepiece" (Llama/Mistral)

    def targets(self, override: list[str] | str | None = None) -> list[str] | str:
        """The user's targets win; otherwise this family's."""
        if override:
            return override
        return list(self.lora_targets) if isinstance(self.lora_targets, tuple) else self.lora_targets


GENERIC = ArchitectureSpec(name="generic", model_types=(), lora_targets="all-linear")
ARCHITECTURES: dict[str, ArchitectureSpec] = {}


def register(spec: ArchitectureSpec) -> ArchitectureSpec:
    ARCHITECTURES[spec.name] = spec
    return spec


def spec_for(model_type: str | None) -> ArchitectureSpec:
    """The spec of a `config.model_type`, or GENERIC for a causal LM kotune has no entry for."""
    for spec in ARCHITECTURES.values():
        if model_type in spec.model_types:
            return spec
    return GENERIC


def get_spec(name: str) -> ArchitectureSpec:
    """A registered spec by family name (tests and the demo build tiny models by this name)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"no architecture '{name}'; registered: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def offline_config_dir(hub_id: str) -> str | None:
    """The configs/models/ folder holding a known Hub checkpoint's config.json, for `plan` without the Hub."""
    for spec in ARCHITECTURES.values():
        if hub_id in spec.offline_configs:
            return spec.offline_configs[hub_id]
    return None


def _gpt_neox(common: dict):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(**common, rotary_pct=0.5, use_parallel_residual=True)


def _llama(common: dict):
    from transformers import LlamaConfig

    return LlamaConfig(**common, num_key_value_heads=4)


def _mistral(common: dict):
    from transformers import MistralConfig

    return MistralConfig(**common, num_key_value_heads=2, sliding_window=256)


def _qwen2(common: dict):
    from transformers import Qwen2Config

    return Qwen2Config(**common, num_key_value_heads=2)


def _gemma3_text(common: dict):
    from transformers import Gemma3TextConfig

    # query_pre_attn_scalar = head_dim, as in Gemma 3 1B-12B (256 = 256): llama.cpp scales by head_dim
    return Gemma3TextConfig(**common, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=64)


def _gemma3(common: dict):
    from transformers import Gemma3Config, SiglipVisionConfig

    text = _gemma3_text(dict(common, vocab_size=common["vocab_size"] + 3))  # 3 ids past the tokenizer for images
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    image, boi, eoi = range(common["vocab_size"], common["vocab_size"] + 3)
    return Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=image,
                        boi_token_index=boi, eoi_token_index=eoi, tie_word_embeddings=common["tie_word_embeddings"])


def _exaone4(common: dict):
    from transformers import Exaone4Config

    # EXAONE 4.0's hybrid attention: local layers (RoPE, sliding window), the last one global (no RoPE)
    layers = common["num_hidden_layers"]
    return Exaone4Config(**common, num_key_value_heads=2, sliding_window=64,
                         layer_types=["sliding_attention"] * (layers - 1) + ["full_attention"])


register(ArchitectureSpec(
    name="gpt_neox", model_types=("gpt_neox",),
    lora_targets=("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"),
    prompt_format="koquality",
    offline_configs={"EleutherAI/polyglot-ko-1.3b": "polyglot-ko-1.3b", "EleutherAI/polyglot-ko-5.8b": "polyglot-ko-5.8b"},
    tiny_config=_gpt_neox, tiny_tokenizer="bpe",
))
register(ArchitectureSpec(
    # Llama-2 and everything built as `llama`: Llama-3.x and its Korean fine-tunes (Bllossom), SOLAR/EEVE, Kanana.
    # `prompt_format: auto` gives llama2 only to a base without a chat template (Llama-2, SOLAR); the rest keep theirs.
    name="llama", model_types=("llama",), lora_targets=LLAMA_STYLE_TARGETS, prompt_format="llama2",
    offline_configs={"meta-llama/Llama-2-7b-hf": "llama-2-7b", "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
                     "upstage/SOLAR-10.7B-v1.0": "solar-10.7b-v1.0"},
    tiny_config=_llama,
))
register(ArchitectureSpec(
    name="mistral", model_types=("mistral",), lora_targets=LLAMA_STYLE_TARGETS, prompt_format="mistral",
    offline_configs={"mistral-community/Mistral-7B-v0.1": "mistral-7b-v0.1", "mistralai/Mistral-7B-v0.1": "mistral-7b-v0.1"},
    tiny_config=_mistral,
))
register(ArchitectureSpec(
    name="qwen2", model_types=("qwen2", "qwen3"), lora_targets=LLAMA_STYLE_TARGETS,  # ChatML: ends turns with <|im_end|>
    offline_configs={"Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b-instruct"}, tiny_config=_qwen2, tiny_tokenizer="bpe",
))
register(ArchitectureSpec(
    name="gemma3_text", model_types=("gemma3_text", "gemma2", "gemma"), lora_targets=LLAMA_STYLE_TARGETS,
    tiny_config=_gemma3_text, tiny_tokenizer="bpe",  # text-only Gemma (gemma-3-1b, gemma-2): <end_of_turn>
))
register(ArchitectureSpec(
    # Gemma-3 4B/12B/27B are image-text models: LoRA on the language model only, not on the SigLIP vision tower.
    name="gemma3", model_types=("gemma3",),
    lora_targets=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    offline_configs={"google/gemma-3-4b-it": "gemma-3-4b-it"},
    tiny_config=_gemma3, tiny_tokenizer="bpe",  # a one-layer SigLIP tower: training on text leaves it untouched
))
register(ArchitectureSpec(
    name="exaone4", model_types=("exaone4",), lora_targets=LLAMA_STYLE_TARGETS,  # native in transformers 5.23
    tiny_config=_exaone4, tiny_tokenizer="bpe",
))
register(ArchitectureSpec(
    # EXAONE 3.5 is remote code (trust_remote_code: true; transformers 5.23 has no native `exaone`).
    name="exaone", model_types=("exaone",),
    lora_targets=("q_proj", "k_proj", "v_proj", "out_proj", "c_fc_0", "c_fc_1", "c_proj"),
))
