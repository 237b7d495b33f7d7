"""The model card: README.md in the Hub's format in every output dir kotune writes (training stages, `kotune merge`).

The YAML front matter is what the Hub reads: base_model (a Hub id only; the Hub rejects a local path on push),
base_model_relation, library_name, pipeline_tag, language, tags, datasets (Hub ids only), license (the base's, when
its own card says it) and, once `kotune eval` has run, model-index with the scores. The body, in Korean, says what
was trained and how (stage, method, hyper-parameters), on what (sources, rows used and dropped, the licences the
KIT-19 registry knows), with which prompt format (one Korean example rendered by the saved chat template), how it
scored, and how to load it.

Everything comes from the run dir's own files: kotune_config.yaml, run_info.json, data_report.json,
adapter_config.json, trainer_state.json and eval/results.json (a merged dir's merge_info.json carries those of the
run it came from). So `refresh_model_card(run_dir)` rebuilds the card at any time, e.g. after `kotune eval`.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import yaml

from kotune.model_card_text import SNAPSHOT, body, hyperparameters  # noqa: F401  (hyperparameters: run_info.json)

logger = logging.getLogger(__name__)

CARD = "README.md"
# lm-eval task -> (Hub dataset, its config, the name shown)
EVAL_DATASETS = {
    "kobest_boolq": ("skt/kobest_v1", "boolq", "KoBEST BoolQ"),
    "kobest_copa": ("skt/kobest_v1", "copa", "KoBEST COPA"),
    "kobest_hellaswag": ("skt/kobest_v1", "hellaswag", "KoBEST HellaSwag"),
    "kobest_sentineg": ("skt/kobest_v1", "sentineg", "KoBEST SentiNeg"),
    "kobest_wic": ("skt/kobest_v1", "wic", "KoBEST WiC"),
    "klue_sts": ("klue/klue", "sts", "KLUE STS"),
    "klue_ynat": ("klue/klue", "ynat", "KLUE YNAT"),
}
LOCAL_SUFFIX = re.compile(r"\.(jsonl?|csv|tsv|txt|parquet|gz|zip|xz|tar)$", re.I)
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")
METRICS = {"acc": "accuracy", "acc_norm": "accuracy (length-normalized)", "macro_f1": "F1 (macro)"}


def refresh_model_card(run_dir: str | Path) -> Path:
    """Rebuild README.md of a run or merged dir from its files (call it after writing eval/results.json)."""
    return write_model_card(run_dir)


def write_model_card(run_dir: str | Path, tokenizer=None, log_history: list | None = None,
                     name: str | None = None) -> Path:
    """Write README.md into `run_dir`; `tokenizer` and `log_history` are the live ones during training (else the
    saved tokenizer and trainer_state.json are read); `name` defaults to hub_model_id or the dir's name."""
    path = Path(run_dir) / CARD
    path.write_text(str(build_card(run_dir, tokenizer, log_history, name)), encoding="utf-8")
    return path


def build_card(run_dir: str | Path, tokenizer=None, log_history: list | None = None, name: str | None = None):
    """The card as a `huggingface_hub.ModelCard`."""
    from huggingface_hub import ModelCard, ModelCardData

    run = Path(run_dir)
    facts = gather(run)
    if log_history is not None:
        facts["log_history"] = log_history
    if tokenizer is None:
        tokenizer = _saved_tokenizer(run, facts)
    config, base = facts["config"], facts["base"]
    name = name or (config.get("hub_model_id") or run.resolve().name).split("/")[-1]
    merged = "merge" in facts
    adapter = facts["adapter"] is not None and not merged
    data = ModelCardData(
        base_model=base["hub_id"], base_model_relation=("adapter" if adapter else "finetune") if base["hub_id"]
        else None, library_name="peft" if adapter else "transformers", language=["ko"], license=base["license"],
        pipeline_tag="text-classification" if facts["stage"] == "rm" else "text-generation",
        tags=["kotune", facts["stage"], "korean"] + (["lora"] if facts["adapter"] is not None else []) +
        (["merged"] if merged else []),
        datasets=[s["hub_id"] for s in facts["sources"] if s["hub_id"]] or None,
        model_name=name, eval_results=eval_results(facts["eval"]) or None)
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body(name, facts, tokenizer)}")


