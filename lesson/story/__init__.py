"""The lesson's pages from a run record: numbers → claims → text, the chain rule by hand, terminal output.
Reads the run record only (imports lesson.run); writes nothing."""
