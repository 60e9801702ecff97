"""Hidden checks of 02-initialization (instructor side: never released, never installed).

Each check makes its inputs here, asks the student's kernel only to run the student's function on
them (``kernel.probe``), and compares what comes back with values computed here: torch.nn.init
for fans, gains and the distributions of the initializers; an independent quadrature for the
variance map.

One mistake costs one test: the initializers of exercises 3 and 4 may call the student's
``compute_fans`` and ``calculate_gain``; during their probes those names are known-good stand-ins
(``STAND_INS``), so a wrong ``compute_fans`` costs exercise 1's points only.

Random results are checked statistically, never against one seed's numbers. Every statistical
test has a false-alarm rate of at most 1e-9 (the probability that a correct implementation fails
it); a grade runs about 110 of them, so a correct submission fails by bad luck with probability
below 1.2e-7. The tests: ``normal_mean_std_test`` and ``uniform_bounds_test`` (mean, spread,
bounds) and ``ks_test`` below (the shape: a normal draw with the right variance fails the uniform
bounds, a uniform draw with the right variance fails the Kolmogorov-Smirnov test for the normal).
"""

import math
import numbers

import numpy as np
import torch
from torch import nn

from gradschool.checks import (
    assert_equal,
    bernoulli_rate_test,
    normal_mean_std_test,
    uniform_bounds_test,
)
from gradschool.instructor import HiddenChecks

checks = HiddenChecks()

# torch's initializers, however reached (gradschool.delegation): the module torch.nn.init, i.e.
# every function in it, its fan and gain helpers included. A correct solution never calls it,
# not even through torch (tensor.uniform_ and tensor.normal_ do not). The student's functions
# carry the same names as torch's; calling them is fine. torch has no variance map: exercise 5
# forbids nothing.
FORBID_INIT = ["torch.nn.init"]

# Known-good versions of exercises 1 and 2, in place while the initializers are probed.
FANS_STAND_IN = """
def compute_fans(shape):
    import math
    dims = [int(s) for s in shape]
    if len(dims) < 2:
        raise ValueError(f"fans need at least 2 dimensions, got {dims}")
    field = math.prod(dims[2:])
    return dims[1] * field, dims[0] * field
"""
GAIN_STAND_IN = """
def calculate_gain(nonlinearity, param=None):
    import math
    fixed = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "sigmoid": 1.0,
             "conv_transpose1d": 1.0, "conv_transpose2d": 1.0, "conv_transpose3d": 1.0,
             "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0), "selu": 0.75}
    if nonlinearity in fixed:
        return fixed[nonlinearity]
    if nonlinearity != "leaky_relu":
        raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")
    if param is None:
        return math.sqrt(2.0 / (1.0 + 0.01**2))
    if isinstance(param, bool) or not isinstance(param, int | float):
        raise ValueError(f"negative slope {param!r} is not a number")
    return math.sqrt(2.0 / (1.0 + param**2))
"""
STAND_INS = {"xavier-tests": {"compute_fans": FANS_STAND_IN},
             "kaiming-tests": {"compute_fans": FANS_STAND_IN, "calculate_gain": GAIN_STAND_IN}}


