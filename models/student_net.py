"""StudentNet: 3 inputs (hours studied, hours slept, previous score) -> 4 hidden -> 2 outputs (PASS, FAIL)."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}

# The seed lesson's picture, read as w[input][hidden] (3 x 4) then w[hidden][output] (4 x 2).
LESSON_HIDDEN_WEIGHTS = (0.40, -0.60, 0.30, -0.50, 0.20, -0.70, 0.50, -0.30, 0.60, -0.40, 0.35, -0.45)
LESSON_OUTPUT_WEIGHTS = (0.40, -0.60, 0.30, -0.50, 0.20, -0.70, 0.50, -0.30)


class StudentNet(nn.Module):
    """hidden (Linear 3->4) -> hidden_act -> output (Linear 4->2) [-> output_act when sigmoid_outputs].

    Module names are the names the recorder and TensorBoard show: "hidden" is the layer's
    pre-activation, "hidden_act" its post-activation, "output" the two output scores.
    With sigmoid_outputs (the seed's setup, trained with MSE) "output_act" squashes each score to 0..1;
    without it the outputs are logits for cross-entropy, and softmax gives the confidences.
    """

    def __init__(self, activation: str = "sigmoid", sigmoid_outputs: bool = False):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}")
        self.activation = activation
        self.hidden = nn.Linear(3, 4)
        self.hidden_act = ACTIVATIONS[activation]()
        self.output = nn.Linear(4, 2)
        self.output_act = nn.Sigmoid() if sigmoid_outputs else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.output(self.hidden_act(self.hidden(x)))
        return self.output_act(out) if self.output_act is not None else out

    @classmethod
    def from_lesson(cls, activation: str = "sigmoid", sigmoid_outputs: bool = False) -> "StudentNet":
        """The lesson's exact starting weights; biases 0."""
        net = cls(activation, sigmoid_outputs)
        with torch.no_grad():
            # nn.Linear stores weight as (out, in); the lesson lists (in, out), hence the transpose.
            net.hidden.weight.copy_(torch.tensor(LESSON_HIDDEN_WEIGHTS).view(3, 4).T)
            net.output.weight.copy_(torch.tensor(LESSON_OUTPUT_WEIGHTS).view(4, 2).T)
            net.hidden.bias.zero_()
            net.output.bias.zero_()
        return net

    @classmethod
    def from_seed(cls, seed: int, activation: str = "sigmoid", sigmoid_outputs: bool = False) -> "StudentNet":
        """PyTorch's default initialisation (uniform in +-1/sqrt(fan_in)), drawn from a seeded generator."""
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            return cls(activation, sigmoid_outputs)
        finally:
            torch.random.set_rng_state(state)  # drawing the weights must not disturb the caller's RNG
