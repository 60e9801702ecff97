"""Hidden checks of 04-dropout (instructor side: never released, never installed).

Dropout is random, so nothing here compares with one seed's numbers or with torch's own mask:
every check is structural (outputs are 0 or x / (1 - p); the input is untouched; the same
generator state gives the same mask; torch's global generators are untouched; the gradient uses
the forward mask) or statistical, with rigorous bounds. Each statistical test runs at a
false-alarm rate of ALPHA = 5e-12; there are 55 of them per device (dropout 36, classic_dropout
10, Dropout 6, mc_dropout_predict 3 union bounds), 110 with CUDA, so a correct submission fails
this file by bad luck with probability below 1e-9 (union bound). expected_dropout_loss is exact
and checked against the closed form in float64.

One mistake costs one test: each exercise is graded on its own. Where an exercise may use
another one, its probes run with a known-good stand-in for it (``stand_ins``), as its visible
test does with torch's dropout: ``classic_dropout`` and ``Dropout`` may call ``dropout`` (stand-in:
REFERENCE_DROPOUT), ``mc_dropout_predict`` needs the class ``Dropout`` (stand-in:
REFERENCE_MODULE; the probe's dropout layer is a subclass of it with a known forward). So
``Dropout`` is graded independently of ``dropout``: on its own job (checking p, keeping ``p`` and
``generator``, following ``self.training``, handing them on), whatever the student's ``dropout``
does.

The kernel only runs the student's code on inputs made here and sends plain data back; every
comparison happens in the grader's process.
"""

import itertools
import math

import torch
from torch import nn

from gradschool.checks import assert_close, assert_equal, bernoulli_rate_test
from gradschool.instructor import HiddenChecks, device_of

checks = HiddenChecks()
ALPHA = 5e-12

# torch's dropout, however reached (gradschool.delegation: torch's objects, not the student's
# own `dropout` and `Dropout`), and what it would take to make the global generator behave like
# the given one (seeding it and restoring its state afterwards). The generator checks below
# catch the rest by behaviour: torch's dropout cannot draw from a torch.Generator.
FORBID = [
    "torch.nn.functional.dropout", "torch.nn.functional.dropout1d",
    "torch.nn.functional.dropout2d", "torch.nn.functional.dropout3d",
    "torch.nn.functional.alpha_dropout", "torch.nn.functional.feature_alpha_dropout",
    "torch.dropout", "torch.dropout_", "torch.alpha_dropout", "torch.feature_dropout",
    "torch.feature_alpha_dropout", "torch.native_dropout", "torch.nn.modules.dropout", "torch._VF",
    "native_dropout", "_fused_dropout", "fused_dropout",
    "torch.random.fork_rng", "torch.random.set_rng_state", "torch.set_rng_state",
    "torch.cuda.set_rng_state", "torch.cuda.set_rng_state_all", "torch.Generator.set_state",
    "graphsafe_set_state",
]

# Known-good versions of the exercises other tests may lean on (stand-ins, see the module doc).
REFERENCE_DROPOUT = """
def dropout(x, p=0.5, training=True, generator=None):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return torch.zeros_like(x)
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= p
    return x * keep / (1 - p)
"""
REFERENCE_MODULE = """
class Dropout(torch.nn.Module):
    def __init__(self, p=0.5, generator=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p must be in [0, 1], got {p}")
        self.p, self.generator = p, generator

    def forward(self, x):
        return dropout(x, self.p, self.training, self.generator)
"""

# -- shared probes ------------------------------------------------------------------------------
RNG_BEFORE = """
torch.manual_seed(99)
torch.rand(7)  # an advanced state: re-seeding cannot restore it
cpu_rng = torch.random.get_rng_state()
cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
"""
RNG_AFTER = """
rng = {"cpu": [cpu_rng, torch.random.get_rng_state()],
       "cuda": [cuda_rng, torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []]}
"""

