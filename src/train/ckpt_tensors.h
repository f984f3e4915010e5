/* train/ckpt_tensors.h — parameters and optimizer state to and from safetensors files. */
#ifndef LD_CKPT_TENSORS_H
#define LD_CKPT_TENSORS_H

#include "liandan/nn.h"

/* which = 0: the parameters' values under their own names (opt unused);
 * which = 1: the optimizer's m and v as "<name>.exp_avg" and "<name>.exp_avg_sq".
 * The file is written and fsynced (the caller renames its directory into place). */
ld_status ld_ckpt_write_params(ld_ctx *ctx, const char *path, ld_params *p, ld_adamw *opt, int which);
/* Reads what ld_ckpt_write_params wrote into p (and opt); every tensor must be present with
 * the right dtype (F32) and shape, and nothing else may be in the file. */
ld_status ld_ckpt_read_params(ld_ctx *ctx, const char *path, ld_params *p, ld_adamw *opt, int which);

/* A model's parameters from dir/model.safetensors or the sharded set that
 * dir/model.safetensors.index.json lists (ld_st_set_open): every parameter must be there, F32
 * of its shape, and nothing else; parameters without values (another rank's experts under
 * expert parallelism) are checked and not read. */
ld_status ld_ckpt_read_model(ld_ctx *ctx, const char *dir, ld_params *p);

/* The same over several parameter sets in one file (a base model's and an adapter's). */
ld_status ld_ckpt_write_sets(ld_ctx *ctx, const char *path, ld_params *const *sets, int n_sets, ld_adamw *opt,
                             int which);
ld_status ld_ckpt_read_sets(ld_ctx *ctx, const char *path, ld_params *const *sets, int n_sets, ld_adamw *opt,
                            int which);

#endif
