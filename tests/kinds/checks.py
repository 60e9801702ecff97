"""Hidden checks of the 'kinds' fixture assignment: one example of every kind of exercise.

The pattern every real assignment's checks follow: make inputs here, have the kernel run the
student's code on them (``kernel.probe``), compute the expected values here with torch's own
implementation, compare here (probe results come back on the CPU). CUDA is checked too when the
grading kernel can use a GPU (``kernel.devices``). ``forbid`` lists torch's implementations of
what each exercise implements (see gradschool.delegation).
"""

import math

import torch
from torch import nn

from gradschool.checks import assert_close, assert_equal, bernoulli_rate_test, normal_mean_std_test
from gradschool.instructor import HiddenChecks

checks = HiddenChecks()


# -- a pure function ---------------------------------------------------------------------------
@checks.test("softmax-tests", forbid=[
    "torch.softmax", "torch.nn.functional.softmax", "torch.Tensor.softmax", "torch.log_softmax",
    "torch.nn.functional.log_softmax", "torch.Tensor.log_softmax", "torch.nn.Softmax",
    "torch.special.softmax", "torch._softmax"])
def softmax_matches_torch(kernel):
    g = torch.Generator().manual_seed(1)
    cases = [(torch.randn(4, 5, 6, generator=g, dtype=torch.float64), d) for d in (0, 1, -1)]
    cases.append((1000 * torch.randn(3, 7, generator=g), -1))  # exp overflows unless shifted
    for device in kernel.devices:
        for x, dim in cases:
            got = kernel.probe("y = softmax(x, dim=dim)\nresult = {'y': y, 'x': x}",
                               x=x.to(device), dim=dim)
            what = f"softmax(x, dim={dim}) for a {tuple(x.shape)} {x.dtype} x on {device}"
            assert_close(got["y"], torch.softmax(x, dim), name=what)
            assert_equal(got["x"], x, name=f"x after {what} (must not change)")


# -- an in-place function with a torch.Generator -----------------------------------------------
DROPOUT = """
x = torch.ones(n, dtype=torch.float64, device=device)
pointer = x.data_ptr()
rng = torch.random.get_rng_state()
y = dropout_(x, p, generator=torch.Generator(device).manual_seed(seed))
again = dropout_(torch.ones_like(x), p, generator=torch.Generator(device).manual_seed(seed))
result = {"x": x, "in_place": y is x and x.data_ptr() == pointer, "again": again,
          "rng_untouched": torch.equal(rng, torch.random.get_rng_state())}
"""


@checks.test("dropout-tests", forbid=[
    "torch.nn.functional.dropout", "torch.dropout", "torch.dropout_", "torch.nn.Dropout",
    "torch.bernoulli", "torch.Tensor.bernoulli", "torch.Tensor.bernoulli_", "native_dropout"])
def dropout_zeroes_at_rate_p_and_rescales(kernel):
    for device in kernel.devices:
        for p in (0.0, 0.3, 0.8):
            got = kernel.probe(DROPOUT, n=100_000, p=p, seed=7, device=device)
            what = f"dropout_(x, {p}, generator) on {device}"
            assert_equal(got["in_place"], True, name=f"{what} returns x, changed in place")
            assert_equal(got["rng_untouched"], True,
                         name=f"torch's global RNG after {what} (draw from the generator only)")
            assert_equal(got["again"], got["x"], name=f"{what} twice with the same seed")
            x = got["x"]
            kept = x != 0
            assert_close(x[kept], torch.full_like(x[kept], 1 / (1 - p)),
                         name=f"the kept entries of {what} (scaled by 1 / (1 - p))")
            bernoulli_rate_test(kept, 1 - p, name=f"the kept entries of {what}")


# -- a torch.optim.Optimizer stepped for hundreds of iterations -------------------------------
OPTIMIZE = """
params = [torch.nn.Parameter(w.clone().to(device)) for w in start]
opt = MyAdam([{"params": params[:1]}, {"params": params[1:], "lr": 0.05}], **kwargs)
for _ in range(steps):
    opt.zero_grad()
    loss = sum(0.5 * p @ (A @ p) + b @ p for p in params)
    loss.backward()
    opt.step()
result = [p.detach() for p in params]
"""


def reference_adam(start, A, b, steps, kwargs):
    params = [nn.Parameter(w.clone()) for w in start]
    opt = torch.optim.Adam([{"params": params[:1]}, {"params": params[1:], "lr": 0.05}], **kwargs)
    for _ in range(steps):
        opt.zero_grad()
        sum(0.5 * p @ (A @ p) + b @ p for p in params).backward()
        opt.step()
    return [p.detach() for p in params]


@checks.test("adam-tests", forbid=["torch.optim.Adam", "torch.optim.AdamW", "torch.optim.adam",
                                   "torch.optim.adamw"])
