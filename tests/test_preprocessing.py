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
