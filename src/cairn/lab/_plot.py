"""The timeline plot, drawn once as shapes and rendered to SVG (by hand) and PNG (Pillow).

One lane per client; each operation a bar from its invoke to its completion,
coloured by outcome (a cas refused for a different value is an answer, not an
outage, so it gets its own pale colour); stale reads ringed; fault windows shaded and labelled.
The SVG needs nothing; the PNG needs Pillow (``pip install 'cairn[lab]'``),
which draws the same shapes, so both pictures agree.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

from cairn.lab._history import History, OpType
from cairn.lab._measures import MISMATCH, fault_windows, stale_reads

__all__ = ["COLOURS", "Scene", "png_available", "timeline", "to_png", "to_svg"]

COLOURS = {
    "ok": "#2e7d32",
    "fail": "#c62828",
    "mismatch": "#f4a6a6",
    "info": "#ef6c00",
    "stale": "#6a1b9a",
    "fault": "#90a4ae",
    "axis": "#37474f",
    "text": "#212121",
    "background": "#ffffff",
}


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    opacity: float = 1.0


@dataclass(frozen=True, slots=True)
class Ring:
    x: float
    y: float
    r: float
    stroke: str


@dataclass(frozen=True, slots=True)
class Text:
    x: float
    y: float
    text: str
    size: int = 12
    anchor: str = "start"  # start | middle | end
    fill: str = COLOURS["text"]


@dataclass(frozen=True, slots=True)
class Scene:
    """Shapes on a ``width`` x ``height`` canvas, in drawing order."""

    width: int
    height: int
    shapes: tuple[Rect | Ring | Text, ...]


_LEFT, _RIGHT, _TOP, _LANE, _BOTTOM = 110, 20, 40, 22, 70


def timeline(
    history: History, *, clients: int, title: str, nodes: dict[int, int] | None = None
) -> Scene:
    """The timeline of ``history``: lanes for ``clients`` clients (process % clients).

    ``nodes`` maps a client to the node it talks to, for the lane labels.
    """
    timed = [op for op in history if op.time is not None]
    t0 = min((op.time for op in timed if op.time is not None), default=0)
    t1 = max((op.time for op in timed if op.time is not None), default=t0 + 1)
    span = max(t1 - t0, 1)
    width = 1000
    height = _TOP + clients * _LANE + _BOTTOM
    plot_w = width - _LEFT - _RIGHT

    def x(t: float) -> float:
        return _LEFT + (t - t0) / span * plot_w

    shapes: list[Rect | Ring | Text] = [
        Rect(0, 0, width, height, COLOURS["background"]),
        Text(width / 2, 22, title, size=15, anchor="middle"),
    ]
    lanes_bottom = _TOP + clients * _LANE
    for w in fault_windows(history, end=t1):
        shapes.append(
            Rect(
                x(w.start), _TOP, x(w.end) - x(w.start), lanes_bottom - _TOP, COLOURS["fault"], 0.35
            )
        )
        shapes.append(Text(x(w.start) + 3, _TOP - 4, w.kind, size=10))
    for lane in range(clients):
        label = f"client {lane}" + (f" > n{nodes[lane]}" if nodes and lane in nodes else "")
        shapes.append(Text(_LEFT - 8, _TOP + lane * _LANE + 15, label, size=11, anchor="end"))

    stale = set(stale_reads(history))
    pending: dict[object, int] = {}
    for op in timed:
        if op.process == "nemesis" or op.time is None:
            continue
        if op.type is OpType.INVOKE:
            pending[op.process] = op.time
            continue
        start = pending.pop(op.process, None)
        if start is None or not isinstance(op.process, int):
            continue
        lane = op.process % clients
        y = _TOP + lane * _LANE + 4
        bar = max(x(op.time) - x(start), 1.5)
        colour = COLOURS[op.type.value]
        if op.type is OpType.FAIL and op.value == MISMATCH:
            colour = COLOURS["mismatch"]
        shapes.append(Rect(x(start), y, bar, _LANE - 8, colour))
        if (op.process, start) in stale:
            shapes.append(Ring(x(start) + bar / 2, y + (_LANE - 8) / 2, 6, COLOURS["stale"]))

    # Time axis: a tick a second (or fewer, for long runs).
    seconds = span / 1e9
    every = max(1, math.ceil(seconds / 10))
    shapes.append(Rect(_LEFT, lanes_bottom, plot_w, 1, COLOURS["axis"]))
    for s in range(0, int(seconds) + 1, every):
        tx = x(t0 + s * 1e9)
        shapes.append(Rect(tx, lanes_bottom, 1, 5, COLOURS["axis"]))
        shapes.append(Text(tx, lanes_bottom + 17, f"{s}s", size=10, anchor="middle"))

    legend_y = height - 18
    lx = _LEFT
    for name, colour, text in (
        ("ok", COLOURS["ok"], "ok"),
        ("fail", COLOURS["fail"], "fail (definite)"),
        ("mismatch", COLOURS["mismatch"], "cas mismatch"),
        ("info", COLOURS["info"], "info (indeterminate)"),
        ("fault", COLOURS["fault"], "fault window"),
    ):
        shapes.append(Rect(lx, legend_y - 9, 14, 10, colour, 0.35 if name == "fault" else 1.0))
        shapes.append(Text(lx + 18, legend_y, text, size=11))
        lx += 30 + 7 * len(text)
    shapes.append(Ring(lx + 7, legend_y - 4, 6, COLOURS["stale"]))
    shapes.append(Text(lx + 18, legend_y, "stale read", size=11))
    return Scene(width, height, tuple(shapes))


def to_svg(scene: Scene) -> str:
    """The scene as a standalone SVG document."""
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{scene.width}" height="{scene.height}" '
        f'viewBox="0 0 {scene.width} {scene.height}" font-family="sans-serif">'
    ]
    anchors = {"start": "start", "middle": "middle", "end": "end"}
    for s in scene.shapes:
        if isinstance(s, Rect):
            opacity = f' fill-opacity="{s.opacity}"' if s.opacity < 1 else ""
            out.append(
                f'<rect x="{s.x:.1f}" y="{s.y:.1f}" width="{s.w:.1f}" height="{s.h:.1f}" '
                f'fill="{s.fill}"{opacity}/>'
            )
        elif isinstance(s, Ring):
            out.append(
                f'<circle cx="{s.x:.1f}" cy="{s.y:.1f}" r="{s.r}" fill="none" '
                f'stroke="{s.stroke}" stroke-width="2"/>'
            )
        else:
            out.append(
                f'<text x="{s.x:.1f}" y="{s.y:.1f}" font-size="{s.size}" '
                f'text-anchor="{anchors[s.anchor]}" fill="{s.fill}">{html.escape(s.text)}</text>'
            )
    out.append("</svg>")
    return "\n".join(out)


def png_available() -> bool:
    """Whether Pillow is installed, so :func:`to_png` can work."""
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def to_png(scene: Scene, path: Path) -> None:
    """Render the scene to a PNG at ``path`` (needs Pillow: ``pip install 'cairn[lab]'``)."""
    try:
        from PIL import Image, ImageColor, ImageDraw, ImageFont
    except ImportError as e:
        raise RuntimeError("the PNG timeline needs Pillow: pip install 'cairn[lab]'") from e
    image = Image.new("RGB", (scene.width, scene.height), COLOURS["background"])
    draw = ImageDraw.Draw(image, "RGBA")
    fonts: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}
    for s in scene.shapes:
        if isinstance(s, Rect):
            r, g, b = ImageColor.getrgb(s.fill)[:3]
            box = (s.x, s.y, s.x + max(s.w, 1), s.y + max(s.h, 1))
            draw.rectangle(box, fill=(r, g, b, round(255 * s.opacity)))
        elif isinstance(s, Ring):
            draw.ellipse((s.x - s.r, s.y - s.r, s.x + s.r, s.y + s.r), outline=s.stroke, width=2)
        else:
            font = fonts.get(s.size)
            if font is None:
                font = fonts[s.size] = ImageFont.load_default(size=s.size)
            anchor = {"start": "ls", "middle": "ms", "end": "rs"}[s.anchor]
            draw.text((s.x, s.y), s.text, fill=s.fill, font=font, anchor=anchor)
    image.save(path, format="PNG")
