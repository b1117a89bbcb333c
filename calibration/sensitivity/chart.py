"""The sensitivity ranking as a bar chart (PNG), drawn with Pillow (a dctq dependency already; matplotlib
is not needed for one horizontal bar chart).

One row per layer, most sensitive first: a blue bar for what leaving the layer in float gains over the
fully quantized model, an orange bar for what quantizing it alone costs against FP, both in the report's
metric (top-1 points or SQNR dB), on one shared scale with zero in the middle.
"""

from __future__ import annotations

import math
from pathlib import Path

from ...common.files import atomic_path
from .analysis import SensitivityReport

GAIN = (31, 119, 180)
LOSS = (255, 127, 14)
ROW = 16
LEFT = 190  # room for the layer names
CHAR = 6  # width of a character of Pillow's default bitmap font


def _short(name: str, room: int) -> str:
    chars = room // CHAR
    return name if len(name) <= chars else "..." + name[-(chars - 3) :]


def sensitivity_png(
    report: SensitivityReport, path: Path | str, *, width: int = 760, max_rows: int = 60
) -> Path:
    """Write the chart of `report` (its first `max_rows` layers) to `path` atomically; returns the path."""
    from PIL import Image, ImageDraw

    rows = list(report.layers[:max_rows])
    unit = "points" if report.metric == "accuracy" else "dB"
    gains = [report.gain(r) for r in rows]
    losses = [report.loss(r) for r in rows]
    finite = [abs(v) for v in gains + losses if math.isfinite(v)]
    top = max(finite, default=1.0) or 1.0
    height = 70 + ROW * len(rows) + 30
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    q = report.quantized.value(report.metric)
    f = report.fp.value(report.metric)
    title = (
        f"layer sensitivity ({report.metric}, {report.images} held-out images): FP {f:.2f}, quantized {q:.2f}"
    )
    draw.text((10, 6), title if math.isfinite(f) else title.replace(f"FP {f:.2f}, ", ""), fill="black")
    draw.rectangle((10, 24, 20, 34), fill=GAIN)
    draw.text((24, 24), f"gain with the layer in float ({unit})", fill="black")
    draw.rectangle((290, 24, 300, 34), fill=LOSS)
    draw.text((304, 24), f"loss with the layer alone quantized ({unit})", fill="black")
    x0, x1 = LEFT, width - 110
    mid = (x0 + x1) / 2
    scale = (x1 - mid) / top
    y = 50
    draw.line((mid, y - 4, mid, y + ROW * len(rows)), fill="gray")
    for row, gain, loss in zip(rows, gains, losses, strict=True):
        draw.text((10, y + 2), _short(row.layer, LEFT - 16), fill="black")
        for k, (value, colour) in enumerate(((gain, GAIN), (loss, LOSS))):
            v = value if math.isfinite(value) else math.copysign(top, value)
            top_y = y + 2 + k * (ROW // 2 - 1)
            draw.rectangle(
                (min(mid, mid + v * scale), top_y, max(mid, mid + v * scale), top_y + ROW // 2 - 3),
                fill=colour,
            )
        draw.text((x1 + 6, y + 2), f"{gain:+.2f}", fill=GAIN)
        draw.text((x1 + 56, y + 2), f"{loss:+.2f}" if math.isfinite(loss) else "inf", fill=LOSS)
        y += ROW
    draw.text((x0, y + 6), f"-{top:.3g}", fill="gray")
    draw.text((mid - 3, y + 6), "0", fill="gray")
    draw.text((x1 - 30, y + 6), f"+{top:.3g}", fill="gray")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)
