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

/* ---- fine-tuning an encoder for sequence classification ------------------------------ */
/* BERT's recipe: rows [CLS] text [SEP] (cut to seq_len), the pooled state (cls by default)
 * through a new linear head [n_labels, C], cross-entropy, every weight of the encoder and the
 * head trained by AdamW (linear warmup over warmup_share of the steps, then linear decay to 0,
 * gradient norm clipped at 1), then the accuracy and macro-F1 on the test file beside the
 * majority class. The data files are fine-tuning classification files (a .tsv with a header,
 * or .jsonl: see docs/training.md); labels are the training file's, sorted; a test label the
 * training file lacks is an error naming file:line. The encoder is changed in place (the head
 * is not kept). */
typedef struct ld_classify_ft_params {
    const char *train_path, *test_path;
    const char *text_field;  /* "text_a" */
    const char *label_field; /* "label" */
    int64_t max_train, max_test; /* examples read (0 = all) */
    int64_t seq_len;             /* tokens per row, [CLS] and [SEP] included (128) */
    int64_t batch_size;          /* 16 */
    int epochs;                  /* 1 */
    float lr;                    /* peak learning rate (1e-4) */
    float weight_decay;          /* 0.01 */
    float warmup_share;          /* 0.1 */
    ld_pooling pooling;          /* LD_POOL_CLS */
    uint64_t seed;               /* shuffling and the head's initialisation (1) */
    /* after every step (may be NULL): the step, the steps in all, the batch's loss */
    void (*on_step)(void *user, int64_t step, int64_t steps, double loss);
    void *user;
} ld_classify_ft_params;
ld_classify_ft_params ld_classify_ft_default_params(void);

typedef struct ld_classify_ft_report {
    int64_t n_train, n_test, n_labels, steps, truncated; /* truncated: examples cut to seq_len */
    double final_loss;                /* mean training loss of the last 10 % of the steps */
    double accuracy, macro_f1;        /* on the test file */
    double majority;                  /* always the training file's most frequent label */
    double seconds;
} ld_classify_ft_report;

/* Fine-tunes m (its tokenizer tok: [CLS] / [SEP] / [PAD] are looked up as for the masked LM)
 * as above and scores it on p->test_path. */
ld_status ld_encoder_classify_finetune(ld_encoder *m, const ld_tokenizer *tok, const ld_classify_ft_params *p,
                                       ld_classify_ft_report *out);

#ifdef __cplusplus
}
#endif
#endif
