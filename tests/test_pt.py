"""The pt stage (continued pretraining on raw Korean text): documents read in NFC from .txt files and text columns,
EOS after each, packed into blocks that no attention or prediction crosses (per-document losses packed == alone), a
full and a LoRA run through train/pt.py, eval perplexity, and what `kotune data` reports."""

from __future__ import annotations

import json
import math
import sys
import unicodedata

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import ARCHS, REPO, run_entry_inprocess, write_config
from helpers import example_losses
from kotune.config import DatasetMixture, DatasetSource
from kotune.data.packing import PaddingFreeCollator, collator
from kotune.data.pt_dataset import build_pt_data, document_ids, pack_blocks, pieces
from kotune.data.report import hangul_counts
from kotune.data.sources import load_source
from kotune.errors import KotuneError
from kotune.models.loading import load_tokenizer

CORPUS = REPO / "src" / "kotune" / "data" / "sample" / "korean_paragraphs.txt"
PARAGRAPHS = [p.strip() for p in CORPUS.read_text(encoding="utf-8").split("\n\n") if p.strip()]


def nfd(text: str) -> str:
    return unicodedata.normalize("NFD", text)


def run_pt(config_path, *overrides: str) -> int:
    return run_entry_inprocess("pt", config_path, *overrides)


def pt_config(model_dir, out, data, **extra) -> dict:
    cfg = {"model_name_or_path": str(model_dir), "dtype": "float32", "output_dir": str(out),
           "dataset_mixture": {"seed": 1, "datasets": [{"id": str(data), "format": "text",
                                                        "documents": "paragraphs"}]},
           "max_length": 128, "max_steps": 6, "per_device_train_batch_size": 4, "learning_rate": 3.0e-3,
           "logging_steps": 1, "save_strategy": "no", "bf16": False, "gradient_checkpointing": False,
           "report_to": [], "seed": 7, "use_peft": False, "eval_split_size": 0.1}
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def tokenizers(tiny_bases) -> dict:
    """arch -> its tiny base's tokenizer, loaded once (the SentencePiece one takes seconds to convert)."""
    return {arch: load_tokenizer(str(path)) for arch, path in tiny_bases.items()}


def history(out) -> list[dict]:
    return json.loads((out / "trainer_state.json").read_text())["log_history"]


def test_txt_files_and_text_columns_are_read_as_nfc_documents(tmp_path):
    first, second = PARAGRAPHS[:2]
    txt = tmp_path / "위키.txt"  # decomposed Hangul as macOS writes it, Windows line ends
    txt.write_bytes(nfd(f"{first}\r\n\r\n  \r\n{second}\r\n").encode("utf-8"))
    whole = load_source(DatasetSource(id=str(txt), format="text"))
    assert whole.records == [f"{first}\n\n  \n{second}"] and whole.normalized == 1
    assert load_source(DatasetSource(id=str(txt), format="text", documents="paragraphs")).records == [first, second]

    corpus = tmp_path / "corpus"  # a dir of .txt files: every file below it, in name order
    (corpus / "b").mkdir(parents=True)
    (corpus / "a.txt").write_text(first, encoding="utf-8")
    (corpus / "b" / "c.txt").write_text(nfd(second), encoding="utf-8")
    assert load_source(DatasetSource(id=str(corpus), format="text")).records == [first, second]

    rows = tmp_path / "docs.jsonl"  # a text column; the pt stage infers format: text from it
    rows.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in
                              [{"text": nfd(first), "url": "ko.wikipedia.org"}, {"text": "  "}, {"text": second}]))
    read = load_source(DatasetSource(id=str(rows)), formats=("text",))
    assert read.source.format == "text" and read.records == [first, second]
    assert read.dropped == {"empty text": 1} and read.normalized == 1

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = tmp_path / "docs.parquet"  # read lazily with streaming: true, only max_samples rows
    pq.write_table(pa.table({"text": [nfd(p) for p in PARAGRAPHS[:5]]}), table)
    lazy = load_source(DatasetSource(id=str(table), format="text", streaming=True, max_samples=3))
    assert lazy.records == PARAGRAPHS[:3]

    with pytest.raises(KotuneError, match="documents: paragraphs splits plain .txt files"):
        load_source(DatasetSource(id=str(rows), format="text", documents="paragraphs"))
    with pytest.raises(KotuneError, match="format: text"):  # instruction rows are not raw text
        load_source(DatasetSource(id=str(REPO / "src/kotune/data/sample/instructions.jsonl"), format="text"))


