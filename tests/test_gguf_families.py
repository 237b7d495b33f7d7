"""`kotune export --gguf` for the 2026 Korean bases: each family llama.cpp's converter registers exports, the file
says what it is and carries the run's chat template, and llama.cpp answers like transformers; each family it does
not register is refused with one error before anything is merged or written.

The converter is llama.cpp's, from the llama-cpp-python sdist (`make converter`); what it registers is read by
kotune.export.gguf_support, which the README's family table uses too. Converting a tiny model in the family's real
shape is a few seconds (default suite for two families); a trained run of every family, and llama.cpp's logits
(`make install-gguf`), are slow.

Tiny bases carry a real family's tokenizer where the converter reads it by name:
- Solar-Open: the converter looks up Solar-Open-100B's own `<unk>` and `<|startoftext|>` tokens, so the Korean BPE
  gets those two added (the real tokenizer has them);
- Gemma 4: the converter reads only a SentencePiece-style BPE (byte fallback, `▁`), so the tiny Gemma 4 uses
  Gemma 4's real vocabulary and chat template, from llama.cpp's ggml-vocab-gemma-4.gguf (`make vocab`).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import QA_ROWS, greedy_new_ids
from test_gguf_export import llama_cpp_greedy, qa_run

from kotune.data.prompt_formats import TEMPLATES
from kotune.errors import KotuneError
from kotune.export.gguf_export import export_gguf
from kotune.export.gguf_support import gguf_support, registered_architectures

VOCAB = Path(os.environ.get("KOTUNE_GGUF_VOCAB", Path.home() / ".cache" / "kotune" / "gguf_vocab"))
# family -> (the class transformers saves, llama.cpp's converter registers it (llama-cpp-python 0.3.36),
#            general.architecture of the written file)
FAMILIES = {
    "exaone_moe": ("ExaoneMoeForCausalLM", True, "exaone-moe"),
    "exaone4_5": ("Exaone4_5_ForConditionalGeneration", True, "exaone4"),  # its language model only
    "hyperclovax": ("HyperCLOVAXForCausalLM", False, None),
    "deepseek_v3": ("DeepseekV3ForCausalLM", True, "deepseek2"),
    "axk1": ("AXK1ForCausalLM", False, None),
    "axk2": ("AXK2ForCausalLM", False, None),
    "solar_open": ("SolarOpenForCausalLM", True, "glm4moe"),
    "qwen3_moe": ("Qwen3MoeForCausalLM", True, "qwen3moe"),
    "qwen3_5": ("Qwen3_5ForConditionalGeneration", True, "qwen35"),
    "qwen3_5_moe": ("Qwen3_5MoeForConditionalGeneration", True, "qwen35moe"),
    "gemma4": ("Gemma4ForConditionalGeneration", True, "gemma4"),
}
# logits gaps measured on trained tiny models, which export_info.json's known_differences names (greedy tokens match)
KNOWN_GAPS = {"exaone4_5": 2.0, "deepseek_v3": 1.0}  # EXAONE 4 hybrid attention as for exaone4; DeepSeek-V3 MLA
TINY_MROPE_ABORTS = ("qwen3_5", "qwen3_5_moe")
SUPPORTED = [f for f, (_, ok, _) in FAMILIES.items() if ok]
UNSUPPORTED = [f for f, (_, ok, _) in FAMILIES.items() if not ok]


def family_base(family: str, out: Path, chat_template: bool = True) -> Path:
    """A tiny random model of the family (its real shape) with a tokenizer the converter reads (see above)."""
    from transformers import PreTrainedTokenizerFast

    from kotune.testing.tiny import korean_bpe_tokenizer, tiny_base, tiny_model

    if family == "gemma4":
        if not (VOCAB / "ggml-vocab-gemma-4.gguf").is_file():
            pytest.skip(f"{VOCAB / 'ggml-vocab-gemma-4.gguf'} missing: run `make vocab`")
        tok = PreTrainedTokenizerFast.from_pretrained(str(VOCAB), gguf_file="ggml-vocab-gemma-4.gguf")
        assert tok.chat_template  # Gemma 4's own, kept
        tiny_model(family, tok, out, init_std=0.2)
        return out
    if family == "solar_open":
        tok = korean_bpe_tokenizer(out)
        tok.add_special_tokens({"additional_special_tokens": ["<unk>", "<|startoftext|>"]})
        tiny_model(family, tok, out, init_std=0.2)
    else:
        tiny_base(family, out, init_std=0.2)
    if chat_template:  # what a kotune run saves for a base without a template of its own (`prompt_format: auto`)
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(out)
        tok.chat_template = TEMPLATES["komt"]
        tok.save_pretrained(out)
    return out


def gguf_fields(path: Path) -> dict:
    """The file's own metadata, read back by the converter's gguf-py in a subprocess (it must not shadow anything
    in this process)."""
    from kotune.export.llama_cpp_source import converter_dir

    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from kotune.export.convert_shim import summary; "
            "print(json.dumps(summary(sys.argv[2]), ensure_ascii=False))")
    done = subprocess.run([sys.executable, "-c", code, str(converter_dir() / "gguf-py"), str(path)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_gguf_support_reads_the_converters_registered_names(family):
    """One answer per family, from the converter's own table, for the model_type and for the class name alike."""
    arch, supported, _ = FAMILIES[family]
    assert arch in registered_architectures() if supported else arch not in registered_architectures()
    for name in (family, arch):
        ok, reason = gguf_support(name)
        assert ok is supported, (name, reason)
        assert arch in reason and "llama-cpp-python" in reason
    if not supported:
        assert f"has no support for {arch} ({family})" in gguf_support(family)[1]


