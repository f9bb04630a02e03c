"""The bridge's digits MLP trained by a PyTorch Lightning Trainer, recorded by RecorderCallback, and the page
that maps what Lightning does for you to the lines of the plain loop and to the lesson's steps.

Same seed, same initial weights, same data order (the DataLoader and its generator are the plain loop's) and the
same optimizer: the recorded rows equal the plain loop's, which `lightning_page` measures rather than asserts.
Imported only by `nn-lesson bridge --lightning` and the tests: Lightning is an optional extra.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from nn_lesson.hooks import SnapshotLog
from nn_lesson.lesson.bridge.train import BridgeConfig, build_optimizer, load_digits_split
from nn_lesson.lesson.story.markdown import table
from nn_lesson.lesson.story.numbers import num
from nn_lesson.models import make_mlp

# (the plain loop's line, what Lightning does in its place, the lesson step it is)
LIGHTNING_MAP = [
    ("for xb, yb in loader:", "the fit loop walks the DataLoader you pass to `trainer.fit`", "4/6/8 the network meets …"),
    ("optimizer.zero_grad()", "done for you before each step", "(between 5 and 6)"),
    ("out = model(xb); loss = loss_fn(out, yb)", "your `training_step` returns the loss", "4/6/8 meets; 5/7/9 how wrong"),
    ("loss.backward()", "inside the closure Lightning passes to `optimizer.step`, after `training_step`",
     "5/7/9 the gradient"),
    ("clip_grad_norm_(...)", "`Trainer(gradient_clip_val=...)`, in the same closure after backward", "—"),
    ("optimizer.step()", "`optimizer.step(closure)`: the optimizer runs the closure, then updates",
     "5/7/9 the worked update"),
    ("for epoch in range(n):", "`Trainer(max_epochs=n)`", "an epoch: every training example once"),
]


def lightning_module(config: BridgeConfig):
    """The bridge's MLP as a LightningModule: the same layers, loss and optimizer as the plain loop."""
    import lightning

    class DigitsMLP(lightning.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(config.seed)             # as train_bridge does, just before building the net
            self.net = make_mlp([64, config.hidden, 10])
            self.loss_fn = nn.CrossEntropyLoss()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            xb, yb = batch
            return self.loss_fn(self(xb), yb)

        def configure_optimizers(self):
            return build_optimizer(config, self.parameters())
    return DigitsMLP()


def train_bridge_lightning(config: BridgeConfig) -> SnapshotLog:
    """The plain loop's run, by a Lightning Trainer on the CPU; returns what the RecorderCallback recorded."""
    import lightning
    from nn_lesson.hooks.lightning import RecorderCallback
    x_train, y_train, _, _ = load_digits_split(config.seed, config.heldout_fraction)
    module = lightning_module(config)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(config.seed))
    callback = RecorderCallback(policy=config.capture_policy(), loss_fn=module.loss_fn)
    trainer = lightning.Trainer(max_epochs=config.epochs, accelerator="cpu", devices=1, callbacks=[callback],
                                logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, use_distributed_sampler=False)
    trainer.fit(module, loader)
    return callback.log


def largest_difference(plain: SnapshotLog, lit: SnapshotLog) -> dict[str, float]:
    """Row by row, the largest absolute difference of the weights before, the gradients and the losses (the
    Lightning run's parameters carry the module's `net.` prefix)."""
    rows = min(len(plain), len(lit))
    out = {"weights": 0.0, "gradients": 0.0, "loss": 0.0}
    for i in range(rows):
        a, b = plain[i], lit[i]
        for name in plain.param_names:
            out["weights"] = max(out["weights"], float((a.before[name] - b.before["net." + name]).abs().max()))
            out["gradients"] = max(out["gradients"], float((a.grads[name] - b.grads["net." + name]).abs().max()))
        out["loss"] = max(out["loss"], abs(float(plain.loss[i]) - float(lit.loss[i])))
    return out


def lightning_page(plain: SnapshotLog, lit: SnapshotLog) -> tuple[str, str]:
    diff = largest_difference(plain, lit)
    same = len(plain) == len(lit) and not any(diff.values())
    verdict = (f"The Trainer recorded **{len(lit)}** steps, the plain loop **{len(plain)}**, and every recorded row "
               "is the same: the same weights before each step, the same gradients, the same losses, to the last bit."
               if same else
               f"The Trainer recorded **{len(lit)}** steps, the plain loop **{len(plain)}**; the largest differences "
               f"over the rows both have: weights {num(diff['weights'], 8)}, gradients {num(diff['gradients'], 8)}, "
               f"loss {num(diff['loss'], 8)}.")
    return "bridge/04 the same loop in PyTorch Lightning", (
        "PyTorch Lightning writes the training loop for you. Each line of the plain loop, what Lightning does in its "
        "place, and the lesson step it is:\n\n"
        + table(["the plain loop", "in Lightning", "lesson step"], [[f"`{a}`", b, c] for a, b, c in LIGHTNING_MAP])
        + "\n\nThe same digits MLP, seed, data order and optimizer, trained once by the plain loop and once by a "
        "Lightning `Trainer` with `nn_lesson.hooks.lightning.RecorderCallback`. " + verdict)
