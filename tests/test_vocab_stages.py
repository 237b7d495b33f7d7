"""Vocabulary extension's model side: EEVE's row initialisation on real tokenizers, and the 7 staged presets
(`eeve_stage`) through the real train/sft.py with the old rows truly frozen: bit-identical after training, no
optimizer state, weight decay on the open rows only, and outputs that load with plain transformers.

Tokenizers: Mistral-7B v1's SentencePiece model (the mistral-common wheel) and Llama-3's byte-level BPE (the vocab
GGUF `make vocab` extracts); each test skips with the reason when its file is missing."""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import REPO, base_config, run_sft_inprocess, write_config

GGUF = Path(os.environ.get("KOTUNE_GGUF_VOCAB", Path.home() / ".cache" / "kotune" / "gguf_vocab"))
RULE_TOKENS = ["대한민국", "서울특별시", "했습니다"]
TRAIN_TOKENS = ["입니다", "있습니다", "합니다"]  # frequent in the bundled sample, so their rows see gradients
EMBED_LR, WEIGHT_DECAY = 5e-2, 0.1


def need_sentencepiece() -> None:
    pytest.importorskip("mistral_common", reason="the SentencePiece tokenizer ships in mistral-common (dev extra)")


def llama3_tokenizer():
    from transformers import PreTrainedTokenizerFast

    if not (GGUF / "ggml-vocab-llama-bpe.gguf").is_file():
        pytest.skip(f"{GGUF}/ggml-vocab-llama-bpe.gguf missing: run `make vocab`")
    return PreTrainedTokenizerFast.from_pretrained(str(GGUF), gguf_file="ggml-vocab-llama-bpe.gguf")


@pytest.fixture(scope="module")
def extended(tiny_bases, tmp_path_factory):
    """The tiny Mistral base (real SentencePiece vocabulary) extended with Korean tokens by extend_model."""
    need_sentencepiece()
    from transformers import AutoTokenizer

    from kotune.vocab.model_rows import extend_model

    tok = AutoTokenizer.from_pretrained(tiny_bases["mistral"])
    tok.add_tokens(RULE_TOKENS + TRAIN_TOKENS)
    out = tmp_path_factory.mktemp("extended") / "ext"
    record = extend_model(str(tiny_bases["mistral"]), tok, str(out))
    return out, record


def pieces(base_tok, text: str) -> list[int]:
    """The base's ids for `text`, without SentencePiece's dummy-prefix piece '▁' (not a letter of the token)."""
    ids = base_tok(text, add_special_tokens=False)["input_ids"]
    return ids[1:] if base_tok.convert_ids_to_tokens(ids[0]) == "▁" else ids


@pytest.mark.parametrize("family", ["mistral", pytest.param("llama3", marks=pytest.mark.slow)])  # Llama-3's: 10 s
def test_new_rows_follow_eeves_rule_on_a_real_tokenizer(family, tiny_bases, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from kotune.testing.tiny import tiny_model
    from kotune.vocab.model_rows import extend_model

    if family == "mistral":
        need_sentencepiece()
        base_dir = tiny_bases["mistral"]
    else:
        base_dir = tmp_path / "llama3"
        tiny_model("llama", llama3_tokenizer(), base_dir, hidden=16, layers=1, init_std=0.2)
    base_tok = AutoTokenizer.from_pretrained(base_dir)
    tok = copy.deepcopy(base_tok)
    tok.add_tokens(RULE_TOKENS)
    for init in ("eeve", "mean"):
        record = extend_model(str(base_dir), tok, str(tmp_path / init), init=init)
        assert record["old_vocab_size"] == len(base_tok) and record["new_tokens"] == 3, record
        assert json.loads((tmp_path / init / "kotune_vocab.json").read_text()) == record
        base = AutoModelForCausalLM.from_pretrained(base_dir)
        ext = AutoModelForCausalLM.from_pretrained(tmp_path / init)
        e_in, e_out = ext.get_input_embeddings().weight, ext.get_output_embeddings().weight
        b_in, b_out = base.get_input_embeddings().weight, base.get_output_embeddings().weight
        assert e_in.shape[0] == len(tok) and torch.equal(e_in[:len(base_tok)], b_in)  # old rows untouched
        assert torch.equal(e_out[:len(base_tok)], b_out)
        for text in RULE_TOKENS:
            ids, new = pieces(base_tok, text), tok.convert_tokens_to_ids(text)
            assert base_tok.decode(ids) == text and (len(ids) >= 2 or text == "했습니다")
            assert torch.equal(e_in[new], b_in[ids].mean(0))
            assert torch.equal(e_out[new], b_out[ids[0]] if init == "eeve" else b_out[ids].mean(0))
    if family == "mistral":  # SentencePiece splits each syllable; the dummy '▁' is not one of the token's pieces
        assert base_tok.convert_ids_to_tokens(pieces(base_tok, "대한민국")) == ["대", "한", "민", "국"]


def test_a_merged_token_splits_into_the_pieces_it_merges(tiny_bases):
    """The other extension mechanism: a vocabulary entry plus a BPE merge (no added token), here on Mistral's
    SentencePiece vocabulary, is split by the base's own model on its raw form."""
    need_sentencepiece()
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from kotune.vocab.model_rows import appended_ids, old_pieces

    base = AutoTokenizer.from_pretrained(tiny_bases["mistral"])
    spec = json.loads(base.backend_tokenizer.to_str())
    spec["model"]["vocab"]["대한"] = len(base)
    spec["model"]["merges"].append(["대", "한"])
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json.dumps(spec)))
    assert len(base) in tok("대한민국", add_special_tokens=False)["input_ids"]
    assert list(appended_ids(base, tok)) == [len(base)]
    assert base.convert_ids_to_tokens(old_pieces(base, tok, len(base))) == ["대", "한"]


