"""Chat with a run and its base side by side, streamed word by word, both through the run's own chat template.

The models load as `kotune chat` loads them (`inference.loading.load_for_inference`) and answer through
`inference.generate.answer` with its `WordStreamer`, so the page shows what `kotune chat RUN_DIR` prints. The base
answers through the run's tokenizer too: the comparison is the tuning, not the template.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Iterator

import yaml

from kotune.errors import KotuneError
from kotune.studio.paths import Workspace

_DONE = object()


def base_of(run_dir: Path) -> str:
    """The base a run was trained from: the start of its adapter chain, or its config's model_name_or_path."""
    from kotune.inference.loading import adapter_chain, run_kind

    if run_kind(run_dir) == "adapter":
        return str(adapter_chain(run_dir)[0])
    config = run_dir / "kotune_config.yaml"
    raw = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else {}
    name = (raw or {}).get("model_name_or_path")
    if not name:
        raise KotuneError(f"'{run_dir}' does not record its base (kotune_config.yaml has no model_name_or_path)")
    return str(name)


class Chats:
    """Loaded models, one per run dir and side ('tuned' or 'base'), kept until the studio ends."""

    def __init__(self, workspace: Workspace):
        self.ws = workspace
        self.models: dict[tuple[str, str], tuple] = {}
        self.lock = threading.Lock()  # one generation at a time: the CPU threads are shared anyway

    def model(self, run: str, side: str):
        """(model, tokenizer) for `side` of the run; the tokenizer is always the run's (its template)."""
        run_dir = self.ws.resolve(run)
        key = (str(run_dir), side)
        if key not in self.models:
            from kotune.inference.loading import load_for_inference, load_run_tokenizer

            if side == "tuned":
                self.models[key] = load_for_inference(run_dir)
            else:
                base = base_of(run_dir)
                from kotune.config.path_checks import is_local_path

                if is_local_path(base):
                    base = str(self.ws.resolve(base))
                model, _ = load_for_inference(base)
                self.models[key] = (model, load_run_tokenizer(run_dir))
        return self.models[key]

    def stream(self, run: str, side: str, question: str, thinking: str = "auto",
               max_new_tokens: int = 64) -> Iterator[str]:
        """The answer's words as they are generated (the chunks join to `answer`'s return value)."""
        if side not in ("tuned", "base"):
            raise KotuneError(f"side: '{side}' is not tuned or base")
        from kotune.data.thinking import template_kwargs
        from kotune.inference.generate import WordStreamer, answer

        model, tokenizer = self.model(run, side)
        template_kwargs(tokenizer.chat_template, thinking, run)  # on/off without a switch: one error, up front
        chunks: queue.Queue = queue.Queue()

        class ToQueue:
            def write(self, text: str) -> None:
                chunks.put(text)

            def flush(self) -> None:
                pass

        streamer = WordStreamer(tokenizer, out=ToQueue())

        def generate() -> None:
            try:
                with self.lock:
                    answer(model, tokenizer, question, max_new_tokens=max_new_tokens, streamer=streamer,
                           thinking=thinking)
            except Exception as err:  # noqa: BLE001 - shown in the chat pane, not lost in a thread
                chunks.put(f"\n[{type(err).__name__}: {err}]")
            finally:
                chunks.put(_DONE)

        threading.Thread(target=generate, daemon=True).start()
        while (chunk := chunks.get()) is not _DONE:
            if chunk != "\n":  # WordStreamer's end-of-answer newline
                yield chunk


def thinking_switch(tokenizer) -> bool:
    """Whether the run's template has a thinking switch (the page shows the toggle only then)."""
    from kotune.data.thinking import switch_of

    return switch_of(tokenizer.chat_template) is not None


def merge_argv(python: str, run: str, out: str) -> list[str]:
    return [python, "-m", "kotune.cli", "merge", run, "--out", out]


def export_argv(python: str, run: str, out: str, quant: str = "f16") -> list[str]:
    return [python, "-m", "kotune.cli", "export", run, "--gguf", "--quant", quant, "--out", out]

