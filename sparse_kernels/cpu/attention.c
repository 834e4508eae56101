/*
 * Fused graph attention on the CPU: the engine's CPU kernels (see sparse_kernels/cpu/__init__.py).
 *
 * Edges j -> i in CSR order by destination (rowptr, col); per-edge inputs (bias [E,H], edge_k
 * [E,H,D], edge_v [E,H,DV]) are indexed by the user's edge id eid[c] of CSR position c (eid NULL:
 * the identity). Per head h:
 *
 *   s_e  = scale * <q_i, k_j + ek_e> + b_e
 *   a_e  = normalise_{e in N(i)}(s_e)          softmax | sigmoid | softplus / sum softplus
 *   w_e  = a_e * keep(seed, eid, h) / (1 - p)  (counter-based dropout, p = 0: w = a)
 *   o_i  = sum_e w_e (v_j + ev_e)
 *
 * Forward: one pass per destination row, scores of CHUNK edges at a time with the online
 * softmax (running max and sum); nothing per edge is stored. Writes out [N,H,DV] and the row
 * statistic stat [N,H] (lse for softmax, log Z for softplus, 0 for sigmoid; +inf for a row
 * without edges, whose output is zero).
 *
 * Backward: a row pass (by destination) computes dq, the per-edge gradients (bias, edge_k,
 * edge_v) and stores ds_e and w_e [E,H] in CSR order; a column pass over the transpose (by
 * source) accumulates dk_j = scale * sum ds_e q_i and dv_j = sum w_e dO_i. Every output row is
 * written by one thread: no atomics, bitwise reproducible for any thread count.
 *
 * The dropout mask is the engine's counter hash (sparse_kernels/dropout.py is the reference):
 * counter = eid * H + h (mod 2^32), u = mix32(mix32(counter + key0) ^ key1), keep iff
 * (u >> 8) >= threshold, with key0 = seed mod 2^32, key1 = mix32(seed >> 32 ^ 0x9E3779B9).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 64
enum { NORM_SOFTMAX = 0, NORM_SIGMOID = 1, NORM_SOFTPLUS = 2 };

static inline uint32_t mix32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

typedef struct {
    uint32_t key0, key1, threshold;
    int active;
} dropout_t;

static inline dropout_t dropout_init(int64_t seed, int64_t threshold) {
    dropout_t d;
    uint64_t s = (uint64_t)seed;
    d.key0 = (uint32_t)s;
    d.key1 = mix32((uint32_t)(s >> 32) ^ 0x9E3779B9U);
    d.threshold = (uint32_t)threshold;
    d.active = threshold > 0;
    return d;
}

static inline int dropout_keep(const dropout_t* d, int64_t edge, int64_t heads, int64_t h) {
    uint32_t counter = (uint32_t)((uint64_t)edge * (uint64_t)heads + (uint64_t)h);
    uint32_t u = mix32(mix32(counter + d->key0) ^ d->key1);
    return (u >> 8) >= d->threshold;
}

/* Fills keep [n] (0/1 bytes) for the counters edge[t] * heads + h of every t (edge[t] < 0: 0). */
void ga_dropout_keep(int64_t n, int64_t heads, const int64_t* edge, int64_t seed, int64_t threshold,
                     uint8_t* keep) {
    dropout_t d = dropout_init(seed, threshold);
    for (int64_t t = 0; t < n; ++t) {
        int64_t e = edge[t / heads];
        keep[t] = e >= 0 && dropout_keep(&d, e, heads, t % heads);
    }
}

#define GA_DEFINE(T, SUFFIX, EXP, LOG, LOG1P, FABS)                                                         \
static inline T sigmoid_##SUFFIX(T s) { return (T)1 / ((T)1 + EXP(-s)); }                                  \
static inline T softplus_##SUFFIX(T s) { return (s > 0 ? s : (T)0) + LOG1P(EXP(-FABS(s))); }                \
                                                                                                            \
/* <a, b> (+ <a, c> when c is not NULL): eight partial sums, then a tree, so that the compiler    \
   vectorises the loop and the reduction is not one long dependency chain. */                              \