@pytest.mark.parametrize("family", UNSUPPORTED)
def test_unsupported_family_is_refused_before_anything_is_written(family, tmp_path):
    """A full-model run and an adapter run of the family: one KotuneError naming the class, the model type, the
    export that works (`kotune merge`) and the way to a newer llama.cpp; no output dir, no staging dir, no merge."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = family_base(family, tmp_path / "base")
    arch = FAMILIES[family][0]
    expected = (rf"llama\.cpp \(llama-cpp-python [\d.]+\)'s converter has no support for {arch} \({family}\); "
                r"`kotune merge RUN --out DIR` works .* GGUF needs a newer llama\.cpp")
    with pytest.raises(KotuneError, match=expected):
        export_gguf(base, "f16", out=tmp_path / "gguf")
    adapter = tmp_path / "adapter"  # an adapter on that base (untrained: the refusal comes before any loading)
    model = AutoModelForCausalLM.from_pretrained(base)
    get_peft_model(model, LoraConfig(r=4, target_modules=["o_proj"])).save_pretrained(adapter)
    with pytest.raises(KotuneError, match=expected):
        export_gguf(adapter, "f16", out=tmp_path / "adapter-gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "base"]
    assert sorted(p.name for p in adapter.iterdir()) == ["README.md", "adapter_config.json",
                                                         "adapter_model.safetensors"]


@pytest.mark.parametrize("family", ["qwen3_moe", "qwen3_5"])
def test_supported_family_converts_with_its_template(family, tmp_path):
    """A tiny model of the family becomes a GGUF of llama.cpp's architecture for it, with the model's chat template
    inside byte for byte (Qwen3.5: the shim's qwen35 pre-tokenizer and no MTP draft layers)."""
    from transformers import AutoTokenizer

    base = family_base(family, tmp_path / "base")
    path = export_gguf(base, "f16", out=tmp_path / "gguf")
    fields = gguf_fields(path)
    info = json.loads((path.parent / "export_info.json").read_text(encoding="utf-8"))
    assert fields["architecture"] == info["gguf"]["architecture"] == FAMILIES[family][2]
    assert fields["chat_template"] == AutoTokenizer.from_pretrained(base).chat_template
    assert info["chat_template_embedded"] and info["source_kind"] == "model" and fields["file_type"] == 1  # f16
    assert fields["pre_tokenizer"] == ("qwen35" if family == "qwen3_5" else "gpt-2")


@pytest.mark.slow
@pytest.mark.parametrize("family", SUPPORTED)
def test_trained_family_exports_and_llama_cpp_answers_like_transformers(family, tmp_path):
    """A LoRA run of the family (kotune's defaults, four Korean Q&A rows) exports as f32; the file holds the run's
    template; where llama-cpp-python is installed (`make install-gguf`), llama.cpp tokenizes the prompt as training
    did, its greedy tokens are transformers' on the merged model and its logits are within 0.1."""
    import numpy as np
    from transformers import AutoTokenizer

    from kotune.inference.loading import load_for_inference

    if family in TINY_MROPE_ABORTS and importlib.util.find_spec("llama_cpp"):  # export's own load check would abort
        pytest.skip(f"{family}: llama.cpp aborts on the tiny config (GGML_ASSERT(sect_dims "
                    "<= ne0): its default M-RoPE sections need more rotary dims than head_dim 16 x 0.25), a tiny-shape "
                    "issue the real 256-dim heads do not have")
    run = qa_run(family_base(family, tmp_path / "base"), tmp_path)
    path = export_gguf(run, "f32", out=tmp_path / "gguf", keep_merged=True)
    tok = AutoTokenizer.from_pretrained(path.parent / "merged")
    fields = gguf_fields(path)
    assert fields["architecture"] == FAMILIES[family][2] and fields["chat_template"] == tok.chat_template
    gaps = json.loads((path.parent / "export_info.json").read_text(encoding="utf-8"))["known_differences"]
    assert bool(gaps) == (family in KNOWN_GAPS), gaps
    try:
        import llama_cpp
    except ImportError:
        pytest.skip("llama-cpp-python is not installed (`make install-gguf`): file written and read back only")
    if family == "gemma4":  # open: the tokenizer rebuilt from the vocab GGUF leaves <|turn> unmarked as special
        pytest.skip("gemma4: file written, loads and answers in export; llama.cpp splits <|turn> (id 105) of the "
                    "rebuilt tokenizer, so ids differ from transformers' (open)")
    model, _ = load_for_inference(path.parent / "merged")  # an image-text family loads with its own class
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False, logits_all=True)
    try:
        for row in QA_ROWS:
            hf = greedy_new_ids(model, tok, row["instruction"], 20)
            prompt = tok.apply_chat_template([{"role": "user", "content": row["instruction"]}], tokenize=False,
                                             add_generation_prompt=True)
            ids = tok(prompt, add_special_tokens=False)["input_ids"]
            assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids, family
            assert llama_cpp_greedy(llm, ids, len(hf)) == hf, (family, row["instruction"])
            llm.reset()
            llm.eval(ids + hf)
            with torch.no_grad():
                expected = model(torch.tensor([ids + hf])).logits[0].numpy()
            gap = float(np.abs(np.array(llm.scores[:len(ids + hf)]) - expected).max())
            assert gap < KNOWN_GAPS.get(family, 0.1), (family, gap)
    finally:
        llm.close()
