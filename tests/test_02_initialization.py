"""02-initialization: the graders give full marks to the solution, zero to the blank release, and
fail known-wrong or delegating implementations of every graded function, one test at a time.

Two levels. In process and fast (no kernel, well under a second each): every single mistake goes
through the grader's verdict (``hidden_verdict``: delegation reading and hidden checks, through
the grader's own probe runner) and through the notebook's visible test cell (``visible_verdict``),
with the reference code for the other exercises; both must fail it, so that ``gradschool check``
and the grade agree. End to end, three ``gradschool grade`` runs (each runs the whole notebook):
the solution with a student's realistic scratch cells (full marks), the blank release (zero), and
a notebook with two exercises wrong (exactly their two tests lost).
"""

from __future__ import annotations

import nbformat
import pytest
from submissions import (
    SETUP,
    fill_in,
    grade_json,
    grade_released_stub,
    hidden_verdict,
    locked_sources,
    reference_code,
    results_by_function,
    solution_cells,
    solution_notebook,
)

ASSIGNMENT = "02-initialization"
FANS, GAIN, PREDICT = "compute_fans", "calculate_gain", "predict_variances"
XU, XN, KU, KN = "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"
REFERENCE = reference_code(ASSIGNMENT)  # one cell defines XU and XN, one KU and KN
TEST_OF = {FANS: "fans-tests", GAIN: "gain-tests", XU: "xavier-tests", XN: "xavier-tests",
           KU: "kaiming-tests", KN: "kaiming-tests", PREDICT: "predict-tests"}
EXERCISES = [FANS, GAIN, XU, KU, PREDICT]  # one solution cell each, in notebook order
#: What the notebook's setup cell gives the solution cells (their annotations need it).
CONTEXT = (SETUP + "from collections.abc import Callable, Sequence\n",)


def _edit(name: str, *pairs: str) -> str:
    """The reference cell of ``name`` with each ``old`` (which must occur once) replaced by
    ``new``."""
    source = REFERENCE[name]
    for old, new in zip(pairs[::2], pairs[1::2], strict=True):
        assert source.count(old) == 1, f"{old!r} is not once in the reference {name}"
        source = source.replace(old, new)
    return source


def cells_with(**cells: str) -> list[str]:
    """The five exercise cells in notebook order: the reference, except those given by name."""
    return [cells.get(name, REFERENCE[name]) for name in EXERCISES]


def visible_verdict(test_id: str, cells: list[str]) -> str:
    """What the notebook's visible test cell ``test_id`` says after the setup's imports, the
    locked helpers and ``cells``: "" when it passes, else the exception it raised."""
    setup, helpers, test = locked_sources(ASSIGNMENT, "setup", "helpers", test_id)
    namespace: dict = {}
    for source in (setup[setup.index("import copy"):setup.index("DEVICE = ")], helpers, *cells):
        exec(compile(source, "<cell>", "exec"), namespace)
    try:
        exec(compile(test, f"<{test_id}>", "exec"), namespace)
    except Exception as exc:  # noqa: BLE001 - a test cell that raises anything fails
        return f"{type(exc).__name__}: {exc}"
    return ""


def verdicts(test_id: str, cells: list[str]) -> tuple[str, str]:
    """(visible, hidden) verdicts of ``test_id``."""
    return (visible_verdict(test_id, cells),
            hidden_verdict(ASSIGNMENT, test_id, cells, context=CONTEXT))


# -- single mistakes: (exercise cell, what is wrong) -> that cell's source ----------------------
FANS_RETURN = "return dims[1] * receptive_field, dims[0] * receptive_field"
GAIN_SLOPE = """        if param is None:
            slope = 0.01
        elif isinstance(param, bool) or not isinstance(param, int | float):
            raise ValueError(f"negative slope {param!r} is not a number")
        else:
            slope = param"""
