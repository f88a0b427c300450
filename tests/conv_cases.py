"""Random convolution cases for hypothesis, shared by Module 09's and Module 17's tests."""
import numpy as np
from hypothesis import strategies as st

conv_case = st.fixed_dictionaries({
    "n": st.integers(1, 2), "c": st.integers(1, 3), "o": st.integers(1, 3),
    "h": st.integers(1, 7), "w": st.integers(1, 7), "kh": st.integers(1, 3), "kw": st.integers(1, 3),
    "stride": st.integers(1, 3), "padding": st.integers(0, 2), "bias": st.booleans(), "seed": st.integers(0, 2**16),
})


def fits(case) -> bool:
    """The kernel fits in the padded input."""
    return case["h"] + 2 * case["padding"] >= case["kh"] and case["w"] + 2 * case["padding"] >= case["kw"]


def conv_arrays(case) -> tuple:
    """float64 x (n, c, h, w), weight (o, c, kh, kw), bias (o,) or None, from the case's seed."""
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    w = rng.standard_normal((case["o"], case["c"], case["kh"], case["kw"]))
    b = rng.standard_normal(case["o"]) if case["bias"] else None
    return x, w, b
