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

from kotune.models import tiny_configs

# Llama-style blocks keep q/k/v apart (peft#294); GPT-NeoX fuses them into one projection.
LLAMA_STYLE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# DeepSeek-V3's multi-head latent attention (Kanana-2, A.X K1/K2): low-rank q and kv projections, no q/k/v_proj.
MLA_TARGETS = ("q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Qwen3.5's gated-delta (linear-attention) layers, beside its full-attention layers.
GATED_DELTA_TARGETS = ("in_proj_qkv", "in_proj_z", "out_proj")
GATED_DELTA_PADDED = ("its gated-delta (linear-attention) layers keep packed examples apart only with the "
                      "causal-conv1d and flash-linear-attention kernels; without them transformers refuses packed "
                      "rows (tests/test_packing.py checks this)")


def language_model_only(names: tuple[str, ...]) -> str:
    """A regex over module paths: these projections in the language model of an image-text model, never in its
    vision or audio tower (whose blocks have q/k/v and MLP projections too); a text-only checkpoint matches as well."""
    return rf"^(?!.*(vision|visual|audio)).*\.({'|'.join(names)})"


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
    # why padding-free packing stays off by default for this family (None: packing is on, its exactness is tested)
    padded_because: str | None = None
    # the block classes FSDP shards one by one (decoder layers, and a vision/audio tower's blocks); () leaves it to
    # transformers' `_no_split_modules`. Names absent from a given checkpoint (qwen3 under qwen2) are skipped.
    fsdp_blocks: tuple[str, ...] = ()

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


def auto_class(config):
    """The transformers auto class that loads a base with its whole checkpoint: the causal LM, or for an
    image-text checkpoint (EXAONE 4.5, Qwen3.5, Gemma-3/4 with a vision tower) the image-text model, so that a full
    fine-tune saves the vision weights it was given and adapter keys match the checkpoint's module paths."""
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    image_text = model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES
    if image_text and (getattr(config, "vision_config", None) is not None
                       or model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        return AutoModelForImageTextToText
    return AutoModelForCausalLM


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
    fsdp_blocks=('GPTNeoXLayer',),
))
register(ArchitectureSpec(
    # Llama-2 and everything built as `llama`: Llama-3.x and its Korean fine-tunes (Bllossom), SOLAR/EEVE, Kanana.
    # `prompt_format: auto` gives llama2 only to a base without a chat template (Llama-2, SOLAR); the rest keep theirs.
    name="llama", model_types=("llama",), lora_targets=LLAMA_STYLE_TARGETS, prompt_format="llama2",
    offline_configs={"meta-llama/Llama-2-7b-hf": "llama-2-7b", "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
                     "upstage/SOLAR-10.7B-v1.0": "solar-10.7b-v1.0"},
    tiny_config=_llama,
    fsdp_blocks=('LlamaDecoderLayer',),
))
register(ArchitectureSpec(
    name="mistral", model_types=("mistral",), lora_targets=LLAMA_STYLE_TARGETS, prompt_format="mistral",
    offline_configs={"mistral-community/Mistral-7B-v0.1": "mistral-7b-v0.1", "mistralai/Mistral-7B-v0.1": "mistral-7b-v0.1"},
    tiny_config=_mistral,
    fsdp_blocks=('MistralDecoderLayer',),
))
register(ArchitectureSpec(
    name="qwen2", model_types=("qwen2", "qwen3"), lora_targets=LLAMA_STYLE_TARGETS,  # ChatML: ends turns with <|im_end|>
    offline_configs={"Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b-instruct"}, tiny_config=_qwen2, tiny_tokenizer="bpe",
    fsdp_blocks=('Qwen2DecoderLayer', 'Qwen3DecoderLayer'),
))
register(ArchitectureSpec(
    name="gemma3_text", model_types=("gemma3_text", "gemma2", "gemma"), lora_targets=LLAMA_STYLE_TARGETS,
    tiny_config=_gemma3_text, tiny_tokenizer="bpe",  # text-only Gemma (gemma-3-1b, gemma-2): <end_of_turn>
    fsdp_blocks=('Gemma3DecoderLayer', 'Gemma2DecoderLayer', 'GemmaDecoderLayer'),
))
register(ArchitectureSpec(
    # Gemma-3 4B/12B/27B are image-text models: LoRA on the language model only, not on the SigLIP vision tower.
    name="gemma3", model_types=("gemma3",),
    lora_targets=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    offline_configs={"google/gemma-3-4b-it": "gemma-3-4b-it"},
    tiny_config=_gemma3, tiny_tokenizer="bpe",  # a one-layer SigLIP tower: training on text leaves it untouched
    fsdp_blocks=('Gemma3DecoderLayer', 'SiglipEncoderLayer'),
))
register(ArchitectureSpec(
    name="exaone4", model_types=("exaone4",), lora_targets=LLAMA_STYLE_TARGETS,  # native in transformers 5.23
    tiny_config=_exaone4, tiny_tokenizer="bpe",
    fsdp_blocks=('Exaone4DecoderLayer',),
))
register(ArchitectureSpec(
    # EXAONE 3.5 is remote code (trust_remote_code: true; transformers 5.23 has no native `exaone`).
    name="exaone", model_types=("exaone",),
    lora_targets=("q_proj", "k_proj", "v_proj", "out_proj", "c_fc_0", "c_fc_1", "c_proj"),
))