XU_BOUND = "bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))"
XN_DRAW = "tensor.normal_(0.0, std, generator=generator)"
KN_STD = "std = _kaiming_std(tensor.shape, a, mode, nonlinearity)"
KU_BOUND = "bound = math.sqrt(3.0) * _kaiming_std(tensor.shape, a, mode, nonlinearity)"
PREDICT_MOMENT = "return torch.trapezoid(activation(math.sqrt(q) * u) ** 2 * density, u).item()"
MISTAKES = {
    (FANS, "fan_in and fan_out swapped"): _edit(
        FANS, FANS_RETURN, "return dims[0] * receptive_field, dims[1] * receptive_field"),
    (FANS, "the receptive field forgotten"): _edit(FANS, FANS_RETURN, "return dims[1], dims[0]"),
    (FANS, "fans as tensors, not ints"): _edit(
        FANS, FANS_RETURN, "return torch.tensor(dims[1] * receptive_field), "
                           "torch.tensor(dims[0] * receptive_field)"),
    (FANS, "1-D shapes padded instead of a ValueError"): _edit(
        FANS, """if len(dims) < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions, got shape {dims}")""",
        "dims += [1] * (2 - len(dims))"),
    (GAIN, "tanh's gain 1"): _edit(GAIN, "return 5.0 / 3.0", "return 1.0"),
    (GAIN, "leaky_relu's slope ignored"): _edit(
        GAIN, "return math.sqrt(2.0 / (1.0 + slope**2))", "return math.sqrt(2.0)"),
    (GAIN, "param or 0.01 (a slope of 0 becomes 0.01)"): _edit(
        GAIN, GAIN_SLOPE, "        slope = param or 0.01\n        if isinstance(param, bool) or "
        "not isinstance(slope, int | float):\n            raise ValueError(param)"),
    (GAIN, "True accepted as a slope"): _edit(
        GAIN, "elif isinstance(param, bool) or not isinstance(param, int | float):",
        "elif not isinstance(param, int | float):"),
    (GAIN, "names matched case-insensitively"): _edit(
        GAIN, "    linear_like = (",
        "    nonlinearity = nonlinearity.lower()\n    linear_like = ("),
    (XU, "xavier_uniform_: the std used as the bound"): _edit(
        XU, XU_BOUND, "bound = gain * math.sqrt(2.0 / (fan_in + fan_out))"),
    (XU, "xavier_uniform_: fan_in only"): _edit(
        XU, XU_BOUND, "bound = gain * math.sqrt(3.0 / fan_in)"),
    (XU, "xavier_uniform_: a new tensor, the argument untouched"): _edit(
        XU, """    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)
    return tensor""", "    return torch.empty_like(tensor).uniform_(-bound, bound, "
                      "generator=generator)"),
    (XU, "xavier_uniform_: no torch.no_grad() (fails on a Parameter)"): _edit(
        XU, """    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)""",
        """    tensor.uniform_(-bound, bound, generator=generator)"""),
    (XU, "xavier_uniform_: the generator ignored"): _edit(
        XU, "tensor.uniform_(-bound, bound, generator=generator)",
        "tensor.uniform_(-bound, bound)"),
    (XN, "xavier_normal_: a uniform draw with the normal's variance"): _edit(
        XU, XN_DRAW, "tensor.uniform_(-math.sqrt(3) * std, math.sqrt(3) * std, "
                     "generator=generator)"),
    (XN, "xavier_normal_: the gain ignored"): _edit(
        XU, "std = gain * math.sqrt(2.0 / (fan_in + fan_out))",
        "std = math.sqrt(2.0 / (fan_in + fan_out))"),
    (KU, "kaiming_uniform_: no sqrt(3) in the bound"): _edit(
        KU, KU_BOUND, "bound = _kaiming_std(tensor.shape, a, mode, nonlinearity)"),
    (KU, "kaiming_uniform_: the global generator"): _edit(
        KU, "tensor.uniform_(-bound, bound, generator=generator)",
        "tensor.uniform_(-bound, bound)"),
    (KU, "an unknown mode taken as fan_out"): _edit(
        KU, """    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
""", ""),
    (KU, "default nonlinearity relu (the slope a ignored)"): REFERENCE[KU].replace(
        'nonlinearity: str = "leaky_relu"', 'nonlinearity: str = "relu"'),  # in both functions
    (KN, "kaiming_normal_: mode ignored"): _edit(
        KU, KN_STD, 'std = _kaiming_std(tensor.shape, a, "fan_in", nonlinearity)'),
    (KN, "kaiming_normal_: the gain forgotten"): _edit(
        KU, KN_STD, "std = _kaiming_std(tensor.shape, a, mode, 'linear')"),
    (PREDICT, "the variance of activation(z), not its second moment"): _edit(
        PREDICT, PREDICT_MOMENT, "h = activation(math.sqrt(q) * u)\n        mean = "
        "torch.trapezoid(h * density, u).item()\n        return torch.trapezoid(h**2 * density, "
        "u).item() - mean**2"),
    (PREDICT, "Monte Carlo with 10^6 samples"): _edit(
        PREDICT, PREDICT_MOMENT, "z = math.sqrt(q) * torch.randn(10**6, dtype=torch.float64, "
        "generator=torch.Generator().manual_seed(0))\n        return (activation(z) ** 2)"
        ".mean().item()"),
    (PREDICT, "ReLU's q / 2 for every activation"): _edit(PREDICT, PREDICT_MOMENT, "return q / 2"),
    (PREDICT, "q0 left out of q_1"): _edit(
        PREDICT, "variances, moment = [], float(q0)", "variances, moment = [], 1.0"),
    (PREDICT, "a grid on [-3, 3] that misses the tails"): _edit(
        PREDICT, "u = torch.linspace(-10.0, 10.0, 20_001", "u = torch.linspace(-3.0, 3.0, 20_001"),
}


