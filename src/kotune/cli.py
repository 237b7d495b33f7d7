"""`kotune` command line: one training subcommand per registered stage (`kotune sft|dpo CONFIG [--key=value ...]`),
plus `kotune data|plan|sweep|eval|merge|export|score|chat|demo ...` (each has --help).

Only the registries and the config check are imported before a config is validated, so a typo is reported in
about a second; torch and TRL load when a run starts.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from kotune.errors import user_errors_exit
from kotune.stages.registry import STAGES

# Subcommands that own their argument parsing: `kotune NAME ...` runs MODULE.main(argv).
SUBCOMMANDS = {
    "data": ("kotune.tools.data_report", "report what a config trains on: counts, lengths, drops, packing efficiency"),
    "plan": ("kotune.tools.plan", "will it fit? parameters, tokens per step, memory per GPU, from the config alone"),
    "sweep": ("kotune.tools.sweep", "run a grid or list of overrides of one config, then a comparison table and plot"),
    "eval": ("kotune.eval.run", "KoBEST, KLUE STS/YNAT and lm-eval's Korean suites (KMMLU, HAE-RAE, CLIcK, ...) on a run dir"),
    "merge": ("kotune.inference.merge", "merge a LoRA adapter into its base: a full model AutoModelForCausalLM loads"),
    "export": ("kotune.export.gguf_export", "a run as GGUF for llama.cpp (f16, q8_0, q4_k_m) with an Ollama Modelfile"),
    "score": ("kotune.inference.score", "score {prompt, answer} JSONL rows with a reward model from `kotune rm`"),
    "chat": ("kotune.inference.chat", "answer prompts with a trained run dir, in its training format (streams tokens)"),
    "vocab": ("kotune.tools.vocab", "Korean vocabulary extension: build new tokens, extend a base, report tokens/syllable"),
    "slurm": ("kotune.tools.slurm", "write (or submit) an sbatch script: srun torchrun on N nodes, rendezvous from SLURM_*"),
    "ray": ("kotune.tools.ray_launch", "run a stage on a Ray cluster through Ray Train's TorchTrainer (pip install kotune[ray])"),
    "studio": ("kotune.studio.app", "web UI on 127.0.0.1: config form, what the model learns, live runs, chat (kotune[ui])"),
    "demo": ("kotune.tools.demo", "offline demo: tiny Polyglot-shaped model, LoRA SFT, a Korean answer"),
}


def train(stage: str, rest: list[str]) -> int:
    """`kotune STAGE CONFIG [--key=value ...]`: the stage's runner, the same code as its train/ entry script."""
    if not rest or rest[0] in ("-h", "--help"):
        from kotune.config.validation import field_help

        print(f"usage: kotune {stage} CONFIG.yaml [--key=value ...]\n\nAccepted keys (YAML or --key=value):")
        for name, text in field_help(stage):
            print(f"  {name:38s} {text.splitlines()[0] if text else ''}"[:160])
        return 0
    module, _, function = STAGES[stage].runner.partition(":")
    return getattr(importlib.import_module(module), function)(rest)


def main(argv: list[str] | None = None) -> int:
    from kotune.logs import quiet_library_noise

    argv = sys.argv[1:] if argv is None else argv
    quiet_library_noise()  # every subcommand, chat and merge included, not only the runs that set up logging
    parser = argparse.ArgumentParser(prog="kotune", description="Fine-tune Korean instruction-following LLMs.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, stage in STAGES.items():
        sub.add_parser(name, help=stage.summary, add_help=False)
    for name, (_, text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)
    if argv and argv[0] in STAGES:
        with user_errors_exit():
            return train(argv[0], argv[1:])
    if argv and argv[0] in SUBCOMMANDS:
        with user_errors_exit():
            return importlib.import_module(SUBCOMMANDS[argv[0]][0]).main(argv[1:])
    parser.parse_args(argv)  # --help, or the error for an unknown command
    return 2


if __name__ == "__main__":
    sys.exit(main())