def test_documents_end_with_eos_and_fill_blocks_without_cuts(tokenizers):
    for arch, bos in (("llama", True), ("gpt_neox", False)):  # SentencePiece adds BOS itself; Polyglot's BPE none
        tok = tokenizers[arch]
        docs = document_ids(tok, PARAGRAPHS[:12])
        text = tok(PARAGRAPHS[0], add_special_tokens=False)["input_ids"]
        assert docs[0] == ([tok.bos_token_id] if bos else []) + text + [tok.eos_token_id]
    max_length = 120
    long = [d for d in docs if len(d) > max_length]
    assert long, "the sample should have a document longer than max_length"
    blocks = pack_blocks(docs, max_length)
    assert [t for ids, _ in blocks for t in ids] == [t for d in docs for t in d]  # nothing lost, order kept
    assert all(len(ids) <= max_length and sum(lengths) == len(ids) for ids, lengths in blocks)
    cut = {len(d) for d in long}  # only documents longer than max_length are cut; the others stay whole
    assert sorted(n for _, lengths in blocks for n in lengths) == sorted(
        len(p) for p in pieces(docs, max_length)) and not any(n in cut for _, ls in blocks for n in ls)

    batch = collator(tok, "padding_free")([{"input_ids": ids, "seq_lengths": n} for ids, n in blocks[:3]])
    starts = batch["position_ids"][0] == 0
    assert int(starts.sum()) == sum(len(n) for _, n in blocks[:3])
    assert (batch["labels"][0, starts] == -100).all()  # no document's first token predicted from another's
    assert torch.equal(batch["labels"][0, ~starts], batch["input_ids"][0, ~starts])  # every other token trained

    mixture = DatasetMixture(datasets=[DatasetSource(id=str(CORPUS), format="text", documents="paragraphs")])
    with pytest.raises(KotuneError, match="max_length"):
        build_pt_data(mixture, tok, None)


@pytest.mark.parametrize("arch,impl", [(a, i) if (a, i) in (("llama", "sdpa"), ("gpt_neox", "eager")) else
                                       pytest.param(a, i, marks=pytest.mark.slow)
                                       for a in ARCHS for i in ("sdpa", "eager")])
def test_per_document_loss_packed_equals_alone(arch, impl, tiny_bases, tokenizers):
    """Every document piece in a packed block has exactly the loss it has alone: no attention across documents."""
    from transformers import AutoModelForCausalLM

    tok = tokenizers[arch]
    docs = document_ids(tok, PARAGRAPHS[:5])

    def both(n: int) -> bool:  # a block length at which some documents are cut and some blocks hold several
        cut = pieces(docs, n)
        return min(map(len, cut)) > 1 and len(cut) > len(docs) and any(len(ls) > 1 for _, ls in pack_blocks(docs, n))

    max_length = next(n for n in range(32, 1024) if both(n))
    blocks = pack_blocks(docs, max_length)
    model = AutoModelForCausalLM.from_pretrained(tiny_bases[arch], attn_implementation=impl).eval()
    model.config.use_cache = False  # what kotune sets for padding-free batches
    packed = PaddingFreeCollator()([{"input_ids": ids, "seq_lengths": n} for ids, n in blocks])
    alone = collator(tok, "padded")([{"input_ids": p} for p in pieces(docs, max_length)])
    with torch.no_grad():
        torch.testing.assert_close(example_losses(model, packed), example_losses(model, alone), rtol=1e-5,
                                   atol=1e-5)


