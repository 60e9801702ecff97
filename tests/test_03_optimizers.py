"""03-optimizers: the solution gets full marks, the blank release zero; every classic slip, every
route to torch's optimizers, loses the points of the optimizer it is in, visibly and hidden; one
mistake costs one test; correct work with realistic scratch cells keeps its marks.

Two levels. In process and fast: the hidden checks run on single mistakes through a stand-in for
the grading kernel (``hidden_verdict``), and the visible test cells run here on the same code
(``visible_verdict``), so that every mistake is shown to be caught both ways, with the reference
code for the other optimizers. End to end, ``gradschool grade`` on three notebooks: the reference
with scratch cells (full marks), the blank release (zero), and a notebook with two mistakes in two
exercises (it loses exactly those two tests).
"""

from __future__ import annotations

import contextlib
import io

import nbformat
import pytest
from submissions import (
    SETUP,
    InProcessKernel,
    checks_of,
    fill_in,
    grade_json,
    grade_released_stub,
    graded_of,
    hidden_verdict,
    locked_sources,
    reference_code,
    release_notebook,
    results_by_function,
    solution_cells,
    solution_notebook,
)

from gradschool.cells import grade_id
from gradschool.instructor import Guard, ProbeFailed

ASSIGNMENT = "03-optimizers"
REFERENCE = reference_code(ASSIGNMENT)
GRADED = ["SGD", "Adagrad", "RMSprop", "Adam", "AdamW"]
TEST_OF = {"SGD": "sgd-tests", "Adagrad": "adagrad-tests", "RMSprop": "rmsprop-tests",
           "Adam": "adam-tests", "AdamW": "decoupled-adamw-tests"}


def _edit(name: str, *changes: tuple[str, str]) -> str:
    """The reference solution of ``name`` with each (old, new) applied; old must occur once."""
    source = REFERENCE[name]
    for old, new in changes:
        assert source.count(old) == 1, f"{old!r} occurs {source.count(old)} times in {name}"
        source = source.replace(old, new)
    return source


def _adamw(*changes: tuple[str, str], decoupled: bool = True) -> str:
    """A stand-alone AdamW (the reference Adam renamed, decoupled), with ``changes`` applied."""
    source = REFERENCE["Adam"].replace("class Adam(", "class AdamW(").replace(
        "weight_decay=0.0):", "weight_decay=1e-2):").replace(
        "decoupled_weight_decay = False", f"decoupled_weight_decay = {decoupled}")
    for old, new in changes:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return source


# -- mistakes: the cells a student's exercise holds, one realistic slip each --------------------
VELOCITY_SGD = _edit(  # the classic v = mu v - lr g, stored where torch keeps its buffer
    "SGD", ('state["momentum_buffer"] = d.clone()  # first step: buf = g',
            'state["momentum_buffer"] = d.mul(-lr)'),
    ('state["momentum_buffer"].mul_(mu).add_(d)', 'state["momentum_buffer"].mul_(mu).add_(d, '
     'alpha=-lr)'),
    ('d = d.add(buf, alpha=mu) if group["nesterov"] else buf',
     'd = d.add(buf, alpha=-mu / lr) if group["nesterov"] else buf / -lr'))
SHARED_COUNTER = {  # one step count for a whole group, or for the optimizer (d2l's Adam)
    "per group": _edit("Adam", ('group["weight_decay"]\n', 'group["weight_decay"]\n'
                                '            group["t"] = group.get("t", 0) + 1\n'),
                       ('t = state["step"]', 't = group["t"]')),
    "in self.state": _edit("Adam", ("        for group in self.param_groups:\n            lr, ",
                                    '        self.state["t"] = self.state.get("t", 0) + 1\n'
                                    "        for group in self.param_groups:\n            lr, "),
                           ('t = state["step"]', 't = self.state["t"]')),
    "as an attribute": _edit("Adam", ("weight_decay=weight_decay))\n", "weight_decay=weight_decay))"
                                      "\n        self.t = 0\n"),
                             ("        for group in self.param_groups:\n            lr, ",
                              "        self.t += 1\n        for group in self.param_groups:\n"
                              "            lr, "), ('t = state["step"]', "t = self.t")),
}
ADAM_EPS_INSIDE = _edit("Adam", ('denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(group["eps"])',
                                 'denom = (v / (1 - beta2**t)).add(group["eps"]).sqrt()'))
