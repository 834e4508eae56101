/*
 * The attention kernels for one scalar type, included by attention.c once per type with
 *   T       the scalar type (float, double)
 *   BITS    the unsigned integer of its width (uint32_t, uint64_t)
 *   VEC     a vector of VEC_LEN T (32 bytes)
 *   SFX(x)  the name of x for this type (x ## _f32, x ## _f64)
 *   EXP, LOG, LOG1P, FABS  the libm functions of T
 * defined. The per-row functions take the head widths D and DV as arguments and are always
 * inlined: the exported functions call them with constant widths for the common sizes, so that the
 * compiler unrolls and vectorises the inner loops (a generic call serves any other width).
 */

GA_INLINE T SFX(sigmoid)(T s) { return (T)1 / ((T)1 + EXP(-s)); }
GA_INLINE T SFX(softplus)(T s) { return (s > 0 ? s : (T)0) + LOG1P(EXP(-FABS(s))); }
/* log softplus(s) for every finite s: the series s + log(1 - e^s/2 + e^2s/3) where softplus underflows */
GA_INLINE T SFX(log_softplus)(T s) {
    if (s < (T)-15) {
        T e = EXP(s);
        return s + LOG1P(e * (e / 3 - (T)0.5));
    }
    return LOG(SFX(softplus)(s));
}
GA_INLINE T SFX(log_sigmoid)(T s) { return (s < 0 ? s : (T)0) - LOG1P(EXP(-FABS(s))); }

/* <a, b> (+ <a, c> when c is not NULL) on VEC_LEN-wide vectors (GCC/Clang vector extensions, unaligned
   loads through memcpy), then a tree over the lanes: no long dependency chain of scalar adds. */
GA_INLINE T SFX(dot)(const T* restrict a, const T* restrict b, const T* restrict c, int64_t n) {
    VEC acc = {0};
    int64_t d = 0;
    for (; d + VEC_LEN <= n; d += VEC_LEN) {
        VEC x, y;
        memcpy(&x, a + d, sizeof x);
        memcpy(&y, b + d, sizeof y);
        if (c) {
            VEC z;
            memcpy(&z, c + d, sizeof z);
            y += z;
        }
        acc += x * y;
    }
    for (int width = VEC_LEN / 2; width > 0; width /= 2)
        for (int r = 0; r < width; ++r) acc[r] += acc[r + width];
    T s = acc[0];
    for (; d < n; ++d) s += a[d] * (c ? b[d] + c[d] : b[d]);
    return s;
}

/* y += alpha * (x + z)   (z may be NULL) */
GA_INLINE void SFX(axpy)(T alpha, const T* restrict x, const T* restrict z, T* restrict y, int64_t n) {
    if (z) {
        for (int64_t d = 0; d < n; ++d) y[d] += alpha * (x[d] + z[d]);
    } else {
        for (int64_t d = 0; d < n; ++d) y[d] += alpha * x[d];
    }
}

/* y = alpha * x */
GA_INLINE void SFX(scaled)(T alpha, const T* restrict x, T* restrict y, int64_t n) {
    for (int64_t d = 0; d < n; ++d) y[d] = alpha * x[d];
}

/* A ga_call_t with typed pointers (the kernels' view of one call). */
typedef struct {
    int64_t H, nnz;                               /* heads; edges (rowptr[n_dst]) */
    const int64_t *rowptr, *col, *eid, *colptr, *row_t, *perm_t;
    const T *q, *k, *v, *bias, *ek, *ev, *att, *dout, *out, *stat;
    T scale, keep_scale, slope;
    int64_t norm, score;
    dropout_t drop;
    T *res, *res_stat;                            /* forward: out, stat */
    T *dq, *dk, *dv, *dbias, *dek, *dev, *datt;   /* backward */
    T *ds_buf, *w_buf;                            /* backward scratch [E, H] in CSR order */
    T *datt_rows;                                 /* backward scratch [N_dst, H, D] (gatv2's att) */
} SFX(args_t);

