"""`kotune eval RUN_DIR`: KoBEST and KLUE STS/YNAT (the KIT-19 table) and lm-eval's own Korean suites, through
lm-eval-harness.

    kotune eval runs/polyglot-qlora                                  # the KIT-19 table's six tasks, 0-shot
    kotune eval runs/polyglot-qlora --baseline base --num_fewshot 5  # the adapter's base model beside it
    kotune eval runs/merged --tasks kobest_copa,klue_sts --data_dir data/eval --limit 100
    kotune eval runs/polyglot-qlora --tasks kobest --num_fewshot 0,1,2,5,10 --baseline base  # KoQuality's table
    kotune eval runs/exaone-lora --tasks korean --num_fewshot 5      # KMMLU, HAE-RAE, CLIcK, CSAT-QA, ... (model cards)

RUN_DIR is a LoRA adapter (adapter_config.json names its base) or a merged/full model dir. An adapter is loaded
by kotune as it was trained (a 4-bit or 8-bit base quantized as in training, then dequantized) and handed to
lm-eval; lm-eval's own `peft=` would score a QLoRA adapter on an unquantized base. --baseline also takes a Hub id.
The scoring is lm-eval's, not ours. KoBEST comes with lm-eval 0.4.13, KLUE STS/YNAT are task YAMLs in
`kotune/eval/lm_eval_tasks/` (prompts of lm-eval's old `polyglot` branch, which KIT-19 reports); these report acc
and macro F1 (KoBEST HellaSwag also acc_norm). The Korean suites (`kotune.eval.tasks.SUITES`) are the wheel's own
groups and tasks, reported with lm-eval's metric names (acc, acc_norm, exact_match[,filter]) and aggregates.

Written to OUT (default RUN_DIR/eval): `results.json` (scores + lm-eval's raw results and task configs),
`results.md` (the KIT-19-shaped table, then one table per suite with its subject groups) and, when the baseline
is a model, `baseline.json` (reusable as `--baseline OUT/baseline.json`).

Offline (air-gapped, or HF_HUB_OFFLINE=1): `--data_dir DIR` reads local JSON Lines in the Hub's columns, per
leaf task DIR/<task>/<split>.jsonl or a Hub mirror DIR/<dataset path>/<config>/<split>.jsonl
(`kotune.eval.local_data`). kotune generates, per leaf task, a YAML that `include`s lm-eval's (or its own) task
and only swaps the dataset for `json` over those files, so prompts and metrics stay lm-eval's.

Python API (sweeps call this; it raises KotuneError for user mistakes)::

    from kotune.eval.run import evaluate_run
    scores = evaluate_run("runs/a", tasks=["kobest_copa", "klue_sts"], num_fewshot=0, limit=None,
                          out_dir=None, data_dir=None, baseline=None)
    # {"kobest_copa": {"acc": 0.83, "macro_f1": 0.83}, "klue_sts": {"acc": 0.61, "macro_f1": 0.58}}
    # num_fewshot=[0, 5] -> {"0-shot": {task: {...}}, "5-shot": {task: {...}}}
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from kotune.errors import KotuneError
from kotune.eval.harness import check_fewshot_pools, evaluate_model, load_tasks, model_args_for, task_manager
from kotune.eval.leaves import suites
from kotune.eval.tables import eval_record, markdown_table, scores_of, shot_key, shots_table, suite_table
from kotune.eval.tasks import ALIASES, KIT19_TASKS, ORDER, TASKS, resolve_tasks

logger = logging.getLogger("kotune.eval")


def evaluate_run(run_dir: str | Path, tasks: str | list[str] | None = None, num_fewshot: int | list[int] = 0,
                 limit: float | None = None, out_dir: str | Path | None = None, data_dir: str | Path | None = None,
                 baseline: str | Path | None = None, base: str | None = None, batch_size: int | str = 8,
                 device: str | None = None, dtype: str = "auto", apply_chat_template: bool = False,
                 gen_kwargs: str | None = None, thinking: str = "auto") -> dict:
    """Evaluate a run dir; write results.json, results.md (and baseline.json); return {task: {acc, macro_f1}}
    for KIT-19 tasks and {row: {metric: value}} for every row of an lm-eval suite (e.g. kmmlu, kmmlu_stem, ...).

    num_fewshot: one count, or a list (KoQuality's 0/1/2/5/10): each model is loaded once and scored at every
    count, results.md opens with a model × shots table of mean accuracy, and the return value is
    {"5-shot": {task: {...}}, ...}. baseline: a model dir, a Hub id, a results JSON of an earlier `kotune eval`,
    or `base` (the adapter's base model); its scores become the tables' first column. base: where the adapter's
    base lives, if not where it was trained. limit: rows per task (an int) or a share of them (< 1), for quick
    checks only. gen_kwargs: lm-eval's, for generation tasks (HRM8K, KorMedMCQA), e.g. "max_gen_toks=256".
    thinking (auto | on | off): a reasoning base's chat-template switch, sent with every chat-templated question
    (lm-eval's chat_template_args); auto sends the template's default.
    """
    import torch

    names = resolve_tasks(tasks)
    shots = shot_counts(num_fewshot)
    model_args = model_args_for(run_dir, base)
    baseline_args, baseline_scores, baseline_label = _baseline(baseline, model_args, shots, limit)
    if apply_chat_template:
        for args in filter(None, (model_args, baseline_args)):
            if not _has_chat_template(args["tokenizer"]):
                raise KotuneError(f"--apply_chat_template: the tokenizer in {args['tokenizer']} has no chat template "
                                  "(train with kotune, which saves one, or drop the flag)")
    if thinking != "auto":
        _set_thinking(model_args, thinking, apply_chat_template)
    out = Path(out_dir) if out_dir else Path(run_dir) / "eval"
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = dict(limit=limit, dtype=dtype, device=device, batch_size=batch_size,
                    apply_chat_template=apply_chat_template, gen_kwargs=gen_kwargs)

    tree = suites(names)
    with tempfile.TemporaryDirectory(prefix="kotune-eval-") as work:
        manager = task_manager(names, data_dir, Path(work), tree)
        loaded = load_tasks(manager, names)
        check_fewshot_pools(loaded, shots)
        raws = evaluate_model(model_args, shots, loaded, manager, **settings)
        base_raws = evaluate_model(baseline_args, shots, loaded, manager, **settings) if baseline_args else None

    from lm_eval.utils import handle_non_serializable

    record = eval_record(str(run_dir), model_args, raws, num_fewshot, limit, apply_chat_template)
    record["suites"] = {name: suite.rows for name, suite in tree.items()}
    out.mkdir(parents=True, exist_ok=True)
    dump = lambda obj: json.dumps(obj, indent=2, ensure_ascii=False, default=handle_non_serializable)  # noqa: E731
    if base_raws is not None:
        base_record = eval_record(baseline_args["pretrained"], baseline_args, base_raws, num_fewshot, limit,
                              apply_chat_template)
        (out / "baseline.json").write_text(dump(base_record))
        record["baseline"] = str(out / "baseline.json")
        baseline_scores = {k: scores_of(raw) for k, raw in base_raws.items()}
    elif baseline is not None:
        record["baseline"] = str(baseline)
    (out / "results.json").write_text(dump(record))

    scores = {k: scores_of(raw) for k, raw in raws.items()}
    name = Path(run_dir).resolve().name
    models = ([(baseline_label, baseline_scores)] if baseline_scores is not None else []) + [(name, scores)]
    (out / "results.md").write_text(results_markdown(models, shots, names, tree, next(iter(raws.values()))))
    logger.info("eval results: %s, %s", out / "results.json", out / "results.md")
    if out.resolve() == (Path(run_dir) / "eval").resolve():
        _refresh_card(run_dir)
    return {shot_key(k): v for k, v in scores.items()} if isinstance(num_fewshot, list) else scores[shots[0]]


def results_markdown(models: list, shots: list[int], names: list[str], tree: dict, first: dict) -> str:
    """results.md: (several counts: the model × shots table, then a section per count) the KIT-19 table of the
    KIT-19 tasks asked for, one table per lm-eval suite, and a note of lm-eval's version and rows scored."""
    counts = _rows(first)
    rows = {n: counts.get(n) if n in TASKS else sum(counts.get(leaf.name) or 0 for leaf in tree[n].leaves)
            for n in names}
    note = (f"lm-eval {first.get('lm_eval_version', '')}, "
            f"rows per task: {', '.join(f'{t} {n}' for t, n in rows.items())}")
    blocks = [shots_table(models, shots)] if len(shots) > 1 else []
    for k in shots:
        columns = [(label, by_shot.get(k, {})) for label, by_shot in models]
        parts = [markdown_table(columns)] if any(n in TASKS for n in names) else []
        parts += [suite_table(columns, n, tree[n].rows) for n in names if n in tree]
        section = "\n".join(parts) + f"\n{k}-shot, {note}\n"
        blocks.append(f"### {shot_key(k)}\n\n{section}" if len(shots) > 1 else section)
    return "\n".join(b for b in blocks if b)


def _refresh_card(run_dir) -> None:
    """The run's model card gains the scores (model-index metadata); a card that fails is only logged."""
    from kotune.model_card import refresh_model_card

    try:
        logger.info("model card updated with the scores: %s", refresh_model_card(run_dir))
    except Exception as err:  # noqa: BLE001 - documentation: the scores are written whatever happens here
        logger.warning("model card not updated: %s: %s", type(err).__name__, err)


def shot_counts(num_fewshot) -> list[int]:
    """num_fewshot as a list of distinct counts >= 0; a clear error otherwise."""
    shots = num_fewshot if isinstance(num_fewshot, list) else [num_fewshot]
    if not shots or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in shots):
        raise KotuneError(f"num_fewshot must be a count >= 0 or a list of them (e.g. [0, 1, 2, 5, 10]), "
                          f"got {num_fewshot!r}")
    if len(set(shots)) != len(shots):
        raise KotuneError(f"num_fewshot lists a count twice: {num_fewshot}")
    return shots


def _set_thinking(model_args: dict, thinking: str, apply_chat_template: bool) -> None:
    """The switch's kwargs as lm-eval's chat_template_args, or one error: thinking needs the chat template, and a
    template that has a switch."""
    from transformers import AutoTokenizer

    from kotune.data.thinking import template_kwargs

    if not apply_chat_template:
        raise KotuneError(f"--thinking {thinking} acts through the chat template: add --apply_chat_template")
    tokenizer = AutoTokenizer.from_pretrained(model_args["tokenizer"])
    model_args["chat_template_args"] = template_kwargs(tokenizer.chat_template, thinking, model_args["tokenizer"])


def _has_chat_template(tokenizer_dir: str) -> bool:
    path = Path(tokenizer_dir)
    if not path.is_dir():
        return True  # a Hub id: lm-eval will say
    config = path / "tokenizer_config.json"
    return (path / "chat_template.jinja").is_file() or (
        config.is_file() and bool(json.loads(config.read_text()).get("chat_template")))


def _baseline(baseline, model_args: dict, shots: list[int], limit) -> tuple[dict | None, dict | None, str]:
    """(model_args to evaluate, or {shots: scores} already known, and the column label) for --baseline."""
    if baseline is None:
        return None, None, ""
    if str(baseline) == "base" and not Path("base").exists():
        if "peft" not in model_args:
            raise KotuneError("--baseline base needs an adapter run dir (a full model has no base to compare)")
        return (model_args_for(model_args["pretrained"], hub_ok=True), None,
                Path(model_args["pretrained"]).name + " (base)")
    if str(baseline).endswith(".json"):
        if not Path(baseline).is_file():
            raise KotuneError(f"baseline results '{baseline}' do not exist")
        record = json.loads(Path(baseline).read_text())
        by_shot = _recorded_scores(record, shots)
        if by_shot is None:
            raise KotuneError(f"'{baseline}' is neither a kotune eval results.json nor lm-eval's results JSON")
        missing = [k for k in shots if k not in by_shot]
        if missing or record.get("limit", limit) != limit:
            logger.warning("baseline %s was scored at %s shots, limit=%s; this run: %s shots, limit=%s (its column "
                           "stays empty where it has no scores)", baseline, sorted(by_shot), record.get("limit"),
                           shots, limit)
        return None, by_shot, Path(record.get("model") or Path(baseline).stem).name
    label = Path(baseline).resolve().name if Path(baseline).exists() else str(baseline)  # a dir, or a Hub id
    return model_args_for(baseline, hub_ok=True), None, label


def _recorded_scores(record: dict, shots: list[int]) -> dict[int, dict] | None:
    """{shots: {task: scores}} from a kotune results.json (one or several shot counts) or lm-eval's own JSON."""
    recorded = record.get("num_fewshot")
    if isinstance(recorded, list) and isinstance(record.get("tasks"), dict):
        return {int(key.removesuffix("-shot")): v for key, v in record["tasks"].items()}
    if "tasks" in record:
        return {recorded if isinstance(recorded, int) else shots[0]: record["tasks"]}
    if "results" in record:
        counts = set(record.get("n-shot", {}).values())
        return {counts.pop() if len(counts) == 1 else shots[0]: scores_of(record)}
    return None


def _rows(raw: dict) -> dict[str, int]:
    return {t: n.get("effective", n.get("original")) for t, n in raw.get("n-samples", {}).items()}


# --- end of training ---------------------------------------------------------------------------------------
def check_baseline(baseline: str | None) -> None:
    """A baseline that is neither a file nor `base` must be a model dir or a Hub model this machine can reach;
    checked when a run starts, so a typo is said before hours of training (reading the config never goes online)."""
    if baseline and baseline != "base" and not Path(baseline).expanduser().exists():
        try:
            model_args_for(baseline, hub_ok=True)
        except KotuneError as err:
            raise KotuneError(f"eval_baseline: {err}") from None


def evaluate_after_training(kot, output_dir: str) -> dict[str, dict[str, float]]:
    """The `eval_*` fields of KotuneArguments applied to a finished run (main process only)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return evaluate_run(output_dir, kot.eval_tasks, num_fewshot=kot.eval_num_fewshot, limit=kot.eval_limit,
                        data_dir=kot.eval_data_dir, baseline=kot.eval_baseline)


# --- CLI -----------------------------------------------------------------------------------------------------
def _shots(text: str) -> int | list[int]:
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("give a count or a comma list of counts, e.g. 0,1,2,5,10") from None
    if any(k < 0 for k in counts):
        raise argparse.ArgumentTypeError("counts must be >= 0")
    return counts if "," in text else counts[0]


def _limit(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return int(value) if value >= 1 and value.is_integer() else value


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="kotune eval", description="Score a run dir with lm-eval-harness on KoBEST and KLUE STS/YNAT (the KIT-19 "
        "table: acc and macro F1) and lm-eval's Korean suites (KMMLU, HAE-RAE, CLIcK, ...: lm-eval's metrics); "
        "writes results.json and results.md (a table per suite).")
    parser.add_argument("run_dir", help="training output_dir (LoRA adapter) or a merged/full model dir")
    parser.add_argument("--tasks", default=",".join(KIT19_TASKS),
                        help=f"comma list of {', '.join(ORDER)}, or a preset: {' | '.join(ALIASES)} (korean = "
                             f"{','.join(ALIASES['korean'])}; default: the KIT-19 table's six)")
    parser.add_argument("--num_fewshot", type=_shots, default=0,
                        help="in-context examples per question (default 0), or a list such as 0,1,2,5,10: "
                             "each model is loaded once and scored at every count")
    parser.add_argument("--limit", type=_limit, default=None,
                        help="rows per task (or a share < 1): quick checks only, scores are not comparable")
    parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/eval)")
    parser.add_argument("--data_dir", default=None,
                        help="read local JSON Lines in the Hub's columns instead of the Hub: DIR/<task>/<split>.jsonl "
                             "or DIR/<Hub dataset>/<config>/<split>.jsonl (e.g. DIR/HAERAE-HUB/KMMLU/Accounting/test.jsonl)")
    parser.add_argument("--baseline", default=None,
                        help="model dir, earlier results.json, or 'base' (the adapter's base): shown beside")
    parser.add_argument("--base", default=None, help="the adapter's base model, if it moved since training")
    parser.add_argument("--batch_size", default="8", help="lm-eval batch size, or 'auto' (default 8)")
    parser.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda when available)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"],
                        help="weights dtype (default auto: the saved one)")
    parser.add_argument("--gen_kwargs", default=None,
                        help="lm-eval's generation settings for generation tasks, e.g. max_gen_toks=256 "
                             "(HRM8K's own is 2048 tokens per question)")
    parser.add_argument("--apply_chat_template", action="store_true",
                        help="wrap each question in the model's chat template (default: plain prompts, as KIT-19)")
    parser.add_argument("--thinking", choices=("auto", "on", "off"), default="auto",
                        help="reasoning bases, with --apply_chat_template: the template's thinking switch "
                             "(auto: the template's default)")
    args = parser.parse_args(argv)

    from kotune.logs import setup_logging

    setup_logging()
    batch = int(args.batch_size) if args.batch_size.isdigit() else args.batch_size
    evaluate_run(args.run_dir, args.tasks, num_fewshot=args.num_fewshot, limit=args.limit, out_dir=args.out,
                 data_dir=args.data_dir, baseline=args.baseline, base=args.base, batch_size=batch,
                 device=args.device, dtype=args.dtype, apply_chat_template=args.apply_chat_template,
                 gen_kwargs=args.gen_kwargs, thinking=args.thinking)
    out = Path(args.out) if args.out else Path(args.run_dir) / "eval"
    print((out / "results.md").read_text(), end="")
    return 0