# -- statistics --------------------------------------------------------------------------------
def ks_test(samples: torch.Tensor, cdf, *, alpha: float = 1e-9, name: str) -> None:
    """Kolmogorov-Smirnov test of i.i.d. ``samples`` against the continuous ``cdf``.

    By the Dvoretzky-Kiefer-Wolfowitz inequality with Massart's constant (Ann. Probab. 1990),
    P(sup_x |F_n(x) - F(x)| > eps) <= 2 exp(-2 n eps^2), so the threshold
    eps = sqrt(log(2 / alpha) / (2 n)) fails a correct sampler with probability <= alpha. Rounding
    to the samples' dtype moves each sample by at most eps_dtype |x| / 2 (relative), which moves
    F by at most eps_dtype sup |x f(x)| / 2 <= eps_dtype / 4 for the normal and uniform laws used
    here: one eps_dtype is added to the threshold, and 1e-6 for the granularity of the float32
    random source (2^-24). For float16 (11 significant bits) the bound is only approximately
    rigorous: torch's half-precision sampler is not exactly a rounded exact sampler; the statistic
    of 2 * 10^6 float16 draws, measured once (9.2e-4 normal, 5.8e-4 uniform, threshold 3.3e-3),
    is sampling noise. With n = 10^5 the threshold is 0.010; a uniform law with the variance of a
    normal one is 0.0572 away from it, so it fails.
    """
    finfo = torch.finfo(samples.dtype)
    x = samples.detach().flatten().to("cpu", torch.float64).sort().values
    n = x.numel()
    f = cdf(x)
    k = torch.arange(1, n + 1, dtype=torch.float64)
    distance = max((k / n - f).max().item(), (f - (k - 1) / n).max().item())
    threshold = math.sqrt(math.log(2 / alpha) / (2 * n)) + finfo.eps + 1e-6
    if distance > threshold:
        raise AssertionError(
            f"{name}: the distribution has the wrong shape: the largest gap between the samples' "
            f"empirical CDF and the expected CDF is {distance:.4f} > {threshold:.4f} "
            f"(Kolmogorov-Smirnov, n={n}, false-alarm rate {alpha:g}); e.g. uniform where "
            "normal was expected, or the reverse")


def normal_cdf(std: float):
    return lambda x: 0.5 * torch.erfc(-x / (std * math.sqrt(2)))


def uniform_cdf(bound: float):
    return lambda x: ((x + bound) / (2 * bound)).clamp(0.0, 1.0)


TAIL2 = math.erfc(2 / math.sqrt(2))  # P(|z| > 2 std) for a normal


def assert_distribution(values: torch.Tensor, law: str, scale: float, what: str) -> None:
    """``law`` "normal": N(0, scale^2); "uniform": U(-scale, scale)."""
    if law == "normal":
        normal_mean_std_test(values, 0.0, scale, name=what)
        bernoulli_rate_test(values.double().abs() > 2 * scale, TAIL2,
                            name=f"fraction beyond 2 std of {what}")
        ks_test(values, normal_cdf(scale), name=what)
    else:
        # The bound is rounded to the samples' dtype before drawing, and a sample may round up
        # to it: widen by one machine epsilon (this changes the spread test by ~2 eps, nothing).
        wide = scale * (1 + torch.finfo(values.dtype).eps)
        uniform_bounds_test(values, -wide, wide, name=what)
        ks_test(values, uniform_cdf(scale), name=what)


# -- the initializers: one probe per call ------------------------------------------------------
CALL = """
t = torch.empty(shape, dtype=getattr(torch, dtype), device=device)
if parameter:
    t = torch.nn.Parameter(t)
def generator():
    return torch.Generator(device).manual_seed(seed) if seed is not None else None
def rng_states():
    states = [torch.random.get_rng_state()]
    if device == "cuda":
        states.append(torch.cuda.get_rng_state())
    return states
before, pointer = rng_states(), (t.data_ptr() if device != "meta" else 0)
out = FUNCTION(t, **kwargs, generator=generator()) if seed is not None else FUNCTION(t, **kwargs)
after = rng_states()
result = {
    "returned_same": out is t,
    "same_storage": device == "meta" or t.data_ptr() == pointer,
    "dtype": str(t.dtype), "device": t.device.type, "shape": list(t.shape),
    "is_leaf": t.is_leaf, "requires_grad": t.requires_grad,
    "rng_untouched": all(torch.equal(a, b) for a, b in zip(before, after)),
    "values": t.detach() if device != "meta" else None,
}
if seed is not None:
    again = FUNCTION(torch.empty(shape, dtype=getattr(torch, dtype), device=device), **kwargs,
                     generator=generator())
    result["again"] = again.detach() if isinstance(again, torch.Tensor) else None
"""


