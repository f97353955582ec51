/* Fused multiresolution hash encoding for CPU tensors (forward, backward into the table and the positions).
 *
 * Built on first use by neural3d/fields/backends/cpu_hash.py (cc -O3 -fopenmp -shared) and called through ctypes,
 * so it needs a C compiler but no PyTorch headers. Indexing is tiny-cuda-nn's kernel_grid, exactly as the PyTorch
 * reference neural3d/fields/hashgrid.py::hash_encode:
 *   pos = x * scale_l + 0.5 (exact double product, one rounding to float), cell = floor(pos), frac = pos - cell;
 *   dense levels:  row = (x + y res + z res^2)           mod 2^32 mod size
 *   hashed levels: row = (x ^ y 2654435761 ^ z 805459861) mod 2^32 mod size
 *   corner c takes cell_d + ((c >> d) & 1); weight = (w_x * w_y) * w_z.
 * All index arithmetic is uint32, which is tcnn's arithmetic.
 *
 * Layouts: x [n, 3] float32, table [n_rows, F] float32, out / grad_out [n, L * F] float32 (channel l * F + f).
 * Parallelism: the forward pass splits (level, chunk of points) tasks, level-major so that each level's table stays
 * in cache; the table gradient splits the levels (each level owns its rows: no races, no atomics, and the same
 * numbers for any thread count); the position gradient splits the points.
 * Memory: the forward pass and the table gradient compute the corners of GROUP points and prefetch their rows
 * before touching any of them, so the table reads of a group overlap instead of waiting one after another
 * (the sums are still taken point by point, in the same order: the same numbers as without the groups).
 */
#include <math.h>
#include <stdint.h>

typedef struct {
    int64_t n_levels, n_features;
    const float *scales;     /* [L] */
    const int64_t *res;      /* [L] vertices per axis */
    const int64_t *sizes;    /* [L] rows per level */
    const int64_t *offsets;  /* [L] first row of each level */
    const int32_t *hashed;   /* [L] 1: spatial hash, 0: dense */
} Layout;

typedef struct {
    int64_t rows[8];
    float w[8];
    float frac[3];
} Corners;

static inline void corners(const float *x, const Layout *lay, int64_t l, Corners *c) {
    uint32_t cell[3];
    for (int d = 0; d < 3; ++d) {
        float pos = (float)((double)x[d] * (double)lay->scales[l] + 0.5);
        float fl = floorf(pos);
        c->frac[d] = pos - fl;
        cell[d] = (uint32_t)(int64_t)fl;
    }
    const uint32_t size = (uint32_t)lay->sizes[l], res = (uint32_t)lay->res[l];
    const int is_hashed = lay->hashed[l];
    for (int k = 0; k < 8; ++k) {
        uint32_t ix = cell[0] + (k & 1), iy = cell[1] + ((k >> 1) & 1), iz = cell[2] + ((k >> 2) & 1);
        uint32_t idx = is_hashed ? (ix ^ (iy * 2654435761u) ^ (iz * 805459861u)) : (ix + iy * res + iz * (res * res));
        /* idx mod size without a division where it can: hashed sizes are powers of two (a mask), and a dense
         * level's index is below its size except past the far face; the result is idx % size either way. */
        uint32_t row = ((size & (size - 1)) == 0) ? (idx & (size - 1)) : (idx < size ? idx : idx % size);
        c->rows[k] = lay->offsets[l] + (int64_t)row;
        float wx = (k & 1) ? c->frac[0] : 1.0f - c->frac[0];
        float wy = (k & 2) ? c->frac[1] : 1.0f - c->frac[1];
        float wz = (k & 4) ? c->frac[2] : 1.0f - c->frac[2];
        c->w[k] = (wx * wy) * wz;
    }
}

#define CHUNK 2048 /* points per forward task, all levels: the task's output rows (256 KB at 16 levels x 2) stay in
                      * cache while it fills them level by level (level-outer order: 10 % slower on a frame's
                      * coherent render samples, equal on random training points) */

#define GROUP 16 /* points whose corners are computed (and their rows prefetched) before any is gathered */

