"""Hidden checks of 01-symmetry-breaking (instructor side: never released, never installed).

Each check makes its inputs here, asks the student's kernel only to run the student's function on
them (``kernel.probe``), and compares what comes back with values computed here. Models travel as
state dicts plus the source of their class (``NESTED``), which both sides run. Every probe calls
the function of its own exercise only (the one-unit networks of ``one_unit_sgd`` are built here,
not by the student's ``collapse_to_one_unit``), so one mistake costs one test and no test needs
stand-ins.

No test declares ``forbid=``: torch implements none of these exercises. What it has are the
per-tensor tools the exercises are built from, and the hints point to them (``nn.init.constant_``
and ``nn.init.normal_`` fill one tensor, like ``Tensor.fill_`` and ``Tensor.normal_``; the
exercise is to reach every ``nn.Linear`` of a module tree). A correct ``collapse_to_one_unit``
builds ``nn.Linear`` layers, whose constructor calls ``nn.init``, and a correct ``one_unit_sgd``
returns a ``torch.optim.SGD``: forbidding either would fail correct work. The grader's identity
check still applies: a graded name must be the student's own function, not torch's under that name.
"""

import math

import torch
from torch import nn

from gradschool.checks import (
    assert_close,
    assert_equal,
    bernoulli_rate_test,
    normal_mean_std_test,
)
from gradschool.instructor import HiddenChecks, device_of

checks = HiddenChecks()

# A model with Linear layers at every depth and every other kind of parameter and buffer.
NESTED = """
import torch
from torch import nn

class Nested(nn.Module):
    def __init__(self, width=7):
        super().__init__()
        self.blocks = nn.ModuleList([
            nn.Linear(5, width, bias=False),
            nn.Sequential(nn.Linear(width, 3), nn.Tanh(), nn.Sequential(nn.Linear(3, 3))),
        ])
        self.heads = nn.ModuleDict({"a": nn.Linear(3, 2), "b": nn.Identity()})
        self.conv = nn.Conv1d(2, 4, 3)
        self.norm = nn.LayerNorm(7)
        self.bn = nn.BatchNorm1d(3)
        self.emb = nn.Embedding(10, 5)
        self.bilinear = nn.Bilinear(3, 3, 2)
        self.free = nn.Parameter(torch.randn(4))
        self.register_buffer("stat", torch.randn(3))
"""
_shared: dict = {}
exec(NESTED, _shared)
Nested = _shared["Nested"]

# Probe: rebuild the model in the kernel, call the student's function, send back the state.
CALL_ON_NESTED = NESTED + """
model = Nested(width).to(device=device, dtype=getattr(torch, dtype))
model.load_state_dict(state)
model.blocks[1][0].requires_grad_(False)
if generator_seed is not None:
    kwargs = {**kwargs, "generator": torch.Generator(device).manual_seed(generator_seed)}
storage = [p.data_ptr() for p in model.parameters()]
rng_before = torch.random.get_rng_state()
returned = FUNCTION(model, *args, **kwargs)
result = {
    "rng": [rng_before, torch.random.get_rng_state()],
    "state": model.state_dict(),
    "returned_model": returned is model,
    "same_storage": [p.data_ptr() for p in model.parameters()] == storage,
    "requires_grad": [p.requires_grad for p in model.parameters()],
    "is_leaf": [p.is_leaf for p in model.parameters()],
    "bias_none": model.blocks[0].bias is None,
}
"""


def nested_state(width: int, dtype: torch.dtype, seed: int) -> dict:
    torch.manual_seed(seed)
    return Nested(width).to(dtype).state_dict()


def linear_names(width: int = 7) -> set[str]:
    return {f"{prefix}.{name}" for prefix, m in Nested(width).named_modules()
            if isinstance(m, nn.Linear) for name, _ in m.named_parameters(recurse=False)}


