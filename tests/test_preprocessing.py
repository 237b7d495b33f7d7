"""Preprocessing in several processes (`dataset_num_proc`, or kotune's own choice) gives exactly the datasets one
process gives, a worker's error reaches the user as it is, and the choice of process count never changes the cache
key."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from conftest import SAMPLE
from kotune.config import DatasetMixture, DatasetSource
from kotune.data.encode_map import auto_num_proc
from kotune.data.prompt_formats import install_template
from kotune.data.sft_dataset import build_sft_data
from kotune.errors import KotuneError
from kotune.models.loading import load_tokenizer

KIT19 = SAMPLE.parent / "kit19"


def test_two_processes_give_the_same_datasets_as_one(tiny_bases):
    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    install_template(tok, "koquality")
    mixture = DatasetMixture(seed=1, datasets=[
        DatasetSource(id=str(SAMPLE), format="instruction"),
        DatasetSource(id=str(KIT19 / "nsmc.jsonl"), format="kit19/nsmc", weight=2.0),
        DatasetSource(id=str(KIT19 / "kobest_copa.jsonl"), format="kit19/kobest_copa"),
    ])
    runs = [build_sft_data(mixture, tok, 96, variants_for=lambda n: 2, eval_split_size=0.2, num_proc=n)
            for n in (1, 2)]
    (one, eval_one, report_one), (two, eval_two, report_two) = runs
    assert len(one) == len(two) == 2 and len(one[0]) > 10
    for a, b in zip([*one, eval_one], [*two, eval_two]):
        assert a.features == b.features and a.column_names == b.column_names == ["input_ids", "labels"]
        assert a.to_dict() == b.to_dict()
    assert report_one == report_two
    assert one[0]["input_ids"] != one[1]["input_ids"]  # KIT-19 phrasings differ between epochs


def test_dataset_num_proc_is_honoured_and_unset_uses_the_cores_for_big_data():
    cores = len(os.sched_getaffinity(0))
    assert auto_num_proc(100, 4) == 4
    assert auto_num_proc(100, None) == 1  # a small dataset is not worth a fork
    assert auto_num_proc(100_000, None) == min(cores, 8)


def test_an_error_in_a_worker_is_the_users_error_and_leaves_no_files(tiny_bases):
    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    # the last message renders differently from the same message earlier: no turn-by-turn mask exists
    tok.chat_template = "{% for m in messages %}{% if loop.last %}[끝]{% endif %}{{ m.content }}{% endfor %}"
    mixture = DatasetMixture(seed=1, datasets=[DatasetSource(id=str(SAMPLE), format="instruction")])
    before = set(Path(tempfile.gettempdir()).glob("kotune-tokenized-*"))
    with pytest.raises(KotuneError, match="not prefix-stable"):
        build_sft_data(mixture, tok, 96, num_proc=2)
    assert set(Path(tempfile.gettempdir()).glob("kotune-tokenized-*")) == before


def test_kit19_retries_skip_only_templates_that_cannot_fit(tiny_bases, monkeypatch):
    """A row too long under its drawn template is retried with others; the shortcut that skips templates whose
    length estimate cannot fit keeps exactly the examples that trying every template keeps."""
    from kotune.data import encode, sft_dataset
    from kotune.data.sources import Kit19Renderer

    tokenized = []
    real = encode._token_ids
    monkeypatch.setattr(encode, "_token_ids", lambda tok, texts: tokenized.append(len(texts)) or real(tok, texts))

    tok = load_tokenizer(str(tiny_bases["gpt_neox"]))
    install_template(tok, "koquality")
    review = "배우들 연기가 정말 자연스럽고 음악도 장면마다 잘 어울려서 끝까지 몰입해서 봤어요. "
    records = [{"document": review * k, "label": k % 2} for k in range(1, 40)]
    keys = [f"row{k}" for k in range(len(records))]

    def run(tries=8):
        return sft_dataset.encode_source(Kit19Renderer("nsmc", 3), True, records, keys, tok, max_length=160,
                                         overlong="drop", n_variants=2, tries=tries)

    shortcut = run()
    with_shortcut = sum(tokenized)
    monkeypatch.setattr(sft_dataset, "RETRY_MARGIN", float("inf"))  # tokenize every template
    assert run() == shortcut
    assert sum(tokenized) - with_shortcut > 2 * with_shortcut  # the hopeless templates were never tokenized
    kept = [r for r in shortcut if r[1] is None]
    assert 0 < len(kept) < len(records) and {r[1] for r in shortcut} == {None, "longer than max_length"}
    assert len(kept) > sum(r[1] is None for r in run(tries=1))  # some rows fit only under another template
    assert all(len(ids) <= 160 for variants, _, _ in kept for ids, _ in variants)
