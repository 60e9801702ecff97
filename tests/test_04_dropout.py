"""04-dropout: the solution gets full marks, the blank release zero, and known-wrong or delegating
implementations of every graded function lose their points with a message that says why.

Each `gradschool grade` runs the whole notebook (about 20-30 s on an idle machine), so the wrong
implementations are grouped into three submissions; the third one delegates to torch. Within a
group, each wrong function is written so that it does not lean on another wrong one (the wrong
`Dropout` layers draw their own masks), so each failure message is about its own mistake.
"""

from __future__ import annotations

import nbformat
import pytest
from submissions import (
    grade_json,
    grade_released_stub,
    make_submission,
    reference_code,
    results_by_function,
    solution_cells,
    solution_notebook,
)

ASSIGNMENT = "04-dropout"
FUNCTIONS = ("dropout", "classic_dropout", "Dropout", "mc_dropout_predict")

# function -> (wrong source, a fragment the failure message must contain), per submission.
WRONG = {
    "keep-as-drop/scaled-in-training/ignores-training/averages-logits": {
        "dropout": ("""
def dropout(x, p=0.5, training=True, generator=None):
    if not 0 <= p <= 1:
        raise ValueError(p)
    if not training or p == 0:
        return x
    if p == 1:
        return torch.zeros_like(x)
    keep = torch.rand(x.shape, generator=generator, device=x.device) < p  # p used as keep prob
    return x * keep / (1 - p)
""", "mixed up"),
        "classic_dropout": ("""
def classic_dropout(x, p=0.5, training=True, generator=None):
    if not 0 <= p <= 1:
        raise ValueError(p)
    if not training:
        return x * (1 - p)
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep * (1 - p)  # the test-time scaling applied in training too
""", "kept entries"),
        "Dropout": ("""
class Dropout(nn.Module):
    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(p)
        self.p, self.generator = p, generator

    def forward(self, x):  # ignores self.training
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep / (1 - self.p)
""", "model.eval()"),
        "mc_dropout_predict": ("""
def mc_dropout_predict(model, x, n_samples=100):
    if n_samples < 2:
        raise ValueError(n_samples)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in model.modules():
        if isinstance(m, Dropout):
            m.train()
    with torch.no_grad():
        logits = torch.stack([model(x) for _ in range(n_samples)])
    for m, mode in modes.items():
        m.training = mode
    return logits.mean(0).softmax(-1), logits.softmax(-1).std(0)  # averages the logits
""", "logits"),
    },
    "mask-per-feature/in-place/ignores-generator/left-in-train-mode": {
        "dropout": ("""
def dropout(x, p=0.5, training=True, generator=None):
    if not 0 <= p <= 1:
        raise ValueError(p)
    if not training or p == 0:
        return x
    if p == 1:
        return torch.zeros_like(x)
    keep = torch.rand(x.shape[1:], generator=generator, device=x.device) >= p  # one per feature
    return x * keep / (1 - p)
""", "one mask per feature"),
        "classic_dropout": ("""
def classic_dropout(x, p=0.5, training=True, generator=None):
    if not 0 <= p <= 1:
        raise ValueError(p)
    if not training:
        return x * (1 - p)
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x.mul_(keep)  # modifies the input in place
""", "must not change"),
        "Dropout": ("""
class Dropout(nn.Module):
    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(p)
        self.p, self.generator = p, generator

    def forward(self, x):
        if not self.training:
            return x
        keep = torch.rand(x.shape, device=x.device) >= self.p  # the generator is ignored
        return x * keep / (1 - self.p)
""", "generator"),
        "mc_dropout_predict": ("""
def mc_dropout_predict(model, x, n_samples=100):
    if n_samples < 2:
        raise ValueError(n_samples)
    model.train()  # every module, BatchNorm included, and never switched back
    with torch.no_grad():
        probs = torch.stack([model(x).softmax(-1) for _ in range(n_samples)])
    return probs.mean(0), probs.std(0)
""", "BatchNorm"),
    },
    "delegates-to-torch/variance-as-std": {
        "dropout": ("""
def dropout(x, p=0.5, training=True, generator=None):
    return torch.nn.functional.dropout(x, p, training)
""", "generator"),
        "classic_dropout": ("""
def classic_dropout(x, p=0.5, training=True, generator=None):
    if not 0 <= p <= 1:
        raise ValueError(p)
    if not training:
        return torch.dropout(x, p, False) * (1 - p)
    seed = int(torch.randint(2**62, (), generator=generator, device=x.device))
    with torch.random.fork_rng(devices=[]):  # torch's dropout, seeded from the generator
        torch.manual_seed(seed)
        keep = torch.dropout(torch.ones_like(x), p, True) != 0
    return x * keep
""", "fork_rng"),
        "Dropout": ("""
class Dropout(torch.nn.Dropout):
    def __init__(self, p=0.5, generator=None):
        super().__init__(p)
        self.generator = generator
""", "generator"),
        "mc_dropout_predict": ("""
def mc_dropout_predict(model, x, n_samples=100):
    if n_samples < 2:
        raise ValueError(n_samples)
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in model.modules():
        if isinstance(m, Dropout):
            m.train()
    with torch.no_grad():
        probs = torch.stack([model(x).softmax(-1) for _ in range(n_samples)])
    for m, mode in modes.items():
        m.training = mode
    return probs.mean(0), probs.var(0)  # the variance, not the standard deviation
""", "std"),
    },
}


def test_graded_functions_are_the_issue_api():
    names = set(solution_cells(nbformat.read(solution_notebook(ASSIGNMENT), as_version=4)))
    assert names == set(FUNCTIONS)
    assert all(set(group) == set(FUNCTIONS) for group in WRONG.values())


def test_reference_solution_in_the_student_notebook_gets_full_marks(tmp_path):
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, reference_code(ASSIGNMENT)))
    assert report["assignment"] == ASSIGNMENT
    assert report["max_score"] > 0 and report["score"] == report["max_score"], report
    statuses = [t["status"] for t in report["tests"]]
    assert statuses.count("passed") == len(FUNCTIONS) and statuses.count("manual") == 3


def test_released_stub_gets_zero():
    grade_released_stub(ASSIGNMENT)


@pytest.mark.parametrize("mistakes", list(WRONG), ids=list(WRONG))
def test_each_wrong_implementation_loses_its_points(tmp_path, mistakes):
    code = {name: source for name, (source, _) in WRONG[mistakes].items()}
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, code), "--assignment", ASSIGNMENT)
    results = results_by_function(report, ASSIGNMENT)
    assert set(results) == set(FUNCTIONS)
    for function, test in results.items():
        assert test["status"] == "failed" and test["score"] == 0, (function, test)
        fragment = WRONG[mistakes][function][1]
        assert fragment in test["message"], (function, fragment, test["message"])