static inline T dot_##SUFFIX(const T* restrict a, const T* restrict b, const T* restrict c, int64_t n) {   \
    T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};                                                                    \
    int64_t d = 0;                                                                                          \
    if (c) {                                                                                                \
        for (; d + 8 <= n; d += 8)                                                                          \
            for (int r = 0; r < 8; ++r) acc[r] += a[d + r] * (b[d + r] + c[d + r]);                         \
    } else {                                                                                                \
        for (; d + 8 <= n; d += 8)                                                                          \
            for (int r = 0; r < 8; ++r) acc[r] += a[d + r] * b[d + r];                                      \
    }                                                                                                       \
    T s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));                \
    for (; d < n; ++d) s += a[d] * (c ? b[d] + c[d] : b[d]);                                                \
    return s;                                                                                               \
}                                                                                                           \
/* y += alpha * (x + z)   (z may be NULL) */                                                                \
static inline void axpy_##SUFFIX(T alpha, const T* restrict x, const T* restrict z, T* restrict y,          \
                                 int64_t n) {                                                               \
    if (z) {                                                                                                \
        for (int64_t d = 0; d < n; ++d) y[d] += alpha * (x[d] + z[d]);                                      \
    } else {                                                                                                \
        for (int64_t d = 0; d < n; ++d) y[d] += alpha * x[d];                                               \
    }                                                                                                       \
}                                                                                                           \
                                                                                                            \
/* Score of an edge (source j, user id u) for head h. */                                                    \
static inline T score_##SUFFIX(const T* qi, const T* k, const T* bias, const T* ek, int64_t j, int64_t u,   \
                               int64_t h, int64_t H, int64_t D, T scale) {                                  \
    T s = dot_##SUFFIX(qi + h * D, k + (j * H + h) * D, ek ? ek + (u * H + h) * D : NULL, D) * scale;       \
    return bias ? s + bias[u * H + h] : s;                                                                  \
}                                                                                                           \
                                                                                                            \
