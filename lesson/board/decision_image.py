"""The decision map as a picture for TensorBoard's Images dashboard: PASS confidence over hours studied ×
previous score (sleep held at the training mean), blue for PASS and red for FAIL, the 50% boundary where the
colours meet. The training students are dots in the colour of the network's own answer for them (at their own
sleep, which the map holds at the mean), crossed where that answer is wrong: a dot never contradicts the network,
as in the Lesson tab."""

from __future__ import annotations

import io

import torch
from PIL import Image, ImageDraw

from nn_lesson.lesson.board.diagram import _text
from nn_lesson.lesson.story.decision_map import DecisionGrid

SIZE, MARGIN = 480, 72
TAG = "0 the network/3 decision map (sleep held at the class mean)"


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
    answers = grid.answers.tolist()
    for (studied, _, score), label, answer in zip(grid.students.tolist(), grid.labels.tolist(), answers):
        x = MARGIN + (studied - x0) / (x1 - x0) * SIZE
        y = MARGIN + (1 - (score - y0) / (y1 - y0)) * SIZE
        fill = tuple(int(v) for v in (pass_rgb if answer == 0 else fail_rgb))
        draw.ellipse((x - 8, y - 8, x + 8, y + 8), fill=fill, outline="black", width=2)
        if answer != label:  # the network is wrong about this student
            draw.line((x - 11, y - 11, x + 11, y + 11), fill="black", width=3)
            draw.line((x - 11, y + 11, x + 11, y - 11), fill="black", width=3)
    _text(img, (MARGIN + SIZE // 2, MARGIN // 2 - 14), f"{title}, hours slept held at {grid.slept:.1f} h", 16, (0, 0, 0))
    _text(img, (MARGIN + SIZE // 2, MARGIN // 2 + 10),
          "blue: PASS, red: FAIL; dots: students in the network's answer for them (own sleep); ×: wrong", 12, (0, 0, 0))
    for v in range(int(x0), int(x1) + 1, 2):  # axis values: hours studied
        _text(img, (MARGIN + round((v - x0) / (x1 - x0) * SIZE), MARGIN + SIZE + 12), f"{v} h", 12, (0, 0, 0))
    _text(img, (MARGIN + SIZE // 2, SIZE + MARGIN + 36), "hours studied", 14, (0, 0, 0))
    for v in range(int(y0), int(y1) + 1, 10):  # axis values: previous score
        _text(img, (MARGIN - 22, MARGIN + round((1 - (v - y0) / (y1 - y0)) * SIZE)), f"{v} %", 12, (0, 0, 0))
    _text(img, (MARGIN // 2 - 12, MARGIN - 20), "previous score", 12, (0, 0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()
