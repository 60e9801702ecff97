"""Adam's step on a model with many small tensors: a Python loop, _foreach ops, torch's modes.

    .venv/bin/python benchmarks/optimizers.py [--tensors 1000] [--size 64] [--steps 50]
                                              [--json PATH]

Times one optimizer step (median of --steps, after warm-up) over --tensors float32 parameters of
--size numbers each, on the CPU and on CUDA when there is a GPU, for:
- the reference solution's `Adam` of 03-optimizers (a Python loop over the tensors);
- the same Adam with its update done by the solution's `adam_foreach_step_` (torch._foreach_*);
- torch.optim.Adam with foreach=False, foreach=True and fused=True (on the CPU too, torch >= 2.4).
It first checks, in float64, that the foreach step gives the loop's parameters (to 1e-12: the
same arithmetic in another order differs by rounding only), and stops with an error if not. The
classes come from solutions/03-optimizers/03-optimizers.ipynb (its solution cells, run here), so
the figures are those of the code the notebook teaches. Figures depend on the machine: run it on
an otherwise idle one. Nothing asserts a timing. With --json PATH it also writes the figures there
(what `gradschool gpu-check` records): {"torch", "tensors", "size", "steps", "cpu_threads",
"foreach_vs_loop_max_diff", "devices": {device: {"name", "ms_per_step": {contender: ms}}}}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import nbformat
import torch

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions/03-optimizers/03-optimizers.ipynb"


def solution_namespace() -> dict:
    """Run the notebook's Adam and adam_foreach_step_ solution cells; return their namespace."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    namespace: dict = {"torch": torch}
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in ("adam-solution",
                                                                  "foreach-solution"):
            exec(cell.source, namespace)  # the course's own solution code
    return namespace


def foreach_adam_class(adam: type, step_fn) -> type:
    """A subclass of the solution's Adam whose step calls step_fn on all tensors at once (every
    parameter has a gradient at every step here, so they share the step count)."""

    class ForeachAdam(adam):
        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                for p in params:
                    if not self.state[p]:
                        self.state[p].update(step=0, exp_avg=torch.zeros_like(p),
                                             exp_avg_sq=torch.zeros_like(p))
                    self.state[p]["step"] += 1
                states = [self.state[p] for p in params]
                step_fn(params, [p.grad for p in params], [s["exp_avg"] for s in states],
                        [s["exp_avg_sq"] for s in states], states[0]["step"], lr=group["lr"],
                        beta1=group["betas"][0], beta2=group["betas"][1], eps=group["eps"],
                        weight_decay=group["weight_decay"])

    return ForeachAdam


def make_params(n: int, size: int, device: str, dtype: torch.dtype) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(size, generator=g, dtype=dtype).to(device))
              for _ in range(n)]
    for p in params:
        p.grad = torch.randn(size, generator=g, dtype=dtype).to(device)
    return params


def time_step(make_opt, n: int, size: int, steps: int, device: str) -> float:
    """Median seconds per optimizer step (fixed gradients), after 5 warm-up steps."""
    params = make_params(n, size, device, torch.float32)
    opt = make_opt(params)
    times = []
    for i in range(steps + 5):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 5:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tensors", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args()
    ns = solution_namespace()
    adam = ns["Adam"]
    foreach_adam = foreach_adam_class(adam, ns["adam_foreach_step_"])
    kw = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}

    # Equality first (float64, 20 steps): the vectorized step is the same update.
    a, b = (make_params(50, 16, "cpu", torch.float64) for _ in range(2))
    opt_a, opt_b = adam(a, **kw), foreach_adam(b, **kw)
    for _ in range(20):
        opt_a.step()
        opt_b.step()
    worst = max((p - q).abs().max().item() for p, q in zip(a, b, strict=True))
    print(f"foreach step vs loop, float64, 20 steps: max |difference| = {worst:.3g}")
    if not worst <= 1e-12:
        raise SystemExit(f"the foreach step is not the loop's update (max |difference| {worst:.3g}"
                         " > 1e-12): fix the solution's adam_foreach_step_")

    figures = {"torch": torch.__version__, "tensors": args.tensors, "size": args.size,
               "steps": args.steps, "cpu_threads": torch.get_num_threads(),
               "foreach_vs_loop_max_diff": worst, "devices": {}}
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}; {args.tensors} float32 tensors of {args.size} numbers; "
          f"median of {args.steps} steps; CPU threads {torch.get_num_threads()}")
    for device in devices:
        name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
        contenders = {
            "solution Adam (Python loop)": lambda p: adam(p, **kw),
            "solution adam_foreach_step_": lambda p: foreach_adam(p, **kw),
            "torch Adam foreach=False": lambda p: torch.optim.Adam(p, **kw, foreach=False),
            "torch Adam foreach=True": lambda p: torch.optim.Adam(p, **kw, foreach=True),
            "torch Adam fused=True": lambda p: torch.optim.Adam(p, **kw, fused=True),
        }
        times = {label: time_step(make, args.tensors, args.size, args.steps, device)
                 for label, make in contenders.items()}
        figures["devices"][device] = {
            "name": name, "ms_per_step": {k: round(1e3 * v, 4) for k, v in times.items()}}
        base = times["solution Adam (Python loop)"]
        print(f"\n{device} ({name}):")
        for label, seconds in times.items():
            print(f"  {label:<30} {1e3 * seconds:9.3f} ms/step   {base / seconds:6.1f}x "
                  "faster than the loop")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
