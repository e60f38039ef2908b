r"""A hand-written, run-major C++ kernel for a chain of Han-layers, against the same chain in inductor.

    python experiments/han_chain_kernel.py [--runs 25] [--layers 17] [--width 30] [--batch 100] [--repeats 5]

The stacked trainer's step (hanzoo.training.backprop) is compiled by inductor, which loops layer by layer over
every run of a group: each pass streams a [runs, width, batch] activation through the L2 cache. A
kernel that takes one run at a time through the whole chain keeps that run's activations in L1. This
script asks whether such a kernel, written plainly (batch-contiguous loops that g++ vectorizes, the
backward in two passes a layer), beats inductor on the HanNet-20x30 step's Han part: the shapes
default to one run group of it (25 runs, 17 Han-layers of width 30, batch 100), on one thread.

It compiles the kernel with the system's C++ compiler (-O3 -march=native), checks its forward and
closed-form backward against autograd in float64 (the kernel runs in float32), then times both,
interleaved, and prints the medians and the ratio.

Decision rule, fixed before the run: the kernel goes into the trainer only if it is at least 1.7x
faster than inductor's chain, the speed-up the 3x trainer target needs from the Han part (the Dense
layers already run near the sgemm rate). Measured on the 2-core development machine, idle, with the
defaults: 704 us a call against inductor's 582 us (0.83x), so it was not adopted. It is also fragile:
at --batch 96, 112 or 128 it ran at 0.42x to 0.45x of inductor, and a variant that kept each block of
16 columns in registers through the width loop ran at 0.45x.
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import torch

SOURCE = r"""
// A chain of L Han-layers of width F over a batch of B columns, for R independent runs.
// Layout: activations [R, L, F, B] (batch contiguous), parameters [R, L, F].
#include <cmath>

template <typename T>
static void forward(long R, long L, long F, long B, const T *x0, const T *U, const T *Bias, T *Z,
                    T *S, T *C) {
    for (long r = 0; r < R; r++)
        for (long l = 0; l < L; l++) {
            const long rl = r * L + l;
            const T *u = U + rl * F, *bias = Bias + rl * F;
            const T *in = l ? Z + (rl - 1) * F * B : x0 + r * F * B;
            T *z = Z + rl * F * B, *s = S + rl * B;
            T uu = 0;
            for (long f = 0; f < F; f++) uu += u[f] * u[f];
            const T c = T(2) / uu;
            C[rl] = c;
            for (long b = 0; b < B; b++) s[b] = 0;
            for (long f = 0; f < F; f++) {
                const T *xf = in + f * B;
                const T uf = u[f];
                if (l)
                    for (long b = 0; b < B; b++) s[b] += std::fabs(xf[b]) * uf;
                else
                    for (long b = 0; b < B; b++) s[b] += xf[b] * uf;
            }
            for (long f = 0; f < F; f++) {
                const T *xf = in + f * B;
                T *zf = z + f * B;
                const T cu = c * u[f], bf = bias[f];
                if (l)
                    for (long b = 0; b < B; b++) zf[b] = std::fabs(xf[b]) + bf - s[b] * cu;
                else
                    for (long b = 0; b < B; b++) zf[b] = xf[b] + bf - s[b] * cu;
            }
        }
}

