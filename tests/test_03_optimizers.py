"""03-optimizers: the solution gets full marks, the blank release zero, the classic slips and
delegation to torch lose the points of the optimizer they are in.

Wrong implementations are the reference solution with one realistic slip per class, grouped into
three submissions of all five classes (each ``gradschool grade`` runs the whole notebook, so the
grouping keeps this file at about six gradings).
"""

from __future__ import annotations

import nbformat
import pytest
from submissions import (
    grade_json,
    grade_released_stub,
    make_submission,
    reference_code,
    release_notebook,
    results_by_function,
    solution_cells,
    solution_notebook,
)

ASSIGNMENT = "03-optimizers"
SOLUTION = solution_notebook(ASSIGNMENT)
RELEASE = release_notebook(ASSIGNMENT)
REFERENCE = reference_code(ASSIGNMENT)
GRADED = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]


def _edit(name: str, *changes: tuple[str, str]) -> str:
    """The reference solution of ``name`` with each (old, new) applied; old must occur once."""
    source = REFERENCE[name]
    for old, new in changes:
        assert source.count(old) == 1, f"{old!r} occurs {source.count(old)} times in {name}"
        source = source.replace(old, new)
    return source


def _adamw(step_change: tuple[str, str] | None = None, decoupled: bool = True) -> str:
    """A stand-alone AdamW (the reference Adam renamed, decoupled), optionally edited."""
    source = REFERENCE["Adam"].replace("class Adam(", "class AdamW(").replace(
        "weight_decay=0.0):", "weight_decay=1e-2):").replace(
        "decoupled_weight_decay = False", f"decoupled_weight_decay = {decoupled}")
    if step_change:
        assert source.count(step_change[0]) == 1, step_change
        source = source.replace(*step_change)
    return source


WRONG = {
    "ema-momentum/eps-inside-sqrt/eps-inside-sqrt/eps-before-correction/decay-without-lr": {
        "SGD": _edit("SGD", ('state["momentum_buffer"].mul_(mu).add_(d)',
                             'state["momentum_buffer"].mul_(mu).add_(d, alpha=1 - mu)')),
        "Adagrad": _edit("Adagrad", ('state["sum"].sqrt().add_(group["eps"])',
                                     'state["sum"].add(group["eps"]).sqrt()')),
        "RMSprop": _edit("RMSprop", ('state["square_avg"].sqrt().add_(group["eps"])',
                                     'state["square_avg"].add(group["eps"]).sqrt()')),
        # the paper's "efficient version": eps added to sqrt(v) before the bias correction
        "Adam": _edit("Adam", ('denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(group["eps"])',
                               'denom = v.sqrt().add_(group["eps"]) / (1 - beta2**t) ** 0.5')),
        "AdamW": _adamw(("p.mul_(1 - lr * wd)", "p.mul_(1 - wd)")),
    },
    "decay-after-momentum/decay-not-accumulated/bias-corrected/off-by-one/coupled": {
        "SGD": _edit("SGD", ("d = d.add(p, alpha=wd)  # coupled L2: the gradient of wd/2 ||p||^2",
                             "pass"),
                     ("p.add_(d, alpha=-lr)", "p.add_(d.add(p, alpha=wd), alpha=-lr)")),
        "Adagrad": _edit("Adagrad", ('state["sum"].addcmul_(g, g)',
                                     'state["sum"].addcmul_(p.grad, p.grad)')),
        "RMSprop": _edit("RMSprop", ('denom = state["square_avg"].sqrt().add_(group["eps"])',
                                     'denom = (state["square_avg"] / (1 - alpha ** state["step"])'
                                     ').sqrt().add_(group["eps"])')),
        "Adam": _edit("Adam", ('state["step"] = 0', 'state["step"] = 1')),
        "AdamW": _adamw(decoupled=False),  # L2 in Adam under AdamW's name
    },
    "nesterov-old-buffer/cached-lr/no-enable-grad/global-step/decay-after-update": {
        "SGD": _edit("SGD", ('                    if "momentum_buffer" not in state:',
                             '                    old = state.get("momentum_buffer", torch.zeros_'
                             'like(d)).clone()\n                    if "momentum_buffer" not in '
                             'state:'),
                     ('d = d.add(buf, alpha=mu) if group["nesterov"] else buf',
                      'd = d.add(old, alpha=mu) if group["nesterov"] else buf')),
        "Adagrad": _edit("Adagrad", ("super().__init__(params, dict(lr=lr, eps=eps, "
                                     "weight_decay=weight_decay))",
                                     "super().__init__(params, dict(lr=lr, eps=eps, "
                                     "weight_decay=weight_decay))\n        self.lr = lr"),
                         ('value=-group["lr"]', "value=-self.lr")),
        "RMSprop": _edit("RMSprop", ("            with torch.enable_grad():\n"
                                     "                loss = closure()",
                                     "            loss = closure()")),
        "Adam": _edit("Adam", ('super().__init__(params, dict(lr=lr, betas=betas, eps=eps, '
                               'weight_decay=weight_decay))',
                               'super().__init__(params, dict(lr=lr, betas=betas, eps=eps, '
                               'weight_decay=weight_decay))\n        self.t = 0'),
                      ('        for group in self.param_groups:\n            lr, (beta1',
                       '        self.t += 1\n        for group in self.param_groups:\n'
                       '            lr, (beta1'),
                      ('t = state["step"]', "t = self.t")),
        "AdamW": _adamw(("                if wd != 0 and self.decoupled_weight_decay:\n"
                         "                    p.mul_(1 - lr * wd)\n",
                         "                if False:\n                    pass\n")).replace(
            "                p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))",
            "                p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))\n"
            "                p.mul_(1 - lr * wd)"),
    },
}

