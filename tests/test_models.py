import pytest
import torch

from nn_lesson.models import LESSON_HIDDEN_WEIGHTS, LESSON_OUTPUT_WEIGHTS, StudentNet, make_mlp


def test_lesson_weights_are_the_lessons_twenty_values():
    net = StudentNet.from_lesson()
    # w[input][hidden]: input 0 (studied) -> hidden 1 is the second value listed, -0.60
    assert net.hidden.weight[1, 0].item() == pytest.approx(-0.60)
    assert net.hidden.weight.T.reshape(-1).tolist() == pytest.approx(LESSON_HIDDEN_WEIGHTS)
    assert net.output.weight.T.reshape(-1).tolist() == pytest.approx(LESSON_OUTPUT_WEIGHTS)
    assert not net.hidden.bias.any() and not net.output.bias.any()


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, b = StudentNet.from_seed(7), StudentNet.from_seed(7)
    assert torch.equal(a.hidden.weight, b.hidden.weight)
    assert not torch.equal(a.hidden.weight, StudentNet.from_seed(8).hidden.weight)
    assert torch.equal(torch.rand(1), expected_next)


@pytest.mark.parametrize("activation, expected", [("sigmoid", torch.sigmoid), ("tanh", torch.tanh),
                                                  ("relu", torch.relu)])
def test_activation_choice(activation, expected):
    net = StudentNet.from_lesson(activation)
    x = torch.tensor([[1.0, -2.0, 0.5]])
    h = expected(x @ net.hidden.weight.T + net.hidden.bias)
    assert torch.allclose(net(x), h @ net.output.weight.T + net.output.bias)


def test_unknown_activation_is_refused():
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        StudentNet("gelu")


def test_mlp_builder():
    mlp = make_mlp([64, 32, 10])
    assert [type(m).__name__ for m in mlp] == ["Linear", "ReLU", "Linear"]
    assert [name for name, _ in mlp.named_children()] == ["hidden", "relu", "output"]   # a log reads hidden.weight
    assert [n for n, _ in make_mlp([64, 128, 64, 10]).named_children()] == ["hidden1", "relu1", "hidden2", "relu2", "output"]
    assert mlp(torch.zeros(5, 64)).shape == (5, 10)
