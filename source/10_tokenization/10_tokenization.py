# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Module 10: Tokenization
#
# A language model reads integers, not text. A **tokenizer** cuts text into
# pieces (tokens), gives each distinct piece an id, and turns the ids back
# into text. How text is cut decides two sizes that set a transformer's
# cost: the **vocabulary** (how many distinct ids: the rows of the embedding
# table and of the output layer) and the **sequence length** (how many ids a
# text becomes: attention compares every position with every other).
#
# The course's corpus (`data/corpus.txt`, the first six books of the King
# James Bible, public domain) is 918,048 characters. Cut into characters it
# needs 72 ids; cut into words, thousands, and the validation text still
# holds words the training text never had. Byte-pair encoding (BPE), the
# tokenizer of GPT-2 and its successors, sits between the two: it starts
# from bytes and learns to merge the most frequent neighbouring pieces.
#
# | task | what you build | points |
# |---|---|---|
# | 10.1 | `CharTokenizer`: one id per character, encode/decode, a clear error for an unknown character | 4 |
# | 10.2 | `most_frequent_pair`: count neighbouring id pairs, pick the most frequent | 3 |
# | 10.3 | `merge_pair`: replace every occurrence of a pair by a new id | 3 |
# | 10.4 | `BPETokenizer.train`: the merge loop, up to a target vocabulary size | 3 |
# | 10.5 | `BPETokenizer.encode` / `decode`: apply the learned merges in order, and back | 3 |
#
# The systems questions: how long a sequence each tokenizer makes of the same
# text, what that does to attention (cost grows with the square of the
# length) and to the embedding and output layers (they grow with the
# vocabulary), how many bytes the ids take in each dtype, and how fast
# encoding and BPE training run.
#
# This module needs only numpy; Module 11 turns these ids into vectors, and
# Module 13 trains a GPT on them.

# %% tags=["export"]
import numpy as np

import tinytorch_lib
from tinytorch_lib import fmt  # test messages: floats rounded, arrays short

# %% [markdown]
# ## Which library are you running on?
#
# This module uses no earlier module's code, only `tinytorch_lib.data_dir()`
# to find the corpus and `tinytorch_lib.timing.measure` for the timings. The
# cell below says which `Tensor` the library holds, as every module does; when
# this notebook is autograded by the instructor it runs on the reference.

# %%
print(tinytorch_lib.origin("tensor"))

# %% [markdown]
# ## 1. The corpus
#
# `data/corpus.txt` holds Genesis, Exodus, Leviticus, Numbers, Deuteronomy
# and Joshua from Debian's `bible-kjv-text` package: a heading per chapter
# (`Genesis 1`), then one verse per line. `data/README.md` records where it
# came from and how it was made. The split is fixed for the whole course: the
# first 90% of the characters are the training split, the last 10% the
# validation split (it starts inside Joshua 3:11). The given `load_corpus`
# returns a split as a `str`; a missing file stops with a message saying how
# to restore it.

# %% tags=["export"]
CORPUS_FILE = "corpus.txt"
TRAIN_FRACTION = 0.9  # the first 90% of the characters train, the last 10% validate


def load_corpus(split: str = "train") -> str:
    """"train" (the first 90% of data/corpus.txt's characters) or "val" (the last 10%) -> str."""
    if split not in ("train", "val"):
        raise ValueError(f"load_corpus: split must be 'train' or 'val', got {split!r}")
    path = tinytorch_lib.data_dir(CORPUS_FILE) / CORPUS_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e}): restore it with `git checkout data/{CORPUS_FILE}`") from None
    if not text:
        raise ValueError(f"{path} is empty: restore it with `git checkout data/{CORPUS_FILE}`")
    cut = int(TRAIN_FRACTION * len(text))
    return text[:cut] if split == "train" else text[cut:]


# %%
import re

train_text, val_text = load_corpus("train"), load_corpus("val")
print(f"train: {len(train_text):,} characters, val: {len(val_text):,} characters")
print(repr(train_text[:120]))
train_words = re.findall(r"[A-Za-z']+", train_text)
val_words = re.findall(r"[A-Za-z']+", val_text)
word_vocab = set(train_words)
unseen = [w for w in val_words if w not in word_vocab]
print(f"distinct characters in train: {len(set(train_text))}")
print(f"distinct words in train: {len(word_vocab):,}; val words never seen in train: "
      f"{len(unseen):,} of {len(val_words):,} ({100 * len(unseen) / len(val_words):.1f}%), e.g. {sorted(set(unseen))[:4]}")