def test_extend_refuses_a_used_out_dir_the_base_itself_and_a_renumbering_tokenizer(tiny_bases, tmp_path):
    from transformers import AutoTokenizer

    from kotune.errors import KotuneError
    from kotune.vocab.model_rows import extend_model

    base = tiny_bases["gpt_neox"]
    tok = AutoTokenizer.from_pretrained(base)
    tok.add_tokens(["대한민국"])
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("x")
    with pytest.raises(KotuneError, match="not empty"):
        extend_model(str(base), tok, str(tmp_path / "used"))
    with pytest.raises(KotuneError, match="input|base"):
        extend_model(str(base), tok, str(base))
    other = AutoTokenizer.from_pretrained(tiny_bases["mistral"])
    with pytest.raises(KotuneError, match="renumbers"):
        extend_model(str(base), other, str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()


# --- the seven stages ------------------------------------------------------------------------------------------------

def run_stage(extended, tmp_path, stage: int, use_peft: bool, caplog):
    from kotune.vocab.stages import PRESETS

    ext, _ = extended
    out = tmp_path / "out"
    extra = {"embedding_learning_rate": EMBED_LR} if PRESETS[stage].inputs != "none" or \
        PRESETS[stage].outputs != "none" else {}
    cfg = base_config(ext, out, max_steps=2, use_peft=use_peft, eeve_stage=stage, weight_decay=WEIGHT_DECAY,
                      save_strategy="steps", save_steps=2, per_device_train_batch_size=2, **extra)
    caplog.set_level(logging.INFO, logger="kotune")
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    assert f"eeve_stage {stage}: {PRESETS[stage].rule} (EEVE" in caplog.text
    assert [s["eeve_stage"] for s in json.loads((out / "kotune_vocab.json").read_text())["stages"]] == [stage]
    return out


def check_rows(before, after, name: str, rows: str, first: int):
    """Old rows bit-identical unless the stage trains them all; the rows that train changed."""
    old_same = torch.equal(before[:first], after[:first])
    assert old_same == (rows != "all"), f"{name}: old rows {'unchanged' if old_same else 'changed'} under {rows}"
    new_same = torch.equal(before[first:], after[first:])
    assert new_same == (rows == "none"), f"{name}: new rows {'unchanged' if new_same else 'changed'} under {rows}"


def optimizer_state(out: Path):
    saved = torch.load(out / "checkpoint-2" / "optimizer.pt", weights_only=False)
    shapes = sorted(tuple(s["exp_avg"].shape) for s in saved["state"].values())
    return shapes, saved["param_groups"]


FULL_DEFAULT = (1, 5, 7)  # 2, 3, 4 and 6 repeat the rules of 1, 5 and plain full fine-tuning: slow
LORA_DEFAULT = (5,)


@pytest.mark.parametrize("stage", [pytest.param(k, marks=() if k in FULL_DEFAULT else pytest.mark.slow)
                                   for k in range(1, 8)])
def test_full_fine_tuning_stage_trains_only_its_rows(stage, extended, tmp_path, caplog):
    from transformers import AutoModelForCausalLM

    from kotune.vocab.stages import PRESETS

    preset, (ext, record) = PRESETS[stage], extended
    first, rows = record["old_vocab_size"], record["rows"]
    out = run_stage(extended, tmp_path, stage, False, caplog)
    base, trained = AutoModelForCausalLM.from_pretrained(ext), AutoModelForCausalLM.from_pretrained(out)
    AutoModelForCausalLM.from_pretrained(out / "checkpoint-2")  # checkpoints load with plain transformers too
    check_rows(base.model.embed_tokens.weight, trained.model.embed_tokens.weight, "embed_tokens", preset.inputs,
               first)
    check_rows(base.lm_head.weight, trained.lm_head.weight, "lm_head", preset.outputs, first)
    matrices = {"model.embed_tokens.weight", "lm_head.weight"}
    layers = {n: torch.equal(p, trained.state_dict()[n]) for n, p in base.state_dict().items() if n not in matrices}
    assert not any(layers.values()) if preset.layers else all(layers.values()), layers

    hidden = base.config.hidden_size
    expected = [(rows - first, hidden)] * [preset.inputs, preset.outputs].count("new") + \
        [(rows, hidden)] * [preset.inputs, preset.outputs].count("all")
    shapes, groups = optimizer_state(out)
    if not preset.layers:  # AdamW state for the open rows only: (new rows, hidden), never the frozen ones
        assert shapes == sorted(expected), shapes
    else:
        assert sorted(s for s in shapes if s[0] in (rows, rows - first)) == sorted(expected)
    if expected:  # the open rows: their own param group at embedding_learning_rate, with weight decay
        assert [(g["initial_lr"], g["weight_decay"], len(g["params"])) for g in groups
                if g["initial_lr"] == EMBED_LR] == [(EMBED_LR, WEIGHT_DECAY, len(expected))]


@pytest.mark.parametrize("stage", [pytest.param(k, marks=() if k in LORA_DEFAULT else pytest.mark.slow)
                                   for k in range(1, 8)])
def test_lora_stage_trains_only_its_rows(stage, extended, tmp_path, caplog):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from kotune.vocab.stages import PRESETS

    preset, (ext, record) = PRESETS[stage], extended
    first, rows = record["old_vocab_size"], record["rows"]
    out = run_stage(extended, tmp_path, stage, True, caplog)
    adapter = json.loads((out / "adapter_config.json").read_text())
    new = {k: v for k, v in (("embed_tokens", preset.inputs), ("lm_head", preset.outputs)) if v == "new"}
    assert adapter["trainable_token_indices"] == ({k: list(range(first, rows)) for k in new} or None)
    assert set(adapter["modules_to_save"] or []) == {k for k, v in (("embed_tokens", preset.inputs),
                                                                    ("lm_head", preset.outputs)) if v == "all"}
    base = AutoModelForCausalLM.from_pretrained(ext)
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(ext), out).merge_and_unload()
    check_rows(base.model.embed_tokens.weight, merged.model.embed_tokens.weight, "embed_tokens", preset.inputs,
               first)
    check_rows(base.lm_head.weight, merged.lm_head.weight, "lm_head", preset.outputs, first)
    shapes, _ = optimizer_state(out)
    lora_state = [s for s in shapes if lora_rank(s)]
    assert bool(lora_state) == preset.layers  # stages 1-5 freeze the LoRA matrices, as EEVE freezes the layers
    assert all(s[0] in (rows, rows - first) for s in shapes if not lora_rank(s))


