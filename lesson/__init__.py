"""The lesson: the training loop with the Recorder attached, evaluations, the 11 steps, writers and the CLI."""