WRONG = {  # mistake -> (graded name, its cell)
    "SGD: momentum as an average (EMA)": ("SGD", _edit(
        "SGD", ('state["momentum_buffer"].mul_(mu).add_(d)',
                'state["momentum_buffer"].mul_(mu).add_(d, alpha=1 - mu)'))),
    "SGD: first buffer (1 - mu) g": ("SGD", _edit(
        "SGD", ("d.clone()  # first step: buf = g", "d.mul(1 - mu)"))),
    "SGD: weight decay after the momentum": ("SGD", _edit(
        "SGD", ("d = d.add(p, alpha=wd)  # coupled L2: the gradient of wd/2 ||p||^2", "pass"),
        ("p.add_(d, alpha=-lr)", "p.add_(d.add(p, alpha=wd), alpha=-lr)"))),
    "SGD: Nesterov with the old buffer": ("SGD", _edit(
        "SGD", ('                    if "momentum_buffer" not in state:',
                '                    old = state.get("momentum_buffer", torch.zeros_like(d))'
                '.clone()\n                    if "momentum_buffer" not in state:'),
        ('d = d.add(buf, alpha=mu) if group["nesterov"] else buf',
         'd = d.add(old, alpha=mu) if group["nesterov"] else buf'))),
    "SGD: Nesterov on the raw gradient (no weight decay)": ("SGD", _edit(
        "SGD", ('d = d.add(buf, alpha=mu) if group["nesterov"]',
                'd = p.grad.add(buf, alpha=mu) if group["nesterov"]'))),
    "SGD: classic velocity form": ("SGD", VELOCITY_SGD),
    "SGD: momentum buffer not cloned": ("SGD", _edit("SGD", ("d.clone()", "d"))),
    "SGD: lr read at construction": ("SGD", _edit(
        "SGD", ("super().__init__(params, defaults)", "super().__init__(params, defaults)\n"
                "        self.lr = lr"), ("p.add_(d, alpha=-lr)", "p.add_(d, alpha=-self.lr)"))),
    "Adagrad: eps inside the square root": ("Adagrad", _edit(
        "Adagrad", ('state["sum"].sqrt().add_(group["eps"])',
                    'state["sum"].add(group["eps"]).sqrt()'))),
    "Adagrad: weight decay not accumulated": ("Adagrad", _edit(
        "Adagrad", ('state["sum"].addcmul_(g, g)', 'state["sum"].addcmul_(p.grad, p.grad)'))),
    "Adagrad: lr read at construction": ("Adagrad", _edit(
        "Adagrad", ("weight_decay=weight_decay))", "weight_decay=weight_decay))\n"
                    "        self.lr = lr"), ('value=-group["lr"]', "value=-self.lr"))),
    "RMSprop: eps inside the square root": ("RMSprop", _edit(
        "RMSprop", ('state["square_avg"].sqrt().add_(group["eps"])',
                    'state["square_avg"].add(group["eps"]).sqrt()'))),
    "RMSprop: bias-corrected": ("RMSprop", _edit(
        "RMSprop", ('denom = state["square_avg"].sqrt().add_(group["eps"])',
                    'denom = (state["square_avg"] / (1 - alpha ** state["step"])).sqrt()'
                    '.add_(group["eps"])'))),
    "RMSprop: v starts at the first g^2": ("RMSprop", _edit(
        "RMSprop", ('state["square_avg"].mul_(alpha).addcmul_(g, g, value=1 - alpha)',
                    'state["square_avg"].mul_(alpha if state["step"] > 1 else 0.0).addcmul_('
                    'g, g, value=1 - alpha if state["step"] > 1 else 1.0)'))),
    "RMSprop: closure without enable_grad": ("RMSprop", _edit(
        "RMSprop", ("            with torch.enable_grad():\n                loss = closure()",
                    "            loss = closure()"))),
    "Adam: eps inside the square root": ("Adam", ADAM_EPS_INSIDE),
    "Adam: eps before the bias correction": ("Adam", _edit(
        "Adam", ('denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(group["eps"])',
                 'denom = v.sqrt().add_(group["eps"]) / (1 - beta2**t) ** 0.5'))),
    "Adam: bias correction only on m": ("Adam", _edit(
        "Adam", ('denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(group["eps"])',
                 'denom = v.sqrt().add_(group["eps"])'))),
    "Adam: no (1 - beta1) in m": ("Adam", _edit(
        "Adam", ("m.mul_(beta1).add_(g, alpha=1 - beta1)", "m.mul_(beta1).add_(g)"))),
    "Adam: step count off by one": ("Adam", _edit("Adam", ('state["step"] = 0',
                                                           'state["step"] = 1'))),
    "Adam: weight decay after the averages": ("Adam", _edit(
        "Adam", ("                elif wd != 0:\n                    g = g.add(p, alpha=wd)\n", ""),
        ("p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))",
         "p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))\n"
         "                if wd != 0 and not self.decoupled_weight_decay:\n"
         "                    p.add_(p, alpha=-lr * wd)"))),
    **{f"Adam: step count {how}": ("Adam", source) for how, source in SHARED_COUNTER.items()},
    "AdamW: decay without lr": ("AdamW", _adamw(("p.mul_(1 - lr * wd)", "p.mul_(1 - wd)"))),
    "AdamW: decay with the default lr": ("AdamW", _adamw(
        ("p.mul_(1 - lr * wd)", 'p.mul_(1 - self.defaults["lr"] * wd)'))),
    "AdamW: L2 under AdamW's name": ("AdamW", _adamw(decoupled=False)),
    "AdamW: decay after the update": ("AdamW", _adamw(
        ("                if wd != 0 and self.decoupled_weight_decay:\n"
         "                    p.mul_(1 - lr * wd)\n                elif wd != 0:",
         "                if wd != 0 and not self.decoupled_weight_decay:"),
        ("p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))",
         "p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))\n"
         "                p.mul_(1 - lr * wd)"))),
    "AdamW: the switch left off": ("AdamW", REFERENCE["AdamW"].replace(
        "decoupled_weight_decay = True", "decoupled_weight_decay = False")),
    "AdamW: default weight decay 0": ("AdamW", REFERENCE["AdamW"].replace(
        "weight_decay=1e-2", "weight_decay=0.0")),
}


