"""Bad inputs around a run, each through the real CLI in its own process: merge and export outputs that would destroy
their input or someone's files, damaged checkpoints, output dirs that cannot be written, GRPO rewards without their
column, zero epochs or steps, duplicate YAML keys, a base without tokenizer files, LoRA targets that match nothing.

A mistake gets exit 2, one `kotune: error:` naming the key, file or value and the fix, no traceback, and nothing
written: no output dir, and every input byte for byte as it was. All processes start first and run together; most
are refused with the config, before torch loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from conftest import REPO, base_config, subprocess_env, write_config

KOTUNE = str(Path(sys.executable).parent / "kotune")
SFT = str(REPO / "train" / "sft.py")
QA = [("대한민국의 수도는 어디인가요?", "서울입니다."), ("일본의 수도는 어디인가요?", "도쿄입니다."),
      ("물은 몇 도에서 끓나요?", "섭씨 100도에서 끓습니다."), ("한글을 만든 왕은 누구인가요?", "세종대왕입니다.")]
PROMPTS = [("사과 3개와 배 4개가 있습니다. 과일은 모두 몇 개인가요?", "7"), ("12에서 5를 빼면 얼마인가요?", "7"),
           ("대한민국의 수도는 어디인가요?", "서울")]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path -> content hash): an input left intact has the same snapshot."""
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass
class Case:
    argv: list[str]
    needles: list[str]  # what the one error must say: the key, file or value, and the fix
    absent: list[Path] = field(default_factory=list)  # must not exist afterwards (output dirs)
    intact: list[Path] = field(default_factory=list)  # must hold exactly what they held before (inputs)
    cwd: Path | None = None
    before: dict = field(default_factory=dict)


def run_cases(cases: dict[str, Case]) -> None:
    for case in cases.values():
        case.before = {path: snapshot(path) for path in case.intact}
    procs = {name: subprocess.Popen(case.argv, env=subprocess_env(), cwd=case.cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True) for name, case in cases.items()}
    failures = []
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        case = cases[name]
        why = []
        if proc.returncode != 2:
            why.append(f"exit {proc.returncode}")
        if "Traceback" in err or err.count("kotune: error:") != 1:
            why.append("not one clean error")
        why += [f"missing {n!r}" for n in case.needles if n not in err]
        why += [f"{p} was written" for p in case.absent if p.exists()]
        why += [f"{p} changed" for p in case.intact if snapshot(p) != case.before[p]]
        if "FutureWarning" in err:
            why.append("a FutureWarning kotune causes")
        if why:
            failures.append(f"{name}: {'; '.join(why)}\n{err[-1500:]}")
    assert not failures, "\n\n".join(failures)
    print(f"{len(cases)} bad inputs refused")


# --- merge and export: nothing lost ----------------------------------------------------------------------------------

def adapter_run(template: Path, base: Path, root: Path) -> tuple[Path, Path]:
    """root/base (a copy of the tiny base) and root/runs/sft (a LoRA adapter on it), as a user's folders look."""
    shutil.copytree(base, root / "base")
    sft = root / "runs" / "sft"
    shutil.copytree(template, sft)
    config = json.loads((sft / "adapter_config.json").read_text())
    (sft / "adapter_config.json").write_text(json.dumps(dict(config, base_model_name_or_path=str(root / "base"))))
    notes = root / "runs" / "notes"
    notes.mkdir()
    (notes / "실험노트.md").write_text("학습률 1e-4에서 가장 좋았음\n", encoding="utf-8")
    return root / "base", sft


