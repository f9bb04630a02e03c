"""Everything TensorBoard: event files, scalars and histograms, images, hparams, and serving. Reads the
run record (lesson.run) and the pages (lesson.story); never writes into them."""
