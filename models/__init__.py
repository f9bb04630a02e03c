"""The lesson's network, a small MLP builder and a small residual CNN for the bridge lessons. Imports torch only."""

from nn_lesson.models.student_net import ACTIVATIONS, LESSON_HIDDEN_WEIGHTS, LESSON_OUTPUT_WEIGHTS, StudentNet
from nn_lesson.models.mlp import make_mlp
from nn_lesson.models.residual_cnn import ResidualBlock, ResidualCNN

__all__ = ["ACTIVATIONS", "LESSON_HIDDEN_WEIGHTS", "LESSON_OUTPUT_WEIGHTS", "ResidualBlock", "ResidualCNN",
           "StudentNet", "make_mlp"]