def _output_cases(template: Path, base: Path, root: Path) -> dict[str, Case]:
    cases = {}

    def add(name, command, out, needles, cwd=None, run=None):
        case_root = root / f"case{len(cases)}"
        case_root.mkdir()
        base_copy, sft = adapter_run(template, base, case_root)
        out_path = {"runs": sft.parent, "sft": sft, "base": base_copy, "root": case_root, "notes": sft.parent / "notes",
                    "inside base": base_copy / "merged", ".": case_root / "runs"}[out]
        argv = [KOTUNE, command, str(run or sft), "--out", str(out_path) if cwd is None else out, "--overwrite"]
        if command == "export":
            argv.insert(3, "--gguf")
        absent = [out_path] if out == "inside base" else []
        cases[name] = Case(argv, needles, absent=absent, intact=[case_root], cwd=case_root / cwd if cwd else None)

    contains = ["contains the adapter dir", "separate folder that holds no input"]
    add("merge --out runs --overwrite: the folder holding the adapter", "merge", "runs", contains + ["runs/sft'"])
    add("merge --out the adapter dir itself", "merge", "sft", ["is the adapter dir itself", "new folder"])
    add("merge --out the base model dir", "merge", "base", ["is the base model dir itself", "new folder"])
    add("merge --out inside the base model dir", "merge", "inside base", ["inside the base model dir",
                                                                          "separate folder"])
    add("merge --out a folder holding both base and adapter", "merge", "root", contains)
    add("merge --overwrite onto a folder of the user's notes", "merge", "notes",
        ["notes' holds files that `kotune merge` did not write", "merge_info.json", "new or empty folder"])
    add("merge sft --out . from inside runs/", "merge", ".", contains, cwd="runs", run="sft")
    add("export --out runs --overwrite", "export", "runs", contains)
    add("export --out the adapter dir itself", "export", "sft", ["is the adapter dir itself"])
    add("export --out the base model dir", "export", "base", ["is the base model dir itself"])
    add("export --overwrite onto a folder of the user's notes", "export", "notes",
        ["`kotune export` did not write", "export_info.json"])
    return cases


# --- configs refused before anything loads ---------------------------------------------------------------------------

def _checkpoint(path: Path) -> Path:
    """A checkpoint dir as the Trainer writes one (trainer state, adapter weights, optimizer, scheduler)."""
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": 3, "log_history": []}))
    save_file({"base_model.model.w.lora_A.weight": torch.zeros(8, 64)}, path / "adapter_model.safetensors")
    torch.save({"state": {0: {"exp_avg": torch.randn(512)}}, "param_groups": [{"lr": 1e-3}]}, path / "optimizer.pt")
    torch.save({"last_epoch": 3}, path / "scheduler.pt")
    return path


def _truncate(path: Path, by: int = 40) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-by])