/* Level l of the points i0 .. i0 + m - 1 (m <= GROUP), one point at a time after prefetching the group's rows. */
static void forward_group(const float *x, const float *table, float *out, int64_t i0, int64_t m, const Layout *lay,
                          int64_t l) {
    const int64_t F = lay->n_features, L = lay->n_levels;
    Corners c[GROUP];
    for (int64_t j = 0; j < m; ++j) {
        corners(x + 3 * (i0 + j), lay, l, &c[j]);
        for (int k = 0; k < 8; ++k) __builtin_prefetch(table + c[j].rows[k] * F);
    }
    for (int64_t j = 0; j < m; ++j) {
        float acc[8];
        for (int64_t f = 0; f < F; ++f) acc[f] = 0.0f;
        for (int k = 0; k < 8; ++k) {
            const float *t = table + c[j].rows[k] * F;
            for (int64_t f = 0; f < F; ++f) acc[f] += c[j].w[k] * t[f];
        }
        float *o = out + (i0 + j) * L * F + l * F;
        for (int64_t f = 0; f < F; ++f) o[f] = acc[f];
    }
}

/* The same group of 16 points with AVX-512 (16 lanes: one point each), the same arithmetic in the same order as
 * corners() + forward_group: the double product pos = x * scale + 0.5 rounded once to float (a multiply then an
 * add, no fused multiply-add, as the scalar code compiled without contraction), floor, uint32 hashing, weights
 * (w_x w_y) w_z, and the 8-tap sums accumulated corner by corner from 0 with a multiply then an add. So the
 * outputs are bit-identical to the scalar path (tests/test_hashgrid.py checks). A group falls back to the scalar
 * path when a lane's cell is outside the int32 range or a dense level's index reaches its size (past the far
 * face), where the scalar path takes the modulo. */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define N3D_HAVE_AVX512 1

__attribute__((target("avx512f"))) static __m512 pos_avx512(const float *x, __m512i lane3, int d, double scale) {
    const __m512 xs = _mm512_i32gather_ps(_mm512_add_epi32(lane3, _mm512_set1_epi32(d)), x, 4);
    const __m512d s = _mm512_set1_pd(scale), half = _mm512_set1_pd(0.5);
    const __m512d lo = _mm512_add_pd(_mm512_mul_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(xs)), s), half);
    const __m512d hi = _mm512_add_pd(
        _mm512_mul_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(xs), 1))), s), half);
    const __m256 lo32 = _mm512_cvtpd_ps(lo), hi32 = _mm512_cvtpd_ps(hi);
    return _mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo32)), _mm256_castps_pd(hi32), 1));
}

typedef struct {
    __m512i rows[8]; /* element offsets (row * F) of the 8 corners, one point per lane */
    __m512 w0[3], w1[3]; /* per axis: 1 - frac, frac */
} Group16;

/* Corners of the 16 points i0 .. i0 + 15 at level l, their rows prefetched; 0 where the scalar path must do them. */
__attribute__((target("avx512f"))) static int prepare_avx512(const float *x, const float *table, int64_t i0,
                                                             const Layout *lay, int64_t l, Group16 *g) {
    const int64_t F = lay->n_features;
    const __m512i lane3 = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(3));
    __m512i t[3][2];
    const __m512 two31 = _mm512_set1_ps(2147483648.0f);
    for (int d = 0; d < 3; ++d) {
        const __m512 pos = pos_avx512(x + 3 * i0, lane3, d, (double)lay->scales[l]);
        const __m512 fl = _mm512_roundscale_ps(pos, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
        if (_mm512_cmp_ps_mask(_mm512_abs_ps(fl), two31, _CMP_NLT_UQ)) return 0; /* out of int32 range, or NaN */
        g->w1[d] = _mm512_sub_ps(pos, fl);
        g->w0[d] = _mm512_sub_ps(_mm512_set1_ps(1.0f), g->w1[d]);
        t[d][0] = _mm512_cvttps_epi32(fl);
        t[d][1] = _mm512_add_epi32(t[d][0], _mm512_set1_epi32(1));
    }
    const uint32_t size = (uint32_t)lay->sizes[l], res = (uint32_t)lay->res[l];
    const int is_hashed = lay->hashed[l], pow2 = (size & (size - 1)) == 0;
    const __m512i my = _mm512_set1_epi32((int)(is_hashed ? 2654435761u : res));
    const __m512i mz = _mm512_set1_epi32((int)(is_hashed ? 805459861u : res * res));
    for (int b = 0; b < 2; ++b) {
        t[1][b] = _mm512_mullo_epi32(t[1][b], my);
        t[2][b] = _mm512_mullo_epi32(t[2][b], mz);
    }
    const __m512i vsize = _mm512_set1_epi32((int)size), vmask = _mm512_set1_epi32((int)(size - 1));
    const __m512i voff = _mm512_set1_epi32((int)lay->offsets[l]), vF = _mm512_set1_epi32((int)F);
    for (int k = 0; k < 8; ++k) {
        const __m512i tx = t[0][k & 1], ty = t[1][(k >> 1) & 1], tz = t[2][(k >> 2) & 1];
        __m512i idx = is_hashed ? _mm512_xor_si512(_mm512_xor_si512(tx, ty), tz)
                                : _mm512_add_epi32(_mm512_add_epi32(tx, ty), tz);
        if (pow2) {
            idx = _mm512_and_si512(idx, vmask);
        } else if (_mm512_cmp_epu32_mask(idx, vsize, _MM_CMPINT_NLT)) {
            return 0; /* a dense index at or past the level's size: the scalar modulo */
        }
        g->rows[k] = _mm512_mullo_epi32(_mm512_add_epi32(idx, voff), vF);
        int32_t r[GROUP];
        _mm512_storeu_si512(r, g->rows[k]);
        for (int j = 0; j < GROUP; ++j) __builtin_prefetch(table + r[j]);
    }
    return 1;
}

