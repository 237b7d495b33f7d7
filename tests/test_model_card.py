"""The model card (README.md in the Hub's format) in every output dir: an SFT run, a preference stage started from
it, a merged dir, and eval results reaching the metadata after `refresh_model_card`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import REPO, SAMPLE, base_config, run_sft_inprocess, write_config
from helpers import preference_config, run_stage_script
from huggingface_hub import ModelCard

from kotune.model_card import refresh_model_card, write_model_card
from kotune.model_card_text import EXAMPLE

HUB = "kotune-test/tiny-llama"
PREFERENCE = REPO / "src" / "kotune" / "data" / "sample" / "preference.jsonl"


@pytest.fixture(scope="module")
def hub_base(tiny_bases, tmp_path_factory):
    """The tiny Llama laid out as a Hugging Face cache snapshot (models--org--name/snapshots/REV, file links), with
    the repo's own card naming its licence."""
    snapshot = tmp_path_factory.mktemp("hub") / "models--kotune-test--tiny-llama" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for f in tiny_bases["llama"].iterdir():
        (snapshot / f.name).symlink_to(f)
    (snapshot / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny llama\n")
    return snapshot


class FakeHub:
    """Stands in for transformers.trainer's `hf_api()` (no Hub here): records what each upload would send."""

    def __init__(self):
        self.uploads = []

    def create_repo(self, repo_id, **_):
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, repo_id, folder_path, **_):
        folder = Path(folder_path)
        self.uploads.append({"repo_id": repo_id, "files": sorted(p.name for p in folder.iterdir()),
                             "card": (folder / "README.md").read_text(encoding="utf-8")})


@pytest.fixture(scope="module")
def pushed(hub_base, tmp_path_factory):
    """A tiny SFT run with push_to_hub (the Hub faked): the run dir and what was uploaded."""
    root, hub = tmp_path_factory.mktemp("card"), FakeHub()
    cfg = base_config(hub_base, root / "sft", max_steps=3, push_to_hub=True, hub_model_id="kotune-test/sft")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("transformers.trainer.hf_api", lambda: hub)
        assert run_sft_inprocess(write_config(root / "c.yaml", cfg)) == 0
    return root / "sft", hub.uploads


@pytest.fixture(scope="module")
def sft_run(pushed):
    return pushed[0]


def test_push_to_hub_uploads_once_with_kotunes_card_and_every_file(pushed):
    run, uploads = pushed
    (upload,) = uploads  # one push, at the end (save_model's own push is held back until the files are written)
    assert upload["repo_id"] == "kotune-test/sft"
    assert {"README.md", "adapter_model.safetensors", "kotune_config.yaml", "data_report.json", "loss.png",
            "trainer_state.json", "generation_config.json", "tokenizer.json"} <= set(upload["files"])
    assert upload["card"] == (run / "README.md").read_text(encoding="utf-8")  # kotune's card, not TRL's
    assert "kotune" in ModelCard(upload["card"]).data.tags and "AutoPeftModelForCausalLM.from_pretrained(" \
        '"kotune-test/sft")' in upload["card"]


def rendered(run_dir, **kw) -> str:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(run_dir).apply_chat_template(kw.pop("messages", EXAMPLE), tokenize=False,
                                                                      **kw)


def test_sft_run_dir_has_a_hub_model_card(sft_run, hub_base):
    card = ModelCard.load(sft_run / "README.md")
    meta = card.data.to_dict()
    assert meta["base_model"] == HUB and meta["base_model_relation"] == "adapter"
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "peft" and meta["language"] == ["ko"]
    assert {"kotune", "sft", "lora"} <= set(meta["tags"]) and "model-index" not in meta
    report = json.loads((sft_run / "data_report.json").read_text())[str(SAMPLE)]
    text = card.text
    assert f"| `{SAMPLE.name}` (로컬 파일) | instruction | unknown | {report['used']:,} / {report['available']:,} |" \
        in text
    assert rendered(sft_run) in text and rendered(sft_run, messages=EXAMPLE[:1], add_generation_prompt=True) in text
    assert "| 시작 모델 (model_name_or_path) | `kotune-test/tiny-llama (HF cache snapshot)` |" in text
    assert "| learning_rate | `0.01` |" in text and "| max_steps | `3` |" in text and "num_train_epochs" not in text
    assert "| learning_rate | `0.01` |" in text and "| LoRA r / alpha / dropout | 8 / 16 / 0.0 |" in text
    assert "최종 train loss" in text and "AutoPeftModelForCausalLM" in text and "kotune export sft --gguf" in text
    assert str(hub_base.parent) not in card.content  # a public card names local dirs by their folder name only