def _flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _config_cases(tiny_bases, root: Path) -> dict[str, Case]:
    neox = tiny_bases["gpt_neox"]
    cases = {}

    def add(name, needles, command="sft", text=None, out=None, **extra):
        key = f"case{len(cases)}"
        out = out or root / f"out-{key}"
        cfg = {k: v for k, v in base_config(neox, out, **{"max_steps": 1, **extra}).items() if v is not None}
        path = root / f"{key}.yaml"
        if text:
            path.write_text(text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False)), encoding="utf-8")
        else:
            write_config(path, cfg)
        argv = [sys.executable, SFT, str(path)] if command == "train/sft.py" else [KOTUNE, command, str(path)]
        cases[name] = Case(argv, needles, absent=[out])

    add("max_steps: 0", ["max_steps: 0 trains nothing", "positive number"], max_steps=0)
    add("num_train_epochs: 0", ["num_train_epochs: 0 trains nothing", "max_steps > 0"], max_steps=-1,
        num_train_epochs=0)
    add("num_train_epochs: -1 (python train/sft.py)", ["num_train_epochs: -1 trains nothing"], command="train/sft.py",
        max_steps=-1, num_train_epochs=-1)

    blocker = root / "결과.txt"
    blocker.write_text("이건 폴더가 아니라 파일입니다\n", encoding="utf-8")
    add("output_dir under a file", ["output_dir:", "결과.txt' is a file, not a folder", "choose another output_dir"],
        out=blocker / "sft")

    second = "\n".join(f"    - id: {root / 'other.jsonl'}\n      format: instruction" for _ in range(1))
    add("two dataset_mixture.datasets keys", ["datasets: given twice (lines 5 and 8)", "delete or merge one"],
        text=lambda t: t.replace("  seed: 1\n", f"  seed: 1\n  datasets:\n{second}\n", 1))
    add("learning_rate twice", ["learning_rate: given twice", "YAML keeps only the last"],
        text=lambda t: t + "learning_rate: 0.5\n")
    add("format twice in one source", ["format: given twice (lines", "delete or merge one"],
        text=lambda t: t.replace("format: instruction\n", "format: instruction\n    format: chat\n", 1))

    # GRPO: the reward's column, read from the file's header / first rows
    grpo = dict(reward_funcs=["exact_answer", "hangul_share"], num_generations=2, per_device_train_batch_size=2,
                max_completion_length=8, use_peft=True, max_length=None)  # GRPO has max_completion_length
    renamed = root / "수학문제.jsonl"
    renamed.write_text("".join(json.dumps({"prompt": q, "정답": a}, ensure_ascii=False) + "\n" for q, a in PROMPTS),
                       encoding="utf-8")
    add("GRPO exact_answer on a JSONL whose answer column is 정답", [
        "reward_funcs: exact_answer reads the column 'answer'", "수학문제.jsonl", "its columns: prompt, 정답",
        "columns: {answer: your_column}"], command="grpo",
        dataset_mixture={"datasets": [{"id": str(renamed), "format": "prompt"}]}, **grpo)
    csv_file = root / "prompts.csv"
    csv_file.write_text("prompt,speech_level\n" + "".join(f"{q},합쇼체\n" for q, _ in PROMPTS), encoding="utf-8")
    add("GRPO exact_answer on a CSV without answer", [
        "exact_answer reads the column 'answer'", "prompts.csv", "its columns: prompt, speech_level"],
        command="grpo", dataset_mixture={"datasets": [{"id": str(csv_file), "format": "prompt"}]}, **grpo)

    # resume_from_checkpoint: PATH, a damaged checkpoint named by its file
    damaged = {"adapter weights cut short": ("adapter_model.safetensors", _truncate, "was cut short"),
               "optimizer.pt with a flipped byte": ("optimizer.pt", _flip_middle_byte, "fails its CRC check"),
               "optimizer.pt cut short": ("optimizer.pt", _truncate, "cannot be read as a torch file"),
               "no optimizer.pt": ("optimizer.pt", Path.unlink, "no optimizer.pt"),
               "no scheduler.pt": ("scheduler.pt", Path.unlink, "no scheduler.pt"),
               "no weights": ("adapter_model.safetensors", Path.unlink, "no weights file")}
    for i, (what, (name, spoil, needle)) in enumerate(damaged.items()):
        ckpt = _checkpoint(root / f"ckpt{i}" / "checkpoint-3")
        spoil(ckpt / name)
        add(f"resume_from_checkpoint: {what}", [f"resume_from_checkpoint: '{ckpt}' cannot be resumed", needle,
                                                 "--resume_from_checkpoint=true"], resume_from_checkpoint=str(ckpt))
    return cases


# --- refused when the tokenizer or model loads (torch and transformers imported, still nothing written) -------------

def _load_cases(tiny_bases, root: Path) -> dict[str, Case]:
    cases = {}

    def add(name, needles, command="sft", base=tiny_bases["gpt_neox"], absent=True, **extra):
        key = f"case{len(cases)}"
        out = root / f"out-{key}"
        path = write_config(root / f"{key}.yaml", base_config(base, out, **{"max_steps": 1, **extra}))
        cases[name] = Case([KOTUNE, command, str(path)], needles, absent=[out] if absent else [],
                           intact=[] if absent else [out])

    bare = root / "base-without-tokenizer"
    bare.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_bases["gpt_neox"] / name, bare / name)
    add("a base dir without tokenizer files (SFT)", [
        "cannot encode Korean text", "base-without-tokenizer' has no tokenizer files", "encodes to 0 ids",
        "tokenizer.json"], base=bare)
    preference = root / "선호.jsonl"
    preference.write_text("".join(json.dumps({"prompt": q, "chosen": a, "rejected": "몰라."}, ensure_ascii=False) + "\n"
                                  for q, a in QA), encoding="utf-8")
    add("a base dir without tokenizer files (DPO)", ["cannot encode Korean text", "has no tokenizer files"],
        command="dpo", base=bare, dataset_mixture={"datasets": [{"id": str(preference), "format": "preference"}]})
    add("lora_target_modules from Llama on Polyglot (GPT-NeoX)", [
        "lora_target_modules: 'q_proj', 'v_proj' match no module", "query_key_value, dense, dense_h_to_4h"],
        lora_target_modules=["q_proj", "v_proj"])
    add("lora_target_modules with one name the model lacks", [
        "lora_target_modules: 'query_key_value' matches no module of this llama model",
        "q_proj, k_proj, v_proj, o_proj"], base=tiny_bases["llama"], lora_target_modules=["q_proj", "query_key_value"])

    out = root / "resume-out"
    _truncate(_checkpoint(out / "checkpoint-6") / "adapter_model.safetensors")
    path = write_config(root / "resume.yaml", base_config(tiny_bases["gpt_neox"], out, max_steps=8))
    cases["resume_from_checkpoint: true with only a damaged checkpoint"] = Case(
        [KOTUNE, "sft", str(path), "--resume_from_checkpoint=true"],
        ["no complete checkpoint", "drop the flag", "skipping incomplete checkpoint", "adapter_model.safetensors"],
        intact=[out])
    return cases