def call_on_nested(kernel, function: str, state: dict, width: int, dtype: torch.dtype,
                   device: str, *args, generator_seed: int | None = None, **kwargs) -> dict:
    """Run ``function(model, *args, **kwargs)`` on a Nested model with ``state`` in the kernel
    (with ``generator=`` a generator seeded ``generator_seed`` on ``device`` when given); check
    everything but the values; return the state after the call, on the CPU."""
    got = kernel.probe(CALL_ON_NESTED.replace("FUNCTION", function), state=state, width=width,
                       dtype=str(dtype).removeprefix("torch."), device=device, args=list(args),
                       kwargs=kwargs, generator_seed=generator_seed)
    call = f"{function}(model, {', '.join(map(repr, args))}) on a nested {dtype} model on {device}"
    assert_equal(sorted(got["state"]), sorted(state), name=f"state dict keys after {call}")
    for key, before in state.items():
        after = got["state"][key]
        assert_equal((after.dtype, tuple(after.shape), device_of(after)),
                     (before.dtype, tuple(before.shape), device), name=f"'{key}' after {call}")
    assert_equal(got["returned_model"], True, name=f"{call} returns the model itself")
    assert_equal(got["same_storage"], True, name=f"{call} works in place (same tensors)")
    model = Nested(width)
    model.blocks[1][0].requires_grad_(False)
    assert_equal(got["requires_grad"], [p.requires_grad for p in model.parameters()],
                 name=f"requires_grad flags after {call} (one Linear is frozen)")
    assert_equal(all(got["is_leaf"]), True, name=f"every parameter is a leaf after {call}")
    assert_equal(got["bias_none"], True, name=f"bias of Linear(bias=False) after {call}")
    if generator_seed is not None:
        assert_equal(got["rng"][1], got["rng"][0], name=f"torch's global RNG state after {call}"
                     " with a generator (it must draw from the generator only)")
    return {k: v.cpu() for k, v in got["state"].items()}


def assert_untouched(got: dict, state: dict, linear: set[str], call: str) -> None:
    for key in state.keys() - linear:
        assert_equal(got[key], state[key], name=f"'{key}' (not an nn.Linear: must stay "
                     f"untouched) after {call}")


# -- Exercise 1: constant_init_ ----------------------------------------------------------------
@checks.test("constant-init-tests")
def constant_init_sets_every_linear_and_nothing_else(kernel):
    linear = linear_names()
    for device in kernel.devices:
        for dtype, value in [(torch.float64, -0.37), (torch.float32, 3), (torch.float16, 0.1)]:
            state = nested_state(7, dtype, seed=123)
            got = call_on_nested(kernel, "constant_init_", state, 7, dtype, device, value)
            call = f"constant_init_(model, {value}) ({dtype}, {device})"
            for key in linear:
                assert_equal(got[key], torch.full_like(state[key], value),
                             name=f"'{key}' after {call}")
            assert_untouched(got, state, linear, call)


@checks.test("constant-init-tests")
def constant_init_default_is_zero(kernel):
    got = kernel.probe("result = constant_init_(torch.nn.Linear(6, 4)).state_dict()")
    for key in ("weight", "bias"):
        assert_equal(got[key], torch.zeros_like(got[key]),
                     name=f"{key} after constant_init_(nn.Linear(6, 4)) (default value 0.0)")


# -- Exercise 2: count_distinct_units ----------------------------------------------------------
COUNT = """
w = weight.to(device)
w = {"plain": w, "transposed": w.T, "parameter": torch.nn.Parameter(w)}[layout]
n = count_distinct_units(w, **kwargs)
result = {"n": n, "weight": w.detach().clone()}
"""


