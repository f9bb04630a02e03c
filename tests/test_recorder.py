import contextlib
import pytest
import torch
from torch import nn

from conftest import no_hooks_left
from nn_lesson.hooks import CapturePolicy, Recorder
from nn_lesson.lesson.run.settings import LessonConfig
from nn_lesson.lesson.run.train import train
from nn_lesson.models import StudentNet


def lesson_loop(model, opt, loss_fn, x, y, epochs=3):
    for _ in range(epochs):
        for i in range(len(x)):
            opt.zero_grad()
            loss_fn(model(x[i:i + 1]), y[i:i + 1]).backward()
            opt.step()


def test_recording_changes_nothing(scaled):
    x, y = scaled
    results = []
    for record in (False, True):
        model = StudentNet.from_lesson()
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        loss_fn = nn.CrossEntropyLoss()
        if record:
            with Recorder(model, opt, loss_fn) as rec:
                lesson_loop(model, opt, loss_fn, x, y)
            assert len(rec.log) == 3 * len(x)
            assert no_hooks_left(model, opt) and no_hooks_left(loss_fn)
        else:
            lesson_loop(model, opt, loss_fn, x, y)
        results.append({n: p.detach().clone() for n, p in model.named_parameters()})
    assert all(torch.equal(results[0][n], results[1][n]) for n in results[0])  # bit-identical


def test_hooks_are_removed_when_the_loop_raises(scaled):
    x, y = scaled
    model = StudentNet.from_lesson()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = nn.CrossEntropyLoss()
    with pytest.raises(ZeroDivisionError):
        with Recorder(model, opt, loss_fn) as rec:
            lesson_loop(model, opt, loss_fn, x, y, epochs=1)
            1 / 0
    assert no_hooks_left(model, opt) and no_hooks_left(loss_fn)
    assert len(rec.log) == len(x)  # what was captured before the error is kept


def test_an_unseen_model_with_minibatches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)  # 8, 8, 4
    with Recorder(model, opt, loss_fn, steps_per_epoch=len(loader)) as rec:
        for _ in range(2):
            for xb, yb in loader:
                opt.zero_grad()
                loss_fn(model(xb), yb).backward()
                opt.step()
    log = rec.log
    assert len(log) == 6 and log.epoch.tolist() == [0, 0, 0, 1, 1, 1]
    assert log.layers == ["0", "1", "2", "3", "4"]
    assert log.param_names == [n for n, _ in model.named_parameters()]
    assert log.batch_size.tolist() == [8, 8, 4] * 2
    last = log[2]
    assert last.inputs.shape == (4, 5) and torch.equal(last.inputs, x[16:])
    assert last.activations["1"].shape == (4, 8) and bool((last.activations["1"] >= 0).all())
    assert last.grads["4.weight"].shape == (3, 6)
    for snap in log:
        for name in snap.grads:
            assert torch.allclose(snap.update[name], -0.1 * snap.grads[name], atol=1e-7)
    assert torch.isnan(log.activation("0")[2, 4:]).all()  # padding of the short batch is NaN, not zeros
    assert no_hooks_left(model, opt)


def test_snapshot_names_the_student(lesson_run):
    log = lesson_run.log
    names = lesson_run.names
    assert [names[int(log[i].samples[0])] for i in range(3)] == ["Sarah", "Mike", "Emma"]
    assert torch.equal(log[0].inputs, lesson_run.scaler(lesson_run.students.features[:1]))


def test_epochs_and_steps_are_counted_apart():
    run = train(LessonConfig(epochs=3, batch_size=4))  # 6 students: steps of 4 and 2
    assert len(run.log) == 6
    assert run.log.epoch.tolist() == [0, 0, 1, 1, 2, 2]
    assert run.log.batch_size.tolist() == [4, 2] * 3


def test_evaluation_forwards_are_not_steps(scaled):
    x, y = scaled
    model = StudentNet.from_lesson()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = nn.CrossEntropyLoss()
    with Recorder(model, opt, loss_fn) as rec:
        for i in range(3):
            opt.zero_grad()
            loss_fn(model(x[i:i + 1]), y[i:i + 1]).backward()
            opt.step()
            with torch.no_grad():
                model(x)  # checking progress on everyone between steps
    assert len(rec.log) == 3 and rec.log.batch_size.tolist() == [1, 1, 1]


