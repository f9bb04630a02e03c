"""One lesson run: settings, the training loop with the Recorder attached, evaluations, the run record and
its folder on disk. Imports data, models and hooks; never story, board or bridge."""
