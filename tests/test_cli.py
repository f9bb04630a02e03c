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


def test_two_runs_compare_side_by_side(tmp_path):
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    for args in (("--loss", "mse", "--name", "mse"), ("--loss", "ce", "--name", "ce")):
        assert run_cli("--epochs", "20", "--quiet", *args, cwd=tmp_path).returncode == 0
    mux = EventMultiplexer().AddRunsFromDirectory(str(tmp_path / "runs"))
    mux.Reload()
    assert set(mux.Runs()) == {"mse", "ce"}
    final = {run: mux.Scalars(run, "hparams/final training loss")[-1].value for run in ("mse", "ce")}
    assert final["mse"] != final["ce"]


def test_step_prints_one_step_from_a_saved_file(written_run, tmp_path):
    run_dir, _ = written_run
    result = run_cli("--step", "7", "--snapshot", str(run_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "step 7:" in result.stdout and "weight_new = weight_old − lr × gradient" in result.stdout
    bad = run_cli("--step", "100000", "--snapshot", str(run_dir), cwd=tmp_path)
    assert bad.returncode == 2 and "steps 0..359" in bad.stderr


def test_serve_prints_a_local_url(tmp_path):
    import selectors
    import subprocess
    import sys
    import time
    import urllib.request
    proc = subprocess.Popen([sys.executable, "-m", "nn_lesson", "--epochs", "2", "--quiet", "--serve"], cwd=tmp_path,
                            stdout=subprocess.PIPE, text=True)
    url, seen = None, []
    try:
        with selectors.DefaultSelector() as sel:  # every read waits at most until the deadline
            sel.register(proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 120
            while url is None and time.monotonic() < deadline and sel.select(deadline - time.monotonic()):
                line = proc.stdout.readline()
                if not line:
                    break
                seen.append(line)
                if line.startswith("TensorBoard: "):
                    url = line.split()[1]
        assert url is not None and url.startswith("http://127.0.0.1:") and "/#lesson&token=" in url, seen
        url = url.split("#")[0]
        with urllib.request.urlopen(url + "data/runs", timeout=30) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_own_students_without_held_out_rows(tmp_path):
    csv = tmp_path / "class.csv"
    csv.write_text("name,hours_studied,hours_slept,previous_score,label\nAna,8,8,85,pass\nBo,2,5,60,fail\n")
    result = run_cli("--data", str(csv), "--epochs", "5", "--name", "own", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no held-out students" in result.stdout and "Ana" in result.stdout