def grouped_rows(groups: int, rows: int, cols: int, tol: float, dtype, seed: int):
    """``rows`` rows in ``groups`` clear groups (spread tol/4) whose first column is noise."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(groups, cols, generator=g, dtype=torch.float64)
    centers[:, 0] = 0.0
    assign = (torch.arange(rows) % groups)[torch.randperm(rows, generator=g)]
    noise = (torch.rand(rows, cols, generator=g, dtype=torch.float64) - 0.5) * (tol / 2)
    return (centers[assign] + noise).to(dtype)


def count_cases():
    """(weight, layout, kwargs, expected, description) of every case."""
    a = 2.0**-10
    for dt in (torch.float32, torch.float64):
        yield (torch.tensor([[0.5, 1.0], [0.5 + a, 1.0], [0.5, 1.0 - a]], dtype=dt), "plain",
               {"atol": a}, 1, f"{dt} rows 2**-10 apart with atol=2**-10 (difference == atol)")
        yield (torch.tensor([[0.5, 1.0], [0.5 + a + 2.0**-20, 1.0]], dtype=dt), "plain",
               {"atol": a}, 2, f"{dt} rows 2**-10 + 2**-20 apart, atol=2**-10")
        e, tol = (1e-12, 1e-6) if dt == torch.float64 else (1e-5, 1e-3)
        half, edge = 2.5 * tol, 3.0 * tol
        yield (torch.tensor([[half - e, 0.0, 1.0], [half + e, 0.0, 1.0],
                             [1.0, edge - e, -1.0], [1.0, edge + e, -1.0]], dtype=dt), "plain",
               {"atol": tol}, 2, f"{dt} values straddling rounding boundaries, atol={tol:g}")
        b = 2.0**-8
        yield (torch.full((2, 20), 0.75 * b, dtype=dt) * torch.tensor([[0.0], [1.0]], dtype=dt),
               "plain", {"atol": b}, 1, f"{dt} rows 0.75 atol apart in each of 20 entries "
               "(max-abs metric: one unit; the Euclidean distance would be 3.4 atol)")
        yield torch.randn(1, 64, dtype=dt), "plain", {}, 1, f"a single {dt} row"
        if dt == torch.float64:
            yield (torch.tensor([[0.1, 3.0], [0.1, 3.0 + 3e-12]], dtype=dt), "plain",
                   {"atol": 1e-12}, 2, "float64 rows 3e-12 apart, atol=1e-12 (float32 would "
                   "round them together)")
        yield torch.zeros(0, 7, dtype=dt), "plain", {}, 0, f"a {dt} weight with no rows"
        tol = 1e-6 if dt == torch.float64 else 1e-4
        w = grouped_rows(17, 300, 20, tol, dt, seed=2024)
        yield w, "plain", {"atol": tol}, 17, f"300 {dt} rows in 17 groups, atol={tol:g}"
        yield (w[:, :7].contiguous(), "transposed", {"atol": tol}, 7,
               f"a transposed (7, 300) {dt} view with 7 distinct rows")
    torch.manual_seed(7)
    w = torch.randn(3, 50)
    w[2] = w[0]
    yield w, "plain", {}, 2, "a (3, 50) weight whose rows 0 and 2 are equal"
    yield torch.randn(6, 1).repeat(1, 2), "plain", {}, 6, "6 distinct rows, 2 equal columns"
    yield (torch.full((5, 3), 0.25), "parameter", {}, 1,
           "an nn.Parameter (requires grad) of 0.25s")
    yield (torch.tensor([[1.0, 1.0], [1.0, 1.0 + 2.0**-23], [1.0, 1.0]]), "plain",
           {"atol": 0.0}, 2, "rows 1 ulp apart with atol=0.0")


@checks.test("count-units-tests")
def count_distinct_units_counts_groups(kernel):
    for device in kernel.devices:
        for weight, layout, kwargs, expected, what in count_cases():
            got = kernel.probe(COUNT, weight=weight, layout=layout, kwargs=kwargs, device=device)
            assert_equal(type(got["n"]).__name__, "int",
                         name=f"type of count_distinct_units(...) for {what}")
            assert_equal(got["n"], expected, name=f"count_distinct_units for {what} on {device}")
            seen = weight.T if layout == "transposed" else weight
            assert_equal(got["weight"].cpu(), seen, name=f"the weight after the call ({what})")


# -- Exercise 5: random_init_ ------------------------------------------------------------------
TAIL = math.erfc(2 / math.sqrt(2))  # P(|w| > 2 std) for a normal


def assert_normal(w: torch.Tensor, std: float, what: str) -> None:
    normal_mean_std_test(w.double(), 0.0, std, name=what)
    bernoulli_rate_test(w.abs() > 2 * std, TAIL, name=f"fraction beyond 2 std of {what}")


@checks.test("random-init-tests")
def random_init_draws_normal_weights_and_zero_biases(kernel):
    linear = linear_names(400)
    for device in kernel.devices:
        state = nested_state(400, torch.float64, seed=321)
        call = f"random_init_(model, 0.05, generator) (float64, {device})"
        got = call_on_nested(kernel, "random_init_", state, 400, torch.float64, device, 0.05,
                             generator_seed=11)
        assert_untouched(got, state, linear, call)
        for key in linear:
            if key.endswith("bias"):
                assert_equal(got[key], torch.zeros_like(state[key]), name=f"'{key}' after {call}")
        assert_normal(got["blocks.0.weight"], 0.05, f"blocks.0.weight (5 -> 400) after {call}")
        assert_normal(got["blocks.1.0.weight"], 0.05, f"blocks.1.0.weight after {call}")


REPRODUCE = """
def draw(seed):
    model = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.Linear(20, 20))
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed + 1000)  # a generator run must not depend on the global RNG
    return random_init_(model, 0.1, generator=generator).state_dict()

