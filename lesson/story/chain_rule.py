"""The chain rule by hand for one recorded step of StudentNet, beside what loss.backward() gave.

Plain tensor arithmetic, no autograd: the same sums a learner would write on paper, layer by layer,
from the step's recorded inputs and weights. compare() prints the nn-zero-to-hero style table.
"""

from __future__ import annotations

import torch

from nn_lesson.hooks import Snapshot


def activation_derivative(activation: str, pre: torch.Tensor, post: torch.Tensor) -> torch.Tensor:
    if activation == "sigmoid":
        return post * (1 - post)
    if activation == "tanh":
        return 1 - post ** 2
    return (pre > 0).to(pre.dtype)  # relu


def hand_gradients(snap: Snapshot, activation: str, loss: str) -> dict[str, torch.Tensor]:
    """dL/d(everything) for one step, in float64, from the snapshot's inputs, targets and weights-before."""
    w = {k: v.double() for k, v in snap.before.items()}
    x = snap.inputs.double()
    batch = x.shape[0]
    z1 = x @ w["hidden.weight"].T + w["hidden.bias"]
    h = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu}[activation](z1)
    z2 = h @ w["output.weight"].T + w["output.bias"]
    if loss == "ce":
        p = z2.softmax(1)
        onehot = torch.nn.functional.one_hot(snap.targets, 2).double()
        dz2 = (p - onehot) / batch                         # softmax + cross-entropy, averaged over the batch
        grads = {"output": dz2}
    else:
        o = torch.sigmoid(z2)
        do = 2 * (o - snap.targets.double()) / o.numel()   # mean squared error over every output
        dz2 = do * o * (1 - o)                             # through the output sigmoid
        grads = {"output_act": do, "output": dz2}
    dh = dz2 @ w["output.weight"]                          # each hidden unit's share of the blame
    dz1 = dh * activation_derivative(activation, z1, h)
    grads.update({
        "hidden_act": dh, "hidden": dz1,
        "output.weight": dz2.T @ h, "output.bias": dz2.sum(0),
        "hidden.weight": dz1.T @ x, "hidden.bias": dz1.sum(0),
    })
    return grads


def compare(snap: Snapshot, activation: str, loss: str) -> list[tuple[str, bool, bool, float]]:
    """Per tensor: (name, exact, approximate, largest |difference|) of hand vs autograd (as recorded)."""
    hand = hand_gradients(snap, activation, loss)
    autograd = {**snap.grads, **snap.act_grads}
    rows = []
    for name, mine in hand.items():
        if name not in autograd:
            continue
        theirs = autograd[name].double()
        diff = float((mine - theirs).abs().max())
        rows.append((name, bool(torch.equal(mine.to(autograd[name].dtype), autograd[name])),
                     bool(torch.allclose(mine, theirs, rtol=1e-4, atol=1e-6)), diff))
    return rows
