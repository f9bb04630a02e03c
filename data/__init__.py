"""The lesson's students: the shipped CSV, loading with validation, standardisation."""

from nn_lesson.data.students import CLASSES, FEATURES, DataError, StudentTable, load_students, lesson_csv_path
from nn_lesson.data.scaling import Standardizer
from nn_lesson.data.synthetic import synthetic_students

__all__ = [
    "CLASSES", "FEATURES", "DataError", "StudentTable", "load_students", "lesson_csv_path",
    "Standardizer", "synthetic_students",
]
