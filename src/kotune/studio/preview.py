"""What the model will learn, and will it fit: views over `kotune data` and `kotune plan`, not copies of them.

`learn` runs the same steps as `kotune data` (`tools.data_report.run_data_report`): the sources read and checked,
the base's tokenizer with the run's chat template (`prepare_chat_tokenizer`), the mixture encoded and cached by
`prepare_sft_data` (input_ids, and labels that are -100 where no loss is taken), the report by `build_report`. The
studio only cuts the first rows into spans for the page: which tokens carry loss, and which one ends the turn.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from kotune.config.validation import build_config, check_config
from kotune.errors import ConfigError, KotuneError

REPLACEMENT = "\ufffd"  # a token that ends inside a UTF-8 character (byte-level BPE cuts Hangul syllables in 3)


def token_spans(tokenizer, ids: list[int], labels: list[int], turn_ends: set[int]) -> list[dict]:
    """The row as display spans: {text, ids, loss (the token is trained on), eot (it ends the turn)}. Tokens that
    only together make a character are one span (flags of the last)."""
    spans, group = [], []
    for i, token in enumerate(ids):
        group.append(i)
        text = tokenizer.decode([ids[j] for j in group], skip_special_tokens=False)
        if text.endswith(REPLACEMENT) and i + 1 < len(ids) and len(group) < 4:
            continue
        spans.append({"text": text, "ids": [ids[j] for j in group], "loss": labels[i] != -100,
                      "eot": token in turn_ends})
        group = []
    return spans


def learn(raw: dict, source: str, rows: int = 8) -> dict:
    """The first `rows` training examples as spans, the data report `kotune data` prints, and its text."""
    kotune, mixture, *_, problems = check_config(raw, stage="sft")
    if problems:
        raise ConfigError(problems, source)
    from kotune.data.mixture import load_all

    loaded = load_all(mixture, kotune.get("strict", False))
    cfg = build_config(raw, stage="sft", source=source)

    from kotune.data.prompt_formats import end_of_turn_ids
    from kotune.data.report import format_report
    from kotune.tools.data_report import sft_report

    tokenizer, variants, report = sft_report(cfg, loaded)
    turn_ends = set(end_of_turn_ids(tokenizer)) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None
                                                   else set())
    first = variants[0].select(range(min(rows, len(variants[0]))))
    examples = [{"spans": token_spans(tokenizer, list(ids), list(labels), turn_ends), "tokens": len(ids),
                 "trained": sum(1 for x in labels if x != -100)}
                for ids, labels in zip(first["input_ids"], first["labels"])]
    dropped = {sid: s["dropped"] for sid, s in report["per_source"].items() if s["dropped"]}
    answers = {sid: s["answers"] for sid, s in report["per_source"].items() if s.get("answers")}
    return {"examples": examples, "report": report, "text": format_report(report), "dropped": dropped,
            "answers": answers, "tokens_per_hangul_syllable": report["tokens_per_hangul_syllable"],
            "eot_tokens": [tokenizer.convert_ids_to_tokens(i) for i in sorted(turn_ends)],
            "template": tokenizer.chat_template or ""}


def plan(config_path: Path, gpus: int, gpu_mem: str | None, stage: str) -> dict:
    """`kotune plan`'s table for a saved config, and the verdict in one plain sentence."""
    from kotune.tools.plan import run_plan

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = run_plan([str(config_path)], gpus=gpus, gpu_mem=gpu_mem, stage=stage)
        except KotuneError as err:
            return {"ok": False, "table": "", "words": str(err), "fits": None}
    table = out.getvalue().strip()
    return {"ok": True, "table": table, "fits": None if not gpu_mem else code == 0,
            "words": plain_words(table, gpus, gpu_mem, code)}


def plain_words(table: str, gpus: int, gpu_mem: str | None, code: int) -> dict[str, str]:
    """The plan's verdict as a sentence, in English and Korean (no OOM/TIGHT jargon)."""
    total = re.search(r"^\s*total\s+([\d.]+) GiB", table, re.M)
    need = total.group(1) if total else "?"
    if not gpu_mem:
        return {"en": f"Each of the {gpus} GPU(s) needs about {need} GiB of memory for this run.",
                "ko": f"이 설정으로 학습하려면 GPU {gpus}장 각각에 메모리가 약 {need} GiB 필요합니다."}
    if code == 0:
        return {"en": f"It fits: each GPU needs about {need} GiB of its {gpu_mem}.",
                "ko": f"메모리가 충분합니다. GPU 한 장에 {gpu_mem} 중 약 {need} GiB를 씁니다."}
    return {"en": f"It will not fit: each GPU would need about {need} GiB but has {gpu_mem}. Turn on gradient "
                  "checkpointing, lower the batch size or max_length, use QLoRA (4-bit), or add GPUs.",
            "ko": f"메모리가 모자랍니다. GPU 한 장에 약 {need} GiB가 필요한데 {gpu_mem}뿐입니다. gradient "
                  "checkpointing을 켜거나, 배치 크기나 max_length를 줄이거나, QLoRA(4비트)로 바꾸거나, GPU를 늘려 보세요."}
