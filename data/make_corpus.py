"""Regenerate data/corpus.txt: the first six books of the King James Bible.

The text comes from Debian's `bible-kjv-text` package (the public-domain King
James Version, 1611, compressed for the Bible Retrieval System) and is read
with the package's own reader, `bible`, from Debian's `bible-kjv`:

    apt-get update && apt-get install bible-kjv      # pulls in bible-kjv-text
    python3 data/make_corpus.py

No network access is needed beyond installing the package. The output is byte
for byte the same on every run (it prints the sha256 to compare with
data/README.md):

    Genesis 1
    <blank line>
    In the beginning God created the heaven and the earth.
    And the earth was without form, and void; ...
    ...                                   (one verse per line, numbers dropped)
    <blank line>
    Genesis 2
    ...

Books: Genesis, Exodus, Leviticus, Numbers, Deuteronomy, Joshua (the
Hexateuch: 211 chapters, 6,510 verses, 918,048 bytes of plain ASCII, 72
distinct characters). Every character of the validation split (the last 10%)
also occurs in the training split, so a character vocabulary built on the
training split encodes both.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "corpus.txt"
RANGE = "gen1:1-jos24:33"          # Genesis 1:1 to the last verse of Joshua
BOOKS = ("Genesis", "Exodus", "Leviticus", "Numbers", "Deuteronomy", "Joshua")
HEADING = re.compile(r"^(%s) (\d+)$" % "|".join(BOOKS))
VERSE = re.compile(r"^ *(\d+) (\S.*)$")


def read_bible(verse_range: str) -> str:
    """The raw output of Debian's `bible` reader for a verse range, one verse per line."""
    if shutil.which("bible") is None:
        sys.exit("`bible` not found: install Debian's bible-kjv package "
                 "(apt-get update && apt-get install bible-kjv)")
    # -l100000: a line width no verse reaches, so each verse stays on one line
    out = subprocess.run(["bible", "-l100000", verse_range], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, encoding="ascii", check=True)
    return out.stdout


def to_corpus(raw: str) -> tuple[str, int, int]:
    """Raw reader output -> (corpus text, chapters, verses); fails on any line it does not expect."""
    chapters, lines, n_verses, expected = [], [], 0, 1
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        if m := HEADING.match(line):
            if lines:
                chapters.append("\n".join(lines))
            lines, expected = [line, ""], 1
        elif m := VERSE.match(line):
            if int(m.group(1)) != expected:
                raise ValueError(f"line {number}: verse {m.group(1)}, expected verse {expected}: {line!r}")
            lines.append(m.group(2).rstrip())
            n_verses, expected = n_verses + 1, expected + 1
        else:
            raise ValueError(f"line {number}: neither a chapter heading nor a verse: {line!r}")
    chapters.append("\n".join(lines))
    return "\n\n".join(chapters) + "\n", len(chapters), n_verses


def main() -> None:
    text, n_chapters, n_verses = to_corpus(read_bible(RANGE))
    data = text.encode("ascii")
    OUT.write_bytes(data)
    split = int(0.9 * len(text))
    print(f"wrote {OUT}: {len(data):,} bytes, {len(text):,} characters, {n_chapters} chapters, "
          f"{n_verses} verses, {len(set(text))} distinct characters")
    print(f"train = first {split:,} characters, val = last {len(text) - split:,}")
    print(f"sha256 {hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