void ga_attention_fwd_##SUFFIX(int64_t n_dst, int64_t H, int64_t D, int64_t DV, const int64_t* rowptr,       \
                               const int64_t* col, const int64_t* eid, const T* q, const T* k, const T* v,  \
                               const T* bias, const T* ek, const T* ev, double scale_, int64_t norm,        \
                               int64_t seed, int64_t threshold, double keep_scale_, T* out, T* stat,        \
                               int64_t nthreads) {                                                          \
    const T scale = (T)scale_, keep_scale = (T)keep_scale_;                                                 \
    const dropout_t drop = dropout_init(seed, threshold);                                                   \
    _Pragma("omp parallel num_threads(nthreads) if(nthreads > 1)")                                          \
    {                                                                                                       \
        T* buf = (T*)malloc(sizeof(T) * (size_t)(2 * CHUNK * H + 2 * H + H * DV));                          \
        T *S = buf, *P = S + CHUNK * H, *m = P + CHUNK * H, *l = m + H, *acc = l + H;                       \
        _Pragma("omp for schedule(dynamic, 32)")                                                            \
        for (int64_t i = 0; i < n_dst; ++i) {                                                               \
            const T* qi = q + i * H * D;                                                                    \
            for (int64_t h = 0; h < H; ++h) { m[h] = -INFINITY; l[h] = 0; }                                 \
            memset(acc, 0, sizeof(T) * (size_t)(H * DV));                                                   \
            for (int64_t c0 = rowptr[i]; c0 < rowptr[i + 1]; c0 += CHUNK) {                                 \
                int64_t n = rowptr[i + 1] - c0 < CHUNK ? rowptr[i + 1] - c0 : CHUNK;                        \
                for (int64_t t = 0; t < n; ++t) {                                                           \
                    int64_t c = c0 + t, u = eid ? eid[c] : c;                                               \
                    for (int64_t h = 0; h < H; ++h)                                                         \
                        S[t * H + h] = score_##SUFFIX(qi, k, bias, ek, col[c], u, h, H, D, scale);          \
                }                                                                                           \
                for (int64_t h = 0; h < H; ++h) {                                                           \
                    T total = 0;                                                                            \
                    if (norm == NORM_SOFTMAX) {                                                             \
                        T mx = m[h];                                                                        \
                        for (int64_t t = 0; t < n; ++t) mx = S[t * H + h] > mx ? S[t * H + h] : mx;         \
                        T safe = mx == -INFINITY ? (T)0 : mx;                                               \
                        T alpha = EXP(m[h] - safe);                                                         \
                        for (int64_t t = 0; t < n; ++t) total += (P[t * H + h] = EXP(S[t * H + h] - safe)); \
                        if (alpha != (T)1) for (int64_t d = 0; d < DV; ++d) acc[h * DV + d] *= alpha;      \
                        l[h] = l[h] * alpha + total;                                                        \
                        m[h] = mx;                                                                          \
                    } else {                                                                                \
                        for (int64_t t = 0; t < n; ++t)                                                     \
                            total += (P[t * H + h] = norm == NORM_SIGMOID ? sigmoid_##SUFFIX(S[t * H + h])  \
                                                                          : softplus_##SUFFIX(S[t * H + h]));\
                        l[h] += total;                                                                      \
                    }                                                                                       \
                }                                                                                           \
                for (int64_t t = 0; t < n; ++t) {                                                           \
                    int64_t c = c0 + t, u = eid ? eid[c] : c, j = col[c];                                   \
                    for (int64_t h = 0; h < H; ++h) {                                                       \
                        T w = P[t * H + h];                                                                 \
                        if (drop.active) w = dropout_keep(&drop, u, H, h) ? w * keep_scale : (T)0;          \
                        if (w == (T)0) continue;                                                            \
                        axpy_##SUFFIX(w, v + (j * H + h) * DV, ev ? ev + (u * H + h) * DV : NULL,            \
                                      acc + h * DV, DV);                                                    \
                    }                                                                                       \
                }                                                                                           \
            }                                                                                               \
            for (int64_t h = 0; h < H; ++h) {                                                               \
                T* o = out + (i * H + h) * DV;                                                              \
                T st, inv = 1;                                                                              \
                if (norm == NORM_SOFTMAX) {                                                                 \
                    st = l[h] > 0 ? (m[h] == -INFINITY ? 0 : m[h]) + LOG(l[h]) : (T)INFINITY;               \
                    inv = l[h] > 0 ? (T)1 / l[h] : (T)0;                                                    \
                } else if (norm == NORM_SOFTPLUS) {                                                         \
                    st = l[h] > 0 ? LOG(l[h]) : (T)INFINITY;                                                \
                    inv = l[h] > 0 ? (T)1 / l[h] : (T)0;                                                    \
                } else {                                                                                    \
                    st = 0;                                                                                 \
                }                                                                                           \
                stat[i * H + h] = st;                                                                       \
                for (int64_t d = 0; d < DV; ++d) o[d] = acc[h * DV + d] * inv;                              \
            }                                                                                               \
        }                                                                                                   \
        free(buf);                                                                                          \
    }                                                                                                       \
}                                                                                                           \
                                                                                                            \
