import pytest
import torch

from nn_lesson.data import CLASSES, DataError, Standardizer, load_students, synthetic_students


def test_lesson_students_are_the_seeds_and_more(students):
    training = students.training()
    assert training.names[:4] == ("Sarah", "Mike", "Emma", "Jake")
    assert len(training) == 6
    assert len(students.held_out()) >= 3
    sarah = training.features[0].tolist()
    assert sarah == [8.0, 8.0, 85.0] and CLASSES[int(training.labels[0])] == "PASS"
    assert training.features[1].tolist() == [2.0, 5.0, 60.0] and CLASSES[int(training.labels[1])] == "FAIL"
    extra = training.labels[4:].tolist()
    assert sorted(extra) == [0, 1]  # the two more: one PASS, one FAIL


def test_standardisation_uses_training_rows_only(students):
    training = students.training()
    scaler = Standardizer.fit(training.features)
    z = scaler(training.features)
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-6)
    assert torch.allclose(z.std(0, correction=0), torch.ones(3), atol=1e-5)
    everyone = Standardizer.fit(students.features)
    assert not torch.allclose(everyone.mean, scaler.mean)  # held-out rows would have moved the statistics
    new = torch.tensor([[5.0, 6.5, 70.0]])
    assert torch.allclose(scaler.inverse(scaler(new)), new)


@pytest.mark.parametrize("text, row, column", [
    ("name,hours_studied,hours_slept,label\nA,1,2,PASS\n", 1, "previous_score"),
    ("name,hours_studied,hours_slept,previous_score,label\nA,1,2,50,PASS\nB,x,2,50,FAIL\n", 3, "hours_studied"),
    ("name,hours_studied,hours_slept,previous_score,label\nA,1,2,50,MAYBE\n", 2, "label"),
])
def test_bad_csv_names_file_row_and_column(tmp_path, text, row, column):
    path = tmp_path / "class.csv"
    path.write_text(text)
    with pytest.raises(DataError) as err:
        load_students(path)
    assert (err.value.row, err.value.column) == (row, column)
    message = str(err.value)
    assert str(path) in message and f"row {row}" in message and f"'{column}'" in message and "\n" not in message


def test_synthetic_students_are_seeded():
    a, b = synthetic_students(50, seed=3), synthetic_students(50, seed=3)
    assert torch.equal(a.features, b.features) and torch.equal(a.labels, b.labels)
    assert 0 < int(a.labels.sum()) < 50