def draw_global(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.Linear(20, 20))
    return random_init_(model).state_dict()

result = {"a": draw(1), "b": draw(1), "c": draw(2), "d": draw_global(5), "e": draw_global(5)}
"""


@checks.test("random-init-tests")
def random_init_is_reproducible(kernel):
    got = kernel.probe(REPRODUCE)
    for key in got["a"]:
        assert_equal(got["a"][key], got["b"][key], name=f"'{key}' for the same generator seed")
        assert_equal(got["d"][key], got["e"][key],
                     name=f"'{key}' after torch.manual_seed(5) twice, without a generator")
    assert_equal(torch.equal(got["a"]["0.weight"], got["c"]["0.weight"]), False,
                 name="weights for two different generator seeds are equal")
    assert_equal(torch.equal(got["d"]["0.weight"][:, :20], got["d"]["1.weight"]), False,
                 name="two layers got the same draw")
    assert_normal(got["d"]["0.weight"], 0.1, "weights with the default std 0.1")


@checks.test("random-init-tests")
def random_init_handles_float32_big_and_frozen_layers(kernel):
    got = kernel.probe("""
frozen = torch.nn.Sequential(torch.nn.Linear(400, 500), torch.nn.Linear(500, 3))
frozen[0].requires_grad_(False)
random_init_(frozen, 0.2, generator=torch.Generator().manual_seed(3))
result = {"w": frozen[0].weight.detach(), "requires_grad": frozen[0].weight.requires_grad}
""")
    assert_equal(got["w"].dtype, torch.float32, name="dtype of a float32 weight")
    assert_equal(got["requires_grad"], False, name="requires_grad of a frozen Linear")
    assert_normal(got["w"], 0.2, "weights of a frozen Linear(400, 500), std 0.2")


# -- Exercise 3: collapse_to_one_unit ----------------------------------------------------------
ACTIVATIONS = {"ReLU": "torch.nn.ReLU()", "Tanh": "torch.nn.Tanh()",
               "Sigmoid": "torch.nn.Sigmoid()", "LeakyReLU": "torch.nn.LeakyReLU(0.2)",
               "GELU": "torch.nn.GELU()"}

COLLAPSE = """
activation = eval(activation_source, {"torch": torch})
model = torch.nn.Sequential(torch.nn.Linear(d, h, bias=bias), activation,
                            torch.nn.Linear(h, k, bias=bias))
model = model.to(device=device, dtype=getattr(torch, dtype))
model.load_state_dict(state)
one = collapse_to_one_unit(model)
result = {
    "new": one is not model,
    "layers": [type(m).__name__ for m in one.children()],
    "activation": repr(one[1]),
    "state": one.state_dict(),
    "requires_grad": [p.requires_grad for p in one.parameters()],
    "logits": one(x.to(device=device, dtype=getattr(torch, dtype))).detach(),
    "model_after": model.state_dict(),
    "shared": [name for name, p in one.named_parameters()
               if p.untyped_storage().data_ptr() in
               {q.untyped_storage().data_ptr() for q in model.parameters()}],
}
"""


def tied_state(d: int, h: int, k: int, bias: bool, seed: int) -> dict:
    """State dict (float64, CPU) of Linear(d, h) -> act -> Linear(h, k) with all h units tied."""
    g = torch.Generator().manual_seed(seed)
    state = {"0.weight": (torch.randn(1, d, generator=g, dtype=torch.float64) / d**0.5)
             .repeat(h, 1),
             "2.weight": torch.randn(k, 1, generator=g, dtype=torch.float64).repeat(1, h) / h}
    if bias:
        state["0.bias"] = torch.full((h,), 0.3 * torch.randn(1, generator=g).item(),
                                     dtype=torch.float64)
        state["2.bias"] = torch.randn(k, generator=g, dtype=torch.float64)
    return state


def wide_logits(state: dict, activation: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The tied network's logits, computed here in float64 from ``state``."""
    s = {key: v.double() for key, v in state.items()}
    a = x @ s["0.weight"].T + s.get("0.bias", 0.0)
    return activation(a) @ s["2.weight"].T + s.get("2.bias", 0.0)


