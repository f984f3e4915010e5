/* train/ft_data.h — fine-tuning data: examples read from text, JSONL chat and JSONL/TSV
 * classification files, tokenized once, each token marked as predicted (counted by the
 * loss) or not; and batch sources over them (packed rows or one padded example per row),
 * shuffled per epoch from a seed, resumable from a cursor. */
#ifndef LD_FT_DATA_H
#define LD_FT_DATA_H

#include "liandan/adapter.h"
#include "liandan/train.h"

typedef enum ld_ft_format { LD_FT_TEXT = 0, LD_FT_CHAT, LD_FT_CLASSIFY } ld_ft_format;

#define LD_FT_MAX_FIELDS 4
#define LD_FT_FIELD_MAX 64

typedef struct ld_ft_data_config {
    ld_ft_format format;
    char text_fields[LD_FT_MAX_FIELDS][LD_FT_FIELD_MAX]; /* JSONL keys or TSV header columns, joined */
    int n_text_fields;                                   /* 0 = "text" */
    char separator[16];                                  /* between text fields (default "\n") */
    char label_field[LD_FT_FIELD_MAX];                   /* default "label" */
    char messages_field[LD_FT_FIELD_MAX];                /* default "messages" */
    int64_t max_examples;                                /* 0 = all */
} ld_ft_data_config;
ld_ft_data_config ld_ft_data_default_config(void);
/* "text", "chat", "classification" -> format. */
bool ld_ft_format_from_name(const char *name, ld_ft_format *out);

/* Label names of a classification task, in id order. */
typedef struct ld_ft_labels {
    char *names[LD_ADAPTER_MAX_LABELS];
    int n;
    bool fixed; /* given by the config: other labels are errors (else new ones are added) */
} ld_ft_labels;
void ld_ft_labels_clear(ld_ft_labels *l);
/* Sorts collected labels (numeric labels numerically, others as strings) so ids do not
 * depend on the order of the file. Only for labels that were not fixed. */
void ld_ft_labels_sort(ld_ft_labels *l);

typedef struct ld_ft_data ld_ft_data;

/* Reads and tokenizes every example of path (format from c; .tsv files need a header row
 * naming the columns, other files are JSONL, or for text also .txt with a document per
 * line). Chat examples render with ChatML markers (<|im_start|>role ... <|im_end|>) and
 * count only the assistant turns' tokens. Classification examples are the joined text
 * fields then EOS; their labels go through `labels` (added to it unless fixed). Examples
 * are cut to max_len tokens (classification keeps the EOS). Errors name path:line: bad JSON,
 * a missing field, an unknown label, a chat without an assistant turn, an empty file. */
ld_status ld_ft_data_load(ld_ctx *ctx, const ld_tokenizer *tok, const ld_ft_data_config *c, const char *path,
                          ld_ft_labels *labels, int64_t max_len, ld_ft_data **out);
/* The same over size bytes at data; path names the input in messages and its extension
 * picks the format as above. */
ld_status ld_ft_data_load_memory(ld_ctx *ctx, const ld_tokenizer *tok, const ld_ft_data_config *c, const char *path,
                                 const char *data, size_t size, ld_ft_labels *labels, int64_t max_len, ld_ft_data **out);
void ld_ft_data_free(ld_ft_data *d);
int64_t ld_ft_data_count(const ld_ft_data *d);
int64_t ld_ft_data_tokens(const ld_ft_data *d);
/* Examples that were cut to max_len. */
int64_t ld_ft_data_truncated(const ld_ft_data *d);
/* Example i: its tokens, which of them are predicted (counted[j] != 0: token j is a
 * target), its label (-100 without), and the 1-based line it came from. */
void ld_ft_data_example(const ld_ft_data *d, int64_t i, const int32_t **ids, const uint8_t **counted, int64_t *n,
                        int32_t *label, int64_t *line);
/* Moves a share of examples (chosen by a hash of their tokens, so the same examples for any
 * order and seed) into a new set *val; d keeps the rest. Errors when either side would be
 * empty. */
ld_status ld_ft_data_split(ld_ft_data *d, double fraction, ld_ft_data **val);

/* A batch source over d (which must outlive it). packed: examples back to back (EOS
 * between them) cut into rows of T; else one example per row, padded. shuffle: a new order
 * every epoch from seed (else file order, from the start at every restore: validation). */
typedef struct ld_ft_source ld_ft_source;
ld_status ld_ft_source_new(ld_ctx *ctx, const ld_ft_data *d, bool packed, bool shuffle, uint64_t seed, int32_t pad_id,
                           ld_ft_source **out);
void ld_ft_source_free(ld_ft_source *s);
ld_batch_source ld_ft_source_batches(ld_ft_source *s);
/* Batches one pass over d takes at batch size B (padded rows; for packed data an estimate). */
int64_t ld_ft_source_batches_per_epoch(const ld_ft_source *s, int64_t B, int64_t T);

/* Replay for continual learning: each row comes with probability `ratio` from one of the
 * n_old earlier sources (chosen uniformly), else from cur; the choice is a hash of (seed,
 * rows drawn so far), so the mix resumes exactly from its cursor (which holds every source's
 * cursor). The sources must outlive it. */
typedef struct ld_ft_mix ld_ft_mix;
ld_status ld_ft_mix_new(ld_ctx *ctx, ld_batch_source cur, const ld_batch_source *old, int n_old, double ratio,
                        uint64_t seed, ld_ft_mix **out);
void ld_ft_mix_free(ld_ft_mix *m);
ld_batch_source ld_ft_mix_batches(ld_ft_mix *m);

#endif
