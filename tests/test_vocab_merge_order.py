"""Korean-first merges on Llama-3's real byte-level tokenizer: new merges cut Korean before the base's own syllable
joins, an entry the base has keeps its id, and a word seen often enough becomes one token however many merges it
takes."""

from __future__ import annotations

import pytest

from test_vocab import ENGLISH_AND_CODE, real_llama3


@pytest.fixture(scope="module")
def llama3():
    return real_llama3()


def pieces(tok, text: str) -> list[str]:
    return [tok.convert_tokens_to_string([t]) for t in tok.tokenize(text)]


def test_new_merges_cut_before_the_bases_syllable_joins_and_old_entries_keep_their_ids(llama3):
    """Llama-3 joins ` 운`+`영` (its entry ` 운영`) before anything else; appended after the base's merges a new
    `영과` could never fire. Placed before the base's syllable joins, it does. A later merge into ` 운영`, an entry
    Llama-3 has, keeps its id and takes no new row. English and code are untouched."""
    from kotune.vocab.extend import extend_tokenizer
    from kotune.vocab.token_file import NewToken

    base = llama3
    old = base.get_vocab()
    assert pieces(base, " 운영과") == [" 운영", "과"]
    new = extend_tokenizer(base, [NewToken("ìĺģê³¼", 9, "ìĺģ", "ê³¼", "영과"),
                                  NewToken("Ġìļ´ìĺģ", 9, "Ġìļ´", "ìĺģ", " 운영")])
    assert pieces(new, " 운영과") == [" 운", "영과"]  # the earlier merge wins, as the learner assumes
    assert pieces(new, " 운영한다") == [" 운영", "한다"]
    assert len(new) == len(base) + 1 and new.get_vocab()["Ġìļ´ìĺģ"] == old["Ġìļ´ìĺģ"]
    for text in ENGLISH_AND_CODE:
        assert new(text)["input_ids"] == base(text)["input_ids"]


@pytest.mark.slow  # ~10 s: the learner's start on Llama-3's 280K merges
def test_frequent_words_become_single_tokens_through_several_merges(llama3):
    """Each merge recounts the pairs its new token forms with its neighbours, so a word takes as many merges as it
    needs (the learner once skipped those pairs, and long words stayed cut)."""
    from kotune.vocab.extend import extend_tokenizer
    from kotune.vocab.learn import learn_tokens

    base = llama3
    text = "원고와 피고인이 법정에 출석하였다"
    learned = learn_tokens(base, [text] * 3, size=100, min_freq=2)
    new = extend_tokenizer(base, learned.tokens)
    assert learned.method == "Korean-first BPE"
    assert pieces(new, text) == ["원고와", " 피고인이", " 법정에", " 출석하였다"]
    assert len(new) - len(base) == learned.fresh
