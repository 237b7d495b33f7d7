"""kotune's own config fields, and the constants that shape every config. A leaf: no kotune imports.

Field names are TRL's and transformers' wherever they have one (their schema is `library_fields.json`); the
dataclasses here hold only what they lack (`dataset_mixture`, `prompt_format`, `overwrite_output_dir`, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class DatasetSource:
    """One source of a mixture. Only `id` and `format` are required."""

    id: str = field(metadata={"help": "A local file (json/jsonl/csv/parquet) or a Hub dataset id."})
    format: str | None = field(
        default=None,
        metadata={"help": "instruction | chat | sharegpt | preference | unpaired | prompt | kit19/<task name>. Left "
                          "out: inferred from the columns when the data is read (messages → chat, prompt/chosen/"
                          "rejected → preference, ...), and the log says what was inferred."},
    )
    config: str | None = field(
        default=None,
        metadata={"help": "The Hub dataset's config (subset), e.g. 'all' or 'ko' (datasets.load_dataset's name)."},
    )
    split: str | None = field(
        default=None,
        metadata={"help": "Split of a Hub dataset to read (default train; for kit19/* the registry's own split of its "
                          "Hub copy, e.g. APEACH's test)."},
    )
    columns: dict[str, str] | list[str] = field(
        default_factory=dict,
        metadata={"help": "A map from kotune's field name to your column name, e.g. {output: answer}; or a list of "
                          "the columns to keep (alignment-handbook, TRL), each already under kotune's name."},
    )
    weight: float = field(
        default=1.0,
        metadata={"help": "The fraction of this source's rows to use: 0.5 takes half of them, 2.0 every row twice "
                          "(rows drawn with the mixture's seed), as alignment-handbook reads it. 1.0: every row once."},
    )
    share: float | None = field(
        default=None,
        metadata={"help": "This source's part of the whole mixture, relative to the other sources' shares (TRL's "
                          "fraction); give it to every source or none. The largest mixture in which no source "
                          "repeats a row is drawn. Cannot be combined with weight."},
    )
    max_samples: int | None = field(default=None, metadata={"help": "Cap on rows taken from this source."})
    eval: bool = field(
        default=False,
        metadata={"help": "Use this source for evaluation only (e.g. a validation split): eval loss, best checkpoint, "
                          "early stopping; it is never trained on."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Read the source lazily (large Hub datasets): only max_samples rows (5,000 for kit19/*, "
                          "else all) are fetched."},
    )
    documents: Literal["file", "paragraphs"] = field(
        default="file",
        metadata={"help": "Plain .txt sources of the pt stage: a whole file is one document (file), or each block "
                          "between blank lines is one (paragraphs)."},
    )
    encoding: str | None = field(
        default=None,
        metadata={"help": "Text encoding of a local CSV/TSV/JSON/JSONL file that is not UTF-8: cp949 (EUC-KR, as "
                          "Korean Windows and Excel save it; euc-kr is read as cp949), utf-16, ... Unset: UTF-8, and a "
                          "file with a byte order mark (UTF-16/32) is read as it says; a CP949 or UTF-16 file without "
                          "one is refused, naming the encoding to set."},
    )


@dataclass
class DatasetMixture:
    """Sources plus the seed that makes sampling reproducible."""

    datasets: list[DatasetSource] = field(metadata={"help": "The sources; see DatasetSource."})
    seed: int = field(default=42, metadata={"help": "Seed for sampling and shuffling the mixture."})
    formats: tuple[str, ...] = field(default=(), init=False, repr=False)  # what the stage reads (format inference)


@dataclass
class KotuneArguments:
    """kotune's own fields: everything TRL and transformers have no name for."""

    dataset_mixture: DatasetMixture | None = field(
        default=None, metadata={"help": "Training data: {seed, datasets: [{id, format, ...}]}."}
    )
    prompt_format: Literal["auto", "komt", "koquality", "llama2", "mistral"] = field(
        default="auto",
        metadata={"help": "Prompt format (stored as the tokenizer's chat template). auto = the base's default."},
    )
    chat_template: str | None = field(
        default=None,
        metadata={"help": "A Jinja chat template (alignment-handbook's chat_template): the data is encoded with it, "
                          "and it is saved and served with the model, byte for byte. Overrides prompt_format."},
    )
    chat_template_path: str | None = field(
        default=None,
        metadata={"help": "A .jinja file, or a local model/tokenizer dir, whose chat template is encoded with, saved "
                          "and served, byte for byte (TRL's chat_template_path)."},
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into an existing, non-empty output_dir."}
    )
    overlong: Literal["drop", "truncate"] = field(
        default="drop",
        metadata={"help": "Rows longer than max_length: drop them (counted) or cut the answer (EOS is then lost)."},
    )
    strict: bool = field(default=False, metadata={"help": "Raise on the first bad data row instead of skipping it."})
    train_on_turns: Literal["all", "last"] = field(
        default="all",
        metadata={"help": "SFT on chat data: learn every assistant turn (all) or only the last one (last); earlier "
                          "turns are then context."},
    )
    thinking: Literal["auto", "on", "off"] = field(
        default="auto",
        metadata={"help": "Reasoning bases: the chat template's thinking switch (enable_thinking, force_reasoning/"
                          "skip_reasoning, reasoning_effort, ... found in the template). auto: in training a row with "
                          "reasoning (reasoning_content or <think>) trains in thinking mode, one without in "
                          "non-thinking mode; at inference the template's default. on/off: every row and prompt in "
                          "that mode; off drops (and counts) the rows' reasoning."},
    )
    eeve_stage: int | None = field(
        default=None,
        metadata={"help": "After `kotune vocab extend`: which weights train, as EEVE's staged schedule (arXiv "
                          "2402.14714): 1 new input rows, 2 new output rows, 3 both, 4 all output rows, 5 new input "
                          "rows and all output rows, 6 everything, 7 the internal layers only. Old rows that do not "
                          "train get no gradient, no weight decay and no optimizer state."},
    )
    embedding_learning_rate: float | None = field(
        default=None,
        metadata={"help": "A learning rate of its own for the embedding and output rows that train (vocabulary "
                          "extension); unset: learning_rate."},
    )
    max_prompt_length: int | None = field(
        default=None,
        metadata={"help": "DPO, ORPO, SimPO, CPO, KTO, reward model, GRPO: drop (and count) rows whose prompt is "
                          "longer than this many tokens."},
    )
    system_prompt: str | None = field(
        default=None,
        metadata={"help": "GRPO: a system message put before every prompt that has none (open-r1's system_prompt)."},
    )
    reward_funcs: list[str] = field(
        default_factory=list,
        metadata={"help": "GRPO: the rewards, by name (kotune's exact_answer, hangul_share, speech_level, or TRL's "
                          "accuracy_reward, think_format_reward, ...) or as module:function; weigh them with "
                          "reward_weights."},
    )
    data_cache: bool = field(
        default=True, metadata={"help": "Reuse preprocessed data from $KOTUNE_CACHE_DIR (~/.cache/kotune/data)."}
    )
    eval_split_size: float | None = field(
        default=None,
        metadata={"help": "Hold out this share (below 1) or this number of rows of the training sources for "
                          "evaluation, drawn with the mixture's seed before sampling, so no row is in both sets."},
    )
    early_stopping_patience: int | None = field(
        default=None,
        metadata={"help": "Stop after this many evaluations without improvement of metric_for_best_model "
                          "(needs load_best_model_at_end: true)."},
    )
    early_stopping_threshold: float = field(
        default=0.0, metadata={"help": "How much metric_for_best_model must improve to count as an improvement."}
    )
    answer_health_prompts: int = field(
        default=8,
        metadata={"help": "At each evaluation, answer this many eval prompts greedily and log the Hangul share and "
                          "the speech-level mix (합쇼체/해요체/반말) of the answers; 0 turns it off."},
    )
    eval_tasks: list[str] = field(
        default_factory=list,
        metadata={"help": "SFT: after saving, score the model with `kotune eval` on these tasks, e.g. [kit19], [korean] or "
                          "[kobest_copa, klue_sts]; results in output_dir/eval. Empty = no evaluation."},
    )
    eval_num_fewshot: int = field(default=0, metadata={"help": "In-context examples per eval question."})
    eval_limit: float | None = field(
        default=None, metadata={"help": "Eval rows per task (or a share < 1): quick checks only."}
    )
    eval_data_dir: str | None = field(
        default=None,
        metadata={"help": "Read eval data from DIR/<task>/{train,validation,test}.jsonl instead of the Hub."},
    )
    eval_baseline: str | None = field(
        default=None, metadata={"help": "Shown beside the eval scores: a model dir, a results.json, or 'base'."}
    )


