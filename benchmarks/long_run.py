"""A new user's first real model under the Recorder: a small ResNet, 1,500 steps (a CIFAR-sized epoch) under a
plain `with Recorder(model, opt)` (no policy: the default keeps within its memory budget), RSS printed every 100
steps, then write_tensorboard with the statistics of every step. Usage: python benchmarks/long_run.py [STEPS] [DIR] [--stream]
(--stream: the same with stream_to=DIR-stream, the log written to disk as it flushes)"""

import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from nn_lesson import Recorder, write_tensorboard

torch.set_num_threads(1)

class Block(nn.Module):
    """A residual block as people write it: the shortcut added in place after the second BatchNorm."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.short = nn.Sequential() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.short(x)
        return self.relu(out)


class ResNet(nn.Module):
    """Stem + 4 residual blocks, 32 -> 128 channels, for 32x32 inputs and 10 classes."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.layers = nn.Sequential(Block(32, 32, 1), Block(32, 64, 2), Block(64, 128, 2), Block(128, 128, 1))
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1).flatten(1))


def rss() -> int:
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--stream"]
    steps = int(args[0]) if args else 1500
    out = args[1] if len(args) > 1 else "runs/long-resnet"
    stream = f"{out}-stream" if "--stream" in sys.argv else None
    torch.manual_seed(0)
    model = ResNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(50)]
    start, started = rss(), time.perf_counter()
    with Recorder(model, opt, stream_to=stream) as rec:
        for step in range(steps):
            x, y = data[step % len(data)]
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            if step % 100 == 0:
                print(f"step {step}: rss {rss()} MiB (+{rss() - start}), log holds {rec.log.held_bytes >> 20} MiB, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
    print(rec.report().line())
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10} MiB, budget {rec.memory_budget >> 20} MiB")
    run = write_tensorboard(rec.log, out, stats=rec.stats_log)
    print(f"written {run}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10} MiB")


if __name__ == "__main__":
    main()