/* The 8-tap sums of a prepared group, written to out. */
__attribute__((target("avx512f"))) static void finish_avx512(const float *table, float *out, int64_t i0,
                                                             const Layout *lay, int64_t l, const Group16 *g) {
    const int64_t F = lay->n_features, L = lay->n_levels;
    float acc[8][GROUP];
    for (int64_t f = 0; f < F; ++f) {
        __m512 a = _mm512_setzero_ps();
        for (int k = 0; k < 8; ++k) {
            const __m512 wxy = _mm512_mul_ps((k & 1) ? g->w1[0] : g->w0[0], (k & 2) ? g->w1[1] : g->w0[1]);
            const __m512 w = _mm512_mul_ps(wxy, (k & 4) ? g->w1[2] : g->w0[2]);
            const __m512 v = _mm512_i32gather_ps(_mm512_add_epi32(g->rows[k], _mm512_set1_epi32((int)f)), table, 4);
            a = _mm512_add_ps(a, _mm512_mul_ps(w, v));
        }
        _mm512_storeu_ps(acc[f], a);
    }
    for (int j = 0; j < GROUP; ++j) {
        float *o = out + (i0 + j) * L * F + l * F;
        for (int64_t f = 0; f < F; ++f) o[f] = acc[f][j];
    }
}

/* Level l of the points start .. end - 1, software-pipelined: group g + 1's rows are computed and prefetched
 * before group g is gathered. Groups the vector path cannot do (and the tail) take the scalar path. */
__attribute__((target("avx512f"))) static void forward_range_avx512(const float *x, const float *table, float *out,
                                                                    int64_t start, int64_t end, const Layout *lay,
                                                                    int64_t l) {
    Group16 g[2];
    int ready = 0; /* g[cur] holds a prepared group at i_prev */
    int cur = 0;
    int64_t i_prev = 0;
    for (int64_t i0 = start; i0 < end; i0 += GROUP) {
        const int64_t m = end - i0 < GROUP ? end - i0 : GROUP;
        const int nxt = cur ^ 1;
        const int ok = m == GROUP && prepare_avx512(x, table, i0, lay, l, &g[nxt]);
        if (ready) finish_avx512(table, out, i_prev, lay, l, &g[cur]);
        if (!ok) forward_group(x, table, out, i0, m, lay, l);
        ready = ok, cur = nxt, i_prev = i0;
    }
    if (ready) finish_avx512(table, out, i_prev, lay, l, &g[cur]);
}
#endif

static int use_simd = -1; /* -1: not decided yet; 0: scalar; 1: AVX-512 */

/* Whether the forward pass uses the AVX-512 path (the CPU has it and it was not switched off). */
int n3d_hash_simd(void) {
    if (use_simd < 0) {
#ifdef N3D_HAVE_AVX512
        __builtin_cpu_init();
        use_simd = __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
        use_simd = 0;
#endif
    }
    return use_simd;
}

/* 0: scalar path only (tests compare both paths); 1: AVX-512 where the CPU has it. */
void n3d_hash_set_simd(int enabled) {
    use_simd = -1;
    if (!enabled || !n3d_hash_simd()) use_simd = 0;
}