GA_INLINE SFX(args_t) SFX(args_of)(const ga_call_t* c) {
    SFX(args_t) a = {0};
    a.H = c->heads; a.nnz = c->rowptr[c->n_dst]; a.rowptr = c->rowptr; a.col = c->col; a.eid = c->eid;
    a.colptr = c->colptr; a.row_t = c->row_t; a.perm_t = c->perm_t;
    a.q = (const T*)c->q; a.k = (const T*)c->k; a.v = (const T*)c->v; a.bias = (const T*)c->bias;
    a.ek = (const T*)c->edge_k; a.ev = (const T*)c->edge_v; a.att = (const T*)c->att;
    a.dout = (const T*)c->grad_out; a.out = (const T*)c->out; a.stat = (const T*)c->stat;
    a.scale = (T)c->scale; a.keep_scale = (T)c->keep_scale; a.slope = (T)c->negative_slope;
    a.norm = c->normalizer; a.score = c->score; a.drop = dropout_init(c->seed, c->threshold);
    a.res = (T*)c->res_out; a.res_stat = (T*)c->res_stat;
    a.dq = (T*)c->dq; a.dk = (T*)c->dk; a.dv = (T*)c->dv; a.dbias = (T*)c->dbias;
    a.dek = (T*)c->dedge_k; a.dev = (T*)c->dedge_v; a.datt = (T*)c->datt;
    a.ds_buf = (T*)c->ds_buf; a.w_buf = (T*)c->w_buf; a.datt_rows = (T*)c->datt_rows;
    return a;
}

GA_INLINE T SFX(leaky)(T x, T slope) { return x > 0 ? x : x * slope; }
GA_INLINE T SFX(leaky_grad)(T x, T slope) { return x > 0 ? (T)1 : slope; }

/* gatv2's LeakyReLU input z = q_i + k_j (+ ek_u) for every head of edge (source j, user id u) at once: H * D
   contiguous values, one vectorised loop per edge rather than one per head. */
GA_INLINE void SFX(gatv2_pre)(const SFX(args_t)* a, const T* restrict qi, int64_t j, int64_t u, int64_t D,
                              T* restrict z) {
    const int64_t n = a->H * D;
    const T* restrict kj = a->k + j * n;
    if (a->ek) {
        const T* restrict e = a->ek + u * n;
        for (int64_t d = 0; d < n; ++d) z[d] = qi[d] + kj[d] + e[d];
    } else {
        for (int64_t d = 0; d < n; ++d) z[d] = qi[d] + kj[d];
    }
}

/* Scores s[H] of edge (source j, user id u) for every head of destination row qi (sparse_kernels/call.py):
   dot   scale * <q_i, k_j + ek_u> + b_u
   gat   LeakyReLU(q_i + k_j + b_u)                      (D = 1)
   gatv2 <att, LeakyReLU(q_i + k_j + ek_u)> + b_u        (leaves z and lz = LeakyReLU(z) for the backward) */
GA_INLINE void SFX(edge_scores)(const SFX(args_t)* a, const T* restrict qi, int64_t j, int64_t u, int64_t D,
                                T* restrict s, T* restrict z, T* restrict lz) {
    const int64_t H = a->H;
    const T* restrict bu = a->bias ? a->bias + u * H : NULL;
    if (a->score == SCORE_GAT) {
        const T* restrict kj = a->k + j * H;
        for (int64_t h = 0; h < H; ++h) s[h] = SFX(leaky)(qi[h] + kj[h] + (bu ? bu[h] : (T)0), a->slope);
        return;
    }
    if (a->score == SCORE_GATV2) {
        const T slope = a->slope;
        SFX(gatv2_pre)(a, qi, j, u, D, z);
        for (int64_t d = 0; d < H * D; ++d) lz[d] = SFX(leaky)(z[d], slope);
        for (int64_t h = 0; h < H; ++h) s[h] = SFX(dot)(a->att + h * D, lz + h * D, NULL, D);
    } else {
        for (int64_t h = 0; h < H; ++h)
            s[h] = SFX(dot)(qi + h * D, a->k + (j * H + h) * D, a->ek ? a->ek + (u * H + h) * D : NULL, D) * a->scale;
    }
    if (bu)
        for (int64_t h = 0; h < H; ++h) s[h] += bu[h];
}