CALLS = RNG_BEFORE + """
x = x.to(device)
g = torch.Generator(device).manual_seed(seed)
y1 = FUNCTION(x, p, generator=g)
y2 = FUNCTION(x, p, generator=g)  # the same generator, one call later: a new mask
y3 = FUNCTION(x, p, generator=torch.Generator(device).manual_seed(seed))  # y1 again
""" + RNG_AFTER + """
torch.manual_seed(5)
a = FUNCTION(x, p)
torch.manual_seed(5)
b = FUNCTION(x, p)
result = {"x": x, "y1": y1, "y2": y2, "y3": y3, "a": a, "b": b, "rng": rng}
"""

BACKWARD = """
x = x.to(device).requires_grad_()
y = FUNCTION(x, p, training=training, generator=torch.Generator(device).manual_seed(3))
y.backward(upstream.to(device))
result = {"y": y.detach(), "grad": x.grad}
"""

ERRORS = """
raised = []
for bad, training in cases:
    try:
        FUNCTION(torch.ones(3, device=device), bad, training=training)
        raised.append("nothing")
    except Exception as e:  # noqa: BLE001
        raised.append(type(e).__name__)
result = raised
"""

META = """
from gradschool.checks import check_device_agnostic
try:
    check_device_agnostic(FUNCTION, torch.ones(4, 6), 0.35)
    problem = ""
except AssertionError as e:
    problem = str(e).splitlines()[0]
y = FUNCTION(torch.ones(4, 6, device="meta", dtype=torch.float16), 0.35)
result = {"problem": problem, "meta": [y.device.type, str(y.dtype), list(y.shape)]}
"""


def nonzero_input(shape, dtype, seed):
    """Values in +-[0.5, 1.5]: a zero output can only mean 'dropped'."""
    g = torch.Generator().manual_seed(seed)
    x = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
    sign = torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).to(torch.float64)
    return (x * sign).to(dtype)


def rtol_of(dtype):
    return 4 * torch.finfo(dtype).eps


def assert_rng_untouched(rng, what):
    assert_equal(torch.equal(*rng["cpu"]), True,
                 name=f"torch's global CPU generator unchanged by {what} (with a generator, draw "
                      "only from it; torch's dropout cannot)")
    assert_equal(all(torch.equal(a, b) for a, b in zip(*rng["cuda"], strict=True)), True,
                 name=f"torch's global CUDA generators unchanged by {what}")


