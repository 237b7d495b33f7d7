"""Other projects' recipe keys, read as those projects mean them: TRL, alignment-handbook, open-r1 and SimPO.

A recipe from those repositories runs with only its paths changed. `translate` turns their keys into kotune's before
any check, so the rest of the config code sees kotune's keys only, and it says what it did: one line per key mapped,
aliased or ignored (logged by `build_config`), or a problem when a key cannot mean what the recipe meant.

- TRL's script arguments (`dataset_name`, `dataset_config`, `dataset_train_split`, `dataset_test_split`,
  `dataset_streaming`) and its `datasets:` list become one `dataset_mixture`.
- alignment-handbook's mixture (a source's `config`, `columns` as a list, `weight`, and `test_split_size`) is kotune's
  own mixture; `test_split_size` is `eval_split_size`. Its older `dataset_mixer`/`dataset_splits` are read too.
- Old transformers names are aliases with one deprecation line each.
- Keys that steer other projects' scripts (open-r1's `benchmarks`, `callbacks`, ...) are named as ignored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("kotune.config")

# Old transformers/TRL names -> today's; every alignment-handbook, open-r1 and SimPO recipe still writes them.
ALIASES = {"warmup_ratio": "warmup_steps", "torch_dtype": "dtype", "max_seq_length": "max_length",
           "evaluation_strategy": "eval_strategy", "hub_model_revision": "hub_revision",
           "use_liger": "use_liger_kernel"}

# Keys other projects' scripts read that change nothing in how kotune trains: key -> what it does there.
IGNORED = {
    "benchmarks": "open-r1's list of benchmarks run after training; kotune evaluates with eval_tasks",
    "callbacks": "open-r1's callbacks (push_to_hub_revision); kotune pushes with push_to_hub and hub_revision",
    "overwrite_hub_revision": "open-r1/alignment-handbook: overwrite the Hub branch; kotune never overwrites it",
    "push_to_hub_revision": "open-r1/alignment-handbook: push each checkpoint to a Hub branch; use push_to_hub and "
                            "hub_strategy",
    "wandb_entity": "open-r1's W&B entity; set WANDB_ENTITY in the environment",
    "wandb_project": "open-r1's W&B project; set WANDB_PROJECT in the environment",
    "wandb_run_group": "open-r1's W&B run group; set WANDB_RUN_GROUP in the environment",
    "wandb_log_unique_prompts": "open-r1's W&B table of GRPO prompts",
    "num_completions_to_print": "open-r1/TRL's console print of sample completions",
    "ignore_bias_buffers": "TRL's DDP debug switch for bias buffers, which kotune's models do not need",
    "preprocessing_num_workers": "alignment-handbook's tokenizing processes; kotune uses dataset_num_proc",
    "auto_insert_empty_system_msg": "alignment-handbook's empty system turn; kotune keeps the base's template",
    "save_total_limit_on_hub": "a Hub upload limit kotune does not manage",
    "vllm_device": "TRL ≤ 0.17's vLLM GPU; TRL now places vLLM with vllm_mode",
    "code_eval_test_batch_size": "open-r1's code-execution rewards, which kotune does not ship",
    "code_eval_scoring_mode": "open-r1's code-execution rewards, which kotune does not ship",
    "code_language": "open-r1's code-execution rewards, which kotune does not ship",
    "parallel_code_exec_per_proc": "open-r1's code-execution rewards, which kotune does not ship",
    "e2b_router_url": "open-r1's code-execution sandbox",
    "morph_router_url": "open-r1's code-execution sandbox",
}

# open-r1's reward names that TRL ships under its own name.
OPEN_R1_REWARDS = {"accuracy": "accuracy_reward", "format": "think_answer_format", "tag_count": "think_answer_tags"}

SCRIPT_DATA_KEYS = ("dataset_name", "dataset_config", "dataset_train_split", "dataset_test_split",
                    "dataset_streaming")
TRL_MIXTURE_KEYS = ("datasets", "streaming", "test_split_size")
HF_BUILDERS = {"json", "csv", "parquet", "text"}  # load_dataset(path=builder, data_files=...) reads a local file


@dataclass
class Translation:
    """kotune's raw config, the lines that say what was read how, and what cannot be read."""

    raw: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def translate(raw: dict[str, Any], stage: str, valid: set[str]) -> Translation:
    """`raw` with other projects' keys turned into kotune's; `valid` is the stage's own key set (a key that is valid
    there is never touched)."""
    out = Translation(dict(raw))
    _aliases(out, valid)
    _script_data(out)
    _trl_mixture(out)
    _handbook_mixer(out)
    _handbook_mixture(out)
    _preference(out, stage)
    _training_flags(out, stage)
    for key in [k for k in out.raw if k in IGNORED and k not in valid]:
        out.raw.pop(key)
        out.notes.append(f"{key}: ignored ({IGNORED[key]})")
    return out