def call_init(kernel, function: str, shape, *, dtype=torch.float32, device="cpu", seed=None,
              parameter=False, **kwargs) -> tuple[dict, str]:
    """Run ``function(tensor, **kwargs[, generator])`` in the kernel; check identity, storage,
    dtype, device, autograd flags and the global RNG; return (result, description)."""
    got = kernel.probe(CALL.replace("FUNCTION", function), shape=list(shape),
                       dtype=str(dtype).removeprefix("torch."), device=device, seed=seed,
                       parameter=parameter, kwargs=kwargs)
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    kind = "nn.Parameter" if parameter else "tensor"
    call = (f"{function}({kind} of shape {tuple(shape)}, {dtype}, on {device}"
            + (f", {args}" if args else "") + (", generator" if seed is not None else "") + ")")
    assert_equal(got["returned_same"], True,
                 name=f"{call} returns the tensor it was given (the same object)")
    assert_equal(got["same_storage"], True, name=f"{call} works in place (same storage)")
    assert_equal((got["dtype"], got["device"], tuple(got["shape"])),
                 (str(dtype), device, tuple(shape)), name=f"(dtype, device, shape) after {call}")
    if parameter:
        assert_equal((got["is_leaf"], got["requires_grad"]), (True, True),
                     name=f"(is_leaf, requires_grad) after {call}")
    if seed is not None:
        assert_equal(got["rng_untouched"], True, name=f"torch's global RNG state after {call}"
                     " (with a generator, draw only from the generator)")
        again = got["again"]
        assert_equal(again is not None and torch.equal(again, got["values"]), True,
                     name=f"{call} twice with generators of the same seed give the same tensor")
    if got["values"] is not None:
        got["values"] = got["values"].cpu()
    return got, call


ERRORS = """
outcome = {}
for label, (shape, kwargs) in cases.items():
    try:
        FUNCTION(torch.empty(shape), **kwargs)
        outcome[label] = "no exception"
    except Exception as e:
        outcome[label] = type(e).__name__
result = outcome
"""


def assert_value_errors(kernel, function: str, cases: dict) -> None:
    got = kernel.probe(ERRORS.replace("FUNCTION", function), cases=cases)
    for label, (shape, kwargs) in cases.items():
        assert_equal(got[label], "ValueError",
                     name=f"exception raised by {function}(torch.empty({shape}), **{kwargs}) "
                          f"({label})")


GLOBAL_RNG = """
def draw(s):
    torch.manual_seed(s)
    return FUNCTION(torch.empty(40, 30), **kwargs).detach().clone()
result = {"a": draw(3), "b": draw(3), "c": draw(4)}
"""


def assert_uses_global_rng(kernel, function: str, **kwargs) -> None:
    got = kernel.probe(GLOBAL_RNG.replace("FUNCTION", function), kwargs=kwargs)
    assert_equal(torch.equal(got["a"], got["b"]), True,
                 name=f"{function}(...) without a generator twice after torch.manual_seed(3) "
                      "gives the same tensor (use the global generator when generator is None)")
    assert_equal(torch.equal(got["a"], got["c"]), False,
                 name=f"{function}(...) after torch.manual_seed(3) and (4) gives different tensors")


# -- Exercise 1: compute_fans ------------------------------------------------------------------
FANS = """
outcome = []
for shape in shapes:
    try:
        fans = compute_fans(shape)
        outcome.append({"fans": [int(f) for f in fans], "len": len(fans),
                        "types": [type(f).__name__ for f in fans]})
    except Exception as e:
        outcome.append({"error": type(e).__name__})
result = outcome
"""


def torch_fans(shape):
    return list(nn.init._calculate_fan_in_and_fan_out(torch.empty(shape, device="meta")))


@checks.test("fans-tests", forbid=FORBID_INIT)
def fans_match_torch(kernel):
    shapes = [(300, 50), (50, 300), (7, 3), (96, 48, 5, 5), (200, 100, 7), (16, 8, 3, 5, 7),
              (6, 4, 1, 1), (0, 5), (5, 0, 3), (1, 1, 1, 1, 1, 1)]
    as_given = [list(shapes[0]), torch.Size(shapes[3]), shapes[4]]  # list, Size, tuple
    got = kernel.probe(FANS, shapes=[list(s) for s in shapes] + as_given + [[9], []])
    for shape, g in zip([*shapes, *as_given], got, strict=False):
        what = f"compute_fans({shape!r})"
        assert_equal(g.get("error", "no exception"), "no exception", name=f"exception in {what}")
        assert_equal(g["len"], 2, name=f"length of {what} (fan_in, fan_out)")
        assert_equal(g["types"], ["int", "int"], name=f"types of {what} (Python ints)")
        assert_equal(g["fans"], torch_fans(tuple(shape)), name=f"{what} = (fan_in, fan_out)")
    for shape, g in zip([[9], []], got[-2:], strict=True):
        assert_equal(g.get("error"), "ValueError",
                     name=f"exception raised by compute_fans({shape}) (fewer than 2 dims)")


