"""gradschool.checks: precise messages, correct statistics, and the meta-device trick."""

import math
import random
import warnings

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from gradschool.checks import (
    assert_close,
    assert_equal,
    assert_generator_reproducible,
    assert_in_place,
    bernoulli_rate_test,
    check_device_agnostic,
    normal_mean_std_test,
    report,
    uniform_bounds_test,
)
from gradschool.checks.stats import (
    _bernstein_halfwidth,
    _chi2_ratio_bounds,
    _kl_bernoulli,
    _solve_increasing,
)


def fails(fn, *args, **kwargs) -> str:
    """Run a check that must fail; return its message."""
    with pytest.raises(AssertionError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert message, "a check failed with an empty message"
    return message


# --------------------------------------------------------------------------------------------
# assert_close
# --------------------------------------------------------------------------------------------


def test_assert_close_passes_within_default_tolerance():
    x = torch.linspace(-1, 1, 12, dtype=torch.float64).reshape(3, 4)
    assert_close(x + 1e-9, x)
    assert_close(x.float() * (1 + 1e-7), x.float())
    assert_close(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3]))


def test_assert_close_type_dtype_shape_device_each_have_their_message():
    e = torch.zeros(3, 4, dtype=torch.float64)
    assert "is a list, expected a torch.Tensor of shape (3, 4)" in fails(assert_close, [0.0], e)
    msg = fails(assert_close, e.float(), e)
    assert "result has dtype torch.float32, expected torch.float64" in msg
    assert "dtype=x.dtype" in msg
    msg = fails(assert_close, torch.zeros(4, 3, dtype=torch.float64), e, name="W")
    assert msg.startswith("W has shape (4, 3), expected (3, 4)")
    assert "transposed" in msg and "[out, in]" in msg
    msg = fails(assert_close, torch.zeros(3, 1, 4, dtype=torch.float64), e)
    assert "size-1 dims" in msg
    msg = fails(assert_close, torch.zeros(3, 4, dtype=torch.float64, device="meta"), e)
    assert "is on device meta, expected cpu" in msg and "device=x.device" in msg


def test_assert_close_value_message_names_count_worst_element_and_tolerance():
    e = torch.zeros(2, 3)
    a = e.clone()
    a[0, 1] = 1e-3
    a[1, 2] = 0.5  # the worst one
    msg = fails(assert_close, a, e, name="grad")
    assert msg.startswith("grad: 2 of 6 elements differ (33.3%)")
    assert "worst at index [1, 2]: got 0.5, expected 0.0" in msg
    assert "rtol=1.3e-06, atol=1e-05" in msg
    assert "allowed 1e-05" in msg


def test_assert_close_reports_nan_and_constant_factor():
    e = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    msg = fails(assert_close, torch.tensor([1.0, math.nan, 3.0], dtype=torch.float64), e)
    assert "index [1]: got nan, expected 2.0" in msg
    assert msg.startswith("result: 1 NaN where a number was expected; 1 of 3 elements differ")
    msg = fails(assert_close, e * math.sqrt(2), e, name="w")
    # The likely cause comes first: a long message may be cut off at its end.
    assert msg.startswith("w: all values off by a constant factor 1.414 = sqrt(2); 3 of 3 ")
    assert fails(assert_close, -e, e).startswith("result: every value has the wrong sign; ")


def test_assert_close_custom_tolerances():
    e = torch.ones(5)
    assert_close(e + 0.01, e, rtol=0.0, atol=0.02)
    msg = fails(assert_close, e + 0.01, e, atol=1e-3)  # rtol keeps its float32 default
    assert "rtol=1.3e-06, atol=0.001" in msg


def test_assert_close_scalars():
    assert_close(0.1 + 0.2, 0.3)
    assert_close(2, 2.0)
    assert_close(np.float64(1.0), 1.0)
    msg = fails(assert_close, 1.5, 2.0, name="gain")
    assert msg.startswith("gain is 1.5, expected 2.0") and "rtol=1e-07" in msg
    assert "use .item()" in fails(assert_close, torch.tensor(2.0), 2.0)
    assert "is a bool" in fails(assert_close, True, 1.0)
    assert "expected a bool" in fails(assert_close, 1, True)


