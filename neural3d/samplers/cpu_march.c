/* Occupancy-grid marching of rays on the CPU (uniform steps), the samples of neural3d/samplers/marching.py bit for bit.
 *
 * Built on first use by neural3d/samplers/cpu_march.py (cc -O3 -ffp-contract=off -fopenmp -shared) and called through
 * ctypes. The torch march lays every ray's candidate blocks out in a padded [rays, blocks] tensor and runs a dozen
 * element-wise passes over it; here each ray walks its own blocks in registers, so a frame of mostly empty rays
 * costs a few milliseconds instead of tens.
 *
 * Same arithmetic, in float32, in the same order as the torch code (no contraction into fused multiply-adds):
 *   step k of a ray:   s_k = s0 + k * step, midpoint m = 0.5 (s_k + s_k+1), kept when lo <= m < hi and the point
 *                      o + m u lies in an occupied cell (OccupancyGrid.occupied: level from frexp of the point's
 *                      extent in the base box, cell = floor((p - box_lo) / (box_hi - box_lo) * R) clamped);
 *   blocks:            B steps from k_a = k_lo + b B, tested at their centre against the grid dilated by one cell
 *                      (empty_space.near_occupied) unless their half-length exceeds half_limit; the per-step test
 *                      decides, so the blocks only skip steps that have no sample.
 * Outputs per sample: ray index, s_k / |d|, s_k+1 / |d| (t units of the ray's direction), sorted by ray then step.
 * Two passes: counts per ray, then the samples written at the offsets the caller computed from the counts.
 */
#include <math.h>
#include <stdint.h>

typedef struct {
    const float *aabbs;       /* [L, 6] boxes, finest first */
    const uint8_t *binaries;  /* [L, R, R, R] occupied cells */
    const uint8_t *dilated;   /* [L, R + 2, R + 2, R + 2] cells with an occupied neighbour, shifted by one */
    int64_t levels, res;
} Grid;

static int occupied(const Grid *g, const float p[3]) {
    const float *base = g->aabbs;
    float extent = 0.0f;
    for (int d = 0; d < 3; ++d) {
        const float centre = (base[d] + base[3 + d]) / 2.0f, half = (base[3 + d] - base[d]) / 2.0f;
        const float e = fabsf(p[d] - centre) / half;
        extent = e > extent ? e : extent;
    }
    /* frexp's exponent, read from the bits (extent >= 0): a biased exponent e is 2^(e - 127) <= x < 2^(e - 126),
     * so frexp gives e - 126; zero and subnormals give level 0 as frexp does, inf and NaN a level past the last */
    union {
        float f;
        uint32_t u;
    } bits = {extent};
    const int64_t exponent = (int64_t)((bits.u >> 23) & 0xff) - 126;
    int64_t level = exponent > 0 ? exponent : 0;
    if (level >= g->levels) return 0;
    const float *box = g->aabbs + 6 * level;
    const int64_t r = g->res;
    int64_t ijk[3];
    for (int d = 0; d < 3; ++d) {
        int64_t i = (int64_t)floorf((p[d] - box[d]) / (box[3 + d] - box[d]) * (float)r);
        ijk[d] = i < 0 ? 0 : (i > r - 1 ? r - 1 : i);
    }
    return g->binaries[((level * r + ijk[0]) * r + ijk[1]) * r + ijk[2]];
}

static int near_occupied(const Grid *g, const float p[3]) {
    const int64_t r = g->res, size = r + 2;
    for (int64_t level = 0; level < g->levels; ++level) {
        const float *box = g->aabbs + 6 * level;
        int64_t ijk[3];
        int inside = 1;
        for (int d = 0; d < 3; ++d) {
            /* a multiply by the reciprocal: this test only has to be conservative (MARGIN covers a rounding) */
            const float i = floorf((p[d] - box[d]) * ((float)r / (box[3 + d] - box[d]))) + 1.0f;
            inside &= i >= 0.0f && i < (float)size;
            ijk[d] = i < 0.0f ? 0 : (i > (float)(size - 1) ? size - 1 : (int64_t)i);
        }
        if (inside && g->dilated[((level * size + ijk[0]) * size + ijk[1]) * size + ijk[2]]) return 1;
    }
    return 0;
}

