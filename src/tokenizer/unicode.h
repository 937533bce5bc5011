/* unicode.h — the little Unicode the tokenizers need: strict UTF-8 decoding
 * and encoding, each code point's general-category class and White_Space
 * property, and simple case folding.
 *
 * The tables come from tools/gen_unicode.py (Python's unicodedata, Unicode
 * 14.0 — the version Hugging Face tokenizers' regex engine uses), written to
 * unicode_data.c as sorted ranges. */
#ifndef NURI_UNICODE_H
#define NURI_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What nuri_utf8_decode returns for a byte that does not start a valid
 * UTF-8 sequence. It lies outside Unicode, so it has no category flags. */
#define NURI_UTF8_INVALID 0xFFFFFFFFu

/* Decodes the code point at s (len > 0 bytes available) and sets *adv to the
 * bytes it used. Truncated, overlong, surrogate (U+D800..DFFF) and
 * above-U+10FFFF sequences, and stray continuation bytes, give
 * NURI_UTF8_INVALID with *adv = 1, so each bad byte is one "character".
 * With len == 0 it returns NURI_UTF8_INVALID and *adv = 0. */
uint32_t nuri_utf8_decode(const char *s, size_t len, size_t *adv);

/* Writes cp as UTF-8 into out and returns its length (1-4); returns 0 and
 * writes nothing for a surrogate or a value above U+10FFFF. */
size_t nuri_utf8_encode(uint32_t cp, char out[4]);

/* The length of the sequence a lead byte announces (1-4), or 0 for a
 * continuation byte or a byte that can never start a sequence (C0, C1,
 * F5-FF). It does not check the rest of the sequence. */
size_t nuri_utf8_char_len(unsigned char first_byte);

/* Category flags. Exactly one of the seven class bits is set for any code
 * point (unassigned and surrogate code points are OTHER); WHITE_SPACE is the
 * Unicode White_Space property, independent of the class (U+0020 is
 * SEPARATOR | WHITE_SPACE, TAB is OTHER | WHITE_SPACE). */
enum {
    NURI_UCAT_LETTER = 1u << 0,      /* L*: Lu Ll Lt Lm Lo */
    NURI_UCAT_NUMBER = 1u << 1,      /* N*: Nd Nl No */
    NURI_UCAT_PUNCTUATION = 1u << 2, /* P*: Pc Pd Ps Pe Pi Pf Po */
    NURI_UCAT_SYMBOL = 1u << 3,      /* S*: Sm Sc Sk So */
    NURI_UCAT_MARK = 1u << 4,        /* M*: Mn Mc Me */
    NURI_UCAT_SEPARATOR = 1u << 5,   /* Z*: Zs Zl Zp */
    NURI_UCAT_OTHER = 1u << 6,       /* C*: Cc Cf Cs Co Cn */
    NURI_UCAT_WHITE_SPACE = 1u << 7, /* the White_Space property */
};

/* The flags of cp; 0 for NURI_UTF8_INVALID and anything above U+10FFFF. */
unsigned nuri_unicode_flags(uint32_t cp);

static inline bool nuri_unicode_is_letter(uint32_t cp) {
    return (nuri_unicode_flags(cp) & NURI_UCAT_LETTER) != 0;
}
static inline bool nuri_unicode_is_number(uint32_t cp) {
    return (nuri_unicode_flags(cp) & NURI_UCAT_NUMBER) != 0;
}
static inline bool nuri_unicode_is_white_space(uint32_t cp) {
    return (nuri_unicode_flags(cp) & NURI_UCAT_WHITE_SPACE) != 0;
}

/* Simple (one-to-one) case folding, as case-insensitive regex matching
 * uses it: 'A' -> 'a', U+017F LONG S -> 's', U+212A KELVIN SIGN -> 'k'.
 * Code points without a folding, and invalid values, are returned as is. */
uint32_t nuri_unicode_casefold(uint32_t cp);

#endif
