"""KIT-19 sources as they really are: every registry route reads a file in the source's real raw format (its real
header, label encoding and quirks; the Korean rows are ours), maps every label to the documented answer, and renders
every template. Hub routes are checked by what they resolve to, with no network."""

from __future__ import annotations

import pytest

from conftest import REPO
from kotune.config.schema import DatasetSource
from kotune.data.kit19 import load_task, task_names
from kotune.data.kit19_routes import resolve
from kotune.data.sources import load_source
from kotune.errors import KotuneError

RAW = REPO / "tests" / "fixtures" / "kit19_raw"

# task -> (raw file, the registry label key (or field values) each row must come out with)
ROUTES = {
    "nsmc": ("nsmc/ratings_train.txt", "label", [1, 0, 1, 0]),
    "kornli": ("kornli/xnli.dev.ko.tsv", "label", [0, 1, 2]),
    "korsts": ("korsts/sts-dev.tsv", "score", [5.0, 0.5, 3.2]),
    "unsmile": ("unsmile/unsmile_valid_v1.0.tsv", "clean", [1, 0, 0, 0]),
    "hatescore": ("hatescore/HateScore.csv", "macrolabel", ["Clean", "혐오발언", "단순 악플", "혐오발언"]),
    "apeach": ("apeach/test.csv", "class", [0, 1, 0]),
    "kobest_copa": ("kobest/COPA/train.tsv", "label", [0, 1, 0]),
    "kobest_wic": ("kobest/WiC/train.tsv", "label", [1, 0, 1, 0]),
    "kobest_boolq": ("kobest/BoolQ/train.tsv", "label", [1, 0]),
    "kobest_hellaswag": ("kobest/HellaSwag/train.tsv", "label", [0, 1]),
    "sae4k": ("sae4k/sae4k_v1.txt", "label", [0, 4, 2, 3]),
    "question_pair": ("question_pair/kor_pair_train.csv", "is_duplicate", [0, 1]),
    "pawsx_paraphrase": ("pawsx/dev_2k.tsv", "label", [0, 1]),
    "petitions": ("petitions/petitions_2017-08", "category", ["교통/건축/국토", "육아/교육"]),
    "lbox_summarization": ("lbox/train.jsonl", "summary",
                           ["임대차 계약이 끝나면 임차인은 보증금을 돌려받을 권리가 있다."]),
    "style_kqc": ("style_kqc/act/train.tsv", "informal",
                  ["내일 날씨 알려 줘.", "회의 시간 확인해 줘.", "불 꺼 줘.", "문자 보내 줘.", "음악 틀어 줘."]),
}


def load(task: str, path: str, **kw):
    return load_source(DatasetSource(id=str(RAW / path), format=f"kit19/{task}", **kw))


def render_all(task_name: str, records: list[dict]) -> list[list[tuple[str, str, str]]]:
    task = load_task(task_name)
    return [[task.render(row, i) for i in range(len(task.templates))] for row in records]


@pytest.mark.parametrize("task", list(ROUTES))
def test_a_downloaded_file_reads_with_no_columns_map(task):
    path, field, expected = ROUTES[task]
    rows = load(task, path)
    assert not rows.dropped, rows.dropped
    assert [r[field] for r in rows.records] == expected
    for rendered in render_all(task, rows.records):  # every template renders every row, with an answer
        assert all(instruction.strip() and output.strip() for instruction, _, output in rendered)
    labelled = load_task(task).label_field
    if labelled:  # every raw label maps to one of the registry's documented answers
        assert all(load_task(task).answer(r) in load_task(task).label_values.values() for r in rows.records)


def test_every_slot_declares_its_routes():
    for name in task_names():
        task = load_task(name)
        assert task.hub or task.files, name
        for route in task.files:
            assert route["match"] and route["get"] and route["format"] in ("tsv", "csv", "jsonl"), name


def test_hatescore_plain_abuse_is_not_labelled_hate():
    rows = load("hatescore", "hatescore/HateScore.csv").records
    abuse = next(r for r in rows if r["macrolabel"] == "단순 악플")
    hate = next(r for r in rows if r["macrolabel"] == "혐오발언")
    task = load_task("hatescore")
    for i in range(len(task.templates)):
        said, hate_said = task.render(abuse, i)[2], task.render(hate, i)[2]
        assert said != hate_said, (i, said)  # plain abuse never gets the hate answer
    assert task.render(abuse, 0)[2] == "혐오 발언 아님" and task.render(abuse, 4)[2] == "0"
    assert task.answer(abuse) == "혐오 아닌 악플"


def test_apeach_hub_id_reads_the_test_split():
    task = load_task("apeach")
    resolved = resolve(DatasetSource(id="jason9693/APEACH", format="kit19/apeach"), task)
    assert (resolved.kind, resolved.split) == ("hub", "test")
    with pytest.raises(KotuneError, match="BEEP"):  # 'train' there is another dataset: refused, not trained on
        resolve(DatasetSource(id="jason9693/APEACH", format="kit19/apeach", split="train"), task)


def test_hub_routes_resolve_offline():
    copa = resolve(DatasetSource(id="skt/kobest_v1", format="kit19/kobest_copa"), load_task("kobest_copa"))
    assert (copa.kind, copa.subset, copa.split) == ("hub", "copa", "train")
    sts = resolve(DatasetSource(id="dkoterwa/kor-sts", format="kit19/korsts", split="validation"), load_task("korsts"))
    assert sts.split == "valid"  # KorSTS calls its validation split 'valid'
    other = resolve(DatasetSource(id="someone/my-nsmc", format="kit19/nsmc"), load_task("nsmc"))
    assert other.kind == "canonical" and other.split == "train"  # another Hub id: read as given