def test_every_kth_step_policy(scaled):
    x, y = scaled
    model = StudentNet.from_lesson()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = nn.CrossEntropyLoss()
    with Recorder(model, opt, loss_fn, policy=CapturePolicy.every_k(4)) as rec:
        lesson_loop(model, opt, loss_fn, x, y, epochs=3)  # 18 steps
    assert rec.log.step.tolist() == [0, 4, 8, 12, 16]
    snap = rec.log[1]
    assert snap.step == 4 and torch.equal(snap.inputs, x[4:5])


def test_in_place_modules_are_copied_when_seen():
    """ReLU(inplace=True) overwrites the Linear's output after its hook: the log keeps the value the
    Linear produced, and statistics work on the same path."""
    torch.manual_seed(0)
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    for policy in (CapturePolicy.full(), CapturePolicy.stats(bins=4)):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(inplace=True), nn.Linear(5, 2))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = nn.CrossEntropyLoss()
        w, b = model[0].weight.detach().clone(), model[0].bias.detach().clone()
        with Recorder(model, opt, loss_fn, policy=policy) as rec:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
        pre = x @ w.T + b
        if policy.stats_only:
            assert torch.allclose(rec.log.stat("act:0", "min"), pre.min().reshape(1))
        else:
            assert torch.allclose(rec.log[0].activations["0"], pre) and (pre < 0).any()
            assert torch.equal(rec.log[0].activations["1"], pre.clamp_min(0))
            g = rec.log[0].act_grads
            assert torch.allclose(g["1"], g["2"] @ rec.log[0].before["2.weight"])
            assert torch.allclose(g["0"], g["1"] * (pre > 0))  # the chain rule through the ReLU


@pytest.mark.parametrize("policy", [CapturePolicy.full(), CapturePolicy.stats()])
def test_how_many_steps_are_staged_changes_when_rows_are_written_not_what_they_hold(monkeypatch, policy):
    """Flushes of 3 steps straddle the columns' chunk boundaries (rows 32, 64); a byte bound below one
    step flushes every step. Either way the log must hold what the default staging holds, with batches
    of 8, 8 and 4 (rows of different shapes) among them."""
    from nn_lesson.hooks import snapshot_log
    from nn_lesson.models import make_mlp
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(20, 6, generator=g), torch.randint(0, 3, (20,), generator=g)

    def record(staged_steps, staged_bytes):
        monkeypatch.setattr(snapshot_log, "STAGED_STEPS", staged_steps)
        monkeypatch.setattr(snapshot_log, "STAGED_BYTES", staged_bytes)
        torch.manual_seed(0)
        model = make_mlp([6, 16, 3])
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        loss_fn = nn.CrossEntropyLoss()
        with Recorder(model, opt, loss_fn, policy=policy) as rec:
            for _ in range(25):
                for start in (0, 8, 16):
                    opt.zero_grad()
                    loss_fn(model(x[start:start + 8]), y[start:start + 8]).backward()
                    opt.step()
        return rec.log

    default = record(snapshot_log.STAGED_STEPS, snapshot_log.STAGED_BYTES)
    for log in (record(3, 1 << 40), record(32, 1)):
        assert len(log) == len(default) == 75
        assert log.columns.keys() == default.columns.keys()
        for name in default.columns:  # exact, padding (NaN) included
            torch.testing.assert_close(log.values(name), default.values(name), rtol=0, atol=0, equal_nan=True)
        if not policy.stats_only:
            assert torch.equal(log[71].inputs, x[16:20])  # a batch of 4, cut to its own shape
            for layer in default.layers:
                assert torch.equal(log[70].activations[layer], default[70].activations[layer])


def test_marked_samples_are_kept_as_they_were_when_the_loop_refills_its_index_tensor(scaled):
    """A loop that reuses one index tensor (idx.copy_(...) each step) must log each step's own samples."""
    x, y = scaled
    model = StudentNet.from_lesson()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn = nn.CrossEntropyLoss()
    idx = torch.zeros(1, dtype=torch.int64)
    ids2d = torch.zeros(1, 1, dtype=torch.int64)
    with Recorder(model, opt, loss_fn) as rec:
        for i in range(5):
            idx.fill_(i)
            ids2d.fill_(i)
            rec.mark_samples(idx if i % 2 == 0 else ids2d)  # 1-D as a DataLoader gives it, and 2-D
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
    assert rec.log.samples.reshape(-1).tolist() == [0, 1, 2, 3, 4]