def test_bad_inputs_around_a_run_get_one_message_and_lose_nothing(tiny_bases, tmp_path):
    template = tmp_path / "adapter-template"
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_bases["gpt_neox"]),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["query_key_value"]))
    model.save_pretrained(template)
    AutoTokenizer.from_pretrained(tiny_bases["gpt_neox"]).save_pretrained(template)
    roots = [tmp_path / name for name in ("outputs", "configs", "loads")]
    for root in roots:
        root.mkdir()
    cases = {**_output_cases(template, tiny_bases["gpt_neox"], roots[0]), **_config_cases(tiny_bases, roots[1]),
             **_load_cases(tiny_bases, roots[2])}
    assert len(cases) >= 30
    run_cases(cases)
    assert not [p for p in tmp_path.rglob(".*writing-*")], "a staging dir was left behind"


# --- what is not a mistake ------------------------------------------------------------------------------------------

def test_automatic_resume_skips_damaged_checkpoints_and_says_why(tmp_path, caplog):
    from kotune.stages.checkpoints import latest_complete, resolve_resume

    good = _checkpoint(tmp_path / "checkpoint-2")
    _flip_middle_byte(_checkpoint(tmp_path / "checkpoint-4") / "optimizer.pt")
    _truncate(_checkpoint(tmp_path / "checkpoint-6") / "adapter_model.safetensors")
    with caplog.at_level(logging.WARNING, logger="kotune"):
        assert latest_complete(tmp_path) == good
        assert resolve_resume(str(tmp_path), "true") == str(good)
    skipped = [r.getMessage() for r in caplog.records if "skipping incomplete checkpoint" in r.getMessage()]
    assert any("checkpoint-6" in m and "adapter_model.safetensors" in m for m in skipped), skipped
    assert any("checkpoint-4" in m and "optimizer.pt" in m and "CRC" in m for m in skipped), skipped


def test_merge_overwrite_replaces_its_own_output(tiny_bases, tmp_path):
    """--overwrite still replaces what an earlier merge wrote (recognised by merge_info.json)."""
    from kotune.atomic_dir import check_out

    previous = tmp_path / "merged"
    previous.mkdir()
    (previous / "merge_info.json").write_text("{}")
    check_out(previous, {"adapter dir": tmp_path / "runs" / "sft"}, True, "merge_info.json", "kotune merge")


def test_yaml_merge_keys_are_not_duplicates(tmp_path):
    from kotune.config.loading import read_yaml

    path = tmp_path / "c.yaml"
    path.write_text("base: &b {learning_rate: 1.0e-4, max_steps: 5}\nrun:\n  <<: *b\n  max_steps: 10\n")
    assert read_yaml(str(path))["run"] == {"learning_rate": 1.0e-4, "max_steps": 10}


def test_kotune_sets_checkpointing_by_its_new_name(tiny_bases, tmp_path):
    """transformers 5.x warns on `gradient_checkpointing` (TRL's configs set it by default) and PEFT reads the
    deprecated `is_gradient_checkpointing`: neither FutureWarning reaches a kotune run; the setting still holds."""
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from kotune.config.validation import build_config
    from kotune.logs import quiet_library_noise

    for on in (True, False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet_library_noise()
            cfg = build_config(base_config(tiny_bases["llama"], tmp_path / "out", gradient_checkpointing=on))
            get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_bases["llama"]), LoraConfig(r=4))
        assert cfg.training.gradient_checkpointing is on and cfg.training.activation_checkpointing is on
        assert not [w for w in caught if issubclass(w.category, FutureWarning) and "checkpointing" in str(w.message)]
