"""04-dropout: full marks for the solution, zero for the blank release, and each known mistake,
each delegation route, costs its own test and no other; fair scratch work costs nothing.

Two levels. In process and fast: the grader's verdict for one test (``hidden_verdict``: the
delegation reading and the hidden checks through the grader's probe runner) and the visible test
cell run on the same cells (``visible_verdict``), for every single mistake, with the reference
code for the other exercises. End to end, ``gradschool grade`` runs three times: the solution
with realistic scratch cells (full marks), the blank release (zero), and a notebook with two
mistakes in two exercises, which must lose exactly those two tests.
"""

from __future__ import annotations

import functools
import linecache

import nbformat
import pytest
from submissions import (
    InProcessKernel,
    edited,
    fill_in,
    grade_here,
    grade_released_stub,
    hidden_verdict,
    locked_sources,
    reference_code,
    results_by_function,
    solution_cells,
    solution_notebook,
)

ASSIGNMENT = "04-dropout"
REFERENCE = reference_code(ASSIGNMENT)
TEST_OF = {"dropout": "inverted-dropout-tests", "classic_dropout": "classic-dropout-tests",
           "Dropout": "dropout-module-tests", "mc_dropout_predict": "mc-dropout-tests",
           "expected_dropout_loss": "dropout-ridge-tests"}
FUNCTIONS = tuple(TEST_OF)  # in notebook order


_edit = functools.partial(edited, REFERENCE)  # a mistake as an edit of the reference


def cells(*extra: str, **code: str) -> list[str]:
    """The student's code cells: the reference of every exercise, ``code[name]`` in place of
    name's, then the ``extra`` cells (scratch work at the end of the notebook)."""
    return [code.get(name, REFERENCE[name]) for name in FUNCTIONS] + list(extra)


@functools.cache
def _setup() -> str:
    """The notebook's setup cell, without the Colab install line (a trusted context)."""
    source = locked_sources(ASSIGNMENT, "setup")[0]
    return "\n".join("    pass" if line.strip().startswith("%pip") else line
                     for line in source.splitlines())


def visible_verdict(test_id: str, student: list[str], source: str | None = None) -> str:
    """What the visible test cell ``test_id`` (or ``source`` in its place) says about the
    student's cells: "" when it passes, else the error it raises (what ``gradschool check``
    prints for it)."""
    kernel = InProcessKernel(*student, context=(_setup(),))
    source = source or locked_sources(ASSIGNMENT, test_id)[0]
    name = f"<visible {test_id}>"
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    try:
        kernel._run(compile(source, name, "exec"))
    except AssertionError as exc:
        return str(exc) or "AssertionError"
    except Exception as exc:  # noqa: BLE001 - the student's code raised: the cell fails
        return f"{type(exc).__name__}: {exc}"
    return ""


def verdicts(test_id: str, student: list[str]) -> tuple[str, str]:
    """(hidden, visible) verdicts of one test."""
    return hidden_verdict(ASSIGNMENT, test_id, student), visible_verdict(test_id, student)


