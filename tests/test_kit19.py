"""KIT-19: the registry, per-epoch templates, caching, the data report, and a 20-slot run through train/sft.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, base_config, run_sft_inprocess, subprocess_env, write_config
from kotune.config import DatasetMixture, DatasetSource
from kotune.data.kit19 import load_task, task_names
from helpers import build_sft_variants
from kotune.errors import KotuneError
from kotune.models.loading import load_tokenizer
from kotune.data.prompt_formats import install_template

SAMPLES = REPO / "src" / "kotune" / "data" / "sample" / "kit19"
SLOTS = ["apeach", "unsmile", "hatescore", "kobest_boolq", "kobest_copa", "kobest_hellaswag", "kobest_wic", "kornli",
         "kowiki_text_generation", "kowiki_closed_book_qa", "korsts", "pawsx_paraphrase", "parakqc", "style_kqc",
         "question_pair", "nsmc", "sae4k", "petitions", "math_korean", "lbox_summarization"]


def rows(task):
    return [json.loads(line) for line in (SAMPLES / f"{task}.jsonl").read_text(encoding="utf-8").splitlines()]


def all_slots(**extra):
    return {"seed": 3, "datasets": [{"id": str(SAMPLES / f"{t}.jsonl"), "format": f"kit19/{t}"} for t in SLOTS],
            **extra}


def test_registry_has_20_slots_and_200_templates():
    assert task_names() == sorted(SLOTS)
    counts = {t: len(load_task(t).templates) for t in SLOTS}
    assert min(counts.values()) >= 10 and sum(counts.values()) >= 200, counts


@pytest.mark.parametrize("task", SLOTS)
def test_every_template_renders_every_sample_row(task):
    spec = load_task(task)
    sample = rows(task)
    assert len(sample) >= 5
    for row in sample:
        assert spec.check(row) is None, row
        for i in range(len(spec.templates)):
            instruction, _, output = spec.render(row, i)
            assert instruction.strip() and output.strip()
    if spec.label_field:  # every label value is exercised by the sample
        assert {str(r[spec.label_field]) for r in sample} >= {str(v) for v in spec.label_values}


def test_unknown_task_suggests_the_near_one():
    with pytest.raises(KotuneError, match="did you mean 'kit19/kobest_copa'"):
        load_task("kobest_cop")


def _variants(tok, n_variants, seed=3):
    mixture = DatasetMixture(datasets=[DatasetSource(id=str(SAMPLES / f"{t}.jsonl"), format=f"kit19/{t}")
                                       for t in SLOTS], seed=seed)
    return build_sft_variants(mixture, tok, 512, variants_for=lambda n: n_variants)


def test_epochs_draw_other_templates_and_the_seed_reproduces(tiny_bases):
    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    install_template(tok, "koquality")
    (e0, e1), report = _variants(tok, 2)
    assert len(e0) == len(e1) == 121 and set(report) == {str(SAMPLES / f"{t}.jsonl") for t in SLOTS}
    changed = sum(a != b for a, b in zip(e0["input_ids"], e1["input_ids"]))
    assert changed > len(e0) * 0.8  # with ≥10 templates, ~90% of examples change phrasing between epochs
    (again0, again1), _ = _variants(tok, 2)
    assert again0["input_ids"] == e0["input_ids"] and again1["input_ids"] == e1["input_ids"]
    (other0, _), _ = _variants(tok, 2, seed=4)
    assert other0["input_ids"] != e0["input_ids"]


def test_bad_kit19_rows_are_counted(tmp_path, tiny_bases):
    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    install_template(tok, "koquality")
    good = rows("nsmc")
    bad = [{"document": "재밌다"}, {"document": "", "label": 1}, {"document": "별로", "label": 7}]
    path = tmp_path / "nsmc.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in good + bad) + "\n", encoding="utf-8")
    mixture = DatasetMixture(datasets=[DatasetSource(id=str(path), format="kit19/nsmc")], seed=0)
    (ds,), report = build_sft_variants(mixture, tok, 512)
    assert len(ds) == len(good)
    assert report[str(path)]["dropped"] == {"missing label": 1, "empty document": 1,
                                            "label value 7 is not one of [0, 1]": 1}


def test_kit19_columns_must_exist(tmp_path, tiny_bases):
    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    path = tmp_path / "x.jsonl"
    path.write_text('{"review": "좋아요", "label": 1}\n', encoding="utf-8")
    mixture = DatasetMixture(datasets=[DatasetSource(id=str(path), format="kit19/nsmc")], seed=0)
    with pytest.raises(KotuneError, match=r"needs columns \['document'\].*columns: \{document: your_column\}"):
        build_sft_variants(mixture, tok, 512)


def test_preprocessing_cache_hits_and_misses(tmp_path, tiny_bases, monkeypatch):
    from kotune.config import build_config
    from kotune.data.prepare import prepare_sft_data

    monkeypatch.setenv("KOTUNE_CACHE_DIR", str(tmp_path / "cache"))
    data = tmp_path / "nsmc.jsonl"
    data.write_text((SAMPLES / "nsmc.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    raw = base_config(tiny_bases["gpt_neox"], tmp_path / "o",
                      dataset_mixture={"datasets": [{"id": str(data), "format": "kit19/nsmc"}]})
    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    install_template(tok, "koquality")
    first, _, _, hit = prepare_sft_data(build_config(raw), tok)
    assert not hit
    again, _, _, hit = prepare_sft_data(build_config(raw), tok)
    assert hit and again[0]["input_ids"] == first[0]["input_ids"]
    _, _, _, hit = prepare_sft_data(build_config({**raw, "max_length": 100}), tok)
    assert not hit  # max_length is part of the key
    with data.open("a", encoding="utf-8") as f:
        f.write(json.dumps({"document": "새로 추가한 리뷰", "label": 1}, ensure_ascii=False) + "\n")
    _, _, _, hit = prepare_sft_data(build_config(raw), tok)
    assert not hit  # so is the data


def test_all_20_slots_train_and_the_report_shows_every_task(tiny_bases, tmp_path):
    out = tmp_path / "out"
    cfg = base_config(tiny_bases["gpt_neox"], out, dataset_mixture=all_slots(), max_length=512, max_steps=None,
                      num_train_epochs=2, per_device_train_batch_size=16, packing=True)
    cfg.pop("max_steps")
    path = write_config(tmp_path / "c.yaml", cfg)
    assert run_sft_inprocess(path) == 0
    report = json.loads((out / "data_report.json").read_text())
    assert {Path(k).stem for k, v in report.items() if v["used"] > 0} == set(SLOTS)
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert state["global_step"] == 16 and losses[-1] < losses[0]  # 121 examples (every row once) / 16 × 2 epochs

    kotune = str(Path(sys.executable).with_name("kotune"))
    proc = subprocess.run([kotune, "data", str(path), "--out", str(tmp_path / "report")], env=subprocess_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for task in SLOTS:
        assert f"kit19/{task}" in proc.stdout
    labelled = [t for t in SLOTS if load_task(t).label_field]
    assert proc.stdout.count("answers: ") == len(labelled)  # the label mix of every labelled source
    assert "answers: " in proc.stdout.split("kit19/hatescore", 1)[1].splitlines()[1]
    written = json.loads((tmp_path / "report" / "data_report.json").read_text())
    answers = written["per_source"][str(SAMPLES / "hatescore.jsonl")]["answers"]
    assert set(answers) <= set(load_task("hatescore").label_values.values()) and sum(answers.values()) == 7
    assert written["useful_token_fraction"]["padding_free"] == 1.0 and written["tokens_per_hangul_syllable"] > 0
    assert (tmp_path / "report" / "lengths.png").is_file()


def test_trainer_serves_a_new_variant_each_epoch(tiny_bases, tmp_path):
    """The real Trainer loop calls SetEpoch: batches of epoch 2 come from variant 2."""
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from kotune.data.epochs import EpochVariantCollator, SetEpoch, merge_variants
    from kotune.data.packing import collator

    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    install_template(tok, "koquality")
    variants, _ = _variants(tok, 2)
    dataset = merge_variants(variants)
    seen = []
    base_collate = collator(tok, "padded")

    def record(batch):
        seen.append((picker.epoch, [tuple(x.tolist()) for x in batch["input_ids"]]))
        return batch

    picker = EpochVariantCollator(lambda examples: record(base_collate(examples)), 2)

    args = SFTConfig(output_dir=str(tmp_path / "o"), num_train_epochs=2, per_device_train_batch_size=61,
                     report_to=[], use_cpu=True, bf16=False, gradient_checkpointing=False, save_strategy="no",
                     dataset_kwargs={"skip_prepare_dataset": True}, logging_steps=1, remove_unused_columns=False)
    model = AutoModelForCausalLM.from_pretrained(tiny_bases["gpt_neox"])
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok,
                         data_collator=picker, callbacks=[SetEpoch(picker)])
    trainer.train()
    assert [e for e, _ in seen] == [0, 0, 1, 1]
    pad = tok.pad_token_id

    def strip(ids):
        while ids and ids[-1] == pad:
            ids = ids[:-1]
        return ids

    v0 = {tuple(x) for x in variants[0]["input_ids"]}
    v1 = {tuple(x) for x in variants[1]["input_ids"]}
    assert all(strip(ids) in v0 for e, batch in seen if e == 0 for ids in batch)
    assert all(strip(ids) in v1 for e, batch in seen if e == 1 for ids in batch)
