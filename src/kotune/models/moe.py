"""Mixture-of-Experts bases under LoRA: which expert weights an adapter reaches, a router that is never adapted, and
the router's auxiliary loss at the model's own coefficient.

In transformers 5 the routed experts of a layer are fused 3-D parameters (`mlp.experts.gate_up_proj`, `down_proj`),
not `nn.Linear` modules: named targets (`gate_proj`, ...) reach dense MLP layers and shared experts only, and PEFT
reaches routed experts through `target_parameters`. The router (`mlp.gate`) picks each token's experts; adapting it
changes where every token goes, so kotune refuses it.
"""

from __future__ import annotations

import logging

from kotune.errors import KotuneError

logger = logging.getLogger(__name__)

ROUTER_LEAVES = ("gate", "router")
EXPERTS_SHORTHAND = "experts"  # `lora_target_parameters: experts`: every fused routed-expert weight


def routed_expert_parameters(model) -> list[str]:
    """Names of the fused routed-expert weights (3-D parameters inside an `experts` module)."""
    return [name for name, p in model.named_parameters() if p.dim() == 3 and ".experts." in f".{name}"]


def is_moe(model) -> bool:
    return bool(routed_expert_parameters(model))


def router_names(model) -> list[str]:
    """Module paths of the routers: a `gate`/`router` child beside an `experts` child."""
    out = []
    for name, module in model.named_modules():
        children = dict(module.named_children())
        if "experts" in children:
            out += [f"{name}.{leaf}" if name else leaf for leaf in ROUTER_LEAVES if leaf in children]
    return out


def expert_target_parameters(model, requested) -> list[str] | None:
    """`lora_target_parameters` as PEFT reads it: the shorthand `experts` becomes the leaf paths of the fused
    routed-expert weights (`mlp.experts.gate_up_proj`, `mlp.experts.down_proj`); a router weight is refused."""
    if not requested:
        return None
    names = [requested] if isinstance(requested, str) else list(requested)
    if EXPERTS_SHORTHAND in names:
        fused = routed_expert_parameters(model)
        if not fused:
            raise KotuneError(f"lora_target_parameters: experts: this {model.config.model_type} model has no fused "
                              "routed experts (it is not a Mixture-of-Experts model); leave the key out")
        names = [n for n in names if n != EXPERTS_SHORTHAND]
        names += list(dict.fromkeys(".".join(n.split(".")[-3:]) for n in fused))
    routers = [n for n in names if n.rsplit(".", 2)[-2:][0] in ROUTER_LEAVES or n in ROUTER_LEAVES]
    if routers:
        raise KotuneError(f"lora_target_parameters: {', '.join(routers)} is the router, which picks each token's "
                          "experts; kotune never adapts it. Name expert weights (or `experts`) instead")
    return names


def adapted_experts(peft_model) -> str:
    """Which expert weights carry an adapter: 'routed experts', 'shared experts', both, or 'none'."""
    names = [n for n, _ in peft_model.named_parameters() if "lora_" in n]
    routed = any(".experts." in n and "shared" not in n for n in names)
    shared = any("shared_expert" in n for n in names)
    kinds = [k for k, on in (("routed experts", routed), ("shared experts", shared)) if on]
    return " and ".join(kinds) or "none"


def check_router_untouched(peft_model) -> None:
    """No adapter weight may sit on a router: the error names the first such key."""
    routers = set(router_names(peft_model))
    for name, _ in peft_model.named_parameters():
        if "lora_" in name and any(f"{r}." in name or name.startswith(f"{r}.lora") for r in routers):
            raise KotuneError(f"LoRA reached the router ({name}); routers pick each token's experts and kotune never "
                              "adapts them. Remove it from lora_target_modules / lora_target_parameters")


def log_moe_adapter(peft_model, target_parameters) -> None:
    if not is_moe(peft_model):
        return
    kind = adapted_experts(peft_model)
    how = (f"routed experts through lora_target_parameters {list(target_parameters)}" if target_parameters
           else "routed experts stay frozen (set lora_target_parameters: experts to adapt them)")
    logger.info("MoE LoRA: expert weights adapted: %s; %s; the router is never adapted", kind, how)


def use_router_aux_loss(model) -> None:
    """Training adds the router's load-balancing loss at the model's own coefficient (the config's
    `router_aux_loss_coef`); bases that balance experts with a bias (DeepSeek-V3 style) have no such loss."""
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", None) or config
    if config is None or not is_moe(model):
        return
    coef = getattr(text, "router_aux_loss_coef", None)
    if coef:
        for cfg in {id(c): c for c in (config, text)}.values():
            cfg.output_router_logits = True
        logger.info("MoE: router auxiliary loss on, coefficient %g (the model's own router_aux_loss_coef)", coef)
    else:
        logger.info("MoE: no router auxiliary loss: %s balances its experts without one (no router_aux_loss_coef)",
                    getattr(config, "model_type", "this model"))


def native_module_targets(peft_config, model) -> bool:
    """True when a LoRA config names modules that exist on this transformers-5 model (kotune's own adapters):
    PEFT 0.21 then must not rewrite `gate_proj`/`up_proj`/`down_proj` into routed-expert parameters and `gate`
    into the router (peft#3711, which also drops the shared experts' adapters)."""
    import re

    targets = getattr(peft_config, "target_modules", None)
    if not targets:
        return False
    names = [n for n, _ in model.named_modules()]
    if isinstance(targets, str):
        return targets != "all-linear" and any(re.fullmatch(targets, n) for n in names)
    leaves = {n.rsplit(".", 1)[-1] for n in names}
    return all(t.rsplit(".", 1)[-1] in leaves and t not in ROUTER_LEAVES for t in targets)


def keep_native_targets() -> None:
    """Install once: PEFT's transformers-v4 → v5 MoE target conversion is skipped for configs whose targets are
    this model's real modules, and kept for old adapters that name v4 expert modules."""
    from peft.utils import transformers_weight_conversion as conversion

    original = conversion.convert_peft_config_for_transformers
    if getattr(original, "kotune_native", False):
        return

    def convert(peft_config, model, conversions):
        if native_module_targets(peft_config, model):
            return None
        return original(peft_config, model=model, conversions=conversions)

    convert.kotune_native = True
    conversion.convert_peft_config_for_transformers = convert


def log_unquantized_experts(model) -> None:
    """bitsandbytes quantizes `nn.Linear` layers only: on an MoE base the fused routed experts (most of its
    weights) stay in 16-bit under QLoRA. Say how many, so the memory is no surprise."""
    fused = dict(model.named_parameters())
    names = routed_expert_parameters(model)
    if not names:
        return
    count = sum(fused[n].numel() for n in names)
    total = sum(p.numel() for p in model.parameters())
    dtype = str(fused[names[0]].dtype).replace("torch.", "")
    logger.info("QLoRA on MoE: the fused routed experts stay in %s (%s parameters, %.0f%% of the model, %.2f GiB); "
                "bitsandbytes quantizes only the linear layers", dtype, f"{count:,}", 100 * count / max(total, 1),
                count * fused[names[0]].element_size() / 1024**3)
