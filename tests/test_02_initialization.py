"""02-initialization graded end to end: full marks for the solution, zero for the blank release,
and known-wrong or delegating implementations of every graded function lose their points.

Each `gradschool grade` runs the whole notebook (about 30 s alone on 2 cores), so the wrong
implementations are grouped: three submissions, each with one mistake per graded function.
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

ASSIGNMENT = "02-initialization"
FANS, GAIN, PREDICT = "compute_fans", "calculate_gain", "predict_variances"
XU, XN, KU, KN = "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"

# One solution cell defines both functions of exercise 3 (and of exercise 4): a wrong submission
# names the cell by its first function (XU, KU) and its code defines both (one or both wrong).
XAVIER_OK_NORMAL = '''
def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_out, fan_in = tensor.shape[0], tensor.shape[1] * math.prod(tensor.shape[2:])
    with torch.no_grad():
        tensor.normal_(0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), generator=generator)
    return tensor
'''
KAIMING_OK_NORMAL = '''
def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(mode)
    fan_in, fan_out = compute_fans(tensor.shape)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    with torch.no_grad():
        tensor.normal_(0.0, std, generator=generator)
    return tensor
'''

WRONG = {
    "transposed-fans/tanh-gain-1/bound-without-sqrt3/fan_out-ignored/variance-not-moment": {
        FANS: '''
def compute_fans(shape):
    if len(shape) < 2:
        raise ValueError("need 2 dims")
    field = math.prod(shape[2:])
    return shape[0] * field, shape[1] * field  # out and in swapped
''',
        GAIN: '''
def calculate_gain(nonlinearity, param=None):
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid", "tanh"):
        return 1.0  # tanh treated as linear
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "selu":
        return 0.75
    if nonlinearity == "leaky_relu":
        if isinstance(param, bool) or not isinstance(param, (int, float, type(None))):
            raise ValueError(param)
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(nonlinearity)
''',
        XU: '''
def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = compute_fans(tensor.shape)
    bound = gain * math.sqrt(2.0 / (fan_in + fan_out))  # the std used as the bound
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)
    return tensor
''' + XAVIER_OK_NORMAL,
        KU: '''
def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    fan_in, _ = compute_fans(tensor.shape)  # mode ignored: always fan_in
    bound = math.sqrt(3.0) * calculate_gain(nonlinearity, a) / math.sqrt(fan_in)
    with torch.no_grad():
        tensor.uniform_(-bound, bound, generator=generator)
    return tensor


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    fan_in, _ = compute_fans(tensor.shape)
    with torch.no_grad():
        tensor.normal_(0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan_in),
                       generator=generator)
    return tensor
''',
        PREDICT: '''
def predict_variances(activation, fan_ins, weight_stds, q0=1.0):
    u = torch.linspace(-10.0, 10.0, 20_001, dtype=torch.float64)
    density = torch.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
    out, moment = [], float(q0)
    for n, s in zip(fan_ins, weight_stds):
        out.append(n * s**2 * moment)
        h = activation(math.sqrt(out[-1]) * u)
        mean = torch.trapezoid(h * density, u).item()
        moment = torch.trapezoid(h**2 * density, u).item() - mean**2  # variance, not E[h^2]
    return out
''',
    },
    "receptive-field-ignored/leaky-without-slope/not-in-place/global-rng/monte-carlo": {
        FANS: '''
def compute_fans(shape):
    if len(shape) < 2:
        raise ValueError("need 2 dims")
    return int(shape[1]), int(shape[0])  # the kernel's receptive field forgotten
''',
        GAIN: '''
def calculate_gain(nonlinearity, param=None):
    gains = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "sigmoid": 1.0,
             "conv_transpose1d": 1.0, "conv_transpose2d": 1.0, "conv_transpose3d": 1.0,
             "tanh": 5 / 3, "relu": math.sqrt(2.0), "leaky_relu": math.sqrt(2.0),  # slope?
             "selu": 0.75}
    if nonlinearity not in gains or isinstance(param, (bool, str)):
        raise ValueError(nonlinearity)
    return gains[nonlinearity]
''',
        XU: '''
def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = compute_fans(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    new = torch.empty_like(tensor)  # a new tensor: the argument is left as it was
    new.uniform_(-bound, bound, generator=generator)
    return new


def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = compute_fans(tensor.shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype,
                       device=tensor.device) * std
''',
        KU: '''
def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(mode)
    fan_in, fan_out = compute_fans(tensor.shape)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)
    bound = math.sqrt(3.0) * std
    with torch.no_grad():
        tensor.uniform_(-bound, bound)  # the generator is ignored: global RNG
    return tensor
''' + KAIMING_OK_NORMAL,
        PREDICT: '''
def predict_variances(activation, fan_ins, weight_stds, q0=1.0):
    gen = torch.Generator().manual_seed(0)
    out, moment = [], float(q0)
    for n, s in zip(fan_ins, weight_stds):
        out.append(n * s**2 * moment)
        z = math.sqrt(out[-1]) * torch.randn(10**6, generator=gen, dtype=torch.float64)
        moment = (activation(z) ** 2).mean().item()  # Monte Carlo: about 1e-3 relative error
    return out
''',
    },
    "delegation-to-torch.nn.init/relu-formula-everywhere": {
        FANS: '''
def compute_fans(shape):
    meta = torch.empty(tuple(shape), device="meta")
    return torch.nn.init._calculate_fan_in_and_fan_out(meta)
''',
        GAIN: '''
from torch.nn import init as torch_init


def calculate_gain(nonlinearity, param=None):
    return float(torch_init.calculate_gain(nonlinearity, param))
''',
        XU: '''
def xavier_uniform_(tensor, gain=1.0, generator=None):
    return getattr(torch.nn.init, "xavier_uniform_")(tensor, gain, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    return getattr(torch.nn.init, "xavier_normal_")(tensor, gain, generator)
''',
        KU: '''
layers = torch.nn
reference = layers.init


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    return reference.kaiming_uniform_(tensor, a, mode, nonlinearity, generator)


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    return reference.kaiming_normal_(tensor, a, mode, nonlinearity, generator)
''',
        PREDICT: '''
def predict_variances(activation, fan_ins, weight_stds, q0=1.0):
    out, moment = [], float(q0)
    for n, s in zip(fan_ins, weight_stds):
        out.append(n * s**2 * moment)
        moment = out[-1] / 2  # ReLU's E[relu(z)^2] = q / 2, whatever the activation
    return out
''',
    },
}


def test_graded_functions_are_the_issue_api():
    names = set(solution_cells(nbformat.read(solution_notebook(ASSIGNMENT), as_version=4)))
    assert names >= {FANS, GAIN, XU, XN, KU, KN, PREDICT}


def test_reference_solution_gets_full_marks(tmp_path):
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, reference_code(ASSIGNMENT)))
    assert report["assignment"] == ASSIGNMENT
    # max_score counts the autograded points (14); the three written answers (6) wait for a person
    assert report["max_score"] == 14 and report["score"] == report["max_score"], report
    statuses = {t["id"]: t["status"] for t in report["tests"]}
    assert statuses == {"fans-tests": "passed", "gain-tests": "passed",
                        "xavier-tests": "passed", "kaiming-tests": "passed",
                        "predict-tests": "passed", "he-answer": "manual",
                        "residual-answer": "manual", "gelu-answer": "manual"}, statuses


def test_released_stub_gets_zero():
    grade_released_stub(ASSIGNMENT)


@pytest.mark.parametrize("mistakes", list(WRONG), ids=list(WRONG))
def test_each_wrong_or_delegating_implementation_loses_its_points(tmp_path, mistakes):
    report = grade_json(make_submission(tmp_path, ASSIGNMENT, WRONG[mistakes]),
                        "--assignment", ASSIGNMENT)
    results = results_by_function(report, ASSIGNMENT)
    for function in (FANS, GAIN, XU, KU, PREDICT):
        test = results[function]
        assert test["status"] == "failed" and test["score"] == 0, (function, test)
        assert len(test["message"]) > len("AssertionError: "), (function, test)
        if mistakes.startswith("delegation") and function != PREDICT:
            assert test["message"].startswith("uses "), (function, test)
    assert report["score"] == 0, report
