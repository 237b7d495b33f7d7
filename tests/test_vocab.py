"""`kotune vocab` on real tokenizers: Llama-3's byte-level BPE (llama.cpp's vocab-only GGUF, `make vocab`) and
Mistral-7B v1's SentencePiece model (the mistral-common wheel). Build → extend: every old token keeps its id, the
new ones follow; English and code tokenize id for id as before; Korean costs fewer tokens per syllable; the chat
template and special tokens are the base's; SentencePiece itself agrees with the extended tokenizer.json; the CLI
never writes into --base and refuses an existing --out; `report` gives the numbers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import REPO
from test_base_templates import LLAMA3_TEMPLATE

VOCAB = Path(os.environ.get("KOTUNE_GGUF_VOCAB", Path.home() / ".cache" / "kotune" / "gguf_vocab"))
LLAMA3_GGUF = "ggml-vocab-llama-bpe.gguf"
SAMPLES = REPO / "src" / "kotune" / "data" / "sample"
CORPUS = [SAMPLES / "instructions.jsonl", SAMPLES / "chat.jsonl", SAMPLES / "preference.jsonl",
          *sorted((SAMPLES / "kit19").glob("*.jsonl"))]
MISTRAL_TEMPLATE = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + "
                    "' [/INST]' }}{% else %}{{ m['content'] + eos_token }}{% endif %}{% endfor %}")
HELD_OUT = [  # not in the corpus: other passages in the same registers
    "임차인은 임대인의 동의 없이 그 권리를 양도하거나 임차물을 전대하지 못한다.",
    "기상청은 내일 오후부터 남부지방에 비가 내리겠다고 예보하였다. 예상 강수량은 10에서 40밀리미터이다.",
    "세종은 백성들이 글을 쉽게 배울 수 있도록 훈민정음을 만들었습니다.",
    "주문하신 상품은 결제가 끝난 뒤 이틀 안에 보내 드립니다. 배송이 늦어지면 고객센터로 연락해 주세요.",
    "물은 섭씨 100도에서 끓고, 0도에서 얼음이 됩니다. 얼음은 물보다 가벼워 물 위에 뜹니다.",
    "어제는 친구와 함께 도서관에 가서 시험 공부를 하고, 저녁에는 학교 앞 식당에서 김치찌개를 먹었다.",
]
ENGLISH_AND_CODE = [
    "The quick brown fox jumps over the lazy dog. It's 3.14 o'clock, isn't it?",
    "Researchers found that regular exercise improves sleep quality among older adults.",
    "def encode(texts: list[str]) -> dict:\n    return {\"input_ids\": [tok(t) for t in texts if t.strip()]}\n",
    "for (int i = 0; i < n; ++i) { total += values[i]; }  // sum\n\tSELECT * FROM t WHERE x >= 10;",
    '{"vocab_size": 128256, "rope_theta": 500000.0}  café naïve €±≤→ 数学の問題 русский текст',
]


def real_llama3():
    from transformers import PreTrainedTokenizerFast

    if not (VOCAB / LLAMA3_GGUF).is_file():
        pytest.skip(f"{VOCAB / LLAMA3_GGUF} missing: run `make vocab` (the README's test command does)")
    tok = PreTrainedTokenizerFast.from_pretrained(str(VOCAB), gguf_file=LLAMA3_GGUF)
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


def real_mistral(folder: Path):
    pytest.importorskip("mistral_common", reason="Mistral's SentencePiece model ships in mistral-common (dev extra)")
    pytest.importorskip("sentencepiece", reason="reading a tokenizer.model needs sentencepiece (dev extra)")
    from kotune.testing.tiny import sentencepiece_tokenizer

    tok = sentencepiece_tokenizer(folder)
    tok.chat_template = MISTRAL_TEMPLATE
    tok.save_pretrained(folder)
    return tok


@pytest.fixture(scope="module")
def extensions(tmp_path_factory):
    """name → (name, base tokenizer, base dir, what was learned, extended tokenizer), built on first use."""
    from kotune.vocab.corpus import read_texts
    from kotune.vocab.extend import extend_tokenizer
    from kotune.vocab.learn import learn_tokens

    built = {}

    def get(name: str):
        if name not in built:
            folder = tmp_path_factory.mktemp(name)
            base = real_llama3() if name == "llama3" else real_mistral(folder)
            if name == "llama3":
                base.save_pretrained(folder)
            learned = learn_tokens(base, read_texts([str(p) for p in CORPUS]), size=1500, min_freq=2)
            built[name] = (name, base, folder, learned, extend_tokenizer(base, learned.tokens))
        return built[name]

    return get


@pytest.fixture(params=["llama3", "mistral"])
def extended(request, extensions):
    return extensions(request.param)


def test_every_old_token_keeps_its_id_and_new_ones_follow(extended):
    _, base, _, learned, new = extended
    old, now = base.get_vocab(), new.get_vocab()
    assert len(learned.tokens) > 300
    assert {t: now[t] for t in old} == old
    assert sorted(i for t, i in now.items() if t not in old) == list(range(len(base), len(new)))
    fresh = [t.token for t in learned.tokens if t.token not in old]  # a Korean-first merge may end in an old entry
    assert len(fresh) == learned.fresh and fresh == new.convert_ids_to_tokens(list(range(len(base), len(new))))


def test_text_without_hangul_tokenizes_id_for_id(extended):
    _, base, _, _, new = extended
    for text in ENGLISH_AND_CODE:
        for special in (True, False):
            assert new(text, add_special_tokens=special)["input_ids"] == base(text, add_special_tokens=special)[
                "input_ids"], text


def test_korean_costs_fewer_tokens_per_syllable_and_decodes_back(extended):
    from kotune.vocab.measure import measure_texts

    name, base, _, _, new = extended
    m = measure_texts(base, new, HELD_OUT + ENGLISH_AND_CODE)
    assert m.without_hangul == len(ENGLISH_AND_CODE) and m.without_hangul_changed == 0
    assert m.change < (-0.35 if name == "mistral" else -0.05), m  # Mistral spells most syllables as 3 bytes
    for text in HELD_OUT:
        assert new.decode(new(text, add_special_tokens=False)["input_ids"]) == text


def test_chat_template_and_special_tokens_are_the_base_ones(extended):
    _, base, _, _, new = extended
    messages = [{"role": "user", "content": "서울은 어디에 있나요?"}, {"role": "assistant", "content": "한강 옆입니다."}]
    assert new.chat_template == base.chat_template
    assert new.all_special_tokens == base.all_special_tokens and new.all_special_ids == base.all_special_ids
    assert (new.bos_token, new.eos_token, new.pad_token) == (base.bos_token, base.eos_token, base.pad_token)
    assert new.apply_chat_template(messages, tokenize=False) == base.apply_chat_template(messages, tokenize=False)


@pytest.mark.parametrize("name", ["mistral", pytest.param("llama3", marks=pytest.mark.slow)])  # 128K rows: ~11 s
def test_the_written_folder_loads_as_built_and_sentencepiece_agrees(extensions, name, tmp_path):
    """The folder (tokenizer.json, and for Mistral an extended tokenizer.model) reloads with the same ids; for
    Mistral, SentencePiece itself, which is what llama.cpp's GGUF converter reads, cuts Korean text the same way."""
    from transformers import AutoTokenizer

    from kotune.vocab.extend_dir import write_extension
    from kotune.vocab.token_file import write_tokens

    name, base, folder, learned, new = extensions(name)
    write_tokens(tmp_path / "tokens.tsv", learned.tokens)
    info = write_extension(folder, tmp_path / "tokens.tsv", tmp_path / "out")
    padded = base.pad_token_id in (None, base.eos_token_id) and base.unk_token_id in (None, base.eos_token_id)
    assert info["new_vocab_size"] == len(new) + padded and info.get("model") is None
    again = AutoTokenizer.from_pretrained(tmp_path / "out")
    for text in HELD_OUT + ENGLISH_AND_CODE:
        assert again(text)["input_ids"] == new(text)["input_ids"]
    assert again.chat_template == base.chat_template
    if name == "mistral":
        import sentencepiece as spm

        processor = spm.SentencePieceProcessor(model_file=str(tmp_path / "out" / "tokenizer.model"))
        assert processor.get_piece_size() == len(new)
        for text in HELD_OUT + ENGLISH_AND_CODE[:2]:
            assert processor.encode(text) == new(text, add_special_tokens=False)["input_ids"], text


