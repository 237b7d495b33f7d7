"""Data: bad rows skipped and counted by reason (or raised under strict), weights as fractions, shares, renames, max_length."""

from __future__ import annotations

import json

import pytest

from conftest import SAMPLE
from kotune.config import DatasetMixture, DatasetSource
from helpers import build_sft_dataset
from kotune.data.mixture import share_counts
from kotune.errors import KotuneError
from kotune.models.loading import load_tokenizer
from kotune.data.prompt_formats import install_template

GOOD = {"instruction": "다음 문장의 감정을 분류하세요.", "input": "오늘 정말 행복해요.", "output": "긍정"}


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tok(tiny_bases):
    t = load_tokenizer(str(tiny_bases["gpt_neox"]))
    install_template(t, "koquality")
    return t


def mixture(*sources, seed=0):
    return DatasetMixture(datasets=list(sources), seed=seed)


def test_bad_rows_are_counted_by_reason(tmp_path, tok):
    rows = [GOOD,
            {"instruction": "설명해 줘", "input": ""},                       # missing output
            {"instruction": "  ", "input": "", "output": "답"},              # empty instruction
            {"instruction": "번역", "input": "", "output": "깨진 \ufffd 글자"},  # undecodable text
            {"instruction": "길게", "input": "가 " * 400, "output": "짧음"}]    # longer than max_length
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    ds, report = build_sft_dataset(mixture(DatasetSource(id=str(path), format="instruction")), tok, max_length=64)
    assert len(ds) == 1
    dropped = report[str(path)]["dropped"]
    assert dropped == {"missing output": 1, "empty instruction": 1, "output has undecodable bytes": 1,
                       "longer than max_length": 1}
    assert report[str(path)]["available"] == 5 and report[str(path)]["used"] == 1


def test_wrong_type_is_a_reason(tmp_path, tok):
    rows = [GOOD, {"instruction": "계산", "output": ["3"]}, {"instruction": ["목록"], "output": "4"}]
    path = write_jsonl(tmp_path / "e.jsonl", rows)
    try:
        ds, report = build_sft_dataset(mixture(DatasetSource(id=str(path), format="instruction")), tok, 64)
    except KotuneError as err:  # Arrow may refuse a column of mixed types: then one error naming the file
        assert "e.jsonl" in str(err)
    else:
        assert len(ds) == 1
        assert report[str(path)]["dropped"] == {"output is not text": 1, "instruction is not text": 1}


def test_strict_names_file_and_row(tmp_path, tok):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, GOOD, {"instruction": "질문", "input": "", "output": ""}])
    with pytest.raises(KotuneError, match=r"d\.jsonl', row 3: empty output"):
        build_sft_dataset(mixture(DatasetSource(id=str(path), format="instruction")), tok, 64, strict=True)


def test_empty_dataset_is_an_error(tmp_path, tok):
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "", "input": "", "output": ""}])
    with pytest.raises(KotuneError, match="empty after filtering"):
        build_sft_dataset(mixture(DatasetSource(id=str(path), format="instruction")), tok, max_length=64)


def test_columns_are_renamed(tmp_path, tok):
    path = write_jsonl(tmp_path / "d.jsonl", [{"question": "하늘은 무슨 색이야?", "answer": "파란색입니다."}])
    src = DatasetSource(id=str(path), format="instruction", columns={"instruction": "question", "output": "answer"})
    ds, _ = build_sft_dataset(mixture(src), tok, max_length=64)
    assert "파란색" in tok.decode(ds[0]["input_ids"])


def test_missing_renamed_column_is_named(tmp_path, tok):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD])
    src = DatasetSource(id=str(path), format="instruction", columns={"output": "answer"})
    with pytest.raises(KotuneError, match=r"columns \['answer'\]"):
        build_sft_dataset(mixture(src), tok, max_length=64)