COLLAPSE_CASES = [  # (d, h, k, activation, bias, dtype, seed): sizes the notebook never uses
    (9, 23, 4, "Tanh", True, torch.float64, 1),
    (5, 40, 7, "LeakyReLU", True, torch.float64, 2),
    (12, 3, 2, "Sigmoid", False, torch.float64, 3),
    (7, 1, 3, "GELU", True, torch.float64, 4),
    (6, 17, 5, "ReLU", True, torch.float64, 5),
    (11, 13, 6, "ReLU", True, torch.float32, 6),
]


@checks.test("collapse-tests")
def collapse_to_one_unit_computes_the_same_logits(kernel):
    x = 2 * torch.randn(64, 12, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    for device in kernel.devices:
        for d, h, k, act, bias, dtype, seed in COLLAPSE_CASES:
            state = {key: v.to(dtype) for key, v in tied_state(d, h, k, bias, seed).items()}
            activation = eval(ACTIVATIONS[act], {"torch": torch})
            what = (f"collapse_to_one_unit of a tied {str(dtype)[6:]} MLP {d}-{h}-{k} "
                    f"({ACTIVATIONS[act]}, bias={bias}) on {device}")
            got = kernel.probe(COLLAPSE, state=state, d=d, h=h, k=k, bias=bias,
                               activation_source=ACTIVATIONS[act], device=device,
                               dtype=str(dtype).removeprefix("torch."), x=x[:, :d])
            assert_equal(type(got).__name__, "dict", name=f"the probe's result for {what}")
            assert_equal(sorted(got), sorted(["new", "layers", "activation", "state",
                                              "requires_grad", "logits", "model_after",
                                              "shared"]),
                         name=f"the probe's result fields for {what}")
            assert_equal(got["new"], True, name=f"{what} returns a new network (not the model)")
            assert_equal(got["layers"], ["Linear", type(activation).__name__, "Linear"],
                         name=f"the layers returned by {what}")
            assert_equal(got["activation"], repr(activation),
                         name=f"the activation returned by {what}")
            keys = ["0.weight", "2.weight"] + (["0.bias", "2.bias"] if bias else [])
            assert_equal(sorted(got["state"]), sorted(keys),
                         name=f"state dict keys of the network returned by {what}")
            shapes = {"0.weight": (1, d), "0.bias": (1,), "2.weight": (k, 1), "2.bias": (k,)}
            for key in keys:
                p = got["state"][key]
                assert_equal((tuple(p.shape), p.dtype, device_of(p)), (shapes[key], dtype, device),
                             name=f"(shape, dtype, device) of '{key}' returned by {what}")
            assert_equal(all(got["requires_grad"]), True,
                         name=f"requires_grad of the parameters returned by {what}")
            for key, value in state.items():
                assert_equal(got["model_after"][key].cpu(), value,
                             name=f"'{key}' of the model after {what} (it must not change)")
            assert_equal(got["shared"], [], name=f"parameters returned by {what} that share "
                         "memory with the model (training them would change the model)")
            expected = wide_logits(state, activation, x[:, :d])
            tol = (1e-10 if dtype == torch.float64 else 1e-4) * expected.abs().max().item()
            from_state = wide_logits({key: v.cpu() for key, v in got["state"].items()},
                                     activation, x[:, :d])
            assert_close(from_state, expected, rtol=0.0, atol=tol,
                         name=f"logits of the one-unit parameters returned by {what}, computed "
                              "by the grader (float64)")
            assert_close(got["logits"].cpu().double(), expected, rtol=0.0, atol=tol,
                         name=f"logits of the network returned by {what} (its own forward)")


# -- Exercise 4: one_unit_sgd ------------------------------------------------------------------
TRAIN_ONE = """
activation = eval(activation_source, {"torch": torch})
kind = getattr(torch, dtype)
one = torch.nn.Sequential(torch.nn.Linear(d, 1, bias=bias), activation,
                          torch.nn.Linear(1, k, bias=bias)).to(device=device, dtype=kind)
one.load_state_dict(state)
opt = one_unit_sgd(one, lr, hidden)
optimizer = type(opt).__name__
for x, y in batches:
    opt.zero_grad()
    torch.nn.functional.cross_entropy(one(x.to(device=device, dtype=kind)), y.to(device)).backward()
    opt.step()
result = {"optimizer": optimizer, "state": one.state_dict()}
"""

# (d, h, k, activation, bias, lr, dtype, seed): sizes the notebook never uses
ONE_UNIT_SGD_CASES = [
    (9, 23, 4, "Tanh", True, 0.3, torch.float64, 11),
    (5, 40, 7, "LeakyReLU", True, 0.1, torch.float64, 12),
    (12, 3, 2, "Sigmoid", False, 0.5, torch.float64, 13),
    (7, 1, 3, "GELU", True, 0.2, torch.float64, 14),
    (6, 17, 5, "ReLU", True, 0.05, torch.float32, 15),
]


def collapsed(state: dict, bias: bool) -> dict:
    """The one-unit state of a tied ``state`` (float64, computed here)."""
    one = {"0.weight": state["0.weight"][:1], "2.weight": state["2.weight"].sum(1, keepdim=True)}
    if bias:
        one.update({"0.bias": state["0.bias"][:1], "2.bias": state["2.bias"]})
    return one


def train_wide(state: dict, activation: nn.Module, batches: list, lr: float) -> dict:
    """``state`` of a tied Linear -> activation -> Linear after plain SGD(lr) on ``batches``.

    The step is written out (p -= lr * grad, what torch.optim.SGD does without momentum or
    weight decay): constructing a torch optimizer in the grader imports torch._dynamo, seconds
    per grading process for a one-line update."""
    (h, d), k = state["0.weight"].shape, state["2.weight"].shape[0]
    bias = "0.bias" in state
    wide = nn.Sequential(nn.Linear(d, h, bias=bias), activation, nn.Linear(h, k, bias=bias))
    wide = wide.double()
    wide.load_state_dict(state)
    for x, y in batches:
        wide.zero_grad()
        nn.functional.cross_entropy(wide(x), y).backward()
        with torch.no_grad():
            for p in wide.parameters():
                p -= lr * p.grad
    return {key: value.detach() for key, value in wide.state_dict().items()}


@checks.test("one-unit-sgd-tests")
def one_unit_sgd_follows_the_tied_network(kernel):
    g = torch.Generator().manual_seed(77)
    for device in kernel.devices:
        for d, h, k, act, bias, lr, dtype, seed in ONE_UNIT_SGD_CASES:
            state = tied_state(d, h, k, bias, seed)
            batches = [(2 * torch.randn(16, d, generator=g, dtype=torch.float64),
                        torch.randint(k, (16,), generator=g)) for _ in range(8)]
            activation = eval(ACTIVATIONS[act], {"torch": torch})
            what = (f"one_unit_sgd(one, lr={lr}, hidden={h}) for a tied {str(dtype)[6:]} MLP "
                    f"{d}-{h}-{k} ({ACTIVATIONS[act]}, bias={bias}) on {device}")
            got = kernel.probe(TRAIN_ONE, state={key: v.to(dtype) for key, v in
                                                 collapsed(state, bias).items()},
                               d=d, k=k, bias=bias, lr=lr, hidden=h, device=device,
                               activation_source=ACTIVATIONS[act],
                               dtype=str(dtype).removeprefix("torch."), batches=batches)
            assert_equal(type(got).__name__, "dict", name=f"the probe's result for {what}")
            assert_equal(got.get("optimizer"), "SGD", name=f"the optimizer returned by {what}")
            keys = ["0.weight", "2.weight"] + (["0.bias", "2.bias"] if bias else [])
            assert_equal(sorted(got["state"]), sorted(keys), name=f"state dict keys after {what}")
            wide = train_wide(state, activation, batches, lr)
            x = 2 * torch.randn(64, d, generator=g, dtype=torch.float64)
            expected = wide_logits(wide, activation, x)
            trained = {key: v.cpu().double() for key, v in got["state"].items()}
            tol = (1e-9 if dtype == torch.float64 else 1e-4) * expected.abs().max().item()
            assert_close(wide_logits(trained, activation, x), expected, rtol=0.0, atol=tol,
                         name=f"logits of the one-unit network after 8 steps of {what}, against "
                              f"the tied network after 8 steps of SGD(lr={lr}) (float64, here)")