def test_a_loop_that_refills_one_input_buffer_is_recorded_step_by_step():
    """A static input buffer (xb.copy_(batch) every step, as with a prefetcher or CUDA graphs) must give
    each row its own inputs and targets, not a refusal at the flush nor the last batch everywhere."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = nn.CrossEntropyLoss()
    xb, yb = torch.zeros(8, 3), torch.zeros(8, dtype=torch.long)
    data, labels = torch.randn(80, 3), torch.randint(0, 2, (80,))
    with Recorder(model, opt, loss_fn) as rec:
        for i in range(10):
            xb.copy_(data[8 * i: 8 * i + 8])
            yb.copy_(labels[8 * i: 8 * i + 8])
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
    assert torch.equal(rec.log.inputs, data.view(10, 8, 3))
    assert torch.equal(rec.log.targets, labels.view(10, 8))


def test_a_flush_with_gaps_holds_only_absent_values_where_no_step_wrote(tmp_path):
    """Steps that lack a field (every second one has no loss, one no inputs, one no samples), staged in one
    flush and across flushes: each cell no step wrote is NaN / -1, reads as absent, and survives the file."""
    from nn_lesson.hooks import SnapshotLog
    from nn_lesson.hooks.columns import Column
    log = SnapshotLog()
    for row in range(70):   # 70 rows: straddles the chunks of 32 and 64 rows, written in three flushes
        items = [("step", row, None), ("batch_size", 2, None)]
        if row % 2 == 0:
            items.append(("loss", torch.tensor(float(row)), None))
        if row % 7:
            items.append(("inputs", torch.full((2, 3), float(row)), None))
        if row in (5, 40):
            items.append(("samples", torch.tensor([row, row + 1]), None))
        log.stage_step(row, items)
    for read in (log, SnapshotLog.load(log.save(tmp_path / "gaps.npz"))):
        loss, inputs, samples = read.loss, read.inputs, read.samples
        assert torch.equal(loss[0::2], torch.arange(0, 70, 2, dtype=loss.dtype)) and torch.isnan(loss[1::2]).all()
        assert all(torch.isnan(inputs[r]).all() == (r % 7 == 0) for r in range(70))
        assert samples[5].tolist() == [5, 6] and samples[40].tolist() == [40, 41]
        assert (samples[[r for r in range(70) if r not in (5, 40)]] == -1).all()
        for r in (1, 7, 21, 63):
            snap = read[r]
            assert snap.loss is None and (snap.inputs is None) == (r % 7 == 0) and snap.samples is None
        assert read[0].loss == 0.0 and read[40].samples.tolist() == [40, 41]
    column = Column((), torch.float32)
    column.put_rows([3, 5], [1.0, 2.0])       # rows written out of a flush's order, then a gap filled later
    column.row(4).fill_(9.0)
    assert column.absent_ranges(7) == [(0, 3), (6, 7)] and not column.present(6) and column.present(4)
    assert torch.equal(column.values(7)[3:6], torch.tensor([1.0, 9.0, 2.0]))


def test_a_model_with_in_place_layers_keeps_no_forward_alive_after_its_step():
    """In-place layers send activation gradients through Python tensor hooks, which live on the autograd graph
    that the forward's outputs keep alive: a hook holding its forward strongly made a cycle through C++ that
    Python's collector never frees, and every step's activations stayed in memory (+140 MiB a step on a small
    ResNet under the statistics policy)."""
    import gc
    from nn_lesson.hooks import CapturePolicy
    from nn_lesson.hooks.recorder import _Forward
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(inplace=True), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    for policy in (CapturePolicy.full(), CapturePolicy.stats()):
        with Recorder(model, opt, policy=policy):
            for _ in range(20):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            gc.collect()
            alive = sum(isinstance(o, _Forward) for o in gc.get_objects())
        assert alive <= 1, f"{alive} forwards kept alive after 20 steps under {policy}"


def _steps(rec_args, steps=40, seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(32, 20), torch.randint(0, 5, (32,))
    grads = []
    with Recorder(model, opt, **rec_args) if rec_args is not None else contextlib.nullcontext() as rec:
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
            opt.step()
    return rec, grads, model


def test_the_default_policy_switches_to_fit_its_memory_budget_and_says_so(monkeypatch, caplog):
    """A step that outgrows the budget (chunks of one row, as a ResNet layer's output gets): statistics of every
    step from step 0, every number of every k-th step, the log within the budget, one line at the switch."""
    from nn_lesson.hooks import columns
    from nn_lesson.hooks.statistics import row_stats
    monkeypatch.setattr(columns, "CHUNK_BYTES", 1)       # every chunk one row: held bytes follow the rows kept
    budget = 600_000                                     # about 10 steps of this model
    with caplog.at_level("WARNING", logger="nn_lesson"):
        rec, grads, model = _steps({"memory_budget": budget}, steps=200)
    _, _, bare = _steps(None, steps=200)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), bare.state_dict().values()))
    switch = [r.getMessage() for r in caplog.records if "does not fit the memory budget" in r.getMessage()]
    assert len(switch) == 1 and "\n" not in switch[0] and switch[0] in rec.report().notes
    log, stats = rec.log, rec.stats_log
    every = rec.report().every
    assert every > 1 and log.step.tolist() == list(range(0, 200, every)) and log.nbytes <= budget
    assert stats.step.tolist() == list(range(200)) and rec.report().complete
    for row, step in enumerate(log.step.tolist()):                # full rows: exactly what the optimizer used
        assert torch.equal(log[row].grads["0.weight"], grads[step]["0.weight"])
    for step in (0, 5, 199):                                      # statistics of every step, the early ones too
        expected = row_stats(grads[step]["0.weight"][None], stats.stat_bins)[0]
        assert torch.allclose(stats.values("stats:0.weight:grad")[step], expected, rtol=1e-5)


def test_an_explicit_policy_that_cannot_fit_is_told_at_its_first_step(caplog):
    from nn_lesson.hooks import CapturePolicy
    with caplog.at_level("WARNING", logger="nn_lesson"):
        rec, _, _ = _steps({"policy": CapturePolicy.every_k(2), "memory_budget": 500_000}, steps=6)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "is full at step" in line and "CapturePolicy.stats_and_every(" in line and len(rec.log) == 3
    caplog.clear()
    with caplog.at_level("WARNING", logger="nn_lesson"):
        _steps({"policy": CapturePolicy.every_k(2)}, steps=6)   # the default budget holds it: nothing said
    assert not caplog.records


def test_an_explicit_policy_that_fills_late_is_told_when_a_quarter_is_held_not_at_its_first_step(monkeypatch, caplog):
    """A run that will not reach the step where the budget fills is not warned at its first step; one that goes on
    is told while three quarters are still free."""
    from nn_lesson.hooks import CapturePolicy, columns, recorder
    monkeypatch.setattr(columns, "CHUNK_BYTES", 1)        # every chunk one row: held bytes follow the rows kept
    monkeypatch.setattr(recorder, "STEPS_WORTH_WARNING", 100)
    row = 60_000                                          # about one step of this model
    with caplog.at_level("WARNING", logger="nn_lesson"):
        _steps({"policy": CapturePolicy.full(), "memory_budget": 160 * row}, steps=20)
    assert not caplog.records                             # full near step 160: not said at step 0 of 20
    with caplog.at_level("WARNING", logger="nn_lesson"):
        rec, _, _ = _steps({"policy": CapturePolicy.full(), "memory_budget": 160 * row}, steps=100)
    (line,) = [r.getMessage() for r in caplog.records]
    held = int(line.split("by step ")[1].split()[0])
    assert 40 <= held <= 80 and "is full at step" in line, line   # told between a quarter and half of the budget
    assert rec.log.nbytes <= 160 * row and len(rec.log) == 100    # the policy honoured as asked


def test_statistics_every_step_and_every_number_every_kth():
    from nn_lesson.hooks import CapturePolicy
    from nn_lesson.hooks.statistics import row_stats
    rec, grads, _ = _steps({"policy": CapturePolicy.stats_and_every(4)}, steps=10)
    assert rec.log.step.tolist() == [0, 4, 8] and rec.stats_log.step.tolist() == list(range(10))
    assert rec.log.has("inputs") and not rec.stats_log.has("inputs") and rec.report().complete
    for row, step in enumerate((0, 4, 8)):
        assert torch.equal(rec.log[row].grads["2.weight"], grads[step]["2.weight"])
    for step in range(10):
        expected = row_stats(grads[step]["2.weight"][None], rec.stats_log.stat_bins)[0]
        assert torch.allclose(rec.stats_log.values("stats:2.weight:grad")[step], expected, rtol=1e-5)


def test_a_flush_cut_short_by_ctrl_c_leaves_every_committed_row_whole(monkeypatch):
    """Ctrl-C can arrive between two columns of a flush (found by the stress run: a stopped lesson wrote a run
    whose last rows had weights absent, and drawing them failed). The next flush writes the rows again whole."""
    from nn_lesson.hooks.columns import Column
    put_rows, calls = Column.put_rows, [0]

    def interrupted(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt
        return put_rows(self, *args, **kwargs)
    monkeypatch.setattr(Column, "put_rows", interrupted)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(5, 3), torch.randint(0, 2, (5,))
    with pytest.raises(KeyboardInterrupt):
        with Recorder(model, opt) as rec:
            for _ in range(40):           # the first flush, at 32 steps, is cut short inside optimizer.step()
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
    log = rec.log
    assert len(log) == 32
    for name, column in log.columns.items():
        assert column.absent_ranges(len(log)) == [], name


def test_the_diagram_draws_a_non_finite_weight_as_the_thinnest_line():
    from nn_lesson.lesson.board.diagram import draw_network
    weights = {"hidden.weight": torch.full((4, 3), float("nan")), "output.weight": torch.full((2, 4), float("inf"))}
    image = draw_network(weights, torch.zeros(3), torch.zeros(4), torch.tensor([0.5, 0.5]), "a diverged step")
    assert image.size[0] >= 800


def test_statistics_of_a_long_row_exact_moments_and_an_even_sample_for_its_shape():
    """Mean, std and norm of every number (checked in float64); min, max and the histogram from an even sample
    that does not fall on one column of a power-of-two layout; counts scaled to the row's length."""
    from nn_lesson.hooks.statistics import SAMPLE, row_stats, sample_stride
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 64, 32, 8, 8, generator=g)   # 131,072 numbers a row: sampled
    x[1, ..., 0] = 100.0                    # one column of every 8x8 map: a stride of 16 would see none or all
    stats = row_stats(x, 16)
    flat = x.reshape(2, -1).double()
    assert torch.allclose(stats[:, 0].double(), flat.mean(1), rtol=1e-5, atol=1e-7)
    assert torch.allclose(stats[:, 1].double(), flat.std(1, correction=0), rtol=1e-5)
    assert torch.allclose(stats[:, 2].double(), flat.norm(dim=1), rtol=1e-5)
    stride = sample_stride(flat.shape[1])
    assert stride > 1 and flat.shape[1] / stride <= SAMPLE
    sample = x.reshape(2, -1)[:, ::stride]
    for r in range(2):
        assert float(stats[r, 3]) == float(sample[r].min()) and float(stats[r, 4]) == float(sample[r].max())
        counts = torch.histc(sample[r], 16, float(sample[r].min()), float(sample[r].max()))
        assert torch.allclose(stats[r, 5:], counts * flat.shape[1] / sample.shape[1], rtol=1e-5)
    share_of_100 = float(stats[1, -1]) / flat.shape[1]
    assert abs(share_of_100 - 1 / 8) < 0.02           # the column of 100s is 1/8 of the numbers, and so of the sample
    small = torch.randn(3, 50_000, generator=g)        # rows of at most SAMPLED_ABOVE numbers: every statistic exact
    exact = row_stats(small, 8)
    assert torch.equal(exact[:, 3], small.amin(1)) and torch.equal(exact[:, 4], small.amax(1))
    assert torch.equal(exact[0, 5:], torch.histc(small[0], 8, float(small[0].min()), float(small[0].max())))