def test_assert_close_is_not_torch_testing_message():
    msg = fails(assert_close, torch.ones(3), torch.zeros(3))
    assert "Tensor-likes are not close" not in msg


# --------------------------------------------------------------------------------------------
# assert_equal
# --------------------------------------------------------------------------------------------


def test_assert_equal_python_values():
    assert_equal(3, 3)
    assert_equal(torch.Size([2, 3]), (2, 3))
    assert_equal([1, (2, 3)], [1, (2, 3)])
    assert_equal({"a": 1}, {"a": 1})
    assert "expected an int 1" in fails(assert_equal, True, 1)
    assert "is a float 64.0, expected an int 64" in fails(assert_equal, 64.0, 64, name="fan_in")
    assert "n[1] is 4, expected 3" in fails(assert_equal, (2, 4), (2, 3), name="n")
    assert "has length 1, expected 2" in fails(assert_equal, (2,), (2, 3))
    assert "use .item()" in fails(assert_equal, torch.tensor(3), 3)


def test_assert_equal_tensors():
    e = torch.tensor([[True, False], [False, True]])
    assert_equal(e.clone(), e)
    assert_equal(torch.tensor([math.nan, 1.0]), torch.tensor([math.nan, 1.0]))
    a = e.clone()
    a[1, 0] = True
    msg = fails(assert_equal, a, e, name="mask")
    assert msg == "mask: 1 of 4 elements differ; first at index [1, 0]: got True, expected False"
    msg = fails(assert_equal, e.float(), e)
    assert "dtype torch.float32, expected torch.bool" in msg and "comparison" in msg


# --------------------------------------------------------------------------------------------
# statistical tests: thresholds checked against scipy, power and false alarms checked by sampling
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1e-9, 1e-3])
@pytest.mark.parametrize("k", [9, 999, 99_999])
def test_chi2_bounds_are_valid_two_sided_alpha_over_4_and_not_too_loose(k, alpha):
    lo, hi = _chi2_ratio_bounds(k, math.log(4 / alpha))
    upper, lower = stats.chi2.sf(k * hi, k), stats.chi2.cdf(k * lo, k)
    assert upper <= alpha / 4 and lower <= alpha / 4  # rigorous: each tail at most alpha/4
    assert upper > alpha / 4 / 100 and lower > alpha / 4 / 100  # and not absurdly conservative


@pytest.mark.parametrize("n,p", [(100, 0.5), (10_000, 0.1), (100_000, 0.8)])
def test_bernoulli_bounds_are_valid_two_sided(n, p):
    alpha, log_inv = 1e-9, math.log(2 / 1e-9)
    d_hi = _solve_increasing(lambda d: n * _kl_bernoulli(p + d, p), log_inv, 0.0, 1.0 - p)
    d_lo = _solve_increasing(lambda d: n * _kl_bernoulli(p - d, p), log_inv, 0.0, p)
    # Rejected region: k/n > p + d_hi or k/n < p - d_lo; each tail has probability <= alpha/2.
    upper = stats.binom.sf(math.floor(n * (p + d_hi)), n, p)
    lower = stats.binom.cdf(math.ceil(n * (p - d_lo)) - 1, n, p)
    assert upper <= alpha / 2 and lower <= alpha / 2
    assert upper > alpha / 2 / 1000 and lower > alpha / 2 / 1000


def test_uniform_bernstein_bound_is_wider_than_exact_clt_quantile():
    # Bernstein's bound is rigorous; it must be at least the (approximate) Gaussian quantile.
    n, alpha = 10_000, 1e-9
    t = _bernstein_halfwidth(n, 1 / 3, 1.0, math.log(4 / alpha))  # U(-1, 1): var 1/3, |x| <= 1
    assert t >= stats.norm.isf(alpha / 4) * math.sqrt(1 / 3 / n)
    assert t <= 1.2 * stats.norm.isf(alpha / 4) * math.sqrt(1 / 3 / n)


