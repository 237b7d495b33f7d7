"""`kotune merge`: merged logits equal base + adapter (fp32, 4-bit-trained, chained), the output is a complete HF
model dir, and user mistakes get one line and write nothing."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import base_config, run_sft_inprocess, write_config
from kotune.cli import main as kotune

TEXT = "대한민국의 수도는 어디인가요? 서울입니다."
# fp32: merged W + s·BA against Wx + s·B(Ax) differ only in summation order; we measured ≤ 2e-5 on logits of
# magnitude ~8 (relative ~2e-6, fp32 eps 1.2e-7 times a few hundred terms). 1e-4 leaves 5x headroom and is still
# 100x below what a wrong merge does (the adapter moves these logits by > 0.01, and dropping it is checked).
FP32_ATOL = 1e-4


def sft_run(tmp_path_factory, name: str, base, **extra):
    """A tiny LoRA SFT run, trained once per session and shared by the merge and chat tests."""
    out = tmp_path_factory.getbasetemp() / "kotune-runs" / name
    if not (out / "adapter_config.json").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        cfg = base_config(base, out, **{"max_steps": 4, **extra})
        assert run_sft_inprocess(write_config(out.parent / f"{name}.yaml", cfg)) == 0
    return out


def nopad_base(tmp_path_factory):
    """A GPT-NeoX base whose tokenizer has EOS only (no pad, no unk): kotune adds <|pad|> and resizes."""
    out = tmp_path_factory.getbasetemp() / "kotune-runs" / "nopad-base"
    if not (out / "config.json").is_file():
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        from kotune.testing.tiny import sample_texts, tiny_model

        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(sample_texts() + ["### 질문: ### 답변:"], trainers.BpeTrainer(
            vocab_size=1000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False))
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
        tiny_model("gpt_neox", fast, out, hidden=64, layers=2, seed=0, init_std=0.2)
    return out


@pytest.fixture(scope="module")
def neox_run(tmp_path_factory):
    return sft_run(tmp_path_factory, "neox-lora", nopad_base(tmp_path_factory))


@pytest.fixture(scope="module")
def llama_q4_run(tmp_path_factory, tiny_bases):
    return sft_run(tmp_path_factory, "llama-qlora", tiny_bases["llama"], load_in_4bit=True)


def logits(model, tok, text=TEXT):
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits.float()


def reference(run, tok, **load):
    """Base + adapter, unmerged, loaded with plain transformers/PEFT calls (resized for an added pad)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base_dir = json.loads((run / "adapter_config.json").read_text())["base_model_name_or_path"]
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, **load)
    if len(tok) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tok))
    return PeftModel.from_pretrained(base, run), base_dir


def test_merge_fp32_equals_base_plus_adapter(neox_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "merged"
    assert kotune(["merge", str(neox_run), "--out", str(out)]) == 0
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    ref, base_dir = reference(neox_run, tok)

    assert len(tok) == model.get_input_embeddings().weight.shape[0] == model.config.vocab_size  # <|pad|> added
    assert tok.pad_token == "<|pad|>" and tok.pad_token_id != tok.eos_token_id
    assert tok.chat_template == AutoTokenizer.from_pretrained(neox_run).chat_template  # the training format
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.eos_token_id and gen["pad_token_id"] == tok.pad_token_id
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == "float32" and "quantization_config" not in config  # the base's saved dtype
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()
    assert json.loads((out / "merge_info.json").read_text())["base"] == base_dir

    got, want = logits(model, tok), logits(ref, tok)
    diff = (got - want).abs().max().item()
    print(f"fp32 merge: max |logit diff| = {diff:.2e} (logits up to {want.abs().max():.1f})")
    assert diff < FP32_ATOL
    with ref.disable_adapter():
        assert (logits(ref, tok) - want).abs().max() > 0.01  # the adapter matters: the check is not vacuous
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]  # no temp dir left beside it


def test_merge_4bit_trained_adapter_equals_what_was_trained(llama_q4_run, tmp_path):
    """The 4-bit base is rebuilt as training quantized it, dequantized, then merged: the merged model computes what
    the 4-bit base + adapter computed in training, not what the adapter does on the unquantized base."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kotune.inference.loading import trained_model_args
    from kotune.models.loading import load_base

    out = tmp_path / "merged"
    assert kotune(["merge", str(llama_q4_run), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float32"
    tok = AutoTokenizer.from_pretrained(out)
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert json.loads((out / "merge_info.json").read_text())["trained_quantization"] == "4-bit"

    args = trained_model_args(llama_q4_run)
    assert args.load_in_4bit
    as_trained = PeftModel.from_pretrained(load_base(args.model_name_or_path, args, _Cpu, tok), llama_q4_run)
    got, want = logits(merged, tok), logits(as_trained, tok)
    diff = (got - want).abs().max().item()
    unquantized = (logits(reference(llama_q4_run, tok)[0], tok) - want).abs().max().item()
    print(f"4-bit merge: max |logit diff| vs 4-bit base + adapter = {diff:.2e}; "
          f"the unquantized base + adapter would differ by {unquantized:.2f}")
    # Dequantized NF4 weights are exactly the values bitsandbytes multiplies with in fp32: same fp32 budget.
    assert diff < FP32_ATOL
    assert unquantized > 100 * FP32_ATOL


def test_merge_8bit_trained_adapter(tiny_bases, tmp_path_factory, tmp_path):
    """LLM.int8 also quantizes activations in its forward, which no float model reproduces: the merged model (on the
    dequantized int8 weights) is close to the trained forward, not equal (measured ~3% of the logit range, and closer
    than the adapter on the original base, ~4%)."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kotune.inference.loading import trained_model_args
    from kotune.models.loading import load_base

    run = sft_run(tmp_path_factory, "llama-lora8", tiny_bases["llama"], load_in_8bit=True, max_steps=2)
    out = tmp_path / "merged"
    assert kotune(["merge", str(run), "--out", str(out)]) == 0
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    tok = AutoTokenizer.from_pretrained(out)
    args = trained_model_args(run)
    want = logits(PeftModel.from_pretrained(load_base(args.model_name_or_path, args, _Cpu, tok), run), tok)
    rel = ((logits(AutoModelForCausalLM.from_pretrained(out), tok) - want).abs().max() / want.abs().max()).item()
    print(f"8-bit merge: max |logit diff| / max |logit| vs the int8 forward = {rel:.3f}")
    assert rel < 0.1