/* Software prefetch of the rows an edge gathers, PREFETCH edges ahead: k_j and v_j (forward, backward row
   pass). On graphs whose sources are spread over more memory than the caches hold, these gathers are the
   kernels' cost; issuing them ahead keeps many loads in flight. */
GA_INLINE void SFX(prefetch_edge)(const SFX(args_t)* a, int64_t j, int64_t D, int64_t DV) {
    ga_prefetch(a->k + j * a->H * D, sizeof(T) * a->H * D);
    ga_prefetch(a->v + j * a->H * DV, sizeof(T) * a->H * DV);
}

/* ... and of the transpose's entry t in the column pass: q_i and dO_i of its row i, and the edge's ds_buf and
   w_buf entries and user id, which the permutation scatters over [E, H]. */
GA_INLINE void SFX(prefetch_col_edge)(const SFX(args_t)* a, int64_t t, int64_t D, int64_t DV) {
    const int64_t H = a->H, i = a->row_t[t], c = a->perm_t[t];
    ga_prefetch(a->q + i * H * D, sizeof(T) * H * D);
    ga_prefetch(a->dout + i * H * DV, sizeof(T) * H * DV);
    ga_prefetch(a->ds_buf + c * H, sizeof(T) * H);
    ga_prefetch(a->w_buf + c * H, sizeof(T) * H);
    if (a->eid) ga_prefetch(a->eid + c, sizeof(int64_t));
}

/* Forward of destination row i: online normalisation over chunks of CHUNK edges. buf holds
   FWD_BUF(H, D, DV) values. The rows of the edge PREFETCH positions ahead in CSR order (across row ends) are
   prefetched while an edge is scored. */
#define FWD_BUF(H, D, DV) (2 * CHUNK * (H) + 2 * (H) + (H) * (DV) + 2 * (H) * (D))
GA_INLINE void SFX(fwd_row)(const SFX(args_t)* a, int64_t i, int64_t D, int64_t DV, T* buf) {
    const int64_t H = a->H, norm = a->norm;
    T *S = buf, *P = S + CHUNK * H, *m = P + CHUNK * H, *l = m + H, *acc = l + H, *z = acc + H * DV, *lz = z + H * D;
    const T* qi = a->q + i * H * D;
    for (int64_t h = 0; h < H; ++h) { m[h] = -INFINITY; l[h] = 0; }
    memset(acc, 0, sizeof(T) * (size_t)(H * DV));
    for (int64_t c0 = a->rowptr[i]; c0 < a->rowptr[i + 1]; c0 += CHUNK) {
        int64_t n = a->rowptr[i + 1] - c0 < CHUNK ? a->rowptr[i + 1] - c0 : CHUNK;
        for (int64_t t = 0; t < n; ++t) {
            int64_t c = c0 + t, u = a->eid ? a->eid[c] : c;
            if (c + PREFETCH < a->nnz) SFX(prefetch_edge)(a, a->col[c + PREFETCH], D, DV);
            SFX(edge_scores)(a, qi, a->col[c], u, D, S + t * H, z, lz);
        }
        if (norm == NORM_SOFTPLUS)      /* softplus / sum softplus: a softmax of log softplus */
            for (int64_t t = 0; t < n * H; ++t) S[t] = SFX(log_softplus)(S[t]);
        for (int64_t h = 0; h < H; ++h) {
            T total = 0;
            if (norm != NORM_SIGMOID) {
                T mx = m[h];
                for (int64_t t = 0; t < n; ++t) mx = S[t * H + h] > mx ? S[t * H + h] : mx;
                T safe = mx == -INFINITY ? (T)0 : mx;
                T alpha = EXP(m[h] - safe);
                for (int64_t t = 0; t < n; ++t) total += (P[t * H + h] = EXP(S[t * H + h] - safe));
                if (alpha != (T)1 && l[h] > 0)
                    for (int64_t d = 0; d < DV; ++d) acc[h * DV + d] *= alpha;
                l[h] = l[h] * alpha + total;
                m[h] = mx;
            } else {
                for (int64_t t = 0; t < n; ++t) total += (P[t * H + h] = SFX(sigmoid)(S[t * H + h]));
                l[h] += total;
            }
        }
        for (int64_t t = 0; t < n; ++t) {
            int64_t c = c0 + t, u = a->eid ? a->eid[c] : c, j = a->col[c];
            for (int64_t h = 0; h < H; ++h) {
                T w = P[t * H + h];
                if (a->drop.active) w = dropout_keep(&a->drop, u, H, h) ? w * a->keep_scale : (T)0;
                if (w == (T)0) continue;
                SFX(axpy)(w, a->v + (j * H + h) * DV, a->ev ? a->ev + (u * H + h) * DV : NULL, acc + h * DV, DV);
            }
        }
    }
    for (int64_t h = 0; h < H; ++h) {
        T st, inv = 1;
        if (norm == NORM_SIGMOID) {
            st = 0;
        } else {
            st = l[h] > 0 ? (m[h] != -INFINITY ? m[h] : (T)0) + LOG(l[h]) : (T)INFINITY;
            inv = l[h] > 0 ? (T)1 / l[h] : (T)0;
        }
        a->res_stat[i * H + h] = st;
        SFX(scaled)(inv, acc + h * DV, a->res + (i * H + h) * DV, DV);
    }
}

