"""The tokenize-and-label engine: conversations → (input_ids, labels), the loss on assistant turns only.

Each prompt part and each assistant turn is tokenized apart and the ids are concatenated, so every masked prefix is
exactly the prompt inference sends (SentencePiece/Metaspace tokenizers tokenize a prompt ending in a space
differently alone than inside prompt+answer). The mask comes from the tokenizer's chat template turn by turn.
"""

from __future__ import annotations

import re
from functools import lru_cache

from kotune.data.prompt_formats import TEMPLATES, end_of_turn_ids
from kotune.errors import KotuneError

VERBATIM = frozenset(TEMPLATES.values())  # kotune's own formats paste every message's content as it is
MARK = re.compile("\x00(\\d+)\x00")


@lru_cache(maxsize=256)
def _skeleton(template: str, roles: tuple[str, ...], add_generation_prompt: bool, specials: tuple) -> list:
    """The template rendered once per conversation shape with numbered markers for the contents: literal text
    and content slots, alternating."""
    from transformers.utils.chat_template_utils import _compile_jinja_template

    messages = [{"role": role, "content": f"\x00{i}\x00"} for i, role in enumerate(roles)]
    text = _compile_jinja_template(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                                    **dict(specials))
    return [int(part) if i % 2 else part for i, part in enumerate(MARK.split(text))]


def _specials(tokenizer) -> tuple:
    """The special tokens a chat template sees (bos_token, eos_token, ...), hashable for the skeleton cache."""
    return tuple(sorted((k, v) for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)))


@lru_cache(maxsize=256)
def _shown(template: str, roles: tuple[str, ...], specials: tuple) -> tuple[frozenset | None, str | None]:
    """(indexes of the messages whose content the template renders, or None where it rewrites contents; the
    template's own error for this conversation shape, if it raises one)."""
    try:
        parts = _skeleton(template, roles, False, specials)
    except Exception as err:  # noqa: BLE001 - a template's raise_exception, or one that needs other roles
        return None, f"the chat template refuses this conversation ({str(err).splitlines()[0] if str(err) else err})"
    shown = frozenset(p for p in parts if isinstance(p, int))
    return shown or None, None


def unplaced_turn(tokenizer, messages: list[dict], specials: tuple | None = None) -> str | None:
    """Why the prompt format cannot render this conversation as it stands, or None: a system message it would leave
    out where it stands (llama2 renders one only as the first turn), or the template's own refusal."""
    if not isinstance(tokenizer.chat_template, str):  # no template (or several): encoding reports it
        return None
    roles = tuple(m["role"] for m in messages)
    shown, error = _shown(tokenizer.chat_template, roles, specials if specials is not None else _specials(tokenizer))
    if error or shown is None:
        return error
    if any(role == "system" and i not in shown for i, role in enumerate(roles)):
        name = next((n for n, t in TEMPLATES.items() if t == tokenizer.chat_template), "the base's chat template")
        return f"a system message the prompt format ({name}) cannot place there"
    return None


def fix_for(reason: str) -> str:
    """The fix a strict error names for a row dropped while encoding."""
    if reason.startswith("a system message"):
        return ("move the system message to the start of the conversation, or choose a prompt_format that renders "
                "it where it stands (komt, koquality, mistral)")
    if reason.startswith("the chat template refuses"):
        return "fix the row, or set prompt_format to a kotune format (komt, koquality, llama2, mistral)"
    return "fix the row, raise max_length"


def _render_fast(tokenizer, messages: list[dict], add_generation_prompt: bool, specials: tuple | None = None) -> str:
    """apply_chat_template(tokenize=False) without its per-call overhead (3x faster on 100K rows); kotune's own
    formats fill a cached skeleton instead of rendering (3x faster again). The round-trip tests hold both to the
    public API's output. `specials`: `_specials(tokenizer)`, computed once per batch by the caller."""
    template = tokenizer.chat_template
    if template in VERBATIM and not any("\x00" in m["content"] for m in messages):
        parts = _skeleton(template, tuple(m["role"] for m in messages), add_generation_prompt,
                          specials if specials is not None else _specials(tokenizer))
        return "".join(messages[part]["content"] if isinstance(part, int) else part for part in parts)
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # a transformers without the helper: the public API, slower
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    template = _compile_jinja_template(tokenizer.chat_template)
    return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                           **tokenizer.special_tokens_map)


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Ids of each text, no special tokens added; straight from the Rust tokenizer when there is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is not None:  # encode_batch_fast: the same ids without computing offsets (about 15% faster)
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _segments(tokenizer, messages: list[dict], last_turn_only: bool = False, specials: tuple | None = None,
              ) -> list[tuple[str, bool]]:
    """The conversation as (text, trained) pieces: the prompt up to each assistant turn, then that turn. A turn
    marked `train: False` (or, with `last_turn_only`, every assistant turn but the last) is context."""
    pieces: list[tuple[str, bool]] = []
    rendered = ""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant") if last_turn_only else None
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render_fast(tokenizer, messages[:i], True, specials)
        upto = _render_fast(tokenizer, messages[: i + 1], False, specials)
        if not before.startswith(rendered) or not upto.startswith(before):
            raise KotuneError(f"the chat template of '{tokenizer.name_or_path}' is not prefix-stable (a later turn "
                              "changes what came before), so kotune cannot mask it turn by turn: set prompt_format "
                              "to a kotune format (komt, koquality, llama2, mistral)")
        if len(before) > len(rendered):
            pieces.append((before[len(rendered):], False))
        pieces.append((upto[len(before):], message.get("train", True) and last in (None, i)))
        rendered = upto
    return pieces


def encode_conversations(tokenizer, conversations: list[list[dict]], last_turn_only: bool = False,
                         ) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per conversation; only assistant turns (and their EOS) carry labels: every one, or with
    `last_turn_only` the last.

    The prompt part up to each assistant turn and that turn's text are tokenized apart and concatenated, so every
    prompt prefix equals what inference sends. All pieces go to the tokenizer in one batch (fast tokenizers then
    use every core).
    """
    specials = _specials(tokenizer)
    segmented = [_segments(tokenizer, m, last_turn_only, specials) for m in conversations]
    texts = [text for pieces in segmented for text, _ in pieces]
    ids_flat = _token_ids(tokenizer, texts) if texts else []
    out, k = [], 0
    eos = tokenizer.eos_token_id
    stops = set(end_of_turn_ids(tokenizer)) | {eos}
    for pieces in segmented:
        input_ids: list[int] = []
        labels: list[int] = []
        for _, trained in pieces:
            ids = ids_flat[k]
            k += 1
            if trained:
                if eos is not None and not stops & set(ids):
                    ids = ids + [eos]  # a template that ends a turn with no stop token: the model must still stop
                labels += ids
            else:
                labels += [-100] * len(ids)
            input_ids += ids
        out.append((input_ids, labels))
    return out