class _Cpu:
    use_cpu = True


def test_merge_dtype_bf16(neox_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "bf16"
    assert kotune(["merge", str(neox_run), "--out", str(out), "--dtype", "bf16"]) == 0
    model = AutoModelForCausalLM.from_pretrained(out, dtype="auto")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert model.dtype == torch.bfloat16
    tok = AutoTokenizer.from_pretrained(out)
    got, want = logits(model, tok), logits(reference(neox_run, tok)[0], tok)
    # bf16 keeps 8 mantissa bits (relative 2^-9 per weight and per product); through two layers we measured
    # ~0.02 relative; 5% of the logit range still catches a missing or doubled adapter (which moves them > 10%).
    rel = ((got - want).abs().max() / want.abs().max()).item()
    print(f"bf16 merge: max |logit diff| / max |logit| = {rel:.3f}")
    assert rel < 0.05


def test_merge_a_chain_of_adapters(neox_run, tmp_path):
    """An adapter trained on top of another adapter dir (its base_model_name_or_path is that dir) is merged as a
    chain: inner adapter into the base, then the outer one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kotune.inference.loading import load_for_inference

    inner, tok = load_for_inference(neox_run)
    torch.manual_seed(0)
    outer = get_peft_model(inner.merge_and_unload(), LoraConfig(r=4, target_modules=["query_key_value"]))
    with torch.no_grad():
        for n, p in outer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    outer_dir = tmp_path / "dpo"
    outer.save_pretrained(outer_dir)
    tok.save_pretrained(outer_dir)
    cfg = json.loads((outer_dir / "adapter_config.json").read_text())
    (outer_dir / "adapter_config.json").write_text(json.dumps(dict(cfg, base_model_name_or_path=str(neox_run))))
    want = logits(outer, tok)

    out = tmp_path / "merged"
    assert kotune(["merge", str(outer_dir), "--out", str(out)]) == 0
    got = logits(AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out))
    assert (got - want).abs().max() < FP32_ATOL
    info = json.loads((out / "merge_info.json").read_text())
    assert info["adapters"] == [str(neox_run), str(outer_dir)]


def _user_error(capsys, *argv) -> str:
    capsys.readouterr()  # drop earlier runs' progress bars
    with pytest.raises(SystemExit) as exit_:
        kotune(list(argv))
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kotune: error:") and "Traceback" not in err
    return err


def test_merge_user_errors_write_nothing(neox_run, tmp_path, capsys):
    out = tmp_path / "out"
    assert "does not exist" in _user_error(capsys, "merge", str(tmp_path / "nope"), "--out", str(out))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "neither an adapter" in _user_error(capsys, "merge", str(empty), "--out", str(out))
    assert "--out" in _user_error(capsys, "merge", str(neox_run), "--out", str(neox_run / "merged"))
    moved = tmp_path / "moved"  # an adapter whose base is gone (e.g. a relative path, run from elsewhere)
    moved.mkdir()
    cfg = json.loads((neox_run / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps(dict(cfg, base_model_name_or_path="runs/no-such-base")))
    assert "runs/no-such-base" in _user_error(capsys, "merge", str(moved), "--out", str(out))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "moved"]  # nothing written

    full = tmp_path / "full"
    assert kotune(["merge", str(neox_run), "--out", str(full)]) == 0
    assert "already a full model" in _user_error(capsys, "merge", str(full), "--out", str(out))
    first = (full / "model.safetensors").stat().st_mtime_ns
    assert "--overwrite" in _user_error(capsys, "merge", str(neox_run), "--out", str(full))
    assert (full / "model.safetensors").stat().st_mtime_ns == first
    assert kotune(["merge", str(neox_run), "--out", str(full), "--overwrite"]) == 0
    assert (full / "model.safetensors").stat().st_mtime_ns != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full", "moved"]  # no temp or old dirs left


def test_merge_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        kotune(["merge", "--help"])
    assert exit_.value.code == 0
    assert "--dtype" in capsys.readouterr().out
