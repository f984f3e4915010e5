/* serve/text_stream.c — streamed text with stop strings and UTF-8 hold-back (text_stream.h). */
#include "serve/text_stream.h"

#include <stdlib.h>
#include <string.h>

void ld_text_stream_init(ld_text_stream *t, const char *const *stops, int n_stops) {
    memset(t, 0, sizeof *t);
    t->stops = stops, t->n_stops = n_stops;
    for (int i = 0; i < n_stops; i++)
        if (strlen(stops[i]) > t->max_stop) t->max_stop = strlen(stops[i]);
}

void ld_text_stream_free(ld_text_stream *t) {
    free(t->buf);
    memset(t, 0, sizeof *t);
}

/* Length of the longest prefix of s[0..n) that ends on a UTF-8 character boundary. */
static size_t complete_utf8(const char *s, size_t n) {
    size_t i = n;
    int back = 0;
    while (i > 0 && back < 4 && ((unsigned char)s[i - 1] & 0xc0) == 0x80) i--, back++;
    if (i == 0) return n;
    unsigned char lead = (unsigned char)s[i - 1];
    if (lead < 0xc0) return n; /* ASCII (or a stray continuation run): nothing to wait for */
    size_t want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
    return (size_t)back + 1 >= want ? n : i - 1;
}

bool ld_text_stream_add(ld_text_stream *t, const char *bytes, size_t n) {
    if (t->stopped) return false;
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n + 1) cap *= 2;
        char *b = realloc(t->buf, cap);
        if (!b) return false;
        t->buf = b, t->cap = cap;
    }
    memcpy(t->buf + t->len, bytes, n);
    size_t old = t->len;
    t->len += n;
    t->buf[t->len] = 0;
    /* a stop string can only be new if it ends in the new bytes */
    size_t from = old > t->max_stop ? old - t->max_stop : 0, cut = t->len;
    for (int i = 0; i < t->n_stops; i++) {
        size_t sl = strlen(t->stops[i]);
        for (size_t at = from; at + sl <= t->len; at++)
            if (at < cut && !memcmp(t->buf + at, t->stops[i], sl)) {
                cut = at;
                break;
            }
    }
    if (cut < t->len) {
        t->len = t->ready = cut;
        t->buf[cut] = 0;
        t->stopped = true;
        return false;
    }
    /* hold back a tail that could begin a stop string, and an incomplete character */
    size_t safe = complete_utf8(t->buf, t->len), hold = 0;
    for (int i = 0; i < t->n_stops; i++) {
        size_t sl = strlen(t->stops[i]);
        for (size_t k = sl - 1; k > hold; k--)
            if (k <= safe && !memcmp(t->buf + safe - k, t->stops[i], k)) {
                hold = k;
                break;
            }
    }
    if (safe - hold > t->ready) t->ready = safe - hold;
    return true;
}

void ld_text_stream_finish(ld_text_stream *t) {
    t->ready = t->len;
}

/* Length of the valid UTF-8 character at s[0..n), or 0. */
static size_t utf8_char(const unsigned char *s, size_t n) {
    if (s[0] >= 0x01 && s[0] < 0x80) return 1;
    size_t want = s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : s[0] >= 0xe0 && s[0] <= 0xef ? 3 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : 0;
    if (!want || want > n) return 0;
    for (size_t i = 1; i < want; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (want == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0))) return 0; /* overlong, surrogate */
    if (want == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90))) return 0;
    return want;
}

char *ld_utf8_valid_copy(const char *s, size_t n) {
    char *out = malloc(3 * n + 1); /* each bad byte becomes 3 bytes */
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_char((const unsigned char *)s + i, n - i);
        if (k) {
            memcpy(out + o, s + i, k), o += k, i += k;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3), o += 3, i++;
        }
    }
    out[o] = 0;
    return out;
}