def lora_rank(shape) -> bool:
    return 8 in shape  # base_config's lora_r; the tiny model's sizes are 64, 256 and the vocabulary


def test_unclear_settings_are_refused_before_loading(extended, tiny_bases, tmp_path, capsys):
    cases = [
        (dict(model_dir=tiny_bases["mistral"], eeve_stage=1), "kotune vocab extend"),
        (dict(eeve_stage=7, embedding_learning_rate=1e-3), "would apply to nothing"),
        (dict(eeve_stage=9), "eeve_stage: 9 is out of range: must be >= 1 and <= 7"),
        (dict(eeve_stage=1, deepspeed=str(REPO / "deepspeed" / "zero3.json")), "use ZeRO-2"),
        (dict(eeve_stage=2, use_peft=True, lora_modules_to_save=["lm_head"]), "remove lora_modules_to_save"),
    ]
    tied = tmp_path / "tied"
    tied.mkdir()
    (tied / "config.json").write_bytes((extended[0] / "config.json").read_bytes())
    (tied / "kotune_vocab.json").write_text(json.dumps({**extended[1], "tied_embeddings": True}))
    cases.append((dict(model_dir=tied, eeve_stage=4), "ties lm_head"))
    for i, (case, message) in enumerate(cases):
        model_dir = case.pop("model_dir", extended[0])
        cfg = base_config(model_dir, tmp_path / f"o{i}", **{"use_peft": False, **case})
        assert run_sft_inprocess(write_config(tmp_path / f"c{i}.yaml", cfg)) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / f"o{i}").exists()


