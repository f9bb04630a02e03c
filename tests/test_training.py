import torch

from nn_lesson.lesson.run.evaluate import epoch_summary


def test_default_lesson_learns_and_generalises(lesson_run):
    epochs = epoch_summary(lesson_run.log)
    first, last = float(epochs["train_loss"][0]), float(epochs["train_loss"][-1])
    assert last < 0.1 * first, (first, last)
    assert float(epochs["step_loss_mean"][-1]) < 0.1 * float(epochs["step_loss_mean"][0])
    ex = lesson_run.log.extras
    assert torch.equal(ex["train_confidence_final"].argmax(1), ex["train_labels"])      # all six right
    assert torch.equal(ex["heldout_confidence_final"].argmax(1), ex["heldout_labels"])  # and the held-out
    assert len(ex["heldout_labels"]) >= 3


def test_evaluations_use_the_recorded_weights(lesson_run):
    """The stored loss on all students after the last step equals a forward pass of the trained model."""
    run = lesson_run
    x, y = run.log.extras["train_inputs"], run.log.extras["train_labels"]
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(run.model(x), y)
    assert torch.allclose(run.log.extras["train_loss_by_step"][-1], loss)
