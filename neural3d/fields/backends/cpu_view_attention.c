/* GNT's view attention after the folded projections, for float32 CPU rows: per sample, the attention MLP's second
 * layer, the masked softmax over source views (per channel) and the weighted sum of the values, in one pass.
 *
 * Built on first use by neural3d/fields/backends/cpu_view_attention.py (through c_build.py), called through ctypes.
 * For sample m with views v = 0..V-1 (row r = m V + v of y, row stride ldy):
 *   a_v    = relu(y[r, C + h] - q[m, h])                         h < H   (the attention MLP's hidden)
 *   l_v[c] = b2[c] + sum_h a_v[h] w2t[h, c]                      c < C   (its output layer: the logits)
 *   out[m, c] = sum_v softmax_v(l_v[c]) y[r, c]   over the valid views (valid[r] != 0),
 * which is the official masked softmax (invalid logits set to -1e9): their exp(-1e9 - max) is exactly 0 in float32
 * and float64 alike. A sample that no view sees gets the official result of equal -1e9 logits: the plain mean of
 * all V values. exp: Cephes' single-precision expf (range reduction by ln 2 in two parts, degree-6 polynomial,
 * about 1 ulp), branch-free so the channel loops are vectorised; arguments below -87.33 count as -87.33 (weights
 * of 1.2e-38 against the maximum's 1, instead of smaller ones). OpenMP over samples. Flags: -ffp-contract=off
 * (the same numbers from every clone below), -fno-trapping-math (lets GCC vectorise the selects).
 */
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define N3D_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define N3D_CLONES
#endif

/* exp(x) for -87.33 <= x <= 0 (Cephes expf.c). */
static inline float exp_nonpositive(float x) {
    const int32_t n = (int32_t)(x * 1.44269504088896341f - 0.5f); /* round(x / ln 2), x <= 0 */
    const float fn = (float)n;
    const float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
    const float p =
        ((((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r + 4.1665795894e-2f) * r +
           1.6666665459e-1f) *
              r +
          5.0000001201e-1f) *
             r * r +
         r) +
        1.0f;
    union {
        int32_t i;
        float f;
    } scale = {.i = (n + 127) << 23}; /* 2^n, n >= -126 */
    return p * scale.f;
}

/* One sample. Inlined into a copy for C = 64, H = 8 (GNT's width; constant trip counts, unrolled) and a generic one.
 * logits: scratch of (V + 2) C floats. */
static inline __attribute__((always_inline)) void attend_sample(const float *restrict y, int64_t ldy,
                                                                const float *restrict q, const float *restrict w2t,
                                                                const float *restrict b2, const uint8_t *valid,
                                                                int64_t V, int64_t C, int64_t H,
                                                                float *restrict logits, float *restrict out) {
    int64_t n_valid = 0;
    for (int64_t v = 0; v < V; ++v)
        n_valid += valid[v] != 0;
    if (n_valid == 0) { /* all logits -1e9: uniform weights */
        for (int64_t c = 0; c < C; ++c)
            out[c] = 0.0f;
        for (int64_t v = 0; v < V; ++v)
            for (int64_t c = 0; c < C; ++c)
                out[c] += y[v * ldy + c];
        for (int64_t c = 0; c < C; ++c)
            out[c] /= (float)V;
        return;
    }
    float *mx = logits + V * C, *sum = mx + C;
    for (int64_t c = 0; c < C; ++c)
        mx[c] = -3.0e38f;
    for (int64_t v = 0; v < V; ++v) {
        if (!valid[v])
            continue;
        float *l = logits + v * C;
        memcpy(l, b2, (size_t)C * sizeof(float));
        for (int64_t h = 0; h < H; ++h) {
            float a = y[v * ldy + C + h] - q[h];
            a = a > 0.0f ? a : 0.0f;
            const float *w = w2t + h * C;
            for (int64_t c = 0; c < C; ++c)
                l[c] += a * w[c];
        }
        for (int64_t c = 0; c < C; ++c)
            mx[c] = l[c] > mx[c] ? l[c] : mx[c];
    }
    for (int64_t c = 0; c < C; ++c) {
        sum[c] = 0.0f;
        out[c] = 0.0f;
    }
    for (int64_t v = 0; v < V; ++v) {
        if (!valid[v])
            continue;
        float *restrict l = logits + v * C;
        const float *restrict val = y + v * ldy;
        for (int64_t c = 0; c < C; ++c) { /* (a loop of its own: GCC vectorises the select only apart from exp) */
            const float x = l[c] - mx[c];
            l[c] = x > -87.33f ? x : -87.33f;
        }
        for (int64_t c = 0; c < C; ++c) {
            const float e = exp_nonpositive(l[c]);
            sum[c] += e;
            out[c] += e * val[c];
        }
    }
    for (int64_t c = 0; c < C; ++c)
        out[c] /= sum[c];
}

N3D_CLONES
static void attend_samples_64_8(const float *y, int64_t ldy, const float *q, const float *w2t, const float *b2,
                                const uint8_t *valid, int64_t m0, int64_t m1, int64_t V, float *logits, float *out) {
    for (int64_t m = m0; m < m1; ++m)
        attend_sample(y + m * V * ldy, ldy, q + m * 8, w2t, b2, valid + m * V, V, 64, 8, logits, out + m * 64);
}

N3D_CLONES
static void attend_samples_any(const float *y, int64_t ldy, const float *q, const float *w2t, const float *b2,
                               const uint8_t *valid, int64_t m0, int64_t m1, int64_t V, int64_t C, int64_t H,
                               float *logits, float *out) {
    for (int64_t m = m0; m < m1; ++m)
        attend_sample(y + m * V * ldy, ldy, q + m * H, w2t, b2, valid + m * V, V, C, H, logits, out + m * C);
}

/* y [M V, ldy] (values in columns 0..C-1, hidden pre-activations in C..C+H-1), q [M, H], w2t [H, C], b2 [C],
 * valid [M V] bytes, out [M, C]. */
void n3d_gnt_view_attention(const float *y, int64_t ldy, const float *q, const float *w2t, const float *b2,
                            const uint8_t *valid, int64_t M, int64_t V, int64_t C, int64_t H, float *out,
                            int n_threads) {
#pragma omp parallel num_threads(n_threads)
    {
        float scratch[(V + 2) * C]; /* logits of every view, the maxima, the sums */
#pragma omp for schedule(static)
        for (int64_t b = 0; b < M; b += 16) { /* blocks of 16 samples: one dispatch per block */
            const int64_t e = b + 16 < M ? b + 16 : M;
            if (C == 64 && H == 8)
                attend_samples_64_8(y, ldy, q, w2t, b2, valid, b, e, V, scratch, out);
            else
                attend_samples_any(y, ldy, q, w2t, b2, valid, b, e, V, C, H, scratch, out);
        }
    }
}
