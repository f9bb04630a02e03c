"""One HParams experiment for every kind of run, so lesson and bridge runs in one logdir share one table.

TensorBoard's HParams plugin takes the experiment (its columns) from the first run it finds that holds one; when
lesson runs and bridge runs each wrote their own, the table showed one kind's columns and left the other kind's
cells blank. Both kinds write this same experiment, and every run fills every column with its true value (the
lesson's optimizer is SGD, its hidden layer 4 units; the bridge's loss is cross-entropy, its init PyTorch's own).

The dashboard ticks only 5 columns by default: it sorts "differs" first, then by name, and ticks the first 5.
The 5 shown are marked differs and named to sort in this order; the rest are one click away.
"""

from __future__ import annotations

from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2
from tensorboard.plugins.hparams import summary_v2 as hp

from nn_lesson.lesson.board.events import EventWriter

STRING, FLOAT = api_pb2.DATA_TYPE_STRING, api_pb2.DATA_TYPE_FLOAT64
# (name, display name, type, shown by default)
COLUMNS = [
    ("1 kind", "kind", STRING, True), ("2 lr", "lr", FLOAT, True), ("3 optimizer", "optimizer", STRING, True),
    ("4 activation", "activation", STRING, True), ("5 loss, batch size", "loss, batch size", STRING, True),
    ("loss", "loss", STRING, False), ("batch size", "batch size", FLOAT, False),
    ("hidden units", "hidden units", FLOAT, False), ("epochs", "epochs", FLOAT, False),
    ("init", "init", STRING, False), ("seed", "seed", FLOAT, False), ("capture", "capture", STRING, False),
]
SHOWN = [display for _, display, _, shown in COLUMNS if shown]
METRICS = ["hparams/final training loss", "hparams/final held-out loss", "hparams/final training accuracy",
           "hparams/final held-out accuracy"]


def column_values(kind: str, lr: float, optimizer: str, activation: str, loss: str, batch_size: int,
                  hidden: int, epochs: int, init: str, seed: int, capture: str) -> dict[str, object]:
    """Every column's value for one run, keyed by column name."""
    values = {"kind": kind, "lr": lr, "optimizer": optimizer, "activation": activation,
              "loss, batch size": f"{loss}, batch {batch_size}", "loss": loss, "batch size": batch_size,
              "hidden units": hidden, "epochs": epochs, "init": init, "seed": seed, "capture": capture}
    return {name: values[display] for name, display, _, _ in COLUMNS}


def write_hparams(events: EventWriter, values: dict[str, object], metrics: dict[str, float], step: int) -> None:
    """The shared experiment, this run's row (trial id: the run folder's name) and its final metrics at `step`."""
    config = hp.hparams_config_pb([hp.HParam(name, display_name=display) for name, display, _, _ in COLUMNS],
                                  [hp.Metric(tag, display_name=tag.split("/", 1)[1]) for tag in METRICS])
    content = config.value[0].metadata.plugin_data
    data = plugin_data_pb2.HParamsPluginData.FromString(content.content)
    for info, (_, _, kind, shown) in zip(data.experiment.hparam_infos, COLUMNS):
        info.type, info.differs = kind, shown
    content.content = data.SerializeToString()
    events.add(config)
    events.add(hp.hparams_pb(values, trial_id=events.run_dir.name))
    events.step(step, scalars=metrics)
