"""GRPO's shipped Korean rewards and KTO's label reading, on Korean completions and rows in their real layouts."""

from __future__ import annotations

import json

import pytest

from kotune.data.formats import unpaired_to_record
from kotune.stages.rewards import exact_answer, hangul_share, resolve_reward, speech_level


def test_exact_answer_reads_the_final_number_and_labels():
    completions = ["3개와 4개를 더하면 모두 7개입니다.", "정답은 1,200원입니다.", "긍정", "부정입니다.", "모르겠습니다."]
    answers = ["7", "1200", "긍정", "긍정", None]
    assert exact_answer(completions, answer=answers) == [1.0, 1.0, 1.0, 0.0, None]
    conversational = [[{"role": "assistant", "content": "답은 18자루입니다."}]]  # TRL's message-list completions
    assert exact_answer(conversational, answer=["18"]) == [1.0]
    with pytest.raises(ValueError, match="'answer' column"):
        exact_answer(["7"])


def test_hangul_share_and_speech_level():
    assert hangul_share(["서울입니다.", "Seoul", "서울 is 수도", ""]) == [1.0, 0.0, pytest.approx(4 / 6), 0.0]
    polite, casual, haeyo = "서울입니다. 인구가 많습니다.", "서울이야. 인구가 많아.", "서울이에요. 인구가 많아요."
    assert speech_level([polite, casual, haeyo]) == [1.0, 0.0, 0.0]  # 합쇼체 when the row asks for nothing
    assert speech_level([polite, haeyo], speech_level=["해요체", "해요체"]) == [0.0, 1.0]


def test_reward_names_resolve():
    assert resolve_reward("speech_level") is speech_level
    assert resolve_reward("kotune.stages.rewards:hangul_share") is hangul_share
    with pytest.raises(ValueError, match="neither a shipped reward"):
        resolve_reward("kotune.stages.rewards:nothing_here")


def test_kto_labels_are_read_as_encoded_and_nothing_else():
    """kto-mix-14k's layout (message lists, bool label); 1/0 and "true"/"false" as such; anything else dropped."""
    row = {"prompt": [{"content": "대한민국의 수도는?", "role": "user"}],
           "completion": [{"content": "서울입니다.", "role": "assistant"}]}
    for label, want in ((True, True), (False, False), (1, True), (0, False), ("true", True), ("False", False)):
        record, reason = unpaired_to_record({**row, "label": label})
        assert reason is None and record["label"] is want and record["completion"] == "서울입니다."
    for label, why in ((2, "label is not true/false"), ("좋음", "label is not true/false"), (None, "missing label")):
        assert unpaired_to_record({**row, "label": label}) == (None, why)
    assert json.loads(json.dumps(unpaired_to_record({**row, "label": 1})[0]))["prompt"][0]["role"] == "user"
