/* Fused TensoRF vector-matrix (VM) features for CPU tensors: one pass per point over the three plane x line modes.
 *
 * Built on first use by neural3d/fields/backends/cpu_vm.py (through c_build.py: cc -O3 -fopenmp -shared) and called
 * through ctypes; no PyTorch headers. The arithmetic is the PyTorch path's (neural3d/fields/vm_decomposition.py),
 * operation for operation, so the component products agree bit for bit:
 *   mode m: plane over axes (a, b) = (0,1) / (0,2) / (1,2), line along c = 2 / 1 / 0 (TensoRF's matMode / vecMode);
 *   coordinates clamped to [-1, 1], then f = (u + 1) * ((n - 1) / 2) (align_corners=True), i = floor(f) (at most
 *   n - 2), t = f - i;
 *   plane (F.grid_sample, bilinear, as ATen's vectorised CPU kernel, whose multiply-adds the compiler fused):
 *     e = 1 - tx, s = 1 - ty, nw = s e, ne = s tx, sw = ty e, se = ty tx,
 *     P = fma(P[y+1,x+1], se, fma(P[y+1,x], sw, fma(P[y,x+1], ne, P[y,x] nw)));
 *   line (sample_line): L = L[i] + (L[i+1] - L[i]) * t;   component r of mode m: P_r * L_r.
 * (On the box's far face i = n - 2 and t = 1: the weight of node n - 2 is an exact 0, as grid_sample's zero-padded
 * tap beyond the last node.) A point with a NaN coordinate gets NaN outputs.
 *
 * Layouts: x [n, 3] float32; plane m [H_m, W_m, R_m] and line m [L_m, R_m] float32, channels last (the caller
 * transposes PyTorch's [1, R, H, W] / [1, R, L, 1] once per set of weights), H_m = res[b], W_m = res[a], L_m = res[c];
 * dims [3][4] int64 = (W, H, L, R) per mode. Output by mode: N3D_PRODUCTS: out [n, R_0 + R_1 + R_2] (mode 0's
 * components first, as torch.cat(mode_products).T); N3D_SUM: out [n], the sum of all components (sequentially per
 * mode, then mode 0 + mode 1 + mode 2; torch's sum(0) over 16 rows adds in the same order); N3D_PROJECT: out
 * [n, out_dim], the products times a matrix (TensoRF's basis B [out_dim, sum R] given transposed and zero-padded,
 * basis_t [sum R, out_pad], out_pad = out_dim rounded up to 32): out[j] = sum_k prod[k] B[j, k], k in order (a
 * float rounding away from torch's matmul).
 * Backward (n3d_vm_backward): the gradients of the planes and lines from those of the products or the sum, by
 * the same taps (the points get none).
 * Parallelism: OpenMP over blocks of points; each point writes only its own outputs (no atomics, the same numbers
 * for any thread count). The per-block function is compiled for x86-64-v4 (AVX-512) / v3 (AVX2 + FMA) / baseline
 * and picked at load time (GCC's target_clones), so the channel loops are vectorised on any x86-64 machine; the
 * flags forbid implicit FMA contraction (-ffp-contract=off): the fused multiply-adds are the explicit fmaf above
 * (a library call on a CPU without FMA), the rest PyTorch's separate multiplies and adds.
 */
#include <math.h>
#include <stdint.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define BLOCK 256 /* points per OpenMP task */

enum { N3D_PRODUCTS = 0, N3D_SUM = 1, N3D_PROJECT = 2 }; /* what n3d_vm_forward writes per point */

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define N3D_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define N3D_CLONES
#endif

static const int PLANE_A[3] = {0, 0, 1};
static const int PLANE_B[3] = {1, 2, 2};
static const int LINE_C[3] = {2, 1, 0};

/* Left node and weight of the right node of coordinate u over n >= 2 nodes (align_corners=True). */
static inline int64_t tap(float u, int64_t n, float *t) {
    u = u < -1.0f ? -1.0f : (u > 1.0f ? 1.0f : u);
    const float f = (u + 1.0f) * ((float)(n - 1) / 2.0f);
    int64_t i = (int64_t)floorf(f);
    if (i > n - 2) i = n - 2;
    *t = f - (float)i;
    return i;
}

