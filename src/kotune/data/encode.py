"""The tokenize-and-label engine: conversations → (input_ids, labels), the loss on assistant turns only.

Each prompt part and each assistant turn is tokenized apart and the ids are concatenated, so every masked prefix is
exactly the prompt inference sends (SentencePiece/Metaspace tokenizers tokenize a prompt ending in a space
differently alone than inside prompt+answer). The mask comes from the tokenizer's chat template turn by turn.
"""

from __future__ import annotations

import re
from functools import lru_cache

from kotune.data.prompt_formats import TEMPLATES, end_of_turn_ids
from kotune.data.thinking import for_training
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


def _render_fast(tokenizer, messages: list[dict], add_generation_prompt: bool, specials: tuple | None = None,
                 kwargs: dict | None = None) -> str:
    """apply_chat_template(tokenize=False) without its per-call overhead (3x faster on 100K rows); kotune's own
    formats fill a cached skeleton instead of rendering (3x faster again). The round-trip tests hold both to the
    public API's output. `specials`: `_specials(tokenizer)`, computed once per batch by the caller; `kwargs`: the
    template's thinking switch (`kotune.data.thinking`)."""
    template = tokenizer.chat_template
    if template in VERBATIM and not any("\x00" in m["content"] for m in messages):
        parts = _skeleton(template, tuple(m["role"] for m in messages), add_generation_prompt,
                          specials if specials is not None else _specials(tokenizer))
        return "".join(messages[part]["content"] if isinstance(part, int) else part for part in parts)
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template
    except ImportError:  # a transformers without the helper: the public API, slower
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             **(kwargs or {}))
    template = _compile_jinja_template(tokenizer.chat_template)
    return template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                           **{**tokenizer.special_tokens_map, **(kwargs or {})})


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Ids of each text, no special tokens added; straight from the Rust tokenizer when there is one."""
    backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
    if backend is not None:  # encode_batch_fast: the same ids without computing offsets (about 15% faster)
        encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
        return [e.ids for e in encode(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _common_prefix(a: str, b: str) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _opening_end(tokenizer, opening: str, turn: str, answer: str) -> int | None:
    """Where the model's own writing starts in a rendered turn whose generation prompt (`opening`) adds to it: the
    longest start of the turn that the opening holds with one piece inserted (Gemma 4's `<|turn>model\n` plus an
    empty thought block; DeepSeek-V3.2's `<think>` before the turn's `</think>`), cut only between tokens and
    never inside the answer."""
    limit = min(len(opening), len(turn))
    if answer and 0 <= turn.find(answer) < limit:
        limit = turn.find(answer)
    inside = set()  # cuts that would split a special token
    for t in getattr(tokenizer, "added_tokens_encoder", {}):
        at = turn.find(t) if t else -1
        while 0 <= at <= limit:
            inside.update(range(at + 1, at + len(t)))
            at = turn.find(t, at + 1)
    for j in range(limit, -1, -1):
        if j in inside:
            continue
        p = _common_prefix(opening, turn[:j])
        if opening.endswith(turn[p:j]) and len(opening) >= j:
            return j
    return None


def _turn(tokenizer, messages: list[dict], i: int, specials, kwargs) -> tuple[str, str | None]:
    """(the inference prompt of assistant turn i, what the model writes after it). Usually the rendered turn just
    continues the prompt. Where the generation prompt adds what the rendered turn lacks (an empty thought block in
    non-thinking mode: Gemma 4, Solar-Open, DeepSeek-V3.2), the turn is what follows the part the prompt already
    holds; None where neither holds."""
    before = _render_fast(tokenizer, messages[:i], True, specials, kwargs)
    upto = _render_fast(tokenizer, messages[: i + 1], False, specials, kwargs)
    if upto.startswith(before):
        return before, upto[len(before):]
    bare = _render_fast(tokenizer, messages[:i], False, specials, kwargs)
    if not (before.startswith(bare) and upto.startswith(bare)):
        return before, None
    turn = upto[len(bare):]
    at = _opening_end(tokenizer, before[len(bare):], turn, messages[i]["content"].strip()[:8])
    return before, (None if at is None else turn[at:])


def _not_stable(tokenizer) -> KotuneError:
    return KotuneError(f"the chat template of '{tokenizer.name_or_path}' is not prefix-stable (a later turn changes "
                       "what came before, and the generation prompt is not where the turn starts), so kotune cannot "
                       "mask it turn by turn: set prompt_format to a kotune format (komt, koquality, llama2, mistral)")


def _segments(tokenizer, messages: list[dict], last_turn_only: bool = False, specials: tuple | None = None,
              kwargs: dict | None = None) -> list[list[tuple[str, bool]]]:
    """The conversation as examples of (text, trained) pieces: the prompt up to each assistant turn, then that
    turn. A turn marked `train: False` (or, with `last_turn_only`, every assistant turn but the last) is context.

    One example when the template is prefix-stable. Where a later turn re-renders an earlier one (Qwen3-style
    templates drop earlier turns' reasoning), each trained turn becomes its own example whose prompt is exactly the
    inference prompt of that turn."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    last = turns[-1] if last_turn_only else None
    rendered = [_turn(tokenizer, messages, i, specials, kwargs) for i in turns]
    if any(after is None for _, after in rendered):
        raise _not_stable(tokenizer)
    trained = [messages[i].get("train", True) and last in (None, i) for i in turns]
    pieces: list[tuple[str, bool]] = []
    text = ""
    for (before, after), learn in zip(rendered, trained):
        if not before.startswith(text):
            break
        if len(before) > len(text):
            pieces.append((before[len(text):], False))
        pieces.append((after, learn))
        text = before + after
    else:
        return [pieces]
    examples = [[(before, False), (after, True)] for (before, after), learn in zip(rendered, trained) if learn]
    return examples or [[(rendered[-1][0], False), (rendered[-1][1], False)]]


def encode_conversations(tokenizer, conversations: list[list[dict]], last_turn_only: bool = False,
                         thinking: str = "auto") -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per conversation; only assistant turns (and their EOS) carry labels: every one, or with
    `last_turn_only` the last. A conversation the template splits per turn (see `_segments`) gives its last
    example. For several examples per conversation and the thinking switch, use `encode_examples`."""
    return [examples[-1] for examples, _ in encode_examples(tokenizer, conversations, last_turn_only, thinking)]


def encode_examples(tokenizer, conversations: list[list[dict]], last_turn_only: bool = False,
                    thinking: str = "auto") -> list[tuple[list[tuple[list[int], list[int]]], str | None]]:
    """Per conversation: ([(input_ids, labels), ...], what happened to its reasoning). One example per
    conversation, or one per trained assistant turn where the template re-renders earlier turns.

    `thinking` (auto | on | off) picks each conversation's switch kwargs and reasoning (`kotune.data.thinking`);
    the second item is None, "off" (reasoning dropped under thinking: off) or "unrendered" (the template never
    renders an assistant's reasoning). The prompt part up to each assistant turn and that turn's text are
    tokenized apart and concatenated, so every prompt prefix equals what inference sends. All pieces go to the
    tokenizer in one batch (fast tokenizers then use every core).
    """
    specials = _specials(tokenizer)
    segmented, notes = [], []
    for messages in conversations:
        ready = for_training(messages, thinking, tokenizer.chat_template, specials, tokenizer.name_or_path)
        segmented.append(_segments(tokenizer, ready.messages, last_turn_only, specials, ready.kwargs))
        notes.append(ready.dropped)
    texts = [text for examples in segmented for pieces in examples for text, _ in pieces]
    ids_flat = _token_ids(tokenizer, texts) if texts else []
    out, k = [], 0
    eos = tokenizer.eos_token_id
    stops = set(end_of_turn_ids(tokenizer)) | {eos}
    for examples, note in zip(segmented, notes):
        encoded = []
        for pieces in examples:
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
            encoded.append((input_ids, labels))
        out.append((encoded, note))
    return out
