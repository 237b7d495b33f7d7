"""Acceptance of issue 26's whole path, "make a base Korean", on a tiny random model whose vocabulary is a real
tokenizer's (Mistral-7B v1's SentencePiece model, Llama-3's byte-level BPE): `kotune vocab build` on the bench's
Korean text → `kotune vocab extend` → EEVE's 7 stages through train/pt.py, chained through output dirs, the frozen
rows and layers bit-identical to the previous stage's after each → SFT with LoRA → `kotune merge` → `kotune chat`.
The CPT eval perplexity on held-out Korean paragraphs falls from the first stage to the last; the merged model keeps
the extended vocabulary, tokenizes English as the base did, and its card records the extension. Slow (~1-2 min a
tokenizer on 2 CPU cores)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO, base_config, run_sft_inprocess, write_config
from test_base_templates import LLAMA3_TEMPLATE
from test_pt import history, pt_config, run_pt

pytestmark = pytest.mark.slow

GGUF = Path(os.environ.get("KOTUNE_GGUF_VOCAB", Path.home() / ".cache" / "kotune" / "gguf_vocab"))
BENCH_TEXT = REPO / "bench" / "data" / "korean_train.txt"
PARAGRAPHS = REPO / "src" / "kotune" / "data" / "sample" / "korean_paragraphs.txt"
CHAT = REPO / "src" / "kotune" / "data" / "sample" / "chat.jsonl"
ENGLISH = ["The quick brown fox jumps over the lazy dog. It's 3.14 o'clock, isn't it?",
           "def add(a, b):\n    return a + b  # sum"]
EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"
STEPS, LR, EMBED_LR = 3, 3e-3, 3e-2


def base_model(family: str, folder: Path) -> Path:
    """A random 2-layer model (hidden 64) with the real tokenizer, saved as a Hub base would be."""
    from kotune.testing.tiny import tiny_base, tiny_model

    if family == "mistral":
        pytest.importorskip("mistral_common", reason="Mistral's SentencePiece model ships in mistral-common (dev)")
        pytest.importorskip("sentencepiece", reason="reading a tokenizer.model needs sentencepiece (dev extra)")
        return tiny_base("mistral", folder, hidden=64, layers=2, seed=0, init_std=0.2)
    if not (GGUF / "ggml-vocab-llama-bpe.gguf").is_file():
        pytest.skip(f"{GGUF}/ggml-vocab-llama-bpe.gguf missing: run `make vocab`")
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(str(GGUF), gguf_file="ggml-vocab-llama-bpe.gguf")
    tok.chat_template = LLAMA3_TEMPLATE
    tiny_model("llama", tok, folder, hidden=64, layers=2, seed=0, init_std=0.2)
    return folder


def kotune(capsys, *args) -> tuple[int, str]:
    """`kotune ARGS` through the real entry point, in this process: (exit code, stdout + stderr)."""
    from kotune.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out + out.err


def build_and_extend(capsys, base, tmp_path) -> tuple[Path, dict]:
    """`kotune vocab build` on the bench's Korean text (400 tokens), then `kotune vocab extend`: the extended dir and
    its kotune_vocab.json."""
    tokens, ext = tmp_path / "tokens.tsv", tmp_path / "ext"
    code, out = kotune(capsys, "vocab", "build", "--base", base, "--corpus", BENCH_TEXT, "--size", 400,
                       "--out", tokens)
    assert code == 0, out[-2000:]
    code, out = kotune(capsys, "vocab", "extend", "--base", base, "--tokens", tokens, "--out", ext)
    assert code == 0, out[-2000:]
    return ext, json.loads((ext / "kotune_vocab.json").read_text(encoding="utf-8"))


def check_frozen(before: dict, after: dict, preset, first: int, stage: int) -> None:
    """What the preset keeps frozen is bit-identical to the previous stage's output; what it opens moved."""
    for name, rows in ((EMBED, preset.inputs), (HEAD, preset.outputs)):
        old_same, new_same = torch.equal(before[name][:first], after[name][:first]), \
            torch.equal(before[name][first:], after[name][first:])
        assert old_same or rows == "all", f"stage {stage}: {name} old rows changed under '{rows}'"
        assert new_same or rows != "none", f"stage {stage}: {name} new rows changed under '{rows}'"
        assert not new_same or rows == "none", f"stage {stage}: {name} new rows did not train under '{rows}'"
    layers = [torch.equal(t, after[n]) for n, t in before.items() if n not in (EMBED, HEAD)]
    assert not any(layers) if preset.layers else all(layers), f"stage {stage}: layers frozen {layers}"


