"""The delegation reading (gradschool.delegation): what it reads, what it flags, what it leaves
alone. Fast: no kernel. The per-notebook tests add each assignment's own fair and unfair cases."""

from __future__ import annotations

import nbformat
import pytest

from gradschool.delegation import StudentCode, graded_names, notebook_delegation

SETUP = "import torch\nfrom torch import nn\nimport torch.nn.functional as F\n"
BN = ("torch.nn.functional.batch_norm", "torch.batch_norm", "torch.nn.modules.batchnorm",
      "native_batch_norm")
AUTOGRAD = ("torch.Tensor.backward", "torch.autograd.grad", "torch.func")
ADAM = ("torch.optim.Adam", "torch.optim.adam")
INIT = ("torch.nn.init",)
CLIP = ("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad")

OWN_BN = ("def bn(x, eps=1e-5):\n    mean = x.mean(0)\n"
          "    return (x - mean) / (x.var(0) + eps).sqrt()\n")
OWN_ADAM = ("class Adam(torch.optim.Optimizer):\n"
            "    def __init__(self, params, lr=1e-3):\n"
            "        super().__init__(params, {'lr': lr})\n\n"
            "    def step(self, closure=None):\n"
            "        for group in self.param_groups:\n"
            "            for p in group['params']:\n"
            "                p.data.add_(p.grad, alpha=-group['lr'])\n")


def verdict(cells: list[str], graded: list[str], forbidden) -> str:
    finding = StudentCode(enumerate(cells), context=[SETUP]).delegation(graded, forbidden)
    return finding.message() if finding else ""


@pytest.mark.parametrize("cells, graded, forbidden", [
    # helpers and parameters with ordinary names
    (["def bn(x, grad=None, func=None, init=0.0):\n    return x - x.mean(0) + init\n"], ["bn"], BN),
    (["def back(dout, cache):\n    grad = dout * cache\n    return grad\n"], ["back"], AUTOGRAD),
    (["class F2(torch.autograd.Function):\n    @staticmethod\n    def backward(ctx, grad):\n"
      "        return grad\n"], ["F2"], AUTOGRAD),
    (["import sys\ndef bn(x):\n    print('bn', file=sys.stderr)\n    return x\n"], ["bn"], BN),
    (["def init_(model):\n    for m in model.modules():\n        m.weight.data.zero_()\n"],
     ["init_"], INIT),
    (["def clip(ps, m):\n    total = sum(p.grad.norm() ** 2 for p in ps) ** 0.5\n"
      "    for p in ps:\n        p.grad.mul_(min(1.0, m / total))\n    return total\n"],
     ["clip"], CLIP),
    # scratch cells that put the student's code beside torch's
    ([OWN_BN, "x = torch.randn(8, 3)\nprint(bn(x) - F.batch_norm(x, None, None, training=True))"],
     ["bn"], BN),
    ([OWN_ADAM, "w = nn.Parameter(torch.ones(3))\nfor opt in (Adam([w]), torch.optim.Adam([w])):"
                "\n    w.grad = torch.ones(3)\n    opt.step()\n"], ["Adam"], ADAM),
    (["def back(d, c):\n    return d * c\n", "loss = (x ** 2).sum()\nloss.backward()\n"
      "print(back(1.0, 2 * x) - x.grad)"], ["back"], AUTOGRAD),
    (["def init_(t):\n    return t.zero_()\n", "w = torch.empty(3, 3)\n"
      "torch.nn.init.xavier_uniform_(w)\ninit_(w)"], ["init_"], INIT),
    # a module-level variable of a scratch cell that a graded function's local shadows
    (["def bn(x):\n    out = x - x.mean(0)\n    return out\n",
      "out = F.batch_norm(torch.randn(4, 2), None, None, training=True)"], ["bn"], BN),
    # a syntax error is the kernel's business; a decorated own function is own code
    (["this is not python (", "@torch.no_grad()\ndef bn(x):\n    return x - x.mean(0)\n"],
     ["bn"], BN),
])
def test_correct_work_is_not_delegation(cells, graded, forbidden):
    assert verdict(cells, graded, forbidden) == ""