# -- the reference, and correct code written differently ---------------------------------------
ALTERNATIVES = {
    "dropout": """
def _scale(x, keep, p, func=torch.mul, init=None, grad=None):
    # a helper with parameters named like torch's things: ordinary names, not delegation
    return func(x, keep.to(x.dtype)) * (1.0 / (1 - p))

def dropout(x, p=0.5, training=True, generator=None):
    if p < 0 or p > 1:
        raise ValueError(p)
    if not training or p == 0:
        return x
    if p == 1:
        return x * 0
    keep = torch.empty_like(x).bernoulli_(1 - p, generator=generator)
    return _scale(x, keep, p)
""",
    "classic_dropout": """
def classic_dropout(x, p=0.5, training=True, generator=None):
    return dropout(x, p, training, generator) * (1 - p)  # reuses dropout, in both modes
""",
    "Dropout": """
class Dropout(nn.Module):
    def __init__(self, p=0.5, generator=None):
        super(Dropout, self).__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"p = {p}")
        self.p = p
        self.generator = generator

    def forward(self, x):  # its own masks, not dropout's
        if not self.training or self.p == 0:
            return x
        if self.p == 1:
            return torch.zeros_like(x)
        u = torch.rand(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        return torch.where(u < self.p, torch.zeros_like(x), x / (1 - self.p))
""",
    "mc_dropout_predict": """
import sys

def mc_dropout_predict(model, x, n_samples=100):
    if n_samples < 2:
        raise ValueError(n_samples)
    modes = [(m, m.training) for m in model.modules()]
    for m in model.modules():
        m.train(isinstance(m, Dropout))
    samples = []
    with torch.inference_mode():
        for _ in range(n_samples):
            samples.append(torch.softmax(model(x), dim=-1))
    for m, mode in modes:
        m.training = mode
    probs = torch.stack(samples)
    print("passes:", n_samples, file=sys.stderr)
    return probs.mean(0), probs.std(0, unbiased=False)
""",
    "expected_dropout_loss": """
def expected_dropout_loss(X, y, w, p):
    if not (0 <= p < 1):
        raise ValueError(p)
    mean = X @ w
    variance = p / (1 - p) * torch.einsum("nd,d->n", X**2, w**2)
    return ((y - mean) ** 2 + variance).sum()
""",
}


def test_graded_functions_are_the_issue_api():
    names = set(solution_cells(nbformat.read(solution_notebook(ASSIGNMENT), as_version=4)))
    assert names == set(FUNCTIONS) == set(ALTERNATIVES)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_reference_passes_hidden_and_visible_checks(function):
    assert verdicts(TEST_OF[function], cells()) == ("", "")


@pytest.mark.parametrize("function", FUNCTIONS)
def test_correct_code_written_differently_passes(function):
    student = cells(**{function: ALTERNATIVES[function]})
    assert verdicts(TEST_OF[function], student) == ("", "")


