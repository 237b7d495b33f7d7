"""`kotune eval`: real lm-eval runs on tiny models over Korean fixture rows (tests/fixtures/eval, the Hub's
columns), the end-of-SFT hook, the KIT-19-shaped table with a baseline column, and one-line user errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import base_config, run_sft_inprocess, write_config
from kotune.cli import main as kotune
from kotune.config import build_config
from kotune.errors import ConfigError
from kotune.eval.tasks import KIT19_TASKS, TASKS
from kotune.eval.run import evaluate_run
from kotune.eval.harness import lm_eval_model, model_args_for
from test_export import sft_run as shared_sft_run

FIXTURE = Path(__file__).parent / "fixtures" / "eval"


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, tiny_bases) -> Path:
    """A tiny LoRA SFT whose config asks for every eval task at the end (2 rows each)."""
    root = tmp_path_factory.mktemp("eval-sft")
    cfg = base_config(tiny_bases["gpt_neox"], root / "run", max_steps=4, eval_tasks=["all"], eval_limit=2,
                      eval_data_dir=str(FIXTURE))
    assert run_sft_inprocess(write_config(root / "sft.yaml", cfg)) == 0
    return root / "run"


def check_scores(scores: dict, tasks) -> None:
    assert sorted(scores) == sorted(tasks)
    for task, row in scores.items():
        expected = {"acc", "macro_f1"} | ({"acc_norm"} if task == "kobest_hellaswag" else set())
        assert set(row) == expected, task
        assert all(0.0 <= v <= 1.0 for v in row.values()), (task, row)


def test_sft_hook_writes_results_and_kit19_table(sft_run):
    record = json.loads((sft_run / "eval" / "results.json").read_text())
    check_scores(record["tasks"], TASKS)
    assert record["model_args"]["peft"] == str(sft_run)  # base + adapter, not the base alone
    assert record["limit"] == 2 and set(record["lm_eval"]["n-samples"]) == set(TASKS)
    assert all(n["effective"] == 2 for n in record["lm_eval"]["n-samples"].values())
    table = (sft_run / "eval" / "results.md").read_text()
    assert table.startswith(f"| Benchmark Dataset | Metric | {sft_run.name} |")
    for label, _ in TASKS.values():
        assert f"| {label} | ACC |" in table
    assert table.count("| F1 (macro) |") == len(TASKS) and table.count("| ACC_Norm |") == 1


def test_adapter_beside_its_base_few_shot(sft_run, tmp_path):
    scores = evaluate_run(sft_run, tasks="kobest_copa,klue_ynat", num_fewshot=1, out_dir=tmp_path,
                          data_dir=FIXTURE, baseline="base")
    check_scores(scores, ["kobest_copa", "klue_ynat"])
    run, base = (json.loads((tmp_path / f).read_text()) for f in ("results.json", "baseline.json"))
    assert "peft" in run["model_args"] and "peft" not in base["model_args"]
    assert run["lm_eval"]["n-shot"] == {"kobest_copa": 1, "klue_ynat": 1}
    assert all(n["effective"] == 4 for n in run["lm_eval"]["n-samples"].values())  # every fixture row
    header, rule, *rows = (tmp_path / "results.md").read_text().splitlines()
    assert header == f"| Benchmark Dataset | Metric | {Path(base['model']).name} (base) | {sft_run.name} |"
    assert rows[0].startswith("| KoBEST_COPA | ACC | ") and rows[2].startswith("| KLUE_YNAT | ACC | ")
    assert all("%" in cell for row in rows[:4] for cell in row.split("|")[3:5])


def test_several_shot_counts_in_one_call_make_koquality_table(sft_run, tmp_path, capsys):
    """--num_fewshot 0,2 scores each model once per count; results.md opens with KoQuality's model × shots table
    (mean accuracy), then a KIT-19 table per count; the results.json serves as a baseline for one count later."""
    out = tmp_path / "shots"
    assert kotune(["eval", str(sft_run), "--tasks", "kobest_copa,kobest_boolq", "--num_fewshot", "0,2",
                   "--data_dir", str(FIXTURE), "--baseline", "base", "--out", str(out)]) == 0
    run, base = (json.loads((out / f).read_text()) for f in ("results.json", "baseline.json"))
    assert run["num_fewshot"] == [0, 2] and sorted(run["tasks"]) == sorted(base["tasks"]) == ["0-shot", "2-shot"]
    for shots in (0, 2):
        check_scores(run["tasks"][f"{shots}-shot"], ["kobest_copa", "kobest_boolq"])
        assert run["lm_eval"][f"{shots}-shot"]["n-shot"] == {"kobest_copa": shots, "kobest_boolq": shots}

    lines = (out / "results.md").read_text().splitlines()
    assert lines[0] == "Mean accuracy over kobest_copa, kobest_boolq"
    assert lines[2:4] == ["| Model | 0-shot | 2-shot |", "|---|---|---|"]
    mean = lambda scores: f"{(scores['kobest_copa']['acc'] + scores['kobest_boolq']['acc']) / 2:.4f}"  # noqa: E731
    assert lines[4] == f"| {Path(base['model']).name} (base) | {mean(base['tasks']['0-shot'])} | {mean(base['tasks']['2-shot'])} |"
    assert lines[5] == f"| {sft_run.name} | {mean(run['tasks']['0-shot'])} | {mean(run['tasks']['2-shot'])} |"
    assert "### 0-shot" in lines and "### 2-shot" in lines
    capsys.readouterr()

    again = evaluate_run(sft_run, tasks="kobest_copa", num_fewshot=2, out_dir=tmp_path / "again", data_dir=FIXTURE,
                         baseline=str(out / "baseline.json"))
    assert again == {"kobest_copa": run["tasks"]["2-shot"]["kobest_copa"]}  # same model, data and shots
    table = (tmp_path / "again" / "results.md").read_text()
    acc = base["tasks"]["2-shot"]["kobest_copa"]["acc"]
    assert table.splitlines()[2].startswith(f"| KoBEST_COPA | ACC | {'**' if acc > again['kobest_copa']['acc'] else ''}{acc:.2%}")


def test_cli_full_model_dir_with_a_results_json_baseline(sft_run, tiny_bases, tmp_path, capsys):
    code = kotune(["eval", str(tiny_bases["llama"]), "--tasks", "klue_sts", "--data_dir", str(FIXTURE),
                   "--out", str(tmp_path), "--baseline", str(sft_run / "eval" / "results.json")])
    assert code == 0
    record = json.loads((tmp_path / "results.json").read_text())
    check_scores(record["tasks"], ["klue_sts"])
    assert "peft" not in record["model_args"]
    table = capsys.readouterr().out
    assert table.startswith(f"| Benchmark Dataset | Metric | {sft_run.name} | {tiny_bases['llama'].name} |")
    assert "| KLUE_STS | ACC |" in table and "KoBEST" not in table  # only the tasks run in this call


def test_chat_template_prompts(sft_run, tmp_path):
    """--apply_chat_template wraps each question in the template training saved (chat_template.jinja)."""
    scores = evaluate_run(sft_run, tasks="kobest_sentineg", limit=2, out_dir=tmp_path, data_dir=FIXTURE,
                          apply_chat_template=True)
    check_scores(scores, ["kobest_sentineg"])
    assert json.loads((tmp_path / "results.json").read_text())["apply_chat_template"] is True


REQUESTS = [("질문: 대한민국의 수도는 어디인가요?\n답변:", " 서울입니다."),
            ("문장: 이 영화 정말 재미있었어요.\n질문: 이 문장은 긍정인가요, 부정인가요?\n답변:", " 긍정")]


def loglikelihoods(model_args: dict, kotune_loads_adapters: bool = True):
    """Per-request log-likelihoods from the lm-eval model `kotune eval` would use (or, with
    kotune_loads_adapters=False, from lm-eval's own `pretrained=BASE,peft=DIR` loading)."""
    import torch
    from lm_eval.api.instance import Instance
    from lm_eval.api.registry import get_model

    if kotune_loads_adapters:
        model = lm_eval_model(model_args, "float32", "cpu", 2)
    else:
        model = get_model("hf").create_from_arg_obj({**model_args, "dtype": "float32"}, {"batch_size": 2, "device": "cpu"})
    requests = [Instance("loglikelihood", doc={}, arguments=r, idx=i) for i, r in enumerate(REQUESTS)]
    return torch.tensor([ll for ll, _ in model.loglikelihood(requests)])


def test_a_4bit_trained_adapter_is_scored_on_the_weights_it_trained_against(tmp_path_factory, tiny_bases, tmp_path):
    """A QLoRA adapter is scored on its base quantized as in training: the same log-likelihoods as the merged
    model (`kotune merge` dequantizes that base), not those of lm-eval's `peft=` on the unquantized base. The
    base moved since training here, so this also covers --base."""
    import torch

    run = shared_sft_run(tmp_path_factory, "llama-qlora", tiny_bases["llama"], load_in_4bit=True)
    moved = tmp_path / "moved-base"
    shutil.copytree(tiny_bases["llama"], moved)
    assert kotune(["merge", str(run), "--out", str(tmp_path / "merged")]) == 0

    as_trained = loglikelihoods(model_args_for(run, base=str(moved)))
    merged = loglikelihoods(model_args_for(tmp_path / "merged"))
    unquantized = loglikelihoods(model_args_for(run), kotune_loads_adapters=False)
    # Measured: as trained -81.1519/-65.7009, merged the same to 4 decimals, unquantized base -83.7411/-62.0752.
    # fp32 both ways: merged W + s·BA against Wx + s·B(Ax) differ only in summation order (merge tests: ≤ 2e-5
    # on logits); 1e-3 on a sum of a few log-probs leaves room and is >1000x below the quantization gap (~3).
    torch.testing.assert_close(as_trained, merged, atol=1e-3, rtol=0)
    assert (as_trained - unquantized).abs().max() > 0.5, (as_trained, unquantized)


def one_line_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        kotune(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    assert err.startswith("kotune: error: ") and err.count("\n") == 1, err
    return err


def test_user_mistakes_get_one_line(sft_run, tmp_path, capsys):
    assert "does not exist" in one_line_error(["eval", str(tmp_path / "nope")], capsys)
    err = one_line_error(["eval", str(sft_run), "--tasks", "kobest_cpoa,klue_sts"], capsys)
    assert "unknown eval task 'kobest_cpoa'" in err and "did you mean 'kobest_copa'" in err

    data = tmp_path / "data"
    shutil.copytree(FIXTURE, data)
    (data / "kobest_copa" / "test.jsonl").unlink()  # only train.jsonl left: nothing to score
    (data / "klue_sts" / "validation.jsonl").write_text('{"sentence1": "하늘이 맑다.", "label": 1}\n')
    err = one_line_error(["eval", str(sft_run), "--tasks", "kobest_copa,klue_sts", "--data_dir", str(data)], capsys)
    assert "kobest_copa: no data file" in err and "test.jsonl" in err
    assert "klue_sts:" in err and "lacks column(s) sentence2, labels" in err

    err = one_line_error(["eval", str(sft_run), "--tasks", "kobest_copa,klue_sts", "--num_fewshot", "0,5",
                          "--data_dir", str(FIXTURE), "--out", str(tmp_path / "o")], capsys)
    assert "kobest_copa: 5-shot needs 5 examples to draw from, its few-shot split has 2" in err
    assert "klue_sts: 5-shot needs 6" in err and "train.jsonl" in err and not (tmp_path / "o").exists()
    with pytest.raises(SystemExit):  # argparse: usage line + the error
        kotune(["eval", str(sft_run), "--num_fewshot", "0,-1"])
    assert "argument --num_fewshot: counts must be >= 0" in capsys.readouterr().err

    err = one_line_error(["eval", str(sft_run), "--baseline", "EleutherAI/polyglot-ko-1.3b"], capsys)
    assert "'EleutherAI/polyglot-ko-1.3b' is neither a local model dir nor a Hub model this machine can reach" in err

    err = one_line_error(["eval", str(sft_run), "--baseline", "base", "--apply_chat_template"], capsys)
    assert "has no chat template" in err  # the raw base has none; said before loading anything

    # No --data_dir and no Hub (HF_HUB_OFFLINE=1): said before any model is loaded, with the fix.
    err = one_line_error(["eval", str(sft_run), "--tasks", "klue_ynat", "--out", str(tmp_path / "o")], capsys)
    assert "klue_ynat: its dataset could not be loaded" in err and "--data_dir" in err
    assert not (tmp_path / "o").exists()


def test_eval_fields_are_validated_with_the_config(tmp_path, tiny_bases):
    raw = base_config(tiny_bases["gpt_neox"], tmp_path / "out", eval_tasks=["klue_sst"],
                      eval_data_dir=str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as info:
        build_config(raw)
    assert any("did you mean 'klue_sts'" in p for p in info.value.problems)
    raw["eval_tasks"] = "kit19"  # a string (or --eval_tasks=kit19) is one item; aliases expand
    assert any("eval_data_dir" in p and "does not exist" in p for p in problems(raw))
    raw["eval_data_dir"] = str(FIXTURE)
    assert build_config(raw).kotune.eval_tasks == ["kit19"]
    raw.update(eval_baseline="base", use_peft=False)  # a full fine-tune has no base to compare with
    assert any("eval_baseline" in p for p in problems(raw))
    raw.update(eval_baseline="base", use_peft=True)
    assert any("end of SFT only" in p for p in problems(raw, stage="dpo"))
    assert list(KIT19_TASKS) == ["kobest_copa", "kobest_boolq", "kobest_hellaswag", "klue_sts", "kobest_sentineg",
                                 "klue_ynat"]  # the KIT-19 README table's rows, in its order


def problems(raw: dict, **kw) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_config(raw, **kw)
    return info.value.problems


def test_table_bolds_the_better_model_only():
    from kotune.eval.tables import markdown_table

    table = markdown_table([("base", {"klue_sts": {"acc": 0.5, "macro_f1": 0.4}}),
                            ("run", {"klue_sts": {"acc": 0.5, "macro_f1": 0.6}, "klue_ynat": {"acc": 0.25}})])
    assert table.splitlines()[2:] == ["| KLUE_STS | ACC | 50.00% | 50.00% |", "|  | F1 (macro) | 40.00% | **60.00%** |",
                                      "| KLUE_YNAT | ACC | – | 25.00% |"]


# --- lm-eval's own Korean suites, offline (tests/fixtures/eval/<Hub dataset>/<config>/, make_korean.py) -------
def suite_rows(table: str, label: str) -> list[str]:
    """The rows of one suite's table in results.md: the lines after its header up to the blank line."""
    lines = table.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {label} | Metric |"))
    end = lines.index("", start)
    return lines[start + 2:end]


def test_korean_preset_offline(sft_run, tmp_path, capsys):
    """--tasks korean over the fixtures: every suite of the preset scored by lm-eval's own tasks and metrics (the
    adapter loaded as trained), a table per suite with KMMLU's subject groups, HRM8K by lm-eval's exact_match."""
    from kotune.eval.tasks import KOREAN, SUITES

    out = tmp_path / "korean"
    assert kotune(["eval", str(sft_run), "--tasks", "korean", "--data_dir", str(FIXTURE), "--out", str(out),
                   "--gen_kwargs", "max_gen_toks=8"]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["model_args"]["peft"] == str(sft_run)
    scores, raw = record["tasks"], record["lm_eval"]
    assert all(0.0 <= v <= 1.0 for row in scores.values() for v in row.values())
    groups = ("kmmlu_stem", "kmmlu_humss", "kmmlu_applied_science", "kmmlu_other")
    assert record["suites"]["kmmlu"] == ["kmmlu", "kmmlu_stem", "kmmlu_other", "kmmlu_applied_science", "kmmlu_humss"]
    kmmlu_leaves = [t for t in raw["n-samples"] if t.startswith("kmmlu_")]
    assert len(kmmlu_leaves) == 45 and all(raw["n-samples"][t]["effective"] == 1 for t in kmmlu_leaves)
    # lm-eval's aggregate: the size-weighted mean of the 45 subjects (one row each here), through the 4 groups
    assert scores["kmmlu"]["acc"] == pytest.approx(sum(scores[t]["acc"] for t in kmmlu_leaves) / 45)
    assert set(groups) <= set(scores) and all(set(scores[g]) == {"acc"} for g in groups)
    for suite in ("haerae", "click", "csatqa", "belebele_kor_Hang"):
        assert set(scores[suite]) == {"acc", "acc_norm"}, suite
    assert set(scores["kormedmcqa"]) == {"exact_match,extract_answer"}  # the answer picked by lm-eval's filter
    assert set(scores["global_mmlu_ko"]) == {"acc"} and scores["click_lang"] and scores["click_cul"]
    hrm8k = [f"hrm8k_{s}" for s in ("gsm8k", "ksm", "math", "mmmlu", "omni_math")]
    assert all(set(scores[t]) == {"exact_match"} for t in hrm8k)  # generated, parsed and compared by lm-eval
    assert raw["n-samples"]["hrm8k_gsm8k"]["effective"] == 2 and "hrm8k" not in scores  # lm-eval: no aggregate
    assert raw["configs"]["hrm8k_gsm8k"]["generation_kwargs"]["max_gen_toks"] == 8

    table = (out / "results.md").read_text()
    assert table == capsys.readouterr().out and "KoBEST" not in table
    for suite in KOREAN:
        assert f"| {SUITES[suite][0]} | Metric | {sft_run.name} |" in table, suite
    kmmlu = suite_rows(table, "KMMLU")
    assert [row.split(" | ")[0] for row in kmmlu] == ["| kmmlu", *(f"| {g}" for g in record["suites"]["kmmlu"][1:])]
    assert all(row.split(" | ")[1] == "acc" and row.endswith("% |") for row in kmmlu)
    assert [row.split(" | ")[:2] for row in suite_rows(table, "HRM8K")] == [[f"| {t}", "exact_match"] for t in hrm8k]
    assert suite_rows(table, "KorMedMCQA")[0].startswith("| kormedmcqa | exact_match,extract_answer | ")
    assert "rows per task: kmmlu 45, haerae 10, click 13, csatqa 6, kormedmcqa 4, hrm8k 6" in table

    from kotune.model_card import eval_results  # the model card's metadata: the rows results.md shows
    carded = {r.dataset_type for r in eval_results(record)}
    assert {"kmmlu", *groups, "haerae", "hrm8k_gsm8k", "kormedmcqa"} <= carded
    assert not carded & set(kmmlu_leaves)


def test_other_korean_suites_offline(sft_run, tmp_path):
    """The other accepted suites that have fixtures: KMMLU's variants (KMMLU-HARD's configs, generated answers
    scored by exact_match), INCLUDE's Korean split and PAWS-X ko; one row per task."""
    tasks = "kmmlu_direct,kmmlu_hard,kmmlu_direct_hard,kmmlu_cot_hard,include_base_44_korean,paws_ko"
    scores = evaluate_run(sft_run, tasks=tasks, limit=1, out_dir=tmp_path, data_dir=FIXTURE,
                          gen_kwargs="max_gen_toks=8")
    assert set(scores["kmmlu_hard"]) == {"acc"} and set(scores["kmmlu_hard_humss"]) == {"acc"}
    assert set(scores["kmmlu_direct"]) == set(scores["kmmlu_direct_hard_stem"]) == {"exact_match"}
    assert set(scores["kmmlu_cot_hard"]) == {"exact_match,get-answer"}
    assert set(scores["include_base_44_korean"]) == {"acc"} and set(scores["paws_ko"]) == {"acc"}
    assert all(0.0 <= v <= 1.0 for row in scores.values() for v in row.values())
    record = json.loads((tmp_path / "results.json").read_text())
    assert sum(t.startswith("kmmlu_cot_hard_") for t in record["lm_eval"]["n-samples"]) == 45
    table = (tmp_path / "results.md").read_text()
    assert "| kmmlu_cot_hard_applied_science | exact_match,get-answer |" in table and "| paws_ko | acc |" in table


def test_korean_suite_mistakes_get_one_line(sft_run, tmp_path, capsys):
    err = one_line_error(["eval", str(sft_run), "--tasks", "kmmlu_hrad,haerae"], capsys)
    assert "unknown eval task 'kmmlu_hrad': did you mean 'kmmlu_hard'?" in err
    assert "hrm8k" in err and "korean = kmmlu+haerae+click+csatqa+kormedmcqa+hrm8k" in err and "kit19 = " in err

    kit19_only = tmp_path / "kit19"  # the KIT-19 fixtures without any suite's files
    for task in TASKS:
        shutil.copytree(FIXTURE / task, kit19_only / task)
    err = one_line_error(["eval", str(sft_run), "--tasks", "kmmlu,hrm8k,kbl", "--data_dir", str(kit19_only),
                          "--out", str(tmp_path / "o")], capsys)
    assert "kmmlu: 45 of its 45 tasks lack data" in err and f"{kit19_only}/HAERAE-HUB/KMMLU/" in err
    assert "hrm8k: 5 of its 5 tasks lack data" in err and "/HAERAE-HUB/HRM8K/GSM8K/test.jsonl" in err
    assert "kbl: 65 of its 65 tasks lack data" in err and "/lbox/kbl/" in err and not (tmp_path / "o").exists()

    raw = base_config(sft_run, tmp_path / "out", eval_tasks="korean", eval_data_dir=str(kit19_only))
    assert any(p.startswith("eval_data_dir: csatqa: 6 of its 6 tasks lack data") for p in problems(raw))