def test_weights_are_fractions_of_each_source_and_shares_cap_the_mixture(tmp_path, tok):
    a = write_jsonl(tmp_path / "a.jsonl", [dict(GOOD, output=f"가{i}") for i in range(30)])
    b = write_jsonl(tmp_path / "b.jsonl", [dict(GOOD, output=f"나{i}") for i in range(10)])
    plain, report = build_sft_dataset(mixture(DatasetSource(id=str(a), format="instruction"),
                                              DatasetSource(id=str(b), format="instruction"), seed=3), tok, 64)
    assert report[str(a)]["used"] == 30 and report[str(b)]["used"] == 10  # no weights: every row once
    assert len(set(tuple(x) for x in plain["input_ids"])) == 40
    mix = mixture(DatasetSource(id=str(a), format="instruction", weight=0.5),
                  DatasetSource(id=str(b), format="instruction", weight=3.0), seed=3)
    ds, report = build_sft_dataset(mix, tok, max_length=64)
    assert report[str(a)]["used"] == 15 and report[str(b)]["used"] == 30  # half of a; b three times
    again, _ = build_sft_dataset(mix, tok, max_length=64)
    assert ds["input_ids"] == again["input_ids"]  # same seed, same mixture
    shared = mixture(DatasetSource(id=str(a), format="instruction", share=1.0),
                     DatasetSource(id=str(b), format="instruction", share=1.0), seed=3)
    _, report = build_sft_dataset(shared, tok, max_length=64)
    assert report[str(a)]["used"] == 10 and report[str(b)]["used"] == 10  # equal parts, no row repeated
    assert share_counts([100, 10], [1.0, 1.0]) == [10, 10]


def test_max_samples_caps_a_source(tok):
    src = DatasetSource(id=str(SAMPLE), format="instruction", max_samples=7)
    ds, report = build_sft_dataset(mixture(src), tok, max_length=256)
    assert len(ds) == 7 and report[str(SAMPLE)]["dropped"]["over max_samples"] == 73


def test_truncate_policy_keeps_rows_and_counts_them(tmp_path, tok):
    path = write_jsonl(tmp_path / "d.jsonl", [dict(GOOD, output="아주 긴 답변 " * 50)])
    ds, report = build_sft_dataset(mixture(DatasetSource(id=str(path), format="instruction")), tok, 48,
                                   overlong="truncate")
    assert len(ds[0]["input_ids"]) == 48 and report[str(path)]["truncated"] == 1


def test_chat_format_trains_assistant_turns_only(tmp_path, tok):
    rows = [{"messages": [{"role": "user", "content": "안녕?"}, {"role": "assistant", "content": "안녕하세요!"},
                          {"role": "user", "content": "잘 가"}, {"role": "assistant", "content": "또 만나요."}]}]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    ds, _ = build_sft_dataset(mixture(DatasetSource(id=str(path), format="chat")), tok, max_length=128)
    trained = tok.decode([t for t in ds[0]["labels"] if t != -100], skip_special_tokens=True)
    assert "안녕하세요" in trained and "또 만나요" in trained and "잘 가" not in trained


def test_csv_and_parquet_sources(tmp_path, tok):
    import pandas as pd

    frame = pd.DataFrame([GOOD, dict(GOOD, output="부정")])
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        ds, _ = build_sft_dataset(mixture(DatasetSource(id=str(tmp_path / name), format="instruction")), tok, 64)
        assert len(ds) == 2


def test_strict_overlong_row_names_file_and_row(tmp_path, tok):
    path = write_jsonl(tmp_path / "d.jsonl", [GOOD, dict(GOOD, output="긴 답변 " * 200)])
    with pytest.raises(KotuneError, match=r"d\.jsonl', row 2: longer than max_length"):
        build_sft_dataset(mixture(DatasetSource(id=str(path), format="instruction")), tok, 64, strict=True)


def test_streaming_reads_only_what_it_needs(tmp_path, tok):
    path = write_jsonl(tmp_path / "big.jsonl", [dict(GOOD, output=f"답{i}") for i in range(50)])
    src = DatasetSource(id=str(path), format="instruction", streaming=True, max_samples=5)
    ds, report = build_sft_dataset(mixture(src), tok, max_length=64)
    assert len(ds) == 5 and report[str(path)]["available"] == 5 and report[str(path)]["requested"] == 5
