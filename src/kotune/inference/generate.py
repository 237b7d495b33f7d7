"""Answer one turn in the format a run was trained with, and stream it word by word."""

from __future__ import annotations

import sys

import torch

from kotune.data.prompt_formats import prompt_ids
from kotune.models.loading import stop_ids


@torch.no_grad()
def answer(model, tokenizer, question: str, max_new_tokens: int = 64, streamer=None, system: str | None = None,
           temperature: float = 0.0, top_p: float = 1.0) -> str:
    """One user turn (after an optional system message), greedy unless temperature > 0; stops at the EOS that
    training taught."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    ids = prompt_ids(tokenizer, messages)
    input_ids = torch.tensor([ids], device=model.device)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                         eos_token_id=stop_ids(tokenizer, getattr(model.generation_config, "eos_token_id", None)),
                         pad_token_id=tokenizer.pad_token_id, streamer=streamer,
                         **sampling)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True).strip()


class WordStreamer:
    """Streams an answer word by word as generate() produces it; the chunks join to exactly what answer() returns.

    Unlike transformers' TextStreamer it never re-decodes from a newline (SentencePiece would drop the space after
    it) and holds back surrounding whitespace, so streamed and non-streamed text are the same string.
    """

    def __init__(self, tokenizer, out=None):
        self.tokenizer, self.out = tokenizer, out
        self.ids: list[int] = []
        self.chunks: list[str] = []
        self.printed = ""
        self._prompt_seen = False

    def put(self, value) -> None:
        if not self._prompt_seen:  # generate() sends the prompt first
            self._prompt_seen = True
            return
        self.ids.extend(value.reshape(-1).tolist())
        text = self._text()
        cut = max(text.rfind(" "), text.rfind("\n"))
        self._emit(text[:cut].rstrip() if cut > 0 else "")

    def end(self) -> None:
        self._emit(self._text())
        if self.out is not None:
            self.out.write("\n")
            self.out.flush()

    @property
    def text(self) -> str:
        return "".join(self.chunks)

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True).strip()

    def _emit(self, ready: str) -> None:
        if len(ready) <= len(self.printed) or not ready.startswith(self.printed):
            return
        chunk, self.printed = ready[len(self.printed):], ready
        self.chunks.append(chunk)
        if self.out is not None:
            self.out.write(chunk)
            self.out.flush()


def stdout_streamer(tokenizer) -> WordStreamer:
    return WordStreamer(tokenizer, out=sys.stdout)