# The Korean bases of 2026 (native in transformers 5.23). Their tiny configs keep each family's real shape; on a
# Mixture-of-Experts base the named targets reach attention, dense MLP layers and shared experts, never the router
# and not the routed experts (`lora_target_parameters` adds those; kotune.models.moe says which were adapted).
register(ArchitectureSpec(
    name="exaone_moe", model_types=("exaone_moe",), lora_targets=LLAMA_STYLE_TARGETS,  # K-EXAONE-236B-A23B
    offline_configs={"LGAI-EXAONE/K-EXAONE-236B-A23B": "k-exaone-236b-a23b"},
    tiny_config=tiny_configs.exaone_moe, tiny_tokenizer="bpe",
    fsdp_blocks=('ExaoneMoeDecoderLayer',),
))
register(ArchitectureSpec(
    # EXAONE 4.5 is image-text: LoRA on its EXAONE 4 language model only; the vision encoder stays frozen.
    name="exaone4_5", model_types=("exaone4_5",), lora_targets=language_model_only(LLAMA_STYLE_TARGETS),
    tiny_config=tiny_configs.exaone4_5, tiny_tokenizer="bpe",
    fsdp_blocks=('Exaone4DecoderLayer', 'Exaone4_5_DecoderLayer', 'Exaone4_5_VisionBlock'),
))
register(ArchitectureSpec(
    name="hyperclovax", model_types=("hyperclovax",), lora_targets=LLAMA_STYLE_TARGETS,  # HyperCLOVA X SEED Think
    tiny_config=tiny_configs.hyperclovax, tiny_tokenizer="bpe",
    fsdp_blocks=('HyperCLOVAXDecoderLayer',),
))
register(ArchitectureSpec(
    name="deepseek_v3", model_types=("deepseek_v3",), lora_targets=MLA_TARGETS,  # Kanana-2-30B-A3B, DeepSeek-V3
    tiny_config=tiny_configs.deepseek_v3, tiny_tokenizer="bpe",
    fsdp_blocks=('DeepseekV3DecoderLayer',),
))
register(ArchitectureSpec(
    name="axk1", model_types=("axk1",), lora_targets=MLA_TARGETS,  # SKT A.X K1
    tiny_config=tiny_configs.axk1, tiny_tokenizer="bpe",
    fsdp_blocks=('AXK1DecoderLayer',),
))
register(ArchitectureSpec(
    name="axk2", model_types=("axk2",), lora_targets=MLA_TARGETS + ("q_gate_proj",),  # SKT A.X K2
    tiny_config=tiny_configs.axk2, tiny_tokenizer="bpe",
    padded_because="its indexer picks each query's keys from the whole packed row, so packed examples would see "
                   "each other (tests/test_packing.py measures it)",
    fsdp_blocks=('AXK2DecoderLayer',),
))
register(ArchitectureSpec(
    name="solar_open", model_types=("solar_open",), lora_targets=LLAMA_STYLE_TARGETS,  # Upstage Solar-Open-100B
    offline_configs={"upstage/Solar-Open-100B": "solar-open-100b"},
    tiny_config=tiny_configs.solar_open, tiny_tokenizer="bpe",
    fsdp_blocks=('SolarOpenDecoderLayer',),
))
register(ArchitectureSpec(
    name="qwen3_moe", model_types=("qwen3_moe",), lora_targets=LLAMA_STYLE_TARGETS,  # Qwen3-30B-A3B, 235B-A22B
    offline_configs={"Qwen/Qwen3-30B-A3B": "qwen3-30b-a3b"}, tiny_config=tiny_configs.qwen3_moe, tiny_tokenizer="bpe",
    fsdp_blocks=('Qwen3MoeDecoderLayer',),
))
register(ArchitectureSpec(
    # Qwen3.5 checkpoints are image-text; their language model mixes gated-delta and full-attention layers.
    name="qwen3_5", model_types=("qwen3_5", "qwen3_5_text"),
    lora_targets=language_model_only(LLAMA_STYLE_TARGETS + GATED_DELTA_TARGETS),
    tiny_config=tiny_configs.qwen3_5, tiny_tokenizer="bpe",
    padded_because=GATED_DELTA_PADDED,
    fsdp_blocks=('Qwen3_5DecoderLayer', 'Qwen3_5VisionBlock'),
))
register(ArchitectureSpec(
    name="qwen3_5_moe", model_types=("qwen3_5_moe", "qwen3_5_moe_text"),
    lora_targets=language_model_only(LLAMA_STYLE_TARGETS + GATED_DELTA_TARGETS),
    tiny_config=tiny_configs.qwen3_5_moe, tiny_tokenizer="bpe", padded_because=GATED_DELTA_PADDED,
    fsdp_blocks=('Qwen3_5MoeDecoderLayer', 'Qwen3_5MoeVisionBlock'),
))
register(ArchitectureSpec(
    name="gemma4", model_types=("gemma4", "gemma4_text"), lora_targets=language_model_only(LLAMA_STYLE_TARGETS),
    tiny_config=tiny_configs.gemma4, tiny_tokenizer="bpe",
    fsdp_blocks=('Gemma4TextDecoderLayer', 'Gemma4VisionEncoderLayer', 'Gemma4AudioLayer'),
))