def cells_for(name: str, own: str) -> list[str]:
    """The student's cells for the test of ``name``: its own cell ``own`` (after the reference
    Adam for AdamW, its base class)."""
    return [REFERENCE["Adam"], own] if name == "AdamW" else [own]


# -- the visible test cells, run here ----------------------------------------------------------
def visible_verdict(test_id: str, cells: list[str]) -> str:
    """What the notebook's visible test cell ``test_id`` says after the setup's imports, the
    helpers and the student's ``cells``: "" when it passes, else the error it ends with."""
    helpers, test = locked_sources(ASSIGNMENT, "helpers", test_id)
    namespace = {"__name__": "__main__"}
    context = "import contextlib\nimport copy\nimport time\n" + SETUP + (
        "from gradschool.checks import assert_close, assert_equal, report\n")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for source in (context, helpers, *cells, test):
                exec(compile(source, "<cell>", "exec"), namespace)
    except Exception as error:  # noqa: BLE001 - a failed test cell, whatever it raised
        return f"{type(error).__name__}: {error}"
    return ""


def runtime_verdict(test_id: str, cells: list[str]) -> str:
    """The hidden checks' verdict without the reading of the source: what the probes' guard
    (tripwires, identity of the graded names) and the values say alone."""
    checks = checks_of(ASSIGNMENT)
    kernel = InProcessKernel(*cells)
    kernel.guard = Guard(graded_of(ASSIGNMENT, test_id),
                         tuple(sorted(checks.forbidden_names[test_id])),
                         dict(checks.stand_ins.get(test_id, {})))
    for check in checks.functions[test_id]:
        try:
            check(kernel)
        except AssertionError as error:
            return str(error)
        except ProbeFailed as error:
            return error.outcome.message
    return ""


def test_graded_classes_are_the_issue_api():
    defined = solution_cells(nbformat.read(solution_notebook(ASSIGNMENT), as_version=4))
    assert set(GRADED) <= set(defined)
    for name in GRADED:
        assert f"class {name}(" in REFERENCE[name]


