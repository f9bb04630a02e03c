"""The lesson around the Recorder: run (train, evaluate, one run record), story (pages), board
(TensorBoard), bridge (a real data set), cli (arguments). Imports nn_lesson.data, .models and .hooks."""