@pytest.mark.parametrize("cells, graded, forbidden, what", [
    (["def bn(x):\n    return F.batch_norm(x, None, None, training=True)\n"], ["bn"], BN,
     "uses torch.nn.functional.batch_norm"),
    (["import torch.nn.functional as nnf\ndef bn(x):\n    return nnf.batch_norm(x, None, None)"],
     ["bn"], BN, "uses torch.nn.functional.batch_norm"),
    (["def bn(x):\n    from torch.nn.functional import batch_norm as b\n"
      "    return b(x, None, None)"], ["bn"], BN, "uses torch.nn.functional.batch_norm"),
    (["def bn(x):\n    return torch.nn.modules.batchnorm.BatchNorm1d(3)(x)\n"], ["bn"], BN,
     "uses torch.nn.modules.batchnorm"),
    (["def bn(x):\n    return nn.BatchNorm1d(3)(x)\n"], ["bn"], BN,
     "uses torch.nn.modules.batchnorm.BatchNorm1d"),
    (["def bn(x):\n    return torch.ops.aten.native_batch_norm(x)\n"], ["bn"], BN,
     "uses native_batch_norm"),
    (["def bn(x):\n    return getattr(F, 'batch_norm')(x, None, None)\n"], ["bn"], BN,
     "uses torch.nn.functional.batch_norm"),
    (["def bn(x):\n    return getattr(F, 'batch' + '_norm')(x, None, None)\n"], ["bn"], BN,
     "uses getattr with a computed name"),
    (["def bn(x):\n    return eval('F.batch_norm')(x)\n"], ["bn"], BN, "uses eval"),
    (["def bn(x):\n    import importlib\n    return importlib.import_module('torch')"], ["bn"],
     BN, "uses importlib"),
    (["def bn(x):\n    return F.__dict__['batch' + '_norm'](x)\n"], ["bn"], BN, "uses __dict__"),
    (["def back(d, c):\n    out, x = c\n    out.backward(d)\n    return x.grad\n"], ["back"],
     AUTOGRAD, "uses torch.Tensor.backward"),
    (["def back(d, c):\n    return torch.autograd.grad(c[0], c[1], d)\n"], ["back"], AUTOGRAD,
     "uses torch.autograd.grad"),
    # followed through a helper and a module-level alias in other cells
    (["def bn(x):\n    return helper(x)\n", "def helper(x):\n    return norm(x, None, None)\n",
      "norm = F.batch_norm"], ["bn"], BN, "uses torch.nn.functional.batch_norm"),
    # a scratch cell at the end rebinds the graded name to torch's function
    ([OWN_BN, "print(bn(torch.ones(2, 2)))", "bn = F.batch_norm"], ["bn"], BN,
     "uses torch.nn.functional.batch_norm"),
    (["def xavier_(t):\n    return t\n", "xavier_ = torch.nn.init.xavier_uniform_"], ["xavier_"],
     INIT, "uses torch.nn.init"),
    # a scratch cell patches the graded class with torch's functional implementation
    ([OWN_ADAM, "Adam.step = torch.optim.Adam.step"], ["Adam"], ADAM, "uses torch.optim.Adam"),
    ([OWN_ADAM, "setattr(Adam, 'step', torch.optim.adam.adam)"], ["Adam"], ADAM,
     "uses torch.optim.adam"),
    ([OWN_ADAM, "def hack():\n    global Adam\n    Adam = torch.optim.Adam\n", "hack()"],
     ["Adam"], ADAM, "uses torch.optim.Adam"),
    ([OWN_ADAM, "class Adam(torch.optim.Adam):\n    pass\n"], ["Adam"], ADAM,
     "uses torch.optim.Adam"),
    # routes that may rebind anything are read with every exercise
    ([OWN_BN, "exec('bn = F.batch' + '_norm')"], ["bn"], BN, "uses exec"),
    ([OWN_BN, "globals()[name] = value"], ["bn"], BN, "uses globals"),
    (["def x_(t):\n    return xavier_uniform_(t)\n", "from torch.nn.init import *"], ["x_"],
     ("torch.nn.init.xavier_uniform_",), "uses torch.nn.init.xavier_uniform_"),
    # IPython syntax and cell magics are read as IPython runs them
    (["%%time\ndef bn(x):\n    return F.batch_norm(x, None, None)\n"], ["bn"], BN,
     "uses torch.nn.functional.batch_norm"),
    (["%time bn = F.batch_norm"], ["bn"], BN, "uses torch.nn.functional.batch_norm"),
    (["for _ in range(2):\n    %timeit -n 3 -r 1 bn = F.batch_norm"], ["bn"], BN,
     "uses torch.nn.functional.batch_norm"),
])
def test_delegation_is_named_with_its_line(cells, graded, forbidden, what):
    message = verdict(cells, graded, forbidden)
    assert message.startswith(what), message
    assert "line " in message and "`" in message


def test_names_a_test_replaces_with_stand_ins_are_not_its_code():
    """xavier_ uses the student's fans(), which the test replaces by a stand-in: a fans() that
    delegates costs the fans test, not this one."""
    cells = ["def fans(t):\n    return torch.nn.init._calculate_fan_in_and_fan_out(t)\n",
             "def xavier_(t):\n    a, b = fans(t)\n    return t.uniform_(-1, 1)\n"]
    assert verdict(cells, ["xavier_"], INIT).startswith("uses torch.nn.init")
    finding = StudentCode(enumerate(cells), [SETUP]).delegation(["xavier_"], INIT, ["fans"])
    assert finding is None


def test_nothing_forbidden_means_nothing_checked():
    assert verdict(["def bn(x):\n    return eval('F.batch_norm')(x)\n"], ["bn"], ()) == ""


def test_graded_names_are_the_top_level_definitions():
    source = "import torch\n\ndef f(x):\n    def inner():\n        pass\n\nclass G:\n    pass\n"
    assert graded_names(source) == ["f", "G"]
    assert graded_names("%%time\ndef f():\n    pass\n") == ["f"]


def _cell(source, grade_id=None, *, solution=False):
    cell = nbformat.v4.new_code_cell(source)
    if grade_id:
        cell.metadata.nbgrader = {"grade_id": grade_id, "solution": solution,
                                  "locked": not solution, "grade": False}
    return cell


def test_a_notebook_verdict_reads_the_students_cells_only():
    """Locked cells are the instructor's: a setup cell that imports F, a locked experiment that
    calls F.batch_norm are not the exercise; the graded names come from the solution cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [_cell(SETUP, "setup"), _cell(OWN_BN, "bn-solution", solution=True),
                _cell("print(F.batch_norm(torch.ones(2, 2), None, None, training=True))",
                      "experiment"),
                _cell("print(bn(torch.ones(3, 2)))")]
    assert notebook_delegation(nb, "bn-tests", BN) is None
    nb.cells.append(_cell("bn = F.batch_norm"))
    finding = notebook_delegation(nb, "bn-tests", BN)
    assert finding.what == "torch.nn.functional.batch_norm" and finding.cell == 4
    assert finding.text == "bn = F.batch_norm"