@pytest.mark.parametrize("stage,use_peft", [(1, False), (5, False), (6, False), (7, False), (2, True), (6, True)])
def test_plan_counts_what_the_stage_trains(stage, use_peft, extended, tmp_path):
    from kotune.config import build_config
    from kotune.models.loading import load_model, load_tokenizer
    from kotune.tools.plan import count_parameters, model_config
    from kotune.vocab.freeze import apply_stage
    from kotune.vocab.stages import stage_trainable

    ext = str(extended[0])
    cfg = build_config(base_config(ext, tmp_path / "o", use_peft=use_peft, eeve_stage=stage))
    config = model_config(ext)
    counts = count_parameters(config, cfg.model)
    assert config.vocab_size == extended[1]["rows"]  # the resized matrices are in the extended dir's config
    model = apply_stage(load_model(cfg.model, cfg.training, load_tokenizer(ext)), cfg)
    real = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert stage_trainable(cfg, config, counts.total, counts.trainable) == real


@pytest.mark.slow
@pytest.mark.parametrize("stage,use_peft", [(3, False), (6, True)])
def test_tied_embeddings_train_one_matrix_and_stay_tied(stage, use_peft, tmp_path):
    """Llama-3.2/Gemma-style tied head: the new rows of the one matrix train (stage 3), or PEFT trains one copy
    that the head shares (stage 6); the result loads tied."""
    need_sentencepiece()
    from transformers import AutoModelForCausalLM

    from kotune.models.architectures import auto_class, get_spec
    from kotune.testing.tiny import sentencepiece_tokenizer
    from kotune.vocab.model_rows import extend_model

    tok = sentencepiece_tokenizer(tmp_path / "base")
    config = get_spec("llama").tiny_config(dict(
        vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=256,
        max_position_embeddings=512, initializer_range=0.2, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=True))
    torch.manual_seed(0)
    auto_class(config).from_config(config).save_pretrained(tmp_path / "base")
    tok.add_tokens(TRAIN_TOKENS)
    record = extend_model(str(tmp_path / "base"), tok, str(tmp_path / "ext"))
    assert record["tied_embeddings"] and record["init"].startswith("mean")
    out = tmp_path / "out"
    cfg = base_config(tmp_path / "ext", out, max_steps=2, use_peft=use_peft, eeve_stage=stage,
                      weight_decay=WEIGHT_DECAY, per_device_train_batch_size=2)
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "ext")
    if use_peft:
        from peft import PeftModel

        trained = PeftModel.from_pretrained(base, out).merge_and_unload()
        base = AutoModelForCausalLM.from_pretrained(tmp_path / "ext")
    else:
        trained = AutoModelForCausalLM.from_pretrained(out)
    assert torch.equal(trained.lm_head.weight, trained.model.embed_tokens.weight)
    rows = "new" if stage == 3 else "all"
    check_rows(base.model.embed_tokens.weight, trained.model.embed_tokens.weight, "tied", rows,
               record["old_vocab_size"])


@pytest.mark.slow
def test_resuming_a_split_checkpoint_ends_bit_identical(extended, tmp_path):
    """A checkpoint of a split run loads back into the split modules (resume): 4 steps straight and 2 + 2 steps
    resumed give the same weights."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / "out"
    cfg = base_config(extended[0], out, max_steps=4, use_peft=False, eeve_stage=3, weight_decay=WEIGHT_DECAY,
                      save_strategy="steps", save_steps=2, per_device_train_batch_size=2)
    config = write_config(tmp_path / "c.yaml", cfg)
    assert run_sft_inprocess(config) == 0
    straight = AutoModelForCausalLM.from_pretrained(out).state_dict()
    shutil.rmtree(out / "checkpoint-4")
    assert run_sft_inprocess(config, "--resume_from_checkpoint=true") == 0
    resumed = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