# -- single mistakes: (wrong source, a fragment of the grader's message) -----------------------
DROP = "    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p\n"
WRONG = {
    "dropout": {
        "keep probability used as the drop probability": (_edit(
            "dropout", ">= p\n    return x * keep", "< p\n    return x * keep"), "kept by"),
        "no rescaling by 1 / (1 - p)": (_edit(
            "dropout", "return x * keep / (1 - p)", "return x * keep"), "kept entries"),
        "one mask per feature, shared by all samples": (_edit(
            "dropout", "torch.rand(x.shape,", "torch.rand(x.shape[-1:],"), "one mask shared"),
        "the input modified in place": (_edit(
            "dropout", "return x * keep / (1 - p)", "return x.mul_(keep).div_(1 - p)"),
            "must not change"),
        "eval mode returns a copy": (_edit(
            "dropout", "if not training or p == 0.0:\n        return x",
            "if not training or p == 0.0:\n        return x.clone()"), "is x"),
        "0 / 0 at p = 1": (_edit(
            "dropout", "    if p == 1.0:\n        return torch.zeros_like(x)\n", ""), "no NaN"),
        "the global generator, never the given one": (_edit(
            "dropout", "generator=generator, ", ""), "generator"),
        "the mask made on the CPU": (_edit(
            "dropout", ", device=x.device", ""), "device"),
        "p checked in training only": (_edit(
            "dropout", "    if not 0.0 <= p <= 1.0:\n        raise ValueError(f\"dropout "
            "probability p must be in [0, 1], got {p}\")\n    if not training or p == 0.0:\n"
            "        return x\n", "    if not training or p == 0.0:\n        return x\n"
            "    if not 0.0 <= p <= 1.0:\n        raise ValueError(p)\n"), "ValueError"),
    },
    "classic_dropout": {
        "the test-time scaling applied in training": (_edit(
            "classic_dropout", "return x * keep", "return x * keep * (1 - p)"),
            "kept entries"),
        "the input modified in place": (_edit(
            "classic_dropout", "return x * keep", "return x.mul_(keep)"), "must not change"),
        "no scaling in eval mode": (_edit(
            "classic_dropout", "return x * (1 - p)", "return x"), "(1 - p) x"),
        "built on dropout, without handing on the generator": ("""
def classic_dropout(x, p=0.5, training=True, generator=None):
    return dropout(x, p, training) * (1 - p)
""", "generator"),
    },
    "Dropout": {
        "ignores the training flag": (_edit(
            "Dropout", "dropout(x, self.p, self.training, self.generator)",
            "dropout(x, self.p, True, self.generator)"), "model.eval()"),
        "ignores its generator": (_edit(
            "Dropout", "dropout(x, self.p, self.training, self.generator)",
            "dropout(x, self.p, self.training)"), "generator"),
        "the generator kept under another name": (_edit(
            "Dropout", "self.generator = generator", "self.gen = generator",
            "self.training, self.generator)", "self.training, self.gen)"), "`generator`"),
        "p read once, at construction": (_edit(
            "Dropout", "        self.p = p\n", "        self.p = p\n        self._p = p\n",
            "dropout(x, self.p,", "dropout(x, self._p,"), "layer.p"),
        "no check of p": (_edit(
            "Dropout", "        if not 0.0 <= p <= 1.0:\n            raise ValueError(f\"dropout "
            "probability p must be in [0, 1], got {p}\")\n", ""), "ValueError"),
        "the keep probability handed to dropout": (_edit(
            "Dropout", "dropout(x, self.p,", "dropout(x, 1 - self.p,"), "kept entries"),
    },
    "mc_dropout_predict": {
        "averages the logits": (_edit(
            "mc_dropout_predict", "model(x).softmax(dim=-1) for _",
            "model(x) for _", "return probs.mean(dim=0), probs.std(dim=0)",
            "return probs.mean(dim=0).softmax(-1), probs.softmax(-1).std(dim=0)"), "logits"),
        "every module in train mode, never restored": ("""
def mc_dropout_predict(model, x, n_samples=100):
    if n_samples < 2:
        raise ValueError(n_samples)
    model.train()
    with torch.no_grad():
        probs = torch.stack([model(x).softmax(-1) for _ in range(n_samples)])
    return probs.mean(0), probs.std(0)
""", "BatchNorm"),
        "the variance instead of the std": (_edit(
            "mc_dropout_predict", "probs.std(dim=0)", "probs.var(dim=0)"), "std"),
        "train mode for all but BatchNorm": (_edit(
            "mc_dropout_predict", "        model.eval()\n        for m in model.modules():\n"
            "            if isinstance(m, Dropout):\n                m.train()\n",
            "        model.train()\n        for m in model.modules():\n"
            "            if isinstance(m, nn.BatchNorm1d):\n                m.eval()\n"),
            "other than dropout"),
        "torch's Dropout class instead of yours": (_edit(
            "mc_dropout_predict", "isinstance(m, Dropout)", "isinstance(m, nn.Dropout)"), "mean"),
        "the top-level mode restored, not each module's": (_edit(
            "mc_dropout_predict", "modes = {m: m.training for m in model.modules()}",
            "modes = {model: model.training}", "for m, mode in modes.items():\n"
            "            m.training = mode", "for m, mode in modes.items():\n"
            "            m.train(mode)"), "training flags"),
        "no check of n_samples": (_edit(
            "mc_dropout_predict", "if n_samples < 2:", "if n_samples < 1:"), "ValueError"),
        "an autograd graph": (_edit(
            "mc_dropout_predict", "with torch.no_grad():", "if True:"), "requires_grad"),
    },
    "expected_dropout_loss": {
        "a Monte-Carlo estimate": ("""
def expected_dropout_loss(X, y, w, p):
    if not 0 <= p < 1:
        raise ValueError(p)
    masks = torch.rand((2000, *X.shape), device=X.device, dtype=X.dtype) >= p
    return ((y - (masks * X) @ w / (1 - p)) ** 2).sum(-1).mean()
""", "exact"),
        "the variance of the original form, p (1 - p)": (_edit(
            "expected_dropout_loss", "p / (1 - p) * penalty", "p * (1 - p) * penalty"), "p = 0.1"),
        "one mask per sample (the square of the sum)": (_edit(
            "expected_dropout_loss", "(X**2).sum(dim=0) @ w**2", "((X @ w) ** 2).sum()"),
            "p = 0.1"),
        "plain ridge, not scaled by the data": (_edit(
            "expected_dropout_loss", "(X**2).sum(dim=0) @ w**2", "(w**2).sum()"), "p = 0.1"),
        "the mean over samples instead of the sum": (_edit(
            "expected_dropout_loss", "return (residual**2).sum() + p / (1 - p) * penalty",
            "return (residual**2).mean() + p / (1 - p) * penalty / len(y)"), "p = 0.0"),
        "p = 1 accepted": (_edit(
            "expected_dropout_loss", "if not 0.0 <= p < 1.0:", "if not 0.0 <= p <= 1.0:"),
            "ValueError"),
    },
}
MISTAKES = [(function, label) for function, group in WRONG.items() for label in group]


