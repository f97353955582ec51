/* NeRF's frequency (positional) encoding and tiny-cuda-nn's spherical harmonics of float32 CPU rows, written into a
 * slice of a wider row-major buffer.
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

/* tiny-cuda-nn's real spherical harmonics of unit directions d [n, 3], bands 0..degree-1 (degree 1..4), into columns
 * 0..degree^2-1 of out (row stride out_stride): the products of neural3d.fields.encodings.spherical_harmonics in the
 * same float32 order (constants rounded to float32 as PyTorch rounds a Python scalar), so the values are the same
 * bit for bit (no FMA: -ffp-contract=off). */
N3D_CLONES
static void sh_block(const float *d, int64_t begin, int64_t end, int degree, float *out, int64_t out_stride) {
    const float c0 = 0.28209479177387814f, c1 = 0.48860251190291987f;
    const float c20 = 1.0925484305920792f, c21 = 0.94617469575755997f, c22 = 0.31539156525251999f,
                c23 = 0.54627421529603959f;
    const float c30 = 0.59004358992664352f, c31 = 2.8906114426405538f, c32 = 0.45704579946446572f,
                c33 = 0.3731763325901154f, c34 = 1.4453057213202769f;
    for (int64_t i = begin; i < end; ++i) {
        const float x = d[3 * i], y = d[3 * i + 1], z = d[3 * i + 2];
        float *o = out + i * out_stride;
        o[0] = c0;
        if (degree > 1) {
            o[1] = (-c1) * y;
            o[2] = c1 * z;
            o[3] = (-c1) * x;
        }
        if (degree > 2) {
            const float xx = x * x, yy = y * y, zz = z * z;
            o[4] = (c20 * x) * y;
            o[5] = ((-c20) * y) * z;
            o[6] = c21 * zz - c22;
            o[7] = ((-c20) * x) * z;
            o[8] = c23 * (xx - yy);
            if (degree > 3) {
                o[9] = (c30 * y) * ((-3.0f) * xx + yy);
                o[10] = ((c31 * x) * y) * z;
                o[11] = (c32 * y) * (1.0f - 5.0f * zz);
                o[12] = (c33 * z) * (5.0f * zz - 3.0f);
                o[13] = (c32 * x) * (1.0f - 5.0f * zz);
                o[14] = (c34 * z) * (xx - yy);
                o[15] = (c30 * x) * ((-xx) + 3.0f * yy);
            }
        }
    }
}

void n3d_spherical_harmonics(const float *d, int64_t n, int degree, float *out, int64_t out_stride, int n_threads) {
    const int64_t block = 16 * BLOCK, n_blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t b = 0; b < n_blocks; ++b) {
        const int64_t begin = b * block, end = begin + block < n ? begin + block : n;
        sh_block(d, begin, end, degree, out, out_stride);
    }
}
