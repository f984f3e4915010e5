/* serve/clip_embed.c — /v1/embeddings for an image-text (clip) model: a text input gets the
 * text tower's embedding, an image item (docs/serving.md: PNG or JPEG in a base64 data URL,
 * already decoded from base64 by the request parser) is decoded, resized so its shorter side
 * is the model's image_size, centre-cropped and given the image tower's embedding; both are
 * L2-normalised in the shared space, so a text's and an image's dot product is their cosine.
 * There is no engine thread: the request's thread computes, under the model's lock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "liandan/clip.h"
#include "liandan/image.h"
#include "serve/serve_internal.h"

ld_status ld_clip_embed_request(ld_pool_model *m, const ld_api_request *r, float **out, int64_t *dim, int64_t *tokens,
                                ld_api_error *e) {
    *out = NULL, *dim = 0, *tokens = 0;
    const ld_clip_config *c = ld_clip_config_of(m->clip);
    int64_t E = c->embed_dim, S = c->image_size, n = r->n_inputs, n_img = 0, n_txt = 0;
    for (int64_t i = 0; i < n; i++) {
        const ld_api_input *in = &r->inputs[i];
        if (in->ids)
            return ld_api_fail(e, 400, "input", "input %lld: token ids are not accepted by the image-text model '%s'; send text",
                               (long long)i, r->model);
        if (!in->image && in->text_len == 0) return ld_api_fail(e, 400, "input", "input %lld is empty", (long long)i);
        if (in->image) n_img++;
        else n_txt++;
    }
    float *emb = malloc((size_t)(n * E) * sizeof(float)), *ie = malloc((size_t)((n_img ? n_img : 1) * E) * sizeof(float)),
          *te = malloc((size_t)((n_txt ? n_txt : 1) * E) * sizeof(float));
    uint8_t **px = calloc((size_t)(n_img ? n_img : 1), sizeof *px);
    const char **texts = calloc((size_t)(n_txt ? n_txt : 1), sizeof *texts);
    ld_status st = emb && ie && te && px && texts ? LD_OK : ld_api_fail(e, 500, NULL, "out of memory");
    pthread_mutex_lock(&m->tok_mu);
    for (int64_t i = 0, k = 0, j = 0; !st && i < n; i++) {
        const ld_api_input *in = &r->inputs[i];
        if (!in->image) {
            texts[k] = in->text;
            int32_t len = 0, ids[512];
            int64_t T = c->text.max_position < 512 ? c->text.max_position : 512;
            if (!ld_clip_encode_caption(m->tok, in->text, T, ids, &len)) *tokens += len;
            k++;
            continue;
        }
        char name[32];
        snprintf(name, sizeof name, "input %lld", (long long)i);
        ld_image im = {0};
        ld_status ds = ld_image_decode(m->ctx, in->image, in->image_len, name, &im);
        if (ds) {
            st = ld_api_fail(e, ds == LD_ERR_LIMIT ? 413 : 400, "input", "%s", ld_ctx_error(m->ctx));
            break;
        }
        if (!(px[j] = malloc((size_t)(S * S * 3)))) st = ld_api_fail(e, 500, NULL, "out of memory");
        else ld_image_resize_center_crop(im.px, im.width, im.height, px[j], (int)S);
        j++;
        ld_image_free(m->ctx, &im);
    }
    if (!st && n_img && ld_clip_embed_images(m->clip, (const uint8_t *const *)px, n_img, ie))
        st = ld_api_fail(e, 500, NULL, "embedding the images: %s", ld_ctx_error(m->ctx));
    if (!st && n_txt && ld_clip_embed_texts(m->clip, m->tok, texts, n_txt, te))
        st = ld_api_fail(e, 500, NULL, "embedding the texts: %s", ld_ctx_error(m->ctx));
    pthread_mutex_unlock(&m->tok_mu);
    for (int64_t i = 0, a = 0, b = 0; !st && i < n; i++) /* back into the request's order */
        memcpy(emb + i * E, r->inputs[i].image ? ie + (a++) * E : te + (b++) * E, (size_t)E * sizeof(float));
    for (int64_t j = 0; px && j < n_img; j++) free(px[j]);
    free(px), free(texts), free(ie), free(te);
    if (st) {
        free(emb);
        return st;
    }
    *out = emb, *dim = E;
    return LD_OK;
}
