"""The bridge lesson: the same Recorder on a real data set (scikit-learn's 8x8 digits, shipped inside
scikit-learn, no download) and the training code people actually write: DataLoader, mini-batches,
an MLP, SGD / SGD with momentum / Adam, a held-out split, accuracy per epoch. `model="cnn"` trains a small
residual CNN with BatchNorm on the same digits as 1x8x8 images instead (the second bridge: a net deep enough
for the things that go wrong at depth), keeping statistics of every step and every number of every k-th."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from nn_lesson.hooks import CapturePolicy, Recorder, SnapshotLog
from nn_lesson.lesson.run.record import save_record
from nn_lesson.models import ResidualCNN, make_mlp

OPTIMIZERS = ("sgd", "momentum", "adam")
DEFAULT_LR = {"sgd": 0.3, "momentum": 0.05, "adam": 0.003}
MODELS = ("mlp", "cnn")
DIGITS = 1797                  # images in scikit-learn's load_digits
# The CNN's defaults: plain SGD, so the update is the lesson's weight_new = weight_old − lr × gradient.
CNN_DEFAULT_LR = {"sgd": 0.1, "momentum": 0.02, "adam": 0.003}
DEFAULT_OPTIMIZER = {"mlp": "adam", "cnn": "sgd"}
DEFAULT_POLICY = {"mlp": "every:10", "cnn": "stats+every:50"}


class MissingExtra(RuntimeError):
    """scikit-learn is not installed; str() says which extra to install."""


@dataclass(frozen=True)
class BridgeConfig:
    optimizer: str = ""            # "": adam for the MLP, sgd for the CNN (DEFAULT_OPTIMIZER)
    lr: float | None = None        # None: DEFAULT_LR (CNN_DEFAULT_LR) of the optimizer
    epochs: int = 20
    batch_size: int = 64
    hidden: int = 32               # the MLP's hidden units
    seed: int = 0
    heldout_fraction: float = 0.2
    policy: str = ""              # full | every:K | stats | stats:K | stats+every:K; "": DEFAULT_POLICY of the model
    device: str = "cpu"
    model: str = "mlp"             # mlp | cnn
    channels: int = 16             # the CNN's channels
    blocks: int = 2                # the CNN's residual blocks
    batchnorm: bool = True         # the CNN with or without its BatchNorm layers

    def __post_init__(self):
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {', '.join(MODELS)}, not {self.model!r}")
        if not self.optimizer:
            object.__setattr__(self, "optimizer", DEFAULT_OPTIMIZER[self.model])
        if not self.policy:
            object.__setattr__(self, "policy", DEFAULT_POLICY[self.model])

    @property
    def training_digits(self) -> int:
        return DIGITS - int(DIGITS * self.heldout_fraction)

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return (CNN_DEFAULT_LR if self.model == "cnn" else DEFAULT_LR)[self.optimizer]

    def capture_policy(self) -> CapturePolicy:
        kind, _, k = self.policy.partition(":")
        if not k.isdigit() and k:
            raise ValueError(f"policy {self.policy!r}: K must be a whole number, e.g. every:10")
        every = int(k) if k else 1
        if every < 1:
            raise ValueError(f"policy {self.policy!r}: K must be at least 1")
        if kind in ("full", "every"):
            return CapturePolicy.every_k(every)
        if kind == "stats":
            return CapturePolicy.stats(every=every)
        if kind == "stats+every":
            if self.model != "cnn":
                raise ValueError("stats+every:K is the CNN's policy (--model cnn); the MLP keeps full, every:K, "
                                 "stats or stats:K")
            return CapturePolicy.stats_and_every(every)
        raise ValueError(f"policy must be full, every:K, stats, stats:K or stats+every:K, not {self.policy!r}")

    def build_model(self) -> nn.Module:
        if self.model == "cnn":
            return ResidualCNN(self.channels, self.blocks, self.batchnorm)
        return make_mlp([64, self.hidden, 10])


@dataclass(frozen=True)
class BridgeRun:
    """The bridge's run record: built once after training, then only read by its writers."""

    config: BridgeConfig
    model: nn.Module               # trained
    log: SnapshotLog
    accuracy: list[float]          # held-out accuracy after each epoch
    train_accuracy: list[float]
    heldout: tuple[torch.Tensor, torch.Tensor]  # images (N, 64) scaled 0..1, labels
    seconds: float
    coverage: str = ""             # rec.report().line(): what the Recorder saw
    rank: int = 0                  # this process's rank under torchrun (0 alone)
    predictions: torch.Tensor | None = None       # (epochs, N) held-out guesses after each epoch
    probabilities: torch.Tensor | None = None     # (N, 10) held-out softmax after the last epoch
    hidden_start: torch.Tensor | None = None      # (N, hidden) the hidden layer on the held-out digits, untrained
    hidden_end: torch.Tensor | None = None        # the same after training
    epoch_end_steps: tuple[int, ...] = ()         # the optimizer step that ended each epoch
    stopped: str | None = None                    # why training ended early ("interrupted by SIGTERM"), else None
    stats: SnapshotLog | None = None              # statistics of every step (policy stats+every:K), else None

    def save(self, path: str | Path) -> Path:
        """The snapshot file, with the bridge's settings and accuracies as its record."""
        extra = {name: t for name, t in (("heldout_predictions", self.predictions),
                                         ("heldout_probabilities", self.probabilities),
                                         ("hidden_start", self.hidden_start), ("hidden_end", self.hidden_end))
                 if t is not None}
        return save_record(path, self.log, {"kind": "bridge", "config": asdict(self.config), "stopped": self.stopped},
                           {"heldout_accuracy_by_epoch": torch.tensor(self.accuracy),
                            "train_accuracy_by_epoch": torch.tensor(self.train_accuracy), **extra})


