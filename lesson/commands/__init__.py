"""The commands' bodies (lesson, lab, bridge): each takes arguments parsed by lesson.cli, trains, writes the
run through lesson.run.folder and lesson.board, and prints. Imports every other part of nn_lesson.lesson."""
