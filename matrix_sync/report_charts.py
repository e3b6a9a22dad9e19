"""The run report's SVG charts: grouped bars, one group per run, readable from one run to hundreds.

A chart is 410 px wide until its runs need more: every bar keeps MIN_BAR px, the plot grows and
scrolls inside its figure, whose caption (title, legend) stays in view. Run numbers are drawn only
where they do not touch, failed runs first (in red). One tooltip per run group (an invisible rect
on top of the group), not one per bar. When full loads dwarf the other runs they are left out of
the scale and their bars are clipped, saying so.
"""
from __future__ import annotations

import html
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

BASE_WIDTH, HEIGHT, LEFT, RIGHT, BOTTOM = 410, 170, 58, 12, 24
TOP, TOP_WITH_NOTE = 10, 22
MIN_BAR, BAR_GAP, GROUP_GAP, MAX_BAR = 3, 1, 3, 22
MIN_MARK = 5  # a failed run's marker, however narrow its group
DIGIT_W, LABEL_PAD = 6.5, 6  # px of a digit at the labels' 11 px, and the space kept between labels
CLIP_FACTOR = 3  # full loads this much above every other run are clipped
# direction:rtl: a wide plot opens scrolled to its newest runs
CHART_CSS = """
.charts{display:flex;flex-wrap:wrap;gap:8px}.chart-box{margin:0;min-width:0;max-width:100%;background:#fafbfc;border-radius:6px}
.chart-box figcaption{padding:6px 12px 0;font-size:12px;color:#55606b}.chart-box figcaption b{font-size:13px;color:#1d2329;margin-right:10px}
.chart-box .key{margin-right:10px;white-space:nowrap}.chart-box .key i{display:inline-block;width:10px;height:10px;margin-right:4px}
.chart-box .note{display:block;font-size:11px}.chart-box .plot{overflow-x:auto;direction:rtl}.chart{display:block;direction:ltr}
.chart .tick,.chart .run-label{font-size:11px;fill:#55606b}.chart .clip{font-size:10px;fill:#55606b}
.chart .run-label.failed{fill:#c62828;font-weight:700}
.chart .grid{stroke:#dde1e6;stroke-width:1}.chart .fail-band{fill:#c62828;fill-opacity:.12}.chart .fail-mark{fill:#c62828}
.chart .break{fill:#fff}.chart .hit{fill:transparent}.chart .hit:hover{fill:#1d23290f}
"""


@dataclass(frozen=True)
class RunMark:
    """What a chart needs of a run: its number in the runs table, whether it failed or was a full load."""

    number: int
    failed: bool
    full: bool = False


@dataclass(frozen=True)
class Series:
    key: str
    label: str
    color: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Layout:
    runs: int
    group_w: float
    bar_w: float
    top: int
    peak: float
    clipped: bool

    @property
    def wide(self) -> bool:
        return self.runs * self.group_w > BASE_WIDTH - LEFT - RIGHT + 0.01

    @property
    def right(self) -> int:
        return LEFT if self.wide else RIGHT  # a wide chart repeats its axis on the right

    @property
    def width(self) -> float:
        return LEFT + self.runs * self.group_w + self.right

    @property
    def plot_h(self) -> int:
        return HEIGHT - self.top - BOTTOM

    def x(self, index: int) -> float:
        return LEFT + index * self.group_w

    def height(self, value: float) -> float:
        return self.plot_h * min(value, self.peak) / self.peak


def escape(value: object) -> str:
    return html.escape(str(value), quote=True)


def nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def fmt(value: float, unit: str = "") -> str:
    if unit == "B":
        for name, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if value >= size:
                return f"{value / size:.1f} {name}"
        return f"{value:.0f} B"
    if unit == "s":
        return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


def _px(value: float) -> str:
    """A coordinate to a tenth of a pixel, without a trailing '.0' (the page holds tens of thousands)."""
    return f"{value:.1f}".removesuffix(".0")


def raw(value: float | None) -> str:
    """A value as the page's data attributes carry it: integers without a fraction, '-' for none."""
    if value is None:
        return "-"
    return str(int(value)) if float(value).is_integer() else str(round(value, 3))


