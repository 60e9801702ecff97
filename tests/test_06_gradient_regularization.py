"""Grading of 06-gradient-regularization: full marks for the solution, zero for the blank release,
and every graded function failing for realistic wrong implementations and for delegation to torch.

The wrong implementations are grouped into three submissions (each `gradschool grade` runs the whole
notebook), one wrong version of every graded function in each.
"""

from __future__ import annotations

import pytest
from submissions import (
    grade_json,
    make_submission,
    reference_code,
    release_notebook,
    results_by_function,
)

ASSIGNMENT = "06-gradient-regularization"
FUNCTIONS = ["layer_grad_norms", "update_ratios", "first_nonfinite_module", "grad_norm",
             "clip_grad_norm_", "clip_grad_value_", "add_gradient_noise_", "weight_norm_grads",
             "input_gradient_penalty", "path_norm"]
MANUAL = ["depth-answer", "clip-answer", "wn-answer", "entropy-answer"]

WRONG = {
    # Delegation to torch (or to autograd where the exercise says "without autograd"), and one
    # classic slip in each function torch has no version of.
    "delegates/max-without-abs/norm-after/last-module/variance-as-std/no-create-graph/l2": {
        "layer_grad_norms": """
def layer_grad_norms(model):
    return {n: (p.grad.norm().item(), p.grad.max().item())  # max g, not max |g|
            for n, p in model.named_parameters() if p.grad is not None}
""",
        "update_ratios": """
def update_ratios(before, after):
    out = {}
    for k, w in before.items():
        a = after[k].detach()
        n = a.norm().item()  # the norm AFTER the step
        d = (a - w).norm().item()
        out[k] = d / n if n > 0 else (float("inf") if d > 0 else 0.0)
    return out
""",
        "first_nonfinite_module": """
def first_nonfinite_module(model, x):
    found = [None]
    names = {m: n for n, m in model.named_modules()}
    def hook(module, inputs, output):
        if not torch.isfinite(output).all():
            found[0] = names[module]  # keeps overwriting: the LAST non-finite module
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if not list(m.children())]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return found[0]
""",
        "grad_norm": """
def grad_norm(parameters, norm_type=2.0):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    return torch.nn.utils.get_total_norm(
        [p.grad for p in parameters if p.grad is not None], norm_type)
""",
        "clip_grad_norm_": """
def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type)
""",
        "clip_grad_value_": """
def clip_grad_value_(parameters, clip_value):
    torch.nn.utils.clip_grad_value_(parameters, clip_value)
""",
        "add_gradient_noise_": """
def add_gradient_noise_(parameters, step, eta=0.3, gamma=0.55, generator=None):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    sigma = eta / (1 + step) ** gamma  # the variance used as the standard deviation
    with torch.no_grad():
        for p in parameters:
            if p.grad is not None:
                p.grad.add_(sigma * torch.randn(p.grad.shape, generator=generator,
                                                dtype=p.grad.dtype, device=p.grad.device))
    return sigma
""",
        "weight_norm_grads": """
def weight_norm_grads(v, g, grad_w):
    v = v.detach().clone().requires_grad_(True)
    g = g.detach().clone().requires_grad_(True)
    w = g * v / v.norm(dim=1, keepdim=True)
    w.backward(grad_w)  # autograd does the exercise
    return v.grad, g.grad
""",
        "input_gradient_penalty": """
def input_gradient_penalty(model, x, y, loss_fn):
    x = x.detach().requires_grad_(True)
    (gx,) = torch.autograd.grad(loss_fn(model(x), y), x)  # no create_graph: not trainable
    return gx.pow(2).sum()
""",
        "path_norm": """
def path_norm(model):
    return sum(p.pow(2).sum() for p in model.parameters())  # L2, not the path norm
""",
    },
    "zeros-for-missing/squared-ratio/registration-order/sum-of-norms/notes-rule/"
    "upper-side-only/one-draw-per-tensor/notes-formula/parameter-gradient/no-bias": {
        "layer_grad_norms": """
def layer_grad_norms(model):
    out = {}
    for n, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)  # reports missing grads as 0
        out[n] = (g.norm().item(), g.abs().max().item())
    return out
""",
        "update_ratios": """
def update_ratios(before, after):
    out = {}
    for k, w in before.items():
        d2 = (after[k].detach() - w).pow(2).sum().item()
        n2 = w.pow(2).sum().item()
        out[k] = d2 / n2 if n2 > 0 else (float("inf") if d2 > 0 else 0.0)  # squared norms
    return out
""",
        "first_nonfinite_module": """
def first_nonfinite_module(model, x):
    bad = set()
    def hook(module, inputs, output):
        if not torch.isfinite(output).all():
            bad.add(module)
    handles = [m.register_forward_hook(hook) for m in model.modules()
               if not list(m.children())]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for name, m in model.named_modules():  # registration order, not execution order
        if m in bad:
            return name
    return None
""",
        "grad_norm": """
def grad_norm(parameters, norm_type=2.0):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return torch.stack([g.norm(norm_type) for g in grads]).sum()  # sum of the norms
""",
        "clip_grad_norm_": """
def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    parameters = [parameters] if isinstance(parameters, torch.Tensor) else list(parameters)
    total = grad_norm(parameters, norm_type)
    if total > max_norm:  # the notes' rule: no 1e-6, nothing done at total == max_norm
        for p in parameters:
            if p.grad is not None:
                p.grad.mul_(max_norm / total)
    return total
""",
        "clip_grad_value_": """
def clip_grad_value_(parameters, clip_value):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    for p in parameters:
        if p.grad is not None:
            p.grad.clamp_(max=clip_value)  # forgets the lower bound
""",
        "add_gradient_noise_": """
def add_gradient_noise_(parameters, step, eta=0.3, gamma=0.55, generator=None):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    sigma = (eta / (1 + step) ** gamma) ** 0.5
    with torch.no_grad():
        for p in parameters:
            if p.grad is not None:  # one draw for the whole tensor
                z = torch.randn(1, generator=generator, dtype=p.grad.dtype, device=p.grad.device)
                p.grad.add_(sigma * z)
    return sigma
""",
        "weight_norm_grads": """
def weight_norm_grads(v, g, grad_w):
    n = v.norm(dim=1, keepdim=True)
    grad_g = (grad_w * v).sum(dim=1, keepdim=True) / n
    # the source note's formula: no g, one ||v|| too few in the projection
    grad_v = (grad_w - v / n * (v * grad_w).sum(dim=1, keepdim=True)) / n
    return grad_v, grad_g
""",
        "input_gradient_penalty": """
def input_gradient_penalty(model, x, y, loss_fn):
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(x), y), params, create_graph=True)
    return sum(g.pow(2).sum() for g in grads)  # the PARAMETER gradient
""",
        "path_norm": """
def path_norm(model):
    first = next(m for m in model if isinstance(m, torch.nn.Linear))
    h = torch.ones(1, first.in_features, dtype=first.weight.dtype, device=first.weight.device)
    for m in model:
        if isinstance(m, torch.nn.Linear):
            h = h @ m.weight.pow(2).T  # biases forgotten
    return h.sum()
""",
    },
    "rms/elementwise-ratio/hooks-left/p-power-for-inf/generator-consumed-twice/not-in-place/"
    "global-rng/forgets-g/mutates-x/squared-copy": {
        "layer_grad_norms": """
def layer_grad_norms(model):
    return {n: (p.grad.pow(2).mean().sqrt().item(), p.grad.abs().max().item())  # RMS, not L2
            for n, p in model.named_parameters() if p.grad is not None}
""",
        "update_ratios": """
def update_ratios(before, after):
    return {k: ((after[k].detach() - w).abs() / w.abs().clamp_min(1e-12)).mean().item()
            for k, w in before.items()}  # mean of elementwise ratios
""",
        "first_nonfinite_module": """
def first_nonfinite_module(model, x):
    found = []
    names = {m: n for n, m in model.named_modules()}
    def hook(module, inputs, output):
        if not found and not torch.isfinite(output).all():
            found.append(names[module])
    for m in model.modules():
        if not list(m.children()):
            m.register_forward_hook(hook)  # never removed
    with torch.no_grad():
        model(x)
    return found[0] if found else None
""",
        "grad_norm": """
def grad_norm(parameters, norm_type=2.0):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = sum(g.abs().pow(norm_type).sum() for g in grads)  # no special case for inf
    return total ** (1.0 / norm_type)
""",
        "clip_grad_norm_": """
def clip_grad_norm_(parameters, max_norm, norm_type=2.0):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    total = grad_norm(parameters, norm_type)  # a generator is exhausted here ...
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in parameters:  # ... so nothing is clipped when a generator is passed
        if p.grad is not None:
            p.grad.mul_(coef)
    return total
""",
        "clip_grad_value_": """
def clip_grad_value_(parameters, clip_value):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    for p in parameters:
        if p.grad is not None:
            p.grad = p.grad.clamp(-clip_value, clip_value)  # a new tensor, not in place
""",
        "add_gradient_noise_": """
def add_gradient_noise_(parameters, step, eta=0.3, gamma=0.55, generator=None):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    sigma = (eta / (1 + step) ** gamma) ** 0.5
    with torch.no_grad():
        for p in parameters:
            if p.grad is not None:
                p.grad.add_(sigma * torch.randn_like(p.grad))  # the generator is ignored
    return sigma
""",
        "weight_norm_grads": """
def weight_norm_grads(v, g, grad_w):
    n = v.norm(dim=1, keepdim=True)
    grad_g = (grad_w * v).sum(dim=1, keepdim=True) / n
    grad_v = grad_w / n - grad_g / n**2 * v  # the factor g is missing
    return grad_v, grad_g
""",
        "input_gradient_penalty": """
def input_gradient_penalty(model, x, y, loss_fn):
    x.requires_grad_(True)  # changes the caller's tensor
    loss = loss_fn(model(x), y)
    loss.backward(create_graph=True)  # fills the parameters' .grad too
    return x.grad.pow(2).sum()
""",
        "path_norm": """
import copy


def path_norm(model):
    squared = copy.deepcopy(model)
    with torch.no_grad():  # detached from the model's parameters: not differentiable
        for p in squared.parameters():
            p.pow_(2)
    first = next(m for m in model if isinstance(m, torch.nn.Linear))
    ones = torch.ones(1, first.in_features, dtype=first.weight.dtype, device=first.weight.device)
    return squared(ones).sum()
""",
    },
}