@pytest.mark.parametrize("task,hub_id,needle", [
    ("lbox_summarization", "lbox/lbox_open", "summarization/v0.1.0/train.jsonl"),
    ("nsmc", "e9t/nsmc", "ratings_train.txt"),
    ("sae4k", "wicho/kor_sae", "sae4k_v1.txt"),
])
def test_script_only_hub_ids_say_which_file_to_fetch(task, hub_id, needle):
    with pytest.raises(KotuneError) as err:
        load_source(DatasetSource(id=hub_id, format=f"kit19/{task}"))
    assert "loading script" in str(err.value) and needle in str(err.value) and "point id at the file" in str(err.value)


def test_kobest_raw_quirks():
    copa = load("kobest_copa", "kobest/COPA/train.tsv").records
    assert [r["question"] for r in copa] == ["원인", "원인", "결과"]  # '원인 ' stripped before templates compare it
    task = load_task("kobest_copa")
    as_clean = {**copa[0], "question": "원인"}
    assert [task.render(copa[0], i) for i in range(len(task.templates))] == \
        [task.render(as_clean, i) for i in range(len(task.templates))]  # the cause connective, as for '원인'
    assert copa[0]["alternative_1"] == "날씨가 매우 추웠다." and copa[1]["label"] == 1  # Answer 2 -> alternative_2
    boolq = load("kobest_boolq", "kobest/BoolQ/train.tsv").records
    assert boolq[0]["paragraph"].startswith('"한라산"')  # a quote in a TSV is text
    hella = load("kobest_hellaswag", "kobest/HellaSwag/train.tsv").records
    assert hella[1]["ending_2"] == '"조심해"라는 말에, 아이가 페달을 밟는다.'  # CSV-quoted field


def test_parakqc_pairs_follow_the_authors_rules():
    first = load("parakqc", "parakqc/paraKQC_v1.txt").records
    assert first == load("parakqc", "parakqc/paraKQC_v1.txt").records  # deterministic
    levels = [r["label"] for r in first]
    # 3 groups of 10: 3 x 45 paraphrase pairs, then one pair per two groups. Groups 0 and 1 share topic 0 and act 1;
    # group 2 (topic 3, act 2) shares neither.
    assert levels.count(4) == 135 and levels[135:] == [3, 0, 0]
    assert first[135]["sentence1"] == "새 메일 몇 통 왔어" and first[135]["sentence2"] == "오늘 온 메일 중에 첨부 파일 있는 거 뭐야"
    assert all(load_task("parakqc").answer(r) for r in first)


def test_other_raw_layouts():
    snli = load("kornli", "kornli/snli_1.0_train.ko.tsv")
    assert [r["label"] for r in snli.records] == [0] and sum(snli.dropped.values()) == 1  # '-' is not guessed
    test_csv = load("question_pair", "question_pair/kor_Pair_test.csv").records  # capital P, trailing empty column
    assert [r["is_duplicate"] for r in test_csv] == [0, 1] and test_csv[0]["question1"] == "운동은 언제 하는 게 좋아?"
    tsv = load("question_pair", "question_pair/validation.txt").records
    assert tsv[1]["question1"] == '"배고파"라고 말했어'
    sae = load("sae4k", "sae4k/sae4k_v1.txt").records
    assert sae[0]["intent_pair1"] == "내일 비 와?"  # the BOM is not part of the first value
    apeach = load("apeach", "apeach/test.csv").records
    assert "\n" in apeach[0]["text"]  # a quoted newline stays inside the comment


def test_unmapped_label_is_dropped_or_stops_under_strict():
    with pytest.raises(KotuneError) as err:
        load_source(DatasetSource(id=str(RAW / "kornli/snli_1.0_train.ko.tsv"), format="kit19/kornli"), strict=True)
    message = str(err.value)
    assert "snli_1.0_train.ko.tsv" in message and "row 2" in message and "'-'" in message


def test_text_is_nfc_normalized(tmp_path):
    decomposed = "\u1100\u1161\u11ab\u1109\u1161 \uc5f0\uae30"  # '간사' as jamo (5 code points), then '연기'
    path = tmp_path / "ratings_test.txt"
    path.write_text(f"id\tdocument\tlabel\n1\t {decomposed} \t1\n", encoding="utf-8")
    (row,) = load_source(DatasetSource(id=str(path), format="kit19/nsmc")).records
    assert row["document"] == "간사 연기" and len(row["document"]) == 5


def test_an_unknown_raw_file_names_the_files_the_task_reads(tmp_path):
    path = tmp_path / "my_reviews.txt"
    path.write_text("리뷰\t점수\n좋다\t5\n", encoding="utf-8")
    with pytest.raises(KotuneError) as err:
        load_source(DatasetSource(id=str(path), format="kit19/nsmc"))
    assert "ratings*.txt" in str(err.value) and "document" in str(err.value)


@pytest.mark.parametrize("task,answers", [
    ("nsmc", ["긍정", "부정", "긍정", "부정"]),
    ("kornli", ["함의", "중립", "모순"]),  # gold_label strings
    ("kobest_wic", ["같은 의미", "다른 의미", "같은 의미", "다른 의미"]),  # True / FALSE / TRUE / False
    ("question_pair", ["같은 질문", "다른 질문"]),  # is_duplicate 0 means the same question here
    ("apeach", ["일반 댓글", "혐오 표현", "일반 댓글"]),  # Default / Spoiled
])
def test_raw_labels_give_the_documented_answers(task, answers):
    path = ROUTES[task][0]
    assert [load_task(task).answer(r) for r in load(task, path).records] == answers
