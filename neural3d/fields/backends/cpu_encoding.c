/* NeRF's frequency (positional) encoding of float32 CPU rows, written into a slice of a wider row-major buffer.
 *
 * Built on first use by neural3d/fields/backends/cpu_encoding.py (through c_build.py) and called through ctypes.
 * Row i of out (row stride out_stride) gets the layout of neural3d.fields.encodings.PositionalEncoding:
 *   [x (if include_input), sin(b_0 x), cos(b_0 x), sin(b_1 x), cos(b_1 x), ...]   (blocks of c channels)
 * with b_l x the same float32 product as PyTorch's. sin / cos: Cephes' single-precision sinf / cosf (range
 * reduction by pi/4 in three parts, degree-7 / degree-8 polynomials, about 1 ulp), written without branches so the
 * channel loop is vectorised; arguments beyond |t| = 8192 (where that reduction loses accuracy), inf and NaN take
 * libm's sinf / cosf instead. OpenMP over blocks of rows; each row written by one thread. Flags: -ffp-contract=off
 * (no FMA: the same numbers from every clone below), -fno-trapping-math (lets GCC if-convert and vectorise the
 * selects; no value changes).
 */
#include <math.h>
#include <stdint.h>

#define BLOCK 128 /* rows per OpenMP task (its values stay in the L1 cache) */
#define REDUCE_MAX 8192.0f

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define N3D_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define N3D_CLONES
#endif

/* sin and cos of t, |t| <= REDUCE_MAX (Cephes sinf.c / cosf.c: octant j, t - j pi/4 in three parts). */
static inline void sincos_reduced(float t, float *s, float *c) {
    const float a = fabsf(t);
    int32_t j = (int32_t)(a * 1.27323954473516f); /* 4 / pi */
    j += j & 1;                                   /* even octant: reduce to [-pi/4, pi/4] */
    const float y = (float)j;
    const float r = ((a - y * 0.78515625f) - y * 2.4187564849853515625e-4f) - y * 3.77489497744594108e-8f;
    const float z = r * r;
    const float ps = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * r + r;
    const float pc = ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z -
                     0.5f * z + 1.0f;
    const int32_t q = (j >> 1) & 3; /* quadrant of a */
    const float sin_a = (q & 1) ? pc : ps, cos_a = (q & 1) ? ps : pc;
    const float sign_s = ((q & 2) ? -1.0f : 1.0f) * (t < 0.0f ? -1.0f : 1.0f);
    const float sign_c = ((q + 1) & 2) ? -1.0f : 1.0f;
    *s = sign_s * sin_a;
    *c = sign_c * cos_a;
}

/* sin and cos of t[0..m), any t (|t| > REDUCE_MAX, inf, NaN: libm). */
static inline void sincos_all(const float *t, int64_t m, float *s, float *c) {
    int wide = 0;
    for (int64_t k = 0; k < m; ++k) {
        const int ok = fabsf(t[k]) <= REDUCE_MAX; /* false for inf and NaN */
        wide |= !ok;
        sincos_reduced(ok ? t[k] : 0.0f, s + k, c + k);
    }
    if (wide) /* rare: redo the wide arguments with libm */
        for (int64_t k = 0; k < m; ++k)
            if (!(fabsf(t[k]) <= REDUCE_MAX)) {
                s[k] = sinf(t[k]);
                c[k] = cosf(t[k]);
            }
}

N3D_CLONES
static void encode_block(const float *x, int64_t begin, int64_t end, int64_t c, const float *bands, int64_t n_bands,
                         int include_input, float *out, int64_t out_stride) {
    /* the block's rows are contiguous in x: scale, sine and cosine them as one vector of m values, then place */
    const int64_t m = (end - begin) * c;
    float t[m], s[m], co[m];
    const float *xb = x + begin * c;
    for (int64_t i = begin; i < end; ++i)
        if (include_input)
            for (int64_t k = 0; k < c; ++k) out[i * out_stride + k] = x[i * c + k];
    for (int64_t l = 0; l < n_bands; ++l) {
        const float b = bands[l];
        for (int64_t k = 0; k < m; ++k) t[k] = xb[k] * b;
        sincos_all(t, m, s, co);
        const int64_t col = (include_input ? c : 0) + 2 * l * c;
        for (int64_t i = begin; i < end; ++i) {
            float *row = out + i * out_stride + col;
            const int64_t j = (i - begin) * c;
            for (int64_t k = 0; k < c; ++k) {
                row[k] = s[j + k];
                row[c + k] = co[j + k];
            }
        }
    }
}

void n3d_frequency_encoding(const float *x, int64_t n, int64_t c, const float *bands, int64_t n_bands,
                            int include_input, float *out, int64_t out_stride, int n_threads) {
    const int64_t n_blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t b = 0; b < n_blocks; ++b) {
        const int64_t begin = b * BLOCK, end = begin + BLOCK < n ? begin + BLOCK : n;
        encode_block(x, begin, end, c, bands, n_bands, include_input, out, out_stride);
    }
}
