"""Which architectures llama.cpp's GGUF converter can write, read off the converter's own source.

`kotune export --gguf` asks this before it merges or writes anything, and the README's family table asks the same
function, so both say what the converter that kotune fetches (llama_cpp_source.py) actually registers:

    >>> gguf_support("qwen3_moe")
    (True, "llama.cpp (llama-cpp-python 0.3.36)'s converter writes Qwen3MoeForCausalLM")
    >>> gguf_support("HyperCLOVAXForCausalLM")[0]
    False

The names come from `TEXT_MODEL_MAP` in the converter's `conversion/__init__.py` (its lookup table for text
models), or, for converters older than that package, from every `@ModelBase.register(...)` decorator. Nothing of
the converter is imported here (its gguf-py must not shadow anything in this process).
"""

from __future__ import annotations

import ast
import json
import os
import re
from functools import lru_cache
from pathlib import Path

from kotune.errors import KotuneError

REGISTER = re.compile(r"@ModelBase\.register\(([^)]*)\)")
# Top-level classes the converter keeps even when the config has a text_config (conversion/base.py,
# get_model_architecture); otherwise text_config.architectures wins for text conversion.
KEEP_TOP_LEVEL = ("Exaone4_5_ForConditionalGeneration", "StepVLForConditionalGeneration",
                  "Sarashina2VisionForCausalLM", "Step3p7ForConditionalGeneration", "KimiK3ForConditionalGeneration")


@lru_cache(maxsize=8)
def _registered(converter: str) -> frozenset[str]:
    root = Path(converter)
    package = root / "conversion" / "__init__.py"
    if package.is_file():
        for node in ast.parse(package.read_text(encoding="utf-8")).body:
            target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
            if isinstance(target, ast.Name) and target.id == "TEXT_MODEL_MAP" and node.value is not None:
                return frozenset(ast.literal_eval(node.value))
    names: set[str] = set()
    for source in [root / "convert_hf_to_gguf.py", *sorted((root / "conversion").glob("*.py"))]:
        if source.is_file():
            for args in REGISTER.findall(source.read_text(encoding="utf-8")):
                names.update(re.findall(r"[\"']([^\"']+)[\"']", args))
    return frozenset(names)


def registered_architectures(converter: Path | None = None) -> frozenset[str]:
    """Every HF architecture class the converter writes as a text model (fetches the converter on first use)."""
    from kotune.export.llama_cpp_source import converter_dir

    return _registered(str(converter or converter_dir()))


def converter_label(converter: Path | None = None) -> str:
    """How the messages name the converter: the llama-cpp-python release it came from, or the checkout."""
    from kotune.export.llama_cpp_source import PINNED_VERSION, installed_version

    if checkout := os.environ.get("KOTUNE_LLAMA_CPP"):
        return f"llama.cpp (checkout {checkout})"
    if converter is not None and converter.name and converter.name[0].isdigit():
        return f"llama.cpp (llama-cpp-python {converter.name})"
    return f"llama.cpp (llama-cpp-python {installed_version() or PINNED_VERSION})"


def converted_architecture(config: dict) -> str | None:
    """The class the converter picks from a config.json: `architectures[0]`, or text_config's when it has one."""
    arch = (config.get("architectures") or [None])[0]
    text_arch = ((config.get("text_config") or {}).get("architectures") or [None])[0]
    return arch if arch in KEEP_TOP_LEVEL or text_arch is None else text_arch


def architecture_for(model_type: str) -> str | None:
    """The class transformers saves for a `model_type` when kotune loads it: the image-text class for image-text
    types (kotune keeps them whole), else the causal-LM class."""
    from transformers.models.auto import modeling_auto as auto

    for table in (auto.MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES, auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
        if model_type in table:
            return table[model_type]
    return None


def gguf_support(name: str, converter: Path | None = None) -> tuple[bool, str]:
    """(supported, reason) for an architecture class (`Qwen3MoeForCausalLM`) or a model_type (`qwen3_moe`)."""
    converter = converter or _default_converter()
    label = converter_label(converter)
    arch = name if name[:1].isupper() else architecture_for(name)
    if arch is None:
        return False, f"transformers has no causal-LM or image-text class for model_type '{name}'"
    if arch in registered_architectures(converter):
        return True, f"{label}'s converter writes {arch}"
    model_type = "" if arch == name else f" ({name})"
    return False, unsupported_message(label, arch, model_type)


def unsupported_message(label: str, arch: str, model_type: str) -> str:
    return (f"{label}'s converter has no support for {arch}{model_type}; `kotune merge RUN --out DIR` works (a merged "
            "safetensors model for transformers, vLLM or SGLang; a full-model run already is one), GGUF needs a "
            "newer llama.cpp: set KOTUNE_LLAMA_CPP to a llama.cpp checkout whose convert_hf_to_gguf.py registers "
            f"{arch}")


def check_convertible(config_dir: str | Path, converter: Path) -> str:
    """Raise one KotuneError, before anything is merged or written, when the converter cannot write this model;
    returns the architecture class it will convert. `config_dir`: the model (or an adapter's base) folder or Hub id."""
    config = _config_dict(config_dir)
    arch = converted_architecture(config)
    if arch is None:
        raise KotuneError(f"'{config_dir}/config.json' names no architecture (`architectures`), so llama.cpp's "
                          "converter cannot tell which model it is; save the model with transformers' save_pretrained")
    if arch not in registered_architectures(converter):
        model_type = f" ({config['model_type']})" if config.get("model_type") else ""
        raise KotuneError(unsupported_message(converter_label(converter), arch, model_type))
    return arch


def _config_dict(config_dir: str | Path) -> dict:
    local = Path(config_dir) / "config.json"
    if local.is_file():
        return json.loads(local.read_text(encoding="utf-8"))
    from transformers import PretrainedConfig

    try:
        return PretrainedConfig.get_config_dict(str(config_dir))[0]
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise KotuneError(f"cannot read the config of '{config_dir}' (the adapter's base): {first}") from None


def _default_converter() -> Path:
    from kotune.export.llama_cpp_source import converter_dir

    return converter_dir()