def load_digits_split(seed: int, heldout_fraction: float) -> tuple[torch.Tensor, ...]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise MissingExtra("the bridge lesson needs scikit-learn for its digits data set: "
                           "pip install 'nn-lesson[bridge]'") from None
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0   # pixel intensities 0..16 -> 0..1
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_held = int(len(x) * heldout_fraction)
    held, train = order[:n_held], order[n_held:]
    return x[train], y[train], x[held], y[held]


def build_optimizer(config: BridgeConfig, params) -> torch.optim.Optimizer:
    lr = config.learning_rate
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if config.optimizer == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {config.optimizer!r}")


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def train_bridge(config: BridgeConfig, on_epoch: Callable[[int, float, float], None] | None = None) -> BridgeRun:
    """Train and record. Under torchrun (WORLD_SIZE > 1) each process trains a DistributedDataParallel
    copy on its share of every batch (gloo on CPU); the recorded gradients are the all-reduced ones."""
    device = torch.device(config.device)
    x_train, y_train, x_held, y_held = load_digits_split(config.seed, config.heldout_fraction)
    x_train, y_train, x_held, y_held = (t.to(device) for t in (x_train, y_train, x_held, y_held))
    torch.manual_seed(config.seed)
    net = config.build_model().to(device)
    dataset = TensorDataset(x_train, y_train)
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    # The CNN drops each epoch's short last batch (1,438 digits: 22 batches of 64 and one of 30). BatchNorm's
    # running averages, which the held-out test uses, take a tenth of every batch's statistics; a batch of 29 just
    # before each test made held-out accuracy swing (99% → 53% → 98% around epoch 10 at lr 0.1, measured).
    drop_last = config.model == "cnn"
    own_group = False
    if distributed:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            own_group = True
        model: nn.Module = nn.parallel.DistributedDataParallel(net)
        sampler = DistributedSampler(dataset, shuffle=True, seed=config.seed)
        # each process takes batch_size / world of every batch, so a step sees batch_size digits in all
        loader = DataLoader(dataset, batch_size=max(1, config.batch_size // dist.get_world_size()), sampler=sampler,
                            drop_last=drop_last)
    else:
        model, sampler = net, None
        loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=drop_last,
                            generator=torch.Generator().manual_seed(config.seed))
    optimizer = build_optimizer(config, model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    held_acc, train_acc, predictions, ends = [], [], [], []
    hidden_start = hidden_layer(net, x_held)
    started = time.perf_counter()

    def evaluate(end_step: int) -> None:
        """The held-out guesses and both accuracies now, as the end of an epoch (or of a stopped one)."""
        model.eval()
        with torch.no_grad():                           # no_grad forwards: not steps, not recorded
            guesses = net(x_held).argmax(1)
        predictions.append(guesses.cpu())
        held_acc.append(float((guesses == y_held).float().mean()))
        train_acc.append(accuracy(net, x_train, y_train))
        ends.append(end_step)

    def result(rec: Recorder, stopped: str | None = None) -> BridgeRun:
        with torch.no_grad():
            probabilities = net(x_held).softmax(1).cpu()
        return BridgeRun(config, net, rec.log, held_acc, train_acc, (x_held.cpu(), y_held.cpu()),
                         time.perf_counter() - started, rec.report().line(), rec.rank, torch.stack(predictions),
                         probabilities, hidden_start, hidden_layer(net, x_held), tuple(ends), stopped, rec.stats_log)

    try:  # every rank leaves the process group it joined, whatever happens
        with Recorder(model, optimizer, loss_fn, steps_per_epoch=len(loader), policy=config.capture_policy()) as rec:
            try:
                for epoch in range(config.epochs):
                    if sampler is not None:
                        sampler.set_epoch(epoch)
                    model.train()
                    for xb, yb in loader:          # the loop people write; nothing in it knows about rec
                        optimizer.zero_grad()
                        loss = loss_fn(model(xb), yb)
                        loss.backward()
                        optimizer.step()
                    evaluate(epoch_end_step(len(loader), epoch))
                    if on_epoch is not None:
                        on_epoch(epoch, train_acc[-1], held_acc[-1])
            except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: keep what was recorded, as the lesson does
                steps = rec.report().steps
                if len(rec.log) == 0 or steps == 0:
                    raise
                if not ends or ends[-1] != steps - 1:
                    evaluate(steps - 1)   # the stopped epoch's guesses, after its last step
                err.run = result(rec, f"interrupted by {err}" if str(err) else "interrupted")
                raise
        return result(rec)
    finally:
        if own_group:
            leave_group(completed=sys.exc_info()[0] is None)


def leave_group(completed: bool) -> None:
    """Every rank leaves the process group it joined, together: a rank that exits with gloo's threads still
    running aborts ("terminate called without an active exception"), and torchrun then kills the others,
    rank 0 among them while it may be writing the run. After a completed run the ranks meet at a barrier
    first; after a signal or an error they leave at once (another rank may never reach the barrier)."""
    import torch.distributed as dist
    if completed:
        dist.barrier()
    dist.destroy_process_group()


def epoch_end_step(steps_per_epoch: int, epoch: int) -> int:
    return (epoch + 1) * steps_per_epoch - 1


def hidden_layer(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The first hidden layer's activations (after its ReLU): what the projector shows; for the CNN the pooled
    features its head reads."""
    with torch.no_grad():
        if isinstance(net, ResidualCNN):
            was = net.training
            net.eval()   # BatchNorm's running averages, as the held-out test uses them
            out = net.features(x).cpu()
            net.train(was)
            return out
        return net[:2](x).cpu()
