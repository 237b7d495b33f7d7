"""Every preference stage on the same experiment (kotune.testing.preference): from one SFT model that answers in both
registers, each method trains on 36 pairs with polite 합쇼체 chosen, and a control on the same pairs swapped.

Reported per method on 12 held-out prompts: implied-reward accuracy and mean margin against the SFT model (the
log-prob margin of chosen over rejected, times 0.1), the polite share of greedy answers, answer similarity to a
reference answer, the likelihood watch (the share of probe chosen answers less likely than at the start, at the
end; kotune.stages.displacement) and the training step time as a ratio to DPO's in the same run. DPO, IPO and KTO
run twice: with the loss alone at the earlier settings ("plain", TRL's default loss) and with kotune's shipped
settings (kotune.testing.preference.METHODS). The reward model reports held-out pairwise accuracy; GRPO the mean
speech-level reward of its first and last steps.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/preference_stages.py [--isa AVX2]

`--isa AVX2` runs everything under ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 (a CPU without AVX512, where
bf16 is emulated and fp32 rounds differently) and writes its own RESULTS section.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from packing import write_results  # noqa: E402

PLAIN = {  # the loss alone, at the settings shipped before the likelihood watch: what the shipped settings prevent
    "DPO plain (sigmoid)": ("dpo", {"beta": 0.1, "loss_type": ["sigmoid"], "num_train_epochs": 3}),
    "IPO plain (ipo, beta 0.1)": ("dpo", {"beta": 0.1, "loss_type": ["ipo"], "num_train_epochs": 3}),
    "KTO plain (beta 0.1)": ("kto", {"beta": 0.1, "num_train_epochs": 3}),
    "SimPO at lr 5e-4, 2 epochs": ("simpo", {"beta": 2.0, "simpo_gamma": 0.5, "num_train_epochs": 2}),
}
SHIPPED_LABELS = {"dpo": "DPO [sigmoid, sft]", "ipo": "IPO [ipo, sft], beta 0.5", "orpo": "ORPO",
                  "simpo": "SimPO, lr 2.5e-4", "kto": "KTO, beta 0.5"}


def step_seconds(run: Path) -> float:
    state = json.loads((run / "trainer_state.json").read_text())
    return state["log_history"][-1]["train_runtime"] / state["global_step"]


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--isa", help="ONEDNN_MAX_CPU_ISA (AVX2: as on a CPU without AVX512); re-runs itself so "
                        "torch starts under it")
    opts = parser.parse_args()
    if opts.isa and os.environ.get("ONEDNN_MAX_CPU_ISA") != opts.isa:
        import subprocess

        env = dict(os.environ, ONEDNN_MAX_CPU_ISA=opts.isa, ATEN_CPU_CAPABILITY=opts.isa.lower())
        return subprocess.call([sys.executable, *sys.argv], env=env)

    from kotune.inference.loading import load_for_inference
    from kotune.inference.score import score_rows
    from kotune.testing.preference import (METHODS, fast_config, measure_preference, run_stage, sft_start,
                                           train_both_ways, unpaired, write_jsonl, write_yaml)

    root = Path(tempfile.mkdtemp(prefix="kotune-pref-bench-"))
    start = sft_start(root)
    ref = load_for_inference(start["sft"])
    before = measure_preference(start["sft"], ref, start["held"])
    rows, dpo_step = [], None
    runs_to_do = [(label, *PLAIN[label]) for label in PLAIN]
    runs_to_do[1:1] = [(SHIPPED_LABELS["dpo"], *METHODS["dpo"])]
    runs_to_do[3:3] = [(SHIPPED_LABELS["ipo"], *METHODS["ipo"])]
    runs_to_do[5:5] = [(SHIPPED_LABELS["kto"], *METHODS["kto"])]
    runs_to_do += [(SHIPPED_LABELS[m], *METHODS[m]) for m in ("simpo", "orpo")]
    for i, (label, stage, extra) in enumerate(runs_to_do):
        fmt = "unpaired" if stage == "kto" else "preference"
        name = f"run{i}"
        runs = train_both_ways(stage, start, name, fmt=fmt, to_rows=unpaired if fmt == "unpaired" else None, **extra)
        after = measure_preference(runs[name], ref, start["held"])
        control = measure_preference(runs[f"swapped_{name}"], ref, start["held"])
        watch = json.loads((runs[name] / "run_info.json").read_text())["likelihood_displacement"]
        step = step_seconds(runs[name])
        dpo_step = dpo_step or step
        rows.append(f"| {label} | {before['accuracy']:.2f} / {before['margin']:+.2f} | {after['accuracy']:.2f} / "
                    f"{after['margin']:+.2f} | {control['accuracy']:.2f} / {control['margin']:+.2f} | "
                    f"{before['polite']:.2f} → {after['polite']:.2f} (control {control['polite']:.2f}) | "
                    f"{before['correct']:.2f} → {after['correct']:.2f} | {watch['final_chosen_less_likely']:.2f}"
                    f"{' (warned)' if watch['warned_at_step'] is not None else ''} | "
                    f"{step * 1000:.0f} ms ({step / dpo_step:.2f}×) |")

    rm = train_both_ways("rm", start, "rm", num_train_epochs=8, learning_rate=2.0e-3)
    pairs = [{"prompt": r["prompt"], "answer": a} for r in start["held"] for a in (r["chosen"], r["rejected"])]

    def pairwise(run):
        s = score_rows(run, pairs)
        return sum(c > r for c, r in zip(s[::2], s[1::2])) / len(start["held"])

    rm_line = (f"| reward model | pairwise accuracy 0.50 (chance) | {pairwise(rm['rm']):.2f} | "
               f"{pairwise(rm['swapped_rm']):.2f} | – | – | – | {step_seconds(rm['rm']) * 1000:.0f} ms "
               f"({step_seconds(rm['rm']) / dpo_step:.2f}×) |")

    prompts = write_jsonl(root / "prompts.jsonl", [{"prompt": r["prompt"], "speech_level": "합쇼체"}
                                                   for r in start["train"]])
    cfg = fast_config(start["sft"], root / "grpo", prompts, "prompt", reward_funcs=["speech_level"], max_steps=24,
                      per_device_train_batch_size=8, num_generations=4, max_completion_length=40,
                      learning_rate=1.0e-3, temperature=1.0)
    assert run_stage("grpo", write_yaml(root / "grpo.yaml", cfg)) == 0
    logs = [h["reward"] for h in json.loads((root / "grpo/trainer_state.json").read_text())["log_history"]
            if "reward" in h]
    first, last = sum(logs[:6]) / 6, sum(logs[-6:]) / 6
    grpo_line = (f"| GRPO (speech_level reward, 합쇼체) | mean reward, first 6 steps {first:.2f} | last 6 steps "
                 f"{last:.2f} | – | – | – | – | {step_seconds(root / 'grpo') * 1000:.0f} ms "
                 f"({step_seconds(root / 'grpo') / dpo_step:.2f}×) |")

    table = ["| method | accuracy / margin, SFT start | after | swapped control | polite share | answer similarity "
             "| chosen less likely | step time (vs plain DPO) |", "|---|---|---|---|---|---|---|---|", *rows, rm_line,
             grpo_line, "",
             "Accuracy/margin: share of the 12 held-out pairs whose implied reward (0.1 × the log-prob margin of "
             "chosen over rejected, against the SFT model) is positive, and its mean; the SFT start is the reference, "
             "so 0 / 0 there. Polite share: greedy answers containing 니다. Answer similarity: mean best-match ratio "
             "of greedy answers to either reference answer (one answer cut short costs about 0.013-0.04). Chosen "
             "less likely: share of the 16 probe chosen answers more than 0.1 nat less likely than at the start, at "
             "the end of training (warned: kotune's likelihood-displacement warning fired). Step time: "
             "train_runtime / steps (4 pairs, 4 KTO rows or 8 GRPO completions per step)."]
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    write_results(f"preference_stages_{isa.lower()}" if isa else "preference_stages", "\n".join(table),
                  f"python bench/preference_stages.py{f' --isa {isa}' if isa else ''}")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
