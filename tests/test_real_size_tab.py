"""A run of real size in the Lesson tab: a real tensorboard reads a step of a large run without loading the run, and
answers the model view at that size (the 1,500-step ResNet's 3.6 GB run took 37 s and 4 GB to load whole)."""

from __future__ import annotations

import json
import urllib.request

import pytest
import torch
from torch import nn

from nn_lesson.hooks import CapturePolicy, Recorder
from nn_lesson.lesson.board.your_model import write_tensorboard

pytestmark = pytest.mark.server


def resident_mib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmRSS")


def test_tensorboard_answers_a_step_of_a_large_run_without_loading_it(tmp_path):
    from nn_lesson.lesson.board.serve import start_tensorboard
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    with Recorder(model, opt, loss_fn, policy=CapturePolicy.stats_and_every(1)) as rec:
        for _ in range(8):  # each full step: four 8 MiB layer outputs and their gradients, ~64 MiB
            opt.zero_grad()
            loss_fn(model(torch.randn(8, 3, 64, 64)), torch.randint(0, 10, (8,))).backward()
            opt.step()
    run = write_tensorboard(rec.log, tmp_path / "runs" / "big", stats=rec.stats_log)
    size_mib = (run / "snapshots.npz").stat().st_size >> 20
    assert size_mib > 400
    del rec
    proc, url = start_tensorboard(tmp_path / "runs", announce=False)
    try:
        before = resident_mib(proc.pid)
        for step in (0, 7):
            with urllib.request.urlopen(f"{url}data/plugin/lesson/model_step?run=big&step={step}", timeout=120) as r:
                shown = json.load(r)
            assert shown["step"] == step and shown["full_row"] and len(shown["blocks"]) == 7
        grown = resident_mib(proc.pid) - before
        assert grown < size_mib / 4, f"TensorBoard grew {grown} MiB answering two steps of a {size_mib} MiB run"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