@pytest.mark.parametrize("name", GRADED)
def test_the_reference_passes_the_visible_tests(name):
    """(Hidden: test_correct_work_with_scratch_cells_... and the full-marks grade.)"""
    assert visible_verdict(TEST_OF[name], cells_for(name, REFERENCE[name])) == ""


@pytest.mark.parametrize("mistake", list(WRONG))
def test_each_mistake_loses_its_points_visibly_and_hidden(mistake):
    name, source = WRONG[mistake]
    cells = cells_for(name, source)
    assert visible_verdict(TEST_OF[name], cells) != ""
    assert hidden_verdict(ASSIGNMENT, TEST_OF[name], cells) != ""


@pytest.mark.parametrize("mistake, name, source, phase", [
    ("shared step counter", "Adam", SHARED_COUNTER["per group"], "first gradient at step"),
    ("shared step counter", "Adam", SHARED_COUNTER["in self.state"], "first gradient at step"),
    ("classic velocity form", "SGD", VELOCITY_SGD, "halved"),
    ("momentum buffer not cloned", "SGD", WRONG["SGD: momentum buffer not cloned"][1],
     "set_to_none=False"),
])
def test_the_named_slips_are_explained_visibly_and_hidden(mistake, name, source, phase):
    """The message names the phase of the schedule where the slip first shows."""
    assert phase in visible_verdict(TEST_OF[name], [source]), mistake
    assert phase in hidden_verdict(ASSIGNMENT, TEST_OF[name], [source]), mistake


# -- one mistake, one test ----------------------------------------------------------------------
def test_a_correct_adamw_keeps_its_points_on_a_wrong_adam():
    """(The two-mistake grade below shows it on an Adam with eps inside the square root.)"""
    cells = [SHARED_COUNTER["per group"], REFERENCE["AdamW"]]
    assert visible_verdict("decoupled-adamw-tests", cells) == ""
    assert hidden_verdict(ASSIGNMENT, "decoupled-adamw-tests", cells) == ""


def test_a_wrong_adamw_loses_its_points_on_a_wrong_adam_too():
    cells = [ADAM_EPS_INSIDE, REFERENCE["AdamW"].replace("weight_decay=1e-2", "weight_decay=0.0")]
    assert "known-good Adam" in visible_verdict("decoupled-adamw-tests", cells)
    assert "known-good Adam" in hidden_verdict(ASSIGNMENT, "decoupled-adamw-tests", cells)


def test_the_known_good_adam_is_good():
    """The hidden checks' stand-in for the student's Adam passes Adam's own hidden checks."""
    stand_in = checks_of(ASSIGNMENT).stand_ins["decoupled-adamw-tests"]["Adam"]
    assert hidden_verdict(ASSIGNMENT, "adam-tests", [stand_in]) == ""


