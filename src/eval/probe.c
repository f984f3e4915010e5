/* eval/probe.c — linear probes (liandan/probe.h): softmax regression trained by full-batch
 * Adam on standardised features, and the protein tasks (DeepLoc localisation and membrane,
 * FLIP SS3) with their composition / one-hot baselines and the frozen encoder's features. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/team.h"
#include "kernels/kernels.h"
#include "liandan/io.h"
#include "eval/probe_internal.h"

ld_logreg_params ld_logreg_default_params(void) {
    return (ld_logreg_params){.iters = 300, .lr = 0.05f, .l2 = 1e-4f};
}

/* ---- softmax regression -------------------------------------------------------------- */

ld_status ld_logreg_fit_predict(ld_ctx *ctx, const float *Xtr, const int32_t *ytr, int64_t ntr, const float *Xte,
                                int64_t nte, int64_t d, int64_t k, const ld_logreg_params *p, int32_t *pred) {
    LD_TEAM_SCOPE(ctx);
    ld_logreg_params dp = ld_logreg_default_params();
    if (!p) p = &dp;
    if (!Xtr || !ytr || !Xte || !pred || d <= 0 || k < 2 || ntr <= 0 || nte < 0)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "logistic regression: bad arguments");
    const ld_kernels *K = ld_kernels_get(LD_BACKEND_AUTO);
    int64_t n = 0;
    for (int64_t i = 0; i < ntr; i++) {
        if (ytr[i] == -100) continue;
        if (ytr[i] < 0 || ytr[i] >= k)
            return ld_error(ctx, LD_ERR_INVALID_ARG, "logistic regression: label %d of row %lld outside 0..%lld", ytr[i],
                            (long long)i, (long long)k - 1);
        n++;
    }
    if (n == 0) return ld_error(ctx, LD_ERR_INVALID_ARG, "logistic regression: no labelled training rows");
    size_t nd = (size_t)(n > nte ? n : nte) * (size_t)d;
    float *X = ld_alloc(ctx, nd * sizeof *X), *Z = ld_alloc(ctx, (size_t)((n > nte ? n : nte) * k) * sizeof *Z);
    float *W = ld_calloc(ctx, (size_t)(k * d + k), sizeof *W), *G = ld_alloc(ctx, (size_t)(k * d + k) * sizeof *G);
    float *m1 = ld_calloc(ctx, (size_t)(k * d + k), sizeof *m1), *m2 = ld_calloc(ctx, (size_t)(k * d + k), sizeof *m2);
    double *mu = ld_calloc(ctx, (size_t)d, sizeof *mu), *sd = ld_calloc(ctx, (size_t)d, sizeof *sd);
    int32_t *y = ld_alloc(ctx, (size_t)n * sizeof *y);
    ld_status st = X && Z && W && G && m1 && m2 && mu && sd && y ? LD_OK : ld_ctx_status(ctx);
    if (!st) {
        for (int64_t i = 0, r = 0; i < ntr; i++) {
            if (ytr[i] == -100) continue;
            for (int64_t j = 0; j < d; j++) mu[j] += Xtr[i * d + j];
            y[r++] = ytr[i];
        }
        for (int64_t j = 0; j < d; j++) mu[j] /= (double)n;
        for (int64_t i = 0; i < ntr; i++)
            for (int64_t j = 0; ytr[i] != -100 && j < d; j++) sd[j] += (Xtr[i * d + j] - mu[j]) * (Xtr[i * d + j] - mu[j]);
        for (int64_t j = 0; j < d; j++) sd[j] = sqrt(sd[j] / (double)n) + 1e-6;
        for (int64_t i = 0, r = 0; i < ntr; i++) {
            if (ytr[i] == -100) continue;
            for (int64_t j = 0; j < d; j++) X[r * d + j] = (float)((Xtr[i * d + j] - mu[j]) / sd[j]);
            r++;
        }
        float *b = W + k * d, *gb = G + k * d;
        for (int it = 1; it <= p->iters; it++) {
            K->gemm_f32(false, true, n, k, d, 1.0f, X, d, W, d, 0.0f, Z, k); /* Z = X W^T */
            memset(gb, 0, (size_t)k * sizeof *gb);
            for (int64_t r = 0; r < n; r++) { /* Z <- (softmax(Z + b) - onehot(y)) / n */
                float *z = Z + r * k, mx = -INFINITY;
                double s = 0;
                for (int64_t c = 0; c < k; c++) z[c] += b[c], mx = z[c] > mx ? z[c] : mx;
                for (int64_t c = 0; c < k; c++) s += (z[c] = expf(z[c] - mx));
                for (int64_t c = 0; c < k; c++) z[c] = (float)((z[c] / s - (c == y[r])) / (double)n), gb[c] += z[c];
            }
            K->gemm_f32(true, false, k, d, n, 1.0f, Z, k, X, d, 0.0f, G, d); /* dW = dZ^T X */
            for (int64_t i = 0; i < k * d; i++) G[i] += p->l2 * W[i];
            double c1 = 1 - pow(0.9, it), c2 = 1 - pow(0.999, it);
            for (int64_t i = 0; i < k * d + k; i++) {
                m1[i] = 0.9f * m1[i] + 0.1f * G[i];
                m2[i] = 0.999f * m2[i] + 0.001f * G[i] * G[i];
                W[i] -= (float)(p->lr * (m1[i] / c1) / (sqrt(m2[i] / c2) + 1e-8));
            }
        }
        for (int64_t i = 0; i < nte; i++)
            for (int64_t j = 0; j < d; j++) X[i * d + j] = (float)((Xte[i * d + j] - mu[j]) / sd[j]);
        if (nte) K->gemm_f32(false, true, nte, k, d, 1.0f, X, d, W, d, 0.0f, Z, k);
        for (int64_t r = 0; r < nte; r++) {
            int64_t best = 0;
            for (int64_t c = 1; c < k; c++)
                if (Z[r * k + c] + b[c] > Z[r * k + best] + b[best]) best = c;
            pred[r] = (int32_t)best;
        }
    }
    ld_free(ctx, X), ld_free(ctx, Z), ld_free(ctx, W), ld_free(ctx, G), ld_free(ctx, m1), ld_free(ctx, m2);
    ld_free(ctx, mu), ld_free(ctx, sd), ld_free(ctx, y);
    return st;
}