def _aliases(out: Translation, valid: set[str]) -> None:
    for old, new in ALIASES.items():
        if old not in out.raw or old in valid:
            continue
        value = out.raw.pop(old)
        if new in out.raw:
            out.problems.append(f"{old} and {new} are both set: {old} is the old name of {new}; keep {new}")
            continue
        if old == "warmup_ratio" and not (isinstance(value, (int, float)) and 0 <= value < 1):
            out.problems.append(f"warmup_ratio: {value!r} must be a ratio in [0, 1) (or write warmup_steps)")
            continue
        out.raw[new] = float(value) if old == "warmup_ratio" else value
        out.notes.append(f"{old}: deprecated name, read as {new}={out.raw[new]!r} (write {new})")


def _take(out: Translation, keys) -> dict[str, Any]:
    return {k: out.raw.pop(k) for k in keys if k in out.raw}


def _evaluates(raw: dict) -> bool:
    """Whether an eval split is used, as TRL's scripts decide it (eval_strategy other than 'no')."""
    return raw.get("eval_strategy", raw.get("evaluation_strategy")) not in (None, "no")


def _script_data(out: Translation) -> None:
    """TRL's `dataset_name` & co.: one source, plus its test split as an eval source when the run evaluates."""
    given = _take(out, SCRIPT_DATA_KEYS)
    if not given:
        return
    if "dataset_name" not in given:
        out.problems.append(f"{', '.join(given)}: set without dataset_name, so they name no dataset: add "
                            "dataset_name, or remove them")
        return
    if "dataset_mixture" in out.raw or "datasets" in out.raw:
        out.problems.append("dataset_name and dataset_mixture (or datasets) are both set: give the data once "
                            "(TRL would ignore dataset_name)")
        return
    source = {"id": given["dataset_name"]}
    if given.get("dataset_config"):
        source["config"] = given["dataset_config"]
    if given.get("dataset_streaming"):
        source["streaming"] = True
    source["split"] = given.get("dataset_train_split", "train")
    sources = [source]
    test = given.get("dataset_test_split", "test")
    if _evaluates(out.raw):
        sources.append({**source, "split": test, "eval": True})
        out.notes.append(f"dataset_test_split: the '{test}' split of {source['id']} is the eval set")
    elif "dataset_test_split" in given:
        out.notes.append(f"dataset_test_split: ignored, eval_strategy is 'no' (as in TRL's scripts)")
    out.raw["dataset_mixture"] = {"datasets": sources}
    out.notes.append(f"dataset_name: read as dataset_mixture {{datasets: {sources}}}")


def _trl_mixture(out: Translation) -> None:
    """TRL's `datasets:` list (DatasetMixtureConfig): path/name/data_files/split/columns/fraction per source."""
    if not isinstance(out.raw.get("datasets"), list):
        return
    given = _take(out, TRL_MIXTURE_KEYS)
    if "dataset_mixture" in out.raw:
        out.problems.append("datasets and dataset_mixture are both set: give the data once")
        return
    mixture: dict[str, Any] = {"datasets": given["datasets"]}
    if given.get("streaming"):
        mixture["datasets"] = [{**s, "streaming": True} if isinstance(s, dict) else s for s in given["datasets"]]
    if given.get("test_split_size") is not None:
        mixture["test_split_size"] = given["test_split_size"]
    out.raw["dataset_mixture"] = mixture
    out.notes.append("datasets: TRL's dataset list, read as dataset_mixture")


