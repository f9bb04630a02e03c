"""The network picture of the web lesson, drawn from one recorded step: 3 inputs -> 4 hidden -> 2 outputs.

Line colour is the weight's sign (blue +, red -), thickness its size on one fixed scale (FIXED_SCALE, the
same for every step and every run, so two runs' pictures compare); nodes show the step's values for its
first student (the standardised input, the hidden activation, the PASS/FAIL confidence). 960 px wide:
TensorBoard shows images at their own size, and the 640 px picture was unreadable in its cards.
"""

from __future__ import annotations

import functools
import io
import math
import threading

import torch
from PIL import Image, ImageDraw, ImageFont

from nn_lesson.lesson.story.names import HIDDEN_LABELS, INPUT_LABELS, OUTPUT_LABELS
from nn_lesson.lesson.story.numbers import num, pct, signed

WIDTH, HEIGHT = 960, 560
# |weight| drawn at full thickness in every diagram of every run (the default lesson's weights stay below 2.5).
FIXED_SCALE = 3.0
# Drawn straight into a 6-colour palette image: encoding it as PNG costs a fraction of an RGB frame,
# which matters at one frame per step.
PALETTE = [(255, 255, 255), (37, 99, 235), (220, 38, 38), (248, 250, 252), (30, 41, 59), (100, 116, 139)]
WHITE, POSITIVE, NEGATIVE, NODE, INK, GREY = range(len(PALETTE))
COLUMNS = (150, 480, 810)
MAX_LINE = 16
RADIUS = 42
_FONT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size)


@functools.lru_cache(maxsize=4096)
def _text_mask(text: str, size: int) -> tuple[Image.Image, int, int]:
    """A string rendered once as a 1-bit mask with its offset from the anchor point; numbers repeat from
    frame to frame, so caching saves most of the drawing time."""
    with _FONT_LOCK:  # frames are drawn on two threads; one FreeType face must not render on both at once
        font = _font(size)
        left, top, right, bottom = font.getbbox(text, anchor="mm")
        mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
        ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255, anchor="mm")
    return mask.point(lambda v: 255 if v >= 128 else 0, "1"), left, top


def _text(img: Image.Image, xy: tuple[int, int], text: str, size: int, colour: int) -> None:
    """Paste `text` centred on xy, as ImageDraw.text(anchor="mm") would draw it."""
    mask, left, top = _text_mask(text, size)
    img.paste(colour, (xy[0] + left, xy[1] + top), mask)


def _column(n: int) -> list[int]:
    top, bottom = 110, HEIGHT - 70
    gap = (bottom - top) / max(n - 1, 1)
    return [int(top + i * gap) if n > 1 else (top + bottom) // 2 for i in range(n)]


def draw_network(weights: dict[str, torch.Tensor], inputs: torch.Tensor, hidden: torch.Tensor,
                 confidence: torch.Tensor, title: str, scale: float = FIXED_SCALE) -> Image.Image:
    """scale: the |weight| drawn at full thickness (keep it fixed so thickness is comparable)."""
    img = Image.new("P", (WIDTH, HEIGHT), WHITE)
    img.putpalette([c for rgb in PALETTE for c in rgb])
    d = ImageDraw.Draw(img)
    ys = [_column(3), _column(4), _column(2)]
    layers = (("hidden.weight", 0), ("output.weight", 1))
    for name, col in layers:
        w = weights[name].tolist()  # plain floats: indexing a tensor per line costs more than drawing it
        for target in range(len(w)):
            for source in range(len(w[0])):
                value = w[target][source]
                if not math.isfinite(value):  # a diverged (or cut-short) step: the thinnest line, never a crash
                    value = 0.0
                width = max(1, round(MAX_LINE * min(abs(value) / scale, 1.0)))
                d.line([(COLUMNS[col] + RADIUS, ys[col][source]), (COLUMNS[col + 1] - RADIUS, ys[col + 1][target])],
                       fill=POSITIVE if value >= 0 else NEGATIVE, width=width)
    labels = (INPUT_LABELS, HIDDEN_LABELS, OUTPUT_LABELS)
    values = ([signed(v, 2) for v in inputs.tolist()], [num(v, 2) for v in hidden.tolist()],
              [pct(v) for v in confidence.tolist()])
    for col in range(3):
        for i, y in enumerate(ys[col]):
            x = COLUMNS[col]
            d.ellipse([x - RADIUS, y - RADIUS, x + RADIUS, y + RADIUS], fill=NODE, outline=INK, width=2)
            _text(img, (x, y - 10), labels[col][i], 17, INK)
            _text(img, (x, y + 12), values[col][i], 17, INK)
    _text(img, (WIDTH // 2, 34), title, 21, INK)
    _text(img, (WIDTH // 2, HEIGHT - 22), f"blue: positive weight, red: negative; thickest: |weight| of "
          f"{num(scale, 2)} or more (the same scale for every step and run)", 16, GREY)
    return img


def png_bytes(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=1)  # speed over size: hundreds of frames per run
    return out.getvalue()
