"""open-r1/TRL GRPO recipes in kotune's grpo stage: `system_prompt` and `max_prompt_length` (open-r1's keys that TRL
1.16's GRPOConfig lacks) on the prompt set the stage builds, TRL's own rewards named beside kotune's Korean ones, and
a two-step run through the real entry point with both keys and [think_format_reward, hangul_share]."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import REPO, write_config
from helpers import preference_config, run_stage_script, write_jsonl

from kotune.stages.rewards import NEEDS_COLUMNS, REWARDS, resolve_reward, reward_problems

SYSTEM = "당신은 친절한 수학 선생님입니다. 먼저 <think> 안에서 생각하고, 답은 한국어로 말하세요."
SHORT = "사과 3개와 배 4개가 있습니다. 과일은 모두 몇 개인가요?"
MID = "한 상자에 연필이 6자루씩 들어 있습니다. 3상자에는 연필이 몇 자루 있나요? 풀이 과정을 자세히 설명해 주세요."
LONG = "민수는 매일 아침 공원을 두 바퀴 달리고, 저녁에는 도서관에서 책을 세 권씩 읽습니다. " * 8 + "일주일 동안 몇 권을 읽나요?"
OWN_SYSTEM = [{"role": "system", "content": "반말로 짧게 답해."}, {"role": "user", "content": "12에서 5를 빼면?"}]
HAS_MATH_VERIFY = importlib.util.find_spec("math_verify") is not None
needs_math_verify = pytest.mark.skipif(not HAS_MATH_VERIFY, reason="accuracy_reward needs math_verify: "
                                                                   "pip install math-verify (or -e .[math])")


def as_messages(*texts: str) -> list[list[dict]]:
    """Completions as TRL passes them to rewards for conversational prompts: one assistant message each."""
    return [[{"role": "assistant", "content": t}] for t in texts]


def grpo_cfg(tmp_path, base, data, **extra):
    """The small GRPO config of the stage tests (no max_length: GRPO caps completions with max_completion_length;
    max_prompt_length only where `extra` sets it)."""
    cfg = preference_config(base, tmp_path / "out", data, fmt="prompt", **{
        "reward_funcs": ["think_format_reward", "hangul_share"], "num_generations": 4, "max_completion_length": 8,
        "per_device_train_batch_size": 4})
    for key in ("max_length", "max_prompt_length"):
        cfg.pop(key)
    return {**cfg, **extra}


def test_system_prompt_and_max_prompt_length_shape_the_prompts_trl_gets(tiny_bases, tmp_path):
    """The system prompt goes before every prompt without one, and counts toward max_prompt_length as TRL renders
    the prompt (chat template + generation prompt); the over-long prompts are dropped and counted in the report."""
    from kotune.config import load_config
    from kotune.data.prompt_formats import install_template, prompt_ids, resolve_format
    from kotune.models.loading import load_tokenizer
    from kotune.stages.grpo import TOO_LONG, prompts

    base = tiny_bases["gpt_neox"]
    tok = load_tokenizer(str(base), False, None)
    install_template(tok, resolve_format("auto", "gpt_neox", str(base), tok))  # koquality, as the stage does
    system = [{"role": "system", "content": SYSTEM}]
    bare, with_sys = (len(prompt_ids(tok, head + [{"role": "user", "content": MID}])) for head in ([], system))
    assert with_sys > bare  # MID fits alone, not after the system prompt
    limit = with_sys - 1
    assert len(prompt_ids(tok, system + [{"role": "user", "content": SHORT}])) <= limit
    assert len(prompt_ids(tok, OWN_SYSTEM)) <= limit

    rows = [{"prompt": SHORT, "answer": 7}, {"prompt": MID, "answer": 18}, {"prompt": LONG, "answer": 21},
            {"prompt": OWN_SYSTEM, "answer": 7}]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    cfg = load_config([str(write_config(tmp_path / "c.yaml", grpo_cfg(tmp_path, base, data))),
                       f"--system_prompt={SYSTEM}", f"--max_prompt_length={limit}"], stage="grpo")
    assert (cfg.kotune.system_prompt, cfg.kotune.max_prompt_length) == (SYSTEM, limit)
    train, evals, report = prompts(cfg, tok)

    assert evals is None and len(train) == 2
    (entry,) = report.values()
    assert entry["used"] == 2 and entry["dropped"] == {TOO_LONG: 2}  # MID (over with the system prompt) and LONG
    got = {row["prompt"][-1]["content"]: row for row in train}
    assert set(got) == {SHORT, "12에서 5를 빼면?"}
    assert got[SHORT]["prompt"] == system + [{"role": "user", "content": SHORT}] and got[SHORT]["answer"] == "7"
    assert got["12에서 5를 빼면?"]["prompt"] == OWN_SYSTEM  # its own system message kept, none added
    for row in train:  # what GRPOTrainer renders: the system prompt is in it, within max_prompt_length tokens
        ids = tok.apply_chat_template([row["prompt"]], add_generation_prompt=True, tokenize=True,
                                      return_dict=True)["input_ids"][0]
        text = tok.decode(ids)
        assert text.startswith(row["prompt"][0]["content"]) and text.endswith("### 답변: ") and len(ids) <= limit

    # without either key the rows pass as they are (no system message added, nothing dropped for length)
    plain = load_config([str(tmp_path / "c.yaml")], stage="grpo")
    train, _, report = prompts(plain, tok)
    assert len(train) == 4 and not next(iter(report.values()))["dropped"]
    assert [row["prompt"][0]["role"] for row in train].count("system") == 1


def test_trl_rewards_resolve_by_name_and_score_korean_completions():
    think = resolve_reward("think_format_reward")
    from trl.rewards import think_format_reward

    assert think is think_format_reward
    completions = as_messages("<think>\n6 곱하기 7은 42입니다.\n</think>\n답은 42입니다.",
                              "<think>\n생각 중입니다. 답은 42입니다.",  # never closes
                              "답은 42입니다.",  # no reasoning block
                              "<think>\n하나\n</think>\n<think>\n둘\n</think>\n답은 42입니다.")  # two blocks
    assert think(completions) == [1.0, 0.0, 0.0, 0.0]
    # kotune's Korean reward beside TRL's in one reward_funcs list: the <think> tags are not counted as English
    assert resolve_reward("hangul_share")(completions[:1] + as_messages("<think>\nOK\n</think>\n서울")) == [1.0, 0.5]
    assert {"accuracy_reward", "reasoning_accuracy_reward", "think_format_reward"} <= set(REWARDS)
    assert NEEDS_COLUMNS["accuracy_reward"] == ("solution",)


@needs_math_verify
def test_accuracy_reward_checks_the_solution_column():
    accuracy, reasoning = resolve_reward("accuracy_reward"), resolve_reward("reasoning_accuracy_reward")
    completions = as_messages("<think>\n6 곱하기 7은 42입니다.\n</think>\n따라서 답은 $\\boxed{42}$입니다.",
                              "<think>\n6 곱하기 7은 41입니다.\n</think>\n따라서 답은 $\\boxed{41}$입니다.",
                              "답은 $\\boxed{\\frac{1}{2}}$입니다.",
                              "<think>\n답은 $\\boxed{42}$일까요?")  # the reasoning never closes
    solution = ["$42$", "$42$", "$0.5$", "$42$"]
    assert accuracy(completions, solution=solution) == [1.0, 0.0, 1.0, 1.0]
    assert reasoning(completions, solution=solution) == [1.0, 0.0, 0.0, 0.0]
    assert accuracy(as_messages("모르겠습니다."), solution=["정답 없음"]) == [None]  # a solution that does not parse


def test_config_reads_trl_reward_names_without_importing_trl(tiny_bases, tmp_path, monkeypatch):
    """Validation accepts TRL's reward names (and fails fast: no TRL import), refuses accuracy_reward on a file
    without `solution` up front, and names the package when math_verify is missing."""
    from kotune.stages.reward_columns import reward_column_problems

    code = ("import sys; from kotune.stages.rewards import REWARDS, reward_problems; "
            "reward_problems(list(REWARDS)); assert 'trl' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=60)

    from kotune.config.schema import DatasetMixture, DatasetSource

    no_solution = write_jsonl(tmp_path / "q.jsonl", [{"prompt": SHORT, "answer": "7"}])
    with_solution = write_jsonl(tmp_path / "s.jsonl", [{"prompt": SHORT, "solution": "$7$"}])
    mixture = DatasetMixture(datasets=[DatasetSource(id=str(no_solution), format="prompt"),
                                       DatasetSource(id=str(with_solution), format="prompt")])
    (problem,) = reward_column_problems(["think_format_reward", "accuracy_reward"], mixture)
    assert "accuracy_reward reads the column 'solution'" in problem and "q.jsonl" in problem

    if HAS_MATH_VERIFY:
        assert reward_problems(["think_format_reward", "accuracy_reward", "mypkg.rewards:length"]) == []
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "math_verify" else real(name, *a))
    (problem,) = reward_problems(["hangul_share", "accuracy_reward"])
    assert "math_verify" in problem and "pip install math-verify" in problem and "\n" not in problem


def test_grpo_recipe_trains_with_trl_and_korean_rewards(tiny_bases, tmp_path):
    """Two GRPO steps from a tiny base through train/grpo.py with open-r1's keys and [think_format_reward,
    hangul_share]: both rewards are logged, the over-long prompt is counted as dropped, and the weights move."""
    from safetensors.torch import load_file

    rows = [{"prompt": p, "answer": a} for p, a in (
        (SHORT, 7), ("12에서 5를 빼면 얼마인가요?", 7), ("한 상자에 연필이 6자루씩 들어 있습니다. 3상자에는 몇 자루인가요?", 18),
        ("9 더하기 8은 얼마인가요?", 17), (LONG, 21))]
    data = write_jsonl(tmp_path / "prompts.jsonl", rows)
    base = tiny_bases["gpt_neox"]
    cfg = grpo_cfg(tmp_path, base, data, use_peft=False, learning_rate=1.0e-3, max_steps=2, system_prompt=SYSTEM,
                   max_prompt_length=96)
    assert run_stage_script("grpo", write_config(tmp_path / "grpo.yaml", cfg)) == 0

    out = tmp_path / "out"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    logged = {k for h in state["log_history"] for k in h}
    assert {"rewards/think_format_reward/mean", "rewards/hangul_share/mean"} <= logged, logged
    report = json.loads((out / "data_report.json").read_text())
    (entry,) = (report["sources"] if "sources" in report else report).values()
    assert entry["used"] == 4 and entry["dropped"] == {"prompt longer than max_prompt_length": 1}
    start, trained = load_file(base / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not (trained[k] == start[k]).all() for k in trained)  # parameters changed
