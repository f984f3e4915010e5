/* liandan/probe.h — linear probes: what a frozen encoder's features know, measured by a
 * multinomial logistic regression trained on them, next to the same regression on simple
 * features (amino-acid composition, one-hot residues) and the majority class.
 *
 * Protein tasks read the TSV files of ../shared/data/protein (their SOURCE.md):
 *   deeploc           10-class subcellular localisation per sequence: train = split "train",
 *                     test = split "test" (setHARD); Cytoplasm-Nucleus items are dropped;
 *   deeploc-membrane  membrane-bound (M) vs soluble (S): train = "train", test = "dev"
 *                     (setHARD has no membrane labels); U items are dropped;
 *   ss3               3-state secondary structure (H, E, C) per residue of FLIP's "sampled"
 *                     split: train = "train", test = "test"; unresolved residues are skipped.
 * Sequences are cut to max_len tokens ([CLS] + residues + [SEP]). */
#ifndef LIANDAN_PROBE_H
#define LIANDAN_PROBE_H

#include "liandan/encoder.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ld_logreg_params {
    int iters;   /* full-batch Adam steps (300) */
    float lr;    /* 0.05 */
    float l2;    /* weight decay on W (1e-4) */
} ld_logreg_params;
ld_logreg_params ld_logreg_default_params(void);

/* Fits softmax regression on Xtr [ntr, d] (standardised with the training mean and spread)
 * and labels ytr in 0..k-1 (-100: skipped), then writes the predicted class of each row of
 * Xte [nte, d] to pred[nte]. Deterministic. */
ld_status ld_logreg_fit_predict(ld_ctx *ctx, const float *Xtr, const int32_t *ytr, int64_t ntr, const float *Xte,
                                int64_t nte, int64_t d, int64_t k, const ld_logreg_params *p, int32_t *pred);

typedef enum ld_protein_task { LD_PROBE_DEEPLOC = 0, LD_PROBE_DEEPLOC_MEMBRANE, LD_PROBE_SS3 } ld_protein_task;
/* "deeploc", "deeploc-membrane", "ss3" -> task; false for other names. */
bool ld_protein_task_from_name(const char *name, ld_protein_task *out);

typedef struct ld_probe_task_params {
    ld_protein_task task;
    int64_t max_train, max_test; /* sequences used (0 = all) */
    int64_t max_len;             /* tokens per sequence, specials included (512) */
    ld_pooling pooling;          /* sequence tasks: how residues become one vector (mean) */
    uint64_t layers;             /* the encoder's layers whose features are read, side by side (bits as
                                  * ld_encoder_embed_layers'); 0 = the final hidden states only */
    ld_logreg_params fit;
} ld_probe_task_params;
ld_probe_task_params ld_probe_task_default_params(ld_protein_task task);

typedef struct ld_probe_report {
    int64_t n_train, n_test;     /* examples: sequences or residues */
    int64_t n_classes;
    double majority;             /* accuracy of always answering the training data's most frequent class */
    double baseline;             /* the probe on simple features (composition / one-hot) */
    const char *baseline_name;
    double model;                /* the probe on the encoder's features (NAN without a model) */
    double seconds;
} ld_probe_report;

/* Runs the task on the TSV at path: the baselines always, the encoder's probe when m is given
 * (tok is then its tokenizer, mapping residue letters to ids). Errors name file:line. */
ld_status ld_protein_probe(ld_ctx *ctx, ld_encoder *m, const ld_tokenizer *tok, const char *path,
                           const ld_probe_task_params *p, ld_probe_report *out);

#ifdef __cplusplus
}
#endif
#endif
