"""The decision map as a picture for TensorBoard's Images dashboard: PASS confidence over hours studied ×
previous score (sleep at the training mean), blue for PASS and red for FAIL, the training students as dots
(white PASS, black FAIL, as in the Lesson tab), the 50% boundary where the colours meet."""

from __future__ import annotations

import io

import torch
from PIL import Image, ImageDraw

from nn_lesson.lesson.board.diagram import _text
from nn_lesson.lesson.story.decision_map import DecisionGrid

SIZE, MARGIN = 480, 72
TAG = "decision map/PASS confidence (sleep at the class mean)"


def decision_png(grid: DecisionGrid, title: str) -> bytes:
    conf = grid.pass_confidence.nan_to_num(0.5).clamp(0, 1).flip(0)  # highest score at the top
    pass_rgb, fail_rgb = torch.tensor([37.0, 99, 235]), torch.tensor([220.0, 38, 38])
    white = torch.tensor([255.0, 255, 255])
    strength = (conf - 0.5).abs()[..., None] * 2
    colour = torch.where(conf[..., None] >= 0.5, pass_rgb, fail_rgb)
    pixels = (white + (colour - white) * strength * 0.85).round().to(torch.uint8).numpy()
    heat = Image.fromarray(pixels, "RGB").resize((SIZE, SIZE), Image.NEAREST)
    img = Image.new("RGB", (SIZE + 2 * MARGIN, SIZE + 2 * MARGIN), "white")
    img.paste(heat, (MARGIN, MARGIN))
    draw = ImageDraw.Draw(img)
    (x0, x1), (y0, y1) = (float(grid.studied[0]), float(grid.studied[-1])), (float(grid.score[0]), float(grid.score[-1]))
    for (studied, _, score), label in zip(grid.students.tolist(), grid.labels.tolist()):
        x = MARGIN + (studied - x0) / (x1 - x0) * SIZE
        y = MARGIN + (1 - (score - y0) / (y1 - y0)) * SIZE
        draw.ellipse((x - 7, y - 7, x + 7, y + 7), fill="white" if label == 0 else "black", outline="black", width=2)
    slept = float(grid.students[:, 1].mean())
    _text(img, (MARGIN + SIZE // 2, MARGIN // 2 - 10), title, 16, (0, 0, 0))
    _text(img, (MARGIN + SIZE // 2, MARGIN // 2 + 12),
          f"blue: PASS, red: FAIL; dots: students, white PASS, black FAIL; sleep held at {slept:.1f} h", 12, (0, 0, 0))
    _text(img, (MARGIN + SIZE // 2, SIZE + MARGIN + 24), f"hours studied, {x0:g} to {x1:g}", 14, (0, 0, 0))
    _text(img, (MARGIN // 2, MARGIN + SIZE // 2), "previous", 12, (0, 0, 0))
    _text(img, (MARGIN // 2, MARGIN + SIZE // 2 + 16), "score", 12, (0, 0, 0))
    _text(img, (MARGIN // 2, MARGIN + 6), f"{y1:g}", 12, (0, 0, 0))
    _text(img, (MARGIN // 2, MARGIN + SIZE - 6), f"{y0:g}", 12, (0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
