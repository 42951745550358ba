# PyTorch CPU (2 threads) timings of the workloads in benches/results/gemm-half.md, the peer
# figures next to `wgpu-loss bench` on the same machine. Median wall time per call.
# Run: python3 benches/results/torch_cpu_gemm_half.py   (needs `pip install torch`, CPU build)
# FULL=1 adds the LM head at N = 2048 and in bf16 (minutes: bf16 GEMMs are slow on AVX2).
import os, statistics, time
import torch
import torch.nn.functional as F

torch.set_num_threads(2)
torch.manual_seed(0)


def timed(f, reps=5):
    f()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def ce(n, c, dtype, backward):
    x = torch.randn(n, c, dtype=dtype, requires_grad=backward)
    t = torch.randint(0, c, (n,))
    if backward:
        return lambda: F.cross_entropy(x, t).backward()
    return lambda: F.cross_entropy(x, t)


rows = []
for dt, name in [(torch.float32, "f32"), (torch.bfloat16, "bf16")]:
    rows.append((f"cross_entropy fwd [4096, 32000] {name}", timed(ce(4096, 32000, dt, False))))
    rows.append((f"cross_entropy fwd+bwd [4096, 32000] {name}", timed(ce(4096, 32000, dt, True))))
x, y = torch.randn(16 << 20), torch.rand(16 << 20)
rows.append(("bce_with_logits fwd 16 M", timed(lambda: F.binary_cross_entropy_with_logits(x, y))))
rows.append(("mse fwd 16 M", timed(lambda: F.mse_loss(x, y))))
v = torch.rand(16 << 20) + 0.1
rows.append(("gaussian_nll fwd 16 M", timed(lambda: F.gaussian_nll_loss(x, y, v))))
s = torch.sign(torch.randn(16 << 20))
rows.append(("margin_ranking fwd 16 M", timed(lambda: F.margin_ranking_loss(x, y, s))))
rows.append(("cross_entropy fwd [65536, 10]", timed(ce(65536, 10, torch.float32, False))))
rows.append(("cross_entropy fwd [1024, 1000]", timed(ce(1024, 1000, torch.float32, False))))
z = torch.randn(1024, 32000)
rows.append(("log_softmax fwd [1024, 32000]", timed(lambda: F.log_softmax(z, -1))))
for dt, name in [(torch.float32, "f32"), (torch.bfloat16, "bf16")]:
    a, b = torch.randn(1024, 1024, dtype=dt), torch.randn(1024, 1024, dtype=dt)
    ms = timed(lambda: F.linear(a, b))
    rows.append((f"linear 1024^3 {name} ({2 * 1024**3 / ms / 1e6:.0f} GFLOP/s)", ms))
full = os.environ.get("FULL") == "1"
for n in [128, 2048] if full else [128]:
    for dt, name in [(torch.float32, "f32"), (torch.bfloat16, "bf16")] if full else [(torch.float32, "f32")]:
        h = torch.randn(n, 1024, dtype=dt, requires_grad=True)
        w = (torch.randn(32000, 1024, dtype=dt) / 32).requires_grad_()
        t = torch.randint(0, 32000, (n,))
        rows.append((f"LM head {n} x 1024 -> 32000 fwd {name}", timed(lambda: F.linear_cross_entropy(h, w, t), 3)))
        rows.append(
            (f"LM head {n} x 1024 -> 32000 fwd+bwd {name}", timed(lambda: F.linear_cross_entropy(h, w, t).backward(), 3))
        )
for (T, N, C, S) in [(1000, 32, 64, 200), (500, 16, 5000, 100)] if full else [(1000, 32, 64, 200)]:
    lp = torch.randn(T, N, C).log_softmax(2).requires_grad_()
    tg = torch.randint(1, C, (N, S))
    il, tl = torch.full((N,), T), torch.full((N,), S)
    rows.append((f"ctc T{T} N{N} C{C} S{S} fwd", timed(lambda: F.ctc_loss(lp, tg, il, tl), 3)))
    rows.append((f"ctc T{T} N{N} C{C} S{S} fwd+bwd", timed(lambda: F.ctc_loss(lp, tg, il, tl).backward(), 3)))
print(f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads, median ms per call")
for name, ms in rows:
    print(f"| {name} | {ms:.2f} |")