def _cells(function: str, source: str) -> list[str]:
    """The exercise cells with the cell defining ``function`` replaced by ``source``."""
    cell = {XN: XU, KN: KU}.get(function, function)
    return cells_with(**{cell: source})


def test_graded_functions_are_the_issue_api():
    names = set(solution_cells(nbformat.read(solution_notebook(ASSIGNMENT), as_version=4)))
    assert names >= {FANS, GAIN, XU, XN, KU, KN, PREDICT}


@pytest.mark.parametrize("test_id", sorted(set(TEST_OF.values())))
def test_reference_passes_the_visible_and_the_hidden_checks(test_id):
    assert verdicts(test_id, cells_with()) == ("", "")


@pytest.mark.parametrize("function, mistake", list(MISTAKES), ids=[m for _, m in MISTAKES])
def test_each_mistake_fails_its_test_visibly_and_hidden(function, mistake):
    visible, hidden = verdicts(TEST_OF[function], _cells(function, MISTAKES[function, mistake]))
    assert visible and hidden, (visible, hidden)
    assert not any(v.startswith(("NameError", "SyntaxError")) for v in (visible, hidden)), (
        "the edit broke the cell instead of planting the mistake", visible, hidden)


def test_the_messages_name_the_likely_mistake():
    tanh = MISTAKES[GAIN, "tanh's gain 1"]
    assert "5/3, not 1" in hidden_verdict(ASSIGNMENT, "gain-tests", _cells(GAIN, tanh),
                                          context=CONTEXT)
    uniform = MISTAKES[XN, "xavier_normal_: a uniform draw with the normal's variance"]
    assert "beyond 2 std" in hidden_verdict(ASSIGNMENT, "xavier-tests", _cells(XN, uniform),
                                           context=CONTEXT)
    variance = MISTAKES[PREDICT, "the variance of activation(z), not its second moment"]
    assert "not the variance" in hidden_verdict(ASSIGNMENT, "predict-tests",
                                                _cells(PREDICT, variance), context=CONTEXT)


# -- one mistake costs one test ----------------------------------------------------------------
@pytest.mark.parametrize("fans, gain", [
    ("fan_in and fan_out swapped", "tanh's gain 1"),
    ("the receptive field forgotten", "leaky_relu's slope ignored"),
])
def test_wrong_fans_and_gains_cost_the_initializers_nothing(fans, gain):
    cells = cells_with(**{FANS: MISTAKES[FANS, fans], GAIN: MISTAKES[GAIN, gain]})
    for test_id in ("xavier-tests", "kaiming-tests", "predict-tests"):
        assert verdicts(test_id, cells) == ("", ""), test_id


