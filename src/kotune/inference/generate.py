"""Answer one turn in the format a run was trained with, and stream it word by word."""

from __future__ import annotations

import sys

import torch

from kotune.data.thinking import prompt_opens, template_kwargs, visible_answer
from kotune.models.loading import stop_ids


def thinking_prompt(tokenizer, messages: list[dict], thinking: str = "auto") -> tuple[list[int], bool]:
    """(generation prompt ids with the template's thinking switch for `thinking`, whether the prompt opens a
    reasoning block). Under auto it is exactly `prompt_formats.prompt_ids`: the template's default."""
    kwargs = template_kwargs(tokenizer.chat_template, thinking, tokenizer.name_or_path)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **kwargs)
    return tokenizer(text, add_special_tokens=False)["input_ids"], prompt_opens(text)


@torch.no_grad()
def answer(model, tokenizer, question: str, max_new_tokens: int = 64, streamer=None, system: str | None = None,
           temperature: float = 0.0, top_p: float = 1.0, thinking: str = "auto") -> str:
    """One user turn (after an optional system message), greedy unless temperature > 0; stops at the EOS that
    training taught. `thinking` (auto | on | off) sets the template's switch; the answer returned (and streamed)
    is the final answer, the reasoning block cut off."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]
    ids, opened = thinking_prompt(tokenizer, messages, thinking)
    if streamer is not None:
        streamer.opened = opened
    input_ids = torch.tensor([ids], device=model.device)
    sampling = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else dict(do_sample=False)
    out = model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                         eos_token_id=stop_ids(tokenizer, getattr(model.generation_config, "eos_token_id", None)),
                         pad_token_id=tokenizer.pad_token_id, streamer=streamer,
                         **sampling)
    return visible_answer(tokenizer, out[0, len(ids):].tolist(), opened)


class WordStreamer:
    """Streams an answer word by word as generate() produces it; the chunks join to exactly what answer() returns.

    Unlike transformers' TextStreamer it never re-decodes from a newline (SentencePiece would drop the space after
    it) and holds back surrounding whitespace, so streamed and non-streamed text are the same string.
    """

    def __init__(self, tokenizer, out=None, opened: bool = False):
        self.tokenizer, self.out, self.opened = tokenizer, out, opened  # opened: the prompt opened a reasoning block
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
        return visible_answer(self.tokenizer, self.ids, self.opened)

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
