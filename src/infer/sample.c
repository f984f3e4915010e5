/* infer/sample.c — turning logits into a token: repetition penalty, temperature, top-k,
 * top-p (nucleus) and min-p filtering, then one draw from the counter-based RNG. */
#define _GNU_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/infer.h"

ld_sample_params ld_sample_default_params(void) {
    ld_sample_params p = {.temperature = 0.8f, .top_k = 0, .top_p = 0.95f, .min_p = 0.0f, .repetition_penalty = 1.0f,
                          .repetition_window = 64};
    return p;
}

size_t ld_sample_scratch_bytes(int64_t V) {
    return (size_t)V * (2 * sizeof(float) + sizeof(int32_t)) + 64;
}

/* Candidates are indices sorted by prob descending, ties by index (qsort_r: reentrant). */
static int by_prob_desc(const void *a, const void *b, void *probs) {
    const float *prob = probs;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float pi = prob[i], pj = prob[j];
    if (pi != pj) return pi > pj ? -1 : 1;
    return (i > j) - (i < j);
}

/* Moves the k largest (by p) of idx[0..n) to the front (unordered); quickselect. */
static void select_top(int32_t *idx, int64_t n, int64_t k, const float *p) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = p[idx[(lo + hi) / 2]];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (p[idx[i]] > pivot) i++;
            while (p[idx[j]] < pivot) j--;
            if (i <= j) {
                int32_t t = idx[i];
                idx[i++] = idx[j];
                idx[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* The first index of the largest of z[0..V) under `>` (NaN never wins; a NaN z[0] gives 0):
 * the result of `best = 0; for v: if (z[v] > z[best]) best = v`. Blocks of 256 are reduced
 * 16 lanes at a time (plain comparisons, which the compiler turns into vector max
 * instructions), and only the block that holds the largest value is searched for its index:
 * a decode step samples 16 rows of a 50k vocabulary, where the one-at-a-time loop took a tenth
 * of the step. */
static int32_t argmax(const float *z, int64_t V) {
    enum { LANES = 16, BLOCK = 256 };
    if (!(z[0] == z[0])) return 0;
    float best = z[0];
    int64_t at = 0; /* the block holding `best` */
    for (int64_t b = 0; b + BLOCK <= V; b += BLOCK) {
        float m[LANES];
        for (int j = 0; j < LANES; j++) m[j] = -INFINITY;
        for (int64_t v = b; v < b + BLOCK; v += LANES)
            for (int j = 0; j < LANES; j++) m[j] = z[v + j] > m[j] ? z[v + j] : m[j];
        float bm = m[0];
        for (int j = 1; j < LANES; j++) bm = m[j] > bm ? m[j] : bm;
        if (bm > best) best = bm, at = b;
    }
    for (int64_t v = V / BLOCK * BLOCK; v < V; v++) /* the tail */
        if (z[v] > best) best = z[v], at = v;
    for (int64_t v = at; v < V; v++)
        if (z[v] == best) return (int32_t)v;
    return 0; /* (not reached: z[at..] holds best) */
}

int32_t ld_sample_token(const float *logits, int64_t V, const ld_sample_params *prm, const int32_t *history,
                        int64_t n_history, ld_rng *rng, void *scratch) {
    ld_sample_params p = prm ? *prm : ld_sample_default_params();
    const bool penalty = p.repetition_penalty > 0 && p.repetition_penalty != 1.0f && history && n_history > 0;
    if (!penalty && (!(p.temperature > 0) || p.top_k == 1)) return argmax(logits, V); /* greedy: no copy */
    float *z = scratch, *prob = z + V;
    int32_t *idx = (int32_t *)(prob + V);
    memcpy(z, logits, (size_t)V * sizeof(float));
    if (penalty) {
        int64_t start = p.repetition_window > 0 && n_history > p.repetition_window ? n_history - p.repetition_window : 0;
        /* idx doubles as a "seen" marker so each token is penalised once */
        memset(idx, 0, (size_t)V * sizeof(int32_t));
        for (int64_t i = start; i < n_history; i++) {
            int32_t t = history[i];
            if (t < 0 || t >= V || idx[t]) continue;
            idx[t] = 1;
            z[t] = z[t] > 0 ? z[t] / p.repetition_penalty : z[t] * p.repetition_penalty;
        }
    }
    const int32_t best = argmax(z, V);
    if (!(p.temperature > 0) || p.top_k == 1) return best;

    double sum = 0;
    float zmax = z[best];
    for (int64_t v = 0; v < V; v++) {
        prob[v] = expf((z[v] - zmax) / p.temperature);
        sum += prob[v];
    }
    for (int64_t v = 0; v < V; v++) {
        prob[v] = (float)(prob[v] / sum);
        idx[v] = (int32_t)v;
    }
    int64_t n = V;
    if (p.top_k > 0 && p.top_k < n) {
        select_top(idx, n, p.top_k, prob);
        n = p.top_k;
    }
    float pmax = prob[best];
    if (p.min_p > 0) { /* keep tokens with p >= min_p * p_max (order irrelevant) */
        int64_t w = 0;
        for (int64_t i = 0; i < n; i++)
            if (prob[idx[i]] >= p.min_p * pmax) idx[w++] = idx[i];
        n = w;
    }
    if (p.top_p > 0 && p.top_p < 1) {
        qsort_r(idx, (size_t)n, sizeof *idx, by_prob_desc, prob);
        double cum = 0;
        int64_t keep = 0;
        while (keep < n) {
            cum += prob[idx[keep++]];
            if (cum >= p.top_p) break;
        }
        n = keep;
    }
    if (n <= 0) return best;
    double total = 0;
    for (int64_t i = 0; i < n; i++) total += prob[idx[i]];
    double u = (double)ld_rng_uniform(rng) * total, acc = 0;
    for (int64_t i = 0; i < n; i++) {
        acc += prob[idx[i]];
        if (u < acc) return idx[i];
    }
    return idx[n - 1];
}