# -- Exercise 2: calculate_gain ----------------------------------------------------------------
GAINS = """
outcome = []
for name, param, pass_param in cases:
    try:
        gain = calculate_gain(name, param) if pass_param else calculate_gain(name)
        outcome.append({"type": type(gain).__name__, "value": float(gain)})
    except Exception as e:
        outcome.append({"error": type(e).__name__})
result = outcome
"""


@checks.test("gain-tests", forbid=FORBID_INIT)
def gains_match_torch(kernel):
    valid = [("linear", None, False), ("conv1d", None, True), ("conv3d", 0.3, True),
             ("conv_transpose1d", None, True), ("conv_transpose2d", None, False),
             ("sigmoid", None, False), ("tanh", 7.0, True), ("relu", 0.5, True),
             ("selu", None, False), ("leaky_relu", None, False), ("leaky_relu", None, True),
             ("leaky_relu", 0.0, True), ("leaky_relu", 0.37, True), ("leaky_relu", -0.2, True),
             ("leaky_relu", 2, True), ("leaky_relu", math.sqrt(5), True)]
    invalid = [("Tanh", None, False), ("softplus", None, False), ("silu", None, True),
               ("", None, False), ("leaky_relu", False, True), ("leaky_relu", "0.2", True),
               ("leaky_relu", [0.2], True)]
    got = kernel.probe(GAINS, cases=valid + invalid)
    for (name, param, passed), g in zip(valid, got[: len(valid)], strict=True):
        what = f"calculate_gain({name!r}" + (f", {param!r})" if passed else ")")
        assert_equal(g.get("error", "no exception"), "no exception", name=f"exception in {what}")
        assert_equal(g["type"] in ("float", "int"), True,
                     name=f"{what} returns a Python number (got {g['type']})")
        expected = float(nn.init.calculate_gain(name, param))
        if abs(g["value"] - expected) > 1e-12 * expected:
            hint = ""
            if name == "leaky_relu" and abs(g["value"] - math.sqrt(2)) < 1e-12:
                hint = " (sqrt(2): the negative slope param is ignored?)"
            elif name == "tanh" and abs(g["value"] - 1.0) < 1e-12:
                hint = " (tanh's gain is 5/3, not 1)"
            raise AssertionError(f"{what} is {g['value']!r}, expected {expected!r}{hint}")
    for (name, param, _), g in zip(invalid, got[len(valid):], strict=True):
        assert_equal(g.get("error", f"no exception (returned {g.get('value')})"), "ValueError",
                     name=f"exception raised by calculate_gain({name!r}, {param!r})")


# -- Exercise 3: xavier_uniform_ / xavier_normal_ ----------------------------------------------
XAVIER_CASES = [  # shape, dtype, gain, parameter
    ((600, 250), torch.float32, 1.0, False),
    ((96, 48, 5, 5), torch.float64, 5 / 3, False),
    ((200, 100, 7), torch.float32, 0.3, True),
    ((16, 8, 3, 5, 7), torch.float16, 2.0, False),
]


@checks.test("xavier-tests", forbid=FORBID_INIT, stand_ins=STAND_INS["xavier-tests"])
def xavier_draws_the_right_distribution(kernel):
    for function, law in (("xavier_uniform_", "uniform"), ("xavier_normal_", "normal")):
        for device in kernel.devices:
            for k, (shape, dtype, gain, parameter) in enumerate(XAVIER_CASES):
                got, call = call_init(kernel, function, shape, dtype=dtype, device=device,
                                      seed=100 + k, parameter=parameter, gain=gain)
                fan_in, fan_out = torch_fans(shape)
                std = gain * math.sqrt(2.0 / (fan_in + fan_out))
                assert_distribution(got["values"], law, std * math.sqrt(3) if law == "uniform"
                                    else std, call)
        call_init(kernel, function, (1000, 1000), device="meta", gain=1.5)
        call_init(kernel, function, (30, 40), parameter=True)  # no generator, global RNG
        assert_uses_global_rng(kernel, function, gain=0.5)
        assert_value_errors(kernel, function, {"1-D tensor": ((12,), {}),
                                               "0-D tensor": ((), {"gain": 2.0})})


