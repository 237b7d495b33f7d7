"""Recipes in the shape of TRL, alignment-handbook, open-r1 and SimPO run with only their paths changed: every data
key maps onto kotune's mixture, old names are aliases, other projects' keys are named as ignored, and two of them
train on a tiny model."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_sft_inprocess, write_config
from kotune.config.validation import build_config

RECIPES = sorted((REPO / "tests" / "fixtures" / "recipes").glob("*.yaml"))

CHATS = [{"messages": [{"role": "user", "content": f"{city}의 대표 음식을 하나 알려 주세요."},
                       {"role": "assistant", "content": f"{city}에서는 {food}을(를) 꼭 드셔 보세요."}]}
         for city, food in [("전주", "비빔밥"), ("부산", "돼지국밥"), ("춘천", "닭갈비"), ("안동", "찜닭"),
                            ("속초", "오징어순대"), ("대구", "막창"), ("광주", "떡갈비"), ("제주", "고기국수")]]
PAIRS = [{"prompt": f"{q}", "chosen": f"{good}", "rejected": f"{bad}"}
         for q, good, bad in [("인사말을 정중하게 써 주세요.", "안녕하십니까. 만나 뵙게 되어 반갑습니다.", "ㅎㅇ"),
                              ("감사 인사를 써 주세요.", "도와주셔서 진심으로 감사드립니다.", "ㄱㅅ"),
                              ("사과 문장을 써 주세요.", "불편을 드려 정말 죄송합니다.", "ㅈㅅ"),
                              ("축하 인사를 써 주세요.", "합격을 진심으로 축하드립니다.", "ㅊㅋ"),
                              ("작별 인사를 써 주세요.", "그동안 감사했습니다. 건강히 지내십시오.", "ㅂㅂ"),
                              ("안부를 물어 주세요.", "요즘 어떻게 지내고 계신지 궁금합니다.", "ㅇㄷ")]]
UNPAIRED = [{"prompt": p["prompt"], "completion": answer, "label": label}
            for p in PAIRS for answer, label in ((p["chosen"], True), (p["rejected"], False))]
PROBLEMS = [{"problem": f"{a} 더하기 {b}는 얼마입니까?", "solution": f"${a + b}$"} for a, b in
            [(3, 4), (12, 30), (7, 8), (25, 17), (9, 9), (40, 2)]]
ROWS = {"sft": CHATS, "dpo": PAIRS, "orpo": PAIRS, "simpo": PAIRS, "cpo": PAIRS, "rm": PAIRS, "kto": UNPAIRED,
        "grpo": PROBLEMS}


def stage_of(path: Path) -> str:
    return re.search(r"^# stage: (\w+)", path.read_text(encoding="utf-8"), re.M).group(1)


def local_dataset(root: Path, hub_id: str, rows: list[dict]) -> str:
    """A Hub dataset as a local dir, one file per split (test splits get the second half of the rows)."""
    folder = root / hub_id.replace("/", "__")
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def write_split(folder: str, split: str, rows: list[dict]) -> None:
    half = len(rows) // 2
    part = rows[half:] if "test" in split else rows[:half]
    with open(Path(folder) / f"{split}.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in part)


def localize(raw: dict, stage: str, root: Path, model_dir: Path) -> dict:
    """Only paths change: the model, the output dir, and each Hub dataset (with its subset) becomes a local dir."""
    raw = {**raw, "model_name_or_path": str(model_dir), "output_dir": str(root / "out")}
    rows = ROWS[stage]

    def local(hub_id: str, splits) -> str:
        folder = local_dataset(root / "data", hub_id, rows)
        for split in splits:
            write_split(folder, split, rows)
        return folder

    if "dataset_name" in raw:
        raw.pop("dataset_config", None)
        raw["dataset_name"] = local(raw["dataset_name"], [raw.get("dataset_train_split", "train"),
                                                          raw.get("dataset_test_split", "test")])
    for key, id_key, subset in (("dataset_mixture", "id", "config"), ("datasets", "path", "name")):
        holder = raw.get(key)
        sources = holder.get("datasets") if isinstance(holder, dict) else holder
        if isinstance(sources, list):
            raw[key] = {**holder, "datasets": []} if isinstance(holder, dict) else []
            for source in sources:
                source = {k: v for k, v in source.items() if k != subset}
                source[id_key] = local(source[id_key], [source.get("split", "train")])
                (raw[key]["datasets"] if isinstance(holder, dict) else raw[key]).append(source)
    if "dataset_mixer" in raw:
        splits = raw.get("dataset_splits", ["train", "test"])
        raw["dataset_mixer"] = {local(name, splits): share for name, share in raw["dataset_mixer"].items()}
    return raw


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_validates_with_only_paths_changed(path, tiny_bases, tmp_path, caplog):
    stage = stage_of(path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    with caplog.at_level(logging.INFO, logger="kotune.config"):
        cfg = build_config(localize(raw, stage, tmp_path, tiny_bases["llama"]), stage=stage, source=str(path))
    notes = "\n".join(r.getMessage() for r in caplog.records)
    from kotune.config.recipes import IGNORED

    for key in raw:
        if key in IGNORED:
            assert f"{key}: ignored" in notes, key  # every ignored key is named
    sources = cfg.kotune.dataset_mixture.datasets
    assert sources and all(Path(s.id).is_dir() for s in sources)


def test_handbook_mixture_keys_take_effect(tiny_bases, tmp_path):
    raw = yaml.safe_load((REPO / "tests/fixtures/recipes/handbook-sft-full.yaml").read_text(encoding="utf-8"))
    cfg = build_config(localize(raw, "sft", tmp_path, tiny_bases["llama"]), stage="sft")
    kot, args = cfg.kotune, cfg.training
    assert kot.eval_split_size == 4 and [s.split for s in kot.dataset_mixture.datasets] == ["train_sft", "test_sft"]
    assert all(s.columns == ["messages"] and s.format is None for s in kot.dataset_mixture.datasets)
    assert kot.chat_template == raw["chat_template"]
    assert args.warmup_steps == 0.1 and args.max_length == 2048 and cfg.model.dtype == "bfloat16"
    assert cfg.model.attn_implementation in ("sdpa", "flash_attention_2")  # sdpa where flash-attn is missing


def test_simpo_recipe_reads_gamma_as_the_simpo_repository_means_it(tiny_bases, tmp_path):
    raw = yaml.safe_load((REPO / "tests/fixtures/recipes/simpo-gemma-style.yaml").read_text(encoding="utf-8"))
    cfg = build_config(localize(raw, "simpo", tmp_path, tiny_bases["llama"]), stage="simpo")
    args = cfg.training
    assert (args.loss_type, args.beta, args.simpo_gamma, args.cpo_alpha) == ("simpo", 10, 5.0, 0.0)
    sources = cfg.kotune.dataset_mixture.datasets
    assert [(s.split, s.eval) for s in sources] == [("train", False), ("test", True)]  # dataset_splits


def test_open_r1_grpo_keys_take_effect(tiny_bases, tmp_path):
    raw = yaml.safe_load((REPO / "tests/fixtures/recipes/openr1-grpo-code.yaml").read_text(encoding="utf-8"))
    cfg = build_config(localize(raw, "grpo", tmp_path, tiny_bases["llama"]), stage="grpo")
    kot = cfg.kotune
    assert kot.reward_funcs == ["accuracy_reward", "think_answer_format"] and kot.max_prompt_length == 2000
    assert kot.system_prompt.startswith("먼저 <think>") and cfg.training.scale_rewards == "none"
    assert kot.dataset_mixture.datasets[0].columns == {"prompt": "problem"}
    assert cfg.training.hub_revision == "v01.00"


def test_trl_fraction_is_a_share_of_the_mixture(tiny_bases, tmp_path):
    raw = yaml.safe_load((REPO / "tests/fixtures/recipes/trl-kto-datasets.yaml").read_text(encoding="utf-8"))
    cfg = build_config(localize(raw, "kto", tmp_path, tiny_bases["llama"]), stage="kto")
    assert [s.share for s in cfg.kotune.dataset_mixture.datasets] == [0.7, 0.3]


def test_conflicts_and_wrong_values_are_refused_by_name(tiny_bases, tmp_path):
    from kotune.errors import ConfigError

    base = localize(yaml.safe_load((REPO / "tests/fixtures/recipes/trl-cli-sft.yaml").read_text(encoding="utf-8")),
                    "sft", tmp_path, tiny_bases["llama"])
    for extra, needle in [({"max_seq_length": 64, "max_length": 64}, "max_seq_length and max_length are both set"),
                          ({"assistant_only_loss": False}, "assistant_only_loss: false would train on the user"),
                          ({"dataset_mixture": {"datasets": [{"id": "x.jsonl"}]}}, "dataset_name and dataset_mixture"),
                          ({"chat_template": "{{ x }}", "prompt_format": "komt"}, "both choose the template"),
                          ({"warmup_ratio": 3}, "warmup_ratio: 3 must be a ratio")]:
        with pytest.raises(ConfigError) as info:
            build_config({**base, **extra}, stage="sft")
        assert needle in str(info.value), (extra, str(info.value))


def test_no_source_loses_or_repeats_a_row_without_weights():
    """Every KIT-19 raw fixture in one mixture with no weights: each source gives each of its rows exactly once
    (the old share rule turned files of 8, 6 and 6 rows into 7, 7 and 7)."""
    from kotune.config.schema import DatasetMixture, DatasetSource
    from kotune.data.mixture import draw

    raw = REPO / "tests" / "fixtures" / "kit19_raw"
    files = {"nsmc": "nsmc/ratings_train.txt", "kornli": "kornli/xnli.dev.ko.tsv", "korsts": "korsts/sts-dev.tsv",
             "unsmile": "unsmile/unsmile_valid_v1.0.tsv", "hatescore": "hatescore/HateScore.csv",
             "apeach": "apeach/test.csv", "kobest_copa": "kobest/COPA/train.tsv", "sae4k": "sae4k/sae4k_v1.txt",
             "question_pair": "question_pair/kor_pair_train.csv", "lbox_summarization": "lbox/train.jsonl"}
    mixture = DatasetMixture(datasets=[DatasetSource(id=str(raw / f), format=f"kit19/{t}") for t, f in files.items()],
                             seed=7)
    _, drawn, _ = draw(mixture)
    sizes = {rows.source.format: len(rows.records) for rows, _ in drawn}
    assert len(set(sizes.values())) > 1  # the files differ in size, so a share rule would move rows
    for rows, picks in drawn:
        assert sorted(p.index for p in picks) == list(range(len(rows.records))), rows.source.format


def test_format_is_inferred_from_the_columns_and_logged(tmp_path, caplog):
    from kotune.config.schema import DatasetMixture, DatasetSource
    from kotune.data.mixture import load_all
    from kotune.errors import KotuneError

    chats, pairs = tmp_path / "chats.jsonl", tmp_path / "pairs.jsonl"
    chats.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in CHATS), encoding="utf-8")
    pairs.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in PAIRS), encoding="utf-8")
    mixture = DatasetMixture(datasets=[DatasetSource(id=str(chats)), DatasetSource(id=str(pairs))])
    mixture.formats = ("preference", "chat", "instruction")
    with caplog.at_level(logging.INFO):
        loaded = load_all(mixture)
    assert [rows.source.format for rows in loaded] == ["chat", "preference"]
    assert "format chat, inferred from its columns ['messages']" in caplog.text
    grpo = DatasetMixture(datasets=[DatasetSource(id=str(chats))])
    grpo.formats = ("prompt",)  # GRPO reads prompts: chat rows fit no format it reads
    with pytest.raises(KotuneError, match="fit none this stage reads"):
        load_all(grpo)


def test_chat_template_path_trains_and_is_saved_byte_for_byte(tiny_bases, tmp_path):
    """A TRL recipe with chat_template_path, 2 steps: the template it encoded with is the one saved and served."""
    template = ("{% for m in messages %}{% if m['role'] == 'user' %}{{ '<|사용자|>\n' + m['content'] + '\n' }}"
                "{% elif m['role'] == 'assistant' %}{{ '<|도우미|>\n' + m['content'] + eos_token + '\n' }}{% endif %}"
                "{% endfor %}{% if add_generation_prompt %}{{ '<|도우미|>\n' }}{% endif %}")
    jinja = tmp_path / "ko_chat.jinja"
    jinja.write_bytes(template.encode("utf-8"))
    raw = yaml.safe_load((REPO / "tests/fixtures/recipes/trl-cli-sft.yaml").read_text(encoding="utf-8"))
    cfg = {**localize(raw, "sft", tmp_path, tiny_bases["llama"]), "chat_template_path": str(jinja), "max_steps": 2,
           "per_device_train_batch_size": 4, "dtype": "float32"}
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 0
    out = tmp_path / "out"
    assert (out / "chat_template.jinja").read_bytes() == jinja.read_bytes()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    prompt = tok.apply_chat_template(CHATS[0]["messages"][:1], tokenize=False, add_generation_prompt=True)
    assert prompt == f"<|사용자|>\n{CHATS[0]['messages'][0]['content']}\n<|도우미|>\n"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2


@pytest.mark.slow  # 13 s; the TRL recipe with chat_template_path trains in the default suite
def test_simpo_recipe_trains_two_steps(tiny_bases, tmp_path):
    """The SimPO repository's recipe shape (dataset_mixer, gamma_beta_ratio, evaluation_strategy...) trains."""
    from safetensors.torch import load_file

    from helpers import run_stage_script

    raw = yaml.safe_load((REPO / "tests/fixtures/recipes/simpo-gemma-style.yaml").read_text(encoding="utf-8"))
    cfg = {**localize(raw, "simpo", tmp_path, tiny_bases["llama"]), "max_steps": 2, "eval_steps": 2,
           "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1.0e-3,
           "max_length": 128, "max_prompt_length": 64, "report_to": []}
    assert run_stage_script("simpo", write_config(tmp_path / "simpo.yaml", cfg)) == 0
    out = tmp_path / "out"
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 2 and any("eval_loss" in h for h in state["log_history"])
    assert (out / "chat_template.jinja").read_text(encoding="utf-8") == raw["chat_template"]  # trained = saved
    start = load_file(tiny_bases["llama"] / "model.safetensors")
    trained = load_file(out / "model.safetensors")
    assert any(not (trained[k] == start[k]).all() for k in trained if k in start)


def test_eos_token_outside_the_vocabulary_is_one_error_before_anything_is_written(tiny_bases, tmp_path, capsys):
    raw = yaml.safe_load((REPO / "tests/fixtures/recipes/trl-cli-sft.yaml").read_text(encoding="utf-8"))
    cfg = {**localize(raw, "sft", tmp_path, tiny_bases["llama"]), "eos_token": "<|없는_토큰|>", "max_steps": 2}
    assert run_sft_inprocess(write_config(tmp_path / "c.yaml", cfg)) == 2
    err = capsys.readouterr().err
    assert "eos_token: '<|없는_토큰|>' is not in the vocabulary" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