def scale(runs: Sequence[RunMark], series: Sequence[Series]) -> tuple[float, bool]:
    """The axis' top, and whether full loads are left out of it (a first full load of a million rows
    would flatten every delta after it to a pixel)."""
    every = [v for s in series for v in s.values if v is not None]
    rest = [v for s in series for r, v in zip(runs, s.values, strict=True) if v is not None and not r.full]
    highest, highest_rest = max(every, default=0.0), max(rest, default=0.0)
    if highest_rest > 0 and highest > CLIP_FACTOR * highest_rest:
        return nice_max(highest_rest), True
    return nice_max(highest), False


def layout(runs: Sequence[RunMark], series: Sequence[Series]) -> Layout:
    count = max(len(runs), 1)
    min_group = len(series) * (MIN_BAR + BAR_GAP) + GROUP_GAP
    group_w = max((BASE_WIDTH - LEFT - RIGHT) / count, min_group)
    bar_w = min(MAX_BAR, max(MIN_BAR + BAR_GAP, group_w * 0.8 / max(len(series), 1)))
    peak, clipped = scale(runs, series)
    return Layout(count, group_w, bar_w, TOP_WITH_NOTE if clipped else TOP, peak, clipped)


def _steps() -> Iterator[int]:
    magnitude = 1
    while True:
        yield from (magnitude, 2 * magnitude, 5 * magnitude)
        magnitude *= 10


def label_indexes(runs: Sequence[RunMark], group_w: float) -> list[int]:
    """The runs whose numbers are drawn: failed ones first, then the newest, the first and every
    n-th, each kept only if no label already kept is closer than a label's width."""
    label_w = DIGIT_W * len(str(max((r.number for r in runs), default=1))) + LABEL_PAD
    step = next(k for k in _steps() if k * group_w >= label_w)
    indexes = range(len(runs))
    candidates = ([i for i in indexes if runs[i].failed] + [len(runs) - 1, 0]
                  + [i for i in indexes if runs[i].number % step == 0])
    kept: list[int] = []
    for i in candidates:
        if i >= 0 and all(abs(i - j) * group_w >= label_w for j in kept):
            kept.append(i)
    return sorted(kept)


def _axes(chart: Layout, unit: str) -> Iterator[str]:
    for fraction in (0, 0.5, 1):
        y = chart.top + chart.plot_h * (1 - fraction)
        tick = escape(fmt(chart.peak * fraction, unit))
        yield (f'<line class="grid" x1="{LEFT}" x2="{_px(chart.width - chart.right)}" y1="{_px(y)}" y2="{_px(y)}"/>'
               f'<text class="tick" x="{LEFT - 6}" y="{_px(y + 4)}" text-anchor="end">{tick}</text>')
        if chart.wide:
            yield f'<text class="tick" x="{_px(chart.width - chart.right + 6)}" y="{_px(y + 4)}">{tick}</text>'


def _failures(chart: Layout, runs: Sequence[RunMark]) -> Iterator[str]:
    """A pale band over a failed run's group and a solid mark under the axis, MIN_MARK px at least."""
    width = max(chart.group_w, MIN_MARK)
    for index, run in enumerate(runs):
        if run.failed:
            x = chart.x(index) + (chart.group_w - width) / 2
            yield (f'<rect class="fail-band" x="{_px(x)}" y="{chart.top}" width="{_px(width)}" height="{chart.plot_h}"/>'
                   f'<rect class="fail-mark" x="{_px(x)}" y="{chart.top + chart.plot_h + 1}" width="{_px(width)}" '
                   'height="4"/>')


