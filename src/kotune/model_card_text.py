"""The model card's body (Markdown, Korean first), from the facts `kotune.model_card.gather` reads; and the
hyper-parameters a run records for it in run_info.json."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

STAGES = {"sft": "지도 미세조정 (SFT)", "dpo": "DPO (직접 선호 최적화)", "orpo": "ORPO (odds-ratio 선호 최적화)",
          "simpo": "SimPO (참조 모델 없는 선호 최적화)", "cpo": "CPO (대조 선호 최적화)", "kto": "KTO (비쌍 선호 최적화)",
          "rm": "보상 모델 (reward model)", "grpo": "GRPO (보상 기반 강화학습)"}
TRAINING_KEYS = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
                 "gradient_accumulation_steps", "max_length", "lr_scheduler_type", "warmup_steps", "weight_decay",
                 "optim", "seed", "beta", "loss_type", "num_generations", "max_completion_length", "desirable_weight",
                 "undesirable_weight", "simpo_gamma", "cpo_alpha", "bf16", "fp16", "push_to_hub", "hub_model_id")
SHOWN = ("learning_rate", "num_train_epochs", "max_steps", "per_device_train_batch_size",
         "gradient_accumulation_steps", "world_size", "max_length", "max_prompt_length", "packing",
         "lr_scheduler_type", "warmup_steps", "weight_decay", "optim", "beta", "loss_type", "simpo_gamma", "cpo_alpha",
         "desirable_weight", "undesirable_weight", "num_generations", "max_completion_length", "dtype", "bf16", "seed")
SNAPSHOT = re.compile(r"models--([^/]+)--([^/]+)/snapshots/")  # a Hugging Face cache dir: models--org--name
EXAMPLE = [{"role": "user", "content": "대한민국의 수도는 어디인가요?"},
           {"role": "assistant", "content": "대한민국의 수도는 서울입니다."}]


def hyperparameters(cfg, args) -> dict:
    """What the card reports of a run, as the trainer will use it (recorded in run_info.json at the start)."""
    m, kot = cfg.model, cfg.kotune
    out = {"stage": cfg.stage, "world_size": args.world_size, "prompt_format": kot.prompt_format,
           "max_prompt_length": kot.max_prompt_length, "packing": cfg.resolved.get("packing", False),
           "use_peft": m.use_peft, "load_in_4bit": m.load_in_4bit, "load_in_8bit": m.load_in_8bit,
           "bnb_4bit_quant_type": m.bnb_4bit_quant_type, "lora_r": m.lora_r, "lora_alpha": m.lora_alpha,
           "lora_dropout": m.lora_dropout, "lora_target_modules": m.lora_target_modules, "dtype": m.dtype}
    out.update({key: getattr(args, key) for key in TRAINING_KEYS if hasattr(args, key)})
    return {k: _plain(v) for k, v in out.items()}


def _plain(value):
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


def method(h: dict, adapter: dict | None) -> str:
    if not h.get("use_peft", adapter is not None):
        return "전체 미세조정 (full fine-tuning)"
    if h.get("load_in_4bit"):
        return f"QLoRA (4-bit {h.get('bnb_4bit_quant_type') or 'nf4'} 양자화 베이스 + LoRA)"
    if h.get("load_in_8bit"):
        return "LoRA (8-bit 양자화 베이스)"
    return "LoRA"


def body(name: str, facts: dict, tokenizer) -> str:
    h = (facts.get("record") or {}).get("hyperparameters") or {}
    stage, base, merge = facts["stage"], facts["base"], facts.get("merge")
    shown_base = f"[{base['hub_id']}](https://huggingface.co/{base['hub_id']})" if base["hub_id"] else \
        f"`{_shown(base['start'])}`"
    lines = [f"# {name}", "", f"{shown_base} 을(를) kotune으로 학습한 한국어 모델입니다: "
             f"{STAGES.get(stage, stage)}, {method(h, facts['adapter'])}."]
    if merge:
        lines += ["", f"LoRA 어댑터를 베이스에 병합한 전체 모델입니다 (`kotune merge`, dtype {merge.get('dtype')}"
                  + (f", {merge['trained_quantization']} 베이스에서 학습" if merge.get("trained_quantization") else "")
                  + ")."]
    lines += vocab_line(facts.get("vocab"))
    return "\n".join(lines + training(facts, h) + data(facts) + prompt(h, tokenizer) + evaluation(facts)
                     + usage(name, facts, h) + reproducibility(facts)) + "\n"


def vocab_line(record: dict | None) -> list[str]:
    """One line for a model whose vocabulary `kotune vocab extend` extended (its kotune_vocab.json)."""
    if not record:
        return []
    stages = ", ".join(str(s.get("eeve_stage")) for s in record.get("stages") or []) or "없음 (none)"
    return ["", f"어휘 확장 (vocabulary extension): `{_shown(record.get('base'))}`의 어휘 "
                f"{_count(record.get('old_vocab_size'))} → {_count(record.get('new_vocab_size'))} 토큰 (tokens), "
                f"새 행 초기화 (init) {record.get('init', '?')}; 마친 EEVE 단계 (stages done): {stages}."]


def training(facts: dict, h: dict) -> list[str]:
    base, adapter = facts["base"], facts["adapter"]
    rows = [("단계 (stage)", STAGES.get(facts["stage"], facts["stage"])), ("방법 (method)", method(h, adapter)),
            ("시작 모델 (model_name_or_path)", f"`{_shown(base['start'])}`"),
            ("base_model (Hub)", base["hub_id"] or "알 수 없음 (로컬 경로: Hub에 올리기 전에 base_model을 적어 주세요)")]
    if adapter:
        targets = adapter.get("target_modules")
        rows += [("LoRA r / alpha / dropout", f"{adapter.get('r')} / {adapter.get('lora_alpha')} / "
                                              f"{adapter.get('lora_dropout')}"),
                 ("LoRA target_modules", ", ".join(sorted(targets)) if isinstance(targets, list) else str(targets))]
    steps = isinstance(h.get("max_steps"), int) and h["max_steps"] > 0  # then max_steps, not epochs, ends the run
    rows += [(key, _value(h[key])) for key in SHOWN if h.get(key) not in (None, -1, [], "") and
             not (key == "max_steps" and not steps) and not (key == "num_train_epochs" and steps)]
    history = facts.get("log_history") or []
    losses = [e for e in history if "loss" in e and "step" in e]
    if losses:
        rows.append(("최종 train loss", f"{losses[-1]['loss']:.4f} (step {losses[-1]['step']})"))
    evals = [e for e in history if "eval_loss" in e]
    if evals:
        rows.append(("최종 eval loss", f"{evals[-1]['eval_loss']:.4f} (step {evals[-1].get('step')})"))
    out = ["", "## 학습 (Training)", "", "| 항목 | 값 |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return out + (["", "![loss curve](loss.png)"] if facts.get("loss_png") else [])


def data(facts: dict) -> list[str]:
    out = ["", "## 데이터 (Data)", "", "| 소스 (source) | 형식 (format) | 라이선스 (license) | 사용 (used) / 전체 (available) "
           "| 제외 (dropped, 이유별) |", "|---|---|---|---|---|"]
    for s in facts["sources"]:
        shown = f"`{s['id']}` (로컬 파일)" if s["local"] else f"[{s['id']}](https://huggingface.co/datasets/{s['id']})"
        dropped = ", ".join(f"{reason}: {n}" for reason, n in s["dropped"].items()) or "0"
        used = f"{_count(s['used'])} / {_count(s['available'])}" + (f" (eval {s['eval']})" if s["eval"] else "")
        out.append(f"| {shown} | {s['format']} | {s['license']} | {used} | {dropped} |")
    if not facts["sources"]:
        out.append("| (데이터 보고서 없음) | | | | |")
    restricted = sorted({s["license"] for s in facts["sources"] if "-nc" in s["license"] or "-nd" in s["license"]})
    if restricted:
        out += ["", f"⚠️ 비상업(NC)/변경금지(ND) 조건의 데이터가 포함되어 있습니다 ({', '.join(restricted)}): 모델을 배포하거나 "
                "상업적으로 쓰기 전에 각 데이터의 라이선스를 확인하세요."]
    return out + ["", "라이선스는 kotune의 KIT-19 레지스트리가 아는 것만 적습니다; 그 밖의 소스는 `unknown`이니 각 데이터의 "
                      "카드를 확인하세요."]


def prompt(h: dict, tokenizer) -> list[str]:
    out = ["", "## 프롬프트 형식 (Prompt format)", "",
           f"`prompt_format: {h.get('prompt_format', 'auto')}`. 학습과 추론은 토크나이저에 저장된 같은 chat template을 "
           "씁니다 (`tokenizer.apply_chat_template`). 한국어 예시 하나를 그 템플릿으로 렌더링하면:"]
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return out + ["", "(이 디렉터리에 chat template이 있는 토크나이저가 없습니다)"]
    try:
        full = tokenizer.apply_chat_template(EXAMPLE, tokenize=False)
        generation = tokenizer.apply_chat_template(EXAMPLE[:1], tokenize=False, add_generation_prompt=True)
    except Exception as err:  # a template that needs other roles: say so rather than fail the run
        return out + ["", f"(렌더링 실패: {type(err).__name__}: {err})"]
    return out + ["", "```text", full, "```", "", "생성할 때 모델에 보내는 프롬프트 (`add_generation_prompt=True`):", "",
                  "```text", generation, "```"]


def evaluation(facts: dict) -> list[str]:
    out = ["", "## 평가 (Evaluation)", ""]
    if facts.get("eval_table"):
        record = facts.get("eval") or {}
        return out + [f"`kotune eval` (lm-eval-harness), num_fewshot {record.get('num_fewshot')}, limit "
                      f"{record.get('limit')}:", "", facts["eval_table"].strip()]
    return out + ["아직 평가 결과가 없습니다. `kotune eval RUN_DIR`를 실행하면 점수가 이 카드(model-index)에 들어갑니다."]


def usage(name: str, facts: dict, h: dict) -> list[str]:
    repo = h.get("hub_model_id") or f"path/to/{name}"
    head = "SequenceClassification" if facts["stage"] == "rm" else "CausalLM"
    adapter = facts["adapter"] is not None and "merge" not in facts
    out = ["", "## 사용법 (How to use)", ""]
    if adapter:
        out += ["PEFT 어댑터 (adapter)로 불러오기:", "", "```python", f"from peft import AutoPeftModelFor{head}",
                "from transformers import AutoTokenizer", "",
                f'model = AutoPeftModelFor{head}.from_pretrained("{repo}")',
                f'tokenizer = AutoTokenizer.from_pretrained("{repo}")', "```", "",
                "`adapter_config.json`의 `base_model_name_or_path`가 베이스를 가리킵니다"
                + ("" if facts["base"]["hub_id"] else " (지금은 로컬 경로: 올리기 전에 Hub id로 바꾸세요)") + ". "
                f"하나의 전체 모델로 병합하려면 `kotune merge {name} --out {name}-merged`.", ""]
    else:
        out += ["transformers로 불러오기 (전체/병합 모델):", "", "```python",
                f"from transformers import AutoModelFor{head}, AutoTokenizer", "",
                f'model = AutoModelFor{head}.from_pretrained("{repo}", dtype="auto")',
                f'tokenizer = AutoTokenizer.from_pretrained("{repo}")', "```", ""]
    if head == "CausalLM":
        out += ["```python", 'messages = [{"role": "user", "content": "대한민국의 수도는 어디인가요?"}]',
                "ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\")",
                "print(tokenizer.decode(model.generate(ids, max_new_tokens=128)[0, ids.shape[1]:], "
                "skip_special_tokens=True))", "```", ""]
    return out + [f"GGUF (llama.cpp): `kotune export {name} --gguf`로 변환합니다."]


def reproducibility(facts: dict) -> list[str]:
    record = facts.get("record") or {}
    versions = record.get("versions") or {}
    shown = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    out = ["", "## 재현 정보 (Reproducibility)", "", "학습 설정 전체는 `kotune_config.yaml`, 실행 기록은 `run_info.json`, "
           "데이터 보고서는 `data_report.json`에 있습니다."]
    if shown:
        out += ["", f"- 버전: {shown}"]
    if record.get("git_sha"):
        out.append(f"- kotune git: `{record['git_sha']}`")
    return out


def _shown(path: str | None) -> str:
    """A local path by its folder name only (a card is public; home dirs are not), a Hub id as it is."""
    if not path:
        return "?"
    p = Path(path).expanduser()
    snapshot = SNAPSHOT.search(str(p.absolute()))
    if snapshot:
        return f"{snapshot[1]}/{snapshot[2]} (HF cache snapshot)"
    return p.name if p.exists() or path.startswith((".", "/", "~")) else path


def _value(value) -> str:
    return ", ".join(map(str, value)) if isinstance(value, list) else f"`{value}`"


def _count(n) -> str:
    return f"{n:,}" if isinstance(n, int) else "?"