def _handbook_mixer(out: Translation) -> None:
    """alignment-handbook's older `dataset_mixer: {id: fraction}` with `dataset_splits: [train..., test...]`."""
    if "dataset_mixer" not in out.raw:
        return
    mixer = out.raw.pop("dataset_mixer")
    splits = out.raw.pop("dataset_splits", ["train", "test"])
    if not isinstance(mixer, dict) or not isinstance(splits, list):
        out.problems.append("dataset_mixer: expected {dataset id: fraction} and dataset_splits a list of splits")
        return
    sources, unused = [], set()
    for name, fraction in mixer.items():
        for split in splits:
            evaluated = "test" in str(split)
            if evaluated and not _evaluates(out.raw):
                unused.add(split)
                continue
            sources.append({"id": name, "split": split, **({"eval": True} if evaluated else {"weight": fraction})})
    for split in sorted(unused):
        out.notes.append(f"dataset_splits: '{split}' not read, eval_strategy is 'no'")
    out.raw["dataset_mixture"] = {"datasets": sources}
    out.notes.append("dataset_mixer: alignment-handbook's older mixer, read as dataset_mixture (fraction = weight)")


def _handbook_mixture(out: Translation) -> None:
    """Inside dataset_mixture: test_split_size -> eval_split_size, and TRL's source keys -> kotune's."""
    mixture = out.raw.get("dataset_mixture")
    if not isinstance(mixture, dict):
        return
    mixture = out.raw["dataset_mixture"] = dict(mixture)
    if "test_split_size" in mixture:
        size = mixture.pop("test_split_size")
        if size is not None:
            if out.raw.get("eval_split_size") is not None:
                out.problems.append("dataset_mixture.test_split_size and eval_split_size are both set: keep one")
            else:
                out.raw["eval_split_size"] = size
                out.notes.append(f"dataset_mixture.test_split_size: read as eval_split_size={size!r}")
    if isinstance(mixture.get("datasets"), list):
        mixture["datasets"] = [_source(s, i, out) if isinstance(s, dict) else s
                               for i, s in enumerate(mixture["datasets"])]


def _source(source: dict, i: int, out: Translation) -> dict:
    here = f"dataset_mixture.datasets[{i}]"
    source = dict(source)
    if "path" in source and "id" not in source:
        path = source.pop("path")
        files = source.pop("data_files", None)
        if path in HF_BUILDERS and isinstance(files, str):
            source["id"] = files
        elif files is not None or "data_dir" in source:
            out.problems.append(f"{here}: data_files/data_dir on '{path}' are not read by kotune: name the file "
                                "itself as id (json/jsonl/csv/parquet), one source per file")
            source["id"] = path
        else:
            source["id"] = path
    if "name" in source and "config" not in source:
        source["config"] = source.pop("name")
    if "fraction" in source:
        if source["fraction"] is None:
            source.pop("fraction")
        else:
            source["share"] = source.pop("fraction")
            out.notes.append(f"{here}.fraction: TRL's share of the mixture, read as share={source['share']!r}")
    return source


def _preference(out: Translation, stage: str) -> None:
    """SimPO's own recipes: `gamma_beta_ratio` (gamma = ratio × beta) and `sft_weight` (CPO's NLL weight)."""
    raw = out.raw
    if "gamma_beta_ratio" in raw:
        ratio = raw.pop("gamma_beta_ratio")
        if stage != "simpo":
            out.problems.append(f"gamma_beta_ratio: SimPO's margin, read by the simpo stage only (this is {stage})")
        elif "simpo_gamma" in raw:
            out.problems.append("gamma_beta_ratio and simpo_gamma are both set: keep one (simpo_gamma = "
                                "gamma_beta_ratio × beta)")
        elif not isinstance(ratio, (int, float)) or isinstance(ratio, bool):
            out.problems.append(f"gamma_beta_ratio: expected a number, got {ratio!r}")
        else:
            beta = float(raw.get("beta", 0.1))  # CPOConfig's default beta
            raw["simpo_gamma"] = ratio * beta
            out.notes.append(f"gamma_beta_ratio: {ratio} × beta {beta} = simpo_gamma {ratio * beta:g} "
                             "(TRL's simpo_gamma is the margin itself)")
            if raw.get("loss_type") in ("sigmoid", "hinge") and "cpo_alpha" not in raw:
                raw["loss_type"] = "simpo"  # the SimPO repository's loss_type names the SimPO loss's shape
                out.notes.append("loss_type: SimPO's recipes name the shape of the SimPO loss; read as simpo")
    if "sft_weight" in raw and stage in ("simpo", "cpo"):
        if "cpo_alpha" in raw:
            out.problems.append("sft_weight and cpo_alpha are both set: keep cpo_alpha (TRL's name)")
        else:
            raw["cpo_alpha"] = raw.pop("sft_weight")
            out.notes.append(f"sft_weight: SimPO's NLL weight, read as cpo_alpha={raw['cpo_alpha']!r}")


