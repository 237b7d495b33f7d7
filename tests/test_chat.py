"""`kotune chat`: streams the answer word by word, the stream equals the non-streamed answer, and adapter, merged
and full-model dirs all answer in the training format."""

from __future__ import annotations

import io

import pytest

from kotune.cli import main as kotune
from test_export import nopad_base, sft_run

QUESTION = "대한민국의 수도는 어디인가요?"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return sft_run(tmp_path_factory, "neox-lora", nopad_base(tmp_path_factory))


@pytest.fixture(scope="module")
def loaded(run):
    from kotune.inference.loading import load_for_inference

    return load_for_inference(run)


def test_stream_equals_answer_and_arrives_in_chunks(loaded):
    from kotune.inference.generate import answer, WordStreamer

    model, tok = loaded
    want = answer(model, tok, QUESTION, max_new_tokens=40)
    sink = io.StringIO()
    streamer = WordStreamer(tok, out=sink)
    got = answer(model, tok, QUESTION, max_new_tokens=40, streamer=streamer)
    assert got == want and streamer.text == want
    print("streamed chunks:", streamer.chunks)
    assert len(streamer.chunks) > 1, streamer.chunks  # arrived word by word, not at the end
    assert sink.getvalue() == want + "\n"


def test_stream_keeps_spaces_after_newlines(tiny_bases):
    """transformers' TextStreamer re-decodes from each newline, and the Llama/Mistral SentencePiece decoder then
    drops the space after it; WordStreamer decodes the whole answer each time, so the stream is the answer's text."""
    import torch
    from transformers import AutoTokenizer, TextStreamer

    from kotune.inference.generate import WordStreamer

    tok = AutoTokenizer.from_pretrained(tiny_bases["llama"])
    text = "서울입니다.\n수도는 서울이에요.\n 네, 맞아요"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text

    class Collect(TextStreamer):
        parts: list[str] = []

        def on_finalized_text(self, chunk, stream_end=False):
            self.parts.append(chunk)

    for streamer in (Collect(tok, skip_prompt=True), WordStreamer(tok)):
        streamer.put(torch.tensor([[tok.bos_token_id]]))  # the prompt comes first
        for i in ids:
            streamer.put(torch.tensor([i]))
        streamer.end()
    assert "".join(Collect.parts) == text.replace("\n ", "\n")  # the lost space
    assert streamer.text == text and len(streamer.chunks) >= 3


def test_chat_prompt_prints_the_answer(run, loaded, capsys):
    from kotune.inference.generate import answer

    want = answer(*loaded, QUESTION, max_new_tokens=40)
    assert kotune(["chat", str(run), "--prompt", QUESTION, "--max_new_tokens", "40"]) == 0
    assert capsys.readouterr().out == want + "\n"


def test_chat_reads_stdin_until_eof_on_adapter_and_merged_dirs(run, loaded, tmp_path, capsys, monkeypatch):
    from kotune.inference.generate import answer

    questions = [QUESTION, "", "김치는 어떻게 만들어요?"]
    want = [answer(*loaded, q, max_new_tokens=20) for q in questions if q]
    merged = tmp_path / "merged"
    assert kotune(["merge", str(run), "--out", str(merged)]) == 0
    for model_dir in (run, merged):
        capsys.readouterr()
        monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(questions) + "\n"))
        assert kotune(["chat", str(model_dir), "--max_new_tokens", "20"]) == 0
        assert capsys.readouterr().out.splitlines() == want, model_dir  # blank lines skipped, stops at EOF


def test_chat_on_a_full_model_without_template_uses_the_arch_default(tiny_bases, capsys):
    from kotune.inference.loading import load_for_inference
    from kotune.data.prompt_formats import TEMPLATES

    model, tok = load_for_inference(tiny_bases["gpt_neox"])
    assert tok.chat_template == TEMPLATES["koquality"]
    assert kotune(["chat", str(tiny_bases["gpt_neox"]), "--prompt", QUESTION, "--max_new_tokens", "5",
                   "--temperature", "0.8", "--seed", "0"]) == 0


def test_chat_missing_dir_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        kotune(["chat", str(tmp_path / "nope"), "--prompt", QUESTION])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"kotune: error: '{tmp_path / 'nope'}' does not exist"]
