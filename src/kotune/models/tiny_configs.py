"""Tiny random configs of the 2026 Korean bases, each in its family's real shape: the same layer kinds in the same
order (sliding and full attention, linear-attention layers, dense layers before the sparse ones), shared experts
beside the routed ones, MLA attention with as many KV heads as query heads. Only the sizes are small.

Each builder takes the common kwargs of `kotune.testing.tiny.tiny_model` (vocab, hidden, layers, heads, ids) and
imports transformers when it is called.
"""

from __future__ import annotations

from typing import Any

EXPERTS = dict(routed=4, per_token=2, width=32)  # 4 routed experts, 2 per token, each 32 wide


def _dense_then_sparse(layers: int) -> list[str]:
    """DeepSeek-V3, K-EXAONE and A.X K1 begin with dense MLP layers, then MoE: one dense layer, the rest sparse."""
    return ["dense"] + ["sparse"] * (layers - 1)


def _every_fourth_full(layers: int, other: str) -> list[str]:
    """3 local (or linear) layers to 1 full-attention layer, the last layer always full, as the real configs have."""
    kinds = [("full_attention" if (i + 1) % 4 == 0 else other) for i in range(layers)]
    kinds[-1] = "full_attention"
    return kinds


def exaone_moe(common: dict[str, Any]):
    """K-EXAONE-236B-A23B: EXAONE 4 hybrid attention, a dense first layer, routed experts plus one shared expert."""
    from transformers import ExaoneMoeConfig

    layers = common["num_hidden_layers"]
    return ExaoneMoeConfig(**common, num_key_value_heads=2, head_dim=16, sliding_window=64,
                           layer_types=_every_fourth_full(layers, "sliding_attention"),
                           mlp_layer_types=_dense_then_sparse(layers), first_k_dense_replace=1,
                           num_experts=EXPERTS["routed"], num_experts_per_tok=EXPERTS["per_token"],
                           moe_intermediate_size=EXPERTS["width"], num_shared_experts=1)


def exaone4_text(common: dict[str, Any]):
    from transformers import Exaone4Config

    layers = common["num_hidden_layers"]
    return Exaone4Config(**common, num_key_value_heads=2, sliding_window=64,
                         layer_types=_every_fourth_full(layers, "sliding_attention"))


def exaone4_5(common: dict[str, Any]):
    """EXAONE 4.5: an EXAONE 4 language model behind a vision encoder (image-text); text training leaves it frozen."""
    from transformers import AutoConfig

    image, video = common["vocab_size"], common["vocab_size"] + 1  # ids past the tokenizer, as for Gemma-3
    text = exaone4_text(dict(common, vocab_size=common["vocab_size"] + 2))
    config = AutoConfig.for_model("exaone4_5", text_config=text.to_dict(), image_token_id=image, video_token_id=video,
                                  tie_word_embeddings=common["tie_word_embeddings"])
    vision = config.vision_config
    for key, value in dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=common[
            "hidden_size"], embed_dim=32).items():
        if hasattr(vision, key):
            setattr(vision, key, value)
    return config


def hyperclovax(common: dict[str, Any]):
    """HyperCLOVA X SEED (Think 14B/32B): Llama-like blocks with post-norms and muP multipliers."""
    from transformers import AutoConfig

    return AutoConfig.for_model("hyperclovax", **common, num_key_value_heads=2, head_dim=16,
                                embedding_multiplier=2.0, logits_scaling=0.5, residual_multiplier=0.5,
                                attention_multiplier=0.25, use_post_norm=True)


def _mla(common: dict[str, Any]) -> dict[str, Any]:
    """MLA attention: low-rank q and kv, a split rope/nope head; as many KV heads as query heads (no GQA)."""
    return dict(num_key_value_heads=common["num_attention_heads"], q_lora_rank=32, kv_lora_rank=16,
                qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=16, head_dim=8,
                n_routed_experts=EXPERTS["routed"], n_shared_experts=1, num_experts_per_tok=EXPERTS["per_token"],
                moe_intermediate_size=EXPERTS["width"], n_group=1, topk_group=1)


def deepseek_v3(common: dict[str, Any]):
    """DeepSeek-V3 layout, as Kanana-2-30B-A3B uses it: MLA, a dense first layer, routed plus shared experts."""
    from transformers import DeepseekV3Config

    return DeepseekV3Config(**common, **_mla(common), first_k_dense_replace=1)