// G holds dLoss/d(chain output) on entry and dLoss/d(x0) on return; t is scratch [B].
template <typename T>
static void backward(long R, long L, long F, long B, const T *x0, const T *U, const T *Z, const T *S,
                     const T *C, T *G, T *dU, T *dBias, T *t) {
    for (long r = 0; r < R; r++) {
        T *g = G + r * F * B;
        for (long l = L - 1; l >= 0; l--) {
            const long rl = r * L + l;
            const T *u = U + rl * F, *z = Z + rl * F * B, *s = S + rl * B;
            const T *in = l ? Z + (rl - 1) * F * B : x0 + r * F * B;
            const T c = C[rl];
            T *du = dU + rl * F, *db = dBias + rl * F;
            for (long b = 0; b < B; b++) t[b] = 0;
            for (long f = 0; f < F; f++) {
                T *gf = g + f * B;
                const T *zf = z + f * B;
                const T uf = u[f];
                T acc = 0;
#pragma omp simd reduction(+ : acc)
                for (long b = 0; b < B; b++) {
                    const T v = gf[b] * (zf[b] > 0 ? T(1) : (zf[b] < 0 ? T(-1) : T(0)));
                    gf[b] = v;
                    acc += v;
                    t[b] += uf * v;
                }
                db[f] = acc;
            }
            T st = 0;
#pragma omp simd reduction(+ : st)
            for (long b = 0; b < B; b++) st += s[b] * t[b];
            for (long f = 0; f < F; f++) {
                T *gf = g + f * B;
                const T *xf = in + f * B;
                const T cu = c * u[f];
                T sg = 0, tx = 0;
                if (l) {
#pragma omp simd reduction(+ : sg, tx)
                    for (long b = 0; b < B; b++) {
                        sg += s[b] * gf[b];
                        tx += t[b] * std::fabs(xf[b]);
                        gf[b] -= t[b] * cu;
                    }
                } else {
#pragma omp simd reduction(+ : sg, tx)
                    for (long b = 0; b < B; b++) {
                        sg += s[b] * gf[b];
                        tx += t[b] * xf[b];
                        gf[b] -= t[b] * cu;
                    }
                }
                du[f] = -c * (sg + tx) + c * c * st * u[f];
            }
        }
    }
}


extern "C" {
void han_forward(long R, long L, long F, long B, const float *x0, const float *U, const float *Bias, float *Z,
                 float *S, float *C) {
    forward(R, L, F, B, x0, U, Bias, Z, S, C);
}
void han_backward(long R, long L, long F, long B, const float *x0, const float *U, const float *Z,
                  const float *S, const float *C, float *G, float *dU, float *dBias, float *t) {
    backward(R, L, F, B, x0, U, Z, S, C, G, dU, dBias, t);
}
}
"""


def build(folder: Path) -> ctypes.CDLL:
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise SystemExit("needs a C++ compiler (g++ or c++) on PATH")
    (folder / "han_chain.cpp").write_text(SOURCE)
    cmd = [compiler, "-O3", "-march=native", "-fopenmp-simd", "-shared", "-fPIC", "-o", "han_chain.so"]
    subprocess.run([*cmd, "han_chain.cpp"], cwd=folder, check=True)
    return ctypes.CDLL(str(folder / "han_chain.so"))


class Kernel:
    """The C++ chain on float32 tensors: x0 [R, F, B], U and Bias [R, L, F]."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib

    def forward(self, x0, U, Bias):
        R, L, F = U.shape
        B = x0.shape[-1]
        Z, S, C = torch.empty(R, L, F, B), torch.empty(R, L, B), torch.empty(R, L)
        self.lib.han_forward(*map(ctypes.c_long, (R, L, F, B)), *ptrs(x0, U, Bias, Z, S, C))
        return Z, S, C

    def backward(self, x0, U, Z, S, C, gout):
        R, L, F = U.shape
        G, dU, dB, t = gout.clone(), torch.empty_like(U), torch.empty_like(U), torch.empty(x0.shape[-1])
        self.lib.han_backward(
            *map(ctypes.c_long, (R, L, F, x0.shape[-1])), *ptrs(x0, U, Z, S, C, G, dU, dB, t)
        )
        return G, dU, dB


def ptrs(*tensors: torch.Tensor) -> list[ctypes.c_void_p]:
    assert all(t.is_contiguous() and t.dtype == torch.float32 for t in tensors)
    return [ctypes.c_void_p(t.data_ptr()) for t in tensors]