# %% [markdown]
# A word tokenizer would need an id for every one of those words and still
# fail on the validation text's new names. Characters never fail on this
# corpus, but make long sequences. BPE (section 3) learns pieces in between.
#
# ## 2. Characters
#
# The simplest tokenizer: the vocabulary is the **sorted set of characters**
# of the training text, and a character's id is its position in that list.
#
# ```
# tok = CharTokenizer("hello world")
# tok.chars       -> [' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w']      vocab_size 8
# tok.encode("hello") -> array([3, 2, 4, 4, 5])                   int64, shape (5,)
# tok.decode([3, 2, 4, 4, 5]) -> 'hello'
# tok.encode("help")  -> ValueError: 'p' at position 3 is not in the vocabulary
# ```
#
# What to do with a character the training text never had is a design
# decision. Many tokenizers map it silently to an `<unk>` id, and the model
# then reads "unknown" where the text had something specific. This course
# refuses instead: encoding an unknown character raises an error that names
# it and where it is, so the caller decides (on this corpus every validation
# character occurs in training, so it does not happen there).
#
# ### Task 10.1: `CharTokenizer`
#
# - `__init__(text)`: `self.chars` = the sorted list of the distinct
#   characters of `text`; `self.stoi` = a dict character -> id (its index in
#   `self.chars`). An empty `text` raises `ValueError` (an empty vocabulary
#   can encode nothing). `vocab_size` (given) is `len(self.chars)`.
# - `encode(text) -> np.ndarray`: int64, shape `(len(text),)`, one id per
#   character (`""` gives shape `(0,)`). The first character not in the
#   vocabulary raises `ValueError` naming the character (with `repr`) and its
#   position, e.g. `CharTokenizer.encode: character 'p' at position 3 is not in the vocabulary (8 characters)`.
# - `decode(ids) -> str`: `ids` is a list or 1-d array of ints; join the
#   characters. An id outside `[0, vocab_size)` raises `ValueError` naming the
#   id and the vocabulary size, e.g. `CharTokenizer.decode: id 9 is out of range for a vocabulary of 8`.
#
# `to_dict()` / `from_dict(d)` (given) store the vocabulary as JSON-able data
# so a trained model's file can carry its tokenizer (Module 13 does this).