@pytest.mark.parametrize("policy", ["stats", "stats_and_every"])
def test_large_tensors_reduced_when_seen_equal_the_statistics_of_the_full_values(policy):
    """Outputs of 131,072 numbers get their statistics row when the layer produces them (no copy staged), the
    small ones at the flush; both equal row_stats of what a full capture of the same run kept, also where the
    output is edited in place after the layer."""
    from nn_lesson.hooks import CapturePolicy
    from nn_lesson.hooks.statistics import row_stats

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(3, 16, 3, padding=1), nn.Linear(16, 4)

        def forward(self, x):
            h = self.conv(x)
            h.mul_(0.5)                      # after the layer: statistics are of the output as produced
            return self.head(h.mean((2, 3)))

    def run(p):
        torch.manual_seed(0)
        model = Net()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 4, (8,))
        with Recorder(model, opt, policy=p) as rec:
            for _ in range(5):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        return rec
    full = run(CapturePolicy.full())
    rec = run(CapturePolicy.stats() if policy == "stats" else CapturePolicy.stats_and_every(4))
    stats = rec.log if policy == "stats" else rec.stats_log
    for name in ("act:conv", "act_grad:conv", "act:head"):
        for step in range(1, 5):   # step 0: the in-place edit is found there and its full row left absent
            expected = row_stats(full.log.values(name)[step][None], stats.stat_bins)[0]
            assert torch.allclose(stats.values(f"stats:{name}")[step], expected, rtol=1e-5, atol=1e-6), (name, step)
    assert full.log.values("act:conv")[1].numel() >= 1 << 16