# -- delegation --------------------------------------------------------------------------------
DELEGATIONS = {
    "compute_fans through torch's private helper": (FANS, """
def compute_fans(shape):
    meta = torch.empty(tuple(shape), device="meta")
    return torch.nn.init._calculate_fan_in_and_fan_out(meta)
"""),
    "calculate_gain through an aliased import": (GAIN, """
from torch.nn import init as torch_init


def calculate_gain(nonlinearity, param=None):
    return float(torch_init.calculate_gain(nonlinearity, param))
"""),
    "xavier through getattr with a string": (XU, """
def xavier_uniform_(tensor, gain=1.0, generator=None):
    return getattr(torch.nn.init, "xavier_uniform_")(tensor, gain, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    return getattr(torch.nn.init, "xavier_normal_")(tensor, gain, generator)
"""),
    "kaiming through module-level aliases": (KU, """
layers = torch.nn
reference = layers.init


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    return reference.kaiming_uniform_(tensor, a, mode, nonlinearity, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    return reference.kaiming_normal_(tensor, a, mode, nonlinearity, generator)
"""),
    "kaiming through getattr with a computed name": (KU, """
def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    return getattr(nn.init, "kaiming_" + "uniform_")(tensor, a, mode, nonlinearity, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    return getattr(nn.init, "kaiming_" + "normal_")(tensor, a, mode, nonlinearity, generator)
"""),
    # no forbidden name in the code: constructing nn.Linear runs torch.nn.init inside torch
    "kaiming_uniform_ copying a fresh nn.Linear's weight": (KU, REFERENCE[KU] + """

def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    layer = torch.nn.Linear(tensor.shape[1], tensor.shape[0])
    with torch.no_grad():
        tensor.copy_(layer.weight)
    return tensor
"""),
}
#: Cells a student adds at the end, after a correct solution, that make a graded name torch's.
REBINDINGS = {
    "xavier_uniform_ rebound to torch's": ("xavier-tests", "w = torch.empty(3, 4)\n"
                                           "xavier_uniform_ = torch.nn.init.xavier_uniform_\n"),
    "compute_fans rebound to a torch lambda": (
        "fans-tests", "compute_fans = lambda shape: torch.nn.init._calculate_fan_in_and_fan_out("
                      "torch.empty(shape, device='meta'))\n"),
    "calculate_gain imported over the student's": (
        "gain-tests", "from torch.nn.init import calculate_gain\n"),
}


@pytest.mark.parametrize("route", list(DELEGATIONS))
def test_each_delegation_route_loses_the_exercise(route):
    function, source = DELEGATIONS[route]
    message = hidden_verdict(ASSIGNMENT, TEST_OF[function], _cells(function, source),
                             context=CONTEXT)
    assert "torch.nn.init" in message or "computed name" in message, message


@pytest.mark.parametrize("route", list(REBINDINGS))
def test_a_later_cell_that_rebinds_a_graded_name_is_caught(route):
    test_id, scratch = REBINDINGS[route]
    message = hidden_verdict(ASSIGNMENT, test_id, [*cells_with(), scratch], context=CONTEXT)
    assert "torch.nn.init" in message, message


# -- fair grading: correct work with a student's ordinary scratch work -------------------------
#: A correct exercise 3 written differently: a helper with parameters named init and func.
FAIR_XAVIER = """
def _fill(tensor, init, generator, func=None):
    with torch.no_grad():
        init(tensor, generator)
    return tensor


def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = compute_fans(tensor.shape)
    bound = math.sqrt(3.0) * gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _fill(tensor, lambda t, g: t.uniform_(-bound, bound, generator=g), generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = compute_fans(tensor.shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return _fill(tensor, lambda t, g: t.normal_(0.0, std, generator=g), generator)
"""
#: A correct exercise 5 with a local named grad and a helper taking func.
FAIR_PREDICT = _edit(
    PREDICT, "    def second_moment(q: float) -> float:  # E[activation(z)^2], z ~ N(0, q)\n"
             "        " + PREDICT_MOMENT,
    "    def second_moment(q, func=activation):\n        grad = func(math.sqrt(q) * u)\n"
    "        return torch.trapezoid(grad**2 * density, u).item()")
