"""gradschool.training: the loop records a consistent History, fast and reproducibly."""

import math
import time

import pytest
import torch
from torch import nn

from gradschool.data import load_digits
from gradschool.models import mlp
from gradschool.training import History, accuracy, train


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def fresh_model(seed=0):
    torch.manual_seed(seed)
    return mlp([64, 64, 10])


def test_history_is_consistent(digits):
    model = fresh_model()
    h = train(
        model,
        digits.X_train,
        digits.y_train,
        epochs=3,
        batch_size=100,
        X_test=digits.X_test,
        y_test=digits.y_test,
        progress=False,
    )
    steps_per_epoch = math.ceil(1347 / 100)
    assert isinstance(h, History)
    assert len(h.loss) == len(h.grad_norm) == 3 * steps_per_epoch
    assert h.epoch_steps == [steps_per_epoch, 2 * steps_per_epoch, 3 * steps_per_epoch]
    assert len(h.train_accuracy) == len(h.test_accuracy) == len(h.test_loss) == 3
    assert set(h.grad_norm[0]) == {"0", "2"}
    values = h.loss + h.train_accuracy + h.test_accuracy + h.test_loss
    assert all(type(v) is float for v in values + list(h.grad_norm[-1].values()))
    assert all(v > 0 for v in h.grad_norm[0].values())


def test_train_learns_digits_fast(digits):
    torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)  # pay torch.optim's import first
    model = fresh_model()
    start = time.process_time()  # CPU time: robust to other processes competing for the cores
    h = train(
        model,
        digits.X_train,
        digits.y_train,
        epochs=10,
        X_test=digits.X_test,
        y_test=digits.y_test,
        progress=False,
    )
    elapsed = time.process_time() - start
    assert elapsed < 2.0, f"10 epochs of a 64-64-10 MLP took {elapsed:.2f} s of CPU time"
    assert h.test_accuracy[-1] > 0.9 and h.loss[-1] < h.loss[0]
    assert model.training  # left in the mode it had


def test_small_cpu_models_train_single_threaded(digits, monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)  # pretend 2 threads are set
    seen, set_to = [], []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)

    def loss_fn(out, target):
        seen.append(list(set_to))
        return nn.functional.cross_entropy(out, target)

    X, y = digits.X_train[:128], digits.y_train[:128]
    train(fresh_model(), X, y, epochs=1, loss_fn=loss_fn, progress=False)
    assert seen[0] == [1] and set_to == [1, 2]  # one thread while training, then restored
    set_to.clear()
    train(mlp([64, 4096, 4096, 10]), X, y, epochs=1, batch_size=128, progress=False)
    assert set_to == []  # large enough to be worth several threads


def test_train_is_reproducible_with_a_generator(digits):
    def run(seed):
        return train(
            fresh_model(),
            digits.X_train,
            digits.y_train,
            epochs=2,
            generator=torch.Generator().manual_seed(seed),
            progress=False,
        ).loss

    assert run(0) == run(0)
    assert run(0) != run(1)


def test_train_optimizer_instance_and_factory(digits):
    model = fresh_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    before = model[0].weight.detach().clone()
    train(model, digits.X_train, digits.y_train, epochs=1, optimizer=opt, lr=10.0, progress=False)
    assert torch.equal(model[0].weight, before)  # lr ignored: the given optimizer has lr 0
    made = []

    def factory(params):
        made.append(torch.optim.SGD(params, lr=0.05))
        return made[-1]

    train(model, digits.X_train, digits.y_train, epochs=1, optimizer=factory, progress=False)
    assert len(made) == 1 and not torch.equal(model[0].weight, before)


def test_progress_bar_can_be_disabled(digits, capsys):
    train(fresh_model(), digits.X_train[:64], digits.y_train[:64], epochs=1, progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    train(fresh_model(), digits.X_train[:64], digits.y_train[:64], epochs=1, progress=True)
    assert "train" in capsys.readouterr().err


def test_regression_targets_record_no_accuracy():
    torch.manual_seed(0)
    X = torch.randn(50, 3)
    y = X.sum(dim=1, keepdim=True)
    model = mlp([3, 8, 1])
    h = train(model, X, y, epochs=2, batch_size=10, loss_fn=nn.functional.mse_loss, progress=False)
    assert len(h.loss) == 10 and h.train_accuracy == [] and h.test_accuracy == []


def test_accuracy_restores_mode_and_handles_one_logit():
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3, 2))
        model[0].bias.zero_()
    X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    y = torch.tensor([0, 1, 0])
    model.train()
    assert accuracy(model, X, y) == pytest.approx(2 / 3)  # eval mode: dropout off
    assert model.training
    model.eval()
    accuracy(model, X, y)
    assert not model.training
    binary = nn.Linear(1, 1)
    with torch.no_grad():
        binary.weight.fill_(1.0)
        binary.bias.zero_()
    assert accuracy(binary, torch.tensor([[-1.0], [2.0]]), torch.tensor([0, 1])) == 1.0
