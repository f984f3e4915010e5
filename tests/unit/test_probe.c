/* tests/unit/test_probe.c — the protein probe's task files (eval/probe.c): a table of bad
 * inputs, each failing with LD_ERR_FORMAT and a message naming the file and line (and column
 * for a bad character), the rows a good file keeps, and the whole probe (baselines) on a tiny
 * file where the answer is known. */
#include <math.h>

#include "data_test_util.h"
#include "eval/probe_internal.h"

#define DL_HEAD "accession\tlocation\tmembrane\tsplit\tsequence\n"
#define SS_HEAD "id\tsplit\tsequence\tss3\tresolved_mask\n"

typedef struct probe_case {
    const char *name;
    ld_protein_task task;
    const char *text;
    size_t len;      /* 0 = strlen(text) */
    const char *msg; /* substring of the error; NULL = accepted */
} probe_case;

static const probe_case cases[] = {
    {"empty.tsv", LD_PROBE_DEEPLOC, "", 0, "empty.tsv: an empty file (no header line)"},
    {"blank.tsv", LD_PROBE_DEEPLOC, "\n\r\n\n", 0, "blank.tsv: an empty file"},
    {"no_seq_col.tsv", LD_PROBE_DEEPLOC, "accession\tlocation\tsplit\nA\tNucleus\ttrain\n", 0,
     "no_seq_col.tsv:1: the header lacks the DeepLoc columns (sequence, split, location)"},
    {"ss3_no_mask.tsv", LD_PROBE_SS3, "id\tsplit\tsequence\tss3\nx\ttrain\tMK\tHH\n", 0,
     "ss3_no_mask.tsv:1: the header lacks the FLIP SS3 columns (sequence, split, ss3, resolved_mask)"},
    {"membrane_col.tsv", LD_PROBE_DEEPLOC_MEMBRANE, "location\tsplit\tsequence\nNucleus\ttrain\tMK\n", 0,
     "membrane_col.tsv:1: the header lacks the DeepLoc columns (sequence, split, membrane)"},
    {"short_row.tsv", LD_PROBE_DEEPLOC, DL_HEAD "P1\tNucleus\tU\ttrain\tMKV\nP2\tNucleus\tU\n", 0,
     "short_row.tsv:3: 3 column(s), the header names 5"},
    {"digit.tsv", LD_PROBE_DEEPLOC, DL_HEAD "P1\tNucleus\tU\ttrain\tMK1V\n", 0,
     "digit.tsv:2:22: '1' in the sequence column (expected letters A-Z)"},
    {"stop.tsv", LD_PROBE_DEEPLOC, DL_HEAD "P1\tNucleus\tU\ttrain\tMKV*\n", 0, "stop.tsv:2:23: '*' in the sequence"},
    {"space.tsv", LD_PROBE_DEEPLOC, DL_HEAD "P1\tNucleus\tU\ttrain\tMK V\n", 0, "space.tsv:2:22: 0x20 in the sequence"},
    {"utf8.tsv", LD_PROBE_DEEPLOC, DL_HEAD "P1\tNucleus\tU\ttrain\tM\xc3\xa9V\n", 0, "utf8.tsv:2:21: 0xc3 in the sequence"},
    {"empty_seq.tsv", LD_PROBE_DEEPLOC, DL_HEAD "P1\tNucleus\tU\ttrain\t\n", 0, "empty_seq.tsv:2: an empty sequence"},
    {"nul.tsv", LD_PROBE_DEEPLOC, DL_HEAD "P1\tNucleus\tU\ttrain\tMK\0V\n", sizeof DL_HEAD - 1 + 24,
     "nul.tsv:2:22: a NUL byte"},
    {"location.tsv", LD_PROBE_DEEPLOC, DL_HEAD "P1\tNucleolus\tU\ttrain\tMKV\n", 0,
     "location.tsv:2: unknown location 'Nucleolus'"},
    {"membrane.tsv", LD_PROBE_DEEPLOC_MEMBRANE, DL_HEAD "P1\tNucleus\tX\ttrain\tMKV\n", 0,
     "membrane.tsv:2: membrane label 'X' is not M, S or U"},
    {"ss3_len.tsv", LD_PROBE_SS3, SS_HEAD "a\ttrain\tMKV\tHH\t111\n", 0,
     "ss3_len.tsv:2: sequence, ss3 and resolved_mask differ in length (3, 2, 3)"},
    {"ss3_mask_len.tsv", LD_PROBE_SS3, SS_HEAD "a\ttrain\tMKV\tHHE\t11\n", 0, "ss3_mask_len.tsv:2: sequence, ss3"},
    {"ss3_state.tsv", LD_PROBE_SS3, SS_HEAD "a\ttrain\tMKV\tHGE\t111\n", 0,
     "ss3_state.tsv:2:14: 'G' in the ss3 column (expected H, E or C)"},
    {"ss3_mask.tsv", LD_PROBE_SS3, SS_HEAD "a\ttrain\tMKV\tHHE\t1x1\n", 0,
     "ss3_mask.tsv:2:18: 'x' in the resolved_mask column (expected 0 or 1)"},
    {"no_test.tsv", LD_PROBE_DEEPLOC, DL_HEAD "P1\tNucleus\tU\ttrain\tMKV\nP2\tNucleus\tU\tdev\tMKV\n", 0,
     "no_test.tsv: no usable test examples for this task (1 training, 0 test)"},
    {"no_train.tsv", LD_PROBE_DEEPLOC, DL_HEAD "P1\tCytoplasm-Nucleus\tU\ttrain\tMKV\nP2\tNucleus\tU\ttest\tMKV\n", 0,
     "no_train.tsv: no usable training examples"},
    {"membrane_unlabelled.tsv", LD_PROBE_DEEPLOC_MEMBRANE, DL_HEAD "P1\tNucleus\tU\ttrain\tMKV\nP2\tNucleus\tM\tdev\tMK\n",
     0, "membrane_unlabelled.tsv: no usable training examples"},
    {"wide.tsv", LD_PROBE_DEEPLOC,
     "a\tb\tc\td\te\tf\tg\th\ti\tj\tk\tl\tm\tn\to\tp\tq\tr\ts\tt\tu\tv\tw\tx\ty\tz\ta\tb\tc\td\te\tf\tg\th\ti\tj\tk\tl\tm\tn\t"
     "o\tp\tq\tr\ts\tt\tu\tv\tw\tx\ty\tz\ta\tb\tc\td\te\tf\tg\th\ti\tj\tk\tl\tm\n",
     0, "wide.tsv:1: more than 64 columns"},
    /* accepted: CRLF line ends, blank lines, lowercase residues, columns in another order */
    {"crlf.tsv", LD_PROBE_DEEPLOC,
     "sequence\tsplit\tlocation\r\n\r\nmkv\ttrain\tNucleus\r\n\nMKW\ttest\tPlastid\r\n", 0, NULL},
};

