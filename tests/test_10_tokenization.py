"""Library tests for tinytorch_lib.tokenization (Module 10) and the corpus file.

Oracles: plain-Python pair counting (collections.Counter) and merging (a left-to-right
loop), BPE examples worked by hand, round trips with hypothesis over strings of the
corpus alphabet (characters) and over any text (bytes), and the corpus's sha256.
"""
import hashlib
import json
import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinytorch_lib
from tinytorch_lib.tokenization import (BPETokenizer, CharTokenizer, load_corpus, merge_pair, most_frequent_pair,
                                        text_to_bytes)

CORPUS = (tinytorch_lib.data_dir("corpus.txt") / "corpus.txt").read_text(encoding="utf-8")
ALPHABET = "".join(sorted(set(CORPUS)))
CHARS = CharTokenizer(CORPUS[:int(0.9 * len(CORPUS))])  # the training split's vocabulary


# ---- oracles ----

def pair_oracle(ids):
    counts = Counter(zip(ids, ids[1:]))
    best = max(counts.values())
    return min(p for p, c in counts.items() if c == best), best


def merge_oracle(ids, pair, new_id):
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def train_oracle(text, vocab_size):
    ids, merges = list(text.encode("utf-8")), []
    while 256 + len(merges) < vocab_size and len(ids) >= 2:
        pair, count = pair_oracle(ids)
        if count < 2:
            break
        ids = merge_oracle(ids, pair, 256 + len(merges))
        merges.append(pair)
    return merges, ids


@pytest.fixture(scope="module")
def corpus_bpe():
    return BPETokenizer.train(load_corpus("train")[:20000], 256 + 120)


# ---- the corpus ----

def test_corpus_matches_the_sha256_in_the_readme():
    readme = (tinytorch_lib.data_dir() / "README.md").read_text()
    section = readme[readme.index("## corpus.txt"):]
    stated = re.search(r"sha256 `([0-9a-f]{64})`", section).group(1)
    assert hashlib.sha256(CORPUS.encode("utf-8")).hexdigest() == stated


def test_corpus_split_is_the_first_90_percent_of_characters():
    train, val = load_corpus("train"), load_corpus("val")
    assert train + val == CORPUS
    assert len(train) == int(0.9 * len(CORPUS)) == 826_243 and len(val) == 91_805
    assert load_corpus() == train
    assert train.startswith("Genesis 1\n\nIn the beginning God created the heaven and the earth.\n")
    assert set(val) <= set(train)  # a character vocabulary from train encodes val
    assert len(set(CORPUS)) == 72 and CORPUS.isascii()