def test_sentencepiece_base_without_sentencepiece_learns_continued_merges(extensions):
    """The route a SentencePiece base takes when sentencepiece is not installed gives a valid extension too."""
    from kotune.vocab.extend import extend_tokenizer
    from kotune.vocab.learn import learn_tokens
    from kotune.vocab.measure import measure_texts

    _, base, *_ = extensions("mistral")
    learned = learn_tokens(base, HELD_OUT * 3, size=60, min_freq=2, method="continued")
    assert learned.method == "continued BPE" and any(not t.is_merge for t in learned.tokens)  # new syllables
    new = extend_tokenizer(base, learned.tokens)
    assert measure_texts(base, new, ENGLISH_AND_CODE).without_hangul_changed == 0
    assert measure_texts(base, new, HELD_OUT).change < -0.25


def test_a_token_list_that_cannot_extend_the_base_is_refused_whole(extended):
    from kotune.errors import KotuneError
    from kotune.vocab.extend import extend_tokenizer
    from kotune.vocab.token_file import NewToken

    from kotune.vocab.pieces import byte_decoder

    name, base, _, learned, _ = extended
    if name == "llama3":  # the list spells entries as the vocabulary does: bytes in GPT-2's alphabet
        alphabet = {b: c for c, b in byte_decoder().items()}
        spell = lambda text: "".join(alphabet[b] for b in text.replace(" ", "\u2581").replace("\u2581", " ")  # noqa
                                     .encode("utf-8"))
    else:
        spell = lambda text: text.replace(" ", "\u2581")  # noqa: E731
    bad = [learned.tokens[0], learned.tokens[0], NewToken(spell(" the end"), 1, spell(" the"), spell(" end")),
           NewToken(spell("뷁뷁뷁"), 1, spell("뷁"), spell("뷁뷁"))]
    with pytest.raises(KotuneError) as err:
        extend_tokenizer(base, bad)
    text = str(err.value)
    assert "3 of the 4" in text and "listed twice" in text and "no Hangul" in text and "earlier in the list" in text