TEST(probe_task_files_bad_input_table) {
    ld_ctx *ctx = dt_ctx();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const probe_case *k = &cases[i];
        size_t len = k->len ? k->len : strlen(k->text);
        const char *path = dt_write(k->name, k->text, len);
        ld_probe_task_params p = ld_probe_task_default_params(k->task);
        probe_data d = {0};
        ld_status st = probe_data_read(ctx, path, &p, &d);
        if (k->msg) {
            CHECK_MSG(st == LD_ERR_FORMAT, "%s: got %s (%s), expected FORMAT", k->name, ld_status_name(st), ld_ctx_error(ctx));
            CHECK_MSG(strstr(ld_ctx_error(ctx), k->msg) != NULL, "%s: message \"%s\" lacks \"%s\"", k->name,
                      ld_ctx_error(ctx), k->msg);
            CHECK_MSG(strstr(ld_ctx_error(ctx), path) != NULL, "%s: message \"%s\" does not name the file", k->name,
                      ld_ctx_error(ctx));
        } else {
            CHECK_MSG(st == LD_OK, "%s: %s", k->name, ld_ctx_error(ctx));
        }
        probe_data_free(ctx, &d);
    }
    probe_data d = {0};
    ld_probe_task_params p = ld_probe_task_default_params(LD_PROBE_DEEPLOC);
    CHECK_STATUS(ctx, probe_data_read(ctx, dt_path("missing.tsv"), &p, &d), LD_ERR_NOT_FOUND, "missing.tsv");
    probe_data_free(ctx, &d);
    ld_ctx_free(ctx);
}

