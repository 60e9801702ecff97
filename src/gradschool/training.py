"""A small minibatch training loop that records what the course plots.

Not an exercise: it uses ``torch.optim.SGD`` unless given another optimizer, and the model,
the loss and the optimizer are whatever the notebook passes in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["History", "train", "accuracy"]


@dataclass
class History:
    """What ``train`` recorded, as plain Python floats (ready to plot or compare).

    Attributes:
        loss: per optimizer step, the training loss of that minibatch (before the step).
        train_accuracy: per epoch, accuracy on the whole training set after the epoch
            (eval mode); empty when the labels are not class indices.
        test_accuracy: per epoch, accuracy on the test set; empty without X_test / y_test.
        test_loss: per epoch, mean loss on the test set; empty without X_test / y_test.
        grad_norm: per optimizer step, {Linear's name in the model: L2 norm of its weight's
            gradient}, e.g. {"0": 0.31, "2": 0.12, "4": 0.05} for ``mlp([64, 32, 32, 10])``.
        epoch_steps: per epoch, the number of optimizer steps done by its end (cumulative), so
            ``loss[:epoch_steps[0]]`` is the first epoch.
    """

    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    grad_norm: list[dict[str, float]] = field(default_factory=list)
    epoch_steps: list[int] = field(default_factory=list)


# Below this many parameter x sample multiply-adds per step, CPU training runs on one thread.
_SINGLE_THREAD_WORK = 10_000_000


@contextlib.contextmanager
def _cpu_threads_for(model: nn.Module, batch_size: int, device: torch.device) -> Iterator[None]:
    """Run small CPU work single-threaded, restoring torch's thread count afterwards.

    For small models intra-op threads gain little (about 20% at 5e6 multiply-adds per step
    on 2 idle cores) but OpenMP threads spin-wait when other processes compete for the cores
    (parallel grading, pytest -n 2): 10 epochs of a 64-64-10 MLP on digits then take 25-40 s
    instead of 0.3 s on one thread (measured on 2 cores with 2 busy processes).
    """
    work = batch_size * sum(p.numel() for p in model.parameters())
    threads = torch.get_num_threads()
    if device.type != "cpu" or work >= _SINGLE_THREAD_WORK or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    for p in model.parameters():
        return p.device
    return fallback


@torch.no_grad()
def _predict(model: nn.Module, X: Tensor) -> Tensor:
    out = model(X)
    if out.dim() == 1 or out.shape[-1] == 1:  # one logit per sample: binary classification
        return (out.reshape(len(out)) > 0).to(torch.int64)
    return out.argmax(dim=-1)


def accuracy(model: nn.Module, X: Tensor, y: Tensor) -> float:
    """Fraction of correctly classified samples, computed in eval mode without gradients.

    The model's train/eval mode is restored afterwards. X and y are moved to the device of the
    model's parameters.

    Args:
        model: nn.Module mapping (N, ...) to logits (N, C); with a single logit (N,) or (N, 1)
            the prediction is ``logit > 0`` (binary classification).
        X: Tensor (N, ...) of inputs.
        y: Tensor (N,) of integer class labels.

    Returns:
        float in [0, 1].
    """
    device = _model_device(model, X.device)
    was_training = model.training
    model.eval()
    try:
        pred = _predict(model, X.to(device))
    finally:
        model.train(was_training)
    return (pred == y.to(device)).to(torch.float64).mean().item()


def train(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    *,
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.1,
    optimizer: Any = None,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    X_test: Tensor | None = None,
    y_test: Tensor | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> History:
    """Minibatch training: shuffle, forward, loss, backward, record, step; once per batch.

    Each epoch visits the training set in a fresh random order (the last batch may be
    smaller). Before each ``optimizer.step()`` it records the batch loss and, for every
    nn.Linear, the L2 norm of its weight gradient; after each epoch the train (and test)
    accuracy, computed in eval mode. Values are gathered on the device and turned into
    Python floats once per epoch, so recording does not slow a GPU down.

    On CPU, a small model (batch_size x parameters < 1e7, e.g. any MLP on digits) trains
    with one intra-op thread (``torch.set_num_threads(1)``, restored afterwards): more threads
    gain little at that size but make training 10-100x slower when other processes compete
    for the cores, as in parallel grading.

    Args:
        model: nn.Module mapping (B, ...) to outputs (B, C); moved to ``device`` in place.
        X: Tensor (N, ...) of training inputs.
        y: Tensor (N,) of labels (int64 class indices for the default loss).
        epochs: number of passes over the training set.
        batch_size: samples per optimizer step.
        lr: learning rate of the default optimizer; ignored when ``optimizer`` is given.
        optimizer: None for ``torch.optim.SGD(model.parameters(), lr=lr)``; or an optimizer
            object with ``step()`` (and ``zero_grad()``, else the model's gradients are zeroed);
            or a factory called as ``optimizer(model.parameters())``.
        loss_fn: callable (outputs (B, C), targets (B,)) -> scalar loss; default
            ``F.cross_entropy`` (the same as ``nn.CrossEntropyLoss()``).
        X_test: optional Tensor (N_test, ...) of test inputs.
        y_test: optional Tensor (N_test,) of test labels.
        generator: optional torch.Generator for the shuffling (global RNG if None); the
            permutation is drawn on the generator's device (CPU by default), so a seed gives the
            same batches on every device.
        device: where to train; default: the device of the model's parameters.
        progress: show a tqdm progress bar over epochs (tqdm.auto: a widget in Jupyter).

    Returns:
        History with loss and grad_norm per step, accuracies (and test loss) per epoch, and
        epoch_steps.
    """
    from tqdm.auto import tqdm

    device = torch.device(device) if device is not None else _model_device(model, X.device)
    model.to(device)
    X, y = X.to(device), y.to(device)
    has_test = X_test is not None and y_test is not None
    if has_test:
        X_test, y_test = X_test.to(device), y_test.to(device)
    if optimizer is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    elif not hasattr(optimizer, "step") and callable(optimizer):
        optimizer = optimizer(model.parameters())
    classify = not y.is_floating_point()
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    perm_device = generator.device if generator is not None else torch.device("cpu")

    def run_epoch(history: History) -> None:
        model.train()
        perm = torch.randperm(len(X), generator=generator, device=perm_device).to(device)
        Xs, ys = X[perm], y[perm]
        losses, norms = [], []
        for start in range(0, len(X), batch_size):
            xb, yb = Xs[start : start + batch_size], ys[start : start + batch_size]
            loss = loss_fn(model(xb), yb)
            if hasattr(optimizer, "zero_grad"):
                optimizer.zero_grad()
            else:
                model.zero_grad(set_to_none=True)
            loss.backward()
            losses.append(loss.detach())
            if linears:
                norms.append(torch.stack([_grad_norm(m.weight) for _, m in linears]))
            optimizer.step()
        # One device-to-host transfer per epoch, not one per step.
        history.loss.extend(torch.stack(losses).float().tolist())
        for row in torch.stack(norms).float().tolist() if norms else []:
            history.grad_norm.append({name: v for (name, _), v in zip(linears, row, strict=True)})
        history.epoch_steps.append(len(history.loss))

    was_training = model.training
    history = History()
    bar = tqdm(range(epochs), desc="train", unit="epoch", disable=not progress)
    with _cpu_threads_for(model, batch_size, device):
        for _ in bar:
            run_epoch(history)
            postfix = {"loss": history.loss[-1]}
            if classify:
                history.train_accuracy.append(accuracy(model, X, y))
                postfix["train_acc"] = history.train_accuracy[-1]
            if has_test:
                model.eval()
                with torch.no_grad():
                    history.test_loss.append(loss_fn(model(X_test), y_test).item())
                if classify:
                    history.test_accuracy.append(accuracy(model, X_test, y_test))
                    postfix["test_acc"] = history.test_accuracy[-1]
            if progress:
                bar.set_postfix({k: f"{v:.3g}" for k, v in postfix.items()})
    bar.close()
    model.train(was_training)
    return history


def _grad_norm(weight: Tensor) -> Tensor:
    """L2 norm of weight.grad as a 0-dim tensor on its device (NaN when there is no grad)."""
    if weight.grad is None:
        return weight.new_full((), float("nan")).detach()
    return torch.linalg.vector_norm(weight.grad.detach())