def assert_independent(kept, keep, what):
    """Disjoint pairs of neighbours along every dimension share their fate (both kept or both
    dropped) with probability keep**2 + (1 - keep)**2 when the mask entries are independent; a
    mask shared along a dimension gives 1 there. (The same for keep and 1 - keep: a keep/drop
    mix-up passes this and is caught by the rate test, with a hint.)"""
    same = keep**2 + (1 - keep) ** 2
    for dim in range(kept.dim()):  # exact sharing first: the clearest message
        shared = bool((kept == kept.narrow(dim, 0, 1)).all())
        assert_equal(shared, False, name=f"'the mask is the same at every index of dim {dim}' "
                     f"under {what} (one mask shared along dim {dim} instead of one per element)")
    for dim in range(kept.dim()):
        n = kept.shape[dim] // 2 * 2
        pairs = kept.narrow(dim, 0, n).unflatten(dim, (n // 2, 2))
        bernoulli_rate_test(pairs.select(dim + 1, 0) == pairs.select(dim + 1, 1), same,
                            alpha=ALPHA,
                            name=f"pairs of neighbours along dim {dim} with the same fate (kept "
                                 f"or dropped) under {what} (one mask shared along dim {dim} "
                                 "instead of one per element?)")


def check_calls(kernel, function, x, p, device, kept_value):
    """The statistical and structural checks of one call pattern (see CALLS)."""
    got = kernel.probe(CALLS.replace("FUNCTION", function), x=x, p=p, seed=17, device=device)
    what = f"{function}(x, p={p}) on a {tuple(x.shape)} {x.dtype} x on {device}"
    y1 = got["y1"]
    assert_equal((y1.dtype, tuple(y1.shape), device_of(y1)), (x.dtype, tuple(x.shape), device),
                 name=f"dtype, shape and device of {what}")
    assert_equal(got["x"].cpu(), x, name=f"x after {what} (the input must not change)")
    y1 = y1.cpu()
    kept = y1 != 0
    expected = kept_value(x.double())
    assert_close(y1[kept].double(), expected[kept], rtol=rtol_of(x.dtype), atol=0,
                 name=f"the kept entries of {what}")
    assert_independent(kept, 1 - p, what)
    bernoulli_rate_test(kept, 1 - p, alpha=ALPHA, name=f"the entries kept by {what}")
    kept2 = got["y2"].cpu() != 0
    bernoulli_rate_test(kept == kept2, (1 - p) ** 2 + p**2, alpha=ALPHA,
                        name=f"entries with the same fate in two successive calls of {what} with "
                             "one generator (the same mask every call?)")
    assert_equal(got["y3"].cpu(), got["y1"].cpu(),
                 name=f"{what} with two generators seeded alike (all randomness from the "
                      "generator)")
    assert_rng_untouched(got["rng"], what)
    assert_equal(got["a"].cpu(), got["b"].cpu(),
                 name=f"{what} without a generator, after torch.manual_seed(5) twice")
    bernoulli_rate_test(got["a"].cpu() != 0, 1 - p, alpha=ALPHA,
                        name=f"the entries kept by {what} without a generator")


def check_errors(kernel, function):
    cases = [(-0.01, True), (1.01, True), (2.0, False), (-1.0, False)]
    for device in kernel.devices:
        got = kernel.probe(ERRORS.replace("FUNCTION", function), cases=cases, device=device)
        for (bad, training), raised in zip(cases, got, strict=True):
            assert_equal(raised, "ValueError",
                         name=f"what {function}(x, p={bad}, training={training}) raises")


def check_backward(kernel, function, scale, training=True):
    g = torch.Generator().manual_seed(8)
    x = nonzero_input((60, 70), torch.float64, seed=9)
    upstream = torch.randn(60, 70, generator=g, dtype=torch.float64)
    for device in kernel.devices:
        for p in (0.35, 0.8):
            got = kernel.probe(BACKWARD.replace("FUNCTION", function), x=x, p=p, device=device,
                               upstream=upstream, training=training)
            kept = (got["y"].cpu() != 0).double() if training else torch.ones_like(x)
            assert_close(got["grad"].cpu(), upstream * kept * scale(p), rtol=1e-12, atol=0,
                         name=f"the gradient of {function}(x, {p}, training={training}) on "
                              f"{device} (upstream x the forward mask x the scaling)")


def check_meta(kernel, function):
    got = kernel.probe(META.replace("FUNCTION", function))
    assert_equal(got["problem"], "", name=f"device-agnostic {function} (on the meta device)")
    assert_equal(got["meta"], ["meta", "torch.float16", [4, 6]],
                 name=f"device, dtype and shape of {function} on a float16 meta tensor")


# -- Exercise 1: dropout (inverted) -------------------------------------------------------------
EDGES = """
x = x.to(device)
out = {"eval": [dropout(x, p, training=False) is x for p in (0.4, 0.0, 1.0)],
       "p0": dropout(x, 0.0) is x, "p0_int": dropout(x, 0) is x,
       "p1": dropout(x, 1.0), "p1_int": dropout(x, 1), "x": x}
result = out
"""


@checks.test("inverted-dropout-tests", forbid=FORBID)
def dropout_keeps_each_element_with_prob_1_minus_p_and_rescales(kernel):
    for device in kernel.devices:
        dtypes = [torch.float64, torch.float32, torch.float16]
        for i, dtype in enumerate(dtypes):
            for p in (0.2, 0.7):
                x = nonzero_input((300, 400), dtype, seed=10 * i + int(10 * p))
                check_calls(kernel, "dropout", x, p, device, lambda v, p=p: v / (1 - p))
        x3 = nonzero_input((64, 48, 40), torch.float32, seed=77)
        check_calls(kernel, "dropout", x3, 0.6, device, lambda v: v / 0.4)


@checks.test("inverted-dropout-tests", forbid=FORBID)
def dropout_edge_cases_gradient_and_devices(kernel):
    x = nonzero_input((50, 60), torch.float32, seed=3)
    for device in kernel.devices:
        got = kernel.probe(EDGES, x=x, device=device)
        assert_equal(got["eval"], [True] * 3,
                     name="dropout(x, p, training=False) is x, for p = 0.4, 0.0, 1.0")
        assert_equal((got["p0"], got["p0_int"]), (True, True),
                     name="dropout(x, 0.0) is x and dropout(x, 0) is x (nothing dropped)")
        for key in ("p1", "p1_int"):
            assert_equal(got[key].cpu(), torch.zeros_like(x),
                         name=f"dropout(x, {1.0 if key == 'p1' else 1}) on {device} (all "
                              "dropped: zeros, no NaN)")
        assert_equal(got["x"].cpu(), x, name="x after the calls (never modified)")
    check_errors(kernel, "dropout")
    check_backward(kernel, "dropout", lambda p: 1 / (1 - p))
    check_meta(kernel, "dropout")


# -- Exercise 2: classic_dropout ----------------------------------------------------------------
CLASSIC_EVAL = """
x = x.to(device)
result = {"eval": [classic_dropout(x, p, training=False) for p in ps],
          "p1": classic_dropout(x, 1.0), "p0": classic_dropout(x, 0.0), "x": x}
"""


@checks.test("classic-dropout-tests", forbid=FORBID, stand_ins={"dropout": REFERENCE_DROPOUT})
def classic_dropout_masks_without_scaling_and_scales_at_test(kernel):
    for device in kernel.devices:
        for dtype, p in ((torch.float64, 0.25), (torch.float32, 0.65)):
            x = nonzero_input((300, 400), dtype, seed=int(100 * p))
            check_calls(kernel, "classic_dropout", x, p, device, lambda v: v)
        ps = [0.0, 0.3, 0.9, 1.0]
        x = nonzero_input((40, 50), torch.float64, seed=5)
        got = kernel.probe(CLASSIC_EVAL, x=x, ps=ps, device=device)
        for p, y in zip(ps, got["eval"], strict=True):
            assert_close(y.cpu(), (1 - p) * x, rtol=1e-12, atol=0,
                         name=f"classic_dropout(x, {p}, training=False) on {device}: (1 - p) x")
        assert_equal(got["p1"].cpu(), torch.zeros_like(x), name="classic_dropout(x, 1.0)")
        assert_equal(got["p0"].cpu(), x, name="classic_dropout(x, 0.0) in training")
        assert_equal(got["x"].cpu(), x, name="x after the calls (never modified)")


@checks.test("classic-dropout-tests", forbid=FORBID, stand_ins={"dropout": REFERENCE_DROPOUT})
def classic_dropout_errors_gradient_and_devices(kernel):
    check_errors(kernel, "classic_dropout")
    check_backward(kernel, "classic_dropout", lambda p: 1.0)
    check_backward(kernel, "classic_dropout", lambda p: 1 - p, training=False)
    check_meta(kernel, "classic_dropout")


# -- Exercise 3: Dropout ------------------------------------------------------------------------
MODULE = RNG_BEFORE + """
x = x.to(device)
layer = Dropout(p)
info = {"is_module": isinstance(layer, torch.nn.Module), "p": layer.p,
        "n_params": len(list(layer.parameters())), "training": layer.training,
        "mro": [f"{c.__module__}.{c.__qualname__}" for c in type(layer).__mro__]}
train1 = layer(x)
layer.p = p2
train2 = layer(x)
layer.p = p
seq = torch.nn.Sequential(torch.nn.Identity(), layer)
seq.eval()
evaluated = seq(x)
seq.train()
train3 = seq(x)
torch.manual_seed(99)
torch.rand(7)
cpu_rng = torch.random.get_rng_state()
cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
seed_gen = torch.Generator(device).manual_seed(4)
seeded = Dropout(p, generator=seed_gen)
info["generator"] = [getattr(layer, "generator", "absent") is None,
                     getattr(seeded, "generator", None) is seed_gen]
ya, yb = seeded(x), seeded(x)
yc = Dropout(p, generator=torch.Generator(device).manual_seed(4))(x)
""" + RNG_AFTER + """
try:
    Dropout(1.5)
    raised = "nothing"
except Exception as e:  # noqa: BLE001
    raised = type(e).__name__
xg = x.clone().requires_grad_()
out = Dropout(p, generator=torch.Generator(device).manual_seed(6))(xg)
out.backward(upstream.to(device))
result = {"info": info, "train1": train1, "train2": train2, "evaluated": evaluated,
          "train3": train3, "ya": ya, "yb": yb, "yc": yc, "rng": rng, "raised": raised,
          "out": out.detach(), "grad": xg.grad, "x": x}
"""


@checks.test("dropout-module-tests", forbid=FORBID, stand_ins={"dropout": REFERENCE_DROPOUT})
def dropout_module_follows_training_flag_p_and_generator(kernel):
    p, p2 = 0.3, 0.75
    x = nonzero_input((200, 300), torch.float32, seed=21)
    upstream = torch.randn(200, 300, generator=torch.Generator().manual_seed(2))
    for device in kernel.devices:
        got = kernel.probe(MODULE, x=x, p=p, p2=p2, device=device, upstream=upstream)
        info = got["info"]
        assert_equal([c for c in info["mro"] if c.startswith("torch.nn.modules.dropout")], [],
                     name="torch's dropout modules among Dropout's base classes (implement it)")
        assert_equal((info["is_module"], info["p"], info["n_params"], info["training"]),
                     (True, p, 0, True),
                     name="(is an nn.Module, p, number of parameters, training) of Dropout(0.3)")
        assert_equal(info["generator"], [True, True],
                     name="(Dropout(0.3).generator is None, Dropout(0.3, generator=g).generator is "
                          "g): keep the generator as the attribute `generator`")
        what = f"Dropout(0.3) on {device}"
        for key, rate, when in (("train1", 1 - p, "in training mode"),
                                ("train2", 1 - p2, "after layer.p = 0.75 (read p at forward)"),
                                ("train3", 1 - p, "inside a Sequential after model.train()")):
            y = got[key].cpu()
            kept = y != 0
            assert_close(y[kept], x[kept] / (1 - (p2 if key == "train2" else p)),
                         rtol=rtol_of(torch.float32), atol=0,
                         name=f"kept entries of {what} {when}")
            bernoulli_rate_test(kept, rate, alpha=ALPHA, name=f"entries kept by {what} {when}")
        assert_independent(got["train1"].cpu() != 0, 1 - p, what)
        assert_equal(got["evaluated"].cpu(), x,
                     name=f"{what} inside a Sequential after model.eval() (identity)")
        assert_equal(got["yc"].cpu(), got["ya"].cpu(),
                     name=f"two Dropout(0.3, generator) seeded alike on {device}")
        bernoulli_rate_test((got["ya"].cpu() != 0) == (got["yb"].cpu() != 0),
                            (1 - p) ** 2 + p**2, alpha=ALPHA,
                            name=f"entries with the same fate in two calls of one seeded {what}")
        assert_rng_untouched(got["rng"], f"Dropout(0.3, generator=...) on {device}")
        assert_equal(got["raised"], "ValueError", name="what Dropout(1.5) raises")
        kept = (got["out"].cpu() != 0).float()
        assert_close(got["grad"].cpu(), upstream * kept / (1 - p), rtol=rtol_of(torch.float32),
                     atol=0, name=f"the gradient through {what} (the forward mask, 1 / (1 - p))")
        assert_equal(got["x"].cpu(), x, name=f"x after {what} (never modified)")


# -- Exercise 4: mc_dropout_predict -------------------------------------------------------------
MC = """
class ProbeDropout(Dropout):  # a Dropout (the stand-in mc_dropout_predict sees), known forward
    def __init__(self, p, seed):
        torch.nn.Module.__init__(self)
        self.p = p
        self.generator = torch.Generator(device).manual_seed(seed)

    def forward(self, h):
        if not self.training:
            return h
        keep = torch.rand(h.shape, generator=self.generator, device=h.device) >= self.p
        return h * keep / (1 - self.p)

class ModeRecorder(torch.nn.Module):  # the identity, recording the mode it runs in
    def __init__(self):
        super().__init__()
        self.seen = set()

    def forward(self, h):
        self.seen.add("train" if self.training else "eval")
        return h

model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3), torch.nn.ReLU(),
                            ProbeDropout(p, 8), torch.nn.Linear(3, 4), ModeRecorder())
model = model.to(device=device, dtype=torch.float64)
model.load_state_dict(state)
for module, flag in zip(model, flags):
    module.train(flag)
model.training = top
before = [m.training for m in model.modules()]
x = x.to(device)
mean, std = mc_dropout_predict(model, x, n_samples)
try:
    mc_dropout_predict(model, x, 1)
    raised = "nothing"
except Exception as e:  # noqa: BLE001
    raised = type(e).__name__
result = {"mean": mean, "std": std, "before": before, "seen": sorted(model[5].seen),
          "after": [m.training for m in model.modules()], "state": model.state_dict(), "x": x,
          "grad": [mean.requires_grad, std.requires_grad], "raised": raised}
"""
MC_SAMPLES = 3000


def assert_within(got, expected, tol, what):
    """Every entry of got within tol (a tensor of entrywise tolerances) of expected."""
    excess = (got - expected).abs() - tol
    worst = int(excess.flatten().argmax())
    if excess.flatten()[worst] > 0:
        i, j = divmod(worst, got.shape[1])
        raise AssertionError(f"{what}: entry [{i}, {j}] is {got[i, j].item():.4f}, expected "
                             f"{expected[i, j].item():.4f} +- {tol[i, j].item():.4f} "
                             f"({int((excess > 0).sum())} of {got.numel()} entries outside)")


def mc_model_state():
    torch.manual_seed(2024)
    lin1, bn, lin2 = nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Linear(3, 4)
    with torch.no_grad():
        lin1.weight.copy_(torch.tensor([[1.0, -0.5, 0.2], [0.3, 1.2, -0.4], [-0.6, 0.1, 1.1]]))
        lin1.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        bn.weight.copy_(torch.tensor([1.5, 0.8, 1.2]))
        bn.bias.copy_(torch.tensor([0.4, 0.2, 0.5]))
        bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.3]))
        bn.running_var.copy_(torch.tensor([0.6, 1.4, 0.9]))
        bn.num_batches_tracked.fill_(10)
        lin2.weight.copy_(torch.tensor([[3.0, -2.0, 0.5], [-1.5, 2.5, 1.0],
                                        [0.5, 1.0, -3.0], [-2.0, -1.0, 2.0]]))
        lin2.bias.copy_(torch.tensor([0.2, -0.1, 0.0, 0.3]))
    model = nn.Sequential(lin1, bn, nn.ReLU(), nn.Identity(), lin2).double().eval()
    return {k: v.double() if v.is_floating_point() else v for k, v in model.state_dict().items()}