# %% nbgrader={"grade": false, "grade_id": "char_tokenizer", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
class CharTokenizer:
    """One id per character: the vocabulary is the sorted set of a training text's characters.

    encode: str (n characters) -> (n,) int64; decode: (n,) ints -> str.
    An unknown character is a ValueError naming it and its position (no silent <unk>).
    """

    def __init__(self, text: str):
        # Task 10.1: self.chars (sorted distinct characters) and self.stoi (character -> id)
        ### BEGIN SOLUTION
        if not isinstance(text, str) or not text:
            raise ValueError(f"CharTokenizer: needs a non-empty training text, got {text!r}")
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        ### END SOLUTION

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """The same as CharTokenizer(text)."""
        return cls(text)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        """str of n characters -> (n,) int64 ids; ValueError naming the first unknown character and its position."""
        # Task 10.1: one id per character, int64; an unknown character is a ValueError
        ### BEGIN SOLUTION
        ids = np.empty(len(text), dtype=np.int64)
        for pos, c in enumerate(text):
            i = self.stoi.get(c)
            if i is None:
                raise ValueError(f"CharTokenizer.encode: character {c!r} at position {pos} is not in the "
                                 f"vocabulary ({self.vocab_size} characters)")
            ids[pos] = i
        return ids
        ### END SOLUTION

    def decode(self, ids) -> str:
        """(n,) ints -> str of n characters; ValueError for an id outside [0, vocab_size)."""
        # Task 10.1: join the characters of the ids; an id out of range is a ValueError
        ### BEGIN SOLUTION
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"CharTokenizer.decode: expected a 1-d sequence of ids, got shape {ids.shape}")
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            raise ValueError(f"CharTokenizer.decode: id {ids[bad][0]} is out of range for a vocabulary of "
                             f"{self.vocab_size}")
        return "".join(self.chars[i] for i in ids.tolist())
        ### END SOLUTION

    def to_dict(self) -> dict:
        """JSON-able: {"type": "char", "chars": the vocabulary as one string}."""
        return {"type": "char", "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        if not isinstance(d, dict) or d.get("type") != "char" or not isinstance(d.get("chars"), str):
            raise ValueError(f"CharTokenizer.from_dict: expected {{'type': 'char', 'chars': str}}, got {d!r}")
        return cls(d["chars"])

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"


# %% nbgrader={"grade": true, "grade_id": "test_10_1_char_tokenizer", "locked": true, "points": 4, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 10.1
from tinytorch_lib.testing import task

with task("10.1"):
    tok = CharTokenizer("hello world")
    assert tok.chars == [" ", "d", "e", "h", "l", "o", "r", "w"], \
        f"CharTokenizer('hello world').chars: expected [' ', 'd', 'e', 'h', 'l', 'o', 'r', 'w'], got {tok.chars}"
    assert tok.vocab_size == 8, f"vocab_size of 'hello world': expected 8, got {tok.vocab_size}"
    ids = tok.encode("hello")
    assert isinstance(ids, np.ndarray) and ids.dtype == np.int64 and ids.shape == (5,), \
        f"encode('hello'): expected an int64 array of shape (5,), got {type(ids).__name__} {getattr(ids, 'dtype', '')} {getattr(ids, 'shape', '')}"
    assert ids.tolist() == [3, 2, 4, 4, 5], f"encode('hello'): expected [3, 2, 4, 4, 5], got {ids.tolist()}"
    assert tok.decode([3, 2, 4, 4, 5]) == "hello", f"decode([3, 2, 4, 4, 5]): expected 'hello', got {tok.decode([3, 2, 4, 4, 5])!r}"
    assert tok.decode(tok.encode("world hello")) == "world hello", "decode(encode('world hello')) should give 'world hello' back"
    try:
        tok.encode("help")
    except ValueError as e:
        assert "'p'" in str(e) and "3" in str(e), f"encode('help'): the error should name 'p' and its position 3, got: {e}"
    else:
        raise AssertionError("encode('help') with a vocabulary from 'hello world' should raise ValueError: 'p' is unknown")
    try:
        tok.decode([1, 9])
    except ValueError as e:
        assert "9" in str(e) and "8" in str(e), f"decode([1, 9]): the error should name id 9 and the vocabulary size 8, got: {e}"
    else:
        raise AssertionError("decode([1, 9]) with a vocabulary of 8 should raise ValueError: id 9 is out of range")
    empty = tok.encode("")
    assert isinstance(empty, np.ndarray) and empty.dtype == np.int64 and empty.shape == (0,), \
        f"encode(''): expected an int64 array of shape (0,), got {type(empty).__name__} {getattr(empty, 'dtype', '')} {getattr(empty, 'shape', '')}"
    try:
        CharTokenizer("")
    except ValueError:
        pass
    else:
        raise AssertionError("CharTokenizer('') should raise ValueError: an empty vocabulary can encode nothing")
print("Task 10.1 visible tests passed")

# %% [markdown]
# ## 3. Byte-pair encoding
#
# BPE starts from the **bytes** of the UTF-8 text: ids 0..255, one per byte
# value. Any text at all encodes, so there is never an unknown character (a
# character outside ASCII is two to four bytes). Then it **learns merges**:
# find the most frequent pair of neighbouring ids, give that pair a new id
# (256, then 257, ...), replace every occurrence, and repeat until the
# vocabulary has the size you asked for. Each merge shortens the sequence by
# the number of occurrences it replaced.
#
# Worked example (Wikipedia's), `"aaabdaaabac"`, whose bytes are
# `a=97, b=98, c=99, d=100`:
#
# ```
# ids                                        most frequent pair (count)   new id
# [97 97 97 98 100 97 97 97 98 97 99]        (97, 97) "aa"    (4)           256
# [256 97 98 100 256 97 98 97 99]            (97, 98) "ab"    (2)           257
# [256 257 100 256 257 97 99]                (256, 257) "aaab" (2)          258
# [258 100 258 97 99]                        every pair occurs once: stop
# ```
#
# Two details decide the exact result, and both are rules here:
#
# - **Counting** looks at every neighbouring position, so `[97, 97, 97]`
#   holds the pair `(97, 97)` twice. **Merging** goes left to right and
#   never overlaps: `[97, 97, 97]` becomes `[256, 97]`.
# - **Ties**: when several pairs are most frequent, take the smallest pair
#   (smallest first id, then smallest second id). In step 2 above, `(97, 98)`
#   and `(256, 97)` both occur twice; `(97, 98)` wins.
#
# ### Task 10.2: `most_frequent_pair`
#
# `most_frequent_pair(ids) -> ((a, b), count)`: `ids` is a list or 1-d array of
# ints with at least two entries (fewer raises `ValueError` saying so). Count
# every neighbouring pair `(ids[i], ids[i + 1])`, overlapping ones included,
# and return the most frequent pair as a tuple of two Python ints with its
# count (an int); ties go to the smallest pair.
#
# ```
# most_frequent_pair([97, 97, 97, 98, 100, 97, 97, 97, 98, 97, 99]) -> ((97, 97), 4)
# most_frequent_pair([5, 6, 5, 6, 7])                               -> ((5, 6), 2)
# most_frequent_pair([3, 1, 2])                                     -> ((1, 2), 1)   tie: (1, 2) < (3, 1)
# ```
#
# Two ways: a `dict` (or `collections.Counter`) over `zip(ids, ids[1:])`, or
# numpy: encode each pair as one number `a * V + b` (with `V = max(ids) + 1`),
# then `np.unique(codes, return_counts=True)`, whose sorted output makes the
# first maximum of the counts the smallest pair. Training calls this once
# per merge on the whole sequence, so the numpy version pays off.

# %% nbgrader={"grade": false, "grade_id": "most_frequent_pair", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def most_frequent_pair(ids) -> tuple:
    """ids: (n,) ints, n >= 2 -> ((a, b), count): the most frequent neighbouring pair, ties to the smallest pair."""
    # Task 10.2: count every neighbouring pair (overlaps included), most frequent first, ties to the smallest
    ### BEGIN SOLUTION
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(f"most_frequent_pair: needs a 1-d sequence of at least 2 ids, got shape {ids.shape}")
    v = int(ids.max()) + 1
    codes, counts = np.unique(ids[:-1] * v + ids[1:], return_counts=True)  # sorted, so ties go to the smallest
    k = int(counts.argmax())
    return (int(codes[k] // v), int(codes[k] % v)), int(counts[k])
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_10_2_most_frequent_pair", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 10.2
from tinytorch_lib.testing import task

with task("10.2"):
    for ids, want in [([97, 97, 97, 98, 100, 97, 97, 97, 98, 97, 99], ((97, 97), 4)),
                      ([5, 6, 5, 6, 7], ((5, 6), 2)),
                      ([3, 1, 2], ((1, 2), 1))]:
        got = most_frequent_pair(ids)
        assert got == want, f"most_frequent_pair({ids}): expected {fmt(want)}, got {fmt(got)}"
        assert all(type(x) is int for x in (*got[0], got[1])), f"most_frequent_pair({ids}): return Python ints, got {got!r}"
    got = most_frequent_pair([256, 97, 98, 100, 256, 97, 98, 97, 99])
    assert got == ((97, 98), 2), f"most_frequent_pair([256, 97, 98, 100, 256, 97, 98, 97, 99]): (97, 98) and (256, 97) tie at 2, expected ((97, 98), 2), got {fmt(got)}"
    try:
        most_frequent_pair([7])
    except ValueError:
        pass
    else:
        raise AssertionError("most_frequent_pair([7]) should raise ValueError: one id has no pair")
print("Task 10.2 visible tests passed")

# %% [markdown]
# ### Task 10.3: `merge_pair`
#
# `merge_pair(ids, pair, new_id) -> np.ndarray`: a new int64 array in which
# every occurrence of `pair = (a, b)` in `ids`, scanning left to right without
# overlaps, is replaced by the single id `new_id`. `ids` itself is not
# changed.
#
# ```
# merge_pair([1, 2, 3, 1, 2], (1, 2), 9)   -> [9, 3, 9]
# merge_pair([1, 1, 1], (1, 1), 9)         -> [9, 1]       left to right, no overlap
# merge_pair([1, 1, 1, 1], (1, 1), 9)      -> [9, 9]
# merge_pair([4, 5], (5, 4), 9)            -> [4, 5]       no occurrence: same ids
# ```
#
# A plain loop works: walk `i` along `ids`; if `ids[i], ids[i + 1]` is the pair,
# emit `new_id` and step 2, else emit `ids[i]` and step 1. A faster way finds
# all candidate positions at once with numpy,
# `hits = np.flatnonzero((ids[:-1] == a) & (ids[1:] == b))`; two candidates
# can only be neighbours when `a == b` (as in `[1, 1, 1]`), so drop a
# candidate that is exactly one after the last one kept (a short loop over
# the hits, not the whole sequence), then write `new_id` at the kept
# positions and delete the position after each (`np.delete`).

# %% nbgrader={"grade": false, "grade_id": "merge_pair", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def merge_pair(ids, pair: tuple, new_id: int) -> np.ndarray:
    """ids: (n,) ints -> (m,) int64 with each (a, b) in `pair` order, left to right, replaced by new_id."""
    # Task 10.3: replace non-overlapping occurrences of pair, left to right; do not change ids
    ### BEGIN SOLUTION
    ids = np.asarray(ids, dtype=np.int64)
    a, b = pair
    hits = np.flatnonzero((ids[:-1] == a) & (ids[1:] == b))
    if a == b and len(hits) > 1:  # runs like [a, a, a]: keep every other hit, left to right
        kept, last = [], -2
        for h in hits.tolist():
            if h > last + 1:
                kept.append(h)
                last = h
        hits = np.array(kept, dtype=np.int64)
    out = ids.copy()
    out[hits] = new_id
    return np.delete(out, hits + 1)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_10_3_merge_pair", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 10.3
from tinytorch_lib.testing import task

with task("10.3"):
    for ids, pair, new_id, want in [([1, 2, 3, 1, 2], (1, 2), 9, [9, 3, 9]), ([1, 1, 1], (1, 1), 9, [9, 1]),
                                    ([1, 1, 1, 1], (1, 1), 9, [9, 9]), ([4, 5], (5, 4), 9, [4, 5]),
                                    ([97, 97, 97, 98, 100, 97, 97, 97, 98, 97, 99], (97, 97), 256,
                                     [256, 97, 98, 100, 256, 97, 98, 97, 99])]:
        got = merge_pair(ids, pair, new_id)
        assert isinstance(got, np.ndarray) and got.dtype == np.int64, \
            f"merge_pair({ids}, {pair}, {new_id}): expected an int64 array, got {type(got).__name__} {getattr(got, 'dtype', '')}"
        assert got.tolist() == want, f"merge_pair({ids}, {pair}, {new_id}): expected {fmt(want)}, got {got.tolist()}"
    original = np.array([1, 2, 1, 2])
    merge_pair(original, (1, 2), 9)
    assert original.tolist() == [1, 2, 1, 2], f"merge_pair must not change its input: [1, 2, 1, 2] became {original.tolist()}"
print("Task 10.3 visible tests passed")

# %% [markdown]
# ### Task 10.4: `BPETokenizer.train`, the merge loop
#
# A `BPETokenizer` is defined by its list of merges: `merges[k] = (a, b)`
# means "the pair `(a, b)` becomes id `256 + k`". The given constructor
# builds `self.vocab`, the bytes each id stands for
# (`vocab[256 + k] = vocab[a] + vocab[b]`), so `vocab_size = 256 + len(merges)`.
#
# `BPETokenizer.train(text, vocab_size)` learns the merges:
#
# 1. `vocab_size` must be an int `>= 256` (the 256 byte ids come first);
#    anything else raises `ValueError` naming the value.
# 2. Start from the UTF-8 bytes as int64 ids (`text_to_bytes`, given).
# 3. Loop while `256 + len(merges) < vocab_size`: stop early if fewer than two
#    ids are left or the most frequent pair (Task 10.2) occurs only once (a
#    merge that replaces one pair learns nothing reusable); otherwise merge it
#    into id `256 + len(merges)` (Task 10.3) and append the pair to `merges`.
# 4. Return `cls(merges)`.
#
# So the worked example gives `train("aaabdaaabac", 300).merges == [(97, 97), (97, 98), (256, 257)]`,
# `vocab_size` 259 (it stopped early), and `vocab[258] == b"aaab"`.
# This task calls Tasks 10.2 and 10.3.

# %% [markdown]
# ### Task 10.5: `BPETokenizer.encode` and `decode`
#
# In the same class cell as Task 10.4, below `train`.
#
# **Encode** a text the way training cut it: take its bytes (`text_to_bytes`),
# then apply the merges **in the order they were learned**, `merges[0]` into
# id 256 first, with `merge_pair`. The order matters: merge `k` may use ids
# made by earlier merges (`(256, 257)` above). Return int64 ids of shape `(n,)`.
#
# **Decode** joins `self.vocab[id]` for each id into one `bytes` object and
# decodes it as UTF-8 with `errors="replace"` (a sampled sequence from a
# model may cut a multi-byte character in half; that shows as `\ufffd`
# instead of crashing; ids from `encode` always decode back exactly). An id
# outside `[0, vocab_size)` raises `ValueError` naming the id and the
# vocabulary size, e.g. `BPETokenizer.decode: id 300 is out of range for a vocabulary of 259`.
#
# ```
# bpe = BPETokenizer([(97, 97), (97, 98), (256, 257)])
# bpe.encode("aaabdaaabac") -> array([258, 100, 258, 97, 99])
# bpe.encode("aab")         -> array([256, 98])        (97, 97) first, so no "ab" is left
# bpe.decode([258, 100])    -> 'aaabd'
# bpe.encode("día")         -> array([100, 195, 173, 97])   'í' is two bytes
# ```
#
# (Task 10.5 builds a tokenizer from a given list of merges, so it does not
# need Task 10.4; it calls `merge_pair` from Task 10.3.)

# %% nbgrader={"grade": false, "grade_id": "bpe", "locked": false, "schema_version": 3, "solution": true, "task": false} tags=["export"]
def text_to_bytes(text: str) -> np.ndarray:
    """str -> (number of UTF-8 bytes,) int64 ids in 0..255."""
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)


class BPETokenizer:
    """Byte-pair encoding: ids 0..255 are bytes, id 256 + k is merges[k] = (a, b) (the bytes of a, then of b).

    encode: str -> (n,) int64; decode: (n,) ints -> str. Every text encodes (there are no unknown bytes).
    """

    def __init__(self, merges):
        self.merges = [(int(a), int(b)) for a, b in merges]
        self.vocab = [bytes([i]) for i in range(256)]  # id -> the bytes it stands for
        for k, (a, b) in enumerate(self.merges):
            if not (0 <= a < 256 + k and 0 <= b < 256 + k):
                raise ValueError(f"BPETokenizer: merge {k} = {(a, b)} uses an id not defined before it "
                                 f"(ids so far: 0..{256 + k - 1})")
            self.vocab.append(self.vocab[a] + self.vocab[b])

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def train(cls, text: str, vocab_size: int) -> "BPETokenizer":
        """Learn merges on `text` until vocab_size ids (or no pair occurs twice) -> BPETokenizer."""
        # Task 10.4: the merge loop (most_frequent_pair, merge_pair), stopping early as described
        ### BEGIN SOLUTION
        if not isinstance(vocab_size, (int, np.integer)) or isinstance(vocab_size, bool) or vocab_size < 256:
            raise ValueError(f"BPETokenizer.train: vocab_size must be an int >= 256 (the byte ids), got {vocab_size!r}")
        ids, merges = text_to_bytes(text), []
        while 256 + len(merges) < vocab_size and len(ids) >= 2:
            pair, count = most_frequent_pair(ids)
            if count < 2:
                break
            ids = merge_pair(ids, pair, 256 + len(merges))
            merges.append(pair)
        return cls(merges)
        ### END SOLUTION

    def encode(self, text: str) -> np.ndarray:
        """str -> (n,) int64: the text's bytes with every merge applied, in the order learned."""
        # Task 10.5: bytes, then each merge in order
        ### BEGIN SOLUTION
        ids = text_to_bytes(text)
        for k, pair in enumerate(self.merges):
            if len(ids) < 2:
                break
            ids = merge_pair(ids, pair, 256 + k)
        return ids
        ### END SOLUTION

    def decode(self, ids) -> str:
        """(n,) ints -> str; ValueError for an id outside [0, vocab_size)."""
        # Task 10.5: join the bytes of the ids, decode UTF-8 (errors="replace"); an id out of range is a ValueError
        ### BEGIN SOLUTION
        ids = np.asarray(ids)
        if ids.ndim != 1:
            raise ValueError(f"BPETokenizer.decode: expected a 1-d sequence of ids, got shape {ids.shape}")
        bad = (ids < 0) | (ids >= self.vocab_size)
        if bad.any():
            raise ValueError(f"BPETokenizer.decode: id {ids[bad][0]} is out of range for a vocabulary of "
                             f"{self.vocab_size}")
        return b"".join(self.vocab[i] for i in ids.tolist()).decode("utf-8", errors="replace")
        ### END SOLUTION

    def to_dict(self) -> dict:
        """JSON-able: {"type": "bpe", "merges": [[a, b], ...]}."""
        return {"type": "bpe", "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, d: dict) -> "BPETokenizer":
        if not isinstance(d, dict) or d.get("type") != "bpe" or not isinstance(d.get("merges"), list):
            raise ValueError(f"BPETokenizer.from_dict: expected {{'type': 'bpe', 'merges': [[a, b], ...]}}, got {d!r}")
        return cls(d["merges"])

    def __repr__(self) -> str:
        return f"BPETokenizer(vocab_size={self.vocab_size})"


# %% nbgrader={"grade": true, "grade_id": "test_10_4_bpe_train", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 10.4 (they rely on Tasks 10.2 and 10.3)
from tinytorch_lib.testing import task

with task("10.4", uses={"10.2": "most_frequent_pair", "10.3": "merge_pair"}):
    try:
        assert most_frequent_pair([5, 6, 5, 6, 7]) == ((5, 6), 2) and merge_pair([1, 1, 1], (1, 1), 9).tolist() == [9, 1]
    except Exception as e:
        raise AssertionError(f"Task 10.4 calls most_frequent_pair (Task 10.2) and merge_pair (Task 10.3), and one of them "
                             f"gave a wrong result ({e!r}): make Tasks 10.2 and 10.3's tests pass first") from None
    bpe = BPETokenizer.train("aaabdaaabac", 300)
    assert isinstance(bpe, BPETokenizer), f"train should return a BPETokenizer, got {type(bpe).__name__}"
    assert bpe.merges == [(97, 97), (97, 98), (256, 257)], \
        f'train("aaabdaaabac", 300).merges: expected [(97, 97), (97, 98), (256, 257)], got {bpe.merges}'
    assert bpe.vocab_size == 259 and bpe.vocab[258] == b"aaab", \
        f'train("aaabdaaabac", 300): expected vocab_size 259 and vocab[258] == b"aaab", got {bpe.vocab_size}, {bpe.vocab[-1]!r}'
    two = BPETokenizer.train("aaabdaaabac", 258)
    assert two.merges == [(97, 97), (97, 98)], f'train("aaabdaaabac", 258): stop at vocab_size 258, expected 2 merges, got {two.merges}'
    try:
        BPETokenizer.train("abc", 100)
    except ValueError as e:
        assert "100" in str(e), f"train(text, 100): the error should name 100, got: {e}"
    else:
        raise AssertionError("train(text, vocab_size=100) should raise ValueError: the 256 byte ids come first")
print("Task 10.4 visible tests passed")

# %% nbgrader={"grade": true, "grade_id": "test_10_5_bpe_encode_decode", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Tests for Task 10.5 (they rely on Task 10.3)
from tinytorch_lib.testing import task

with task("10.5", uses={"10.3": "merge_pair", "10.4": "BPETokenizer.train"}):
    try:
        assert merge_pair([1, 1, 1], (1, 1), 9).tolist() == [9, 1]
    except Exception as e:
        raise AssertionError(f"Task 10.5 calls merge_pair from Task 10.3, and merge_pair([1, 1, 1], (1, 1), 9) did not "
                             f"return [9, 1] ({e!r}): make Task 10.3's tests pass first") from None
    bpe = BPETokenizer([(97, 97), (97, 98), (256, 257)])
    for text, want in [("aaabdaaabac", [258, 100, 258, 97, 99]), ("aab", [256, 98]), ("día", [100, 195, 173, 97])]:
        got = bpe.encode(text)
        assert isinstance(got, np.ndarray) and got.dtype == np.int64, \
            f"encode({text!r}): expected an int64 array, got {type(got).__name__} {getattr(got, 'dtype', '')}"
        assert got.tolist() == want, f"encode({text!r}) with merges [(97, 97), (97, 98), (256, 257)]: expected {fmt(want)}, got {got.tolist()}"
    assert bpe.decode([258, 100]) == "aaabd", f"decode([258, 100]): expected 'aaabd', got {bpe.decode([258, 100])!r}"
    assert bpe.decode(bpe.encode("día aaab")) == "día aaab", "decode(encode('día aaab')) should give 'día aaab' back"
    try:
        bpe.decode([97, 300])
    except ValueError as e:
        assert "300" in str(e) and "259" in str(e), f"decode([97, 300]): the error should name id 300 and the vocabulary size 259, got: {e}"
    else:
        raise AssertionError("decode([97, 300]) with 259 ids should raise ValueError")
print("Task 10.5 visible tests passed")

# %% [markdown]
# ## 4. Systems analysis: vocabulary against sequence length
#
# Every figure below is measured in the cell that prints it. BPE is trained
# here on the first 64 KB of the training split (Genesis 1 to 21: a few
# hundred merges take well under a second in numpy), then applied to the
# **validation** split (Joshua), text it never saw.
#
# ### How long is the same text?

# %%
from tinytorch_lib.timing import compare, measure

chars = CharTokenizer(train_text)
BPE_TEXT = train_text[:65536]
bpe_sizes = [256, 320, 384, 512, 768]
largest = BPETokenizer.train(BPE_TEXT, bpe_sizes[-1])
assert largest.vocab_size == bpe_sizes[-1], f"training stopped early at {largest.vocab_size} ids"
# Training is greedy, so training to v ids learns exactly the first v - 256 merges of the largest run.
bpes = {v: BPETokenizer(largest.merges[:v - 256]) for v in bpe_sizes}
tokenizers = {f"char ({chars.vocab_size})": chars, **{f"BPE {v}": bpes[v] for v in bpe_sizes}}
val_ids = {name: tok.encode(val_text) for name, tok in tokenizers.items()}
for name, tok in tokenizers.items():
    assert tok.decode(val_ids[name]) == val_text, f"{name}: round trip of the validation split failed"
print(f"validation split: {len(val_text):,} characters, {len(val_text.encode('utf-8')):,} bytes; "
      f"BPE trained on {len(BPE_TEXT):,} characters")
print(f"{'tokenizer':<12} {'vocab':>6} {'val tokens':>11} {'chars/token':>12}")
for name, tok in tokenizers.items():
    n = len(val_ids[name])
    print(f"{name:<12} {tok.vocab_size:>6} {n:>11,} {len(val_text) / n:>12.2f}")
top = bpes[bpe_sizes[-1]]
print("the first 12 merges:", [top.vocab[i].decode() for i in range(256, 268)])
print("later ones:         ", [top.vocab[i].decode() for i in (400, 500, 600, 700, top.vocab_size - 1)])

# %% [markdown]
# `BPE 256` has no merges: one id per byte, the same length as the character
# tokenizer on this ASCII text. Each block of merges shortens the sequence,
# with diminishing returns: the first merges capture the commonest pieces
# (`th`, `e `, ` and `, ` the `), the later ones rarer words and word
# pieces, each of which saves less.
#
# ### What that does to a transformer
#
# Take one window of 1,024 characters of text. Its length in tokens is
# `1024 / (chars per token)`, from the measured ratios above. Two costs
# move in opposite directions (Modules 11-13 build these layers; `d_model` =
# 128 as in the course's GPT):
#
# - **attention** compares every token with every earlier one: a `(seq, seq)`
#   score matrix per head and layer, so its work grows with `seq**2`;
# - the **embedding table and the output layer** hold `vocab_size x d_model`
#   weights each: they grow with the vocabulary.

# %%
D_MODEL, WINDOW = 128, 1024
print(f"{'tokenizer':<12} {'tokens per 1024 chars':>22} {'attention scores':>17} {'embed + output weights':>23}")
rows = []
for name, tok in tokenizers.items():
    seq = WINDOW * len(val_ids[name]) / len(val_text)
    scores = seq * seq
    weights = 2 * tok.vocab_size * D_MODEL
    rows.append((name, tok.vocab_size, seq, scores, weights))
    print(f"{name:<12} {seq:>22.0f} {scores:>17,.0f} {weights:>23,}")
c, b = rows[0], rows[-1]
print(f"{b[0]} against {c[0]}: {c[3] / b[3]:.1f}x fewer attention scores, {b[4] / c[4]:.1f}x more embedding + output weights")

# %% [markdown]
# For this small corpus and model, BPE's shorter sequences cut the quadratic
# attention cost severalfold, while the vocabulary's weights grow by a factor
# of about ten. Real models push the vocabulary to 50,000-200,000 ids because
# at their scale the sequence length costs more; the course's GPT uses
# characters so that its vocabulary, 72, keeps the model tiny.
#
# ### How many bytes do the ids take?
#
# `encode` returns int64, 8 bytes per id, because numpy indexing wants it.
# To store a tokenized corpus, the smallest dtype that holds `vocab_size - 1`
# is enough: uint8 up to 256 ids, uint16 up to 65,536.

# %%
print(f"validation text as UTF-8: {len(val_text.encode('utf-8')):,} bytes")
print(f"{'tokenizer':<12} {'int64 bytes':>12} {'uint16 bytes':>13} {'uint8 bytes':>12}")
for name, tok in tokenizers.items():
    ids = val_ids[name]
    cells = [f"{ids.nbytes:>12,}"]
    for dtype in (np.uint16, np.uint8):
        fits = tok.vocab_size - 1 <= np.iinfo(dtype).max
        small = ids.astype(dtype)
        if fits:
            assert np.array_equal(small, ids)
        cells.append(f"{small.nbytes:>{13 if dtype is np.uint16 else 12},}" if fits else f"{'too small':>{13 if dtype is np.uint16 else 12}}")
    print(f"{name:<12} {' '.join(cells)}")

# %% [markdown]
# Character ids fit uint8: one byte per character, the same as the text.
# BPE with more than 256 ids needs uint16: two bytes per token, but fewer
# tokens, so a BPE file in uint16 ends up near the text's own size. The
# int64 arrays `encode` returns take four times their uint16 size and eight
# times their uint8 size.
#
# ### Encode throughput
#
# Both tokenizers encode the whole validation split, timed in turns with
# `compare` (CPU time, median of a few runs; ratios from neighbouring
# repeats, with their p10-p90 range). The character tokenizer does one dictionary lookup
# per character in Python; BPE does one numpy pass over the sequence per
# merge, so its time grows with the number of merges.

# %%
print(f"{'tokenizer':<12} {'median':>10} {'MB/s':>7}")
enc_names = (f"char ({chars.vocab_size})", "BPE 384", f"BPE {bpe_sizes[-1]}")
encodes = compare({name: (lambda tok=tokenizers[name]: tok.encode(val_text)) for name in enc_names},
                  repeats=3, number=1)
enc_times = encodes.timings
for name, t in enc_times.items():
    print(f"{name:<12} {t.median * 1e3:8.1f} ms {len(val_text) / t.median / 1e6:7.2f}  (p90 {t.p90 * 1e3:.1f} ms)")
print(f"in this run, {enc_names[2]} / BPE 384: {encodes.ratio(enc_names[2], 'BPE 384'):.3g} the time, for "
      f"{bpe_sizes[-1] - 256} / {384 - 256} = {(bpe_sizes[-1] - 256) / 128:.3g}x the merges")
if encodes.noisy:
    print(encodes.noisy)

# %% [markdown]
# BPE's encode time grows with its merge count because every merge is one
# more pass over the whole sequence, even for a pair that does not occur.
# Production tokenizers (Hugging Face `tokenizers`, OpenAI's `tiktoken`)
# instead split the text into words first and apply merges by rank inside
# each word, in compiled code.
#
# ### Counting pairs: a Python loop against numpy
#
# Training calls `most_frequent_pair` once per merge on the whole sequence,
# so its speed decides the training time. Below, the plain-Python version
# (a `Counter` over `zip(ids, ids[1:])`, ties broken the same way) against
# yours, on the 64 KB of bytes the first merge sees.

# %%
from collections import Counter


def most_frequent_pair_python(ids):
    counts = Counter(zip(ids, ids[1:]))
    best = max(counts.values())
    return min(p for p, c in counts.items() if c == best), best


first_ids = text_to_bytes(BPE_TEXT)
first_list = first_ids.tolist()
assert most_frequent_pair_python(first_list) == most_frequent_pair(first_ids)
pairs = compare({"python": lambda: most_frequent_pair_python(first_list), "yours": lambda: most_frequent_pair(first_ids)},
                repeats=3, number=1)
print(f"Counter over zip (Python):  {pairs['python']}")
print(f"most_frequent_pair (yours): {pairs['yours']}")
print(f"in this run, Python / yours: {pairs.ratio('python', 'yours'):.3g} on {len(first_ids):,} ids")
if pairs.noisy:
    print(pairs.noisy)

# %% [markdown]
# If your `most_frequent_pair` is the loop, the two lines are close; the
# numpy version does the counting in one sort (`np.unique`) in compiled code.
#
# ### BPE training time against vocabulary size
#
# Each merge counts every pair of the whole sequence (`np.unique` sorts it)
# and rewrites it, so training time grows with the number of merges times
# the sequence length. Timed here on the first 32 KB, three runs each.

# %%
TRAIN_PIECE = train_text[:32768]
merge_counts = [32, 64, 128, 256]
train_times = {}
for m in merge_counts:
    train_times[m] = measure(lambda m=m: BPETokenizer.train(TRAIN_PIECE, 256 + m), repeats=3, warmup=0, number=1)
    print(f"{m:>4} merges (vocab {256 + m}): {train_times[m]}  = {train_times[m].median / m * 1e3:.2f} ms per merge")

# %%
import matplotlib.pyplot as plt

from tinytorch_lib.plotting import format_bytes, place_legend

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
vocab = [tok.vocab_size for tok in tokenizers.values()]
lengths = [len(val_ids[name]) for name in tokenizers]
ax1.plot(vocab[1:], lengths[1:], "o-", label=f"BPE (trained on {format_bytes(len(BPE_TEXT.encode()))})")
ax1.plot(vocab[:1], lengths[:1], "s", color="C3", label="characters")
ax1.set_xlabel("vocabulary size (ids)")
ax1.set_ylabel("validation split length (tokens)")
ax1.set_title("A bigger vocabulary, a shorter sequence")
ax2.plot([256 + m for m in merge_counts], [train_times[m].median for m in merge_counts], "o-")
ax2.set_xlabel("vocabulary size (ids)")
ax2.set_ylabel(f"BPE training time on {format_bytes(len(TRAIN_PIECE.encode()))} (s, median)")
ax2.set_title("Training time grows with every merge")
plt.tight_layout()
place_legend(ax1)
plt.show()

# %% [markdown]
# Takeaway: each merge buys a shorter sequence with one more row in the
# embedding and output layers, and the returns shrink as the merges reach
# rarer pieces. Training time grows with the number of merges, because each
# one recounts and rewrites the whole sequence; a little less than linearly,
# because each merge leaves a shorter sequence for the next (real trainers
# update the pair counts incrementally instead of recounting).
#
# ## Summary
#
# - A character tokenizer needs 72 ids on this corpus and never meets an
#   unknown character in its validation split; anything else it refuses
#   with an error naming the character and where it is.
# - BPE starts from bytes (nothing is unknown) and learns merges of the most
#   frequent pairs; encoding replays them in the learned order.
# - The vocabulary trades sequence length (attention's cost grows with its
#   square) against embedding and output weights (they grow with the
#   vocabulary); both measured above. Storing ids in uint8 or uint16 instead
#   of int64 divides their bytes by eight or four.
#
# Next: `tito module export 10`; Module 11 turns these ids into vectors with
# an `Embedding` table and adds positions.
