/* tests/unit/test_public_header.c — the public API compiles as strict C11 on its own
 * (this target is built with -std=c11 -pedantic-errors) and links. It includes nothing
 * else from the project. */
#include <liandan/liandan.h>
#include <stdio.h>

int main(void) {
    ld_ctx *ctx = NULL;
    if (ld_ctx_new(NULL, &ctx) != LD_OK) return 1;
    ld_status st = ld_error(ctx, LD_ERR_SHAPE, "probe %d", 1);
    int ok = st == LD_ERR_SHAPE && ld_ctx_error(ctx)[0] == 'p';
    ld_ctx_free(ctx);
    printf("%d passed, %d failed\n", ok, !ok);
    return ok ? 0 : 1;
}