def test_the_python_apis_bad_arguments_are_one_line_before_any_work(tmp_path):
    from nn_lesson import write_tensorboard
    from nn_lesson.hooks import SnapshotLog
    model, other = nn.Linear(3, 2), nn.Linear(3, 2)
    with pytest.raises(TypeError, match="Recorder: optimizer must be a torch.optim.Optimizer"):
        Recorder(model, "not an optimizer")
    with pytest.raises(ValueError, match="holds none of the model's parameters"):
        Recorder(model, torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="the log holds no steps"):
        write_tensorboard(SnapshotLog(), tmp_path / "runs" / "empty")
    assert not (tmp_path / "runs").exists() and no_hooks_left(model)


@pytest.mark.parametrize("policy", [None, CapturePolicy.stats(), CapturePolicy.stats_and_every(3)],
                         ids=["full", "statistics", "statistics and every 3rd"])
def test_the_report_says_why_multihead_attentions_out_proj_never_ran(policy):
    """nn.MultiheadAttention uses out_proj's weights without calling it: the report says so in words, and tells
    it apart from a module that really is unused."""
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, batch_first=True), 2,
                                             enable_nested_tensor=False)
            self.spare = nn.Linear(3, 3)  # never called, and nothing uses its weights
            self.head = nn.Linear(16, 2)

        def forward(self, x):
            return self.head(self.enc(x).mean(1))

    model, loss_fn = Net(), nn.CrossEntropyLoss()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with Recorder(model, opt, loss_fn, policy=policy) as rec:
        for _ in range(4):
            opt.zero_grad()
            loss_fn(model(torch.randn(4, 6, 16)), torch.randint(0, 2, (4,))).backward()
            opt.step()
    report = rec.report()
    attention = ("enc.layers.0.self_attn.out_proj", "enc.layers.1.self_attn.out_proj")
    assert set(report.never_ran) == {*attention, "spare"}
    assert report.used_by_parent == attention
    assert "their parent's forward uses the weights directly" in report.line()
    assert "nn.MultiheadAttention does this with out_proj" in str(report)


def test_a_closure_optimizer_reports_no_skipped_forwards():
    """LBFGS (and Lightning's automatic optimization) run forward and backward inside the step's closure: nothing is
    skipped, and the report does not say '0 forwards skipped'."""
    torch.manual_seed(0)
    model, loss_fn = nn.Linear(3, 2), nn.MSELoss()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=1)   # one evaluation a step
    x, y = torch.randn(8, 3), torch.randn(8, 2)

    def closure():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    with Recorder(model, opt, loss_fn) as rec:
        for _ in range(3):
            opt.step(closure)
    report = rec.report()
    assert report.skipped == {} and "skipped" not in report.line() and len(rec.log) == 3