# -- delegation: the routes lose, correct work does not -----------------------------------------
DELEGATING = {  # name -> (cells, what the message names)
    "SGD": (["class SGD(torch.optim.SGD):\n"
             "    def __init__(self, params, lr=1e-3, momentum=0.0, nesterov=False,\n"
             "                 weight_decay=0.0):\n"
             "        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov,\n"
             "                         weight_decay=weight_decay, foreach=False)\n"],
            "torch.optim.SGD"),
    "Adagrad": (["class Adagrad(torch.optim.Optimizer):\n"
                 "    def __init__(self, params, lr=1e-2, eps=1e-10, weight_decay=0.0):\n"
                 "        super().__init__(params, {'lr': lr, 'eps': eps,\n"
                 "                                  'weight_decay': weight_decay})\n\n"
                 "    def step(self, closure=None):  # a torch Adagrad on my groups and state\n"
                 "        inner = torch.optim.Adagrad(self.param_groups, foreach=False)\n"
                 "        inner.state = self.state\n"
                 "        return inner.step(closure)\n"], "torch.optim.Adagrad"),
    "RMSprop": (["class RMSprop(torch.optim.Optimizer):\n"
                 "    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, "
                 "weight_decay=0.0):\n"
                 "        super().__init__(params, dict(\n"
                 "            lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, "
                 "momentum=0,\n"
                 "            centered=False, capturable=False, foreach=False, maximize=False,\n"
                 "            differentiable=False))\n\n"
                 "    _init_group = torch.optim.RMSprop._init_group\n\n"
                 "    def step(self, closure=None):  # torch's step, borrowed as a function\n"
                 "        return torch.optim.RMSprop.step(self, closure)\n"],
                "torch.optim.RMSprop"),
    "Adam": ([_edit("Adam", ('                m.mul_(beta1).add_(g, alpha=1 - beta1)\n', ''),
                    ('                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)\n', ''),
                    ('                denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_('
                     'group["eps"])\n                p.addcdiv_(m, denom, value=-lr / '
                     '(1 - beta1**t))',
                     '                from torch.optim import _functional\n'
                     '                _functional.adam([p], [g], [m], [v], [], [torch.tensor('
                     'float(t - 1))], amsgrad=False, beta1=beta1, beta2=beta2, lr=lr,\n'
                     '                                 weight_decay=0.0, eps=group["eps"], '
                     'maximize=False)'))], "torch.optim._functional"),
    "AdamW": (["Base = next(c for c in torch.optim.Optimizer.__subclasses__()\n"
               "            if c.__name__ == 'Ada' + 'm')\n\n"
               "class AdamW(Base):\n"
               "    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8,\n"
               "                 weight_decay=1e-2):\n"
               "        super().__init__(params, lr=lr, betas=betas, eps=eps,\n"
               "                         weight_decay=weight_decay,\n"
               "                         decoupled_weight_decay=True)\n"],
              "__subclasses__"),
}
REBOUND = {  # a scratch cell at the end rebinds or patches a graded name
    "Adam = torch.optim.Adam": ("Adam", "Adam = torch.optim.Adam\n"),
    "AdamW = torch.optim.AdamW": ("AdamW", "AdamW = torch.optim.AdamW\n"),
    "SGD.step = torch.optim.SGD.step": ("SGD", "SGD.step = torch.optim.SGD.step\n"),
    "Adam.step = a functional adam": ("Adam", """
def functional_step(self, closure=None):
    for group in self.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                s = self.state[p]
                if not s:
                    s.update(step=torch.tensor(0.0), exp_avg=torch.zeros_like(p),
                             exp_avg_sq=torch.zeros_like(p))
                torch.optim._functional.adam(
                    [p], [p.grad], [s["exp_avg"]], [s["exp_avg_sq"]], [], [s["step"]],
                    amsgrad=False, beta1=group["betas"][0], beta2=group["betas"][1],
                    lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"],
                    maximize=False)

Adam.step = torch.no_grad()(functional_step)
"""),
    "from torch.optim.rmsprop import rmsprop": ("RMSprop", """
from torch.optim.rmsprop import rmsprop

def step(self, closure=None):
    for group in self.param_groups:
        ps = [p for p in group["params"] if p.grad is not None]
        for p in ps:
            self.state[p].setdefault("square_avg", torch.zeros_like(p))
            self.state[p].setdefault("step", torch.tensor(0.0))
        rmsprop(ps, [p.grad for p in ps], [self.state[p]["square_avg"] for p in ps], [], [],
                [self.state[p]["step"] for p in ps], lr=group["lr"], alpha=group["alpha"],
                eps=group["eps"], weight_decay=group["weight_decay"], momentum=0.0,
                centered=False)

RMSprop.step = torch.no_grad()(step)
"""),
}
# Routes the reading of the source sees too, run here by the guard alone (the old 03 tripwires
# caught them): constructing, stepping or subclassing any torch optimizer, its functional kernels.
AT_RUN_TIME = {
    "a torch SGD inside": ("SGD", (
        "class SGD(torch.optim.Optimizer):\n"
        "    def __init__(self, params, lr=1e-3, momentum=0.0, nesterov=False, "
        "weight_decay=0.0):\n"
        "        self.inner = torch.optim.SGD(params, lr=lr, momentum=momentum,\n"
        "                                     nesterov=nesterov, weight_decay=weight_decay)\n"
        "        super().__init__(self.inner.param_groups, self.inner.defaults)\n\n"
        "    def step(self, closure=None):\n"
        "        return self.inner.step(closure)\n"), "torch.optim.SGD.__init__"),
    "torch's Adagrad on my state": ("Adagrad", DELEGATING["Adagrad"][0][0],
                                    "torch.optim.Adagrad.__init__"),
    "torch's RMSprop.step borrowed": ("RMSprop", DELEGATING["RMSprop"][0][0],
                                      "torch.optim.RMSprop.step"),
    "functional adam": ("Adam", DELEGATING["Adam"][0][0], "_single_tensor_adam"),
    "a subclass found by __subclasses__": ("AdamW", DELEGATING["AdamW"][0][0],
                                           "subclasses torch.optim.Adam"),
    "another torch optimizer (ASGD) for the update": ("SGD", _edit(
        "SGD", ("                p.add_(d, alpha=-lr)",
                "                p.grad = d\n"
                "                torch.optim.ASGD([p], lr=lr, lambd=0.0, alpha=0.0).step()")),
        "torch.optim.ASGD"),
}