def mc_exact(state, x, p):
    """Exact mean, second moment, min and max over the 8 masks of the probabilities."""
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Identity(),
                          nn.Linear(3, 4)).double()
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        h = model[:3](x)
        masks = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=torch.float64)
        weights = (1 - p) ** masks.sum(1) * p ** (3 - masks.sum(1))
        probs = torch.stack([model[4](h * m / (1 - p)).softmax(-1) for m in masks])  # (8, N, C)
    w = weights[:, None, None]
    return (w * probs).sum(0), (w * probs**2).sum(0), probs.amin(0), probs.amax(0)


@checks.test("mc-dropout-tests", stand_ins={"Dropout": REFERENCE_MODULE})
def mc_dropout_predict_averages_probabilities_in_the_right_modes(kernel):
    p = 0.4
    state = mc_model_state()
    x = torch.tensor([[0.5, 1.0, -0.3], [1.2, -0.4, 0.8], [-0.7, 0.9, 1.5], [0.3, 0.3, 0.3]],
                     dtype=torch.float64)
    mu, second, lo, hi = mc_exact(state, x, p)
    sigma2 = second - mu**2
    n = MC_SAMPLES
    # Hoeffding for the mean of n i.i.d. values in [lo, hi] (and their squares), each entry and
    # each of the two moments at ALPHA / (2 * entries): union bound ALPHA per call.
    log_term = math.log(2 * 2 * mu.numel() / ALPHA)
    t1 = (hi - lo) * math.sqrt(log_term / (2 * n))
    t2 = (hi**2 - lo**2) * math.sqrt(log_term / (2 * n))
    var_tol = t2 + t1 * (2 * mu + t1)
    configs = [  # (flags of the 6 modules, flag of the Sequential): all train, all eval, a mix
        ([True] * 6, True), ([False] * 6, False), ([False, True, False, False, True, True], False),
    ]
    for device in kernel.devices:
        for flags, top in configs:
            got = kernel.probe(MC, state=state, x=x, p=p, flags=flags, top=top, device=device,
                               n_samples=n)
            what = (f"mc_dropout_predict(model, x, {n}) on {device} with the model's modes "
                    f"{got['before']}")
            mean, std = got["mean"], got["std"]
            assert_equal((tuple(mean.shape), tuple(std.shape), device_of(mean)),
                         ((4, 4), (4, 4), device), name=f"shapes and device of (mean, std), {what}")
            assert_equal(got["after"], got["before"],
                         name=f"the modules' training flags after {what} (restore them)")
            for key, before in state.items():
                assert_equal(got["state"][key].cpu(), before,
                             name=f"'{key}' after {what} (BatchNorm must run in eval mode: "
                                  "running statistics unchanged)")
            assert_equal(got["x"].cpu(), x, name=f"x after {what}")
            assert_equal(got["seen"], ["eval"], name=f"modes a layer other than dropout ran in "
                         f"during {what} (every module but the dropout layers in eval mode)")
            assert_equal(got["grad"], [False, False],
                         name=f"requires_grad of (mean, std) from {what} (no autograd graph)")
            mean, std = mean.cpu().double(), std.cpu().double()
            assert_within(mean, mu, t1, f"mean of {what}: the average over the passes of the "
                          "softmax probabilities (not the softmax of the averaged logits; "
                          "BatchNorm in eval mode)")
            bessel = std**2 * (n - 1) / n  # accept either normalization of the variance
            closer = torch.where((bessel - sigma2).abs() < (std**2 - sigma2).abs(), bessel, std**2)
            assert_within(closer, sigma2, var_tol, f"std**2 of {what}: the variance over the "
                          "passes of the softmax probabilities")
            assert_equal(got["raised"], "ValueError", name="what mc_dropout_predict(model, x, 1) "
                                                          "raises (n_samples must be >= 2)")