#: Scratch cells as a student writes them: the own functions beside torch's, sys, modules().
SCRATCH_MIDDLE = """
import sys
from torch.nn import init

w = torch.empty(64, 32, 3)
mine = xavier_uniform_(w.clone(), gain=calculate_gain("tanh"))
theirs = init.xavier_uniform_(w.clone(), gain=init.calculate_gain("tanh"))
print(mine.std(), theirs.std(), compute_fans(w.shape), file=sys.stderr)
model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
for m in model.modules():
    if isinstance(m, torch.nn.Linear):
        kaiming_normal_(m.weight, nonlinearity="relu")
        torch.nn.init.zeros_(m.bias)
"""
SCRATCH_END = """
def compare(func, init=torch.nn.init.kaiming_normal_, grad=None):
    return func(torch.empty(30, 20)).std() / init(torch.empty(30, 20)).std()


print(compare(kaiming_normal_), predict_variances(torch.tanh, [30], [0.2]))
"""


@pytest.mark.parametrize("test_id", sorted(set(TEST_OF.values())))
def test_correct_work_with_scratch_cells_and_ordinary_names_passes(test_id):
    cells = cells_with(**{XU: FAIR_XAVIER, PREDICT: FAIR_PREDICT})
    cells[4:4] = [SCRATCH_MIDDLE]  # after exercise 4, before exercise 5
    assert hidden_verdict(ASSIGNMENT, test_id, [*cells, SCRATCH_END], context=CONTEXT) == ""


# -- end to end: `gradschool grade` ------------------------------------------------------------
def _grade(tmp_path, code: dict[str, str], scratch: dict[str, str] | None = None) -> dict:
    """Grade the release filled with ``code``, with each ``scratch`` cell inserted after the
    test cell whose grade_id names it ("end": at the end)."""
    nb = fill_in(ASSIGNMENT, code)
    for after, source in (scratch or {}).items():
        index = len(nb.cells) if after == "end" else 1 + next(
            i for i, c in enumerate(nb.cells)
            if c.metadata.get("nbgrader", {}).get("grade_id") == after)
        nb.cells.insert(index, nbformat.v4.new_code_cell(source))
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    return grade_json(path, "--assignment", ASSIGNMENT)


def test_solution_with_scratch_work_gets_full_marks(tmp_path):
    code = {**REFERENCE, XU: FAIR_XAVIER, PREDICT: FAIR_PREDICT}
    report = _grade(tmp_path, code, {"kaiming-tests": SCRATCH_MIDDLE, "end": SCRATCH_END})
    # max_score counts the autograded points (14); the three written answers (6) wait for a person
    assert report["max_score"] == 14 and report["score"] == 14, report
    statuses = {t["id"]: t["status"] for t in report["tests"]}
    assert statuses == {"fans-tests": "passed", "gain-tests": "passed",
                        "xavier-tests": "passed", "kaiming-tests": "passed",
                        "predict-tests": "passed", "he-answer": "manual",
                        "residual-answer": "manual", "gelu-answer": "manual"}, statuses


def test_released_stub_gets_zero():
    grade_released_stub(ASSIGNMENT)


def test_two_wrong_exercises_lose_exactly_their_two_tests(tmp_path):
    """Wrong fans and a wrong gain, which the initializers call: only exercises 1 and 2 lose."""
    code = {**REFERENCE, FANS: MISTAKES[FANS, "fan_in and fan_out swapped"],
            GAIN: MISTAKES[GAIN, "tanh's gain 1"]}
    report = _grade(tmp_path, code)
    results = results_by_function(report, ASSIGNMENT)
    assert {f: results[f]["status"] for f in EXERCISES} == {
        FANS: "failed", GAIN: "failed", XU: "passed", KU: "passed", PREDICT: "passed"}, report
    assert report["score"] == 14 - 2 - 2, report