/* The score's share of the row pass for edge c (source j, user id u), head h, from its score gradient ds:
   dq_i, dbias_u, dedge_k_u, the per-row att gradient, and what the column pass needs in ds_buf (ds, or for
   gat the gradient of the LeakyReLU input). zh, lzh: gatv2's z and lz of head h (edge_scores). */
GA_INLINE void SFX(score_grads)(const SFX(args_t)* a, int64_t i, int64_t j, int64_t u, int64_t c, int64_t h, T ds,
                                int64_t D, const T* restrict zh, const T* restrict lzh) {
    const int64_t H = a->H;
    const T* qi = a->q + i * H * D;
    T* dqi = a->dq + i * H * D;
    if (a->score == SCORE_GAT) {
        T g = ds * SFX(leaky_grad)(qi[h] + a->k[j * H + h] + (a->bias ? a->bias[u * H + h] : (T)0), a->slope);
        a->ds_buf[c * H + h] = g;
        if (a->dbias) a->dbias[u * H + h] = g;
        dqi[h] += g;
        return;
    }
    a->ds_buf[c * H + h] = ds;
    if (a->dbias) a->dbias[u * H + h] = ds;
    if (a->score == SCORE_GATV2) {
        const T* restrict at = a->att + h * D;
        const T slope = a->slope;
        T* restrict datt = a->datt_rows + (i * H + h) * D;
        T* restrict dqh = dqi + h * D;
        T* restrict dek = a->dek ? a->dek + (u * H + h) * D : NULL;
        for (int64_t d = 0; d < D; ++d) {
            const T g = ds * at[d] * SFX(leaky_grad)(zh[d], slope);
            dqh[d] += g;
            datt[d] += ds * lzh[d];
            if (dek) dek[d] = g;
        }
        return;
    }
    T g = ds * a->scale;
    SFX(axpy)(g, a->k + (j * H + h) * D, a->ek ? a->ek + (u * H + h) * D : NULL, dqi + h * D, D);
    if (a->dek) SFX(scaled)(g, qi + h * D, a->dek + (u * H + h) * D, D);
}

/* Backward row pass of destination row i: dq, the per-edge gradients, ds and w. buf holds BWD_BUF(H, D)
   values. */