/* Products of one mode's components at one point into prod[R]. */
static inline void mode_products(const float *plane, const float *line, const int64_t *d, float u, float v, float w,
                                 float *prod) {
    const int64_t W = d[0], H = d[1], L = d[2], R = d[3];
    float tx, ty, tz;
    const int64_t x0 = tap(u, W, &tx), y0 = tap(v, H, &ty), z0 = tap(w, L, &tz);
    const float e = 1.0f - tx, s = 1.0f - ty;
    const float nw = s * e, ne = s * tx, sw = ty * e, se = ty * tx;
    const float *p00 = plane + (y0 * W + x0) * R, *p01 = p00 + R, *p10 = p00 + W * R, *p11 = p10 + R;
    const float *l0 = line + z0 * R, *l1 = l0 + R;
    for (int64_t r = 0; r < R; ++r) {
        const float p = fmaf(p11[r], se, fmaf(p10[r], sw, fmaf(p01[r], ne, p00[r] * nw)));
        prod[r] = p * (l0[r] + (l1[r] - l0[r]) * tz);
    }
}

/* Sum of the components (sequentially per mode, then mode 0 + mode 1 + mode 2). */
static inline float component_sum(const float *prod, const int64_t *dims) {
    float sum = 0.0f;
    for (int m = 0; m < 3; ++m) {
        float s = 0.0f;
        for (int64_t r = 0; r < dims[4 * m + 3]; ++r) s += prod[r];
        sum += s;
        prod += dims[4 * m + 3];
    }
    return sum;
}

/* dst[j] = sum_k prod[k] * basis_t[k, j] (k in order), j < out_dim; basis_t rows are out_pad (a multiple of TILE)
 * long, zero beyond out_dim. Outputs are done TILE at a time, their sums held in registers. */
#define TILE 32
static inline void project(const float *prod, int64_t total, const float *basis_t, int64_t out_dim, int64_t out_pad,
                           float *dst) {
    for (int64_t j0 = 0; j0 < out_pad; j0 += TILE) {
        float acc[TILE] = {0.0f};
        for (int64_t k = 0; k < total; ++k) {
            const float a = prod[k];
            const float *row = basis_t + k * out_pad + j0;
            for (int j = 0; j < TILE; ++j) acc[j] += a * row[j];
        }
        const int64_t n = out_dim - j0 < TILE ? out_dim - j0 : TILE;
        for (int64_t j = 0; j < n; ++j) dst[j0 + j] = acc[j];
    }
}

N3D_CLONES
static void vm_block(const float *x, int64_t begin, int64_t end, const float *const *planes,
                     const float *const *lines, const int64_t *dims, int mode, const float *basis_t, int64_t out_dim,
                     float *out) {
    const int64_t total = dims[3] + dims[7] + dims[11];
    const int64_t width = mode == N3D_SUM ? 1 : (mode == N3D_PROJECT ? out_dim : total);
    const int64_t out_pad = (out_dim + TILE - 1) / TILE * TILE;
    float buffer[total];
    for (int64_t i = begin; i < end; ++i) {
        const float *xi = x + 3 * i;
        float *dst = out + i * width;
        if (isnan(xi[0]) || isnan(xi[1]) || isnan(xi[2])) {
            for (int64_t r = 0; r < width; ++r) dst[r] = NAN;
            continue;
        }
        float *prod = mode == N3D_PRODUCTS ? dst : buffer;
        int64_t offset = 0;
        for (int m = 0; m < 3; ++m) {
            mode_products(planes[m], lines[m], dims + 4 * m, xi[PLANE_A[m]], xi[PLANE_B[m]], xi[LINE_C[m]],
                          prod + offset);
            offset += dims[4 * m + 3];
        }
        if (mode == N3D_SUM) *dst = component_sum(prod, dims);
        else if (mode == N3D_PROJECT) project(prod, total, basis_t, out_dim, out_pad, dst);
    }
}

void n3d_vm_forward(const float *x, int64_t n, const float *const *planes, const float *const *lines,
                    const int64_t *dims, int mode, const float *basis_t, int64_t out_dim, float *out, int n_threads) {
    const int64_t n_blocks = (n + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) num_threads(n_threads)
    for (int64_t b = 0; b < n_blocks; ++b) {
        const int64_t begin = b * BLOCK, end = begin + BLOCK < n ? begin + BLOCK : n;
        vm_block(x, begin, end, planes, lines, dims, mode, basis_t, out_dim, out);
    }
}

