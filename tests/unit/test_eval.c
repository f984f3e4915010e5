/* tests/unit/test_eval.c — poem-format checker and unigram entropy. */
#include "ld_test.h"
#include "liandan/eval.h"

TEST(poem_format_table) {
    static const struct { const char *text; bool ok; int n; } cases[] = {
        {"床前明月光，疑是地上霜。举头望明月，低头思故乡。", true, 5},
        {"秦川雄帝宅，函谷壮皇居。绮殿千寻起，离宫百雉余。连甍遥接汉，飞观迥凌虚。云日隐层阙，风烟出绮疎。", true, 5},
        {"两个黄鹂鸣翠柳，一行白鹭上青天。窗含西岭千秋雪，门泊东吴万里船。\n", true, 7},
        {"  白日依山尽，黄河入海流。欲穷千里目，更上一层楼！", true, 5},
        {"床前明月光，疑是地上霜。", false, 0},                         /* only 2 clauses */
        {"床前明月光，疑是地上霜。举头望明月，低头思故乡", false, 0},   /* no final stop */
        {"床前明月光。疑是地上霜，举头望明月。低头思故乡，", false, 0}, /* punctuation swapped */
        {"床前明月光，疑是地上霜。举头望明月，低头思故。", false, 0},   /* 4 characters */
        {"床前明月光光，疑是地上霜霜。举头望明月月，低头思故乡乡。", false, 0}, /* 6 characters */
        {"床前明月光，疑是地上霜。举头望明月，低头思故乡乡乡。", false, 0},     /* mixed lengths */
        {"床前明月光，疑是地上霜。举头望明abc，低头思故乡。", false, 0},        /* latin */
        {"床前明 月光，疑是地上霜。举头望明月，低头思故乡。", false, 0},        /* space inside */
        {"", false, 0},
        {"\xe5\xba", false, 0}, /* truncated UTF-8 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int n = -1;
        bool ok = ld_poem_is_regular(cases[i].text, strlen(cases[i].text), &n);
        CHECK_MSG(ok == cases[i].ok && n == cases[i].n, "case %zu: got %d/%d", i, ok, n);
    }
}

TEST(unigram_entropy) {
    ld_ctx *ctx = NULL;
    ld_ctx_new(NULL, &ctx);
    ld_unigram_stats st;
    CHECK(ld_unigram_entropy(ctx, "abab\n", 5, &st) == LD_OK);
    CHECK_NEAR(st.bits_per_char, 1.0, 1e-12);
    CHECK(st.chars == 4 && st.distinct == 2);
    CHECK(ld_unigram_entropy(ctx, "月月月月", strlen("月月月月"), &st) == LD_OK);
    CHECK_NEAR(st.bits_per_char, 0.0, 1e-12);
    CHECK_STATUS(ctx, ld_unigram_entropy(ctx, "a\xff", 2, &st), LD_ERR_FORMAT, "byte 1");
    ld_ctx_free(ctx);
}

LD_TEST_MAIN()