void ga_attention_bwd_##SUFFIX(int64_t n_dst, int64_t n_src, int64_t H, int64_t D, int64_t DV,              \
                               const int64_t* rowptr, const int64_t* col, const int64_t* eid,               \
                               const int64_t* colptr, const int64_t* row_t, const int64_t* perm_t,          \
                               const T* q, const T* k, const T* v, const T* bias, const T* ek, const T* ev, \
                               const T* dout, const T* out, const T* stat, double scale_, int64_t norm,     \
                               int64_t seed, int64_t threshold, double keep_scale_, T* dq, T* dk, T* dv,    \
                               T* dbias, T* dek, T* dev, T* ds_buf, T* w_buf, int64_t nthreads) {           \
    const T scale = (T)scale_, keep_scale = (T)keep_scale_;                                                 \
    const dropout_t drop = dropout_init(seed, threshold);                                                   \
    /* row pass: dq, per-edge gradients, ds and w in CSR order */                                           \
    _Pragma("omp parallel num_threads(nthreads) if(nthreads > 1)")                                          \
    {                                                                                                       \
        T* delta = (T*)malloc(sizeof(T) * (size_t)H);                                                       \
        _Pragma("omp for schedule(dynamic, 32)")                                                            \
        for (int64_t i = 0; i < n_dst; ++i) {                                                               \
            const T *qi = q + i * H * D, *doi = dout + i * H * DV;                                          \
            T* dqi = dq + i * H * D;                                                                        \
            memset(dqi, 0, sizeof(T) * (size_t)(H * D));                                                    \
            for (int64_t h = 0; h < H; ++h)                                                                 \
                delta[h] = norm == NORM_SIGMOID ? (T)0                                                      \
                                                : dot_##SUFFIX(doi + h * DV, out + (i * H + h) * DV, NULL, DV);     \
            for (int64_t c = rowptr[i]; c < rowptr[i + 1]; ++c) {                                           \
                int64_t u = eid ? eid[c] : c, j = col[c];                                                   \
                for (int64_t h = 0; h < H; ++h) {                                                           \
                    T s = score_##SUFFIX(qi, k, bias, ek, j, u, h, H, D, scale);                            \
                    T st = stat[i * H + h], a, ds;                                                          \
                    if (norm == NORM_SOFTMAX) a = EXP(s - st);                                              \
                    else if (norm == NORM_SOFTPLUS) a = softplus_##SUFFIX(s) * EXP(-st);                    \
                    else a = sigmoid_##SUFFIX(s);                                                           \
                    T mult = 1;                                                                             \
                    if (drop.active) mult = dropout_keep(&drop, u, H, h) ? keep_scale : (T)0;               \
                    T da = 0;                                                                               \
                    if (mult != (T)0) {                                                                     \
                        da = mult * dot_##SUFFIX(doi + h * DV, v + (j * H + h) * DV,                        \
                                                 ev ? ev + (u * H + h) * DV : NULL, DV);                    \
                    }                                                                                       \
                    if (norm == NORM_SOFTMAX) ds = a * (da - delta[h]);                                     \
                    else if (norm == NORM_SOFTPLUS) ds = (da - delta[h]) * sigmoid_##SUFFIX(s) * EXP(-st);  \
                    else ds = da * a * ((T)1 - a);                                                          \
                    T w = a * mult;                                                                         \
                    ds_buf[c * H + h] = ds;                                                                 \
                    w_buf[c * H + h] = w;                                                                   \
                    if (dbias) dbias[u * H + h] = ds;                                                       \
                    T g = ds * scale;                                                                       \
                    axpy_##SUFFIX(g, k + (j * H + h) * D, ek ? ek + (u * H + h) * D : NULL, dqi + h * D, D); \
                    if (ek) {                                                                               \
                        T* g_ek = dek + (u * H + h) * D;                                                    \
                        for (int64_t d = 0; d < D; ++d) g_ek[d] = g * qi[h * D + d];                        \
                    }                                                                                       \
                    if (dev) {                                                                              \
                        T* g_ev = dev + (u * H + h) * DV;                                                   \
                        for (int64_t d = 0; d < DV; ++d) g_ev[d] = w * doi[h * DV + d];                     \
                    }                                                                                       \
                }                                                                                           \
            }                                                                                               \
        }                                                                                                   \
        free(delta);                                                                                        \
    }                                                                                                       \
    /* column pass: dk, dv by source over the transpose */                                                  \
    _Pragma("omp parallel for schedule(dynamic, 32) num_threads(nthreads) if(nthreads > 1)")                \
    for (int64_t j = 0; j < n_src; ++j) {                                                                   \
        T *dkj = dk + j * H * D, *dvj = dv + j * H * DV;                                                    \
        memset(dkj, 0, sizeof(T) * (size_t)(H * D));                                                        \
        memset(dvj, 0, sizeof(T) * (size_t)(H * DV));                                                       \
        for (int64_t t = colptr[j]; t < colptr[j + 1]; ++t) {                                               \
            int64_t c = perm_t[t], i = row_t[t];                                                            \
            for (int64_t h = 0; h < H; ++h) {                                                               \
                T g = ds_buf[c * H + h] * scale, w = w_buf[c * H + h];                                      \
                if (g != (T)0) axpy_##SUFFIX(g, q + (i * H + h) * D, NULL, dkj + h * D, D);                 \
                if (w != (T)0) axpy_##SUFFIX(w, dout + (i * H + h) * DV, NULL, dvj + h * DV, DV);           \
            }                                                                                               \
        }                                                                                                   \
    }                                                                                                       \
}

GA_DEFINE(float, f32, expf, logf, log1pf, fabsf)
GA_DEFINE(double, f64, exp, log, log1p, fabs)