def test_token_file_round_trip_and_bad_lines():
    from kotune.errors import KotuneError
    from kotune.vocab.token_file import NewToken, dumps, loads

    rows = [NewToken("ĠìĦľìļ¸", 12, "ĠìĦľ", "ìļ¸", " 서울"), NewToken("울", 3, text="울")]
    assert loads(dumps(rows, "# test"), "t") == rows
    with pytest.raises(KotuneError, match="line 3.*does not spell.*line 4.*not a whole number"):
        loads("token\tfrequency\tmerge\n# c\nab\t1\ta c\nab\tx\ta b\n", "t")


def kotune(capsys, *args) -> tuple[int, str, str]:
    """`kotune vocab ARGS` through the real entry point, in this process: (exit code, stdout, stderr)."""
    from kotune.cli import main

    capsys.readouterr()
    try:
        code = main(["vocab", *map(str, args)])
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_cli_build_extend_report_on_a_model_and_the_folders_it_refuses(tmp_path, capsys):
    """Mistral's real vocabulary on a tiny random Mistral: the three commands end to end."""
    pytest.importorskip("mistral_common", reason="Mistral's SentencePiece model ships in mistral-common (dev extra)")
    from kotune.testing.tiny import tiny_base

    base = tiny_base("mistral", tmp_path / "base")
    before = snapshot(base)
    held = tmp_path / "held.txt"
    held.write_text("\n".join(HELD_OUT + ENGLISH_AND_CODE[:2]), encoding="utf-8")
    tokens = tmp_path / "tokens.tsv"
    code, out, err = kotune(capsys, "build", "--base", base, "--corpus", *CORPUS[:3], "--size", 400, "--out", tokens)
    assert code == 0, err
    lines = tokens.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# kotune vocab build") and lines[1] == "token\tfrequency\tmerge\ttext"
    assert len(lines) == 402 and "400 new tokens" in out
    code, _, err = kotune(capsys, "build", "--base", base, "--corpus", CORPUS[0], "--size", 10, "--out", tokens)
    assert code == 2 and "exists; pass --overwrite" in err

    out_dir = tmp_path / "extended"
    code, _, err = kotune(capsys, "extend", "--base", base, "--tokens", tokens, "--out", out_dir)
    assert code == 0, err
    record = json.loads((out_dir / "kotune_vocab.json").read_text(encoding="utf-8"))
    tokenizer_record = record.get("tokenizer", record)
    assert tokenizer_record["old_vocab_size"] == 32000 and tokenizer_record["new_vocab_size"] == 32400
    assert tokenizer_record["sentencepiece_model"] is True
    assert (out_dir / "tokenizer.model").is_file() and (out_dir / "tokenizer.json").is_file()
    if "tokenizer" in record:  # kotune.vocab.model_rows resized the model's rows and wrote its own record
        assert (out_dir / "model.safetensors").is_file()
    for target, message in [(out_dir, "exists and is not empty; pass --overwrite"),
                            (base / "inside", "is inside the base dir"), (base, "is the base dir itself")]:
        code, _, err = kotune(capsys, "extend", "--base", base, "--tokens", tokens, "--out", target)
        assert code == 2 and message in err, err[-500:]
    code, _, err = kotune(capsys, "extend", "--base", base, "--tokens", tokens, "--out", out_dir, "--overwrite")
    assert code == 0, err
    assert snapshot(base) == before  # --base is only ever read

    code, out, err = kotune(capsys, "report", "--base", base, "--new", out_dir, "--text", held, "--json")
    assert code == 0, err
    report = json.loads(out)["text"]
    assert report["texts"] == len(HELD_OUT) + 2 and report["without_hangul"] == 2
    assert report["without_hangul_changed"] == 0
    assert report["per_syllable_after"] < 0.8 * report["per_syllable_before"] and report["change"] < -0.2
    assert report["tokens_before"] - report["tokens_after"] > 50


def test_report_with_a_config_counts_its_data_in_both_tokenizers(extensions):
    """`report --config`: the expected change in training tokens for a config's data, read as `kotune data` reads
    the mixture."""
    import yaml

    from kotune.vocab.measure import measure_config

    _, base, folder, _, new = extensions("mistral")
    config = folder.parent / "report.yaml"
    config.write_text(yaml.safe_dump({
        "model_name_or_path": str(folder), "output_dir": str(folder.parent / "run"),
        "dataset_mixture": {"datasets": [{"id": str(SAMPLES / "instructions.jsonl")},
                                         {"id": str(SAMPLES / "chat.jsonl"), "weight": 0.5}]}}))
    report = measure_config(base, new, [str(config)])
    sources = report["sources"]
    assert [s["weight"] for s in sources.values()] == [1.0, 0.5]
    assert all(s["tokens_after"] < s["tokens_before"] for s in sources.values())
    expected = sum(s["weight"] * s["tokens_before"] for s in sources.values())
    assert report["tokens_before"] == round(expected) and report["change"] < -0.2
