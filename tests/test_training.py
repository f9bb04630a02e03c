import torch


def test_default_lesson_learns_and_generalises(lesson_run):
    epochs = lesson_run.epochs
    first, last = float(epochs.train_loss[0]), float(epochs.train_loss[-1])
    assert last < 0.1 * first, (first, last)
    assert float(epochs.step_loss_mean[-1]) < 0.1 * float(epochs.step_loss_mean[0])
    assert torch.equal(lesson_run.train.confidence_final.argmax(1), lesson_run.training.labels)      # all six right
    assert torch.equal(lesson_run.heldout.confidence_final.argmax(1), lesson_run.held_out.labels)    # and the held-out
    assert len(lesson_run.held_out) >= 3


def test_evaluations_use_the_recorded_weights(lesson_run):
    """The stored loss on all students after the last step equals a forward pass of the trained model."""
    record = lesson_run
    x, y = record.scaler(record.training.features), record.training.labels
    with torch.no_grad():
        loss = torch.nn.functional.cross_entropy(record.trained_model()(x), y)
    assert torch.allclose(record.train.loss_by_step[-1], loss)


def test_epoch_summary_by_hand(lesson_run):
    """Epoch e's mean step loss is the mean of its six per-student losses; its end-of-epoch evaluation is the
    evaluation row after its last step."""
    epochs, log = lesson_run.epochs, lesson_run.log
    assert len(epochs.epoch) == 60
    by_hand = log.loss.view(60, 6).double().mean(1)
    assert torch.allclose(epochs.step_loss_mean.double(), by_hand, rtol=1e-6)
    assert torch.equal(epochs.train_loss, lesson_run.train.loss_by_step[6::6])
    assert torch.equal(epochs.end_step, torch.arange(5, 360, 6))