#define BWD_BUF(H, D) (2 * (H) + 2 * (H) * (D))
GA_INLINE void SFX(bwd_row)(const SFX(args_t)* a, int64_t i, int64_t D, int64_t DV, T* buf) {
    const int64_t H = a->H, norm = a->norm;
    T *delta = buf, *scores = delta + H, *z = scores + H, *lz = z + H * D;
    const T *qi = a->q + i * H * D, *doi = a->dout + i * H * DV;
    T* dqi = a->dq + i * H * D;
    memset(dqi, 0, sizeof(T) * (size_t)(H * D));
    if (a->datt_rows) memset(a->datt_rows + i * H * D, 0, sizeof(T) * (size_t)(H * D));
    for (int64_t h = 0; h < H; ++h)
        delta[h] = norm == NORM_SIGMOID ? (T)0 : SFX(dot)(doi + h * DV, a->out + (i * H + h) * DV, NULL, DV);
    for (int64_t c = a->rowptr[i]; c < a->rowptr[i + 1]; ++c) {
        if (c + PREFETCH < a->nnz) SFX(prefetch_edge)(a, a->col[c + PREFETCH], D, DV);
        int64_t u = a->eid ? a->eid[c] : c, j = a->col[c];
        SFX(edge_scores)(a, qi, j, u, D, scores, z, lz);
        for (int64_t h = 0; h < H; ++h) {
            T s = scores[h], st = a->stat[i * H + h], w, ds;
            if (norm == NORM_SOFTMAX) w = EXP(s - st);
            else if (norm == NORM_SOFTPLUS) w = EXP(SFX(log_softplus)(s) - st);
            else w = SFX(sigmoid)(s);
            const T prob = w;
            T mult = 1;
            if (a->drop.active) mult = dropout_keep(&a->drop, u, H, h) ? a->keep_scale : (T)0;
            T da = mult == (T)0 ? (T)0
                 : mult * SFX(dot)(doi + h * DV, a->v + (j * H + h) * DV, a->ev ? a->ev + (u * H + h) * DV : NULL, DV);
            if (norm == NORM_SOFTMAX) ds = prob * (da - delta[h]);
            else if (norm == NORM_SOFTPLUS) ds = (da - delta[h]) * EXP(SFX(log_sigmoid)(s) - st);
            else ds = da * prob * ((T)1 - prob);
            w = prob * mult;
            a->w_buf[c * H + h] = w;
            SFX(score_grads)(a, i, j, u, c, h, ds, D, z + h * D, lz + h * D);
            if (a->dev == a->dek && a->dek) SFX(axpy)(w, doi + h * DV, NULL, a->dek + (u * H + h) * D, D);  /* folded */
            else if (a->dev) SFX(scaled)(w, doi + h * DV, a->dev + (u * H + h) * DV, DV);
        }
    }
}

/* dk_j (head h) += the key gradient of an edge from destination row i from its ds_buf entry ds. zh: gatv2's z
   of head h. */
GA_INLINE void SFX(key_grad)(const SFX(args_t)* a, int64_t i, int64_t h, T ds, T* restrict dkjh, int64_t D,
                             const T* restrict zh) {
    const T* qih = a->q + (i * a->H + h) * D;
    if (a->score == SCORE_GAT) {
        dkjh[0] += ds;                  /* ds_buf holds the LeakyReLU input's gradient */
    } else if (a->score == SCORE_GATV2) {
        const T* restrict at = a->att + h * D;
        const T slope = a->slope;
        for (int64_t d = 0; d < D; ++d) dkjh[d] += ds * at[d] * SFX(leaky_grad)(zh[d], slope);
    } else {
        SFX(axpy)(ds * a->scale, qih, NULL, dkjh, D);
    }
}

/* Backward column pass of source j over the transpose: dk_j, dv_j. buf holds H * D values (gatv2's z of an
   edge, for every head at once). */
GA_INLINE void SFX(bwd_col)(const SFX(args_t)* a, int64_t j, int64_t D, int64_t DV, T* buf) {
    const int64_t H = a->H;
    T *dkj = a->dk + j * H * D, *dvj = a->dv + j * H * DV, *z = buf;
    memset(dkj, 0, sizeof(T) * (size_t)(H * D));
    memset(dvj, 0, sizeof(T) * (size_t)(H * DV));
    for (int64_t t = a->colptr[j]; t < a->colptr[j + 1]; ++t) {
        if (t + PREFETCH < a->nnz) SFX(prefetch_col_edge)(a, t + PREFETCH, D, DV);
        int64_t c = a->perm_t[t], i = a->row_t[t];
        if (a->score == SCORE_GATV2) SFX(gatv2_pre)(a, a->q + i * H * D, j, a->eid ? a->eid[c] : c, D, z);
        for (int64_t h = 0; h < H; ++h) {
            T ds = a->ds_buf[c * H + h], w = a->w_buf[c * H + h];
            if (ds != (T)0) SFX(key_grad)(a, i, h, ds, dkj + h * D, D, z + h * D);
            if (w != (T)0) SFX(axpy)(w, a->dout + (i * H + h) * DV, NULL, dvj + h * DV, DV);
        }
    }
}