def adam_matches_torch_for_300_steps(kernel):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(6, 6, generator=g, dtype=torch.float64)
    A, b = q @ q.T + 0.1 * torch.eye(6, dtype=torch.float64), torch.randn(6, generator=g,
                                                                           dtype=torch.float64)
    start = [torch.randn(6, generator=g, dtype=torch.float64) for _ in range(2)]
    for device in kernel.devices:
        for kwargs in ({"lr": 0.01}, {"lr": 0.02, "betas": (0.8, 0.99), "weight_decay": 0.1}):
            got = kernel.probe(OPTIMIZE, start=start, A=A.to(device), b=b.to(device), steps=300,
                               kwargs=kwargs, device=device)
            for i, (mine, ref) in enumerate(zip(got, reference_adam(
                    start, A, b, 300, kwargs), strict=True)):
                assert_close(mine, ref, rtol=1e-9, atol=1e-12,
                             name=f"parameter group {i} after 300 steps of MyAdam(**{kwargs}) "
                             f"on {device}")


# -- an nn.Module with parameters, buffers, train/eval and a custom autograd.Function ---------
BATCHNORM = """
bn = MyBatchNorm1d(x.shape[-1], momentum=0.2).to(device=device, dtype=x.dtype)
with torch.no_grad():
    bn.weight.copy_(weight)
    bn.bias.copy_(bias)
record = []
for batch in (x, 2 * x + 1, x.flip(0)):
    batch = batch.to(device).requires_grad_()
    out = bn(batch)
    (out * upstream.to(device)).sum().backward()
    record.append([out.detach(), batch.grad, bn.weight.grad.clone(), bn.bias.grad.clone(),
                   bn.running_mean.clone(), bn.running_var.clone()])
    bn.zero_grad()
backward = type(out.grad_fn).__name__
bn.eval()
result = {"train": record, "eval": bn(x.to(device)).detach(), "backward": backward,
          "buffers": sorted(name for name, _ in bn.named_buffers())}
"""


def reference_batchnorm(x, weight, bias, upstream):
    bn = nn.BatchNorm1d(x.shape[-1], momentum=0.2).to(x.dtype)
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    record = []
    for batch in (x, 2 * x + 1, x.flip(0)):
        batch = batch.clone().requires_grad_()
        out = bn(batch)
        (out * upstream).sum().backward()
        record.append([out.detach(), batch.grad, bn.weight.grad.clone(), bn.bias.grad.clone(),
                       bn.running_mean.clone(), bn.running_var.clone()])
        bn.zero_grad()
    bn.eval()
    return record, bn(x).detach()


@checks.test("batchnorm-tests", forbid=["torch.nn.BatchNorm1d", "torch.nn.functional.batch_norm",
                                        "torch.batch_norm", "torch.nn.modules.batchnorm"])
def batchnorm_matches_torch_in_train_and_eval(kernel):
    g = torch.Generator().manual_seed(5)
    x = 3 * torch.randn(16, 4, generator=g, dtype=torch.float64) + 2
    weight, bias = torch.rand(4, generator=g, dtype=torch.float64) + 0.5, torch.randn(
        4, generator=g, dtype=torch.float64)
    upstream = torch.randn(16, 4, generator=g, dtype=torch.float64)
    train, evaluation = reference_batchnorm(x, weight, bias, upstream)
    names = ["output", "grad of x", "grad of weight", "grad of bias", "running_mean",
             "running_var"]
    for device in kernel.devices:
        got = kernel.probe(BATCHNORM, x=x, weight=weight, bias=bias, upstream=upstream,
                           device=device)
        assert_equal(got["backward"], "BatchNormFunctionBackward",
                     name="the backward node of MyBatchNorm1d's output (use BatchNormFunction)")
        assert_equal(got["buffers"][:2], ["running_mean", "running_var"],
                     name="MyBatchNorm1d's buffers")
        for step, (mine, ref) in enumerate(zip(got["train"], train, strict=True)):
            for name, a, e in zip(names, mine, ref, strict=True):
                assert_close(a, e, name=f"{name} after training batch {step} on {device}")
        assert_close(got["eval"], evaluation, name=f"output in eval mode on {device}")


# -- a random sampler, checked statistically ---------------------------------------------------
SAMPLE = """
rng = torch.random.get_rng_state()
a = sample_normal(n, mean, std, generator=torch.Generator().manual_seed(seed))
b = sample_normal(n, mean, std, generator=torch.Generator().manual_seed(seed))
result = {"a": a, "b": b, "rng_untouched": torch.equal(rng, torch.random.get_rng_state())}
"""


@checks.test("sampler-tests", forbid=["torch.randn", "torch.randn_like", "torch.normal",
                                      "torch.Tensor.normal_", "torch.distributions.Normal",
                                      "torch.nn.init.normal_"])
def sample_normal_draws_the_right_distribution(kernel):
    for mean, std in ((0.0, 1.0), (2.0, 3.0), (-1.0, 0.01)):
        got = kernel.probe(SAMPLE, n=100_000, mean=mean, std=std, seed=11)
        what = f"sample_normal(100000, {mean}, {std}, generator)"
        assert_equal((got["a"].dtype, tuple(got["a"].shape)), (torch.float32, (100_000,)),
                     name=f"dtype and shape of {what}")
        assert_equal(got["rng_untouched"], True, name=f"torch's global RNG after {what}")
        assert_equal(got["a"], got["b"], name=f"{what} twice with the same seed")
        normal_mean_std_test(got["a"].double(), mean, std, name=what)
        tail = math.erfc(2 / math.sqrt(2))  # P(|z| > 2): catches uniform or Laplace shapes
        bernoulli_rate_test((got["a"].double() - mean).abs() > 2 * std, tail,
                            name=f"the fraction beyond 2 std of {what}")
