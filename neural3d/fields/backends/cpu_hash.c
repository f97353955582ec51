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

#define CHUNK 2048 /* points per task: a level's table stays in cache while a task walks its points */

#define GROUP 16 /* points whose corners are computed (and their rows prefetched) before any is gathered */

void n3d_hash_forward(const float *x, const float *table, float *out, int64_t n, const float *scales,
                      const int64_t *res, const int64_t *sizes, const int64_t *offsets, const int32_t *hashed,
                      int64_t n_levels, int64_t F, int n_threads) {
    Layout lay = {n_levels, F, scales, res, sizes, offsets, hashed};
    const int64_t n_chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for collapse(2) schedule(static) num_threads(n_threads)
    for (int64_t l = 0; l < n_levels; ++l) {
        for (int64_t chunk = 0; chunk < n_chunks; ++chunk) {
            const int64_t end = chunk * CHUNK + CHUNK < n ? chunk * CHUNK + CHUNK : n;
            Corners c[GROUP];
            for (int64_t i0 = chunk * CHUNK; i0 < end; i0 += GROUP) {
                const int64_t m = end - i0 < GROUP ? end - i0 : GROUP;
                for (int64_t j = 0; j < m; ++j) {
                    corners(x + 3 * (i0 + j), &lay, l, &c[j]);
                    for (int k = 0; k < 8; ++k) __builtin_prefetch(table + c[j].rows[k] * F);
                }
                for (int64_t j = 0; j < m; ++j) {
                    float acc[8];
                    for (int64_t f = 0; f < F; ++f) acc[f] = 0.0f;
                    for (int k = 0; k < 8; ++k) {
                        const float *t = table + c[j].rows[k] * F;
                        for (int64_t f = 0; f < F; ++f) acc[f] += c[j].w[k] * t[f];
                    }
                    float *o = out + (i0 + j) * n_levels * F + l * F;
                    for (int64_t f = 0; f < F; ++f) o[f] = acc[f];
                }
            }
        }
    }
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
