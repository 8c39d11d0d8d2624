/*
 * Fused multi-step spiking-neuron kernels for the CPU (float32).
 *
 * One configurable neuron covers every registered spikeshield neuron (see kernels/program.py):
 *
 *   X'[t] = p[t]·X[t]                     (DLIF input gain; p = 1 otherwise)
 *   H[t]  = charge(V[t-1], X'[t]) + osc[t] (IF / exponential LIF / multiplicative / linear leak)
 *   F[t]  = H[t]  or  ReLU(k·H[t])        (KLIF)
 *   S[t]  = Θ(F[t] − V_th − osc_th[t])    surrogate gradient g evaluated at x_b[t]
 *   V[t]  = hard: F(1−S) + V_reset·S, soft: F − V_th·S   (KLIF scale_reset: divided by k)
 *
 * Every forward operation is written exactly as the PyTorch reference
 * (spikeshield.neurons.*) evaluates it, one IEEE float32 operation at a time, in the same order;
 * the file is compiled with -ffp-contract=off so no multiply-add is fused. That makes the spikes
 * bit-identical to the reference.
 *
 * The forward saves nothing: the backward recomputes H, F, S and V for a block of neurons into
 * small local arrays (cache-resident), then runs the hand-derived reverse recursion over T:
 *
 *   dS  = dL/dS[t] + dV·∂R/∂S            (the second term dropped with detach_reset)
 *   dF  = dV·∂R/∂F + dS·g(x_b[t])
 *   dH  = dF·k·[k·H > 0]  (KLIF)  or dF
 *   dX' = dH·∂charge/∂X',  dV[t−1] = dH·∂charge/∂V
 *
 * plus the parameter gradients (k, 1/τ, p[t]) accumulated in double per thread.
 *
 * Loops run over blocks of a few hundred neurons with t outside and the neuron index inside, so
 * that every inner loop is a simple loop gcc vectorises; exp is a vectorisable polynomial.
 * Threads: POSIX threads over contiguous ranges of neurons, started and joined per call
 * (parallel.h): no OpenMP, so no second OpenMP runtime next to PyTorch's, and no pool that waits.
 *
 * Pooled output (fast path only): with pool_h, pool_w set the kernel returns the spikes already
 * max-pooled 2×2 / stride 2 (floor mode) over each H×W plane — PyTorch's MaxPool2d(2) after the
 * neuron, fused. Blocks are then whole row pairs, the spikes of a block never leave the cache,
 * and the backward takes dL/dP (a quarter of the size) and routes it to the first spike of each
 * window in row-major order, or to its top-left neuron if it has none: exactly PyTorch's
 * max-pool gradient on 0/1 spikes (the rule of pool.c). Neurons in a row or column that floor
 * mode drops get dL/dX = 0, as through PyTorch's pool. The stateless noisy IF has its own pooled
 * kernel (spk_noisy_pool_forward / _backward, at the end of this file).
 */
#include <math.h>

#include "parallel.h"
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define SPK_AVX2 1
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SPK_API __attribute__((visibility("default")))

enum { CHARGE_IF = 0, CHARGE_LIF = 1, CHARGE_LIF_NO_DECAY_INPUT = 2, CHARGE_MULT = 3, CHARGE_LINEAR = 4,
       CHARGE_LINEAR_NO_FLOOR = 5 };
enum { SG_SIGMOID = 0, SG_ATAN = 1, SG_RECTANGLE = 2, SG_TRIANGLE = 3, SG_GAUSSIAN = 4 };
enum { OSC_NONE = 0, OSC_MEMBRANE = 1, OSC_THRESHOLD = 2 };

/* Mirrored by ctypes in kernels/cpu.py: keep the field order and types in sync. */
typedef struct {
    int64_t T;
    int64_t N;              /* neurons per time step (B × features) */
    int32_t charge;         /* CHARGE_* */
    int32_t klif;           /* F = ReLU(k·H) */
    int32_t hard_reset;     /* 1 hard, 0 soft */
    int32_t scale_reset;    /* KLIF: divide the reset potential by k */
    int32_t detach_reset;
    int32_t surrogate;      /* SG_* */
    int32_t osc_target;     /* OSC_* */
    int32_t fake_gradient;  /* surrogate evaluated at x + (osc_b − osc) (membrane) etc. */
    int32_t has_gain;       /* DLIF p[t] */
    int32_t nthreads;
    float beta;             /* 1/τ */
    float decay;            /* λ of the multiplicative leak */
    float leak;             /* linear leak */
    float floor_;           /* linear-leak floor */
    float k;                /* KLIF k */
    float v_th;
    float v_reset;
    float v_init;
    float sg;               /* surrogate parameter (α, width, γ, σ) */
    float sg_c1;            /* precomputed constants of the surrogate (see surrogate_grad) */
    float sg_c2;
    const float *gain;      /* [T] or NULL */
    const float *osc;       /* [T] forward oscillation (scalars) */
    const float *osc_b;     /* [T] backward (fake) oscillation (scalars) */
    const float *osc_t;     /* [T·N] forward oscillation per neuron, or NULL */
    const float *osc_b_t;   /* [T·N] backward oscillation per neuron, or NULL */
    int64_t block;          /* neurons per block (0: automatic) */
    int64_t x_stride_t;     /* elements between X[t] and X[t+1]: N, or 0 for one X repeated over T */
    int32_t accumulate_grad; /* with x_stride_t = 0: dL/dX summed over t into one [N] row */
    int64_t pool_h;          /* > 0: the spikes are 2×2 max-pooled (see "Pooled output" below); */
    int64_t pool_w;          /*      the neurons of each step are planes [N / (H·W), H, W] */
} spk_cfg;