# Five ways to hand the work to torch: each must lose its optimizer's points.
DELEGATING = {
    "SGD": ("class SGD(torch.optim.SGD):\n"
            "    def __init__(self, params, lr=1e-3, momentum=0.0, nesterov=False,\n"
            "                 weight_decay=0.0):\n"
            "        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov,\n"
            "                         weight_decay=weight_decay, foreach=False)\n",
            "base classes"),
    "Adagrad": ("class Adagrad(torch.optim.Optimizer):\n"
                "    def __init__(self, params, lr=1e-2, eps=1e-10, weight_decay=0.0):\n"
                "        torch.optim.Adagrad([torch.zeros(1, requires_grad=True)], lr=lr,\n"
                "                            eps=eps, weight_decay=weight_decay)  # validates\n"
                "        super().__init__(params, {'lr': lr, 'eps': eps,\n"
                "                                  'weight_decay': weight_decay})\n\n"
                "    def step(self, closure=None):  # a torch Adagrad on my groups and my state\n"
                "        inner = torch.optim.Adagrad(self.param_groups, foreach=False)\n"
                "        for p, s in inner.state.items():\n"
                "            if not self.state.get(p):\n"
                "                self.state[p] = s\n"
                "        inner.state = self.state\n"
                "        return inner.step(closure)\n",
                "torch optimizer code"),
    "RMSprop": ("class RMSprop(torch.optim.Optimizer):\n"
                "    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0):\n"
                "        if min(lr, alpha, eps, weight_decay) < 0:\n"
                "            raise ValueError('negative hyper-parameter')\n"
                "        super().__init__(params, dict(\n"
                "            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=0,\n"
                "            centered=False, capturable=False, foreach=False, maximize=False,\n"
                "            differentiable=False))\n\n"
                "    _init_group = torch.optim.RMSprop._init_group\n\n"
                "    def step(self, closure=None):  # torch's step, borrowed as a function\n"
                "        return torch.optim.RMSprop.step(self, closure)\n",
                "torch optimizer code"),
    "Adam": (_edit("Adam", ('                m.mul_(beta1).add_(g, alpha=1 - beta1)\n', ''),
                   ('                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)\n', ''),
                   ('                denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_('
                    'group["eps"])\n                p.addcdiv_(m, denom, value=-lr / '
                    '(1 - beta1**t))',
                    '                from torch.optim import _functional\n'
                    '                _functional.adam([p], [g], [m], [v], [], [torch.tensor('
                    'float(t - 1))], amsgrad=False, beta1=beta1, beta2=beta2, lr=lr,\n'
                    '                                 weight_decay=0.0, eps=group["eps"], '
                    'maximize=False)')),
             "uses _functional"),
    "AdamW": ("Base = next(c for c in torch.optim.Optimizer.__subclasses__()\n"
              "            if c.__name__ == 'Ada' + 'm')\n\n"
              "class AdamW(Base):\n"
              "    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,\n"
              "                 weight_decay=1e-2):\n"
              "        super().__init__(params, lr=lr, betas=betas, eps=eps,\n"
              "                         weight_decay=weight_decay, decoupled_weight_decay=True)\n",
              "uses __subclasses__"),
}


def test_graded_classes_are_the_issue_api():
    defined = solution_cells(nbformat.read(SOLUTION, as_version=4))
    assert set(GRADED) <= set(defined)
    for name in GRADED:
        assert f"class {name}(" in REFERENCE[name]


def test_reference_solution_in_the_student_notebook_gets_full_marks(tmp_path):
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, REFERENCE))
    assert report["assignment"] == ASSIGNMENT
    assert report["max_score"] > 0 and report["score"] == report["max_score"], report
    statuses = [t["status"] for t in report["tests"]]
    assert statuses.count("passed") == len(GRADED) and statuses.count("manual") == 4, statuses


def test_released_stub_gets_zero():
    grade_released_stub(ASSIGNMENT)


@pytest.mark.parametrize("mistakes", list(WRONG), ids=list(WRONG))
def test_each_classic_slip_loses_its_points(tmp_path, mistakes):
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, WRONG[mistakes]),
                        "--assignment", ASSIGNMENT)
    results = results_by_function(report, ASSIGNMENT)
    for name in GRADED:
        test = results[name]
        assert test["status"] == "failed" and test["score"] == 0, (name, test)
        assert len(test["message"]) > len("AssertionError: "), (name, test)


def test_delegating_to_torch_loses_the_points(tmp_path):
    code = {name: source for name, (source, _) in DELEGATING.items()}
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, code), "--assignment", ASSIGNMENT)
    results = results_by_function(report, ASSIGNMENT)
    for name, (_, reason) in DELEGATING.items():
        test = results[name]
        assert test["status"] == "failed" and test["score"] == 0, (name, test)
        assert reason in test["message"], (name, test["message"])
