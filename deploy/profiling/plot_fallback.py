"""The plot renderer used without matplotlib: the same panels drawn with Pillow (PNG, PDF) or written
as SVG text, through one small canvas interface (lines, bands, markers, text), so both formats get the
same layout: axes with round ticks and units, a log2 batch axis, the p90-p99 band, a legend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from .plot import COLORS, Panel, nice_ticks, tick_label

Point = tuple[float, float]
PANEL_W, HEIGHT = 520, 400
LEFT, RIGHT, TOP, BOTTOM = 70, 18, 58, 52


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


class _PillowCanvas:
    def __init__(self, width: int, height: int) -> None:
        from PIL import Image, ImageDraw, ImageFont

        self.Image, self.ImageDraw = Image, ImageDraw
        self.img = Image.new("RGBA", (width, height), "white")
        self.draw = ImageDraw.Draw(self.img)
        try:  # a scalable font (Pillow >= 10.1 with FreeType), else the bitmap default
            self.fonts = {s: ImageFont.load_default(size=s) for s in (11, 13, 15)}
            self.anchors = True
        except (TypeError, OSError, ImportError):
            default = ImageFont.load_default()
            self.fonts, self.anchors = dict.fromkeys((11, 13, 15), default), False

    def line(self, points: Sequence[Point], color: str, width: int = 2) -> None:
        self.draw.line([tuple(p) for p in points], fill=color, width=width)

    def band(self, points: Sequence[Point], color: str) -> None:
        overlay = self.Image.new("RGBA", self.img.size, (0, 0, 0, 0))
        self.ImageDraw.Draw(overlay).polygon([tuple(p) for p in points], fill=(*_rgb(color), 56))
        self.img = self.Image.alpha_composite(self.img, overlay)
        self.draw = self.ImageDraw.Draw(self.img)

    def marker(self, x: float, y: float, color: str) -> None:
        self.draw.ellipse((x - 3.5, y - 3.5, x + 3.5, y + 3.5), fill=color)

    def text(
        self, x: float, y: float, text: str, size: int = 11, anchor: str = "lt", rotate: bool = False
    ) -> None:
        font = self.fonts[size]
        if rotate:  # drawn on its own image, turned a quarter and pasted centred on (x, y)
            box = self.draw.textbbox((0, 0), text, font=font)
            tile = self.Image.new("RGBA", (box[2] + 4, box[3] + 4), (255, 255, 255, 0))
            self.ImageDraw.Draw(tile).text((2, 2), text, fill="black", font=font)
            tile = tile.rotate(90, expand=True)
            self.img.alpha_composite(tile, (int(x - tile.width / 2), int(y - tile.height / 2)))
            self.draw = self.ImageDraw.Draw(self.img)
            return
        if self.anchors:
            self.draw.text((x, y), text, fill="black", font=font, anchor=anchor)
            return
        w, h = self.draw.textbbox((0, 0), text, font=font)[2:]
        dx = {"l": 0, "m": -w / 2, "r": -w}[anchor[0]]
        dy = {"t": 0, "m": -h / 2, "b": -h}[anchor[1]]
        self.draw.text((x + dx, y + dy), text, fill="black", font=font)

    def save(self, path: Path, fmt: str) -> None:
        self.img.convert("RGB").save(
            path, format=fmt.upper(), **({"resolution": 110.0} if fmt == "pdf" else {})
        )


class _SvgCanvas:
    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self.items = [f'<rect width="{width}" height="{height}" fill="white"/>']

    @staticmethod
    def _points(points: Sequence[Point]) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in points)

    def line(self, points: Sequence[Point], color: str, width: int = 2) -> None:
        self.items.append(
            f'<polyline points="{self._points(points)}" fill="none" stroke="{color}" stroke-width="{width}"/>'
        )

    def band(self, points: Sequence[Point], color: str) -> None:
        self.items.append(f'<polygon points="{self._points(points)}" fill="{color}" fill-opacity="0.22"/>')

    def marker(self, x: float, y: float, color: str) -> None:
        self.items.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{color}"/>')

    def text(
        self, x: float, y: float, text: str, size: int = 11, anchor: str = "lt", rotate: bool = False
    ) -> None:
        h = {"l": "start", "m": "middle", "r": "end"}[anchor[0]]
        v = {"t": "hanging", "m": "central", "b": "auto"}[anchor[1]]
        turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        self.items.append(
            f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{h}" dominant-baseline="{v}"'
            f' font-family="DejaVu Sans, Arial, sans-serif"{turn}>{escape(text)}</text>'
        )

    def save(self, path: Path, fmt: str) -> None:
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}">'
        )
        path.write_text("\n".join([head, *self.items, "</svg>"]) + "\n", encoding="utf-8")


def _x_axis(panel: Panel) -> tuple[Any, list[float]]:
    """(value -> 0..1, tick values) of a panel's x axis."""
    xs = [x for s in panel.series for x in s.x]
    if panel.log2_x:
        lo, hi = math.log2(min(xs)), math.log2(max(xs))
        pad = max(0.3, 0.06 * (hi - lo))
        lo, hi = lo - pad, hi + pad
        ticks = list(panel.xticks or [2**k for k in range(math.ceil(lo), math.floor(hi) + 1)])
        return (lambda v: (math.log2(v) - lo) / (hi - lo)), ticks
    lo, hi = min(xs), max(xs)
    ticks = list(panel.xticks or nice_ticks(lo, hi))
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    return (lambda v: (v - lo) / (hi - lo)), ticks