def test_full_run_trains_and_logs_eval_perplexity(tiny_bases, tmp_path):
    out = tmp_path / "out"
    assert run_pt(write_config(tmp_path / "pt.yaml", pt_config(tiny_bases["gpt_neox"], out, CORPUS))) == 0
    logs = history(out)
    losses = [h["loss"] for h in logs if "loss" in h]
    evals = [h for h in logs if "eval_loss" in h]
    assert len(losses) == 6 and sum(losses[-2:]) < sum(losses[:2]), losses
    assert len(evals) == 6 and all(h["eval_perplexity"] == pytest.approx(math.exp(h["eval_loss"]), rel=1e-4)
                                   for h in evals)
    assert evals[-1]["eval_perplexity"] < evals[0]["eval_perplexity"]
    base, trained = load_file(tiny_bases["gpt_neox"] / "model.safetensors"), load_file(out / "model.safetensors")
    assert sum(not torch.equal(t, base[n]) for n, t in trained.items()) > len(base) // 2
    report = json.loads((out / "data_report.json").read_text())
    assert report["documents"] + report["eval"]["documents"] == len(PARAGRAPHS)
    assert report["blocks"] > 0 and report["tokens_per_hangul_syllable"] > 0
    assert yaml.safe_load((out / "kotune_config.yaml").read_text())["dataset_mixture"]["datasets"][0]["format"] \
        == "text"


def test_lora_run_trains_embeddings_and_head_when_asked(tiny_bases, tmp_path):
    """LoRA with lora_modules_to_save (TRL's key) trains the embeddings and head in full beside the adapter; a name
    that matches no module is refused before anything is written. packing: false batches one padded row per
    document."""
    data = tmp_path / "docs.jsonl"
    data.write_text("\n".join(json.dumps({"text": p}, ensure_ascii=False) for p in PARAGRAPHS) + "\n")
    out = tmp_path / "lora"
    cfg = pt_config(tiny_bases["gpt_neox"], out, data, use_peft=True, lora_r=8, lora_alpha=16, lora_dropout=0.0,
                    learning_rate=1.0e-2, max_steps=4, packing=False, eval_split_size=None,
                    lora_modules_to_save=["embed_in", "lm_head"])
    del cfg["dataset_mixture"]["datasets"][0]["documents"]
    assert run_pt(write_config(tmp_path / "lora.yaml", cfg)) == 0
    losses = [h["loss"] for h in history(out) if "loss" in h]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    tensors = load_file(out / "adapter_model.safetensors")
    base = load_file(tiny_bases["gpt_neox"] / "model.safetensors")  # saved under GPT-NeoX's old head name
    for name, base_name in (("gpt_neox.embed_in.weight", "gpt_neox.embed_in.weight"),
                            ("lm_head.weight", "embed_out.weight")):
        saved = tensors[f"base_model.model.{name}"]
        assert saved.shape == base[base_name].shape and not torch.equal(saved, base[base_name]), name
    assert any(t.abs().sum() > 0 for n, t in tensors.items() if "lora_B" in n)

    cfg.update(output_dir=str(tmp_path / "wrong"), lora_modules_to_save=["embed_in", "embed_out"])  # 4.x's name
    assert run_pt(write_config(tmp_path / "wrong.yaml", cfg)) != 0  # PEFT alone would skip it without a word
    assert not (tmp_path / "wrong").exists()