def chain(us, bs, x0, gout):
    """The chain as hanzoo.training.backprop writes it ([R, F, B] layout, |.|): forward, then closed-form
    backward."""
    x, saved = x0, []
    for u, b in zip(us, bs):
        c = 2.0 / (u * u).sum(-1, keepdim=True)
        s = (x * u.unsqueeze(2)).sum(1, keepdim=True)
        z = x + b.unsqueeze(2) - (c.unsqueeze(2) * s) * u.unsqueeze(2)
        saved.append((x, z, s, c))
        x = z.abs()
    gz, gu, gb = gout, [], []
    for (x, z, s, c), u in zip(reversed(saved), reversed(us)):
        gz = gz * torch.sign(z)
        gb.append(gz.sum(2))
        t = (gz * u.unsqueeze(2)).sum(1, keepdim=True)
        gu.append(-c * ((s * gz).sum(2) + (t * x).sum(2)) + (c * c) * (s * t).sum(2) * u)
        gz = gz - (c.unsqueeze(2) * t) * u.unsqueeze(2)
    return gz, gu[::-1], gb[::-1]


def parity(kernel: Kernel, x0, U, Bias, gout) -> dict[str, float]:
    """Largest error of the kernel's output and gradients against autograd in float64, relative to scale."""
    xr, ur, br = (t.double().requires_grad_(True) for t in (x0, U, Bias))
    x = xr
    for layer in range(U.shape[1]):
        u = ur[:, layer]
        c = 2.0 / (u * u).sum(-1, keepdim=True)
        x = (
            x
            + br[:, layer].unsqueeze(2)
            - (c.unsqueeze(2) * (x * u.unsqueeze(2)).sum(1, keepdim=True)) * u.unsqueeze(2)
        )
        x = x.abs()
    (x * gout.double()).sum().backward()
    Z, S, C = kernel.forward(x0, U, Bias)
    G, dU, dB = kernel.backward(x0, U, Z, S, C, gout)
    rel = lambda a, b: float((a.double() - b).abs().max() / b.abs().max())  # noqa: E731
    return {
        "output": rel(Z[:, -1].abs(), x.detach()),
        "dx": rel(G, xr.grad),
        "du": rel(dU, ur.grad),
        "db": rel(dB, br.grad),
    }


def median_us(fn, repeats: int, calls: int = 200) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=25)
    ap.add_argument("--layers", type=int, default=17)
    ap.add_argument("--width", type=int, default=30)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    R, L, F, B = args.runs, args.layers, args.width, args.batch
    x0, gout = torch.randn(R, F, B, generator=g), torch.randn(R, F, B, generator=g)
    U, Bias = torch.randn(R, L, F, generator=g), 0.1 * torch.randn(R, L, F, generator=g)
    with tempfile.TemporaryDirectory() as tmp:
        kernel = Kernel(build(Path(tmp)))
        print(
            "relative error against float64 autograd:",
            {k: f"{v:.1e}" for k, v in parity(kernel, x0, U, Bias, gout).items()},
        )
        us, bs = [U[:, i].contiguous() for i in range(L)], [Bias[:, i].contiguous() for i in range(L)]
        compiled = torch.compile(chain)
        Z, S, C = kernel.forward(x0, U, Bias)
        runs = {
            "C++ kernel": lambda: kernel.backward(x0, U, *kernel.forward(x0, U, Bias), gout),
            "inductor": lambda: compiled(us, bs, x0, gout),
        }
        for fn in runs.values():  # compile, and warm the caches
            for _ in range(20):
                fn()
        times = {name: [] for name in runs}
        for _ in range(args.repeats):  # interleaved, so drift hits both alike
            for name, fn in runs.items():
                times[name].append(median_us(fn, 1))
    flops = R * B * L * 18 * F  # forward and closed-form backward, as benchmarks/train_speed.py counts them
    for name, t in times.items():
        us_ = statistics.median(t)
        print(f"{name:<11} {us_:8.0f} us per call ({flops / us_ / 1e3:.1f} GFLOP/s)")
    ratio = statistics.median(times["inductor"]) / statistics.median(times["C++ kernel"])
    print(
        f"C++ kernel over inductor: {ratio:.2f}x (adopted at 1.7x or more: {'yes' if ratio >= 1.7 else 'no'})"
    )


if __name__ == "__main__":
    main()