/* Backward of one thread's band: the rows [H t / T, H (t+1) / T) of every plane and the nodes [L t / T, L (t+1) / T)
 * of every line, from all points in order. d out_r / d P[corner] = L_r w_corner, d out_r / d L[node] = P_r w_node. */
N3D_CLONES
static void vm_backward_band(const float *x, int64_t n, const float *const *planes, const float *const *lines,
                             const int64_t *dims, int mode, const float *grad, float *const *plane_grads,
                             float *const *line_grads, int t, int n_bands) {
    const int64_t total = dims[3] + dims[7] + dims[11];
    int64_t offset = 0;
    for (int m = 0; m < 3; offset += dims[4 * m + 3], ++m) {
        const int64_t W = dims[4 * m], H = dims[4 * m + 1], L = dims[4 * m + 2], R = dims[4 * m + 3];
        const int64_t y_lo = H * t / n_bands, y_hi = H * (t + 1) / n_bands;
        const int64_t z_lo = L * t / n_bands, z_hi = L * (t + 1) / n_bands;
        const float *plane = planes[m], *line = lines[m];
        float *pg = plane_grads[m], *lg = line_grads[m];
        float a[R], b[R];
        for (int64_t i = 0; i < n; ++i) {
            const float *xi = x + 3 * i;
            if (isnan(xi[0]) || isnan(xi[1]) || isnan(xi[2])) continue;
            float tx, ty, tz;
            const int64_t x0 = tap(xi[PLANE_A[m]], W, &tx), y0 = tap(xi[PLANE_B[m]], H, &ty);
            const int64_t z0 = tap(xi[LINE_C[m]], L, &tz);
            const int top = y0 >= y_lo && y0 < y_hi, bottom = y0 + 1 >= y_lo && y0 + 1 < y_hi;
            const int left = z0 >= z_lo && z0 < z_hi, right = z0 + 1 >= z_lo && z0 + 1 < z_hi;
            if (!(top || bottom || left || right)) continue;
            const float e = 1.0f - tx, s = 1.0f - ty;
            const float nw = s * e, ne = s * tx, sw = ty * e, se = ty * tx;
            const int64_t c00 = (y0 * W + x0) * R;
            const float *p00 = plane + c00, *p01 = p00 + R, *p10 = p00 + W * R, *p11 = p10 + R;
            const float *l0 = line + z0 * R, *l1 = l0 + R;
            for (int64_t r = 0; r < R; ++r) {
                const float g = mode == N3D_SUM ? grad[i] : grad[i * total + offset + r];
                a[r] = g * (l0[r] + (l1[r] - l0[r]) * tz);
                b[r] = g * fmaf(p11[r], se, fmaf(p10[r], sw, fmaf(p01[r], ne, p00[r] * nw)));
            }
            float *g00 = pg + c00, *g01 = g00 + R, *g10 = g00 + W * R, *g11 = g10 + R;
            if (top)
                for (int64_t r = 0; r < R; ++r) {
                    g00[r] += a[r] * nw;
                    g01[r] += a[r] * ne;
                }
            if (bottom)
                for (int64_t r = 0; r < R; ++r) {
                    g10[r] += a[r] * sw;
                    g11[r] += a[r] * se;
                }
            if (left)
                for (int64_t r = 0; r < R; ++r) lg[z0 * R + r] += b[r] * (1.0f - tz);
            if (right)
                for (int64_t r = 0; r < R; ++r) lg[(z0 + 1) * R + r] += b[r] * tz;
        }
    }
}

/* Gradients of the planes and lines (channels last like them, zeroed by the caller) from grad [n, sum R]
 * (N3D_PRODUCTS) or [n] (N3D_SUM). Each thread owns a band of every plane's rows and of every line's nodes and walks
 * all points in order: no atomics, and every entry adds its contributions in point order, so the result does not
 * depend on the thread count. */
void n3d_vm_backward(const float *x, int64_t n, const float *const *planes, const float *const *lines,
                     const int64_t *dims, int mode, const float *grad, float *const *plane_grads,
                     float *const *line_grads, int n_threads) {
#pragma omp parallel num_threads(n_threads)
    {
#ifdef _OPENMP
        const int t = omp_get_thread_num(), n_bands = omp_get_num_threads();
#else
        const int t = 0, n_bands = 1;
#endif
        vm_backward_band(x, n, planes, lines, dims, mode, grad, plane_grads, line_grads, t, n_bands);
    }
}