def test_solution_in_the_student_notebook_gets_full_marks(tmp_path):
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, reference_code(ASSIGNMENT)))
    assert report["assignment"] == ASSIGNMENT
    statuses = {t["id"]: t["status"] for t in report["tests"]}
    assert [statuses[m] for m in MANUAL] == ["manual"] * len(MANUAL), statuses
    assert all(s == "passed" for i, s in statuses.items() if i not in MANUAL), statuses
    assert report["score"] == report["max_score"] == 25  # the written answers wait for a person
    assert set(results_by_function(report, ASSIGNMENT)) == set(FUNCTIONS)


def test_released_stub_gets_zero():
    report = grade_json(release_notebook(ASSIGNMENT))
    assert report["score"] == 0
    graded = [t for t in report["tests"] if t["id"] not in MANUAL]
    assert len(graded) == len(FUNCTIONS)
    assert all(t["status"] == "failed" and "NotImplementedError" in t["message"] for t in graded)


# What the delegating group's messages must name.
DELEGATION = {"grad_norm": "get_total_norm", "clip_grad_norm_": "clip_grad_norm_",
              "clip_grad_value_": "clip_grad_value_", "weight_norm_grads": "backward"}


@pytest.mark.parametrize("mistakes", list(WRONG), ids=[k.split("/")[0] for k in WRONG])
def test_each_wrong_implementation_loses_its_points(tmp_path, mistakes):
    assert set(WRONG[mistakes]) == set(FUNCTIONS)
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, WRONG[mistakes]),
                        "--assignment", ASSIGNMENT)
    results = results_by_function(report, ASSIGNMENT)
    for function in FUNCTIONS:
        test = results[function]
        assert test["status"] == "failed" and test["score"] == 0, (function, test)
        assert len(test["message"]) > len("AssertionError: "), (function, test)
        if mistakes.startswith("delegates/") and function in DELEGATION:
            assert f"uses {DELEGATION[function]}" in test["message"], (function, test)
    assert report["score"] == 0