typedef struct {
    const float *origins, *unit; /* [n, 3] */
    const float *s0, *lo, *hi, *dnorm, *k_lo; /* [n] */
    const int64_t *count; /* [n] candidate steps from k_lo */
    float step, half_limit;
    int64_t block; /* steps per block; every block is tested step by step when half_limit < 0 */
} Rays;

/* Walk the blocks [first, last) of ray r (block offsets in steps, multiples of the block size); with
 * ray_out == NULL only count its samples and narrow span to the blocks that hold them, else write them from
 * slot offset. */
static int64_t march_ray(const Rays *rays, const Grid *g, int64_t r, int64_t span[2], int64_t offset,
                         int64_t *ray_out, float *start_out, float *end_out) {
    const float *o = rays->origins + 3 * r, *u = rays->unit + 3 * r;
    const float s0 = rays->s0[r], lo = rays->lo[r], hi = rays->hi[r], k_lo = rays->k_lo[r], step = rays->step;
    const int64_t count = rays->count[r], size = rays->block, from = span[0], to = span[1];
    int64_t n = 0;
    for (int64_t first = from; first < to; first += size) {
        const int64_t before = n;
        const float k_a = k_lo + (float)first;
        const int64_t left = count - first < size ? count - first : size;
        if (rays->half_limit >= 0.0f) {
            const float s_a = s0 + k_a * step, s_b = s0 + (k_lo + (float)(first + left)) * step;
            const float centre = 0.5f * (s_a + s_b), half = 0.5f * (s_b - s_a);
            const float p[3] = {o[0] + centre * u[0], o[1] + centre * u[1], o[2] + centre * u[2]};
            if (!(half > rays->half_limit) && !near_occupied(g, p)) continue;
        }
        for (int64_t j = 0; j < left; ++j) {
            const float k = k_a + (float)j;
            const float s_a = s0 + k * step, s_b = s0 + (k + 1.0f) * step;
            const float mid = 0.5f * (s_a + s_b);
            if (!(mid >= lo && mid < hi)) continue;
            const float p[3] = {o[0] + mid * u[0], o[1] + mid * u[1], o[2] + mid * u[2]};
            if (!occupied(g, p)) continue;
            if (ray_out != 0) {
                ray_out[offset + n] = r;
                start_out[offset + n] = s_a / rays->dnorm[r];
                end_out[offset + n] = s_b / rays->dnorm[r];
            }
            ++n;
        }
        if (ray_out == 0 && n > before) {
            if (before == 0) span[0] = first;
            span[1] = first + size;
        }
    }
    if (ray_out == 0 && n == 0) span[0] = span[1] = 0;
    return n;
}

/* Pass 1 (ray_out == NULL): counts[r] = samples of ray r, spans[r] = its blocks from the first to the last that
 * hold samples. Pass 2: the samples, ray r's from offsets[r], walking only spans[r]. */
void n3d_march(const float *origins, const float *unit, const float *s0, const float *lo, const float *hi,
               const float *dnorm, const float *k_lo, const int64_t *count, int64_t n_rays, float step,
               int64_t block, float half_limit, const float *aabbs, const uint8_t *binaries, const uint8_t *dilated,
               int64_t levels, int64_t res, int64_t *counts, int64_t *spans, const int64_t *offsets, int64_t *ray_out,
               float *start_out, float *end_out, int n_threads) {
    const Rays rays = {origins, unit, s0, lo, hi, dnorm, k_lo, count, step, half_limit, block};
    const Grid g = {aabbs, binaries, dilated, levels, res};
#pragma omp parallel for schedule(dynamic, 64) num_threads(n_threads)
    for (int64_t r = 0; r < n_rays; ++r) {
        if (ray_out == 0) {
            spans[2 * r] = 0;
            spans[2 * r + 1] = count[r];
            counts[r] = march_ray(&rays, &g, r, spans + 2 * r, 0, 0, 0, 0);
        } else if (counts[r] > 0) {
            march_ray(&rays, &g, r, spans + 2 * r, offsets[r], ray_out, start_out, end_out);
        }
    }
}