/* ---- the protein tasks --------------------------------------------------------------- */

static const char *const deeploc_classes[] = {"Nucleus", "Cytoplasm", "Extracellular", "Mitochondrion",
                                              "Cell.membrane", "Endoplasmic.reticulum", "Plastid",
                                              "Golgi.apparatus", "Lysosome/Vacuole", "Peroxisome"};
enum { N_DEEPLOC = 10 };
static const char aa20[] = "ACDEFGHIKLMNPQRSTVWY";

bool ld_protein_task_from_name(const char *name, ld_protein_task *out) {
    static const char *const names[] = {"deeploc", "deeploc-membrane", "ss3"};
    for (int i = 0; name && i < 3; i++)
        if (!strcmp(name, names[i])) return *out = (ld_protein_task)i, true;
    return false;
}

ld_probe_task_params ld_probe_task_default_params(ld_protein_task task) {
    ld_probe_task_params p = {.task = task, .max_len = 512, .pooling = LD_POOL_MEAN, .fit = ld_logreg_default_params()};
    if (task == LD_PROBE_SS3) p.max_train = 500;
    return p;
}

typedef probe_example example;

static int aa_index(char c) {
    const char *p = strchr(aa20, c);
    return c && p ? (int)(p - aa20) : 20;
}

/* Column index of `name` in the header fields, or -1. */
static int column(char **fields, int nf, const char *name) {
    for (int i = 0; i < nf; i++)
        if (!strcmp(fields[i], name)) return i;
    return -1;
}

enum { MAX_COLUMNS = 64 };

