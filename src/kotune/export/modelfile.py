"""An Ollama Modelfile whose TEMPLATE reproduces the run's chat template for a turn: the pieces around the prompt,
the system message and the answer are read off the template by rendering it with markers, so every format
(kotune's komt/KoQuality/Llama-2/Mistral, and a base's own ChatML, Llama-3, Gemma or EXAONE template) is covered
without a table of Go templates. Ollama repeats the template for each earlier turn."""

from __future__ import annotations

from kotune.data.prompt_formats import end_of_turn_ids
from kotune.errors import KotuneError

PROMPT, SYSTEM, ANSWER, NEXT = "KOTUNEPROMPT", "KOTUNESYSTEM", "KOTUNEANSWER", "KOTUNENEXT"


def _render(tokenizer, messages: list[dict], generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def template_pieces(tokenizer, strip_bos: bool) -> dict[str, str | None]:
    """{head, system_head, tail, lead, end}: head + prompt + tail is the generation prompt; an earlier answer is
    written as lead + answer + end (lead: what the model itself writes first, e.g. Llama-2's space; end: up to the
    next turn's head, e.g. `</s>` + a new BOS for Llama-2, `</s>` + blank line for komt); system_head
    replaces head when there is a system message (None when the template has no system role)."""
    if not tokenizer.chat_template:
        raise KotuneError("the run's tokenizer has no chat template, so no Modelfile TEMPLATE can be derived")
    user = [{"role": "user", "content": PROMPT}]
    head, _, tail = _render(tokenizer, user, True).partition(PROMPT)
    answered = _render(tokenizer, user + [{"role": "assistant", "content": ANSWER}], False)
    before_answer, _, end = answered.partition(PROMPT)[2].partition(ANSWER)
    lead = before_answer.removeprefix(tail) if before_answer.startswith(tail) else ""
    if strip_bos and tokenizer.bos_token:  # llama.cpp adds BOS itself when the GGUF says so
        head = head.removeprefix(tokenizer.bos_token)
    # between an earlier answer and the next prompt: the end of turn, plus what the next turn's head adds (BOS)
    later = _render(tokenizer, user + [{"role": "assistant", "content": ANSWER}, {"role": "user", "content": NEXT}],
                    True).partition(ANSWER)[2].partition(NEXT)[0]
    if later.endswith(head) and later[:len(later) - len(head)].startswith(end.rstrip()):
        end = later[:len(later) - len(head)]
    try:
        system_head = _render(tokenizer, [{"role": "system", "content": SYSTEM}] + user, True).partition(PROMPT)[0]
    except Exception:  # noqa: BLE001 - templates that refuse a system role (Gemma 2, some komt variants)
        system_head = None
    if system_head is not None and SYSTEM not in system_head:
        system_head = None
    if strip_bos and tokenizer.bos_token and system_head:
        system_head = system_head.removeprefix(tokenizer.bos_token)
    return {"head": head, "system_head": system_head, "tail": tail, "lead": lead, "end": end}


def stop_strings(tokenizer) -> list[str]:
    """What ends an answer: the template's end-of-turn tokens and EOS."""
    stops = [tokenizer.convert_ids_to_tokens(i) for i in end_of_turn_ids(tokenizer)]
    if tokenizer.eos_token:
        stops.append(tokenizer.eos_token)
    return list(dict.fromkeys(stops))


def _go(text: str) -> str:
    """Literal text inside a Go template: only `{{` needs quoting."""
    return text.replace("{{", '{{ "{{" }}')


def modelfile(gguf_name: str, tokenizer, strip_bos: bool) -> str:
    pieces = template_pieces(tokenizer, strip_bos)
    head = _go(pieces["head"])
    if pieces["system_head"] is not None:
        before, _, after = pieces["system_head"].partition(SYSTEM)
        head = f"{{{{ if .System }}}}{_go(before)}{{{{ .System }}}}{_go(after)}{{{{ else }}}}{head}{{{{ end }}}}"
    lead = f"{{{{ if .Response }}}}{_go(pieces['lead'])}{{{{ end }}}}" if pieces["lead"] else ""
    template = f"{head}{{{{ .Prompt }}}}{_go(pieces['tail'])}{lead}{{{{ .Response }}}}{_go(pieces['end'])}"
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{template}"""']
    lines += [f'PARAMETER stop "{stop}"' for stop in stop_strings(tokenizer)]
    return "\n".join(lines) + "\n"
