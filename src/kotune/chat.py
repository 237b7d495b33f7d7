"""`kotune chat RUN_DIR [--prompt TEXT]`: answer in the run's training prompt format."""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kotune chat",
                                     description="Answer prompts with a trained run dir, in its training format.")
    parser.add_argument("run_dir")
    parser.add_argument("--prompt", help="answer this one prompt and exit")
    parser.add_argument("--max_new_tokens", type=int, default=128)
    args = parser.parse_args(argv)

    from kotune.generate import answer, load_for_inference

    model, tokenizer = load_for_inference(args.run_dir)
    if args.prompt:
        print(answer(model, tokenizer, args.prompt, max_new_tokens=args.max_new_tokens))
        return 0
    while True:
        try:
            question = input("질문> ").strip()
        except EOFError:
            return 0
        if question:
            print(answer(model, tokenizer, question, max_new_tokens=args.max_new_tokens))