@pytest.mark.slow  # two processes under the deepspeed launcher: about a minute on 2 cores
def test_zero3_full_run_saves_whole_trained_weights(tiny_bases, tmp_path):
    """ZeRO-3 (DeepSpeed over gloo, 2 CPU processes) trains the pt stage; the weights saved are whole (checked in
    this fresh process: in the training processes they were partitioned) and trained."""
    import subprocess
    from pathlib import Path

    from conftest import subprocess_env

    out = tmp_path / "z3"
    path = write_config(tmp_path / "z3.yaml", pt_config(tiny_bases["gpt_neox"], out, CORPUS, max_steps=4))
    env = {**subprocess_env(), "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run([str(Path(sys.executable).with_name("deepspeed")), "--num_gpus", "2",
                           str(REPO / "train" / "pt.py"), str(path), "--deepspeed", str(REPO / "deepspeed/zero3.json")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    record = json.loads((out / "run_info.json").read_text())
    assert record["world_size"] == 2 and record["distributed_type"] == "DEEPSPEED"
    base, trained = load_file(tiny_bases["gpt_neox"] / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(trained[n].shape == t.shape for n, t in base.items())
    assert sum(not torch.equal(trained[n], t) for n, t in base.items()) > len(base) // 2
    assert [h for h in history(out) if "eval_perplexity" in h]


def test_kotune_data_reports_documents_tokens_and_hangul(tiny_bases, tokenizers, tmp_path, capsys):
    from kotune.cli import main as kotune

    rows = tmp_path / "news.jsonl"
    extra = ["Seoul is the capital of Korea.", "서울의 인구는 약 940만 명이다 (2023년)."]
    rows.write_text("\n".join(json.dumps({"text": t}) for t in extra) + "\n")
    cfg = pt_config(tiny_bases["gpt_neox"], tmp_path / "unused", CORPUS, eval_split_size=None)
    cfg["dataset_mixture"]["datasets"].append({"id": str(rows), "format": "text"})
    out = tmp_path / "report"
    assert kotune(["data", str(write_config(tmp_path / "pt.yaml", cfg)), "--out", str(out)]) == 0
    report = json.loads((out / "data_report.json").read_text())
    texts = PARAGRAPHS + extra
    ids = document_ids(tokenizers["gpt_neox"], texts)
    counts = [hangul_counts(t) for t in texts]
    korean = [(len(d) - 1, h) for d, (h, _) in zip(ids, counts) if h]  # text tokens (EOS left out) per syllable
    assert report["documents"] == len(texts) == sum(s["used"] for s in report["per_source"].values())
    assert report["tokens"] == sum(map(len, ids))
    assert report["tokens_per_hangul_syllable"] == round(sum(t for t, _ in korean) / sum(h for _, h in korean), 3)
    assert report["hangul_share"] == round(sum(h for h, _ in counts) / sum(n for _, n in counts), 4) < 1
    printed = capsys.readouterr().out
    assert f"tokens per Hangul syllable: {report['tokens_per_hangul_syllable']}" in printed
    assert f"documents: {len(texts)}" in printed and "Hangul share of letters" in printed


def test_eeve_stage_1_on_raw_text_trains_only_the_new_input_rows(tiny_bases, tmp_path):
    """CPT after `kotune vocab extend`, EEVE's stage 1 through train/pt.py: old rows bit-identical, new rows move."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from kotune.vocab.model_rows import extend_model

    tok = AutoTokenizer.from_pretrained(tiny_bases["gpt_neox"])
    tok.add_tokens(["대한민국", "서울특별시", "했습니다"])
    ext = tmp_path / "ext"
    record = extend_model(str(tiny_bases["gpt_neox"]), tok, str(ext))
    data = tmp_path / "corpus.txt"
    data.write_text("\n\n".join(["대한민국의 수도는 서울특별시입니다. 많은 사람이 그곳에서 일했습니다."] * 12), encoding="utf-8")
    out = tmp_path / "out"
    cfg = pt_config(ext, out, data, max_steps=2, eval_split_size=None, embedding_learning_rate=1.0e-2,
                    eeve_stage=1)
    assert run_pt(write_config(tmp_path / "c.yaml", cfg)) == 0
    before, after = load_file(ext / "model.safetensors"), load_file(out / "model.safetensors")
    name = next(k for k in before if "embed_in" in k or "embed_tokens" in k)
    first = record["old_vocab_size"]
    assert torch.equal(before[name][:first], after[name][:first])  # old input rows: no gradient, no decay
    assert not torch.equal(before[name][first:], after[name][first:])  # the new rows trained
    assert all(torch.equal(before[k], after[k]) for k in before if k != name)  # everything else frozen


def test_shipped_pt_config_validates():
    from kotune.config.validation import build_config

    path = REPO / "configs" / "pt" / "polyglot-ko-tiny-demo.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#") and "accelerate launch train/pt.py configs/pt/polyglot-ko-tiny-demo.yaml" in text
    cfg = build_config(yaml.safe_load(text), stage="pt", source=str(path), check_paths=False)
    assert all(s.format == "text" for s in cfg.kotune.dataset_mixture.datasets)
    assert cfg.kotune.eval_split_size and cfg.training.max_length
