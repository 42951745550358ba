# PyTorch CPU (2 threads) timings of the pointwise losses at 16 M elements, the peer figures next
# to `wgpu-loss bench --shapes pointwise_16M` on the same machine (issue24-pointwise.md). Each
# loss at its default reduction (mean; sigmoid_focal none, as torchvision's), forward, and
# forward + backward of the input's gradient. Median wall time per call.
# Run: python3 benches/results/torch_cpu_pointwise.py   (needs `pip install torch`, CPU build)
import statistics, time
import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(0)
n = 16 << 20


def timed(f, reps=5):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def focal(x, t, alpha=0.25, gamma=2.0):
    # torchvision.ops.sigmoid_focal_loss as torchvision writes it (reduction none).
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * ((1 - p_t) ** gamma)
    return (alpha * t + (1 - alpha) * (1 - t)) * loss


x, y = torch.randn(n), torch.rand(n)
p = torch.rand(n) * 0.98 + 0.01
v = torch.rand(n) + 0.1
s = torch.sign(torch.randn(n))
losses = {
    "mse": lambda a: F.mse_loss(a, y),
    "l1": lambda a: F.l1_loss(a, y),
    "bce": lambda a: F.binary_cross_entropy(a, y),
    "bce_with_logits": lambda a: F.binary_cross_entropy_with_logits(a, y),
    "poisson_nll": lambda a: F.poisson_nll_loss(a, y),
    "gaussian_nll": lambda a: F.gaussian_nll_loss(a, y, v),
    "margin_ranking": lambda a: F.margin_ranking_loss(a, y, s),
    "sigmoid_focal": lambda a: focal(a, y),
}
print("| loss | forward ms | forward + backward ms |")
print("|---|---:|---:|")
for name, f in losses.items():
    base = p if name == "bce" else x
    fwd = timed(lambda: f(base))
    leaf = base.clone().requires_grad_()
    g = torch.ones(n) if name == "sigmoid_focal" else None
    both = timed(lambda: f(leaf).backward(g))
    print(f"| {name} | {fwd:.1f} | {both:.1f} |")
