/*
 * Fused graph attention on the CPU: the engine's CPU kernels (see sparse_kernels/cpu/__init__.py).
 *
 * Edges j -> i in CSR order by destination (rowptr, col); per-edge inputs (bias [E,H], edge_k
 * [E,H,D], edge_v [E,H,DV]) are indexed by the user's edge id eid[c] of CSR position c (eid NULL:
 * the identity). Per head h:
 *
 *   s_e  = scale * <q_i, k_j + ek_e> + b_e
 *   a_e  = normalise_{e in N(i)}(s_e)          softmax | sigmoid | softplus / sum softplus (computed as
 *                                               a softmax of log softplus: exact for every finite s)
 *   w_e  = a_e * keep(seed, eid, h) / (1 - p)  (counter-based dropout, p = 0: w = a)
 *   o_i  = sum_e w_e (v_j + ev_e)
 *
 * Forward: one pass per destination row, scores of CHUNK edges at a time with the online
 * softmax (running max and sum); nothing per edge is stored. Writes out [N,H,DV] and the row
 * statistic stat [N,H] (lse for softmax, log Z for softplus, 0 for sigmoid; +inf for a row
 * without edges, whose output is zero).
 *
 * Backward: a row pass (by destination) computes dq, the per-edge gradients (bias, edge_k,
 * edge_v; one summed gradient when the caller passes the same buffer as dek and dev, for an edge
 * tensor used as both) and stores ds_e and w_e [E,H] in CSR order; a column pass over the transpose (by
 * source) accumulates dk_j = scale * sum ds_e q_i and dv_j = sum w_e dO_i. Every output row is
 * written by one thread: no atomics, bitwise reproducible for any thread count.
 *
 * The dropout mask is the engine's counter hash (sparse_kernels/dropout.py is the reference):
 * the 64-bit counter c = eid * H + h, u = mix32(mix32(lo(c) + key0) ^ key1 ^ mix32(hi(c))), keep iff
 * (u >> 8) >= threshold, with key0 = seed mod 2^32, key1 = mix32(seed >> 32 ^ 0x9E3779B9) (mix32(0) = 0:
 * counters below 2^32 hash as the former 32-bit counter did). The element-wise dropout (ga_dropout_f32/_f64)
 * uses the same hash with the element index as the counter.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK 64
#define PREFETCH 16        /* edges prefetched ahead in the backward passes */
#define DROP_BLOCK 4096     /* elements per block of the element-wise dropout (a power of 2 below 2^32) */
#define GA_INLINE static inline __attribute__((always_inline))
enum { NORM_SOFTMAX = 0, NORM_SIGMOID = 1, NORM_SOFTPLUS = 2 };
enum { SCORE_DOT = 0, SCORE_GAT = 1, SCORE_GATV2 = 2 };

/* One attention call (sparse_kernels/call.py's KernelCall), the only argument of the kernels. The Python
   binding builds its ctypes mirror from ga_call_fields() and checks it against ga_call_offsets(), so that no
   field is matched by position. Float tensors are void pointers of the kernel's scalar type; NULL: absent.
   Sizes: n_dst, n_src, heads (H), dim (D), dim_v (DV). error is set non-zero when a kernel fails (an
   allocation), and the outputs are then undefined. */
#define GA_CALL_FIELDS(X)                                                                                     \
    X(int64_t, n_dst) X(int64_t, n_src) X(int64_t, heads) X(int64_t, dim) X(int64_t, dim_v)                   \
    X(const int64_t*, rowptr) X(const int64_t*, col) X(const int64_t*, eid)                                   \
    X(const int64_t*, colptr) X(const int64_t*, row_t) X(const int64_t*, perm_t)                              \
    X(const void*, q) X(const void*, k) X(const void*, v) X(const void*, bias) X(const void*, edge_k)         \
    X(const void*, edge_v) X(const void*, att) X(const void*, grad_out) X(const void*, out)                   \
    X(const void*, stat)                                                                                      \
    X(double, scale) X(double, keep_scale) X(double, negative_slope)                                          \
    X(int64_t, normalizer) X(int64_t, score) X(int64_t, seed) X(int64_t, threshold) X(int64_t, nthreads)     \
    X(void*, res_out) X(void*, res_stat) X(void*, dq) X(void*, dk) X(void*, dv) X(void*, dbias)              \
    X(void*, dedge_k) X(void*, dedge_v) X(void*, datt) X(void*, ds_buf) X(void*, w_buf) X(void*, datt_rows)  \
    X(int64_t, error)

#define GA_DECLARE(type, name) type name;
typedef struct { GA_CALL_FIELDS(GA_DECLARE) } ga_call_t;

#define GA_DESCRIBE(type, name) #name ":" #type ";"
#define GA_OFFSET(type, name) (int64_t)offsetof(ga_call_t, name),
/* "name:type;" for every field, in order */
const char* ga_call_fields(void) { return GA_CALL_FIELDS(GA_DESCRIBE); }
/* offsetof of every field, in order, then sizeof(ga_call_t) */
void ga_call_offsets(int64_t* out) {
    const int64_t offsets[] = { GA_CALL_FIELDS(GA_OFFSET) (int64_t)sizeof(ga_call_t) };
    memcpy(out, offsets, sizeof offsets);
}

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

/* Keep decision of the 64-bit counter c: its high half is folded into key1 (nothing changes below 2^32). */
static inline int dropout_keep_counter(const dropout_t* d, uint64_t c) {
    uint32_t u = mix32(mix32((uint32_t)c + d->key0) ^ d->key1 ^ mix32((uint32_t)(c >> 32)));
    return (u >> 8) >= d->threshold;
}

static inline int dropout_keep(const dropout_t* d, int64_t edge, int64_t heads, int64_t h) {
    return dropout_keep_counter(d, (uint64_t)edge * (uint64_t)heads + (uint64_t)h);
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

/* Prefetches the cache lines of [p, p + bytes) for reading. */
static inline __attribute__((always_inline)) void ga_prefetch(const void* p, int64_t bytes) {
    for (int64_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch((const char*)p + offset, 0, 1);
}

/* The kernels, once per scalar type (attention_impl.h). */
typedef float vec_f32 __attribute__((vector_size(32)));
typedef double vec_f64 __attribute__((vector_size(32)));

#define T float
#define BITS uint32_t
#define VEC vec_f32
#define VEC_LEN 8
#define SFX(name) name##_f32
#define EXP expf
#define LOG logf
#define LOG1P log1pf
#define FABS fabsf
#include "attention_impl.h"
#undef T
#undef BITS
#undef VEC
#undef VEC_LEN
#undef SFX
#undef EXP
#undef LOG
#undef LOG1P
#undef FABS
#undef GA_WIDTHS

#define T double
#define BITS uint64_t
#define VEC vec_f64
#define VEC_LEN 4
#define SFX(name) name##_f64
#define EXP exp
#define LOG log
#define LOG1P log1p
#define FABS fabs
#include "attention_impl.h"