/* What a good file keeps: splits, dropped labels, the cut to max_len - 2, the caps. */
TEST(probe_task_files_keep_the_right_rows) {
    ld_ctx *ctx = dt_ctx();
    static const char dl[] = DL_HEAD "P1\tNucleus\tU\ttrain\tmkvl\n"
                                     "P2\tCytoplasm-Nucleus\tU\ttrain\tMK\n"   /* no class: dropped */
                                     "P3\tPlastid\tM\tdev\tMKVLA\n"            /* dev: only membrane's test */
                                     "P4\tPeroxisome\tS\ttest\tMKVLAGG\n"
                                     "P5\tGolgi.apparatus\tM\ttrain\tWW\n"
                                     "P6\tNucleus\tU\tvalid\tWW\n";            /* another split: skipped */
    char *t = ld_alloc(ctx, sizeof dl);
    memcpy(t, dl, sizeof dl);
    ld_probe_task_params p = ld_probe_task_default_params(LD_PROBE_DEEPLOC);
    p.max_len = 5; /* 3 residues */
    probe_data d = {0};
    CHECK(probe_data_parse(ctx, "dl.tsv", t, sizeof dl - 1, &p, &d) == LD_OK);
    CHECK(d.n == 3 && d.n_train == 2 && d.n_test == 1);
    if (d.n == 3) {
        CHECK(d.ex[0].label == 0 && !d.ex[0].test && d.ex[0].len == 3 && !strncmp(d.ex[0].seq, "MKV", 3));
        CHECK(d.ex[1].label == 9 && d.ex[1].test && d.ex[1].len == 3);
        CHECK(d.ex[2].label == 7 && !d.ex[2].test && d.ex[2].len == 2);
    }
    probe_data_free(ctx, &d);
    ld_free(ctx, t);

    memcpy(t = ld_alloc(ctx, sizeof dl), dl, sizeof dl);
    p = ld_probe_task_default_params(LD_PROBE_DEEPLOC_MEMBRANE);
    p.max_train = 1;
    CHECK(probe_data_parse(ctx, "dl.tsv", t, sizeof dl - 1, &p, &d) == LD_OK);
    CHECK(d.n == 2 && d.n_train == 1 && d.n_test == 1); /* P3 (M, dev) the test row, P5 (M) the training row */
    if (d.n == 2) CHECK(d.ex[0].label == 1 && !strncmp(d.ex[0].seq, "MKVLA", 5) && d.ex[0].test && d.ex[1].label == 1);
    probe_data_free(ctx, &d);
    ld_free(ctx, t);

    memcpy(t = ld_alloc(ctx, sizeof dl), dl, sizeof dl);
    p = ld_probe_task_default_params(LD_PROBE_DEEPLOC);
    p.max_train = 1; /* P5 is past the cap */
    CHECK(probe_data_parse(ctx, "dl.tsv", t, sizeof dl - 1, &p, &d) == LD_OK);
    CHECK(d.n == 2 && d.n_train == 1 && d.n_test == 1 && d.ex[0].label == 0 && d.ex[1].label == 9);
    probe_data_free(ctx, &d);
    ld_free(ctx, t);
    ld_ctx_free(ctx);
}

/* The baselines end to end on a file whose classes are told apart by composition alone:
 * the composition probe must be perfect, the majority class exactly its share. */
TEST(probe_baselines_on_a_separable_file) {
    ld_ctx *ctx = dt_ctx();
    char *text = malloc(1 << 16);
    size_t o = (size_t)snprintf(text, 1 << 16, DL_HEAD);
    for (int i = 0; i < 40; i++) {
        bool nuc = i % 4 != 0, test = i >= 28; /* 3/4 Nucleus */
        o += (size_t)snprintf(text + o, (1 << 16) - o, "P%d\t%s\tU\t%s\t%s\n", i, nuc ? "Nucleus" : "Plastid",
                              test ? "test" : "train", nuc ? "KKRKKRAGKK" : "LLAVLLGLLV");
    }
    const char *path = dt_write("sep.tsv", text, o);
    ld_probe_task_params p = ld_probe_task_default_params(LD_PROBE_DEEPLOC);
    ld_probe_report r;
    CHECK(ld_protein_probe(ctx, NULL, NULL, path, &p, &r) == LD_OK);
    CHECK(r.n_train == 28 && r.n_test == 12 && r.n_classes == 10);
    CHECK_NEAR(r.baseline, 1.0, 1e-12);
    CHECK_NEAR(r.majority, 9.0 / 12.0, 1e-12);
    CHECK(isnan(r.model));
    free(text);
    ld_ctx_free(ctx);
}

/* ---- fine-tuning an encoder for classification ----------------------------------------- */

/* A tiny random BERT over the characters a-d and TSV files whose label is whether the text
 * holds more a's than b's: fine-tuning must learn it (a fresh encoder cannot guess it). */