def gather(run: Path) -> dict:
    """Every fact the card states, from the files of a run dir (or those a merged dir carried over)."""
    merge = _json(run / "merge_info.json")
    facts = merge.get("trained") if merge and merge.get("trained") else run_facts(run)
    facts = dict(facts)
    if merge:
        facts["merge"] = {k: merge.get(k) for k in ("base", "adapters", "dtype", "trained_quantization")}
    config = facts.get("config") or {}
    start = config.get("model_name_or_path") or (merge or {}).get("base")
    facts["config"] = config
    facts["stage"] = (facts.get("record") or {}).get("hyperparameters", {}).get("stage", "sft")
    facts["base"] = {"start": start, "hub_id": hub_id(start), "license": base_license(start)}
    facts["sources"] = sources(facts)
    facts["eval"] = _json(run / "eval" / "results.json")
    facts["eval_table"] = _text(run / "eval" / "results.md")
    facts["loss_png"] = (run / "loss.png").is_file()
    facts["vocab"] = vocab_extension(run, start)
    return facts


def vocab_extension(run: Path, start: str | None) -> dict | None:
    """kotune_vocab.json (`kotune vocab extend`, stages appended by each eeve_stage run): in the dir itself, else in
    the model the run started from (an SFT or merge after the stages), else in the base that adapter names."""
    from kotune.vocab.stages import RECORD, vocab_record

    if (run / RECORD).is_file():
        return _json(run / RECORD)
    found = vocab_record(start) if start and Path(start).is_dir() else None
    return found[0] if found else None


def run_facts(run: Path) -> dict:
    """The card's inputs a training run wrote (what `kotune merge` carries into merge_info.json)."""
    state = _json(run / "trainer_state.json") or {}
    config = yaml.safe_load(_text(run / "kotune_config.yaml") or "{}") or {}
    return {"config": config, "record": _json(run / "run_info.json") or {}, "data": _json(run / "data_report.json"),
            "adapter": _json(run / "adapter_config.json"), "log_history": state.get("log_history") or []}


def sources(facts: dict) -> list[dict]:
    """Each data source: id as shown (a local file by its name only), format, licence, rows used and dropped."""
    report = facts.get("data") or {}
    per_source = report.get("per_source", report) if isinstance(report, dict) else {}
    mixture = (facts["config"].get("dataset_mixture") or {}).get("datasets") or []
    listed = {s.get("id"): s for s in mixture if isinstance(s, dict)}
    out = []
    for sid in dict.fromkeys([*per_source, *listed]):
        entry = per_source.get(sid) if isinstance(per_source.get(sid), dict) else {}
        fmt = entry.get("format") or listed.get(sid, {}).get("format", "?")
        local = _is_local(sid)
        out.append({"id": Path(sid).name if local else sid, "local": local, "format": fmt,
                    "hub_id": None if local else sid, "license": source_license(sid, fmt),
                    "available": entry.get("available"), "used": entry.get("used"),
                    "dropped": entry.get("dropped") or {}, "eval": (entry.get("eval") or {}).get("used")})
    return out


def source_license(sid: str, fmt: str) -> str:
    """The licence the KIT-19 registry records for a kit19/<task> source; 'unknown' otherwise."""
    if fmt.startswith("kit19/"):
        from kotune.data.kit19 import load_task
        from kotune.errors import KotuneError

        try:
            return load_task(fmt.split("/", 1)[1]).license or "unknown"
        except KotuneError:
            return "unknown"
    return "unknown"


def hub_id(start: str | None) -> str | None:
    """The Hub id of the model a run started from: the name itself when it is one; for a local dir, the repo of an
    HF cache snapshot (models--org--name/snapshots/...), the base_model its own card names (an SFT run dir's), or
    that of the base an adapter dir names. None when unknown: the Hub rejects a local path as base_model."""
    from huggingface_hub import metadata_load

    from kotune.models.adapter_dirs import adapter_base

    for _ in range(8):
        if not start:
            return None
        if not _is_local(start):
            return start if HUB_ID.fullmatch(start) else None
        snapshot = SNAPSHOT.search(str(Path(start).expanduser().absolute()))
        if snapshot:
            return f"{snapshot[1]}/{snapshot[2]}"
        card = Path(start).expanduser() / CARD
        named = (metadata_load(card) or {}).get("base_model") if card.is_file() else None
        named = named[0] if isinstance(named, list) and named else named
        if isinstance(named, str) and HUB_ID.fullmatch(named):
            return named
        try:
            start = adapter_base(start)
        except Exception:  # an adapter dir without a base: nothing more to read
            return None
    return None


