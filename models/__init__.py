"""The lesson's network and a small MLP builder for the bridge lessons. Imports torch only."""

from models.student_net import ACTIVATIONS, LESSON_HIDDEN_WEIGHTS, LESSON_OUTPUT_WEIGHTS, StudentNet
from models.mlp import make_mlp

__all__ = ["ACTIVATIONS", "LESSON_HIDDEN_WEIGHTS", "LESSON_OUTPUT_WEIGHTS", "StudentNet", "make_mlp"]
