"""The course's figures (issue 23): plain-number log axes, one byte unit, the chosen configuration
annotated, legends clear of the data. Checked on matplotlib's text objects and display
coordinates, not on pixels, by rendering each figure from small synthetic tables.
"""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from tinytorch_lib.plotting import (  # noqa: E402
    covered_points, figure_problems, format_bytes, format_number, format_ratio, log_axis, nice_log_ticks,
    place_legend)


def tick_texts(axis) -> list[str]:
    """The labels of the major ticks inside the view (after a draw)."""
    lo, hi = sorted(axis.get_view_interval())
    return [t.get_text() for t, v in zip(axis.get_ticklabels(), axis.get_ticklocs())
            if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


# -- the shared module: tinytorch_lib/plotting.py ----------------------------------------------------

@pytest.mark.parametrize("value, text", [(32, "32"), (992, "992"), (1024, "1,024"), (0.5, "0.5"), (0.00012, "0.00012"),
                                         (12.46, "12.5"), (2.0000001, "2"), (0, "0")])
def test_format_number_is_plain(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize("value, text", [(512, "512 B"), (1000, "1 kB"), (1500, "1.5 kB"), (69_392, "69.4 kB"),
                                         (70_000, "70 kB"), (999_999, "1 MB"), (1_500_000, "1.5 MB")])
def test_bytes_are_decimal_units(value, text):
    assert format_bytes(value) == text


def test_ratio_and_log_ticks():
    assert format_ratio(12.46) == "12.5x" and format_ratio(2) == "2x"
    assert nice_log_ticks(1000, 70_000) == [1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000]
    assert nice_log_ticks(0.3, 27)[-1] == 50  # the range reaches a label beyond the largest value
    assert nice_log_ticks(0.001, 1000) == [0.001, 0.01, 0.1, 1, 10, 100, 1000]  # crowded: decades only


def test_log_axis_labels_plain_numbers_and_reaches_past_the_data():
    fig, ax = plt.subplots()
    ax.plot([32, 64, 128, 256, 512, 992], [1.1, 2, 4, 8, 16, 27], marker="o", label="without cache")
    log_axis(ax, "x", "count", ticks=[32, 64, 128, 256, 512, 992])
    log_axis(ax, "y", "number")
    place_legend(ax)
    assert figure_problems(fig) == []
    assert tick_texts(ax.xaxis) == ["32", "64", "128", "256", "512", "992"]
    assert tick_texts(ax.yaxis)[-1] == "50" and "20" in tick_texts(ax.yaxis)


def test_figure_problems_finds_matplotlib_default_log_labels_and_a_legend_on_the_data():
    fig, ax = plt.subplots()
    x = [1, 2, 5, 10, 20, 50, 100]
    ax.plot(x, x, marker="o", label="a line through every corner")
    ax.plot(x, [100 / v for v in x], marker="o", label="and the other diagonal")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.legend(loc="center")
    problems = figure_problems(fig)
    assert any("2^" in p for p in problems) and any("10^" in p for p in problems), problems
    assert any("legend covers" in p for p in problems), problems
    place_legend(ax)  # nowhere free inside: it goes outside
    assert covered_points(ax) == 0