def test_load_corpus_errors_name_the_split_or_the_file(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"'train' or 'val', got 'test'"):
        load_corpus("test")
    monkeypatch.setenv("TINYTORCH_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "corpus.txt")) + r" is missing.*git checkout"):
        load_corpus()
    (tmp_path / "corpus.txt").write_bytes(b"\xff\xfe not utf-8")
    with pytest.raises(ValueError, match=r"corpus.txt is not UTF-8.*git checkout data/corpus.txt"):
        load_corpus()
    (tmp_path / "corpus.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"corpus.txt is empty"):
        load_corpus("val")


# ---- characters ----

def test_char_tokenizer_vocabulary_and_ids_by_hand():
    tok = CharTokenizer("hello world")
    assert tok.chars == [" ", "d", "e", "h", "l", "o", "r", "w"] and tok.vocab_size == 8
    ids = tok.encode("hello")
    assert ids.dtype == np.int64 and ids.shape == (5,) and ids.tolist() == [3, 2, 4, 4, 5]
    assert tok.decode(ids) == tok.decode([3, 2, 4, 4, 5]) == "hello"
    assert tok.encode("").shape == (0,) and tok.encode("").dtype == np.int64 and tok.decode([]) == ""
    assert CharTokenizer.from_text("hello world").chars == tok.chars


@given(st.text(alphabet=ALPHABET, max_size=300))
@settings(max_examples=200, deadline=None)
def test_char_round_trip_over_the_corpus_alphabet(text):
    tok = CHARS
    ids = tok.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert ((ids >= 0) & (ids < tok.vocab_size)).all()
    assert tok.decode(ids) == text
    assert [tok.chars[i] for i in ids] == list(text)


def test_char_tokenizer_on_the_corpus():
    tok = CharTokenizer(load_corpus("train"))
    assert tok.vocab_size == 72
    val = load_corpus("val")
    assert tok.decode(tok.encode(val)) == val


def test_char_tokenizer_to_dict_is_json_and_round_trips():
    tok = CharTokenizer(load_corpus("train"))
    d = json.loads(json.dumps(tok.to_dict()))
    again = CharTokenizer.from_dict(d)
    assert again.chars == tok.chars and again.stoi == tok.stoi
    with pytest.raises(ValueError, match=r"from_dict: expected"):
        CharTokenizer.from_dict({"type": "bpe", "merges": []})


@pytest.mark.parametrize("text,char,pos", [("help", "'p'", 3), ("Hello", "'H'", 0), ("hello\n", "'\\\\n'", 5),
                                           ("hold é", "'é'", 5)])
def test_unknown_character_names_it_and_its_position(text, char, pos):
    with pytest.raises(ValueError, match=rf"character {char} at position {pos} is not in the vocabulary \(8 characters\)"):
        CharTokenizer("hello world").encode(text)


def test_char_decode_and_constructor_errors():
    tok = CharTokenizer("hello world")
    with pytest.raises(ValueError, match=r"id 9 is out of range for a vocabulary of 8"):
        tok.decode([1, 9])
    with pytest.raises(ValueError, match=r"id -1 is out of range for a vocabulary of 8"):
        tok.decode(np.array([0, -1]))
    with pytest.raises(ValueError, match=r"1-d sequence of ids, got shape \(1, 2\)"):
        tok.decode([[1, 2]])
    with pytest.raises(ValueError, match=r"non-empty training text"):
        CharTokenizer("")


# ---- byte-pair encoding: the two steps ----

@given(st.lists(st.integers(0, 5), min_size=2, max_size=200))
@settings(max_examples=300, deadline=None)
def test_most_frequent_pair_matches_counter(ids):
    got = most_frequent_pair(ids)
    assert got == pair_oracle(ids)
    assert all(type(x) is int for x in (*got[0], got[1]))


def test_most_frequent_pair_by_hand():
    assert most_frequent_pair([97, 97, 97, 98, 100, 97, 97, 97, 98, 97, 99]) == ((97, 97), 4)
    assert most_frequent_pair([256, 97, 98, 100, 256, 97, 98, 97, 99]) == ((97, 98), 2)  # tie with (256, 97)
    assert most_frequent_pair([3, 1, 2]) == ((1, 2), 1)
    assert most_frequent_pair(np.array([4, 4, 4, 4])) == ((4, 4), 3)  # overlaps count
    for short in ([], [7]):
        with pytest.raises(ValueError, match=r"at least 2 ids"):
            most_frequent_pair(short)


@given(st.lists(st.integers(0, 3), max_size=200), st.tuples(st.integers(0, 3), st.integers(0, 3)))
@settings(max_examples=300, deadline=None)
def test_merge_pair_matches_the_left_to_right_loop(ids, pair):
    before = list(ids)
    got = merge_pair(np.array(ids, dtype=np.int64), pair, 99)
    assert got.dtype == np.int64
    assert got.tolist() == merge_oracle(ids, pair, 99)
    assert ids == before


def test_merge_pair_by_hand():
    assert merge_pair([1, 2, 3, 1, 2], (1, 2), 9).tolist() == [9, 3, 9]
    assert merge_pair([1, 1, 1], (1, 1), 9).tolist() == [9, 1]
    assert merge_pair([1, 1, 1, 1], (1, 1), 9).tolist() == [9, 9]
    assert merge_pair([7, 7, 7, 7, 7], (7, 7), 300).tolist() == [300, 300, 7]
    assert merge_pair([4, 5], (5, 4), 9).tolist() == [4, 5]
    original = np.array([1, 2, 1, 2])
    merge_pair(original, (1, 2), 9)
    assert original.tolist() == [1, 2, 1, 2]


# ---- byte-pair encoding: training, encoding, decoding ----

def test_train_wikipedia_example_by_hand():
    bpe = BPETokenizer.train("aaabdaaabac", 300)
    assert bpe.merges == [(97, 97), (97, 98), (256, 257)]  # aa, ab (tie with (256, 97)), aaab
    assert bpe.vocab_size == 259 and bpe.vocab[256:] == [b"aa", b"ab", b"aaab"]
    assert bpe.encode("aaabdaaabac").tolist() == [258, 100, 258, 97, 99]
    assert BPETokenizer.train("aaabdaaabac", 258).merges == [(97, 97), (97, 98)]
    assert BPETokenizer.train("ababab", 300).merges == [(97, 98), (256, 256)]
    for text in ("", "x", "abcdef"):
        assert BPETokenizer.train(text, 300).merges == []


def test_train_matches_the_plain_python_oracle_on_the_corpus(corpus_bpe):
    text = load_corpus("train")[:20000]
    merges, ids = train_oracle(text, 256 + 120)
    assert corpus_bpe.merges == merges and corpus_bpe.vocab_size == 376
    assert corpus_bpe.encode(text).tolist() == ids  # encode replays training's segmentation


def test_encode_applies_merges_in_learned_order():
    bpe = BPETokenizer([(97, 97), (97, 98), (256, 257)])
    assert bpe.encode("aab").tolist() == [256, 98]
    assert bpe.encode("día").tolist() == [100, 195, 173, 97]
    assert BPETokenizer([(98, 99), (97, 98)]).encode("abc").tolist() == [97, 256]
    assert BPETokenizer([(97, 98), (98, 99)]).encode("abc").tolist() == [256, 99]
    ids = bpe.encode("")
    assert ids.shape == (0,) and ids.dtype == np.int64


@given(st.text(max_size=200))
@settings(max_examples=200, deadline=None)
def test_bpe_round_trip_of_any_text(corpus_bpe, text):
    ids = corpus_bpe.encode(text)
    assert ids.dtype == np.int64 and ((ids >= 0) & (ids < corpus_bpe.vocab_size)).all()
    assert corpus_bpe.decode(ids) == text
    assert b"".join(corpus_bpe.vocab[i] for i in ids) == text.encode("utf-8")


@given(st.text(alphabet=ALPHABET, min_size=1, max_size=300))
@settings(max_examples=100, deadline=None)
def test_bpe_never_lengthens_and_matches_stepwise_merging(corpus_bpe, text):
    ids = text_to_bytes(text).tolist()
    for k, pair in enumerate(corpus_bpe.merges):
        ids = merge_oracle(ids, pair, 256 + k)
    got = corpus_bpe.encode(text)
    assert got.tolist() == ids and len(got) <= len(text)


def test_bpe_shortens_the_validation_split(corpus_bpe):
    val = load_corpus("val")
    ids = corpus_bpe.encode(val)
    assert corpus_bpe.decode(ids) == val
    assert len(ids) < 0.7 * len(val)  # 120 merges on 20 KB: measured 0.53 tokens per character


def test_bpe_to_dict_is_json_and_round_trips(corpus_bpe):
    again = BPETokenizer.from_dict(json.loads(json.dumps(corpus_bpe.to_dict())))
    assert again.merges == corpus_bpe.merges and again.vocab == corpus_bpe.vocab
    with pytest.raises(ValueError, match=r"from_dict: expected"):
        BPETokenizer.from_dict({"type": "char", "chars": "ab"})


def test_bpe_errors():
    bpe = BPETokenizer([(97, 97), (97, 98), (256, 257)])
    with pytest.raises(ValueError, match=r"id 300 is out of range for a vocabulary of 259"):
        bpe.decode([97, 300])
    with pytest.raises(ValueError, match=r"id -1 is out of range"):
        bpe.decode([-1])
    for bad in (255, 0, 300.0, "512", True):
        with pytest.raises(ValueError, match=r"vocab_size must be an int >= 256"):
            BPETokenizer.train("abab", bad)
    with pytest.raises(ValueError, match=r"merge 1 = \(97, 300\) uses an id not defined before it"):
        BPETokenizer([(97, 97), (97, 300)])
    assert bpe.decode(np.array([0xE2, 0x98])) == "\ufffd"  # a cut multi-byte character is replaced, not a crash