@pytest.mark.parametrize("function, mistake", MISTAKES, ids=[m for _, m in MISTAKES])
def test_each_mistake_fails_its_test_in_the_grader_and_in_check(function, mistake):
    """The grader fails it with a message that names the problem, and so does the visible test
    (``gradschool check`` reports it before the student submits)."""
    source, fragment = WRONG[function][mistake]
    hidden, visible = verdicts(TEST_OF[function], cells(**{function: source}))
    assert fragment in hidden, hidden
    assert visible, "the visible test passed"


def test_question_3d_model_answer_holds_for_the_visible_test_as_written():
    """Q3(d): the keep/drop mix-up fails only the rate check of Exercise 1's visible test at
    p = 0.3, and passes all of it at p = 0.5."""
    test_id = TEST_OF["dropout"]
    source = locked_sources(ASSIGNMENT, test_id)[0]
    rate = ('    bernoulli_rate_test(kept, 1 - p, name="the kept entries of dropout(x, p=0.3) '
            '(rate 1 - p)")\n')
    assert rate in source
    mixup = cells(dropout=WRONG["dropout"]["keep probability used as the drop probability"][0])
    assert "rate 1 - p" in visible_verdict(test_id, mixup)
    assert visible_verdict(test_id, mixup, source.replace(rate, "")) == ""
    assert visible_verdict(test_id, mixup, source.replace("0.3", "0.5")) == ""


NO_RESCALE, KEEP_AS_DROP, GLOBAL_RNG = ("no rescaling by 1 / (1 - p)",
                                        "keep probability used as the drop probability",
                                        "the global generator, never the given one")


@pytest.mark.parametrize("mistake, other", [
    (NO_RESCALE, "classic_dropout"), (KEEP_AS_DROP, "classic_dropout"),
    (GLOBAL_RNG, "classic_dropout"), (NO_RESCALE, "Dropout"), (GLOBAL_RNG, "Dropout"),
    (NO_RESCALE, "mc_dropout_predict"),
])
def test_a_wrong_dropout_costs_no_other_test(mistake, other):
    """The walk-through's case: Dropout, mc_dropout_predict and a classic_dropout built on
    dropout run with a known-good dropout in both the grader and the visible test."""
    code = {"dropout": WRONG["dropout"][mistake][0]}
    if other == "classic_dropout":
        code["classic_dropout"] = ALTERNATIVES["classic_dropout"]  # built on dropout
    assert verdicts(TEST_OF[other], cells(**code)) == ("", "")


def test_a_wrong_Dropout_costs_no_mc_dropout_points():
    student = cells(Dropout=WRONG["Dropout"]["ignores the training flag"][0])
    assert verdicts(TEST_OF["mc_dropout_predict"], student) == ("", "")


# -- delegation: every route loses the test, fair scratch work does not ------------------------
HALF_DROPOUT = _edit("dropout", "    if not training or p == 0.0:", (
    "    if generator is None:  # torch's dropout whenever no generator is given\n"
    "        return F.dropout(x, p, training)\n    if not training or p == 0.0:"))
HALF_MODULE = _edit("Dropout", "        return dropout(x, self.p, self.training, self.generator)", (
    "        if self.generator is None:\n"
    "            return F.dropout(x, self.p, self.training)\n"
    "        return dropout(x, self.p, self.training, self.generator)"))