/* Splits line at tabs into fields[]; the number of fields, or -1 when there are more than cap. */
static int split_tabs(char *line, char **fields, int cap) {
    int n = 0;
    for (char *p = line;;) {
        if (n == cap) return -1;
        fields[n++] = p;
        char *tab = strchr(p, '\t');
        if (!tab) return n;
        *tab = 0, p = tab + 1;
    }
}

/* A byte of the file for a message: the character, or its hex code when it is not printable. */
static const char *show_byte(char c, char buf[8]) {
    unsigned char u = (unsigned char)c;
    if (u > 32 && u < 127) snprintf(buf, 8, "'%c'", c);
    else snprintf(buf, 8, "0x%02x", u);
    return buf;
}

/* Checks that every byte of field (at byte offset off of its line) is in `allowed`, mapping
 * lowercase letters to uppercase first when upcase is set. */
static ld_status check_chars(ld_ctx *ctx, const char *name, int64_t lineno, const char *line, char *field,
                             const char *what, const char *allowed, bool upcase) {
    for (char *c = field; *c; c++) {
        if (upcase && *c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
        if (!strchr(allowed, *c)) {
            char b[8];
            return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld:%lld: %s in the %s column (expected %s)", name, (long long)lineno,
                            (long long)(c - line) + 1, show_byte(*c, b), what,
                            upcase ? "letters A-Z" : !strcmp(allowed, "HEC") ? "H, E or C" : "0 or 1");
        }
    }
    return LD_OK;
}

static const char letters[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

ld_status probe_data_parse(ld_ctx *ctx, const char *name, char *text, size_t len, const ld_probe_task_params *p,
                           probe_data *d) {
    bool ss3 = p->task == LD_PROBE_SS3, membrane = p->task == LD_PROBE_DEEPLOC_MEMBRANE;
    d->ex = NULL, d->n = d->n_train = d->n_test = 0;
    int64_t cap = 1;
    for (size_t i = 0; i < len; i++) cap += text[i] == '\n';
    if (!(d->ex = ld_calloc(ctx, (size_t)cap, sizeof *d->ex))) return ld_ctx_status(ctx);
    char *fields[MAX_COLUMNS], *end = text + len;
    int c_seq = -1, c_split = -1, c_lab = -1, c_mask = -1, need = -1;
    int64_t lineno = 0, max_res = p->max_len - 2;
    bool header = true;
    for (char *line = text; line < end;) {
        char *nl = memchr(line, '\n', (size_t)(end - line)), *eol = nl ? nl : end;
        lineno++;
        char *nul = memchr(line, 0, (size_t)(eol - line));
        if (nul)
            return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld:%lld: a NUL byte", name, (long long)lineno,
                            (long long)(nul - line) + 1);
        *eol = 0;
        if (eol > line && eol[-1] == '\r') eol[-1] = 0;
        char *next = nl ? nl + 1 : end;
        if (!*line) { /* a blank line */
            line = next;
            continue;
        }
        int nf = split_tabs(line, fields, MAX_COLUMNS);
        if (nf < 0)
            return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: more than %d columns", name, (long long)lineno, MAX_COLUMNS);
        if (header) {
            header = false;
            c_seq = column(fields, nf, "sequence"), c_split = column(fields, nf, "split");
            c_lab = column(fields, nf, ss3 ? "ss3" : membrane ? "membrane" : "location");
            c_mask = ss3 ? column(fields, nf, "resolved_mask") : -2;
            if (c_seq < 0 || c_split < 0 || c_lab < 0 || c_mask == -1)
                return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: the header lacks %s columns (sequence, split, %s)", name,
                                (long long)lineno, ss3 ? "the FLIP SS3" : "the DeepLoc",
                                ss3 ? "ss3, resolved_mask" : membrane ? "membrane" : "location");
            need = c_seq > c_split ? c_seq : c_split;
            need = need > c_lab ? need : c_lab;
            need = need > c_mask ? need : c_mask;
            line = next;
            continue;
        }
        if (nf <= need)
            return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: %d column(s), the header names %d", name, (long long)lineno, nf,
                            need + 1);
        const char *split = fields[c_split];
        char *lab = fields[c_lab], *seq = fields[c_seq];
        bool is_train = !strcmp(split, "train"), is_test = !strcmp(split, membrane ? "dev" : "test");
        example e = {.seq = seq, .len = (int64_t)strlen(seq), .test = is_test, .label = -1};
        if (e.len == 0) return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: an empty sequence", name, (long long)lineno);
        ld_status st = check_chars(ctx, name, lineno, line, seq, "sequence", letters, true);
        if (st) return st;
        if (ss3) {
            e.ss3 = lab, e.mask = fields[c_mask];
            if ((int64_t)strlen(lab) != e.len || (int64_t)strlen(e.mask) != e.len)
                return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: sequence, ss3 and resolved_mask differ in length (%lld, %zu, %zu)",
                                name, (long long)lineno, (long long)e.len, strlen(lab), strlen(e.mask));
            if ((st = check_chars(ctx, name, lineno, line, lab, "ss3", "HEC", false)) ||
                (st = check_chars(ctx, name, lineno, line, fields[c_mask], "resolved_mask", "01", false)))
                return st;
        } else if (membrane) {
            e.label = !strcmp(lab, "M") ? 1 : !strcmp(lab, "S") ? 0 : -1;
            if (e.label < 0 && strcmp(lab, "U"))
                return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: membrane label '%.40s' is not M, S or U", name,
                                (long long)lineno, lab);
        } else {
            for (int c = 0; c < N_DEEPLOC; c++)
                if (!strcmp(lab, deeploc_classes[c])) e.label = c;
            if (e.label < 0 && strcmp(lab, "Cytoplasm-Nucleus"))
                return ld_error(ctx, LD_ERR_FORMAT, "%s:%lld: unknown location '%.40s'", name, (long long)lineno, lab);
        }
        if (e.len > max_res) e.len = max_res;
        bool keep = (is_train || is_test) && (ss3 || e.label >= 0) && e.len > 0;
        if (keep && is_train && p->max_train > 0 && d->n_train >= p->max_train) keep = false;
        if (keep && is_test && p->max_test > 0 && d->n_test >= p->max_test) keep = false;
        if (keep) d->ex[d->n++] = e, is_train ? d->n_train++ : d->n_test++;
        line = next;
    }
    if (header) return ld_error(ctx, LD_ERR_FORMAT, "%s: an empty file (no header line)", name);
    if (d->n_train == 0 || d->n_test == 0)
        return ld_error(ctx, LD_ERR_FORMAT, "%s: no usable %s examples for this task (%lld training, %lld test)", name,
                        d->n_train == 0 ? "training" : "test", (long long)d->n_train, (long long)d->n_test);
    return LD_OK;
}