# -- Exercise 5: expected_dropout_loss ----------------------------------------------------------
RIDGE = """
X, y, w = X.to(device), y.to(device), w.to(device)
values = [expected_dropout_loss(X, y, w, p) for p in ps]
wg = w.clone().requires_grad_()
expected_dropout_loss(X, y, wg, 0.35).backward()
raised = []
for bad in (1.0, 1.5, -0.2):
    try:
        expected_dropout_loss(X, y, w, bad)
        raised.append("nothing")
    except Exception as e:  # noqa: BLE001
        raised.append(type(e).__name__)
result = {"values": values, "dtypes": [str(v.dtype) for v in values],
          "shapes": [list(v.shape) for v in values], "grad": wg.grad, "inputs": [X, y, w],
          "raised": raised}
"""
RIDGE_META = """
from gradschool.checks import check_device_agnostic
try:
    check_device_agnostic(expected_dropout_loss, torch.ones(5, 3), torch.ones(5), torch.ones(3),
                          0.3)
    result = ""
except AssertionError as e:
    result = str(e).splitlines()[0]
"""


def ridge_problem(n, d, dtype, seed):
    """(X, y, w) with features on very different scales (a closed form that ignores the data
    scaling of the penalty shows)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-1, 1, d, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64) * scale
    w = torch.randn(d, generator=g, dtype=torch.float64) / scale
    y = X @ w + torch.randn(n, generator=g, dtype=torch.float64)
    w = w + 0.3 * torch.randn(d, generator=g, dtype=torch.float64) / scale  # not the optimum
    return X.to(dtype), y.to(dtype), w.to(dtype)


def expected_loss_reference(X, y, w, p):
    """The closed form, in float64: ||y - Xw||^2 + p / (1 - p) sum_j ||X[:, j]||^2 w_j^2, and
    its gradient in w."""
    X, y, w = X.double(), y.double(), w.double()
    residual = y - X @ w
    column_norms = (X**2).sum(0)
    value = (residual**2).sum() + p / (1 - p) * (column_norms * w**2).sum()
    return value, -2 * X.T @ residual + 2 * p / (1 - p) * column_norms * w


@checks.test("dropout-ridge-tests")
def expected_dropout_loss_is_the_data_scaled_ridge(kernel):
    ps = [0.0, 0.1, 0.5, 0.9]
    # (N, D): tall, wide, and one sample; far too many masks (2 ** (N D)) to enumerate
    shapes = [(50, 40), (4, 30), (1, 25)]
    for device in kernel.devices:
        for dtype, rtol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
            for i, (n, d) in enumerate(shapes):
                X, y, w = ridge_problem(n, d, dtype, seed=31 + i)
                got = kernel.probe(RIDGE, X=X, y=y, w=w, ps=ps, device=device)
                what = f"expected_dropout_loss on a ({n}, {d}) {dtype} X on {device}"
                assert_equal((got["dtypes"], got["shapes"], [device_of(v) for v in got["values"]]),
                             ([str(dtype)] * len(ps), [[]] * len(ps), [device] * len(ps)),
                             name=f"(dtypes, shapes, devices) of the results of {what} (0-dim, "
                                  "the inputs' dtype and device)")
                for p, value in zip(ps, got["values"], strict=True):
                    assert_close(value.double(), expected_loss_reference(X, y, w, p)[0],
                                 rtol=rtol, atol=0, name=f"{what}, p = {p} (exact: no sampling)")
                grad = expected_loss_reference(X, y, w, 0.35)[1]
                assert_close(got["grad"].cpu().double(), grad, rtol=rtol,
                             atol=rtol * grad.abs().max().item(),
                             name=f"the gradient in w of {what}, p = 0.35")
                assert_equal([t.cpu() for t in got["inputs"]], [X, y, w],
                             name=f"(X, y, w) after {what} (never modified)")
                assert_equal(got["raised"], ["ValueError"] * 3,
                             name="what expected_dropout_loss raises for p = 1.0, 1.5, -0.2")
    assert_equal(kernel.probe(RIDGE_META), "",
                 name="device-agnostic expected_dropout_loss (on the meta device)")