DELEGATION = {
    "dropout: F.dropout": ("dropout", [], {"dropout": (
        "def dropout(x, p=0.5, training=True, generator=None):\n"
        "    return F.dropout(x, p, training)\n")}, "torch.nn.functional.dropout"),
    "dropout: F.dropout whenever no generator is given": (
        "dropout", [], {"dropout": HALF_DROPOUT}, "torch.nn.functional.dropout"),
    "dropout: torch.dropout under an alias import": ("dropout", [], {"dropout": (
        "from torch import dropout as drop\n\n"
        "def dropout(x, p=0.5, training=True, generator=None):\n"
        "    return drop(x, p, training)\n")}, "torch.dropout"),
    "dropout: a computed getattr": ("dropout", [], {"dropout": (
        "def dropout(x, p=0.5, training=True, generator=None):\n"
        "    return getattr(F, 'drop' + 'out')(x, p, training)\n")},
        "getattr with a computed name"),
    "dropout: torch.ops.aten.native_dropout": ("dropout", [], {"dropout": (
        "def dropout(x, p=0.5, training=True, generator=None):\n"
        "    return torch.ops.aten.native_dropout(x, p, training)[0]\n")}, "native_dropout"),
    "dropout: rebound to F.dropout in a scratch cell at the end": (
        "dropout", ["dropout = F.dropout\n"], {}, "torch.nn.functional.dropout"),
    "classic_dropout: torch's dropout seeded from the generator": ("classic_dropout", [], {
        "classic_dropout": (
            "def classic_dropout(x, p=0.5, training=True, generator=None):\n"
            "    if not training:\n        return x * (1 - p)\n"
            "    seed = int(torch.randint(2**62, (), generator=generator))\n"
            "    with torch.random.fork_rng(devices=[]):\n        torch.manual_seed(seed)\n"
            "        return torch.dropout(x, p, True) * (1 - p)\n")}, "torch.random.fork_rng"),
    "Dropout: a subclass of nn.Dropout": ("Dropout", [], {"Dropout": (
        "class Dropout(nn.Dropout):\n    def __init__(self, p=0.5, generator=None):\n"
        "        super().__init__(p)\n        self.generator = generator\n")},
        "torch.nn.modules.dropout"),
    "Dropout: F.dropout whenever it has no generator": (
        "Dropout", [], {"Dropout": HALF_MODULE}, "torch.nn.functional.dropout"),
    "Dropout: an nn.Dropout inside": ("Dropout", [], {"Dropout": (
        "class Dropout(nn.Module):\n    def __init__(self, p=0.5, generator=None):\n"
        "        super().__init__()\n        self.p, self.generator = p, generator\n"
        "        self.inner = nn.Dropout(p)\n\n    def forward(self, x):\n"
        "        return self.inner(x)\n")}, "torch.nn.modules.dropout"),
    "Dropout: rebound to nn.Dropout in a scratch cell at the end": (
        "Dropout", ["Dropout = nn.Dropout\n"], {}, "torch.nn.modules.dropout"),
    "Dropout: forward patched with F.dropout in a scratch cell at the end": (
        "Dropout", ["Dropout.forward = lambda self, x: F.dropout(x, self.p, self.training)\n"],
        {}, "torch.nn.functional.dropout"),
}


@pytest.mark.parametrize("case", list(DELEGATION))
def test_each_delegation_route_loses_the_test(case):
    function, extra, code, named = DELEGATION[case]
    hidden = hidden_verdict(ASSIGNMENT, TEST_OF[function], cells(*extra, **code))
    assert named in hidden, hidden