# -- Exercise 4: kaiming_uniform_ / kaiming_normal_ --------------------------------------------
KAIMING_CASES = [  # shape, dtype, kwargs, parameter
    ((300, 500), torch.float32, {}, False),  # leaky_relu with a = 0: sqrt(2) / sqrt(fan_in)
    ((500, 200), torch.float64, {"a": 0.5, "mode": "fan_out"}, False),
    ((400, 300), torch.float32, {"a": math.sqrt(5)}, True),  # nn.Linear's default init
    ((128, 64, 3, 3), torch.float64, {"nonlinearity": "tanh"}, False),
    ((120, 90, 9), torch.float32, {"mode": "fan_out", "nonlinearity": "relu", "a": 0.7}, False),
    ((24, 12, 3, 5, 5), torch.float16, {"nonlinearity": "selu"}, False),
    ((250, 350), torch.float32, {"nonlinearity": "linear", "mode": "fan_out"}, False),
]


def kaiming_std(shape, a=0.0, mode="fan_in", nonlinearity="leaky_relu"):
    fan_in, fan_out = torch_fans(shape)
    return nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in"
                                                               else fan_out)


@checks.test("kaiming-tests", forbid=FORBID_INIT, stand_ins=STAND_INS["kaiming-tests"])
def kaiming_draws_the_right_distribution(kernel):
    for function, law in (("kaiming_uniform_", "uniform"), ("kaiming_normal_", "normal")):
        for device in kernel.devices:
            for k, (shape, dtype, kwargs, parameter) in enumerate(KAIMING_CASES):
                got, call = call_init(kernel, function, shape, dtype=dtype, device=device,
                                      seed=200 + k, parameter=parameter, **kwargs)
                std = kaiming_std(shape, **kwargs)
                assert_distribution(got["values"], law, std * math.sqrt(3) if law == "uniform"
                                    else std, call)
        call_init(kernel, function, (2000, 1000), device="meta", mode="fan_out",
                  nonlinearity="relu")
        call_init(kernel, function, (30, 40), parameter=True, nonlinearity="tanh")
        assert_uses_global_rng(kernel, function, a=0.1)
        assert_value_errors(kernel, function, {
            "unknown mode": ((30, 20), {"mode": "fan_avg"}),
            "unknown nonlinearity": ((30, 20), {"nonlinearity": "gelu"}),
            "1-D tensor": ((12,), {}),
        })


# -- Exercise 5: predict_variances -------------------------------------------------------------
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(16)


def gaussian_second_moment(activation, q: float) -> float:
    """E[activation(z)^2], z ~ N(0, q), by composite 16-point Gauss-Legendre quadrature on
    u = z / sqrt(q) in [-12, 12] (480 panels of width 0.05, panel ends at 0 where the
    piecewise activations have their kink): an independent method, exact to ~1e-14 here."""
    edges = torch.linspace(-12.0, 12.0, 481, dtype=torch.float64)
    half = (edges[1:] - edges[:-1]) / 2
    mid = (edges[1:] + edges[:-1]) / 2
    u = (mid[:, None] + half[:, None] * torch.from_numpy(_NODES)[None, :]).flatten()
    w = (half[:, None] * torch.from_numpy(_WEIGHTS)[None, :]).flatten()
    density = torch.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
    return float((w * activation(math.sqrt(q) * u) ** 2 * density).sum())


def reference_variances(activation, fan_ins, stds, q0):
    out, moment = [], q0
    for n, s in zip(fan_ins, stds, strict=True):
        out.append(n * s**2 * moment)
        moment = gaussian_second_moment(activation, out[-1])
    return out


PREDICT = """
activation = eval(activation_code)
q = predict_variances(activation, fan_ins, weight_stds, q0)
result = {"type": type(q).__name__, "types": [type(v).__name__ for v in q],
          "values": [float(v) for v in q]}
"""


