/*
 * 2×2 max-pooling with stride 2 — PyTorch's MaxPool2d(2): no padding, floor mode — over float32
 * planes [P, H, W] (NCHW with P = N·C), with a hand-written backward.
 *
 * Forward: y[p, i, j] = max of the window x[p, 2i..2i+1, 2j..2j+1] and, when the gradient is
 * needed, the window position of that maximum (0..3 in row-major order) in one byte per output.
 * Ties and NaN go exactly where PyTorch sends them: its CPU and CUDA kernels scan the window in
 * row-major order starting from −inf and take a value when `val > max || isnan(val)`, i.e. the
 * first maximum (or the last NaN). Max-pooling binary spikes is an OR full of ties: a window with
 * several spikes sends its gradient to the first of them, a window without spikes to its top-left
 * element — as PyTorch does (tests/kernels/test_pool.py checks values and gradients).
 *
 * Backward: dL/dx is written once, everywhere — dL/dy at each window's recorded position, 0 at
 * the other three and in the row / column floor mode drops — so the gradient buffer needs no
 * zero-fill pass and no int64 index tensor is kept (PyTorch stores 8 bytes per output, this 1).
 *
 * Threads: over ranges of output rows (parallel.h).
 */
#include "parallel.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif
#include <stdint.h>
#include <string.h>

#define SPK_API __attribute__((visibility("default")))

/* Mirrored by ctypes in kernels/pool.py. */
typedef struct {
    int64_t P, H, W; /* planes and their height, width (H, W >= 2) */
    int32_t nthreads;
} spk_pool_cfg;

typedef struct {
    const spk_pool_cfg *c;
    int64_t r0, r1; /* output rows [r0, r1) of the P·(H/2) rows */
    const float *x;
    float *y;
    uint8_t *arg;
    const uint8_t *carg;
    const float *gy;
    float *gx;
} pool_task;

#if defined(__AVX2__)
/* Lanes [0, n) of eight set (n may exceed 8). */
static inline __m256i lanes(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* Even and odd elements of p[0..2n): (p[0], p[2], ...) and (p[1], p[3], ...); n <= 8 windows. Elements
 * past 2n are not read (masked loads), so a row's last windows never touch memory beyond it. */
static inline void deinterleave(const float *p, int64_t n, __m256 *even, __m256 *odd) {
    __m256 lo, hi;
    if (n == 8) {
        lo = _mm256_loadu_ps(p);
        hi = _mm256_loadu_ps(p + 8);
    } else {
        lo = _mm256_maskload_ps(p, lanes(2 * n));
        hi = _mm256_maskload_ps(p + 8, lanes(2 * n - 8));
    }
    *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}

/* Take v where v > m or v is NaN (PyTorch's rule), recording its position code. */
static inline void take(__m256 v, float code, __m256 *m, __m256 *k) {
    const __m256 c = _mm256_or_ps(_mm256_cmp_ps(v, *m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    *m = _mm256_blendv_ps(*m, v, c);
    *k = _mm256_blendv_ps(*k, _mm256_set1_ps(code), c);
}

/* n <= 8 outputs from rows a and b: y[0..n) and their codes. */
static inline void pool8(const float *a, const float *b, int64_t n, float *y, uint8_t *arg) {
    __m256 a0, a1, b0, b1;
    deinterleave(a, n, &a0, &a1);
    deinterleave(b, n, &b0, &b1);
    __m256 m = a0, k = _mm256_setzero_ps();
    take(a1, 1.0f, &m, &k);
    take(b0, 2.0f, &m, &k);
    take(b1, 3.0f, &m, &k);
    if (n == 8)
        _mm256_storeu_ps(y, m);
    else
        _mm256_maskstore_ps(y, lanes(n), m);
    if (arg) {
        const __m256i k32 = _mm256_cvtps_epi32(k);
        const __m128i k16 = _mm_packs_epi32(_mm256_castsi256_si128(k32), _mm256_extracti128_si256(k32, 1));
        const __m128i k8 = _mm_packus_epi16(k16, k16);
        if (n == 8) {
            _mm_storel_epi64((__m128i *)arg, k8);
        } else {
            uint8_t tmp[16];
            _mm_storeu_si128((__m128i *)tmp, k8);
            memcpy(arg, tmp, (size_t)n);
        }
    }
}

/* dL/dx of n <= 8 windows: 2n elements of rows a and b. */
static inline void unpool8(const float *gy, const uint8_t *arg, int64_t n, float *a, float *b) {
    __m256 g;
    __m128i codes;
    if (n == 8) {
        g = _mm256_loadu_ps(gy);
        codes = _mm_loadl_epi64((const __m128i *)arg);
    } else {
        uint8_t tmp[16] = {0};
        memcpy(tmp, arg, (size_t)n);
        g = _mm256_maskload_ps(gy, lanes(n));
        codes = _mm_loadl_epi64((const __m128i *)tmp);
    }
    const __m256i k = _mm256_cvtepu8_epi32(codes);
    __m256 e[4];
    for (int q = 0; q < 4; q++)
        e[q] = _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_set1_epi32(q))));
    for (int r = 0; r < 2; r++) {
        const __m256 lo = _mm256_unpacklo_ps(e[2 * r], e[2 * r + 1]), hi = _mm256_unpackhi_ps(e[2 * r], e[2 * r + 1]);
        const __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20), second = _mm256_permute2f128_ps(lo, hi, 0x31);
        float *row = r ? b : a;
        if (n == 8) {
            _mm256_storeu_ps(row, first);
            _mm256_storeu_ps(row + 8, second);
        } else {
            _mm256_maskstore_ps(row, lanes(2 * n), first);
            _mm256_maskstore_ps(row + 8, lanes(2 * n - 8), second);
        }
    }
}
#endif