def test_normal_mean_threshold_is_the_two_sided_alpha_over_2_quantile():
    n, mean, std, alpha = 10_000, 0.5, 2.0, 1e-9
    signs = torch.tensor([1.0, -1.0], dtype=torch.float64).repeat(n // 2)
    z = stats.norm.isf(alpha / 4)
    for factor, ok in [(0.99, True), (1.01, False)]:
        x = mean + factor * z * std / math.sqrt(n) + std * signs
        if ok:
            normal_mean_std_test(x, mean, std, alpha=alpha)
        else:
            msg = fails(normal_mean_std_test, x, mean, std, alpha=alpha)
            assert f"outside [{mean - z * std / 100:.6g}, {mean + z * std / 100:.6g}]" in msg


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_normal_correct_samples_pass(n):
    g = torch.Generator().manual_seed(n)
    for mean, std in [(0.0, 1.0), (0.0, 0.05), (-3.0, 7.5)]:
        for _ in range(5):
            x = torch.empty(n).normal_(mean, std, generator=g)
            normal_mean_std_test(x, mean, std)
    normal_mean_std_test(torch.randn(100, 100, generator=g, dtype=torch.float64), 0.0, 1.0)


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_normal_wrong_std_fails(n):
    g = torch.Generator().manual_seed(1)
    std = 0.1
    msg = fails(normal_mean_std_test, torch.randn(n, generator=g) * std**2, 0.0, std)
    assert "std 0.01" in msg and "expected std 0.1" in msg
    assert "matches std**2" in msg and f"n={n}" in msg and "alpha=1e-09" in msg
    for factor in (1.1, 0.9):
        msg = fails(normal_mean_std_test, torch.randn(n, generator=g) * std * factor, 0.0, std)
        assert "std" in msg and "outside" in msg
    msg = fails(normal_mean_std_test, torch.randn(n, generator=g) * math.sqrt(2), 0.0, 1.0)
    assert "matches std * sqrt(2)" in msg


def test_normal_wrong_mean_and_bad_input():
    g = torch.Generator().manual_seed(2)
    msg = fails(normal_mean_std_test, torch.randn(10_000, generator=g) + 0.2, 0.0, 1.0)
    assert "mean 0.2" in msg and "expected mean 0" in msg and "std" not in msg.split(";")[0][20:]
    x = torch.randn(100, generator=g)
    x[7] = math.nan
    assert "non-finite" in fails(normal_mean_std_test, x, 0.0, 1.0)
    assert "is a list" in fails(normal_mean_std_test, [0.0, 1.0], 0.0, 1.0)
    normal_mean_std_test(torch.zeros(10), 0.0, 0.0)
    assert "every sample to equal 0" in fails(normal_mean_std_test, torch.ones(10), 0.0, 0.0)


def _false_alarm_rate(check, draw, reps=1500):
    bad = 0
    for _ in range(reps):
        try:
            check(draw())
        except AssertionError:
            bad += 1
    return bad / reps


def test_false_alarm_rates_are_at_most_alpha():
    # With a large alpha, the rate is measurable: it must not exceed alpha (plus 3 sigma).
    g = torch.Generator().manual_seed(3)
    alpha, reps = 0.2, 1500
    slack = 3 * math.sqrt(alpha * (1 - alpha) / reps)
    rates = [
        _false_alarm_rate(
            lambda x: normal_mean_std_test(x, 1.0, 0.3, alpha=alpha),
            lambda: 1.0 + 0.3 * torch.randn(30, generator=g, dtype=torch.float64),
            reps,
        ),
        _false_alarm_rate(
            lambda x: uniform_bounds_test(x, -1.0, 1.0, alpha=alpha),
            lambda: torch.rand(30, generator=g, dtype=torch.float64) * 2 - 1,
            reps,
        ),
        _false_alarm_rate(
            lambda m: bernoulli_rate_test(m, 0.3, alpha=alpha),
            lambda: torch.rand(30, generator=g) < 0.3,
            reps,
        ),
    ]
    assert all(r <= alpha + slack for r in rates), rates
    assert rates[0] > alpha / 4  # the normal test uses its budget (it is exact, not loose)


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_uniform(n):
    g = torch.Generator().manual_seed(4)
    a = math.sqrt(6 / (64 + 32))
    for _ in range(5):
        uniform_bounds_test(torch.empty(n).uniform_(-a, a, generator=g), -a, a)
    uniform_bounds_test(torch.rand(n, generator=g) * 3 + 2, 2.0, 5.0)
    msg = fails(uniform_bounds_test, torch.empty(n).uniform_(-0.9 * a, 0.9 * a, generator=g), -a, a)
    assert "spread" in msg and "alpha=1e-09" in msg and "U(-0.2" in msg
    msg = fails(uniform_bounds_test, torch.empty(n).uniform_(-1.1 * a, 1.1 * a, generator=g), -a, a)
    assert "outside [-0.25, 0.25]" in msg and "observed min" in msg
    normal_same_std = torch.randn(n, generator=g) * a / math.sqrt(3)
    assert "outside" in fails(uniform_bounds_test, normal_same_std, -a, a)
    shifted = torch.rand(n, generator=g) * 2 * a - a * 0.9
    assert "mean" in fails(uniform_bounds_test, shifted.clamp(-a, a), -a, a)


@pytest.mark.parametrize("n", [10_000, 100_000])
def test_bernoulli(n):
    g = torch.Generator().manual_seed(5)
    for p in (0.1, 0.5, 0.8):
        for _ in range(3):
            mask = torch.rand(n, generator=g) < p
            bernoulli_rate_test(mask, p)
            bernoulli_rate_test(mask.float(), p)
    drop = 0.2
    keep_mask = (torch.rand(n, generator=g) >= drop).float()
    msg = fails(bernoulli_rate_test, keep_mask, drop)
    assert "fraction of ones 0.79" in msg or "fraction of ones 0.80" in msg
    assert "matches 1 - p = 0.8" in msg and "drop" in msg
    msg = fails(bernoulli_rate_test, keep_mask / (1 - drop), 1 - drop)
    assert "only 0 and 1" in msg and "1.25" in msg and "scaled" in msg
    msg = fails(bernoulli_rate_test, torch.rand(n, generator=g) < 0.55, 0.5)
    assert "expected p=0.5" in msg and "alpha=1e-09" in msg


def test_bernoulli_degenerate_p():
    bernoulli_rate_test(torch.zeros(10), 0.0)
    bernoulli_rate_test(torch.ones(10, dtype=torch.bool), 1.0)
    assert "every entry to be 0" in fails(bernoulli_rate_test, torch.tensor([0.0, 1.0]), 0.0)


# --------------------------------------------------------------------------------------------
# check_device_agnostic
# --------------------------------------------------------------------------------------------


def add_bias_good(x):
    return x + torch.zeros(x.shape[-1], device=x.device, dtype=x.dtype)


def add_bias_bad(x):
    return x + torch.zeros(x.shape[-1])


def project_bad(x):
    w = torch.ones(x.shape[-1], 2, device="cpu")
    return x @ w  # runs silently on meta in torch, but breaks on CUDA


def layer_bad(x):
    return nn.Linear(x.shape[-1], 2)(x)


def returns_cpu(x):
    return torch.ones(3, device="cpu")


def scalar_ok(x):
    return x * torch.tensor(2.0)


def normal_init_(w, generator=None):
    with torch.no_grad():
        return w.normal_(0.0, 1 / math.sqrt(w.shape[1]), generator=generator)


def reads_values(x):
    return x * 2 if x.sum().item() > 0 else x


def reads_values_bad(x):
    return x * torch.ones(x.shape) if x.sum().item() > 0 else x


def test_device_agnostic_passes_correct_code():
    x = torch.randn(5, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_device_agnostic(add_bias_good, x)
        check_device_agnostic(scalar_ok, x)
        check_device_agnostic(normal_init_, torch.empty(3, 4), generator=torch.Generator())
        model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
        check_device_agnostic(lambda m, x: m(x), model, x)
    assert model[0].weight.device.type == "cpu"  # the caller's module was not moved


def test_device_agnostic_catches_factory_without_device():
    msg = fails(check_device_agnostic, add_bias_bad, torch.randn(5, 4))
    assert msg.startswith("add_bias_bad: torch.zeros(...) in add_bias_bad, line")
    assert "without device=" in msg
    assert "creates a tensor on cpu" in msg and "device=x.device" in msg


def test_device_agnostic_catches_mixing_that_meta_lets_through():
    msg = fails(check_device_agnostic, project_bad, torch.randn(5, 4))
    assert "Tensor.matmul in project_bad" in msg and "different devices (cpu and meta)" in msg
    assert "torch.ones in project_bad" in msg and "device=x.device" in msg
    msg = fails(check_device_agnostic, layer_bad, torch.randn(5, 4))
    assert "torch.nn.functional.linear" in msg and "called from layer_bad" in msg
    assert "module created without device=" in msg


def test_device_agnostic_catches_returned_cpu_tensor():
    msg = fails(check_device_agnostic, returns_cpu, torch.randn(2))
    assert "returned a tensor on cpu" in msg and "device=x.device" in msg


def test_device_agnostic_falls_back_for_data_dependent_code():
    with pytest.warns(UserWarning, match="reads tensor values"):
        check_device_agnostic(reads_values, torch.ones(3))
    msg = fails(check_device_agnostic, reads_values_bad, torch.ones(3))
    assert "torch.ones(...) in reads_values_bad" in msg


def test_device_agnostic_lets_real_errors_through():
    with pytest.raises(RuntimeError):
        check_device_agnostic(lambda x: x @ x, torch.ones(2, 3))  # a shape error stays one
    with pytest.raises(ValueError, match="at least one tensor"):
        check_device_agnostic(lambda n: n, 3)


# --------------------------------------------------------------------------------------------
# assert_in_place / assert_generator_reproducible / report
# --------------------------------------------------------------------------------------------


def test_assert_in_place():
    assert_in_place(normal_init_, torch.empty(4, 3))
    assert_in_place(lambda m: m.apply(lambda _: None), nn.Linear(2, 2))

    def forgets_return_(t):
        t.zero_()

    assert "returned None" in fails(assert_in_place, forgets_return_, torch.ones(2))
    msg = fails(assert_in_place, lambda t: torch.zeros_like(t), torch.ones(2))
    assert "returned a new object (a torch.Tensor)" in msg

    def reassign_(t):
        t.data = torch.zeros(3)
        return t

    assert "data_ptr changed" in fails(assert_in_place, reassign_, torch.ones(3))

    def new_param_(m):
        m.weight = nn.Parameter(torch.zeros_like(m.weight))
        return m

    msg = fails(assert_in_place, new_param_, nn.Linear(2, 2))
    assert "replaced parameter 'weight' with a new object" in msg


def test_assert_generator_reproducible():
    make = lambda: torch.empty(8, 8)  # noqa: E731
    assert_generator_reproducible(normal_init_, make)

    def global_rng_(w, generator=None):
        return w.normal_()

    assert "torch's global generator" in fails(assert_generator_reproducible, global_rng_, make)

    def numpy_rng_(w, generator=None):
        return w.copy_(torch.from_numpy(np.random.randn(*w.shape)))

    assert "numpy's global generator" in fails(assert_generator_reproducible, numpy_rng_, make)

    def python_rng_(w, generator=None):
        return w.fill_(random.random())

    assert "Python's random module" in fails(assert_generator_reproducible, python_rng_, make)

    def constant_(w, generator=None):
        return w.fill_(0.5)

    assert "identical results" in fails(assert_generator_reproducible, constant_, make)

    def no_kwarg_(w):
        return w.normal_()

    assert "keyword argument `generator`" in fails(assert_generator_reproducible, no_kwarg_, make)


def test_report(capsys):
    with report("relu_gain"):
        assert_close(1.0, 1.0)
    assert capsys.readouterr().out == "relu_gain: visible checks passed\n"
    with pytest.raises(AssertionError, match=r"^relu_gain: gain is 1.0, expected 2.0"):
        with report("relu_gain"):
            assert_close(1.0, 2.0, name="gain")


def test_replaced_swaps_the_names_a_function_uses_and_puts_them_back():
    from gradschool.checks import replaced

    namespace = {"helper": lambda x: x + 1}
    exec("def under_test(x):\n    return helper(x) * 2\n", namespace)
    under_test = namespace["under_test"]
    with replaced(under_test, helper=lambda x: x, extra=3):
        assert under_test(5) == 10 and namespace["extra"] == 3
    assert under_test(5) == 12 and "extra" not in namespace
    with pytest.raises(ZeroDivisionError), replaced(under_test, helper=lambda x: 1 / 0):
        under_test(1)
    assert under_test(5) == 12


def test_a_ratio_close_to_one_is_not_called_a_constant_factor():
    """1.00002 times the expected values is an accuracy problem, not 'a constant factor 1'."""
    expected = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    with pytest.raises(AssertionError) as error:
        assert_close(expected * 1.00002, expected, rtol=1e-9, atol=0, name="w")
    assert "constant factor" not in str(error.value)
