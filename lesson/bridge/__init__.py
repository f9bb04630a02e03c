"""The bridge lesson: the same Recorder on scikit-learn's digits with a DataLoader and a real optimizer,
its pages and its TensorBoard run. Imports hooks, models, lesson.run (the run folder) and lesson.board."""