def predict_cases():
    """(activation code, fan_ins, weight_stds, q0, description); code evaluated on both sides.

    Smooth activations, or piecewise linear ones with the kink at 0 (symmetric quadratures
    handle those exactly), so that Gauss-Hermite quadrature with ~100 nodes passes too."""
    g = torch.Generator().manual_seed(2024)

    def widths(n_layers, lo, hi):
        return [int(v) for v in torch.randint(lo, hi, (n_layers,), generator=g)]

    def jitter(values, amount=0.1):
        return [float(v * (1 + amount * (2 * torch.rand((), generator=g) - 1))) for v in values]

    fans = [37] + widths(29, 60, 300)
    yield ("torch.tanh", fans, jitter([5 / 3 / math.sqrt(n) for n in fans]), 0.7,
           "tanh, 30 layers, gain 5/3")
    fans = widths(12, 20, 90)
    yield ("torch.sigmoid", fans, jitter([2 / math.sqrt(n) for n in fans]), 3.0,
           "sigmoid, 12 layers (E[phi^2] is not Var(phi))")
    fans = widths(10, 30, 200)
    yield ("torch.nn.functional.softplus", fans, jitter([1 / math.sqrt(n) for n in fans]), 0.2,
           "softplus, 10 layers")
    fans = widths(40, 64, 256)
    yield ("torch.nn.functional.gelu", fans, jitter([1.2 / math.sqrt(n) for n in fans]), 1.3,
           "gelu, 40 layers")
    fans = [100] * 20
    yield ("torch.nn.functional.silu", fans, [0.01] * 20, 2.0, "silu, std 0.01 (vanishing)")
    fans = [50] * 25
    yield ("lambda z: torch.nn.functional.leaky_relu(z, 0.3)", fans, [1.0] * 25, 0.5,
           "leaky_relu(0.3), std 1 (exploding)")
    fans = widths(15, 40, 120)
    yield ("torch.nn.functional.mish", fans, jitter([1.5 / math.sqrt(n) for n in fans]), 1.0,
           "mish, 15 layers")
    fans = widths(8, 10, 50)
    yield ("lambda z: torch.sin(2 * z) + 0.5 * z", fans, jitter([1 / math.sqrt(n) for n in fans]),
           2.0, "sin(2z) + z/2, 8 layers")
    fans = [80] * 30
    yield ("torch.atan", fans, [1.3 / math.sqrt(80)] * 30, 1.0, "atan, 30 layers")
    yield ("lambda z: 1.5 * torch.relu(z)", [64, 128, 128], [0.2, 0.1, 0.05], 1.7,
           "1.5 relu, 3 layers")
    yield "torch.sigmoid", [7, 9, 11], [0.5, 0.3, 0.2], 0.0, "sigmoid with q0 = 0"
    yield "torch.tanh", [300], [0.03], 4.0, "one layer"


@checks.test("predict-tests")
def predict_variances_matches_quadrature(kernel):
    for code, fan_ins, stds, q0, what in predict_cases():
        got = kernel.probe(PREDICT, activation_code=code, fan_ins=fan_ins, weight_stds=stds,
                           q0=q0)
        call = f"predict_variances for {what}"
        assert_equal(got["type"] in ("list", "tuple"), True,
                     name=f"{call} returns a list (got {got['type']})")
        assert_equal(len(got["values"]), len(fan_ins), name=f"number of values from {call}")
        bad_types = [t for t in got["types"] if t not in ("float", "int")]
        assert_equal(bad_types, [], name=f"types of the values from {call} (Python floats)")
        expected = reference_variances(eval(code, {"torch": torch}), fan_ins, stds, q0)
        for layer, (a, e) in enumerate(zip(got["values"], expected, strict=True), start=1):
            if not (isinstance(a, numbers.Real) and abs(a - e) <= 1e-5 * abs(e) + 1e-300):
                raise AssertionError(
                    f"{call}: q_{layer} is {a!r}, expected {e!r} (relative tolerance 1e-5; "
                    "the layers before it agree)" + _predict_hint(layer, a, e))


def _predict_hint(layer: int, got: float, expected: float) -> str:
    if layer == 1:
        return " (q_1 = fan_ins[0] * weight_stds[0]**2 * q0)"
    if expected and abs(got / expected - 1) < 1e-2:
        return " (close but not accurate enough: Monte Carlo? use a deterministic quadrature)"
    return " (E[activation(z)^2] with z ~ N(0, q_{l-1}): the second moment, not the variance)"
