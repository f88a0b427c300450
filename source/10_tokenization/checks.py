"""Module 10's graded checks, run outside the student's interpreter (tito/checks.py).

Instructor only: never released, never in the sandbox. Each check covers its test cell's visible cases
and the hidden ones; the student's code runs in the sandbox (`s.value`, `s.run`, `s.raises`), every
expected value and comparison stays here. The corpus pieces the hidden cases use are read here, from the
course's data/corpus.txt, and sent in as inputs: nothing in the sandbox decides what is expected.
"""
from collections import Counter

import numpy as np

from tinytorch_lib import fmt
from tito.checks import StudentError, check
from tito.modules import ROOT

TRAIN_FRACTION = 0.9  # as load_corpus: the first 90% of the characters train, the last 10% validate


def corpus(split: str) -> str:
    text = (ROOT / "data" / "corpus.txt").read_text(encoding="utf-8")
    cut = int(TRAIN_FRACTION * len(text))
    return text[:cut] if split == "train" else text[cut:]


class Raised:
    """What a call raised, shown as `raised Type: message` in a failure."""

    def __init__(self, error: StudentError):
        self.error = error

    def __repr__(self) -> str:
        return f"raised {self.error.said}"


def fetch(s, expr: str, **inputs):
    """The value of expr, or Raised (what it raised), so a check can word the failure itself."""
    try:
        return s.value(expr, **inputs)
    except StudentError as e:
        return Raised(e)


def array_of(s, what: str, expr: str, **inputs) -> np.ndarray:
    """expr must give an int64 np.ndarray: returns it, or AssertionError saying what came back."""
    s.run(f"_out = {expr}", **inputs)  # the call alone, so an error quotes just it
    kind, arr = s.value("(type(_out).__name__, _out if isinstance(_out, np.ndarray) else None)")
    assert arr is not None, f"{what}: expected an int64 np.ndarray, got {fmt(kind)}"
    assert arr.dtype == np.int64, f"{what}: expected an int64 np.ndarray, got dtype {arr.dtype}"
    return arr


def pairs_oracle(ids) -> tuple:
    ids = [int(i) for i in ids]
    c = Counter(zip(ids, ids[1:]))
    best = max(c.values())
    return min(p for p, k in c.items() if k == best), best