void n3d_hash_forward(const float *x, const float *table, float *out, int64_t n, const float *scales,
                      const int64_t *res, const int64_t *sizes, const int64_t *offsets, const int32_t *hashed,
                      int64_t n_levels, int64_t F, int n_threads) {
    Layout lay = {n_levels, F, scales, res, sizes, offsets, hashed};
    const int64_t n_chunks = (n + CHUNK - 1) / CHUNK;
    /* int32 gather offsets: the table's element count must fit (8 GiB tables take the scalar path) */
    const int simd = n_levels > 0 && n3d_hash_simd() && (offsets[n_levels - 1] + sizes[n_levels - 1]) * F < 2147483647LL;
#pragma omp parallel for collapse(2) schedule(static) num_threads(n_threads)
    for (int64_t chunk = 0; chunk < n_chunks; ++chunk) {
        for (int64_t l = 0; l < n_levels; ++l) {
            const int64_t end = chunk * CHUNK + CHUNK < n ? chunk * CHUNK + CHUNK : n;
#ifdef N3D_HAVE_AVX512
            if (simd) {
                forward_range_avx512(x, table, out, chunk * CHUNK, end, &lay, l);
                continue;
            }
#endif
            for (int64_t i0 = chunk * CHUNK; i0 < end; i0 += GROUP)
                forward_group(x, table, out, i0, end - i0 < GROUP ? end - i0 : GROUP, &lay, l);
        }
    }
    (void)simd;
}

/* grad_table must be zero on entry (only the rows touched are written). */
void n3d_hash_backward_table(const float *x, const float *grad_out, float *grad_table, int64_t n,
                             const float *scales, const int64_t *res, const int64_t *sizes, const int64_t *offsets,
                             const int32_t *hashed, int64_t n_levels, int64_t F, int n_threads) {
    Layout lay = {n_levels, F, scales, res, sizes, offsets, hashed};
#pragma omp parallel for schedule(dynamic, 1) num_threads(n_threads)
    for (int64_t l = 0; l < n_levels; ++l) {
        Corners c[GROUP];
        for (int64_t i0 = 0; i0 < n; i0 += GROUP) {
            const int64_t m = n - i0 < GROUP ? n - i0 : GROUP;
            for (int64_t j = 0; j < m; ++j) {
                corners(x + 3 * (i0 + j), &lay, l, &c[j]);
                for (int k = 0; k < 8; ++k) __builtin_prefetch(grad_table + c[j].rows[k] * F, 1);
            }
            for (int64_t j = 0; j < m; ++j) {  /* in point order: the same sums as one point at a time */
                const float *g = grad_out + (i0 + j) * n_levels * F + l * F;
                for (int k = 0; k < 8; ++k) {
                    float *t = grad_table + c[j].rows[k] * F;
                    for (int64_t f = 0; f < F; ++f) t[f] += c[j].w[k] * g[f];
                }
            }
        }
    }
}

/* d out / d x: scale_l * sum_c (d w_c / d frac) <table_c, grad_out_l>, summed over levels into grad_x [n, 3]. */
void n3d_hash_backward_x(const float *x, const float *table, const float *grad_out, float *grad_x, int64_t n,
                         const float *scales, const int64_t *res, const int64_t *sizes, const int64_t *offsets,
                         const int32_t *hashed, int64_t n_levels, int64_t F, int n_threads) {
    Layout lay = {n_levels, F, scales, res, sizes, offsets, hashed};
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t i = 0; i < n; ++i) {
        Corners c;
        float gx[3] = {0.0f, 0.0f, 0.0f};
        for (int64_t l = 0; l < n_levels; ++l) {
            corners(x + 3 * i, &lay, l, &c);
            const float *g = grad_out + i * n_levels * F + l * F;
            float gl[3] = {0.0f, 0.0f, 0.0f};
            for (int k = 0; k < 8; ++k) {
                const float *t = table + c.rows[k] * F;
                float dot = 0.0f;
                for (int64_t f = 0; f < F; ++f) dot += t[f] * g[f];
                float w[3], s[3];
                for (int d = 0; d < 3; ++d) {
                    int bit = (k >> d) & 1;
                    w[d] = bit ? c.frac[d] : 1.0f - c.frac[d];
                    s[d] = bit ? 1.0f : -1.0f;
                }
                gl[0] += s[0] * w[1] * w[2] * dot;
                gl[1] += s[1] * w[0] * w[2] * dot;
                gl[2] += s[2] * w[0] * w[1] * dot;
            }
            for (int d = 0; d < 3; ++d) gx[d] += gl[d] * lay.scales[l];
        }
        for (int d = 0; d < 3; ++d) grad_x[3 * i + d] = gx[d];
    }
}