def _training_flags(out: Translation, stage: str) -> None:
    raw = out.raw
    if raw.get("packing_strategy") == "ffd":
        raw["packing_strategy"] = "bfd"
        out.notes.append("packing_strategy: ffd is TRL 0.19's name of bfd (best-fit decreasing)")
    if "dataset_prompt_column" in raw and stage == "grpo":
        column = raw.pop("dataset_prompt_column")
        mixture = raw.get("dataset_mixture")
        if column != "prompt" and isinstance(mixture, dict) and isinstance(mixture.get("datasets"), list):
            for source in mixture["datasets"]:
                if isinstance(source, dict) and not source.get("columns"):
                    source["columns"] = {"prompt": column}
            out.notes.append(f"dataset_prompt_column: open-r1's prompt column, read as columns: {{prompt: {column}}}")
    if isinstance(raw.get("scale_rewards"), bool) and stage == "grpo":
        raw["scale_rewards"] = {True: "group", False: "none"}[raw["scale_rewards"]]  # TRL's own mapping
        out.notes.append(f"scale_rewards: boolean read as {raw['scale_rewards']!r}, as TRL reads it")
    if "assistant_only_loss" in raw and stage == "sft":
        if raw["assistant_only_loss"] is True:
            raw.pop("assistant_only_loss")
            out.notes.append("assistant_only_loss: true is how kotune always trains (loss on the assistant turns "
                             "only, their end-of-turn included)")
        elif raw["assistant_only_loss"] is False:
            raw.pop("assistant_only_loss")
            out.problems.append("assistant_only_loss: false would train on the user turns too; kotune trains on "
                                "the answers only: remove the key")
    if "system_prompt" in raw and stage != "grpo":
        raw.pop("system_prompt")
        out.notes.append("system_prompt: ignored (open-r1 hands it to its benchmark jobs after SFT; in kotune it "
                         "steers GRPO prompts, and SFT rows carry their own system turns)")
    rewards = raw.get("reward_funcs")
    if stage == "grpo" and isinstance(rewards, list):
        mapped = [OPEN_R1_REWARDS.get(r, r) if isinstance(r, str) else r for r in rewards]
        for old, new in zip(rewards, mapped):
            if old != new:
                out.notes.append(f"reward_funcs: open-r1's '{old}' is TRL's {new}")
        raw["reward_funcs"] = mapped


def template_problems(user: dict, check_paths: bool) -> list[str]:
    """A recipe's chat template: one source of it, and a file or dir that exists."""
    given = [k for k in ("chat_template", "chat_template_path") if user.get(k) is not None]
    problems = []
    if len(given) == 2:
        problems.append("chat_template and chat_template_path are both set: keep one")
    if given and user.get("prompt_format", "auto") != "auto":
        problems.append(f"{given[0]} and prompt_format: {user['prompt_format']} both choose the template: keep one")
    path = user.get("chat_template_path")
    if check_paths and isinstance(path, str) and not Path(path).expanduser().exists():
        problems.append(f"chat_template_path: '{path}' does not exist (a .jinja file, or a local model dir with a "
                        "saved chat template)")
    return problems


def attention_fallback(model: dict) -> None:
    """flash_attention_2/3 on a machine without the package (or without a CUDA GPU): sdpa, the same attention
    computed by torch, with one warning, instead of transformers' ImportError after the model has loaded."""
    wanted = model.get("attn_implementation")
    if wanted not in ("flash_attention_2", "flash_attention_3"):
        return
    import importlib.util

    package = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}[wanted]
    missing = importlib.util.find_spec(package) is None
    if missing or not _has_cuda():
        model["attn_implementation"] = "sdpa"
        logger.warning("attn_implementation: %s needs %s, which this machine lacks: using sdpa (the same attention, "
                       "computed by torch)%s", wanted, f"the {package} package" if missing else "a CUDA GPU",
                       f"; pip install {package.replace('_', '-')} to use it" if missing else "")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