/* One output row: y[j], arg[j] from the input rows a (2i) and b (2i + 1). */
static inline void pool_row(const float *restrict a, const float *restrict b, int64_t ow, float *restrict y,
                            uint8_t *restrict arg) {
    int64_t j = 0;
#if defined(__AVX2__)
    for (; j < ow; j += 8) pool8(a + 2 * j, b + 2 * j, ow - j < 8 ? ow - j : 8, y + j, arg ? arg + j : NULL);
#endif
    for (; j < ow; j++) {
        float m = a[2 * j], v;
        uint8_t k = 0;
        v = a[2 * j + 1];
        if (v > m || v != v) { m = v; k = 1; }
        v = b[2 * j];
        if (v > m || v != v) { m = v; k = 2; }
        v = b[2 * j + 1];
        if (v > m || v != v) { m = v; k = 3; }
        y[j] = m;
        if (arg) arg[j] = k;
    }
}

static void *forward_rows(void *p) {
    const pool_task *t = (const pool_task *)p;
    const int64_t H = t->c->H, W = t->c->W, oh = H / 2, ow = W / 2;
    for (int64_t r = t->r0; r < t->r1; r++) {
        const float *a = t->x + (r / oh) * H * W + 2 * (r % oh) * W;
        pool_row(a, a + W, ow, t->y + r * ow, t->arg ? t->arg + r * ow : NULL);
    }
    return NULL;
}

/* dL/dx for the two input rows of one output row (and the dropped last column, if W is odd). */
static inline void unpool_row(const float *restrict gy, const uint8_t *restrict arg, int64_t ow, int64_t W,
                              float *restrict a, float *restrict b) {
    int64_t j = 0;
#if defined(__AVX2__)
    for (; j < ow; j += 8) unpool8(gy + j, arg + j, ow - j < 8 ? ow - j : 8, a + 2 * j, b + 2 * j);
#endif
    for (; j < ow; j++) {
        const float g = gy[j];
        const uint8_t k = arg[j];
        a[2 * j] = k == 0 ? g : 0.0f;
        a[2 * j + 1] = k == 1 ? g : 0.0f;
        b[2 * j] = k == 2 ? g : 0.0f;
        b[2 * j + 1] = k == 3 ? g : 0.0f;
    }
    if (W & 1) a[W - 1] = b[W - 1] = 0.0f;
}

static void *backward_rows(void *p) {
    const pool_task *t = (const pool_task *)p;
    const int64_t H = t->c->H, W = t->c->W, oh = H / 2, ow = W / 2;
    for (int64_t r = t->r0; r < t->r1; r++) {
        const int64_t i = r % oh;
        float *a = t->gx + (r / oh) * H * W + 2 * i * W;
        unpool_row(t->gy + r * ow, t->carg + r * ow, ow, W, a, a + W);
        if ((H & 1) && i == oh - 1) memset(a + 2 * W, 0, sizeof(float) * (size_t)W); /* dropped row */
    }
    return NULL;
}

/* Split the output rows over threads (at least 16 Ki outputs each) and run fn on each range. */
static int run_rows(const spk_pool_cfg *c, pool_task proto, void *(*fn)(void *)) {
    const int64_t rows = c->P * (c->H / 2);
    const int nt = spk_thread_count(c->nthreads, rows * (c->W / 2), 16384);
    pool_task tasks[SPK_MAX_THREADS];
    for (int i = 0; i < nt; i++) {
        tasks[i] = proto;
        spk_range(rows, i, nt, 1, &tasks[i].r0, &tasks[i].r1);
    }
    spk_run_tasks(fn, tasks, sizeof tasks[0], nt);
    return nt;
}

/* y[P·(H/2)·(W/2)] and, if arg != NULL, the argmax positions. Returns the threads used. */
SPK_API int spk_maxpool2_forward(const spk_pool_cfg *c, const float *x, float *y, uint8_t *arg) {
    return run_rows(c, (pool_task){.c = c, .x = x, .y = y, .arg = arg}, forward_rows);
}

/* gx[P·H·W] (every element written) from gy and the positions the forward recorded. */
SPK_API int spk_maxpool2_backward(const spk_pool_cfg *c, const uint8_t *arg, const float *gy, float *gx) {
    return run_rows(c, (pool_task){.c = c, .carg = arg, .gy = gy, .gx = gx}, backward_rows);
}