@pytest.mark.parametrize("name", list(DELEGATING))
def test_delegating_to_torch_loses_the_points(name):
    cells, what = DELEGATING[name]
    assert what in hidden_verdict(ASSIGNMENT, TEST_OF[name], cells_for(name, cells[0]))


@pytest.mark.parametrize("route", list(REBOUND))
def test_a_scratch_cell_that_rebinds_or_patches_a_graded_name_loses_the_points(route):
    name, cell = REBOUND[route]
    cells = [*cells_for(name, REFERENCE[name]), cell]
    assert hidden_verdict(ASSIGNMENT, TEST_OF[name], cells) != ""


@pytest.mark.parametrize("route", list(AT_RUN_TIME))
def test_the_guard_alone_catches_the_routes_the_old_tripwires_caught(route):
    name, source, what = AT_RUN_TIME[route]
    verdict = runtime_verdict(TEST_OF[name], cells_for(name, source))
    assert what in verdict, verdict


SCRATCH = [  # what a student tries beside the exercises
    """import sys
w = torch.randn(5, requires_grad=True)
mine, theirs = w.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
for opt, p in ((Adam([mine], lr=0.1), mine), (torch.optim.Adam([theirs], lr=0.1), theirs)):
    for _ in range(3):
        opt.zero_grad()
        (p ** 2).sum().backward()
        torch.nn.utils.clip_grad_norm_([p], 1.0)
        opt.step()
print("Adam vs torch:", (mine - theirs).abs().max().item(), file=sys.stderr)
""",
    """import torch.nn.functional as F

model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))
for m in model.modules():
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
x = F.dropout(torch.randn(16, 4), p=0.1)
for make in (SGD, torch.optim.SGD, Adagrad, torch.optim.Adagrad, RMSprop, torch.optim.RMSprop,
             AdamW, torch.optim.AdamW):
    opt = make(model.parameters(), lr=1e-2)
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
""",
    """def compare(func, init, steps=5):
    '''The parameter after `steps` steps of the optimizer func([w]) from w = init.'''
    w = init.clone().requires_grad_()
    opt = func([w])
    for _ in range(steps):
        opt.zero_grad()
        w.sum().backward()
        opt.step()
    return w.detach()


grad = compare(lambda p: SGD(p, lr=0.1, momentum=0.9), torch.ones(3)) - compare(
    lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9), torch.ones(3))
print("SGD vs torch:", grad)
""",
]
ORDINARY_NAMES = {  # the exercise's own code with helpers named like torch's things, and
    # arithmetic in another order than torch's (rounding differs: the tolerance's reason)
    "SGD": _edit("SGD", ("class SGD(", "import sys\n\n\ndef decayed(grad, param, weight_decay):\n"
                         '    """The gradient plus the coupled L2 term."""\n'
                         "    return grad.add(param, alpha=weight_decay) if weight_decay else "
                         "grad\n\n\nclass SGD("),
                 ("d = p.grad\n", "d = decayed(p.grad, p, wd)\n"),
                 ("                if wd != 0:\n                    d = d.add(p, alpha=wd)  "
                  "# coupled L2: the gradient of wd/2 ||p||^2\n", "")),
    "RMSprop": _edit("RMSprop", ('p.addcdiv_(g, denom, value=-group["lr"])',
                                 'p.sub_(group["lr"] * g / denom)')),
    "Adam": _edit("Adam", ('                    state["exp_avg"] = torch.zeros_like(p)\n'
                           '                    state["exp_avg_sq"] = torch.zeros_like(p)\n',
                           "                    init = torch.zeros_like(p)\n"
                           '                    state["exp_avg"], state["exp_avg_sq"] = init, '
                           "init.clone()\n"),
                  ('                denom = (v.sqrt() / (1 - beta2**t) ** 0.5).add_(group["eps"])\n'
                   "                p.addcdiv_(m, denom, value=-lr / (1 - beta1**t))",
                   "                root = (1 - beta2**t) ** 0.5  # torch.s update, rearranged\n"
                   '                denom = v.sqrt().add_(group["eps"] * root)\n'
                   "                p.addcdiv_(m, denom, value=-lr * root / (1 - beta1**t))")),
}