# Values kotune chooses when the user leaves a field unset (logged by name when applied).
TRAINING_DEFAULTS: dict[str, Any] = {
    "report_to": ["tensorboard"],
    "logging_steps": 10,
    # LoRA and checkpointed blocks use every trainable parameter; the DDP search only costs time and warnings.
    "ddp_find_unused_parameters": False,
}
# Values kotune always sets, because the library default hides a failure.
TRAINING_FORCED: dict[str, Any] = {
    # The default replaces a NaN/inf loss by the running mean in logs; kotune stops the run instead.
    "logging_nan_inf_filter": False,
}
# Keys that older transformers/TRL releases (and most tutorials) use, with what to write now.
RENAMED = {
    "max_prompt_length_chars": "max_prompt_length",
    "bnb_4bit_use_double_quant": "use_bnb_nested_quant",
    "bnb_4bit_compute_dtype": "dtype (the compute dtype of the 4-bit layers)",
}
# Launcher-added arguments accepted and ignored (the launcher's env vars carry the rank).
LAUNCHER_KEYS = {"local_rank", "local-rank"}

# Values the libraries accept when a config is built but fail on (or silently misuse) later; checked with the
# rest of the config, before anything heavy is imported or written. key -> (low, high, why); a bound in a list is
# inclusive ([0] means >= 0), a bare number exclusive (0 means > 0).
RANGES: dict[str, tuple[Any, Any, str]] = {
    "learning_rate": (0, None, "the optimizer's step size"),
    "lora_r": ([1], None, "the LoRA rank"),
    "lora_alpha": (0, None, "LoRA's scale is alpha/r; alpha≈2r is common"),
    "lora_dropout": ([0], 1, "a probability"),
    "max_length": ([8], None, "tokens per example"),
    "per_device_train_batch_size": ([1], None, "examples per device and step"),
    "per_device_eval_batch_size": ([1], None, "examples per device and eval step"),
    "gradient_accumulation_steps": ([1], None, "micro-batches per optimizer step"),
    "warmup_steps": ([0], None, "steps, or a ratio of the total below 1"),
    "weight_decay": ([0], None, "AdamW's decoupled decay"),
    "max_grad_norm": ([0], None, "the clipping threshold (0 turns clipping off)"),
    "beta": (0, None, "the preference loss's temperature"),
    "eval_split_size": (0, None, "a share below 1, or a number of rows"),
    "early_stopping_patience": ([1], None, "evaluations without improvement"),
    "answer_health_prompts": ([0], None, "eval prompts answered at each evaluation"),
    "early_stopping_threshold": ([0], None, "the improvement that counts"),
    "eeve_stage": ([1], [7], "EEVE's stages are 1 to 7"),
    "embedding_learning_rate": (0, None, "the step size of the embedding and output rows that train"),
}


@dataclass
class RunConfig:
    """Everything a run needs, already validated."""

    stage: str  # a name in kotune.stages.registry
    kotune: KotuneArguments
    model: Any  # KotuneModelConfig (TRL's ModelConfig)
    training: Any  # the stage's TRL config (SFTConfig, DPOConfig, ...)
    resolved: dict[str, Any]  # what the user set plus the defaults kotune applied; saved in output_dir
    source: str
    training_values: dict[str, Any] = field(default_factory=dict)  # the checked values `training` was built from
    hardware: dict[str, str] = field(default_factory=dict)  # why precision and checkpointing are what they are
