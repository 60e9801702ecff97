"""The 'kinds' assignment: one small exercise of every kind the course grades.

A fixture, not course content: the tests build a throw-away course from it (see ``course.py``) to
show that the grader serves every kind of exercise (pure functions, in-place functions with a
torch.Generator, torch.optim.Optimizer subclasses, nn.Modules with a custom autograd.Function,
random samplers) and to attack the grading kernel cheaply. Keys are the exercises' grade ids.
"""

SETUP = """\
import math
import torch
from torch import nn
from gradschool.checks import assert_close, assert_equal, report
"""

SOLUTIONS = {
    "softmax": """\
def softmax(x, dim=-1):
    \"\"\"Softmax of x along dim, stable for large inputs; same shape and dtype as x.\"\"\"
    shifted = x - x.amax(dim=dim, keepdim=True)
    e = shifted.exp()
    return e / e.sum(dim=dim, keepdim=True)
""",
    "dropout": """\
def dropout_(x, p, generator=None):
    \"\"\"Inverted dropout of x in place: zero each entry with probability p, scale the others
    by 1 / (1 - p); draw only from `generator` when given. Returns x.\"\"\"
    keep = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) >= p
    return x.mul_(keep).div_(1 - p)
""",
    "adam": """\
class MyAdam(torch.optim.Optimizer):
    \"\"\"Adam (arXiv:1412.6980); weight decay is L2, added to the gradient as in torch's.\"\"\"

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad + group["weight_decay"] * p
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                state["m"].mul_(beta1).add_(g, alpha=1 - beta1)
                state["v"].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat = state["m"] / (1 - beta1**t)
                v_hat = state["v"] / (1 - beta2**t)
                p.sub_(group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))
        return loss
""",
    "batchnorm": """\
class BatchNormFunction(torch.autograd.Function):
    \"\"\"y = (x - mean) / sqrt(var + eps) * weight + bias over the batch dim of x (N, C).\"\"\"

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        mean = x.mean(0)
        var = x.var(0, unbiased=False)
        inv_std = (var + eps).rsqrt()
        x_hat = (x - mean) * inv_std
        ctx.save_for_backward(x_hat, weight, inv_std)
        return x_hat * weight + bias

    @staticmethod
    def backward(ctx, grad_out):
        x_hat, weight, inv_std = ctx.saved_tensors
        n = grad_out.shape[0]
        g = grad_out * weight
        grad_x = inv_std / n * (n * g - g.sum(0) - x_hat * (g * x_hat).sum(0))
        return grad_x, (grad_out * x_hat).sum(0), grad_out.sum(0), None


class MyBatchNorm1d(nn.Module):
    \"\"\"Batch normalization of (N, C) inputs (arXiv:1502.03167), the conventions of
    nn.BatchNorm1d: biased batch variance to normalize, unbiased one in running_var.\"\"\"

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        if not self.training:
            x_hat = (x - self.running_mean) / (self.running_var + self.eps).sqrt()
            return x_hat * self.weight + self.bias
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(x.mean(0), alpha=m)
            self.running_var.mul_(1 - m).add_(x.var(0, unbiased=True), alpha=m)
        return BatchNormFunction.apply(x, self.weight, self.bias, self.eps)
""",
    "sampler": """\
def sample_normal(n, mean=0.0, std=1.0, generator=None):
    \"\"\"n float32 samples of N(mean, std^2) by the Box-Muller transform of uniforms.\"\"\"
    u1 = 1 - torch.rand(n, generator=generator)  # in (0, 1]: log is finite
    u2 = torch.rand(n, generator=generator)
    z = (-2 * u1.log()).sqrt() * torch.cos(2 * math.pi * u2)
    return mean + std * z
""",
}

# One visible test per exercise: quick, on the student's own kernel (the hidden checks decide).
VISIBLE = {
    "softmax": """\
with report("softmax"):
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert_close(softmax(x), torch.tensor([[0.0900306, 0.2447285, 0.6652410]]), atol=1e-6)
""",
    "dropout": """\
with report("dropout_"):
    x = torch.ones(1000)
    assert_equal(dropout_(x, 0.5, torch.Generator().manual_seed(0)) is x, True,
                 name="dropout_(x, 0.5, generator) returns x, changed in place")
    assert_equal(set(x.unique().tolist()) <= {0.0, 2.0}, True, name="values in {0, 2}")
""",
    "adam": """\
with report("MyAdam"):
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = MyAdam([w], lr=0.1)
    (w ** 2).sum().backward()
    opt.step()
    assert_close(w.detach(), torch.tensor([0.9, -1.9]), atol=1e-6)
""",
    "batchnorm": """\
with report("MyBatchNorm1d"):
    y = MyBatchNorm1d(3)(torch.randn(8, 3))
    assert_close(y.mean(0), torch.zeros(3), atol=1e-5)
""",
    "sampler": """\
with report("sample_normal"):
    s = sample_normal(1000, 2.0, 0.5, torch.Generator().manual_seed(0))
    assert_equal(tuple(s.shape), (1000,), name="shape")
""",
}

POINTS = {"softmax": 2, "dropout": 2, "adam": 3, "batchnorm": 3, "sampler": 2}