ld_status probe_data_read(ld_ctx *ctx, const char *path, const ld_probe_task_params *p, probe_data *d) {
    size_t len;
    d->ex = NULL, d->text = NULL;
    ld_status st = ld_file_read(ctx, path, (size_t)256 << 20, &d->text, &len);
    return st ? st : probe_data_parse(ctx, path, d->text, len, p, d);
}

void probe_data_free(ld_ctx *ctx, probe_data *d) {
    ld_free(ctx, d->ex), ld_free(ctx, d->text);
    d->ex = NULL, d->text = NULL;
}

/* Rows of features for every example (sequence tasks) or residue (ss3): the baseline's when
 * m is NULL, else the encoder's. X is [rows, d] (ld_alloc'd), y the labels, te whether a row
 * is a test row. */
static ld_status features(ld_ctx *ctx, ld_encoder *m, const ld_tokenizer *tok, const probe_data *d,
                          const ld_probe_task_params *p, float **X, int32_t **y, bool **te, int64_t *rows, int64_t *dim) {
    bool ss3 = p->task == LD_PROBE_SS3;
    uint64_t layers = 0;
    int64_t D = 21, R = 0;
    if (m) {
        const ld_encoder_config *c = ld_encoder_config_of(m);
        layers = p->layers ? p->layers : (uint64_t)1 << c->n_layers;
        D = c->hidden_size * __builtin_popcountll(layers);
    }
    for (int64_t i = 0; i < d->n; i++) R += ss3 ? d->ex[i].len : 1;
    *X = ld_calloc(ctx, (size_t)(R * D), sizeof **X), *y = ld_alloc(ctx, (size_t)R * sizeof **y);
    *te = ld_alloc(ctx, (size_t)R * sizeof **te), *rows = R, *dim = D;
    int32_t *ids = ld_alloc(ctx, (size_t)(p->max_len + 2) * sizeof *ids);
    float *h = m ? ld_alloc(ctx, (size_t)((p->max_len + 2) * D) * sizeof *h) : NULL;
    if (!*X || !*y || !*te || !ids || (m && !h)) {
        ld_free(ctx, ids), ld_free(ctx, h);
        return ld_ctx_status(ctx);
    }
    ld_mlm_specials sp = {0};
    ld_status st = m ? ld_mlm_specials_of(ctx, tok, &sp) : LD_OK;
    int64_t r = 0;
    for (int64_t i = 0; i < d->n && !st; i++) {
        const example *e = &d->ex[i];
        if (m) { /* [CLS] residues [SEP] through the encoder */
            size_t n = 0;
            st = ld_tokenizer_encode(tok, e->seq, (size_t)e->len, LD_ENCODE_SPECIAL_AS_TEXT, ids + 1, (size_t)p->max_len, &n);
            if (!st && (int64_t)n != e->len)
                st = ld_error(ctx, LD_ERR_INVALID_ARG, "probe: the tokenizer is not one token per residue (%zu tokens for %lld residues)",
                              n, (long long)e->len);
            if (st) break;
            ids[0] = sp.cls, ids[e->len + 1] = sp.sep;
            int64_t T = e->len + 2;
            if (ss3) st = ld_encoder_hidden_layers(m, ids, T, layers, h);
            else {
                const int32_t *row = ids;
                st = ld_encoder_embed_layers(m, &row, &T, 1, p->pooling, layers, *X + r * D);
            }
            if (st) break;
        }
        if (ss3) {
            for (int64_t j = 0; j < e->len; j++, r++) {
                if (m) memcpy(*X + r * D, h + (j + 1) * D, (size_t)D * sizeof(float));
                else (*X)[r * D + aa_index(e->seq[j])] = 1; /* one-hot residue */
                char s = e->ss3[j];
                (*y)[r] = e->mask[j] != '1' ? -100 : s == 'H' ? 0 : s == 'E' ? 1 : s == 'C' ? 2 : -100;
                (*te)[r] = e->test;
            }
        } else {
            for (int64_t j = 0; !m && j < e->len; j++) (*X)[r * D + aa_index(e->seq[j])] += 1.0f / (float)e->len;
            (*y)[r] = e->label, (*te)[r] = e->test, r++;
        }
    }
    ld_free(ctx, ids), ld_free(ctx, h);
    return st;
}