@pytest.mark.parametrize("name", GRADED)
def test_correct_work_with_scratch_cells_and_ordinary_names_keeps_its_points(name):
    cells = [ORDINARY_NAMES.get(n, REFERENCE[n]) if n == name else REFERENCE[n] for n in GRADED]
    assert hidden_verdict(ASSIGNMENT, TEST_OF[name], [*cells, *SCRATCH]) == ""


# -- the optional stretch ----------------------------------------------------------------------
def test_run_all_with_the_stretch_left_blank_reaches_the_end():
    """The stretch check says it was skipped instead of failing, and no later cell uses it."""
    nb = nbformat.read(release_notebook(ASSIGNMENT), as_version=4)
    ids = [grade_id(c) for c in nb.cells]
    blank = nb.cells[ids.index("foreach-solution")].source
    check = nb.cells[ids.index("foreach-check")].source
    printed = io.StringIO()
    namespace = {"__name__": "__main__", "DEVICE": "cpu"}
    with contextlib.redirect_stdout(printed):
        for source in ("import time\nfrom gradschool.checks import assert_close\n" + SETUP,
                       REFERENCE["Adam"], blank, check):
            exec(compile(source, "<cell>", "exec"), namespace)
    assert "not attempted" in printed.getvalue()
    defined = {"adam_foreach_step_", "ForeachAdam", "adam_run", "many_tensors", "vectorized"}
    later = "\n".join(c.source for c in nb.cells[ids.index("foreach-check") + 1:]
                      if c.cell_type == "code")
    assert not [name for name in defined if name in later]


# -- end to end: `gradschool grade` ------------------------------------------------------------
def _graded(tmp_path, code: dict[str, str], extra: tuple[str, ...] = ()) -> dict:
    """Grade the release filled with ``code``, with ``extra`` scratch cells after the AdamW test
    cell; return the results by graded name."""
    nb = fill_in(ASSIGNMENT, code)
    after = [grade_id(c) for c in nb.cells].index("decoupled-adamw-tests") + 1
    nb.cells[after:after] = [nbformat.v4.new_code_cell(source) for source in extra]
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    report = grade_json(path, "--assignment", ASSIGNMENT)
    return report, results_by_function(report, ASSIGNMENT)


def test_the_solution_with_scratch_cells_gets_full_marks(tmp_path):
    report, results = _graded(tmp_path, REFERENCE, tuple(SCRATCH))
    assert report["max_score"] > 0 and report["score"] == report["max_score"], report
    assert all(results[name]["status"] == "passed" for name in GRADED), results
    assert [t["status"] for t in report["tests"]].count("manual") == 4


def test_released_stub_gets_zero():
    assert "NotImplementedError" in grade_released_stub(ASSIGNMENT)


def test_two_mistakes_in_two_exercises_cost_exactly_those_two_tests(tmp_path):
    """A velocity-form SGD and an Adam with eps inside the square root: SGD's and Adam's tests
    fail; Adagrad, RMSprop and AdamW (on the wrong Adam) keep their points."""
    report, results = _graded(tmp_path, {**REFERENCE, "SGD": VELOCITY_SGD,
                                         "Adam": ADAM_EPS_INSIDE})
    failed = {name for name in GRADED if results[name]["status"] != "passed"}
    assert failed == {"SGD", "Adam"}, results
    lost = sum(results[name]["max_score"] - results[name]["score"] for name in GRADED)
    assert lost == 4 + 5 and report["max_score"] - report["score"] == lost, report
