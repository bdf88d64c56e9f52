"""Issue 12 #23: card plots draw Chinese with real glyphs on a machine without a system CJK font (the
font comes with the pip install) and print no "Glyph missing" warning flood."""

from __future__ import annotations

import logging
import warnings
from collections import Counter

import numpy as np
import pytest
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from matplotlib.image import imread

from medmill.builders.publish import plots

pytestmark = pytest.mark.fresh_plots  # these tests are about drawing: never reuse earlier bytes

LABELS = ["糖尿病", "高血压", "冠心病", "慢性胃炎"]


def _bars(tmp_path, labels: list[str], name: str) -> np.ndarray:
    out = tmp_path / f"{name}.png"
    assert plots.category_bars("疾病", Counter({label: 10 - i for i, label in enumerate(labels)}), out)
    return imread(out)


def test_the_plot_font_has_every_chinese_glyph():
    family = plots.cjk_font()
    assert family is not None
    path = font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)
    assert "DejaVu" not in path
    font = FT2Font(path)
    for ch in "".join(LABELS) + "疾病记录数":
        assert font.get_char_index(ord(ch)) != 0, ch


def test_chinese_labels_render_as_glyphs_without_warnings(tmp_path, caplog):
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        first = _bars(tmp_path, LABELS, "a")
        other = _bars(tmp_path, ["肺结核", "偏头痛", "肾结石", "带状疱疹"], "b")
    assert not [w for w in caught if "Glyph" in str(w.message)]
    assert not [r for r in caplog.records if "glyph" in r.getMessage() or "CJK" in r.getMessage()]
    # missing glyphs are all drawn as the same box: other labels would give the same picture
    assert first.shape == other.shape and not np.array_equal(first, other)


def test_glyphs_differ_from_the_box_rendering():
    """Rasterised: with DejaVu Sans alone (the old picture on this machine) 糖 and 病 are the same box;
    with the plot font they are different glyphs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def draw(text: str, family: list[str]) -> np.ndarray:
        fig = Figure(figsize=(0.6, 0.6), dpi=100)
        canvas = FigureCanvasAgg(fig)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fig.text(0.1, 0.2, text, fontfamily=family, fontsize=24)
            canvas.draw()
        return np.asarray(canvas.buffer_rgba()).copy()

    box = ["DejaVu Sans"]
    assert np.array_equal(draw("糖", box), draw("病", box))  # what "boxes" means
    font = [plots.cjk_font(), "DejaVu Sans"]
    assert not np.array_equal(draw("糖", font), draw("病", font))
    assert not np.array_equal(draw("糖", font), draw("糖", box))


def test_a_build_prints_no_glyph_warnings(tmp_path, examples_dir, recwarn):
    from typer.testing import CliRunner

    from medmill.cli import _register, app

    _register()
    result = CliRunner().invoke(app, ["build-kg-qa", str(examples_dir / "kg"), "--out", str(tmp_path / "kg")])
    assert result.exit_code == 0, result.output
    assert "Glyph" not in result.output
    assert not [w for w in recwarn if "Glyph" in str(w.message)]
    assert list((tmp_path / "kg" / "plots").glob("meta_*.png"))


def test_same_statistics_draw_the_same_bytes(tmp_path):
    """What tests/conftest.py relies on when it reuses plots drawn for identical statistics."""
    from medmill.builders.publish.stats import compute_stats
    from tests.publish.test_card import make_dir

    d = make_dir(tmp_path, "sft", n=30)
    stats = compute_stats(d, "sft")
    first = plots.write_plots(stats, tmp_path / "a")
    second = plots.write_plots(compute_stats(d, "sft"), tmp_path / "b")
    assert first == second and len(first) >= 2
    for _, rel in first:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