def base_license(start: str | None) -> str | None:
    """The licence the base's own card states: a local dir's README.md, a Hub id's cached README.md, or that of the
    base an adapter dir names; None when unknown (never guessed)."""
    from huggingface_hub import metadata_load

    from kotune.models.adapter_dirs import adapter_base

    seen = 0
    while start and seen < 8:
        seen += 1
        card = Path(start).expanduser() / CARD if _is_local(start) else _cached_card(start)
        licence = (metadata_load(card) or {}).get("license") if card and Path(card).is_file() else None
        if licence:
            return licence if isinstance(licence, str) else licence[0]
        try:
            start = adapter_base(start) if _is_local(start) else None
        except Exception:  # an adapter dir without a base: nothing more to read
            return None
    return None


def eval_results(record: dict | None) -> list:
    """kotune eval's results.json as the Hub's model-index entries (one per task, metric and shot count)."""
    from huggingface_hub import EvalResult

    if not record or not isinstance(record.get("tasks"), dict):
        return []
    shots = record.get("num_fewshot", 0)
    by_shot = ({int(k.removesuffix("-shot")): v for k, v in record["tasks"].items()} if isinstance(shots, list)
               else {int(shots or 0): record["tasks"]})
    several = len(by_shot) > 1
    shown_rows = {row for rows in (record.get("suites") or {}).values() for row in rows}
    leaf = lambda task: task not in shown_rows and any(task.startswith(f"{s}_") for s in record.get("suites") or {})  # noqa: E731
    out = []
    for k, tasks in by_shot.items():
        for task, scores in tasks.items():
            if leaf(task):  # a suite's subjects (KMMLU's 45): the card reports the suite and its groups, as results.md
                continue
            dataset, subset, shown = EVAL_DATASETS.get(task, (task, None, task))
            for metric, value in scores.items():
                label = METRICS.get(metric, metric)
                out.append(EvalResult(
                    task_type="text-generation", task_name="Text Generation", dataset_type=dataset,
                    dataset_name=shown, dataset_config=subset, dataset_split=_split(record, task, k),
                    dataset_args=None if several else {"num_few_shot": k}, metric_type=metric,
                    metric_name=f"{label} ({k}-shot)" if several else label,
                    metric_args={"num_few_shot": k} if several else None, metric_value=round(float(value), 4)))
    return out


def _split(record: dict, task: str, shots: int) -> str | None:
    raw = record.get("lm_eval") or {}
    raw = raw.get(f"{shots}-shot", raw) if isinstance(record.get("num_fewshot"), list) else raw
    config = (raw.get("configs") or {}).get(task) or {}
    return config.get("test_split") or config.get("validation_split")


def _saved_tokenizer(run: Path, facts: dict):
    """The tokenizer saved in the dir (it carries the training chat template), or None without one."""
    if not any((run / f).is_file() for f in ("tokenizer_config.json", "tokenizer.json")):
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(run, trust_remote_code=bool(facts["config"].get("trust_remote_code")))
    except Exception as err:  # the card is documentation: a tokenizer it cannot load leaves out the example only
        logger.warning("model card: the tokenizer in %s did not load (%s); no rendered prompt example", run, err)
        return None


def _cached_card(repo_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, CARD)
    except Exception:  # not a valid repo id
        return None
    return found if isinstance(found, str) else None


def _is_local(name: str | None) -> bool:
    """A path on this machine (or one that moved) rather than a Hub id (`org/name`: one slash, no file suffix)."""
    return bool(name) and (Path(name).expanduser().exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
                           or bool(LOCAL_SUFFIX.search(name)))


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except json.JSONDecodeError:
        logger.warning("model card: %s is not valid JSON; left out", path)
        return None


def _text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None
