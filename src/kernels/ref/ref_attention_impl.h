/* kernels/ref/ref_attention_impl.h — scalar reference attention, written once over REAL and
 * instantiated for float (the ref table) and double (finite-difference tests). The includer
 * defines REAL and REF_FN(op). Obviously-correct loops: scores of one query row are
 * recomputed in each pass instead of stored, so nothing of size Tq x Tk is materialised.
 * Semantics: ld_attn_shape and the attention fields in kernels/kernels.h. */
#include <math.h>

/* Keys [*start, end) are visible to query i (the sliding window cuts the start). */
static inline int64_t REF_FN(attn_visible)(const ld_attn_shape *s, int64_t b, int64_t i, int64_t *start) {
    int64_t end = s->Tk;
    if (s->key_len && s->key_len[b] < end) end = s->key_len[b] < 0 ? 0 : s->key_len[b];
    if (s->causal && s->q_offset + i + 1 < end) end = s->q_offset + i + 1;
    *start = s->window > 0 && s->q_offset + i + 1 - s->window > 0 ? s->q_offset + i + 1 - s->window : 0;
    if (end < *start) end = *start;
    return end;
}

static inline REAL REF_FN(attn_score)(const ld_attn_shape *s, const REAL *q, const REAL *k, int64_t b, int64_t h,
                                      int64_t i, int64_t j) {
    int64_t D = s->D, hk = h / (s->Hq / s->Hkv);
    const REAL *qi = q + ((b * s->Tq + i) * s->Hq + h) * D, *kj = k + ((b * s->Tk + j) * s->Hkv + hk) * D;
    REAL dot = 0;
    for (int64_t d = 0; d < D; d++) dot += qi[d] * kj[d];
    dot *= (REAL)s->scale;
    return s->softcap > 0 ? (REAL)((double)s->softcap * tanh((double)dot / (double)s->softcap)) : dot;
}

/* d(score)/d(scaled dot) of the soft-cap at a capped score sc: 1 - tanh^2 = 1 - (sc/cap)^2. */
static inline REAL REF_FN(attn_cap_slope)(const ld_attn_shape *s, REAL sc) {
    if (s->softcap <= 0) return 1;
    double t = (double)sc / (double)s->softcap;
    return (REAL)(1.0 - t * t);
}

void REF_FN(attention_fwd)(REAL *out, REAL *lse, const REAL *q, const REAL *k, const REAL *v, const ld_attn_shape *s) {
    int64_t D = s->D;
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->Hq; h++) {
            int64_t hk = h / (s->Hq / s->Hkv);
            for (int64_t i = 0; i < s->Tq; i++) {
                int64_t start, end = REF_FN(attn_visible)(s, b, i, &start);
                REAL *o = out + ((b * s->Tq + i) * s->Hq + h) * D;
                REAL *l = lse + (b * s->Hq + h) * s->Tq + i;
                for (int64_t d = 0; d < D; d++) o[d] = 0;
                if (end == start) {
                    *l = (REAL)-INFINITY;
                    continue;
                }
                REAL mx = (REAL)-INFINITY, sum = 0;
                for (int64_t j = start; j < end; j++) {
                    REAL sc = REF_FN(attn_score)(s, q, k, b, h, i, j);
                    if (sc > mx) mx = sc;
                }
                for (int64_t j = start; j < end; j++) {
                    REAL p = exp(REF_FN(attn_score)(s, q, k, b, h, i, j) - mx);
                    sum += p;
                    const REAL *vj = v + ((b * s->Tk + j) * s->Hkv + hk) * D;
                    for (int64_t d = 0; d < D; d++) o[d] += p * vj[d];
                }
                for (int64_t d = 0; d < D; d++) o[d] /= sum;
                *l = mx + log(sum);
            }
        }
}

size_t REF_FN(attention_bwd_scratch)(const ld_attn_shape *s) {
    (void)s;
    return 0;
}

void REF_FN(attention_bwd)(REAL *dq, REAL *dk, REAL *dv, const REAL *dout, const REAL *out, const REAL *lse,
                           const REAL *q, const REAL *k, const REAL *v, const ld_attn_shape *s, void *scratch) {
    (void)scratch;
    int64_t D = s->D;
    REAL scale = (REAL)s->scale;
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->Hq; h++) {
            int64_t hk = h / (s->Hq / s->Hkv);
            for (int64_t i = 0; i < s->Tq; i++) {
                int64_t start, end = REF_FN(attn_visible)(s, b, i, &start);
                if (end == start) continue;
                const REAL *doi = dout + ((b * s->Tq + i) * s->Hq + h) * D, *oi = out + ((b * s->Tq + i) * s->Hq + h) * D;
                const REAL *qi = q + ((b * s->Tq + i) * s->Hq + h) * D;
                REAL l = lse[(b * s->Hq + h) * s->Tq + i], Di = 0;
                for (int64_t d = 0; d < D; d++) Di += doi[d] * oi[d];
                for (int64_t j = start; j < end; j++) {
                    const REAL *kj = k + ((b * s->Tk + j) * s->Hkv + hk) * D, *vj = v + ((b * s->Tk + j) * s->Hkv + hk) * D;
                    REAL sc = REF_FN(attn_score)(s, q, k, b, h, i, j);
                    REAL p = exp(sc - l), dp = 0;
                    for (int64_t d = 0; d < D; d++) dp += doi[d] * vj[d];
                    REAL ds = p * (dp - Di) * scale * REF_FN(attn_cap_slope)(s, sc);
                    if (dv) {
                        REAL *dvj = dv + ((b * s->Tk + j) * s->Hkv + hk) * D;
                        for (int64_t d = 0; d < D; d++) dvj[d] += p * doi[d];
                    }
                    if (dk) {
                        REAL *dkj = dk + ((b * s->Tk + j) * s->Hkv + hk) * D;
                        for (int64_t d = 0; d < D; d++) dkj[d] += ds * qi[d];
                    }
                    if (dq) {
                        REAL *dqi = dq + ((b * s->Tq + i) * s->Hq + h) * D;
                        for (int64_t d = 0; d < D; d++) dqi[d] += ds * kj[d];
                    }
                }
            }
        }
}