def test_eval_results_reach_the_metadata_after_refresh(sft_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sft_run, run, symlinks=True)
    (run / "eval").mkdir()
    record = {"model": str(run), "num_fewshot": 0, "limit": None, "apply_chat_template": False,
              "tasks": {"kobest_copa": {"acc": 0.61, "macro_f1": 0.6}, "klue_sts": {"acc": 0.55, "macro_f1": 0.5}},
              "lm_eval": {"configs": {"kobest_copa": {"test_split": "test"}}}}
    (run / "eval" / "results.json").write_text(json.dumps(record))
    (run / "eval" / "results.md").write_text("| Benchmark Dataset | Metric | run |\n|---|---|---|\n")
    card = ModelCard.load(refresh_model_card(run))
    found = {(r.dataset_type, r.dataset_config, r.metric_type): r for r in card.data.eval_results}
    assert found[("skt/kobest_v1", "copa", "acc")].metric_value == 0.61
    assert found[("skt/kobest_v1", "copa", "acc")].dataset_split == "test"
    assert found[("klue/klue", "sts", "macro_f1")].metric_value == 0.5
    assert card.data.eval_results[0].dataset_args == {"num_few_shot": 0}
    meta = yaml.safe_load(card.content.split("---")[1])
    assert meta["model-index"][0]["name"] == "sft" and meta["base_model"] == HUB  # hub_model_id names it
    assert "| Benchmark Dataset | Metric | run |" in card.text  # results.md as kotune eval wrote it


def test_merged_dir_has_a_model_card(sft_run, tmp_path):
    from kotune.inference.merge import merge

    out = merge(sft_run, tmp_path / "merged")
    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == HUB and card.data.base_model_relation == "finetune"
    assert card.data.library_name == "transformers" and "merged" in card.data.tags
    assert f"`{SAMPLE.name}` (로컬 파일)" in card.text and rendered(out) in card.text
    assert "AutoModelForCausalLM.from_pretrained" in card.text and "kotune merge" in card.text
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]


def test_preference_stage_card(sft_run, tmp_path):
    cfg = preference_config(sft_run, tmp_path / "dpo", PREFERENCE, max_steps=2, beta=0.2)
    assert run_stage_script("dpo", write_config(tmp_path / "dpo.yaml", cfg)) == 0
    card = ModelCard.load(tmp_path / "dpo" / "README.md")
    assert card.data.base_model == HUB and "dpo" in card.data.tags  # through the SFT run's own card
    assert "| beta | `0.2` |" in card.text and f"`{PREFERENCE.name}` (로컬 파일) | preference |" in card.text
    assert "DPO" in card.text and rendered(tmp_path / "dpo") in card.text


def test_card_without_a_hub_base_names_no_base_model_and_knows_kit19_licences(tmp_path):
    """A run from a local base that is not a Hub snapshot: no base_model metadata (the Hub would reject a path);
    KIT-19 sources carry the registry's licence, others 'unknown', and NC/ND data gets a warning."""
    base = tmp_path / "my-base"
    base.mkdir()
    run = tmp_path / "run"
    run.mkdir()
    (run / "kotune_config.yaml").write_text(yaml.safe_dump({"model_name_or_path": str(base)}))
    per_source = {"data/nsmc.txt": {"format": "kit19/nsmc", "available": 10, "used": 8, "dropped": {"empty document": 2}},
                  "data/lbox.jsonl": {"format": "kit19/lbox_summarization", "available": 5, "used": 5, "dropped": {}},
                  "someone/ko-chat": {"format": "chat", "available": 3, "used": 3, "dropped": {}}}
    (run / "data_report.json").write_text(json.dumps({"per_source": per_source}))
    card = ModelCard.load(write_model_card(run))
    assert card.data.base_model is None and card.data.datasets == ["someone/ko-chat"]
    assert "| kit19/nsmc | cc0-1.0 | 8 / 10 | empty document: 2 |" in card.text
    assert "| kit19/lbox_summarization | cc-by-nc-nd-4.0 |" in card.text and "| chat | unknown |" in card.text
    assert "cc-by-nc-nd-4.0): 모델을 배포" in card.text and "base_model을 적어" in card.text