def _panel(canvas: Any, panel: Panel, x0: float, width: float, height: float) -> None:
    left, right, top, bottom = x0 + LEFT, x0 + width - RIGHT, TOP, height - BOTTOM
    ys = [y for s in panel.series for y in (*s.y, *(s.low or ()), *(s.high or ()))]
    lo = 0.0 if panel.y_from_zero else min(ys, default=0.0)
    hi = max(ys, default=1.0)
    if hi - lo < 1e-12:  # a flat line: give it room (below only when it sits on y_max, e.g. 100 %)
        pad = max(abs(hi) * 0.05, 1.0)
        lo = lo if panel.y_from_zero and lo < hi else lo - pad
        hi = hi if panel.y_max is not None and hi >= panel.y_max else hi + pad
    yticks = nice_ticks(lo, hi)
    if panel.y_max is not None and yticks[-1] > panel.y_max >= yticks[1]:
        yticks = [t for t in yticks if t < panel.y_max] + [panel.y_max]
    ylo, yhi = yticks[0], yticks[-1]
    fx, xticks = _x_axis(panel)

    def at(x: float, y: float) -> Point:
        return left + (right - left) * fx(x), bottom - (bottom - top) * (y - ylo) / (yhi - ylo)

    for t in yticks:
        y = at(1, t)[1]
        canvas.line([(left, y), (right, y)], "#e6e6e6", 1)
        canvas.text(left - 6, y, tick_label(t), anchor="rm")
    for t in xticks:
        x = at(t, ylo)[0]
        if left - 0.5 <= x <= right + 0.5:
            canvas.line([(x, top), (x, bottom)], "#e6e6e6", 1)
            canvas.line([(x, bottom), (x, bottom + 4)], "#444444", 1)
            canvas.text(x, bottom + 7, tick_label(t), anchor="mt")
    canvas.line([(left, top), (right, top), (right, bottom), (left, bottom), (left, top)], "#444444", 1)
    for i, s in enumerate(panel.series):
        color = COLORS[i % len(COLORS)]
        if s.low is not None and s.high is not None:
            upper = [at(x, h) for x, h in zip(s.x, s.high, strict=True)]
            lower = [at(x, lo_) for x, lo_ in zip(s.x, s.low, strict=True)]
            canvas.band(upper + lower[::-1], color)
        points = [at(x, y) for x, y in zip(s.x, s.y, strict=True)]
        if len(points) > 1:
            canvas.line(points, color, 2)
        for x, y in points:
            canvas.marker(x, y, color)
    canvas.text((left + right) / 2, top - 8, panel.title, size=13, anchor="mb")
    canvas.text((left + right) / 2, height - 16, panel.xlabel, size=13, anchor="mb")
    canvas.text(x0 + 16, (top + bottom) / 2, panel.ylabel, size=13, anchor="mm", rotate=True)
    row = top + 8
    for i, s in enumerate(panel.series):  # legend, top left inside the axes
        color = COLORS[i % len(COLORS)]
        if s.low is not None and s.band_label:
            canvas.band(
                [(left + 8, row - 4), (left + 30, row - 4), (left + 30, row + 4), (left + 8, row + 4)], color
            )
            canvas.text(left + 36, row, s.band_label, anchor="lm")
            row += 15
        if s.label:
            canvas.line([(left + 8, row), (left + 30, row)], color, 2)
            canvas.marker(left + 19, row, color)
            canvas.text(left + 36, row, s.label, anchor="lm")
            row += 15


def draw_fallback(panels: Sequence[Panel], title: str, path: Path, fmt: str) -> None:
    """Draw `panels` side by side into `path` as `fmt` ("png", "pdf" through Pillow; "svg" as text)."""
    width = PANEL_W * len(panels)
    canvas: Any = _SvgCanvas(width, HEIGHT) if fmt == "svg" else _PillowCanvas(width, HEIGHT)
    if title:
        canvas.text(width / 2, 10, title, size=15, anchor="mt")
    for k, panel in enumerate(panels):
        _panel(canvas, panel, k * PANEL_W, PANEL_W, HEIGHT)
    canvas.save(path, fmt)