def axk1(common: dict[str, Any]):
    """A.X K1: DeepSeek-V3-style MoE with MLA, the dense/sparse split given per layer."""
    from transformers import AutoConfig

    return AutoConfig.for_model("axk1", **common, **_mla(common),
                                mlp_layer_types=_dense_then_sparse(common["num_hidden_layers"]))


def axk2(common: dict[str, Any]):
    """A.X K2: MLA with an indexer choosing the keys each query attends to, and MoE."""
    from transformers import AutoConfig

    layers = common["num_hidden_layers"]
    return AutoConfig.for_model("axk2", **common, **_mla(common), mlp_layer_types=_dense_then_sparse(layers),
                                index_topk=16, index_head_dim=8, index_n_heads=2)


def solar_open(common: dict[str, Any]):
    """Solar-Open-100B: grouped-query attention, routed experts plus a shared expert in every layer."""
    from transformers import AutoConfig

    return AutoConfig.for_model("solar_open", **common, num_key_value_heads=2, head_dim=16,
                                n_routed_experts=EXPERTS["routed"], n_shared_experts=1,
                                num_experts_per_tok=EXPERTS["per_token"], moe_intermediate_size=EXPERTS["width"],
                                n_group=1, topk_group=1)


def qwen3_moe(common: dict[str, Any]):
    """Qwen3-30B-A3B: routed experts only (no shared expert), an auxiliary load-balancing loss."""
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(**common, num_key_value_heads=2, head_dim=16, num_experts=EXPERTS["routed"],
                          num_experts_per_tok=EXPERTS["per_token"], moe_intermediate_size=EXPERTS["width"],
                          norm_topk_prob=True)


def _qwen3_5_text(common: dict[str, Any], moe: bool) -> dict[str, Any]:
    """Qwen3.5's hybrid stack: three gated-delta (linear-attention) layers to one full-attention layer."""
    text = dict(common, num_key_value_heads=2, head_dim=16, linear_conv_kernel_dim=4, linear_key_head_dim=16,
                linear_value_head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
                layer_types=_every_fourth_full(common["num_hidden_layers"], "linear_attention"))
    if moe:
        text.update(num_experts=EXPERTS["routed"], num_experts_per_tok=EXPERTS["per_token"],
                    moe_intermediate_size=EXPERTS["width"], shared_expert_intermediate_size=EXPERTS["width"])
    return text


def _with_tiny_vision(model_type: str, common: dict[str, Any], text: dict[str, Any], **vision: Any):
    from transformers import AutoConfig

    config = AutoConfig.for_model(model_type, text_config=text, tie_word_embeddings=common["tie_word_embeddings"])
    for key, value in vision.items():
        setattr(config.vision_config, key, value)
    return config


QWEN_VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64)


def qwen3_5(common: dict[str, Any]):
    """Qwen3.5 (dense): image-text checkpoints whose language model mixes gated-delta and full attention."""
    return _with_tiny_vision("qwen3_5", common, _qwen3_5_text(common, moe=False),
                             **dict(QWEN_VISION, out_hidden_size=common["hidden_size"]))


def qwen3_5_moe(common: dict[str, Any]):
    """Qwen3.5 MoE (35B-A3B and up): the hybrid stack with routed experts and a gated shared expert."""
    return _with_tiny_vision("qwen3_5_moe", common, _qwen3_5_text(common, moe=True),
                             **dict(QWEN_VISION, out_hidden_size=common["hidden_size"]))


def gemma4(common: dict[str, Any]):
    """Gemma 4: five sliding-window layers to one global layer with a wider head, per-layer embeddings."""
    from transformers import AutoConfig

    layers = common["num_hidden_layers"]
    kinds = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(layers)]
    kinds[-1] = "full_attention"
    text = dict(common, num_key_value_heads=2, head_dim=16, sliding_window=64, layer_types=kinds,
                hidden_size_per_layer_input=8, vocab_size_per_layer_input=common["vocab_size"],
                per_layer_config={f"{i:02d}": {"head_dim": 32} for i, k in enumerate(kinds) if k == "full_attention"})
    text.pop("intermediate_size", None)
    return AutoConfig.for_model("gemma4", text_config=dict(text, intermediate_size=common["intermediate_size"]),
                                tie_word_embeddings=common["tie_word_embeddings"])