/* Calls ROW(a, index, D, DV, extra...) with constant widths for the common head sizes (and GAT's D = 1). */
#define GA_WIDTHS(ROW, a, index, D, DV, ...)                                                              \
    do {                                                                                                \
        if (D == DV && D == 16) ROW(a, index, 16, 16, ##__VA_ARGS__);                                   \
        else if (D == DV && D == 32) ROW(a, index, 32, 32, ##__VA_ARGS__);                              \
        else if (D == DV && D == 64) ROW(a, index, 64, 64, ##__VA_ARGS__);                              \
        else if (D == DV && D == 8) ROW(a, index, 8, 8, ##__VA_ARGS__);                                 \
        else if (D == DV && D == 128) ROW(a, index, 128, 128, ##__VA_ARGS__);                           \
        else if (D == 1 && DV == 8) ROW(a, index, 1, 8, ##__VA_ARGS__);      /* GAT: scores of width 1 */ \
        else if (D == 1 && DV == 16) ROW(a, index, 1, 16, ##__VA_ARGS__);                               \
        else if (D == 1 && DV == 32) ROW(a, index, 1, 32, ##__VA_ARGS__);                               \
        else if (D == 1 && DV == 64) ROW(a, index, 1, 64, ##__VA_ARGS__);                               \
        else ROW(a, index, D, DV, ##__VA_ARGS__);                                                       \
    } while (0)

void SFX(ga_attention_fwd)(ga_call_t* c) {
    const SFX(args_t) a = SFX(args_of)(c);
    const int64_t H = c->heads, D = c->dim, DV = c->dim_v, n_dst = c->n_dst, nthreads = c->nthreads;
    int failed = 0;
    _Pragma("omp parallel num_threads(nthreads) if(nthreads > 1) reduction(|:failed)")
    {
        T* buf = (T*)malloc(sizeof(T) * (size_t)FWD_BUF(H, D, DV));
        failed |= buf == NULL;
        _Pragma("omp for schedule(dynamic, 32)")
        for (int64_t i = 0; i < n_dst; ++i)
            if (buf) GA_WIDTHS(SFX(fwd_row), &a, i, D, DV, buf);
        free(buf);
    }
    c->error = failed;
}

void SFX(ga_attention_bwd)(ga_call_t* c) {
    const SFX(args_t) a = SFX(args_of)(c);
    const int64_t H = c->heads, D = c->dim, DV = c->dim_v, n_dst = c->n_dst, n_src = c->n_src;
    const int64_t nthreads = c->nthreads;
    int failed = 0;
    _Pragma("omp parallel num_threads(nthreads) if(nthreads > 1) reduction(|:failed)")
    {
        T* buf = (T*)malloc(sizeof(T) * (size_t)BWD_BUF(H, D));
        failed |= buf == NULL;
        _Pragma("omp for schedule(dynamic, 32)")
        for (int64_t i = 0; i < n_dst; ++i)
            if (buf) GA_WIDTHS(SFX(bwd_row), &a, i, D, DV, buf);
        free(buf);
    }
    c->error = failed;
    if (failed) return;
    _Pragma("omp parallel num_threads(nthreads) if(nthreads > 1) reduction(|:failed)")
    {
        T* buf = (T*)malloc(sizeof(T) * (size_t)(H * D));
        failed |= buf == NULL;
        _Pragma("omp for schedule(dynamic, 32)")
        for (int64_t j = 0; j < n_src; ++j)
            if (buf) GA_WIDTHS(SFX(bwd_col), &a, j, D, DV, buf);
        free(buf);
    }
    c->error = failed;
    if (failed) return;
    if (a.datt) {                       /* att's gradient: the per-row sums, in row order (deterministic) */
        memset(a.datt, 0, sizeof(T) * (size_t)(H * D));
        for (int64_t i = 0; i < n_dst; ++i)
            for (int64_t t = 0; t < H * D; ++t) a.datt[t] += a.datt_rows[i * H * D + t];
    }
}

/* Dropout factors of dense blocks, out [G, H, n, n]: entry (g, h, r, c) is keep_scale if the edge
   row_edge[g * n + r] + c (user id) is kept for head h, else 0; 0 for padding (r or c >= size[g]).
   A row whose 64-bit counters share their high half (all rows below 2^32, and all but a few above)
   folds it into key1 once and forms the low halves modulo 2^32 directly, so that the inner loop is
   branch-free uint32 arithmetic the compiler vectorises; a row that crosses a multiple of 2^32 takes
   the per-counter path. */
void SFX(ga_dropout_blocks)(int64_t G, int64_t n, int64_t H, const int64_t* row_edge, const int64_t* size,
                            int64_t seed, int64_t threshold, double keep_scale, T* out) {
    const dropout_t d = dropout_init(seed, threshold);
    const T kept = (T)keep_scale;
    for (int64_t g = 0; g < G; ++g)
        for (int64_t h = 0; h < H; ++h)
            for (int64_t r = 0; r < n; ++r) {
                T* restrict o = out + ((g * H + h) * n + r) * n;
                const uint64_t first = (uint64_t)row_edge[g * n + r] * (uint64_t)H + (uint64_t)h;
                const uint64_t last = first + (uint64_t)(n > 0 ? n - 1 : 0) * (uint64_t)H;
                const int64_t valid = r < size[g] ? size[g] : 0;
                if ((first >> 32) == (last >> 32)) {
                    const uint32_t start = (uint32_t)first + d.key0, key1 = d.key1 ^ mix32((uint32_t)(first >> 32));
                    for (int64_t c = 0; c < n; ++c) {
                        uint32_t u = mix32(mix32(start + (uint32_t)c * (uint32_t)H) ^ key1);
                        o[c] = (u >> 8) >= d.threshold && c < valid ? kept : (T)0;
                    }
                } else {
                    for (int64_t c = 0; c < n; ++c)
                        o[c] = c < valid && dropout_keep_counter(&d, first + (uint64_t)c * (uint64_t)H) ? kept : (T)0;
                }
            }
}

/* Element-wise dropout of n contiguous values, out[t] = keep(t) ? x[t] * keep_scale : 0, with t the element
   index as the 64-bit counter (sparse_kernels/dropout.py: elementwise_keep). The backward is the same call on
   the gradient with the same seed. Blocks of DROP_BLOCK elements never cross a multiple of 2^32 (DROP_BLOCK
   divides it), so each folds its counters' high half into key1 once and the inner loop is branch-free: uint32
   arithmetic, then the bits of x[t] * keep_scale ANDed with an all-ones or all-zeros mask (a select of a
   product is not if-converted, as the product might trap), which the compiler vectorises; x may be out. */
void SFX(ga_dropout)(int64_t n, const T* x, int64_t seed, int64_t threshold, double keep_scale, T* out,
                     int64_t nthreads) {
    const dropout_t d = dropout_init(seed, threshold);
    const T kept = (T)keep_scale;
    const int64_t blocks = (n + DROP_BLOCK - 1) / DROP_BLOCK;
    _Pragma("omp parallel for schedule(static) num_threads(nthreads) if(nthreads > 1 && n > 4 * DROP_BLOCK)")
    for (int64_t b = 0; b < blocks; ++b) {
        const int64_t first = b * DROP_BLOCK, len = n - first < DROP_BLOCK ? n - first : DROP_BLOCK;
        const uint32_t start = (uint32_t)first + d.key0, key1 = d.key1 ^ mix32((uint32_t)((uint64_t)first >> 32));
        const uint32_t thr = d.threshold;
        const T* xs = x + first;
        T* os = out + first;
        for (int64_t t = 0; t < len; ++t) {
            const uint32_t u = mix32(mix32(start + (uint32_t)t) ^ key1);
            const T scaled = xs[t] * kept;
            BITS bits;
            memcpy(&bits, &scaled, sizeof bits);
            bits &= -(BITS)((u >> 8) >= thr);          /* dropped: +0 */
            memcpy(os + t, &bits, sizeof bits);
        }
    }
}