static void classify_files(const char *train, const char *test, const char *test_extra) {
    char *text = malloc(1 << 16);
    ld_rng rng = ld_rng_init(3);
    for (int f = 0; f < 2; f++) {
        size_t o = (size_t)snprintf(text, 1 << 16, "label\ttext_a\n");
        for (int i = 0; i < (f ? 40 : 160); i++) {
            int na = 0, nb = 0, len = 4 + (int)ld_rng_below(&rng, 6);
            char s[16];
            for (int j = 0; j < len; j++) {
                s[j] = "abcd"[ld_rng_below(&rng, 4)];
                na += s[j] == 'a', nb += s[j] == 'b';
            }
            if (na == nb) s[len++] = 'a', na++; /* no ties */
            s[len] = 0;
            o += (size_t)snprintf(text + o, (1 << 16) - o, "%d\t%s\n", na > nb, s);
        }
        if (f && test_extra) o += (size_t)snprintf(text + o, (1 << 16) - o, "%s", test_extra);
        dt_write(f ? test : train, text, o);
    }
    free(text);
}

static ld_encoder *tiny_bert(ld_ctx *ctx, ld_tokenizer **tok) {
    CHECK(ld_tokenizer_load_vocab_txt(ctx, DT_WRITE_STR("vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nb\nc\nd\n"),
                                      tok) == LD_OK);
    ld_encoder_config c = ld_encoder_default_config(LD_ENCODER_BERT);
    c.vocab_size = 9, c.hidden_size = 32, c.n_layers = 2, c.n_heads = 2, c.intermediate_size = 64, c.max_position = 32;
    c.dropout = 0;
    ld_encoder *m = NULL;
    CHECK(ld_encoder_new(ctx, &c, 5, &m) == LD_OK);
    return m;
}

TEST(classify_finetune_learns_a_rule_the_base_cannot_know) {
    ld_ctx *ctx = dt_ctx();
    ld_tokenizer *tok = NULL;
    ld_encoder *m = tiny_bert(ctx, &tok);
    classify_files("ab_train.tsv", "ab_test.tsv", NULL);
    ld_classify_ft_params p = ld_classify_ft_default_params();
    p.train_path = dt_path("ab_train.tsv"), p.test_path = dt_path("ab_test.tsv");
    p.seq_len = 16, p.batch_size = 16, p.epochs = 8, p.lr = 3e-3f, p.pooling = LD_POOL_MEAN;
    ld_classify_ft_report r;
    ld_status st = ld_encoder_classify_finetune(m, tok, &p, &r);
    CHECK_MSG(st == LD_OK, "%s", ld_ctx_error(ctx));
    CHECK(r.n_train == 160 && r.n_test == 40 && r.n_labels == 2 && r.steps == 80 && r.truncated == 0);
    CHECK_MSG(r.accuracy >= 0.9 && r.accuracy > r.majority + 0.2, "accuracy %.3f, majority %.3f, loss %.3f", r.accuracy,
              r.majority, r.final_loss);
    CHECK_MSG(r.final_loss < 0.3, "final loss %.3f", r.final_loss);
    CHECK(r.macro_f1 > 0.85 && r.macro_f1 <= 1.0);

    /* bad input: a test label the training file lacks, arguments, a one-label file */
    classify_files("ab_train2.tsv", "ab_test2.tsv", "maybe\tabc\n");
    p.train_path = dt_path("ab_train2.tsv"), p.test_path = dt_path("ab_test2.tsv"), p.epochs = 1;
    CHECK_STATUS(ctx, ld_encoder_classify_finetune(m, tok, &p, &r), LD_ERR_FORMAT, "ab_test2.tsv:42");
    p.test_path = dt_path("ab_test.tsv"), p.seq_len = 33;
    CHECK_STATUS(ctx, ld_encoder_classify_finetune(m, tok, &p, &r), LD_ERR_INVALID_ARG, "seq_len 33 outside 3..32");
    p.seq_len = 16, p.lr = 0;
    CHECK_STATUS(ctx, ld_encoder_classify_finetune(m, tok, &p, &r), LD_ERR_INVALID_ARG, "lr must be positive");
    p.lr = 1e-3f, p.train_path = DT_WRITE_STR("one.tsv", "label\ttext_a\n1\tab\n1\tba\n");
    CHECK_STATUS(ctx, ld_encoder_classify_finetune(m, tok, &p, &r), LD_ERR_FORMAT, "1 label(s)");
    p.train_path = dt_path("missing.tsv");
    CHECK_STATUS(ctx, ld_encoder_classify_finetune(m, tok, &p, &r), LD_ERR_NOT_FOUND, "missing.tsv");
    ld_encoder_free(m);
    ld_tokenizer_free(tok);
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()
