"""`kotune` command line: `kotune sft|dpo CONFIG [--key=value ...]`, `kotune data CONFIG`, `kotune demo`,
`kotune plan|sweep|eval|merge|chat ...` (each has --help)."""

from __future__ import annotations

import argparse
import sys

from kotune.errors import user_errors_exit


def _train(kind: str, rest: list[str]) -> int:
    if not rest or rest[0] in ("-h", "--help"):
        from kotune.config import field_help

        print(f"usage: kotune {kind} CONFIG.yaml [--key=value ...]\n\nAccepted keys (YAML or --key=value):")
        for name, text in field_help(kind):
            print(f"  {name:38s} {text.splitlines()[0] if text else ''}"[:160])
        return 0
    if kind == "dpo":
        from kotune.dpo import main
    else:
        from kotune.sft import main
    return main(rest)


# Subcommands that own their argparse: `kotune NAME ...` runs MODULE.main(argv).
SUBCOMMANDS = {
    "sweep": ("kotune.sweep", "run a grid or list of overrides of one config, then a comparison table and plot"),
    "eval": ("kotune.evaluate", "KoBEST + KLUE STS/YNAT through lm-eval on a run dir; results JSON + Markdown"),
    "merge": ("kotune.export", "merge a LoRA adapter into its base: a full model AutoModelForCausalLM loads"),
    "chat": ("kotune.chat", "answer prompts with a trained run dir, in its training format (streams tokens)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="kotune", description="Fine-tune Korean instruction-following LLMs.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("sft", help="supervised fine-tuning: kotune sft CONFIG.yaml [--key=value ...]", add_help=False)
    sub.add_parser("dpo", help="preference training: kotune dpo CONFIG.yaml [--key=value ...]", add_help=False)
    sub.add_parser("plan", help="will it fit? parameters, tokens per step, memory per GPU, from the config alone",
                   add_help=False)
    data = sub.add_parser("data", help="report what a config trains on: counts, lengths, drops, packing efficiency",
                          add_help=False)
    data.add_argument("rest", nargs=argparse.REMAINDER)
    sub.add_parser("demo", help="offline demo: tiny Polyglot-shaped model, LoRA SFT, a Korean answer")
    for name, (_, text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=text, add_help=False)

    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        with user_errors_exit():
            return importlib.import_module(SUBCOMMANDS[argv[0]][0]).main(argv[1:])
    if argv and argv[0] in ("sft", "dpo"):
        with user_errors_exit():
            return _train(argv[0], argv[1:])
    if argv and argv[0] == "plan":
        rest = argv[1:]
        if not rest or rest[0] in ("-h", "--help"):
            print("usage: kotune plan CONFIG.yaml [--gpus N] [--gpu-mem 80GiB] [--key=value ...]\n\n"
                  "Estimates parameters, tokens per step and memory per GPU from the model config alone (no weights)"
                  " and says whether the run fits. Exit code 1 when it does not.")
            return 0
        opts = {"--gpus": "1", "--gpu-mem": None}
        for flag in opts:
            if flag in rest:
                i = rest.index(flag)
                opts[flag], rest = rest[i + 1], rest[:i] + rest[i + 2:]
        with user_errors_exit():
            from kotune.plan import run_plan

            return run_plan(rest, gpus=int(opts["--gpus"]), gpu_mem=opts["--gpu-mem"])
    if argv and argv[0] == "data":
        rest = argv[1:]
        if not rest or rest[0] in ("-h", "--help"):
            print("usage: kotune data CONFIG.yaml [--out DIR] [--key=value ...]\n\nWrites data_report.json and "
                  "lengths.png (default: runs/data_report/<config name>) and prints the summary.")
            return 0
        out = None
        if "--out" in rest:
            i = rest.index("--out")
            out, rest = rest[i + 1], rest[:i] + rest[i + 2:]
        with user_errors_exit():
            from kotune.data.report import run_data_report

            return run_data_report(rest, out)
    args = parser.parse_args(argv)
    with user_errors_exit():
        if args.command == "demo":
            from kotune.demo import run_demo

            return run_demo()


if __name__ == "__main__":
    sys.exit(main())