/* Trains on the training rows, returns the accuracy on the labelled test rows. */
static ld_status probe_accuracy(ld_ctx *ctx, const float *X, const int32_t *y, const bool *te, int64_t R, int64_t D,
                                int64_t k, const ld_logreg_params *fit, double *acc, int64_t *ntr_out, int64_t *nte_out) {
    int64_t ntr = 0, nte = 0;
    for (int64_t r = 0; r < R; r++) {
        if (y[r] == -100) continue;
        if (te[r]) nte++;
        else ntr++;
    }
    float *Xtr = ld_alloc(ctx, (size_t)(ntr * D) * sizeof *Xtr), *Xte = ld_alloc(ctx, (size_t)((nte ? nte : 1) * D) * sizeof *Xte);
    int32_t *ytr = ld_alloc(ctx, (size_t)ntr * sizeof *ytr), *yte = ld_alloc(ctx, (size_t)(nte ? nte : 1) * sizeof *yte);
    int32_t *pred = ld_alloc(ctx, (size_t)(nte ? nte : 1) * sizeof *pred);
    ld_status st = Xtr && Xte && ytr && yte && pred ? LD_OK : ld_ctx_status(ctx);
    for (int64_t r = 0, a = 0, b = 0; !st && r < R; r++) {
        if (y[r] == -100) continue;
        if (te[r]) memcpy(Xte + b * D, X + r * D, (size_t)D * sizeof(float)), yte[b++] = y[r];
        else memcpy(Xtr + a * D, X + r * D, (size_t)D * sizeof(float)), ytr[a++] = y[r];
    }
    if (!st) st = ld_logreg_fit_predict(ctx, Xtr, ytr, ntr, Xte, nte, D, k, fit, pred);
    int64_t right = 0;
    for (int64_t i = 0; !st && i < nte; i++) right += pred[i] == yte[i];
    if (!st) *acc = nte ? (double)right / (double)nte : NAN, *ntr_out = ntr, *nte_out = nte;
    ld_free(ctx, Xtr), ld_free(ctx, Xte), ld_free(ctx, ytr), ld_free(ctx, yte), ld_free(ctx, pred);
    return st;
}

