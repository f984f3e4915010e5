/* serve/text_stream.h — generated tokens to text for streaming: bytes are appended as tokens
 * arrive; what may be sent is held back while it could still become a stop string or ends
 * in an incomplete UTF-8 character; a stop string cuts the text where it starts. */
#ifndef LD_SERVE_TEXT_STREAM_H
#define LD_SERVE_TEXT_STREAM_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ld_text_stream {
    char *buf;           /* malloc'd, NUL-terminated */
    size_t len, cap;
    size_t ready;        /* buf[0..ready) is final */
    const char *const *stops;
    int n_stops;
    size_t max_stop;
    bool stopped;        /* a stop string appeared (buf ends before it) */
} ld_text_stream;

/* stops (borrowed, may be NULL when n_stops is 0) must outlive the stream. */
void ld_text_stream_init(ld_text_stream *t, const char *const *stops, int n_stops);
void ld_text_stream_free(ld_text_stream *t);
/* Appends bytes; false when a stop string appeared (then or before) or memory ran out. */
bool ld_text_stream_add(ld_text_stream *t, const char *bytes, size_t n);
/* The end of generation: everything kept becomes ready (an incomplete UTF-8 tail included). */
void ld_text_stream_finish(ld_text_stream *t);

/* A malloc'd NUL-terminated copy of s[0..n) in which every byte sequence that is not valid
 * UTF-8 (a cut character, a stray continuation byte, an overlong form, a NUL) is replaced by
 * U+FFFD, so it can go into JSON. NULL when out of memory. */
char *ld_utf8_valid_copy(const char *s, size_t n);

#endif
