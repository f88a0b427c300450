"""Regenerate data/digits.npz from scikit-learn's bundled copy of the UCI digits.

scikit-learn is not a course dependency; use a throwaway environment:

    python3.11 -m venv /tmp/skl && /tmp/skl/bin/pip install scikit-learn
    /tmp/skl/bin/python data/make_digits.py

It reads sklearn's bundled file (sklearn/datasets/data/digits.csv.gz, no
network) and writes data/digits.npz byte for byte the same every time:

    images       uint8  (1797, 8, 8)  pixel values 0..16
    labels       uint8  (1797,)       digit 0..9
    train_index  uint16 (1437,)       rows of the training split, ascending
    test_index   uint16 (360,)        rows of the test split, ascending

The split is stratified: each digit keeps its share of the test set (360 of
1797, about 20%; largest remainders decide which classes get the extra
image), the images of each digit are chosen by a seeded permutation.
The arrays are stored uncompressed, with fixed zip timestamps, so the file's
sha256 does not depend on the date or the zlib version.
"""
from __future__ import annotations

import hashlib
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

SEED = 0
N_TEST = 360
OUT = Path(__file__).resolve().parent / "digits.npz"


def stratified_split(labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_index, test_index), both sorted; each class holds its share of the test set."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * n_test / len(labels)
    per_class = np.floor(quota).astype(int)
    extra = n_test - per_class.sum()
    per_class[np.argsort(-(quota - per_class), kind="stable")[:extra]] += 1  # largest remainders
    rng = np.random.default_rng(seed)
    test = []
    for c, k in zip(classes, per_class):
        rows = np.flatnonzero(labels == c)
        test.append(rows[rng.permutation(len(rows))[:k]])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez, but deterministic: fixed timestamps, no compression."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def main() -> int:
    from sklearn.datasets import load_digits  # only here: the course itself never imports sklearn

    digits = load_digits()
    images = digits.images
    assert images.shape == (1797, 8, 8) and images.min() == 0 and images.max() == 16
    assert np.array_equal(images, np.round(images)), "pixel values should be whole counts 0..16"
    labels = digits.target
    train, test = stratified_split(labels, N_TEST, SEED)
    assert len(train) == 1437 and len(test) == 360 and len(np.intersect1d(train, test)) == 0
    write_npz(OUT, {
        "images": images.astype(np.uint8),
        "labels": labels.astype(np.uint8),
        "train_index": train.astype(np.uint16),
        "test_index": test.astype(np.uint16),
    })
    digest = hashlib.sha256(OUT.read_bytes()).hexdigest()
    print(f"{OUT}: {OUT.stat().st_size:,} bytes, sha256 {digest}")
    print("test images per digit:", np.bincount(labels[test], minlength=10).tolist())
    return 0


if __name__ == "__main__":
    sys.exit(main())
