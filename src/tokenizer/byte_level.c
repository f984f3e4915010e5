/* tokenizer/byte_level.c — GPT-2's reversible map between the 256 byte values and printable
 * Unicode code points, so every byte string has a visible spelling in tokenizer.json: bytes
 * '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves, the other 68 map to U+0100.. in
 * byte order. */
#include <string.h>

#include "tokenizer/tok_internal.h"

static uint16_t table[256];  /* byte -> code point */
static int16_t reverse[324]; /* code point -> byte, -1 if none */

static void init_tables(void) {
    static int done;
    if (__atomic_load_n(&done, __ATOMIC_ACQUIRE)) return;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        table[b] = keep ? (uint16_t)b : (uint16_t)(256 + n++);
    }
    for (int i = 0; i < 324; i++) reverse[i] = -1;
    for (int b = 0; b < 256; b++) reverse[table[b]] = (int16_t)b;
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
}

size_t ld_bytes_to_bytelevel(const unsigned char *in, size_t len, char *out) {
    init_tables();
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        uint16_t cp = table[in[i]];
        if (cp < 0x80) out[o++] = (char)cp;
        else out[o++] = (char)(0xc0 | (cp >> 6)), out[o++] = (char)(0x80 | (cp & 0x3f));
    }
    return o;
}

long ld_bytelevel_to_bytes(const char *in, size_t len, unsigned char *out) {
    init_tables();
    const unsigned char *s = (const unsigned char *)in;
    size_t i = 0, o = 0;
    while (i < len) {
        uint32_t cp;
        if (s[i] < 0x80) cp = s[i++];
        else if ((s[i] & 0xe0) == 0xc0 && i + 1 < len && (s[i + 1] & 0xc0) == 0x80) {
            cp = ((uint32_t)(s[i] & 0x1f) << 6) | (s[i + 1] & 0x3f);
            i += 2;
        } else return -1;
        if (cp >= 324 || reverse[cp] < 0) return -1;
        out[o++] = (unsigned char)reverse[cp];
    }
    return (long)o;
}