@pytest.mark.parametrize("family", ["mistral", "llama3"])
def test_a_real_tokenizers_tiny_base_goes_the_whole_korean_path(family, tmp_path, capsys, caplog):
    from transformers import AutoTokenizer

    from kotune.vocab.stages import PRESETS

    base = base_model(family, tmp_path / "base")
    base_tok = AutoTokenizer.from_pretrained(base)

    ext, record = build_and_extend(capsys, base, tmp_path)
    first, size = record["old_vocab_size"], record["new_vocab_size"]
    assert first == len(base_tok) and size - first > 100, record

    caplog.set_level(logging.INFO, logger="kotune")
    previous, perplexity = ext, {}
    for stage, preset in PRESETS.items():
        out_dir = tmp_path / f"stage{stage}"
        extra = {"embedding_learning_rate": EMBED_LR} if "none" != preset.inputs or "none" != preset.outputs else {}
        cfg = pt_config(previous, out_dir, PARAGRAPHS, eeve_stage=stage, max_steps=STEPS, learning_rate=LR,
                        max_length=128, per_device_train_batch_size=4, **extra)
        assert run_pt(write_config(tmp_path / f"stage{stage}.yaml", cfg)) == 0, caplog.text[-2000:]
        before, after = load_file(previous / "model.safetensors"), load_file(out_dir / "model.safetensors")
        # the extension brings its pad token (Llama-3 has neither pad nor unk), so no stage adds a row
        assert after[EMBED].shape[0] == before[EMBED].shape[0] == size, (stage, size, after[EMBED].shape)
        check_frozen(before, after, preset, first, stage)
        evals = [h["eval_perplexity"] for h in history(out_dir) if "eval_perplexity" in h]
        perplexity[stage] = evals[-1]
        previous = out_dir
    with capsys.disabled():
        print(f"\n{family}: eval perplexity at the end of each stage {perplexity}")
    assert perplexity[7] < perplexity[1], perplexity
    done = json.loads((previous / "kotune_vocab.json").read_text(encoding="utf-8"))
    assert [s["eeve_stage"] for s in done["stages"]] == list(PRESETS)

    sft, merged = tmp_path / "sft", tmp_path / "merged"
    cfg = base_config(previous, sft, dataset_mixture={"seed": 1, "datasets": [{"id": str(CHAT), "format": "chat"}]},
                      max_steps=3, learning_rate=3e-3)
    assert run_sft_inprocess(write_config(tmp_path / "sft.yaml", cfg)) == 0, caplog.text[-2000:]
    code, out = kotune(capsys, "merge", sft, "--out", merged)
    assert code == 0, out[-2000:]
    code, out = kotune(capsys, "chat", merged, "--prompt", "서울은 어떤 도시인가요?", "--max_new_tokens", 12,
                       "--no_stream")
    assert code == 0 and out.strip(), out[-2000:]

    tok = AutoTokenizer.from_pretrained(merged)
    assert len(tok) == size and tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    for text in ENGLISH:
        assert tok(text)["input_ids"] == base_tok(text)["input_ids"], text
    card = (merged / "README.md").read_text(encoding="utf-8")
    assert f"{first:,} → {size:,} 토큰" in card and "마친 EEVE 단계 (stages done): 1, 2, 3, 4, 5, 6, 7" in card
