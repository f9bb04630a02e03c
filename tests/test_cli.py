from conftest import run_cli


def test_default_run_writes_a_run_folder_and_says_where(tmp_path):
    result = run_cli("--epochs", "3", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "snapshots.npz").is_file()
    assert list(runs[0].glob("events.out.tfevents.*"))
    assert str(runs[0].relative_to(tmp_path)) in result.stdout
    assert "tensorboard --logdir runs" in result.stdout


def test_help_reads_like_documentation(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--lr", "--epochs", "--batch-size", "--seed", "--init", "--activation", "--loss"):
        assert flag in result.stdout
    assert not (tmp_path / "runs").exists()


def test_bad_csv_is_one_line_exit_2_and_nothing_written(tmp_path):
    bad = tmp_path / "class.csv"
    bad.write_text("name,hours_studied,hours_slept,previous_score,label\nAna,5,seven,70,PASS\n")
    result = run_cli("--data", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert "row 2" in lines[-1] and "'hours_slept'" in lines[-1] and str(bad) in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