/* ------------------------------------------------------------------------------------------ */
/* exp(x) for float, written so gcc vectorises it (Cody–Waite reduction, Cephes polynomial,  */
/* about 1 ulp on the clamped range). Only used in backward passes.                           */
static inline float vexpf(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float fn = x * 1.44269504088896341f;
    fn = (fn + 12582912.0f) - 12582912.0f; /* round to nearest integer */
    float r = x - fn * 0.693359375f;
    r = r - fn * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    int32_t bits = ((int32_t)fn + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Sum of a block in double precision, in a form the SLP vectoriser turns into packed adds. */
static inline double block_sum(const float *restrict a, int64_t n) {
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t j = 0;
    for (; j + 8 <= n; j += 8)
        for (int q = 0; q < 8; q++) acc[q] += (double)a[j + q];
    double total = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; j < n; j++) total += (double)a[j];
    return total;
}

#ifdef SPK_AVX2
/* exp(z) for z <= 0 (z clamped at −87), 8 lanes: Cody–Waite reduction, degree-5 polynomial with
 * fused multiply-adds (backward passes only, where rounding need not match PyTorch). */
static inline __m256 exp_nonpositive_avx2(__m256 z) {
    z = _mm256_max_ps(z, _mm256_set1_ps(-87.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(z, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), z);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    /* exp(r) = 1 + r + r²·P(r), P of degree 3 fitted for relative error on |r| <= ln2/2:
     * max relative error 1.7e-7 in float32 */
    __m256 p = _mm256_set1_ps(8.31251e-3f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.189009e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6667115e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.9999232e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* 1/d for d >= 1: hardware estimate refined by one Newton step (relative error ~1e-7, far
 * cheaper than a division). */
static inline __m256 recip_avx2(__m256 d) {
    const __m256 r = _mm256_rcp_ps(d);
    return _mm256_mul_ps(r, _mm256_fnmadd_ps(d, r, _mm256_set1_ps(2.0f)));
}

/* sigmoid surrogate: α·σ(αx)(1 − σ(αx)) = α·e/(1 + e)² with e = exp(−α|x|) (never overflows). */
static int64_t sigmoid_grad_avx2(float *xs, int64_t n, float alpha) {
    const __m256 a = _mm256_set1_ps(alpha), sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 ax = _mm256_or_ps(_mm256_mul_ps(a, _mm256_loadu_ps(xs + j)), sign); /* −|αx| */
        const __m256 e = exp_nonpositive_avx2(ax);
        const __m256 d = _mm256_add_ps(one, e);
        _mm256_storeu_ps(xs + j, _mm256_mul_ps(_mm256_mul_ps(a, e), recip_avx2(_mm256_mul_ps(d, d))));
    }
    return j;
}

/* atan surrogate: (α/2) / (1 + (παx/2)²); c1 = πα/2, c2 = α/2. */
static int64_t atan_grad_avx2(float *xs, int64_t n, float c1, float c2) {
    const __m256 k1 = _mm256_set1_ps(c1), k2 = _mm256_set1_ps(c2), one = _mm256_set1_ps(1.0f);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 y = _mm256_mul_ps(k1, _mm256_loadu_ps(xs + j));
        _mm256_storeu_ps(xs + j, _mm256_mul_ps(k2, recip_avx2(_mm256_fmadd_ps(y, y, one))));
    }
    return j;
}

/* Gaussian surrogate: exp(−y²/2)/(σ√2π), y = x/σ. */
static int64_t gaussian_grad_avx2(float *xs, int64_t n, float sigma, float norm) {
    const __m256 inv = _mm256_set1_ps(1.0f / sigma), half = _mm256_set1_ps(-0.5f), k = _mm256_set1_ps(1.0f / norm);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 y = _mm256_mul_ps(_mm256_loadu_ps(xs + j), inv);
        _mm256_storeu_ps(xs + j, _mm256_mul_ps(exp_nonpositive_avx2(_mm256_mul_ps(half, _mm256_mul_ps(y, y))), k));
    }
    return j;
}
#endif

/* g(x) for a block, in place: xs[j] <- g(xs[j]). Same formulas as neurons/surrogates.py. */
static void surrogate_grad(const spk_cfg *c, float *restrict xs, int64_t n) {
    const float a = c->sg, c1 = c->sg_c1, c2 = c->sg_c2;
    int64_t done = 0; /* elements handled by the AVX2 versions */
    (void)done;
    switch (c->surrogate) {
    case SG_SIGMOID: /* s = sigmoid(αx); g = α·s·(1−s) */
#ifdef SPK_AVX2
        done = sigmoid_grad_avx2(xs, n, a);
#endif
        for (int64_t j = done; j < n; j++) {
            float s = 1.0f / (1.0f + vexpf(-(a * xs[j])));
            xs[j] = a * s * (1.0f - s);
        }
        break;
    case SG_ATAN: /* (α/2) / (1 + (παx/2)²); c1 = πα/2, c2 = α/2 */
#ifdef SPK_AVX2
        done = atan_grad_avx2(xs, n, c1, c2);
#endif
        for (int64_t j = done; j < n; j++) {
            float y = c1 * xs[j];
            xs[j] = c2 / (1.0f + y * y);
        }
        break;
    case SG_RECTANGLE: /* 1/w if |x| < w/2; c1 = w/2, c2 = 1/w */
        for (int64_t j = 0; j < n; j++) xs[j] = fabsf(xs[j]) < c1 ? c2 : 0.0f;
        break;
    case SG_TRIANGLE: { /* max(0, γ − |x|)/γ²; c2 = γ² */
        const float inv = 1.0f / c2;
        for (int64_t j = 0; j < n; j++) {
            float d = a - fabsf(xs[j]);
            xs[j] = (d > 0.0f ? d : 0.0f) * inv;
        }
        break;
    }
    default: /* SG_GAUSSIAN: exp(−x²/2σ²)/(σ√2π); c2 = σ√2π */
#ifdef SPK_AVX2
        done = gaussian_grad_avx2(xs, n, a, c2);
#endif
        for (int64_t j = done; j < n; j++) {
            float y = xs[j] / a;
            xs[j] = vexpf(-0.5f * (y * y)) / c2;
        }
        break;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* One forward step for a block of n neurons: v (in: V[t−1], out: V[t]), x = X[t] row,        */
/* writes h = H[t], f = F[t], xs = F − V_th (− osc), s = S[t]. Exactly the reference's ops.    */
static inline void step_forward(const spk_cfg *c, int64_t t, int64_t i0, int64_t n, const float *restrict x_row,
                                float *restrict v, float *restrict xin, float *restrict h, float *restrict f,
                                float *restrict xs, float *restrict s) {
    const float beta = c->beta, vr = c->v_reset, vth = c->v_th;
    const float *restrict x = x_row;
    /* input current: p[t]·X[t] (DLIF) */
    if (c->has_gain) {
        const float g = c->gain[t];
        for (int64_t j = 0; j < n; j++) xin[j] = g * x_row[j];
        x = xin;
    }
    /* charge */
    switch (c->charge) {
    case CHARGE_IF:
        for (int64_t j = 0; j < n; j++) h[j] = v[j] + x[j];
        break;
    case CHARGE_LIF: /* v + (x − (v − v_reset))·β */
        for (int64_t j = 0; j < n; j++) h[j] = v[j] + (x[j] - (v[j] - vr)) * beta;
        break;
    case CHARGE_LIF_NO_DECAY_INPUT: /* v − (v − v_reset)·β + x */
        for (int64_t j = 0; j < n; j++) h[j] = (v[j] - (v[j] - vr) * beta) + x[j];
        break;
    case CHARGE_MULT: { /* λ·v + x */
        const float d = c->decay;
        for (int64_t j = 0; j < n; j++) h[j] = d * v[j] + x[j];
        break;
    }
    case CHARGE_LINEAR: { /* clamp(v − leak, min=floor) + x */
        const float lk = c->leak, fl = c->floor_;
        for (int64_t j = 0; j < n; j++) {
            float l = v[j] - lk;
            l = l < fl ? fl : l;
            h[j] = l + x[j];
        }
        break;
    }
    default: { /* CHARGE_LINEAR_NO_FLOOR */
        const float lk = c->leak;
        for (int64_t j = 0; j < n; j++) h[j] = (v[j] - lk) + x[j];
        break;
    }
    }
    const float *osc_row = c->osc_t ? c->osc_t + t * c->N + i0 : NULL;
    const float osc = c->osc ? c->osc[t] : 0.0f;
    if (c->osc_target == OSC_MEMBRANE) {
        if (osc_row)
            for (int64_t j = 0; j < n; j++) h[j] = h[j] + osc_row[j];
        else
            for (int64_t j = 0; j < n; j++) h[j] = h[j] + osc;
    }
    /* pre-fire */
    if (c->klif) {
        const float k = c->k;
        for (int64_t j = 0; j < n; j++) {
            float y = k * h[j];
            f[j] = y < 0.0f ? 0.0f : y;
        }
    } else {
        for (int64_t j = 0; j < n; j++) f[j] = h[j];
    }
    /* fire */
    for (int64_t j = 0; j < n; j++) xs[j] = f[j] - vth;
    if (c->osc_target == OSC_THRESHOLD) {
        if (osc_row)
            for (int64_t j = 0; j < n; j++) xs[j] = xs[j] - osc_row[j];
        else
            for (int64_t j = 0; j < n; j++) xs[j] = xs[j] - osc;
    }
    for (int64_t j = 0; j < n; j++) s[j] = xs[j] >= 0.0f ? 1.0f : 0.0f;
    /* reset */
    if (c->scale_reset) {
        const float k = c->k;
        if (c->hard_reset)
            for (int64_t j = 0; j < n; j++) v[j] = (f[j] / k) * (1.0f - s[j]) + vr * s[j];
        else
            for (int64_t j = 0; j < n; j++) v[j] = (f[j] - vth * s[j]) / k;
    } else if (c->hard_reset) {
        for (int64_t j = 0; j < n; j++) v[j] = f[j] * (1.0f - s[j]) + vr * s[j];
    } else {
        for (int64_t j = 0; j < n; j++) v[j] = f[j] - vth * s[j];
    }
}

static int64_t block_size(const spk_cfg *c) {
    if (c->block > 0) return (c->block + 15) & ~(int64_t)15;
    const int64_t T = c->T;
    int64_t b = 8192 / (T > 0 ? T : 1);
    b = b < 64 ? 64 : b;
    b = b > 512 ? 512 : b;
    return b & ~(int64_t)15;
}

/* ------------------------------------------------------------------------------------------ */
typedef struct {
    const spk_cfg *c;
    int64_t i0, i1;
    const float *x;
    float *spikes;
    const float *grad_s;
    float *grad_x;
    double *dk, *dbeta, *dgain; /* per-thread partial sums ([1], [1], [T]) */
    int failed;
} spk_task;

static void *forward_range(void *arg) {
    spk_task *task = (spk_task *)arg;
    const spk_cfg *c = task->c;
    const int64_t T = c->T, N = c->N, B = block_size(c);
    float *buf = (float *)malloc(sizeof(float) * 5 * (size_t)B);
    if (!buf) {
        task->failed = 1;
        return NULL;
    }
    float *v = buf, *h = buf + B, *f = buf + 2 * B, *xs = buf + 3 * B, *xin = buf + 4 * B;
    for (int64_t i0 = task->i0; i0 < task->i1; i0 += B) {
        const int64_t n = (task->i1 - i0) < B ? (task->i1 - i0) : B;
        for (int64_t j = 0; j < n; j++) v[j] = c->v_init;
        for (int64_t t = 0; t < T; t++)
            step_forward(c, t, i0, n, task->x + t * c->x_stride_t + i0, v, xin, h, f, xs, task->spikes + t * N + i0);
    }
    free(buf);
    return NULL;
}

static void *backward_range(void *arg) {
    spk_task *task = (spk_task *)arg;
    const spk_cfg *c = task->c;
    const int64_t T = c->T, N = c->N, B = block_size(c);
    /* H[t] and V[t−1] for all t of the block, then per-step scratch */
    float *buf = (float *)malloc(sizeof(float) * (size_t)B * (2 * (size_t)T + 9));
    if (!buf) {
        task->failed = 1;
        return NULL;
    }
    float *Hb = buf, *Vb = buf + T * B, *v = Vb + T * B, *f = v + B, *xs = f + B, *s = xs + B, *sg = s + B,
          *dv = sg + B, *dh = dv + B, *tmp = dh + B, *xin = tmp + B;
    const float vr = c->v_reset, vth = c->v_th, k = c->k, beta = c->beta;
    const int learn_k = task->dk != NULL, learn_beta = task->dbeta != NULL, learn_gain = task->dgain != NULL;
    double dk = 0.0, dbeta = 0.0;
    for (int64_t i0 = task->i0; i0 < task->i1; i0 += B) {
        const int64_t n = (task->i1 - i0) < B ? (task->i1 - i0) : B;
        /* recompute the forward, keeping H[t] and V[t−1] */
        for (int64_t j = 0; j < n; j++) v[j] = c->v_init;
        for (int64_t t = 0; t < T; t++) {
            memcpy(Vb + t * B, v, sizeof(float) * (size_t)n);
            step_forward(c, t, i0, n, task->x + t * c->x_stride_t + i0, v, xin, Hb + t * B, f, xs, s);
        }
        for (int64_t j = 0; j < n; j++) dv[j] = 0.0f;
        for (int64_t t = T - 1; t >= 0; t--) {
            const float *restrict hr = Hb + t * B, *restrict vp = Vb + t * B;
            const float *restrict gs = task->grad_s + t * N + i0;
            const float *restrict xr = task->x + t * c->x_stride_t + i0;
            float *restrict gx = task->grad_x + t * N + i0;
            const float *osc_row = c->osc_t ? c->osc_t + t * N + i0 : NULL;
            const float *osc_b_row = c->osc_b_t ? c->osc_b_t + t * N + i0 : NULL;
            const float osc = c->osc ? c->osc[t] : 0.0f, osc_b = c->osc_b ? c->osc_b[t] : 0.0f;
            /* F, x_s, S from H (the same operations as the forward) */
            if (c->klif) {
                for (int64_t j = 0; j < n; j++) {
                    float y = k * hr[j];
                    f[j] = y < 0.0f ? 0.0f : y;
                }
            } else {
                for (int64_t j = 0; j < n; j++) f[j] = hr[j];
            }
            for (int64_t j = 0; j < n; j++) xs[j] = f[j] - vth;
            if (c->osc_target == OSC_THRESHOLD) {
                if (osc_row)
                    for (int64_t j = 0; j < n; j++) xs[j] = xs[j] - osc_row[j];
                else
                    for (int64_t j = 0; j < n; j++) xs[j] = xs[j] - osc;
            }
            for (int64_t j = 0; j < n; j++) s[j] = xs[j] >= 0.0f ? 1.0f : 0.0f;
            /* the point the surrogate is evaluated at */
            for (int64_t j = 0; j < n; j++) sg[j] = xs[j];
            if (c->fake_gradient) {
                /* membrane: x − osc + osc_b; threshold: x + osc − osc_b */
                const float sign = c->osc_target == OSC_MEMBRANE ? 1.0f : -1.0f;
                for (int64_t j = 0; j < n; j++) {
                    float o = osc_row ? osc_row[j] : osc, ob = osc_b_row ? osc_b_row[j] : osc_b;
                    sg[j] = (sg[j] - sign * o) + sign * ob;
                }
            }
            surrogate_grad(c, sg, n);
            /* reset and fire: dF */
            if (c->scale_reset) {
                const float inv_k = 1.0f / k;
                if (c->hard_reset) {
                    for (int64_t j = 0; j < n; j++) {
                        float ds = c->detach_reset ? gs[j] : gs[j] + dv[j] * (vr - f[j] * inv_k);
                        dh[j] = dv[j] * (1.0f - s[j]) * inv_k + ds * sg[j];
                        tmp[j] = -dv[j] * (f[j] * inv_k * inv_k) * (1.0f - s[j]); /* ∂L/∂k through R */
                    }
                } else {
                    for (int64_t j = 0; j < n; j++) {
                        float ds = c->detach_reset ? gs[j] : gs[j] - dv[j] * (vth * inv_k);
                        dh[j] = dv[j] * inv_k + ds * sg[j];
                        tmp[j] = -dv[j] * ((f[j] - vth * s[j]) * inv_k * inv_k);
                    }
                }
                if (learn_k)
                    dk += block_sum(tmp, n);
            } else if (c->hard_reset) {
                if (c->detach_reset)
                    for (int64_t j = 0; j < n; j++) dh[j] = dv[j] * (1.0f - s[j]) + gs[j] * sg[j];
                else
                    for (int64_t j = 0; j < n; j++)
                        dh[j] = dv[j] * (1.0f - s[j]) + (gs[j] + dv[j] * (vr - f[j])) * sg[j];
            } else {
                if (c->detach_reset)
                    for (int64_t j = 0; j < n; j++) dh[j] = dv[j] + gs[j] * sg[j];
                else
                    for (int64_t j = 0; j < n; j++) dh[j] = dv[j] + (gs[j] - dv[j] * vth) * sg[j];
            }
            /* pre-fire: dH (dh holds dF until here) */
            if (c->klif) {
                if (learn_k) {
                    for (int64_t j = 0; j < n; j++) tmp[j] = (k * hr[j] > 0.0f) ? dh[j] * hr[j] : 0.0f;
                    dk += block_sum(tmp, n);
                }
                for (int64_t j = 0; j < n; j++) dh[j] = (k * hr[j] > 0.0f) ? dh[j] * k : 0.0f;
            }
            /* charge: dX' (into gx) and dV[t−1] (into dv) */
            switch (c->charge) {
            case CHARGE_LIF:
                if (learn_beta) {
                    if (c->has_gain) {
                        const float g = c->gain[t];
                        for (int64_t j = 0; j < n; j++) tmp[j] = dh[j] * (g * xr[j] - (vp[j] - vr));
                    } else {
                        for (int64_t j = 0; j < n; j++) tmp[j] = dh[j] * (xr[j] - (vp[j] - vr));
                    }
                    dbeta += block_sum(tmp, n);
                }
                for (int64_t j = 0; j < n; j++) {
                    float d = dh[j] * beta;
                    gx[j] = d;
                    dv[j] = dh[j] - d;
                }
                break;
            case CHARGE_LIF_NO_DECAY_INPUT:
                if (learn_beta) {
                    for (int64_t j = 0; j < n; j++) tmp[j] = -dh[j] * (vp[j] - vr);
                    dbeta += block_sum(tmp, n);
                }
                for (int64_t j = 0; j < n; j++) {
                    gx[j] = dh[j];
                    dv[j] = dh[j] - dh[j] * beta;
                }
                break;
            case CHARGE_MULT: {
                const float d = c->decay;
                for (int64_t j = 0; j < n; j++) {
                    gx[j] = dh[j];
                    dv[j] = dh[j] * d;
                }
                break;
            }
            case CHARGE_LINEAR: {
                const float lk = c->leak, fl = c->floor_;
                for (int64_t j = 0; j < n; j++) {
                    gx[j] = dh[j];
                    dv[j] = (vp[j] - lk >= fl) ? dh[j] : 0.0f;
                }
                break;
            }
            default: /* IF, linear leak without floor */
                for (int64_t j = 0; j < n; j++) {
                    gx[j] = dh[j];
                    dv[j] = dh[j];
                }
                break;
            }
            if (c->has_gain) {
                const float g = c->gain[t];
                if (learn_gain) {
                    for (int64_t j = 0; j < n; j++) tmp[j] = gx[j] * xr[j];
                    task->dgain[t] += block_sum(tmp, n);
                }
                for (int64_t j = 0; j < n; j++) gx[j] = gx[j] * g;
            }
        }
    }
    if (learn_k) *task->dk += dk;
    if (learn_beta) *task->dbeta += dbeta;
    free(buf);
    return NULL;
}


/* ------------------------------------------------------------------------------------------ */
/* Fast path (no oscillation): one fused loop per step, specialised at compile time on the     */
/* charge kind and the pre-fire/reset mode, so each inner loop is straight-line vector code.   */
/* MODE bits: 1 = hard reset, 2 = KLIF ReLU(k·H), 4 = KLIF scale_reset.                         */
#define INLINE static inline __attribute__((always_inline))

INLINE float charge_op(const int CH, float v, float x, const spk_cfg *c) {
    switch (CH) {
    case CHARGE_IF:
        return v + x;
    case CHARGE_LIF:
        return v + (x - (v - c->v_reset)) * c->beta;
    case CHARGE_LIF_NO_DECAY_INPUT:
        return (v - (v - c->v_reset) * c->beta) + x;
    case CHARGE_MULT:
        return c->decay * v + x;
    case CHARGE_LINEAR: {
        float l = v - c->leak;
        l = l < c->floor_ ? c->floor_ : l;
        return l + x;
    }
    default:
        return (v - c->leak) + x;
    }
}

INLINE float prefire_op(const int MODE, float h, float k) {
    if (MODE & 2) {
        float y = k * h;
        return y < 0.0f ? 0.0f : y;
    }
    return h;
}

INLINE float reset_op(const int MODE, float f, float s, float k, float vth, float vr) {
    if (MODE & 4) {
        if (MODE & 1) return (f / k) * (1.0f - s) + vr * s;
        return (f - vth * s) / k;
    }
    if (MODE & 1) return f * (1.0f - s) + vr * s;
    return f - vth * s;
}

/* One step over a block: spikes into s; with STORE also H, V[t−1] and the surrogate's point. */
INLINE void fast_step(const spk_cfg *c, int64_t t, int64_t n, const float *restrict x, float *restrict v,
                      float *restrict s_out, float *restrict h_out, float *restrict vp_out, float *restrict xs_out,
                      const int CH, const int MODE, const int STORE) {
    const float g = c->has_gain ? c->gain[t] : 1.0f; /* 1·X is exact: no gain is the same op */
    const float k = c->k, vth = c->v_th, vr = c->v_reset;
    for (int64_t j = 0; j < n; j++) {
        const float vv = v[j];
        const float h = charge_op(CH, vv, g * x[j], c);
        const float f = prefire_op(MODE, h, k);
        const float xs = f - vth;
        const float s = xs >= 0.0f ? 1.0f : 0.0f;
        s_out[j] = s;
        if (STORE) {
            h_out[j] = h;
            vp_out[j] = vv;
            xs_out[j] = xs;
        }
        v[j] = reset_op(MODE, f, s, k, vth, vr);
    }
}

typedef void (*fast_step_fn)(const spk_cfg *, int64_t, int64_t, const float *, float *, float *, float *, float *,
                             float *);

#define DEF_STEP(CH, MODE, STORE)                                                                              \
    static void step_##CH##_##MODE##_##STORE(const spk_cfg *c, int64_t t, int64_t n, const float *x, float *v,  \
                                             float *s, float *h, float *vp, float *xs) {                        \
        fast_step(c, t, n, x, v, s, h, vp, xs, CH, MODE, STORE);                                              \
    }
#define DEF_STEP_MODES(CH, STORE)                                                                              \
    DEF_STEP(CH, 0, STORE) DEF_STEP(CH, 1, STORE) DEF_STEP(CH, 2, STORE) DEF_STEP(CH, 3, STORE)                \
        DEF_STEP(CH, 6, STORE) DEF_STEP(CH, 7, STORE)
#define DEF_STEP_ALL(STORE)                                                                                    \
    DEF_STEP_MODES(0, STORE) DEF_STEP_MODES(1, STORE) DEF_STEP_MODES(2, STORE) DEF_STEP_MODES(3, STORE)        \
        DEF_STEP_MODES(4, STORE) DEF_STEP_MODES(5, STORE)
DEF_STEP_ALL(0)
DEF_STEP_ALL(1)
#define ROW_STEP(CH, STORE)                                                                                    \
    {step_##CH##_0_##STORE, step_##CH##_1_##STORE, step_##CH##_2_##STORE, step_##CH##_3_##STORE, NULL, NULL,    \
     step_##CH##_6_##STORE, step_##CH##_7_##STORE}
static const fast_step_fn FAST_STEP[2][6][8] = {
    {ROW_STEP(0, 0), ROW_STEP(1, 0), ROW_STEP(2, 0), ROW_STEP(3, 0), ROW_STEP(4, 0), ROW_STEP(5, 0)},
    {ROW_STEP(0, 1), ROW_STEP(1, 1), ROW_STEP(2, 1), ROW_STEP(3, 1), ROW_STEP(4, 1), ROW_STEP(5, 1)},
};

static int fast_mode(const spk_cfg *c) {
    return (c->hard_reset ? 1 : 0) | (c->klif ? 2 : 0) | (c->klif && c->scale_reset ? 4 : 0);
}

/* charge backward kinds: 0 LIF (dX' = dH·β, dV = dH − dX'), 1 LIF without decay_input
 * (dX' = dH, dV = dH − dH·β), 2 affine (dX' = dH, dV = a·dH), 3 linear leak with floor (mask) */
static int charge_back_kind(const spk_cfg *c) {
    switch (c->charge) {
    case CHARGE_LIF:
        return 0;
    case CHARGE_LIF_NO_DECAY_INPUT:
        return 1;
    case CHARGE_LINEAR:
        return 3;
    default:
        return 2;
    }
}

/* One reverse step over a block: dv holds dL/dV[t] in and dL/dV[t−1] out; writes dL/dX[t]. */
INLINE void fast_back(const spk_cfg *c, int64_t t, int64_t n, const float *restrict hr, const float *restrict vp,
                      const float *restrict sgr, const float *restrict gs, float *restrict gx, float *restrict dv,
                      float *restrict dh_out, float *restrict k_terms, const int CB, const int MODE,
                      const int DETACH) {
    const float g = c->has_gain ? c->gain[t] : 1.0f;
    const float k = c->k, inv_k = 1.0f / c->k, vth = c->v_th, vr = c->v_reset, beta = c->beta;
    const float a = c->charge == CHARGE_MULT ? c->decay : 1.0f, leak = c->leak, fl = c->floor_;
    for (int64_t j = 0; j < n; j++) {
        const float h = hr[j];
        const float f = prefire_op(MODE, h, k);
        const float s = (f - vth) >= 0.0f ? 1.0f : 0.0f;
        const float sg = sgr[j], d = dv[j], gsj = gs[j];
        float df, kterm = 0.0f;
        if (MODE & 4) {
            if (MODE & 1) {
                const float ds = DETACH ? gsj : gsj + d * (vr - f * inv_k);
                df = d * (1.0f - s) * inv_k + ds * sg;
                kterm = -d * (f * inv_k * inv_k) * (1.0f - s);
            } else {
                const float ds = DETACH ? gsj : gsj - d * (vth * inv_k);
                df = d * inv_k + ds * sg;
                kterm = -d * ((f - vth * s) * inv_k * inv_k);
            }
        } else if (MODE & 1) {
            const float ds = DETACH ? gsj : gsj + d * (vr - f);
            df = d * (1.0f - s) + ds * sg;
        } else {
            const float ds = DETACH ? gsj : gsj - d * vth;
            df = d + ds * sg;
        }
        float dh = df;
        if (MODE & 2) {
            const int on = f > 0.0f; /* ReLU's gradient mask: k·H > 0 */
            kterm += on ? df * h : 0.0f;
            dh = on ? df * k : 0.0f;
            k_terms[j] = kterm;
        }
        dh_out[j] = dh;
        float gxin, dvn;
        if (CB == 0) {
            gxin = dh * beta;
            dvn = dh - gxin;
        } else if (CB == 1) {
            gxin = dh;
            dvn = dh - dh * beta;
        } else if (CB == 2) {
            gxin = dh;
            dvn = dh * a;
        } else {
            gxin = dh;
            dvn = (vp[j] - leak >= fl) ? dh : 0.0f;
        }
        gx[j] = gxin * g;
        dv[j] = dvn;
    }
}

typedef void (*fast_back_fn)(const spk_cfg *, int64_t, int64_t, const float *, const float *, const float *,
                             const float *, float *, float *, float *, float *);
#define DEF_BACK(CB, MODE, DETACH)                                                                             \
    static void back_##CB##_##MODE##_##DETACH(const spk_cfg *c, int64_t t, int64_t n, const float *hr,           \
                                              const float *vp, const float *sg, const float *gs, float *gx,     \
                                              float *dv, float *dh, float *kt) {                                \
        fast_back(c, t, n, hr, vp, sg, gs, gx, dv, dh, kt, CB, MODE, DETACH);                                  \
    }
#define DEF_BACK_MODES(CB, DETACH)                                                                             \
    DEF_BACK(CB, 0, DETACH) DEF_BACK(CB, 1, DETACH) DEF_BACK(CB, 2, DETACH) DEF_BACK(CB, 3, DETACH)            \
        DEF_BACK(CB, 6, DETACH) DEF_BACK(CB, 7, DETACH)
#define DEF_BACK_ALL(DETACH)                                                                                   \
    DEF_BACK_MODES(0, DETACH) DEF_BACK_MODES(1, DETACH) DEF_BACK_MODES(2, DETACH) DEF_BACK_MODES(3, DETACH)
DEF_BACK_ALL(0)
DEF_BACK_ALL(1)
#define ROW_BACK(CB, DETACH)                                                                                   \
    {back_##CB##_0_##DETACH, back_##CB##_1_##DETACH, back_##CB##_2_##DETACH, back_##CB##_3_##DETACH, NULL, NULL, \
     back_##CB##_6_##DETACH, back_##CB##_7_##DETACH}
static const fast_back_fn FAST_BACK[2][4][8] = {
    {ROW_BACK(0, 0), ROW_BACK(1, 0), ROW_BACK(2, 0), ROW_BACK(3, 0)},
    {ROW_BACK(0, 1), ROW_BACK(1, 1), ROW_BACK(2, 1), ROW_BACK(3, 1)},
};

/* Ask for a row segment ahead of use: each block touches T short rows of every tensor, too short
 * for the hardware prefetcher to ramp up on. */
static inline void prefetch_row(const float *p, int64_t n, int write) {
    for (int64_t j = 0; j < n; j += 16) {
        if (write)
            __builtin_prefetch(p + j, 1, 1);
        else
            __builtin_prefetch(p + j, 0, 1);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Blocks. Without pooling a thread's range is neurons [i0, i1) and a block is up to B of them.  */
/* With pooling the range is row pairs ("units": P·(H/2) of them, P planes) and a block is whole  */
/* units, contiguous in memory: across planes when H is even, else within one plane (the odd     */
/* last row of each plane is skipped: floor mode drops it).                                      */
typedef struct {
    int64_t off;   /* first neuron of the block within a step */
    int64_t n;     /* neurons in the block */
    int64_t unit;  /* pooling: first row pair, and how many */
    int64_t units;
    int64_t next;  /* range position after this block */
} spk_block;

static int64_t range_size(const spk_cfg *c) {
    return c->pool_w > 0 ? (c->N / (c->pool_h * c->pool_w)) * (c->pool_h / 2) : c->N;
}

static spk_block block_at(const spk_cfg *c, int64_t B, int64_t pos, int64_t end) {
    spk_block blk;
    if (c->pool_w <= 0) {
        blk.off = pos;
        blk.n = end - pos < B ? end - pos : B;
        blk.unit = blk.units = 0;
        blk.next = pos + blk.n;
        return blk;
    }
    const int64_t H = c->pool_h, W = c->pool_w, hp = H / 2;
    int64_t units = B / (2 * W);
    units = units < 1 ? 1 : units;
    if (units > end - pos) units = end - pos;
    if ((H & 1) && units > hp - pos % hp) units = hp - pos % hp;
    blk.unit = pos;
    blk.units = units;
    blk.off = (pos / hp) * H * W + 2 * (pos % hp) * W;
    blk.n = units * 2 * W;
    blk.next = pos + units;
    return blk;
}

/* One row of pooled spikes: y[j] = max of the 0/1 spikes a[2j], a[2j+1], b[2j], b[2j+1] (an OR). */
static void or_pool_row(const float *restrict a, const float *restrict b, int64_t ow, float *restrict y) {
    for (int64_t j = 0; j < ow; j++) {
        const float top = a[2 * j] > a[2 * j + 1] ? a[2 * j] : a[2 * j + 1];
        const float bottom = b[2 * j] > b[2 * j + 1] ? b[2 * j] : b[2 * j + 1];
        y[j] = top > bottom ? top : bottom;
    }
}

/* pooled spikes of one step: the block's spikes s (row pairs) into P rows */
static void pool_block(const spk_cfg *c, const spk_block *blk, const float *s, float *p_step) {
    const int64_t W = c->pool_w, ow = W / 2;
    for (int64_t q = 0; q < blk->units; q++)
        or_pool_row(s + q * 2 * W, s + q * 2 * W + W, ow, p_step + (blk->unit + q) * ow);
}

/* dL/dS of one window row: the gradient of window j to its first spike in row-major order, or to
 * its top-left neuron if it has none (PyTorch's max-pool on 0/1 values). xa, xb: the points x_s
 * (spike where x_s >= 0) of the two rows. */
static void unpool_spike_row(const float *restrict xa, const float *restrict xb, const float *restrict gp,
                             int64_t ow, float *restrict ga, float *restrict gb) {
    for (int64_t j = 0; j < ow; j++) {
        /* spikes s0..s3 in row-major order; window position q gets g iff s_q exceeds every spike
         * before it (the first spike), or for q = 0 iff no later spike exceeds s0 (also: no spike) */
        const float s0 = xa[2 * j] >= 0.0f ? 1.0f : 0.0f, s1 = xa[2 * j + 1] >= 0.0f ? 1.0f : 0.0f;
        const float s2 = xb[2 * j] >= 0.0f ? 1.0f : 0.0f, s3 = xb[2 * j + 1] >= 0.0f ? 1.0f : 0.0f;
        const float m01 = s0 > s1 ? s0 : s1, m012 = m01 > s2 ? m01 : s2;
        const float m23 = s2 > s3 ? s2 : s3, m123 = s1 > m23 ? s1 : m23;
        const float g = gp[j];
        ga[2 * j] = m123 <= s0 ? g : 0.0f;
        ga[2 * j + 1] = s0 < s1 ? g : 0.0f;
        gb[2 * j] = m01 < s2 ? g : 0.0f;
        gb[2 * j + 1] = m012 < s3 ? g : 0.0f;
    }
}

/* dL/dS of one step for the block (into gs, n floats) from dL/dP and the points x_s; 0 in a
 * column floor mode drops. */
static void unpool_block(const spk_cfg *c, const spk_block *blk, const float *xs, const float *gp_step, float *gs) {
    const int64_t W = c->pool_w, ow = W / 2;
    for (int64_t q = 0; q < blk->units; q++) {
        const float *xa = xs + q * 2 * W;
        float *ga = gs + q * 2 * W;
        unpool_spike_row(xa, xa + W, gp_step + (blk->unit + q) * ow, ow, ga, ga + W);
        if (W & 1) ga[W - 1] = ga[2 * W - 1] = 0.0f;
    }
}

/* dL/dX = 0 for the odd last row of every plane in the block (never simulated: floor mode drops it). */
static void zero_dropped_rows(const spk_cfg *c, const spk_block *blk, float *grad_x) {
    const int64_t H = c->pool_h, W = c->pool_w, hp = H / 2;
    if (!(H & 1) || (blk->unit + blk->units) % hp != 0) return;
    const int64_t row = ((blk->unit + blk->units) / hp - 1) * H * W + (H - 1) * W;
    const int64_t steps = c->accumulate_grad ? 1 : c->T;
    for (int64_t t = 0; t < steps; t++) memset(grad_x + t * c->N + row, 0, sizeof(float) * (size_t)W);
}

static void *fast_forward_range(void *arg) {
    spk_task *task = (spk_task *)arg;
    const spk_cfg *c = task->c;
    const int64_t T = c->T, N = c->N, B = block_size(c), xst = c->x_stride_t;
    const int pooled = c->pool_w > 0;
    const int64_t pn_step = pooled ? range_size(c) * (c->pool_w / 2) : 0; /* pooled outputs per step */
    const fast_step_fn step = FAST_STEP[0][c->charge][fast_mode(c)];
    /* pooled blocks may exceed B by up to one row pair */
    const int64_t cap = pooled ? B + 2 * c->pool_w : B;
    float *v = (float *)malloc(sizeof(float) * (size_t)cap * (pooled ? 2 : 1));
    if (!v) {
        task->failed = 1;
        return NULL;
    }
    float *sbuf = v + cap;
    for (int64_t pos = task->i0; pos < task->i1;) {
        const spk_block blk = block_at(c, B, pos, task->i1);
        const int64_t n = blk.n, i0 = blk.off;
        for (int64_t j = 0; j < n; j++) v[j] = c->v_init;
        for (int64_t t = 0; t < T; t++) {
            /* the next row of this block, or the first row of the next block */
            if (t + 1 < T) {
                prefetch_row(task->x + (t + 1) * xst + i0, n, 0);
                if (!pooled) prefetch_row(task->spikes + (t + 1) * N + i0, n, 1);
            } else if (blk.next < task->i1) {
                const spk_block nb = block_at(c, B, blk.next, task->i1);
                prefetch_row(task->x + nb.off, nb.n, 0);
                if (!pooled) prefetch_row(task->spikes + nb.off, nb.n, 1);
            }
            float *s = pooled ? sbuf : task->spikes + t * N + i0;
            step(c, t, n, task->x + t * xst + i0, v, s, NULL, NULL, NULL);
            if (pooled) pool_block(c, &blk, sbuf, task->spikes + t * pn_step);
        }
        pos = blk.next;
    }
    free(v);
    return NULL;
}

static void *fast_backward_range(void *arg) {
    spk_task *task = (spk_task *)arg;
    const spk_cfg *c = task->c;
    const int64_t T = c->T, N = c->N, B = block_size(c), xst = c->x_stride_t;
    const int pooled = c->pool_w > 0;
    const int64_t pn_step = pooled ? range_size(c) * (c->pool_w / 2) : 0;
    const int64_t cap = pooled ? B + 2 * c->pool_w : B; /* largest block */
    const int acc = c->accumulate_grad; /* dL/dX of a repeated X: the sum over t, one row */
    const int mode = fast_mode(c), cb = charge_back_kind(c);
    const fast_step_fn step = FAST_STEP[1][c->charge][mode];
    const fast_back_fn back = FAST_BACK[c->detach_reset ? 1 : 0][cb][mode];
    /* per block: H, V[t−1] and g(x_s) for every t, then per-step scratch (+ pooling's) */
    float *buf = (float *)malloc(sizeof(float) * (size_t)cap * (3 * (size_t)T + 7 + (pooled ? 1 : 0)));
    if (!buf) {
        task->failed = 1;
        return NULL;
    }
    float *Hb = buf, *Vb = Hb + T * cap, *Sg = Vb + T * cap, *v = Sg + T * cap, *s = v + cap, *dv = s + cap,
          *dh = dv + cap, *tmp = dh + cap, *gxt = tmp + cap, *gacc = gxt + cap, *gsb = gacc + cap;
    const int learn_k = task->dk != NULL && c->klif, learn_beta = task->dbeta != NULL && cb <= 1,
              learn_gain = task->dgain != NULL && c->has_gain;
    double dk = 0.0, dbeta = 0.0;
    for (int64_t pos = task->i0; pos < task->i1;) {
        const spk_block blk = block_at(c, B, pos, task->i1);
        const int64_t n = blk.n, i0 = blk.off;
        for (int64_t j = 0; j < n; j++) v[j] = c->v_init;
        for (int64_t t = 0; t < T; t++) {
            if (t + 1 < T) {
                prefetch_row(task->x + (t + 1) * xst + i0, n, 0);
            } else if (!pooled) {
                prefetch_row(task->grad_s + t * N + i0, n, 0);
                if (!acc) prefetch_row(task->grad_x + t * N + i0, n, 1);
            }
            step(c, t, n, task->x + t * xst + i0, v, s, Hb + t * cap, Vb + t * cap, Sg + t * cap);
        }
        for (int64_t j = 0; j < n; j++) dv[j] = 0.0f;
        for (int64_t t = T - 1; t >= 0; t--) {
            const float *xr = task->x + t * xst + i0;
            if (t > 0) {
                if (!pooled) prefetch_row(task->grad_s + (t - 1) * N + i0, n, 0);
                if (!acc) prefetch_row(task->grad_x + (t - 1) * N + i0, n, 1);
            } else if (blk.next < task->i1) {
                const spk_block nb = block_at(c, B, blk.next, task->i1);
                prefetch_row(task->x + nb.off, nb.n, 0);
            }
            const float *gs = task->grad_s + t * N + i0;
            if (pooled) { /* dL/dS from dL/dP, before the surrogate overwrites the points x_s */
                unpool_block(c, &blk, Sg + t * cap, task->grad_s + t * pn_step, gsb);
                gs = gsb;
            }
            /* the surrogate's value here, while the prefetches of the next rows are in flight */
            surrogate_grad(c, Sg + t * cap, n);
            float *gx = acc ? gxt : task->grad_x + t * N + i0;
            back(c, t, n, Hb + t * cap, Vb + t * cap, Sg + t * cap, gs, gx, dv, dh, tmp);
            if (acc) {
                if (t == T - 1)
                    for (int64_t j = 0; j < n; j++) gacc[j] = gxt[j];
                else
                    for (int64_t j = 0; j < n; j++) gacc[j] += gxt[j];
            }
            if (learn_k) dk += block_sum(tmp, n);
            if (learn_beta) {
                const float *restrict vp = Vb + t * cap;
                const float vr = c->v_reset, g = c->has_gain ? c->gain[t] : 1.0f;
                if (cb == 0)
                    for (int64_t j = 0; j < n; j++) tmp[j] = dh[j] * (g * xr[j] - (vp[j] - vr));
                else
                    for (int64_t j = 0; j < n; j++) tmp[j] = -dh[j] * (vp[j] - vr);
                dbeta += block_sum(tmp, n);
            }
            if (learn_gain) {
                const float scale = cb == 0 ? c->beta : 1.0f; /* dX' = dH·β for the LIF charge */
                if (cb == 0)
                    for (int64_t j = 0; j < n; j++) tmp[j] = (dh[j] * scale) * xr[j];
                else
                    for (int64_t j = 0; j < n; j++) tmp[j] = dh[j] * xr[j];
                task->dgain[t] += block_sum(tmp, n);
            }
        }
        if (acc) memcpy(task->grad_x + i0, gacc, sizeof(float) * (size_t)n);
        if (pooled) zero_dropped_rows(c, &blk, task->grad_x);
        pos = blk.next;
    }
    if (learn_k) *task->dk += dk;
    if (learn_beta) *task->dbeta += dbeta;
    free(buf);
    return NULL;
}

/* Split the range (neurons, or row pairs when pooling) over threads and run fn on each; neuron
 * ranges are aligned to 16. */
static int run_parallel(const spk_cfg *c, spk_task *proto, void *(*fn)(void *), double *partials) {
    const int64_t total = range_size(c), align = c->pool_w > 0 ? 1 : 16, T = c->T;
    int nt = spk_thread_count(c->nthreads, c->N * c->T, 16384); /* fewer: threads cost more than they bring */
    if (nt > total) nt = total < 1 ? 1 : (int)total;
    spk_task tasks[SPK_MAX_THREADS];
    for (int i = 0; i < nt; i++) {
        tasks[i] = *proto;
        spk_range(total, i, nt, align, &tasks[i].i0, &tasks[i].i1);
        tasks[i].failed = 0;
        if (partials) {
            double *p = partials + (size_t)i * (size_t)(T + 2);
            tasks[i].dk = proto->dk ? p : NULL;
            tasks[i].dbeta = proto->dbeta ? p + 1 : NULL;
            tasks[i].dgain = proto->dgain ? p + 2 : NULL;
        }
    }
    spk_run_tasks(fn, tasks, sizeof tasks[0], nt);
    int failed = 0;
    for (int i = 0; i < nt; i++) failed |= tasks[i].failed;
    if (partials) {
        for (int i = 1; i < nt; i++) {
            double *p0 = partials, *p = partials + (size_t)i * (size_t)(T + 2);
            for (int64_t q = 0; q < T + 2; q++) p0[q] += p[q];
        }
    }
    return failed ? -1 : nt;
}

/* spikes[T·N] (pooled: [T·N/4]) from x[T·N]. Returns the threads used, or −1 if out of memory. */
SPK_API int spk_forward(const spk_cfg *c, const float *x, float *spikes) {
    spk_task proto;
    memset(&proto, 0, sizeof proto);
    proto.c = c;
    proto.x = x;
    proto.spikes = spikes;
    return run_parallel(c, &proto, c->osc_target == OSC_NONE ? fast_forward_range : forward_range, NULL);
}

/* grad_x[T·N] from x and dL/dS; param_grads (double, zeroed by the caller) gets
 * [dL/dk, dL/dβ, dL/dp[0..T−1]] for the flags set. */
SPK_API int spk_backward(const spk_cfg *c, const float *x, const float *grad_s, float *grad_x, int32_t want_k,
                         int32_t want_beta, int32_t want_gain, double *param_grads) {
    spk_task proto;
    memset(&proto, 0, sizeof proto);
    proto.c = c;
    proto.x = x;
    proto.grad_s = grad_s;
    proto.grad_x = grad_x;
    /* non-NULL markers; run_parallel points them into per-thread partial sums */
    static double marker;
    proto.dk = want_k ? &marker : NULL;
    proto.dbeta = want_beta ? &marker : NULL;
    proto.dgain = want_gain ? &marker : NULL;
    int nt = c->nthreads < 1 ? 1 : (c->nthreads > 64 ? 64 : c->nthreads);
    double *partials = (double *)calloc((size_t)nt * (size_t)(c->T + 2), sizeof(double));
    if (!partials) return -1;
    int used = run_parallel(c, &proto, c->osc_target == OSC_NONE ? fast_backward_range : backward_range, partials);
    for (int64_t q = 0; q < c->T + 2; q++) param_grads[q] = partials[q];
    free(partials);
    return used;
}

/* ------------------------------------------------------------------------------------------ */
/* Noisy IF (stateless): S = Θ((X + ξ) − V_th), ξ = raw·scale + offset, raw computed here from  */
/* counters (kernels/philox.py is the reference and documents the scheme):                     */
/*   element j of step t, row r (the whole step, or one sample): word j mod 4 of               */
/*   Philox-4x32-10(counter = (⌊j/4⌋ lo, ⌊j/4⌋ hi, t, 0), key = keys[r] (lo, hi));             */
/*   uniform u = (w >> 8)·2⁻²⁴; Gaussian by Box–Muller from the word pairs (w0, w1), (w2, w3)   */
/*   with Cephes' float32 log / sin / cos polynomials, one IEEE operation at a time in the      */
/*   reference's order (no FMA), so the noise is bit-identical to the PyTorch reference.       */
/* Without keys, ξ = offset. With point, (X + ξ) − V_th is stored for the backward.             */
enum { PHILOX_LANES = 64 };
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

#ifdef SPK_AVX2
/* (high, low) 32-bit words of a·m in each of 8 lanes: the even lanes' products, then the odd
 * lanes' (shifted down), recombined with blends (no cross-lane shuffles). */
static inline void mulhilo_avx2(__m256i a, __m256i m, __m256i *hi, __m256i *lo) {
    const __m256i even = _mm256_mul_epu32(a, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
    *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

/* The 10 rounds on w (PHILOX_LANES counters, word-planar), 16 lanes at a time in registers: two
 * independent 8-lane chains, so one chain's multiplies hide the other's latency. */
static void philox_rounds_avx2(uint32_t *w, uint32_t k0, uint32_t k1) {
    const __m256i m0 = _mm256_set1_epi32((int)PHILOX_M0), m1 = _mm256_set1_epi32((int)PHILOX_M1);
    for (int j = 0; j < PHILOX_LANES; j += 16) {
        __m256i c[2][4];
        for (int h = 0; h < 2; h++)
            for (int q = 0; q < 4; q++) c[h][q] = _mm256_loadu_si256((const __m256i *)(w + q * PHILOX_LANES + j + 8 * h));
        uint32_t a = k0, b = k1;
        for (int round = 0; round < 10; round++) {
            const __m256i ka = _mm256_set1_epi32((int)a), kb = _mm256_set1_epi32((int)b);
            for (int h = 0; h < 2; h++) {
                __m256i hi0, lo0, hi1, lo1;
                mulhilo_avx2(c[h][0], m0, &hi0, &lo0);
                mulhilo_avx2(c[h][2], m1, &hi1, &lo1);
                c[h][0] = _mm256_xor_si256(_mm256_xor_si256(hi1, c[h][1]), ka);
                c[h][2] = _mm256_xor_si256(_mm256_xor_si256(hi0, c[h][3]), kb);
                c[h][1] = lo1;
                c[h][3] = lo0;
            }
            a += PHILOX_W0;
            b += PHILOX_W1;
        }
        for (int h = 0; h < 2; h++)
            for (int q = 0; q < 4; q++) _mm256_storeu_si256((__m256i *)(w + q * PHILOX_LANES + j + 8 * h), c[h][q]);
    }
}
#endif

/* Philox-4x32-10 of the counters (g0 + j, t) for j < PHILOX_LANES, words in w[q·LANES + j]. */
static void philox_lanes(uint64_t key, uint32_t t, uint64_t g0, uint32_t *restrict w) {
    uint32_t *restrict c0 = w, *restrict c1 = w + PHILOX_LANES, *restrict c2 = w + 2 * PHILOX_LANES,
                       *restrict c3 = w + 3 * PHILOX_LANES;
    for (int j = 0; j < PHILOX_LANES; j++) {
        const uint64_t g = g0 + (uint64_t)j;
        c0[j] = (uint32_t)g;
        c1[j] = (uint32_t)(g >> 32);
        c2[j] = t;
        c3[j] = 0u;
    }
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
#ifdef SPK_AVX2
    philox_rounds_avx2(w, k0, k1);
    return;
#endif
    for (int round = 0; round < 10; round++) {
        for (int j = 0; j < PHILOX_LANES; j++) {
            const uint64_t p0 = (uint64_t)PHILOX_M0 * c0[j], p1 = (uint64_t)PHILOX_M1 * c2[j];
            const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1[j] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3[j] ^ k1;
            c1[j] = (uint32_t)p1;
            c3[j] = (uint32_t)p0;
            c0[j] = n0;
            c2[j] = n2;
        }
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
}

/* ln u for u in (0, 1] (Cephes logf; the reference's _log). */
static inline float philox_log(float u) {
    int32_t bits;
    memcpy(&bits, &u, sizeof bits);
    float e = (float)((bits >> 23) - 126);
    const int32_t mbits = (bits & 0x7FFFFF) | 0x3F000000;
    float m;
    memcpy(&m, &mbits, sizeof m);
    const int small = m < 0x1.6a09e6p-1f;
    e = small ? e - 1.0f : e;
    const float f = small ? (m + m) - 1.0f : m - 1.0f;
    const float z = f * f;
    float y = 0x1.204376p-4f;
    y = y * f + -0x1.d7a370p-4f;
    y = y * f + 0x1.de4a34p-4f;
    y = y * f + -0x1.fcba9ep-4f;
    y = y * f + 0x1.23d37ep-3f;
    y = y * f + -0x1.555ca0p-3f;
    y = y * f + 0x1.999d58p-3f;
    y = y * f + -0x1.fffff8p-3f;
    y = y * f + 0x1.555554p-2f;
    y = (y * f) * z;
    y = y + e * -0x1.bd0106p-13f;
    y = y + z * -0.5f;
    return (f + y) + e * 0x1.63p-1f;
}

/* (r cos 2πu₂, r sin 2πu₂), r = √(−2 ln u₁): the reference's _box_muller. */
static inline void philox_box_muller(uint32_t w_radius, uint32_t w_angle, float *out0, float *out1) {
    const float u1 = ((float)(w_radius >> 8) + 1.0f) * 0x1p-24f;
    const float r = sqrtf(philox_log(u1) * -2.0f);
    const int32_t k = (int32_t)(w_angle >> 8), q = (k + (1 << 21)) >> 22;
    const float theta = (float)(k - (q << 22)) * 0x1.921fb6p-22f;
    const float z = theta * theta;
    const float s = ((((z * -0x1.9943f2p-13f) + 0x1.11073cp-7f) * z + -0x1.555546p-3f) * z) * theta + theta;
    float c = ((((z * 0x1.99eb9cp-16f) + -0x1.6c0c34p-10f) * z + 0x1.55554ap-5f) * z) * z;
    c = (c - z * 0.5f) + 1.0f;
    float cs = (q & 1) ? s : c, sn = (q & 1) ? c : s;
    cs = ((q + 1) & 2) ? -cs : cs;
    sn = (q & 2) ? -sn : sn;
    *out0 = r * cs;
    *out1 = r * sn;
}

/* raw[4j + q] for the PHILOX_LANES counters from g0: N(0, 1) or U[0, 1). */
static inline __attribute__((always_inline)) void philox_raw(uint64_t key, uint32_t t, uint64_t g0, int gaussian, uint32_t *restrict w, float *restrict raw) {
    philox_lanes(key, t, g0, w);
    const uint32_t *restrict c0 = w, *restrict c1 = w + PHILOX_LANES, *restrict c2 = w + 2 * PHILOX_LANES,
                             *restrict c3 = w + 3 * PHILOX_LANES;
    if (gaussian) {
        for (int j = 0; j < PHILOX_LANES; j++) {
            float a0, a1, b0, b1;
            philox_box_muller(c0[j], c1[j], &a0, &a1);
            philox_box_muller(c2[j], c3[j], &b0, &b1);
            raw[4 * j] = a0;
            raw[4 * j + 1] = a1;
            raw[4 * j + 2] = b0;
            raw[4 * j + 3] = b1;
        }
    } else {
        for (int j = 0; j < PHILOX_LANES; j++) {
            raw[4 * j] = (float)(c0[j] >> 8) * 0x1p-24f;
            raw[4 * j + 1] = (float)(c1[j] >> 8) * 0x1p-24f;
            raw[4 * j + 2] = (float)(c2[j] >> 8) * 0x1p-24f;
            raw[4 * j + 3] = (float)(c3[j] >> 8) * 0x1p-24f;
        }
    }
}

typedef struct {
    int64_t g0, g1; /* counter groups [g0, g1) of the flat (t, row, group) range */
    int64_t rows, per_row, groups;
    const int64_t *keys;
    const float *x;
    float *point, *spikes;
    float scale, offset, v_th;
    int32_t gaussian;
} noisy_task;

/* S (and the point) for n elements from x, with noise raw (NULL: ξ = offset). */
static inline void noisy_fire(const noisy_task *q, int64_t at, int64_t n, const float *restrict raw) {
    const float scale = q->scale, offset = q->offset, vth = q->v_th;
    const float *restrict x = q->x + at;
    float *restrict s = q->spikes + at, *restrict point = q->point ? q->point + at : NULL;
    float p[4 * PHILOX_LANES];
    for (int64_t i0 = 0; i0 < n; i0 += 4 * PHILOX_LANES) {
        const int64_t m = n - i0 < 4 * PHILOX_LANES ? n - i0 : 4 * PHILOX_LANES;
        if (raw)
            for (int64_t j = 0; j < m; j++) p[j] = (x[i0 + j] + (raw[i0 + j] * scale + offset)) - vth;
        else
            for (int64_t j = 0; j < m; j++) p[j] = (x[i0 + j] + offset) - vth;
        for (int64_t j = 0; j < m; j++) s[i0 + j] = p[j] >= 0.0f ? 1.0f : 0.0f;
        if (point) memcpy(point + i0, p, sizeof(float) * (size_t)m);
    }
}

static void *noisy_forward_range(void *arg) {
    const noisy_task *q = (const noisy_task *)arg;
    uint32_t w[4 * PHILOX_LANES];
    float raw[4 * PHILOX_LANES];
    for (int64_t idx = q->g0; idx < q->g1;) {
        const int64_t line = idx / q->groups, g = idx - line * q->groups; /* line = t·rows + row */
        int64_t n = q->groups - g < PHILOX_LANES ? q->groups - g : PHILOX_LANES;
        n = q->g1 - idx < n ? q->g1 - idx : n;
        const int64_t first = 4 * g, last = 4 * (g + n) < q->per_row ? 4 * (g + n) : q->per_row;
        const int64_t at = line * q->per_row + first;
        if (q->keys) {
            const int64_t t = line / q->rows, row = line - t * q->rows;
            philox_raw((uint64_t)q->keys[row], (uint32_t)t, (uint64_t)g, q->gaussian, w, raw);
        }
        noisy_fire(q, at, last - first, q->keys ? raw : NULL);
        idx += n;
    }
    return NULL;
}

/* spikes[T·rows·per_row] (and point, if not NULL) from x; keys[rows] (NULL: no noise). */
SPK_API int spk_noisy_forward(int64_t T, int64_t rows, int64_t per_row, const int64_t *keys, const float *x,
                              float *point, float *spikes, float scale, float offset, float v_th,
                              int32_t gaussian, int32_t nthreads) {
    const int64_t groups = (per_row + 3) / 4, total = T * rows * groups;
    const int nt = spk_thread_count(nthreads, 4 * total, 65536);
    noisy_task tasks[SPK_MAX_THREADS];
    for (int i = 0; i < nt; i++) {
        noisy_task q = {0, 0, rows, per_row, groups, keys, x, point, spikes, scale, offset, v_th, gaussian};
        spk_range(total, i, nt, 16, &q.g0, &q.g1);
        tasks[i] = q;
    }
    spk_run_tasks(noisy_forward_range, tasks, sizeof tasks[0], nt);
    return nt;
}

typedef struct {
    const spk_cfg *c; /* surrogate fields only */
    int64_t n;
    const float *src;
    const float *grad_s;
    float *grad_x;
    float offset, v_th;
    int32_t from_input;
} noisy_bwd_task;

static void *noisy_backward_range(void *arg) {
    noisy_bwd_task *q = (noisy_bwd_task *)arg;
    enum { CHUNK = 512 };
    float buf[CHUNK];
    for (int64_t i0 = 0; i0 < q->n; i0 += CHUNK) {
        const int64_t m = (q->n - i0) < CHUNK ? (q->n - i0) : CHUNK;
        const float *restrict src = q->src + i0;
        if (q->from_input) /* the expectation point (X + E[ξ]) − V_th */
            for (int64_t j = 0; j < m; j++) buf[j] = (src[j] + q->offset) - q->v_th;
        else
            for (int64_t j = 0; j < m; j++) buf[j] = src[j];
        surrogate_grad(q->c, buf, m);
        const float *restrict gs = q->grad_s + i0;
        float *restrict gx = q->grad_x + i0;
        for (int64_t j = 0; j < m; j++) gx[j] = gs[j] * buf[j];
    }
    return NULL;
}

/* grad_x = dL/dS · g(point); point = src (kept point) or (src + offset) − V_th (src = X). */
SPK_API int spk_noisy_backward(const spk_cfg *c, int64_t n, const float *src, const float *grad_s,
                               float *grad_x, float offset, float v_th, int32_t from_input) {
    const int nt = spk_thread_count(c->nthreads, n, 65536);
    noisy_bwd_task tasks[SPK_MAX_THREADS];
    for (int i = 0; i < nt; i++) {
        int64_t a, b;
        spk_range(n, i, nt, 16, &a, &b);
        noisy_bwd_task q = {c, b - a, src + a, grad_s + a, grad_x + a, offset, v_th, from_input};
        tasks[i] = q;
    }
    spk_run_tasks(noisy_backward_range, tasks, sizeof tasks[0], nt);
    return nt;
}

/* ------------------------------------------------------------------------------------------ */
/* Noisy IF fused with the 2×2 max-pool after it (stride 2, floor mode) over planes [H, W]: the  */
/* points (X + ξ) − V_th of a block of whole row pairs are computed in cache, with exactly the   */
/* noise spk_noisy_forward draws (same counters, same float operations), pooled (an OR of the    */
/* spikes) and only the pooled spikes are written. For the backward, each window keeps the       */
/* position (0..3, row-major) of the neuron that takes its gradient — its first spike, or its    */
/* top-left neuron if it has none: PyTorch's max-pool rule on 0/1 values (pool.c) — and that     */
/* neuron's surrogate point (the noisy point, or (X + E[ξ]) − V_th for the expectation           */
/* gradient). The stateless neuron's dL/dX is then dL/dP·g(point) at that neuron and 0 at the    */
/* other three (and in the row / column floor mode drops), as through PyTorch's pool.            */
/* Units are row pairs, (t, plane, pair) in row-major order: P = T·planes·(H/2) of them. With    */
/* AVX2 the windows go 8 at a time (even/odd columns deinterleaved, the first spike chosen by     */
/* blends), in both directions; the portable loops do the same one window at a time.             */

/* window position of the first spike in row-major order for the 4 spike bits of a window
 * (bit q: position q), 0 (the top-left neuron) for a window without spikes */
static const uint8_t FIRST_SPIKE[16] = {0, 0, 1, 0, 2, 0, 1, 0, 3, 0, 1, 0, 2, 0, 1, 0};

typedef struct {
    int64_t u0, u1; /* units [u0, u1) */
    int64_t planes, rows, per_row, H, W; /* planes per step; keys rows of per_row elements each */
    const int64_t *keys;
    const float *x;
    float *pooled, *sel_point;
    uint8_t *arg;
    float scale, offset, v_th, grad_offset;
    int32_t gaussian, from_input, failed;
} noisy_pool_task;

#ifdef SPK_AVX2
/* The evens and the odds of 16 floats at p, each in order. */
static inline void deinterleave16(const float *p, __m256 *even, __m256 *odd) {
    const __m256 lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}
#endif

/* One row pair's ow windows. pa: the points of the top row (the bottom row W after), readable
 * 32 floats beyond the pair; ea: the expectation points (X + E[ξ]) − V_th likewise, or NULL (the
 * gradient's point is the noisy one). Writes y, the pooled spikes, and with a (not NULL) each
 * window's gradient position and its neuron's gradient point sp. scratch: 9·⌈ow/8⌉·8 bytes. */
static void pool_windows(int64_t W, const float *restrict pa, const float *restrict ea, int64_t ow,
                         float *restrict y, uint8_t *restrict a, float *restrict sp, float *restrict scratch) {
    int64_t j = 0;
#ifdef SPK_AVX2
    /* whole groups of 8 windows into scratch (the last group reads past the row: ignored), then
     * the ow results out */
    const int64_t ow8 = (ow + 7) / 8 * 8;
    float *restrict ty = scratch, *restrict tsp = scratch + ow8;
    uint8_t *restrict ta = (uint8_t *)(scratch + 2 * ow8);
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
    for (; j < ow; j += 8) {
        __m256 p0, p1, p2, p3;
        deinterleave16(pa + 2 * j, &p0, &p1);
        deinterleave16(pa + W + 2 * j, &p2, &p3);
        const __m256 s0 = _mm256_cmp_ps(p0, zero, _CMP_GE_OQ), s1 = _mm256_cmp_ps(p1, zero, _CMP_GE_OQ),
                     s2 = _mm256_cmp_ps(p2, zero, _CMP_GE_OQ), s3 = _mm256_cmp_ps(p3, zero, _CMP_GE_OQ);
        _mm256_storeu_ps(ty + j, _mm256_and_ps(_mm256_or_ps(_mm256_or_ps(s0, s1), _mm256_or_ps(s2, s3)), one));
        if (!a) continue;
        if (ea) {
            deinterleave16(ea + 2 * j, &p0, &p1);
            deinterleave16(ea + W + 2 * j, &p2, &p3);
        }
        /* the first spike wins: blend from the last position to the first; none: position 0 */
        __m256 sel = _mm256_blendv_ps(p0, p3, s3);
        sel = _mm256_blendv_ps(sel, p2, s2);
        sel = _mm256_blendv_ps(sel, p1, s1);
        sel = _mm256_blendv_ps(sel, p0, s0);
        _mm256_storeu_ps(tsp + j, sel);
        __m256 at = _mm256_and_ps(s3, _mm256_set1_ps(3.0f));
        at = _mm256_blendv_ps(at, _mm256_set1_ps(2.0f), s2);
        at = _mm256_blendv_ps(at, one, s1);
        at = _mm256_blendv_ps(at, zero, s0);
        const __m256i ai = _mm256_cvttps_epi32(at);
        const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(ai), _mm256_extracti128_si256(ai, 1));
        _mm_storel_epi64((__m128i *)(ta + j), _mm_packus_epi16(w16, w16));
    }
    memcpy(y, ty, sizeof(float) * (size_t)ow);
    if (a) {
        memcpy(sp, tsp, sizeof(float) * (size_t)ow);
        memcpy(a, ta, (size_t)ow);
    }
#else
    (void)scratch;
#endif
    const float *restrict pb = pa + W;
    for (; j < ow; j++) {
        const int m = (pa[2 * j] >= 0.0f) | (pa[2 * j + 1] >= 0.0f) << 1 | (pb[2 * j] >= 0.0f) << 2 |
                      (pb[2 * j + 1] >= 0.0f) << 3;
        y[j] = m ? 1.0f : 0.0f;
        if (!a) continue;
        const int at = FIRST_SPIKE[m];
        const int64_t e = (at >> 1) * W + 2 * j + (at & 1); /* its element in the row pair */
        a[j] = (uint8_t)at;
        sp[j] = ea ? ea[e] : pa[e];
    }
}

static void *noisy_pool_forward_range(void *arg_) {
    noisy_pool_task *q = (noisy_pool_task *)arg_;
    const int64_t H = q->H, W = q->W, hp = H / 2, ow = W / 2, HW = H * W;
    const int64_t per_step = q->planes * hp, planes_per_row = q->per_row / HW;
    /* a block: whole row pairs of one step and one key row (and one plane when H is odd) */
    int64_t cap_units = 2048 / (2 * W);
    cap_units = cap_units < 1 ? 1 : cap_units;
    const int64_t cap = cap_units * 2 * W;
    /* the points, the expectation points (each with 32 floats of slack), the raw noise of whole
     * 64-counter batches covering the block (+ 3 ahead), pool_windows' scratch */
    const int64_t pad = cap + 32, ow8 = (ow + 7) / 8 * 8;
    float *buf = (float *)calloc((size_t)(3 * pad + 8 * PHILOX_LANES + 3 * ow8), sizeof(float));
    if (!buf) {
        q->failed = 1;
        return NULL;
    }
    float *p = buf, *ep = q->arg && q->from_input ? buf + pad : NULL, *rawbuf = buf + 2 * pad,
          *scratch = rawbuf + pad + 8 * PHILOX_LANES;
    uint32_t w[4 * PHILOX_LANES];
    const float scale = q->scale, offset = q->offset, vth = q->v_th, go = q->grad_offset;
    for (int64_t u = q->u0; u < q->u1;) {
        const int64_t t = u / per_step, rem = u - t * per_step, plane = rem / hp, pair = rem - plane * hp;
        const int64_t row = plane / planes_per_row;
        /* units left in this key row (and plane, for odd H) */
        int64_t units = (H & 1) ? hp - pair : (row + 1) * planes_per_row * hp - rem;
        units = units < cap_units ? units : cap_units;
        units = units < q->u1 - u ? units : q->u1 - u;
        const int64_t e0 = plane * HW + 2 * pair * W, n = units * 2 * W; /* elements within the step */
        const float *restrict x = q->x + t * q->planes * HW + e0;
        if (q->keys) {
            const int64_t j0 = e0 - row * q->per_row, g_start = j0 / 4, g_end = (j0 + n + 3) / 4;
            const float *raw = rawbuf + (j0 - 4 * g_start);
            for (int64_t g = g_start; g < g_end; g += PHILOX_LANES)
                philox_raw((uint64_t)q->keys[row], (uint32_t)t, (uint64_t)g, q->gaussian, w, rawbuf + 4 * (g - g_start));
            for (int64_t j = 0; j < n; j++) p[j] = (x[j] + (raw[j] * scale + offset)) - vth;
        } else {
            for (int64_t j = 0; j < n; j++) p[j] = (x[j] + offset) - vth;
        }
        if (ep) /* the expectation gradient's points (X + E[ξ]) − V_th */
            for (int64_t j = 0; j < n; j++) ep[j] = (x[j] + go) - vth;
        for (int64_t k = 0; k < units; k++) {
            const int64_t out = (u + k) * ow;
            pool_windows(W, p + k * 2 * W, ep ? ep + k * 2 * W : NULL, ow, q->pooled + out,
                         q->arg ? q->arg + out : NULL, q->arg ? q->sel_point + out : NULL, scratch);
        }
        u += units;
    }
    free(buf);
    return NULL;
}

/* pooled[T·planes·(H/2)·(W/2)] from x[T·planes·H·W] (planes per step; keys[rows] over rows of
 * per_row elements, NULL: no noise, ξ = offset); with arg (not NULL) also arg and sel_point, one
 * per output, for spk_noisy_pool_backward. Returns the threads used, or −1 if out of memory. */
SPK_API int spk_noisy_pool_forward(int64_t T, int64_t planes, int64_t H, int64_t W, int64_t rows,
                                   const int64_t *keys, const float *x, float *pooled, uint8_t *arg,
                                   float *sel_point, float scale, float offset, float v_th, float grad_offset,
                                   int32_t gaussian, int32_t from_input, int32_t nthreads) {
    const int64_t total = T * planes * (H / 2);
    int nt = spk_thread_count(nthreads, T * planes * H * W, 65536);
    if (nt > total) nt = total < 1 ? 1 : (int)total;
    noisy_pool_task tasks[SPK_MAX_THREADS];
    for (int i = 0; i < nt; i++) {
        noisy_pool_task q = {0, 0, planes, rows, planes * H * W / rows, H, W, keys, x, pooled, sel_point, arg,
                             scale, offset, v_th, grad_offset, gaussian, from_input, 0};
        spk_range(total, i, nt, 1, &q.u0, &q.u1);
        tasks[i] = q;
    }
    spk_run_tasks(noisy_pool_forward_range, tasks, sizeof tasks[0], nt);
    int failed = 0;
    for (int i = 0; i < nt; i++) failed |= tasks[i].failed;
    return failed ? -1 : nt;
}

typedef struct {
    const spk_cfg *c; /* surrogate fields only */
    int64_t u0, u1, H, W;
    const uint8_t *arg;
    const float *sel_point, *grad_p;
    float *grad_x;
    int32_t failed;
} noisy_pool_bwd_task;

static void *noisy_pool_backward_range(void *arg_) {
    noisy_pool_bwd_task *q = (noisy_pool_bwd_task *)arg_;
    const int64_t H = q->H, W = q->W, hp = H / 2, ow = W / 2;
    int64_t chunk_units = 1024 / ow;
    chunk_units = chunk_units < 1 ? 1 : chunk_units;
    float *g = (float *)malloc(sizeof(float) * (size_t)(chunk_units * ow));
    if (!g) {
        q->failed = 1;
        return NULL;
    }
    for (int64_t u = q->u0; u < q->u1; u += chunk_units) {
        const int64_t units = q->u1 - u < chunk_units ? q->u1 - u : chunk_units, m = units * ow;
        /* dL/dP·g(point) of each window, the surrogate evaluated over the chunk at once */
        memcpy(g, q->sel_point + u * ow, sizeof(float) * (size_t)m);
        surrogate_grad(q->c, g, m);
        const float *restrict gp = q->grad_p + u * ow;
        for (int64_t j = 0; j < m; j++) g[j] = gp[j] * g[j];
        for (int64_t k = 0; k < units; k++) {
            const int64_t plane = (u + k) / hp, pair = (u + k) - plane * hp; /* plane over all steps */
            float *restrict ga = q->grad_x + plane * H * W + 2 * pair * W, *restrict gb = ga + W;
            const uint8_t *restrict a = q->arg + (u + k) * ow;
            const float *restrict gv = g + k * ow;
            int64_t j = 0;
#ifdef SPK_AVX2
            for (; j + 8 <= ow; j += 8) { /* 8 windows: v at the recorded position, +0 elsewhere */
                const __m256i at = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(a + j)));
                const __m256 v = _mm256_loadu_ps(gv + j);
                __m256 e[4];
                for (int r = 0; r < 4; r++)
                    e[r] = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpeq_epi32(at, _mm256_set1_epi32(r))));
                for (int r = 0; r < 2; r++) { /* row r: positions 2r (even columns), 2r + 1 (odd) */
                    const __m256 lo = _mm256_unpacklo_ps(e[2 * r], e[2 * r + 1]),
                                 hi = _mm256_unpackhi_ps(e[2 * r], e[2 * r + 1]);
                    float *row = (r ? gb : ga) + 2 * j;
                    _mm256_storeu_ps(row, _mm256_permute2f128_ps(lo, hi, 0x20));
                    _mm256_storeu_ps(row + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
                }
            }
#endif
            for (; j < ow; j++) {
                const int at = a[j];
                const float v = gv[j];
                ga[2 * j] = at == 0 ? v : 0.0f;
                ga[2 * j + 1] = at == 1 ? v : 0.0f;
                gb[2 * j] = at == 2 ? v : 0.0f;
                gb[2 * j + 1] = at == 3 ? v : 0.0f;
            }
            if (W & 1) ga[W - 1] = gb[W - 1] = 0.0f;
            if ((H & 1) && pair == hp - 1) memset(gb + W, 0, sizeof(float) * (size_t)W);
        }
    }
    free(g);
    return NULL;
}

/* grad_x[T·planes·H·W] from dL/dP (grad_p, one per output) and the forward's arg and sel_point:
 * dL/dP·g(sel_point) at the window's recorded neuron, 0 elsewhere. */
SPK_API int spk_noisy_pool_backward(const spk_cfg *c, int64_t units, int64_t H, int64_t W, const uint8_t *arg,
                                    const float *sel_point, const float *grad_p, float *grad_x) {
    int nt = spk_thread_count(c->nthreads, units * 2 * W, 65536);
    if (nt > units) nt = units < 1 ? 1 : (int)units;
    noisy_pool_bwd_task tasks[SPK_MAX_THREADS];
    for (int i = 0; i < nt; i++) {
        noisy_pool_bwd_task q = {c, 0, 0, H, W, arg, sel_point, grad_p, grad_x, 0};
        spk_range(units, i, nt, 1, &q.u0, &q.u1);
        tasks[i] = q;
    }
    spk_run_tasks(noisy_pool_backward_range, tasks, sizeof tasks[0], nt);
    int failed = 0;
    for (int i = 0; i < nt; i++) failed |= tasks[i].failed;
    return failed ? -1 : nt;
}

/* ABI version: bump when spk_cfg or a signature changes (kernels/cpu.py checks it). */
SPK_API int spk_abi_version(void) { return 6; }