ld_status ld_protein_probe(ld_ctx *ctx, ld_encoder *m, const ld_tokenizer *tok, const char *path,
                           const ld_probe_task_params *p, ld_probe_report *out) {
    LD_TEAM_SCOPE(ctx);
    if (!path || !p || !out || (m && !tok)) return ld_error(ctx, LD_ERR_INVALID_ARG, "ld_protein_probe: bad arguments");
    if (p->max_len < 3) return ld_error(ctx, LD_ERR_INVALID_ARG, "probe: max_len %lld < 3", (long long)p->max_len);
    if (m && p->layers && (ld_encoder_config_of(m)->n_layers >= 63 || p->layers >> (ld_encoder_config_of(m)->n_layers + 1)))
        return ld_error(ctx, LD_ERR_INVALID_ARG, "probe: a layer above the model's %lld was chosen",
                        (long long)ld_encoder_config_of(m)->n_layers);
    if (m && p->max_len > ld_encoder_config_of(m)->max_position)
        return ld_error(ctx, LD_ERR_INVALID_ARG, "probe: max_len %lld exceeds the model's %lld positions",
                        (long long)p->max_len, (long long)ld_encoder_config_of(m)->max_position);
    double t0 = ld_time_now();
    memset(out, 0, sizeof *out);
    probe_data d = {0};
    ld_status st = probe_data_read(ctx, path, p, &d);
    int64_t k = p->task == LD_PROBE_SS3 ? 3 : p->task == LD_PROBE_DEEPLOC_MEMBRANE ? 2 : N_DEEPLOC;
    out->n_classes = k, out->model = NAN;
    out->baseline_name = p->task == LD_PROBE_SS3 ? "one-hot residue" : "amino-acid composition";
    for (int pass = 0; pass < (m ? 2 : 1) && !st; pass++) {
        float *X = NULL;
        int32_t *y = NULL;
        bool *te = NULL;
        int64_t R = 0, D = 0, ntr = 0, nte = 0;
        double acc = NAN;
        st = features(ctx, pass ? m : NULL, tok, &d, p, &X, &y, &te, &R, &D);
        if (!st) st = probe_accuracy(ctx, X, y, te, R, D, k, &p->fit, &acc, &ntr, &nte);
        if (!st && pass == 0) { /* the majority class of the training rows, scored on the test rows */
            int64_t count[N_DEEPLOC] = {0}, best = 0, right = 0;
            for (int64_t r = 0; r < R; r++)
                if (y[r] != -100 && !te[r]) count[y[r]]++;
            for (int64_t c = 1; c < k; c++) best = count[c] > count[best] ? c : best;
            for (int64_t r = 0; r < R; r++) right += y[r] == best && te[r];
            out->majority = (double)right / (double)nte, out->baseline = acc, out->n_train = ntr, out->n_test = nte;
        } else if (!st) {
            out->model = acc;
        }
        ld_free(ctx, X), ld_free(ctx, y), ld_free(ctx, te);
    }
    probe_data_free(ctx, &d);
    out->seconds = ld_time_now() - t0;
    return st;
}
