"""`kotune chat RUN_DIR [--prompt TEXT]`: answer in the run's training prompt format, streaming words as they come.

RUN_DIR may be an adapter run dir (loaded on its base as trained), a `kotune merge` output, or any full model dir.
Without --prompt it reads one prompt per line from stdin until EOF (Ctrl-D).
"""

from __future__ import annotations

import argparse
import sys

DTYPES = ("float32", "bfloat16", "float16")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="kotune chat",
                                     description="Answer prompts with a run dir (adapter, merged or full model) in "
                                                 "its training prompt format (the tokenizer's chat template), "
                                                 "streaming the answer as it is generated.")
    parser.add_argument("run_dir")
    parser.add_argument("--prompt", help="answer this one prompt and exit (default: read prompts from stdin)")
    parser.add_argument("--system", help="a system message before each prompt (every kotune format accepts one)")
    parser.add_argument("--max_new_tokens", type=int, default=256)
    parser.add_argument("--do_sample", action="store_true", help="sample instead of greedy decoding")
    parser.add_argument("--temperature", type=float, default=None,
                        help="sampling temperature (> 0 implies --do_sample; default 0.7 when sampling)")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling mass (with sampling)")
    parser.add_argument("--seed", type=int, default=None, help="seed for sampling, for a repeatable answer")
    parser.add_argument("--dtype", choices=DTYPES, default=None,
                        help="weights dtype (default: float32 on CPU, bfloat16 on GPU)")
    parser.add_argument("--no_stream", action="store_true", help="print each answer only when it is complete")
    parser.add_argument("--thinking", choices=("auto", "on", "off"), default="auto",
                        help="reasoning bases: the chat template's thinking switch (auto: the template's default); "
                             "the answer shown is the final answer, the reasoning cut off")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    temperature = args.temperature if args.temperature is not None else (0.7 if args.do_sample else 0.0)
    if args.do_sample and temperature <= 0:
        from kotune.errors import KotuneError

        raise KotuneError("--do_sample needs --temperature > 0")

    import torch

    from kotune.inference.generate import answer, stdout_streamer
    from kotune.inference.loading import load_for_inference

    device = "cuda" if torch.cuda.is_available() else None
    dtype = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if device else torch.float32)
    model, tokenizer = load_for_inference(args.run_dir, dtype=dtype, device=device)
    from kotune.data.thinking import template_kwargs

    template_kwargs(tokenizer.chat_template, args.thinking, args.run_dir)  # on/off without a switch: one error now
    if args.seed is not None:
        torch.manual_seed(args.seed)

    def reply(question: str) -> None:
        streamer = None if args.no_stream else stdout_streamer(tokenizer)
        text = answer(model, tokenizer, question, max_new_tokens=args.max_new_tokens, streamer=streamer,
                      system=args.system, temperature=temperature, top_p=args.top_p, thinking=args.thinking)
        if streamer is None:
            print(text, flush=True)

    if args.prompt is not None:
        reply(args.prompt)
        return 0
    interactive = sys.stdin.isatty()
    while True:
        try:
            question = input("질문> " if interactive else "").strip()
        except EOFError:
            if interactive:
                print()
            return 0
        if question:
            reply(question)