def _bars(chart: Layout, series: Sequence[Series]) -> Iterator[str]:
    """One path per series, each bar a subpath rising from the axis (half the bytes of a rect); a
    clipped bar gets a white break near its top."""
    base, width = chart.top + chart.plot_h, _px(chart.bar_w - BAR_GAP)
    offset = (chart.group_w - chart.bar_w * len(series)) / 2
    breaks: list[str] = []
    yield '<g class="bars">'
    for position, s in enumerate(series):
        bars = []
        for index, value in enumerate(s.values):
            if not value:
                continue
            x, height = _px(chart.x(index) + offset + position * chart.bar_w), _px(chart.height(value))
            bars.append(f"M{x} {base}v-{height}h{width}v{height}z")
            if value > chart.peak:
                breaks.append(f'<rect class="break" x="{x}" y="{chart.top + 6}" width="{width}" height="3"/>')
        yield f'<path fill="{s.color}" d="{"".join(bars)}"/>'
    yield from breaks
    yield "</g>"


def _tooltip(run: RunMark, series: Sequence[Series], index: int, unit: str) -> str:
    shown = ", ".join(f"{'n/a' if s.values[index] is None else fmt(s.values[index] or 0, unit)} {s.label}"
                      for s in series)
    return f"run #{run.number}: {shown}{' (failed)' if run.failed else ''}"


def _hits(chart: Layout, runs: Sequence[RunMark], series: Sequence[Series], unit: str) -> Iterator[str]:
    """An invisible rect over each run's group, on top of its bars: the run's one tooltip and its
    values (`data-v`, in the order of the chart's `data-series`)."""
    for index, run in enumerate(runs):
        values = " ".join(raw(s.values[index]) for s in series)
        yield (f'<rect class="hit" x="{_px(chart.x(index))}" y="{chart.top}" width="{_px(chart.group_w)}" '
               f'height="{chart.plot_h}" data-n="{run.number}" data-v="{values}">'
               f'<title>{escape(_tooltip(run, series, index, unit))}</title></rect>')


def _clip_labels(chart: Layout, series: Sequence[Series], unit: str) -> Iterator[str]:
    for index in range(chart.runs if chart.clipped else 0):
        over = [v for s in series if (v := s.values[index]) is not None and v > chart.peak]
        if over:
            yield f'<text class="clip" x="{_px(chart.x(index))}" y="{chart.top - 3}">{escape(fmt(max(over), unit))}</text>'


def _labels(chart: Layout, runs: Sequence[RunMark]) -> Iterator[str]:
    for index in label_indexes(runs, chart.group_w):
        css = "run-label failed" if runs[index].failed else "run-label"
        yield (f'<text class="{css}" x="{_px(chart.x(index) + chart.group_w / 2)}" y="{HEIGHT - BOTTOM + 16}" '
               f'text-anchor="middle">{runs[index].number}</text>')


def _caption(title: str, chart: Layout, series: Sequence[Series]) -> str:
    keys = "".join(f'<span class="key"><i style="background:{s.color}"></i>{escape(s.label)}</span>' for s in series)
    note = ('<span class="note">full loads left out of the scale: their bars are clipped, value above</span>'
            if chart.clipped else "")
    return f"<figcaption><b>{escape(title)}</b>{keys}{note}</figcaption>"


def bar_chart(chart_id: str, title: str, runs: Sequence[RunMark], series: Sequence[Series], unit: str = "") -> str:
    """A figure: caption, then the grouped bars (one group per run) in a box that scrolls when wide.
    The SVG's `data-series` names the values each run's `data-v` lists."""
    chart = layout(runs, series)
    keys = " ".join(s.key for s in series)
    head = (f'<svg class="chart" id="{escape(chart_id)}" role="img" aria-label="{escape(title)}" data-series="{escape(keys)}" '
            f'viewBox="0 0 {chart.width:.0f} {HEIGHT}" width="{chart.width:.0f}" height="{HEIGHT}" '
            'xmlns="http://www.w3.org/2000/svg">')
    svg = "".join([head, *_clip_labels(chart, series, unit), *_axes(chart, unit), *_failures(chart, runs),
                   *_bars(chart, series), *_hits(chart, runs, series, unit), *_labels(chart, runs), "</svg>"])
    # the figure is as wide as its plot (at most its card): a long caption wraps instead of widening it
    return (f'<figure class="chart-box" style="width:{chart.width:.0f}px">{_caption(title, chart, series)}'
            f'<div class="plot">{svg}</div></figure>')
