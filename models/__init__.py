"""The lesson's network and a small MLP builder for the bridge lessons. Imports torch only."""

from nn_lesson.models.student_net import ACTIVATIONS, LESSON_HIDDEN_WEIGHTS, LESSON_OUTPUT_WEIGHTS, StudentNet
from nn_lesson.models.mlp import make_mlp

__all__ = ["ACTIVATIONS", "LESSON_HIDDEN_WEIGHTS", "LESSON_OUTPUT_WEIGHTS", "StudentNet", "make_mlp"]