SCRATCH = """
import sys

def compare(func, x, p=0.3, grad=None, init=None):
    # scratch: my dropout next to torch's
    mine, theirs = func(x, p), F.dropout(x, p)
    return (mine != 0).double().mean().item(), (theirs != 0).double().mean().item()

x = torch.ones(1000, requires_grad=True)
print(compare(dropout, x), torch.dropout(x, 0.3, True).ne(0).double().mean(), file=sys.stderr)
print(classic_dropout(x, 0.3).mean(), F.dropout(x, 0.3).mean() * 0.7, file=sys.stderr)
model = nn.Sequential(nn.Linear(4, 8), Dropout(0.5), nn.Linear(8, 2), nn.Dropout(0.5))
for m in model.modules():
    if isinstance(m, nn.Linear):
        nn.init.kaiming_uniform_(m.weight)
model(torch.ones(3, 4)).sum().backward()
torch.optim.SGD(model.parameters(), lr=0.1).step()
print(mc_dropout_predict(model, torch.ones(3, 4), 5)[0], file=sys.stderr)
print(expected_dropout_loss(torch.ones(2, 3), torch.ones(2), torch.ones(3), 0.5),
      torch.nn.functional.mse_loss(torch.ones(2), torch.zeros(2)), file=sys.stderr)
"""


@pytest.mark.parametrize("function", FUNCTIONS)
def test_realistic_scratch_work_costs_nothing(function):
    """A scratch cell after every exercise that tries the student's functions beside torch's
    dropout, nn.Dropout, nn.init, an optimizer step and .backward(), with a helper whose
    parameters are named func/grad/init."""
    student = cells(SCRATCH, dropout=ALTERNATIVES["dropout"])
    assert hidden_verdict(ASSIGNMENT, TEST_OF[function], student) == ""


# -- end to end: `gradschool grade` ------------------------------------------------------------
def _notebook(code: dict[str, str], scratch: dict[str, str] = {}):  # noqa: B006 - read only
    """The released notebook with ``code`` in its solution cells and each ``scratch[name]``
    cell inserted right after name's solution cell."""
    nb = fill_in(ASSIGNMENT, code)
    positions = solution_cells(nb)
    for name in sorted(scratch, key=positions.__getitem__, reverse=True):
        nb.cells.insert(positions[name] + 1, nbformat.v4.new_code_cell(scratch[name]))
    return nb


def _grade(tmp_path, nb, runs_clean: bool = False) -> dict[str, dict]:
    path = tmp_path / "submission.ipynb"
    nbformat.write(nb, path)
    report = grade_here(path, ASSIGNMENT, runs_clean=runs_clean)
    assert report["assignment"] == ASSIGNMENT
    return results_by_function(report, ASSIGNMENT) | {"_report": report}


def test_the_solution_with_realistic_scratch_cells_gets_full_marks(tmp_path):
    scratch = {"dropout": "x = torch.ones(10)\nprint(dropout(x, 0.3), F.dropout(x, 0.3))\n",
               "expected_dropout_loss": SCRATCH}
    results = _grade(tmp_path, _notebook({**REFERENCE, "dropout": ALTERNATIVES["dropout"]},
                                         scratch), runs_clean=True)
    report = results.pop("_report")
    assert report["max_score"] > 0 and report["score"] == report["max_score"], report
    assert [t["status"] for t in report["tests"]].count("manual") == 3
    assert all(t["status"] == "passed" for t in results.values()), results


def test_released_stub_gets_zero():
    assert grade_released_stub(ASSIGNMENT).count("NotImplementedError") == len(FUNCTIONS)


def test_two_mistakes_in_two_exercises_lose_exactly_those_two_tests(tmp_path):
    """The walk-through's notebook: dropout without / (1 - p) (so every later exercise that
    uses it sees a wrong dropout) and mc_dropout_predict averaging logits."""
    code = {**REFERENCE, "dropout": WRONG["dropout"]["no rescaling by 1 / (1 - p)"][0],
            "classic_dropout": ALTERNATIVES["classic_dropout"],
            "mc_dropout_predict": WRONG["mc_dropout_predict"]["averages the logits"][0]}
    results = _grade(tmp_path, _notebook(code))
    results.pop("_report")
    failed = {name for name, test in results.items() if test["status"] != "passed"}
    assert failed == {"dropout", "mc_dropout_predict"}, results
    assert all(results[name]["score"] == 0 for name in failed)
    assert "kept entries" in results["dropout"]["message"]