def merge_oracle(ids, pair, new_id) -> list:
    ids, out, i = [int(i) for i in ids], [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == tuple(pair):
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def bpe_train_oracle(text: str, vocab_size: int) -> list:
    ids, merges = list(text.encode("utf-8")), []
    while 256 + len(merges) < vocab_size and len(ids) >= 2:
        pair, count = pairs_oracle(ids)
        if count < 2:
            break
        ids = merge_oracle(ids, pair, 256 + len(merges))
        merges.append(pair)
    return merges


def bpe_encode_oracle(text: str, merges) -> list:
    ids = list(text.encode("utf-8"))
    for k, pair in enumerate(merges):
        ids = merge_oracle(ids, pair, 256 + k)
    return ids


@check("test_10_1_char_tokenizer")
def char_tokenizer(s):
    s.run('tok = CharTokenizer("hello world")')
    chars, size = s.value("(tok.chars, tok.vocab_size)")
    want = sorted(set("hello world"))
    assert chars == want, f"CharTokenizer('hello world').chars: expected {fmt(want)}, got {fmt(chars)}"
    assert size == 8, f"vocab_size of 'hello world': expected 8, got {size}"
    ids = array_of(s, "encode('hello')", "tok.encode('hello')")
    assert ids.shape == (5,), f"encode('hello'): expected shape (5,), got {ids.shape}"
    assert ids.tolist() == [3, 2, 4, 4, 5], f"encode('hello'): expected [3, 2, 4, 4, 5], got {ids.tolist()}"
    got = s.value("tok.decode([3, 2, 4, 4, 5])")
    assert got == "hello", f"decode([3, 2, 4, 4, 5]): expected 'hello', got {got!r}"
    got = s.value("tok.decode(tok.encode('world hello'))")
    assert got == "world hello", f"decode(encode('world hello')) should give 'world hello' back, got {got!r}"
    s.expect_error("tok.encode('help')", "encode('help') with a vocabulary from 'hello world' ('p' is unknown)",
                   ("'p'", "3"))
    s.expect_error("tok.decode([1, 9])", "decode([1, 9]) with a vocabulary of 8 (id 9 is out of range)", ("9", "8"))
    # the training split's vocabulary, a validation piece through it
    train, val = corpus("train"), corpus("val")
    s.run("t2 = CharTokenizer(text)", text=train)
    chars, size, stoi = s.value("(list(t2.chars), t2.vocab_size, dict(t2.stoi))")
    want = sorted(set(train))
    assert size == len(want), f"vocabulary of the training split: expected {len(want)} characters, got {size}"
    assert chars == want, "chars of the training split should be the sorted set of its characters"
    assert stoi == {c: i for i, c in enumerate(want)}, "stoi[c] should be c's index in chars (the training split)"
    piece = val[:2000]
    e2 = array_of(s, "encode of 2000 validation characters", "t2.encode(piece)", piece=piece)
    assert e2.shape == (2000,), f"encode of 2000 characters: expected shape (2000,), got {e2.shape}"
    assert np.array_equal(e2, [want.index(c) for c in piece]), \
        "encode of the first 2000 characters of the validation split: wrong ids (id = index in the sorted chars)"
    back = s.value("(t2.decode(t2.encode(piece)), t2.decode(list(t2.encode(piece).tolist())))", piece=piece)
    assert back == (piece, piece), "decode(encode(piece)) of 2000 validation characters (as an array and as a list) " \
                                   "should give the piece back"
    empty = array_of(s, "encode('')", "tok.encode('')")
    assert empty.shape == (0,), f"encode(''): expected an int64 array of shape (0,), got shape {empty.shape}"
    got = s.value("tok.decode([])")
    assert got == "", f"decode([]) should be '', got {got!r}"
    for text, bad, pos in [("hello\n", "'\\n'", "5"), ("Zoo", "'Z'", "0"), ("held é", "'é'", "5")]:
        s.expect_error("tok.encode(text)", f"encode({text!r}) with a vocabulary from 'hello world'", (bad, pos), text=text)
    s.expect_error("tok.decode(np.array([0, -1]))", "decode(np.array([0, -1])) (id -1 is out of range)", ("-1",))
    s.expect_error("CharTokenizer('')", "CharTokenizer('') (an empty vocabulary)")
    got = s.value("(lambda u: u.decode(u.encode('va ça')))(CharTokenizer('ça va? Ça va.'))")
    assert got == "va ça", f"non-ASCII characters should round trip: CharTokenizer('ça va? Ça va.') gave {got!r} for 'va ça'"


def pair_result(s, **inputs):
    """most_frequent_pair(ids) as data, and the type names of its three numbers."""
    s.run("got = most_frequent_pair(ids)", **inputs)
    got = s.value("got")
    types = fetch(s, "[type(x).__name__ for x in (*got[0], got[1])]")
    return got, types


@check("test_10_2_most_frequent_pair")
def most_frequent(s):
    for ids, want in [([97, 97, 97, 98, 100, 97, 97, 97, 98, 97, 99], ((97, 97), 4)),
                      ([5, 6, 5, 6, 7], ((5, 6), 2)),
                      ([3, 1, 2], ((1, 2), 1))]:
        got, types = pair_result(s, ids=ids)
        assert got == want, f"most_frequent_pair({ids}): expected {fmt(want)}, got {fmt(got)}"
        assert types == ["int"] * 3, f"most_frequent_pair({ids}): return Python ints, got {got!r} (types {fmt(types)})"
    ids = [256, 97, 98, 100, 256, 97, 98, 97, 99]
    got, _ = pair_result(s, ids=ids)
    assert got == ((97, 98), 2), \
        f"most_frequent_pair({ids}): (97, 98) and (256, 97) tie at 2, expected ((97, 98), 2), got {fmt(got)}"
    s.expect_error("most_frequent_pair([7])", "most_frequent_pair([7]) (one id has no pair)")
    rng = np.random.default_rng(10)
    for n, high in [(2, 3), (50, 4), (500, 30), (3000, 300)]:
        ids = rng.integers(0, high, n)
        want = pairs_oracle(ids)
        got, types = pair_result(s, ids=ids)
        assert got == want, f"most_frequent_pair of {n} random ids below {fmt(high)} (an int64 array): expected {fmt(want)}, got {fmt(got)}"
        assert types == ["int"] * 3, f"most_frequent_pair of an int64 array: return Python ints, got types {fmt(types)}"
    got, _ = pair_result(s, ids=np.array([4, 4, 4, 4]))
    assert got == ((4, 4), 3), f"most_frequent_pair([4, 4, 4, 4]): (4, 4) occurs three times (overlaps count), got {fmt(got)}"
    got, _ = pair_result(s, ids=[9, 0, 0, 9])
    assert got == ((0, 0), 1), f"most_frequent_pair([9, 0, 0, 9]): three pairs of count 1, the smallest is (0, 0); got {fmt(got)}"
    s.expect_error("most_frequent_pair([])", "most_frequent_pair([])")


@check("test_10_3_merge_pair")
def merge(s):
    for ids, pair, new_id, want in [([1, 2, 3, 1, 2], (1, 2), 9, [9, 3, 9]), ([1, 1, 1], (1, 1), 9, [9, 1]),
                                    ([1, 1, 1, 1], (1, 1), 9, [9, 9]), ([4, 5], (5, 4), 9, [4, 5]),
                                    ([97, 97, 97, 98, 100, 97, 97, 97, 98, 97, 99], (97, 97), 256,
                                     [256, 97, 98, 100, 256, 97, 98, 97, 99])]:
        what = f"merge_pair({ids}, {pair}, {new_id})"
        got = array_of(s, what, "merge_pair(ids, pair, new_id)", ids=ids, pair=pair, new_id=new_id)
        assert got.tolist() == want, f"{what}: expected {fmt(want)}, got {got.tolist()}"
    got = s.value("(lambda o: (merge_pair(o, (1, 2), 9), o)[1])(np.array([1, 2, 1, 2]))")
    assert got.tolist() == [1, 2, 1, 2], f"merge_pair must not change its input: [1, 2, 1, 2] became {got.tolist()}"
    rng = np.random.default_rng(11)
    for n, high in [(0, 2), (1, 2), (2, 2), (40, 2), (300, 3), (2000, 20)]:
        ids = rng.integers(0, high, n).tolist()
        for pair in [(0, 0), (0, 1), (1, 0), (1, 1)]:
            got = s.value("merge_pair(ids, pair, 99)", ids=ids, pair=pair)
            want = merge_oracle(ids, pair, 99)
            assert np.asarray(got).tolist() == want, \
                f"merge_pair of {n} random ids below {fmt(high)} (a list), pair {pair}, new id 99: expected " \
                f"{want if n <= 40 else f'{len(want)} ids'}, got {np.asarray(got).tolist() if n <= 40 else f'{fmt(np.size(got))} ids'}"
    for ids, pair, new_id in [([7, 7, 7, 7, 7], (7, 7), 300), ([2, 2, 3, 2, 2, 2], (2, 2), 5)]:
        want = merge_oracle(ids, pair, new_id)
        got = s.value("merge_pair(np.array(ids), pair, new_id)", ids=ids, pair=pair, new_id=new_id)
        assert np.asarray(got).tolist() == want, f"merge_pair({ids}, {pair}, {new_id}): expected {fmt(want)}, got {np.asarray(got).tolist()}"


@check("test_10_4_bpe_train")
def bpe_train(s):
    mfp = fetch(s, "most_frequent_pair([5, 6, 5, 6, 7])")
    mp = fetch(s, "merge_pair([1, 1, 1], (1, 1), 9).tolist()")
    assert mfp == ((5, 6), 2) and mp == [9, 1], \
        (f"Task 10.4 calls most_frequent_pair (Task 10.2) and merge_pair (Task 10.3), and one of them gave a wrong "
         f"result (most_frequent_pair([5, 6, 5, 6, 7]) -> {mfp!r}, merge_pair([1, 1, 1], (1, 1), 9) -> {mp!r}): "
         f"make Tasks 10.2 and 10.3's tests pass first")
    s.run('bpe = BPETokenizer.train("aaabdaaabac", 300)')
    kind = s.value("type(bpe).__name__")
    assert kind == "BPETokenizer", f"train should return a BPETokenizer, got {fmt(kind)}"
    merges, size, last = s.value("(bpe.merges, bpe.vocab_size, list(bytes(bpe.vocab[-1])))")
    assert merges == [(97, 97), (97, 98), (256, 257)], \
        f'train("aaabdaaabac", 300).merges: expected [(97, 97), (97, 98), (256, 257)], got {merges}'
    assert size == 259 and bytes(last) == b"aaab", \
        f'train("aaabdaaabac", 300): expected vocab_size 259 and vocab[258] == b"aaab", got {size}, {bytes(last)!r}'
    got = s.value('BPETokenizer.train("aaabdaaabac", 258).merges')
    assert got == [(97, 97), (97, 98)], f'train("aaabdaaabac", 258): stop at vocab_size 258, expected 2 merges, got {fmt(got)}'
    s.expect_error('BPETokenizer.train("abc", 100)', "train(text, vocab_size=100) (the 256 byte ids come first)", ("100",))
    piece = corpus("train")[:5000]
    want = bpe_train_oracle(piece, 256 + 40)
    got = s.value("BPETokenizer.train(piece, 256 + 40).merges", piece=piece)
    if got != want:
        first = next((i for i, (x, y) in enumerate(zip(got, want)) if x != y), min(len(got), len(want)))
        raise AssertionError(f"40 merges on the first 5000 characters of the corpus: {len(got)} merges, first differing "
                             f"merge at index {first}: expected {want[first] if first < len(want) else 'none'}, got "
                             f"{got[first] if first < len(got) else 'none'}")
    assert got[0] == (116, 104), f"the most frequent pair of the first 5000 characters is 'th' (116, 104), got {fmt(got[0])}"
    got = s.value("BPETokenizer.train(piece, 256).merges", piece=piece)
    assert got == [], f"vocab_size 256: expected no merges, got {len(got)}"
    for text in ("", "x"):
        got = s.value("BPETokenizer.train(text, 300).merges", text=text)
        assert got == [], f"train({text!r}, 300): too short, expected no merges, got {fmt(got)}"
    got = s.value('BPETokenizer.train("abcdef", 300).merges')
    assert got == [], f'train("abcdef", 300): every pair occurs once, expected no merges, got {fmt(got)}'
    got = s.value('BPETokenizer.train("ababab", 300).merges')
    assert got == [(97, 98), (256, 256)], f"train('ababab', 300): expected ab, then abab: [(97, 98), (256, 256)], got {fmt(got)}"
    for bad in (255, 0, -3, 300.0, "512"):
        s.expect_error('BPETokenizer.train("abab", bad)', f"train(text, {bad!r})", bad=bad)


@check("test_10_5_bpe_encode_decode")
def bpe_encode_decode(s):
    mp = fetch(s, "merge_pair([1, 1, 1], (1, 1), 9).tolist()")
    assert mp == [9, 1], (f"Task 10.5 calls merge_pair from Task 10.3, and merge_pair([1, 1, 1], (1, 1), 9) did not "
                          f"return [9, 1] ({mp!r}): make Task 10.3's tests pass first")
    merges = [(97, 97), (97, 98), (256, 257)]
    s.run("bpe = BPETokenizer(merges)", merges=merges)
    for text, want in [("aaabdaaabac", [258, 100, 258, 97, 99]), ("aab", [256, 98]), ("día", [100, 195, 173, 97])]:
        got = array_of(s, f"encode({text!r})", "bpe.encode(text)", text=text)
        assert got.tolist() == want, f"encode({text!r}) with merges {merges}: expected {fmt(want)}, got {got.tolist()}"
    got = s.value("bpe.decode([258, 100])")
    assert got == "aaabd", f"decode([258, 100]): expected 'aaabd', got {got!r}"
    got = s.value("bpe.decode(bpe.encode('día aaab'))")
    assert got == "día aaab", f"decode(encode('día aaab')) should give 'día aaab' back, got {got!r}"
    s.expect_error("bpe.decode([97, 300])", "decode([97, 300]) with 259 ids", ("300", "259"))
    merges = [(101, 32), (116, 104), (257, 256), (97, 110), (100, 32)]
    s.run("b5 = BPETokenizer(merges)", merges=merges)
    text = "the band and the end"
    want = bpe_encode_oracle(text, merges)
    got = array_of(s, f"encode({text!r})", "b5.encode(text)", text=text)
    assert got.tolist() == want, f"encode({text!r}) with merges {merges}: expected {fmt(want)}, got {got.tolist()}"
    got = array_of(s, "encode('')", "b5.encode('')")
    assert got.shape == (0,), f"encode(''): expected an empty int64 array, got shape {got.shape}"
    got = s.value("b5.decode([])")
    assert got == "", f"decode([]) should be '', got {got!r}"
    for text in ["the end", "Ωmega ☃ 😀", corpus("val")[:3000]]:
        got = s.value("b5.decode(b5.encode(text))", text=text)
        assert got == text, f"decode(encode(text)) should give the text back for {text[:30]!r}, got {got[:30]!r}"
    got = s.value("b5.decode(np.array([0xE2, 0x98]))")
    assert got == "\ufffd", f"decode of the bytes [0xE2, 0x98] (a cut multi-byte character): expected '\\ufffd' " \
                            f"(errors='replace'), got {got!r}"
    s.expect_error("b5.decode([-1])", "decode([-1])", ("-1",))
    got = s.value("BPETokenizer([(98, 99), (97, 98)]).encode('abc')")
    assert np.asarray(got).tolist() == [97, 256], \
        f"merges apply in learned order: with [(98, 99), (97, 98)], 'abc' -> [97, 256], got {np.asarray(got).tolist()}"
