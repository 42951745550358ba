# PyTorch CPU (2 threads) ctc_loss at the shapes of `wgpu-loss bench --shapes ctc_T1000_N32_C64_S200,ctc_T500_N16_C5000_S100`:
# the same lengths as the catalogue bench (input lengths T - n % 3, target lengths S - n % 2, sequence 1 empty).
import torch, time, torch.nn.functional as F
torch.set_num_threads(2); torch.manual_seed(0)
def run(T, N, C, S, reps=5):
    lp = torch.randn(T, N, C).log_softmax(-1).detach().requires_grad_(True)
    tg = torch.randint(1, C, (N, S))
    il = torch.tensor([max(T - k % 3, 1) for k in range(N)]); tl = torch.tensor([S - k % 2 if not (k == 1 and N >= 3) else 0 for k in range(N)])
    def fwd(): return F.ctc_loss(lp, tg, il, tl)
    def fb():
        l = F.ctc_loss(lp, tg, il, tl); l.backward(); lp.grad = None
    for f, name in [(fwd, "forward"), (fb, "forward+backward")]:
        f(); ts = []
        for _ in range(reps):
            t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
        ts.sort(); print(f"ctc T{T} N{N} C{C} S{S} {name}: median {ts[len(ts)//2]*1e3:.1f} ms")
run(1000, 32, 64, 200); run(500, 16, 5000, 100)
