"""`kotune export RUN --gguf`: llama.cpp's own converter writes the file, llama.cpp (llama-cpp-python) loads it and
answers with the same greedy tokens as transformers on the merged model, and the Ollama Modelfile reproduces the
run's chat template turn by turn.

The converter comes from the llama-cpp-python sdist on PyPI (`make converter` fetches it once, 2 MB kept). The
llama.cpp runtime is an optional extra (`make install-gguf` builds it, several minutes), so the tests that load
files in llama.cpp are marked slow and run by `make test-slow`.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
from huggingface_hub import ModelCard
from conftest import base_config, run_sft_inprocess, write_config
from helpers import QA_ROWS, greedy_new_ids

from kotune.data.prompt_formats import TEMPLATES
from kotune.errors import KotuneError
from kotune.export.gguf_export import export_gguf
from kotune.export.modelfile import modelfile

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def ollama_render(template: str, turns: list[dict]) -> str:
    """What Ollama sends for a .System/.Prompt/.Response template: the template once per turn, the last one cut
    after {{ .Response }} (the model writes the rest). Only the constructs modelfile.py writes are handled."""
    def one(turn: dict, last: bool) -> str:
        text = template.split("{{ .Response }}")[0] + "{{ .Response }}" if last else template
        text = re.sub(r"\{\{ if \.System \}\}(.*?)\{\{ else \}\}(.*?)\{\{ end \}\}",
                      lambda m: m.group(1) if turn.get("system") else m.group(2), text, flags=re.S)
        text = re.sub(r"\{\{ if \.Response \}\}(.*?)\{\{ end \}\}",
                      lambda m: m.group(1) if turn.get("response") else "", text, flags=re.S)
        return (text.replace("{{ .System }}", turn.get("system", "")).replace("{{ .Prompt }}", turn["prompt"])
                .replace("{{ .Response }}", turn.get("response", "")))
    return "".join(one(turn, i == len(turns) - 1) for i, turn in enumerate(turns))


@pytest.mark.parametrize("fmt", ["komt", "koquality", "llama2", "mistral", "chatml"])
def test_modelfile_template_reproduces_the_chat_template(fmt, sp_tokenizer):
    """One turn, a system message and a two-turn history render to the bytes training used (BOS aside, which
    llama.cpp adds itself)."""
    tok = sp_tokenizer
    tok.chat_template = CHATML if fmt == "chatml" else TEMPLATES[fmt]
    text = modelfile("model-f16.gguf", tok, strip_bos=True)
    template = re.search(r'TEMPLATE """(.*?)"""', text, flags=re.S).group(1)
    stops = re.findall(r'PARAMETER stop "(.*?)"', text)
    assert text.startswith("FROM ./model-f16.gguf\n") and tok.eos_token in stops
    system = "당신은 친절한 한국어 비서입니다."
    cases = [
        ([{"role": "user", "content": "서울의 인구는?"}], [{"prompt": "서울의 인구는?"}]),
        ([{"role": "user", "content": "서울의 인구는?"}, {"role": "assistant", "content": "약 940만 명입니다."},
          {"role": "user", "content": "부산은요?"}],
         [{"prompt": "서울의 인구는?", "response": "약 940만 명입니다."}, {"prompt": "부산은요?"}]),
    ]
    if fmt not in ("mistral",):  # kotune's Mistral format folds the system text into the first turn's prompt
        cases.append(([{"role": "system", "content": system}, {"role": "user", "content": "안녕하세요"}],
                      [{"system": system, "prompt": "안녕하세요"}]))
    for messages, turns in cases:
        expected = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert ollama_render(template, turns) == expected.removeprefix(tok.bos_token), (fmt, messages)


def qa_run(base, root, **extra):
    """A LoRA adapter that has learned the four Korean Q&A rows (answers end with EOS)."""
    data = root / "qa.jsonl"
    data.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in QA_ROWS) + "\n", encoding="utf-8")
    cfg = base_config(base, root / "run", dataset_mixture={"datasets": [{"id": str(data), "format": "instruction"}]},
                      **{"learning_rate": 2.0e-2, "max_steps": 30, "lora_r": 16, "lora_alpha": 32, **extra})
    assert run_sft_inprocess(write_config(root / "qa.yaml", cfg)) == 0
    return root / "run"


@pytest.fixture(scope="module")
def llama_qa_run(tmp_path_factory):
    from kotune.testing.tiny import tiny_base

    root = tmp_path_factory.mktemp("gguf_llama")
    return qa_run(tiny_base("llama", root / "base", init_std=0.2), root)


def test_export_writes_a_gguf_with_the_chat_template(llama_qa_run, tmp_path):
    """An adapter run becomes one f16 GGUF with the tokenizer, BOS and chat template inside, a Modelfile and
    export_info.json; the merged model is staged and removed; the run dir is not touched."""
    before = sorted(p.name for p in llama_qa_run.iterdir())
    path = export_gguf(llama_qa_run, "f16", out=tmp_path / "gguf")
    info = json.loads((tmp_path / "gguf" / "export_info.json").read_text())
    assert path.name == "model-f16.gguf" and path.stat().st_size == info["size_bytes"] > 0
    assert info["gguf"]["architecture"] == "llama" and info["gguf"]["add_bos_token"] is True
    assert info["chat_template_embedded"] and info["source_kind"] == "adapter"
    assert sorted(p.name for p in (tmp_path / "gguf").iterdir()) == ["Modelfile", "README.md", "export_info.json",
                                                                     "model-f16.gguf"]
    card = ModelCard.load(tmp_path / "gguf" / "README.md")
    assert "gguf" in card.data.tags and "model-f16.gguf" in card.text and "Modelfile" in card.text
    assert "[/INST]" in (tmp_path / "gguf" / "Modelfile").read_text()
    assert sorted(p.name for p in llama_qa_run.iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging dir left behind


def test_export_refuses_bad_outputs(llama_qa_run, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("keep me")
    with pytest.raises(KotuneError, match="not empty; pass --overwrite"):
        export_gguf(llama_qa_run, "f16", out=tmp_path / "taken")
    assert (tmp_path / "taken" / "x").read_text() == "keep me"
    with pytest.raises(KotuneError, match="inside the adapter dir"):
        export_gguf(llama_qa_run, "f16", out=llama_qa_run / "gguf")
    with pytest.raises(KotuneError, match="does not exist"):
        export_gguf(tmp_path / "missing", "f16")


# --- llama.cpp loads the file (slow: needs llama-cpp-python, `make install-gguf`) ------------------------------------

FAMILIES = ["llama", "mistral", "gpt_neox", "qwen2", "gemma3_text", "exaone4"]


def llama_cpp_greedy(llm, prompt_ids: list[int], n: int) -> list[int]:
    out = []
    for token in llm.generate(prompt_ids, top_k=1, top_p=1.0, temp=0.0, repeat_penalty=1.0, reset=True):
        out.append(token)
        if len(out) >= n or token == llm.token_eos():
            break
    return out


@pytest.mark.slow
@pytest.mark.parametrize("arch", FAMILIES)
def test_llama_cpp_answers_like_transformers(arch, tmp_path):
    """For each tiny family llama.cpp supports: llama.cpp tokenizes the rendered prompt as training did, its logits
    are transformers' (f32 export), and its greedy tokens equal transformers' on the merged model. EXAONE-4's hybrid
    attention is the one known gap: its logits differ, the export says so, and the answers still match."""
    import numpy as np

    llama_cpp = pytest.importorskip("llama_cpp")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kotune.testing.tiny import tiny_base

    run = qa_run(tiny_base(arch, tmp_path / "base", init_std=0.2), tmp_path)
    path = export_gguf(run, "f32", out=tmp_path / "gguf", keep_merged=True)
    tok = AutoTokenizer.from_pretrained(path.parent / "merged")
    model = AutoModelForCausalLM.from_pretrained(path.parent / "merged", dtype=torch.float32)
    gaps = json.loads((path.parent / "export_info.json").read_text())["known_differences"]
    assert bool(gaps) == (arch == "exaone4")
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False, logits_all=True)
    try:
        for row in QA_ROWS:
            hf = greedy_new_ids(model, tok, row["instruction"], 20)
            prompt = tok.apply_chat_template([{"role": "user", "content": row["instruction"]}], tokenize=False,
                                             add_generation_prompt=True)
            ids = tok(prompt, add_special_tokens=False)["input_ids"]
            assert llm.tokenize(prompt.encode(), add_bos=False, special=True) == ids
            assert tok.decode(hf, skip_special_tokens=True).strip() == row["output"]  # the run learned it
            assert llama_cpp_greedy(llm, ids, len(hf)) == hf, (arch, row["instruction"])
            llm.reset()
            llm.eval(ids + hf)
            with torch.no_grad():
                expected = model(torch.tensor([ids + hf])).logits[0].numpy()
            gap = float(np.abs(np.array(llm.scores[:len(ids + hf)]) - expected).max())
            assert gap < 0.1 or arch == "exaone4", (arch, gap)
    finally:
        llm.close()


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
def test_quantized_exports_load_and_answer(quant, llama_qa_run, tmp_path):
    """q8_0 (the converter) and q4_k_m (llama.cpp's quantizer) load in llama.cpp and answer through the GGUF's own
    chat template, stopping at EOS."""
    pytest.importorskip("llama_cpp")
    path = export_gguf(llama_qa_run, quant, out=tmp_path / quant)
    info = json.loads((path.parent / "export_info.json").read_text())
    assert path.name == f"model-{quant}.gguf" and sorted(p.name for p in path.parent.iterdir()) == [
        "Modelfile", "README.md", "export_info.json", path.name]
    check = info["llama_cpp_check"]  # export's own check: an answer to an unseen prompt, ended by EOS
    assert check["finish_reason"] == "stop" and check["answer"].strip() in {r["output"] for r in QA_ROWS}
    llm = pytest.importorskip("llama_cpp").Llama(model_path=str(path), n_ctx=256, verbose=False)
    try:
        for row in QA_ROWS:
            reply = llm.create_chat_completion([{"role": "user", "content": row["instruction"]}], max_tokens=24,
                                               temperature=0.0, top_k=1)["choices"][0]
            assert (reply["message"]["content"].strip(), reply["finish_reason"]) == (row["output"], "stop"), quant
    finally:
        llm.close()
