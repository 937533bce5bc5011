/* test_pretokenize.c — UTF-8 coding, Unicode categories, and the BPE
 * pre-tokenizers' splits.
 *
 * The expected splits are those of the models' reference pre-tokenizers (the
 * Hugging Face patterns, applied in sequence with matches and gaps kept),
 * worked out by hand and confirmed with an independent regex engine. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "support/test.h"
#include "tokenizer/pretokenize.h"
#include "tokenizer/unicode.h"

/* ---- UTF-8 ---- */

static void check_decode(const char *bytes, size_t len, uint32_t want_cp, size_t want_adv) {
    size_t adv = 99;
    uint32_t cp = nuri_utf8_decode(bytes, len, &adv);
    CHECK(cp == want_cp && adv == want_adv,
          "decode %02x.. (%zu bytes): got U+%04X adv %zu, want U+%04X adv %zu",
          (unsigned char)bytes[0], len, cp, adv, want_cp, want_adv);
}

static void test_utf8(void) {
    check_decode("A", 1, 'A', 1);
    check_decode("\xc3\xa9", 2, 0xE9, 2);
    check_decode("\xed\x95\x9c", 3, 0xD55C, 3);        /* Hangul */
    check_decode("\xf0\x9f\x98\x80", 4, 0x1F600, 4);   /* emoji */
    check_decode("\xf4\x8f\xbf\xbf", 4, 0x10FFFF, 4);  /* the last code point */
    check_decode("\xc0\x80", 2, NURI_UTF8_INVALID, 1); /* overlong NUL */
    check_decode("\xe0\x80\xaf", 3, NURI_UTF8_INVALID, 1);
    check_decode("\xf0\x8f\xbf\xbf", 4, NURI_UTF8_INVALID, 1);
    check_decode("\xed\xa0\x80", 3, NURI_UTF8_INVALID, 1);     /* surrogate */
    check_decode("\xf4\x90\x80\x80", 4, NURI_UTF8_INVALID, 1); /* above U+10FFFF */
    check_decode("\xe4\xb8", 2, NURI_UTF8_INVALID, 1);         /* truncated */
    check_decode("\xe4\xb8\x41", 3, NURI_UTF8_INVALID, 1);     /* bad continuation */
    check_decode("\x80", 1, NURI_UTF8_INVALID, 1);             /* stray continuation */
    check_decode("\xff", 1, NURI_UTF8_INVALID, 1);
    size_t adv = 99;
    CHECK(nuri_utf8_decode("", 0, &adv) == NURI_UTF8_INVALID && adv == 0, "decode of nothing");

    static const uint32_t round_trip[] = {0,      'z',    0x7F,   0x80,    0x7FF,   0x800,   0xD7FF,
                                          0xE000, 0xFFFD, 0xFFFF, 0x10000, 0x1F999, 0x10FFFF};
    for (size_t i = 0; i < sizeof round_trip / sizeof round_trip[0]; i++) {
        char buf[4];
        size_t n = nuri_utf8_encode(round_trip[i], buf);
        uint32_t back = nuri_utf8_decode(buf, n, &adv);
        CHECK(n > 0 && back == round_trip[i] && adv == n, "round trip of U+%04X", round_trip[i]);
        CHECK(nuri_utf8_char_len((unsigned char)buf[0]) == n, "char_len of U+%04X", round_trip[i]);
    }
    char buf[4];
    CHECK(nuri_utf8_encode(0xD800, buf) == 0, "a surrogate does not encode");
    CHECK(nuri_utf8_encode(0x110000, buf) == 0, "U+110000 does not encode");
    CHECK(nuri_utf8_encode(0xE9, buf) == 2 && memcmp(buf, "\xc3\xa9", 2) == 0, "encode U+00E9");
    CHECK(nuri_utf8_char_len(0x80) == 0 && nuri_utf8_char_len(0xC1) == 0 &&
              nuri_utf8_char_len(0xF5) == 0 && nuri_utf8_char_len(0xFF) == 0,
          "char_len of bytes that start nothing");
}

/* ---- Categories and case folding ---- */

static void test_categories(void) {
    static const struct {
        uint32_t cp;
        unsigned flags;
    } cases[] = {
        {'a', NURI_UCAT_LETTER},
        {'Z', NURI_UCAT_LETTER},
        {'5', NURI_UCAT_NUMBER},
        {',', NURI_UCAT_PUNCTUATION},
        {'\'', NURI_UCAT_PUNCTUATION},
        {'+', NURI_UCAT_SYMBOL},
        {'$', NURI_UCAT_SYMBOL},
        {0x0301, NURI_UCAT_MARK}, /* combining acute */
        {' ', NURI_UCAT_SEPARATOR | NURI_UCAT_WHITE_SPACE},
        {'\t', NURI_UCAT_OTHER | NURI_UCAT_WHITE_SPACE},
        {'\n', NURI_UCAT_OTHER | NURI_UCAT_WHITE_SPACE},
        {0x0B, NURI_UCAT_OTHER | NURI_UCAT_WHITE_SPACE},
        {0x1C, NURI_UCAT_OTHER}, /* isspace() says yes; White_Space no */
        {0x85, NURI_UCAT_OTHER | NURI_UCAT_WHITE_SPACE},
        {0xA0, NURI_UCAT_SEPARATOR | NURI_UCAT_WHITE_SPACE},
        {0x200B, NURI_UCAT_OTHER}, /* zero width space: Cf */
        {0x2028, NURI_UCAT_SEPARATOR | NURI_UCAT_WHITE_SPACE},
        {0x3000, NURI_UCAT_SEPARATOR | NURI_UCAT_WHITE_SPACE},
        {0xAC00, NURI_UCAT_LETTER}, /* Hangul syllable */
        {0x4E16, NURI_UCAT_LETTER}, /* CJK */
        {0x0E01, NURI_UCAT_LETTER}, /* Thai */
        {0x0E31, NURI_UCAT_MARK},
        {0x1F600, NURI_UCAT_SYMBOL},
        {0x200D, NURI_UCAT_OTHER},  /* zero width joiner */
        {0xFE0F, NURI_UCAT_MARK},   /* variation selector */
        {0xBD, NURI_UCAT_NUMBER},   /* one half */
        {0x0663, NURI_UCAT_NUMBER}, /* Arabic-Indic three */
        {0x2160, NURI_UCAT_NUMBER}, /* Roman numeral one */
        {0x0378, NURI_UCAT_OTHER},  /* unassigned */
        {0xE000, NURI_UCAT_OTHER},  /* private use */
        {0x10FFFF, NURI_UCAT_OTHER},
        {0x110000, 0},
        {NURI_UTF8_INVALID, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unsigned got = nuri_unicode_flags(cases[i].cp);
        CHECK(got == cases[i].flags, "flags of U+%04X: got 0x%x, want 0x%x", cases[i].cp, got,
              cases[i].flags);
    }
    CHECK(nuri_unicode_is_letter(0xD55C) && nuri_unicode_is_number('7') &&
              nuri_unicode_is_white_space(0x205F) && !nuri_unicode_is_white_space(0x1F),
          "category predicates");

    static const uint32_t folds[][2] = {
        {'A', 'a'},         {'a', 'a'},
        {'1', '1'},         {0x17F, 's'},
        {0x212A, 'k'},      {0x130, 0x130},
        {0x1E9E, 0xDF},     {0x3A3, 0x3C3},
        {0x3C2, 0x3C3},     {0x100, 0x101},
        {0x101, 0x101},     {0x104, 0x105},
        {0xAB70, 0x13A0},   {0x10400, 0x10428},
        {0x1E900, 0x1E922}, {NURI_UTF8_INVALID, NURI_UTF8_INVALID},
    };
    for (size_t i = 0; i < sizeof folds / sizeof folds[0]; i++)
        CHECK(nuri_unicode_casefold(folds[i][0]) == folds[i][1], "casefold U+%04X: got U+%04X",
              folds[i][0], nuri_unicode_casefold(folds[i][0]));
}

/* ---- Splits ---- */

/* The pieces must be non-empty, in order, and cover the text exactly. */
static bool covers_exactly(const size_t *ends, size_t n, size_t len) {
    size_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        if (ends[i] <= prev || ends[i] > len) return false;
        prev = ends[i];
    }
    return len == 0 ? n == 0 : prev == len;
}

/* Splits text and compares with the expected pieces (NULL-terminated). */
static void check_split_n(nuri_pretok_kind kind, const char *text, size_t len,
                          const char *const *want, const char *label) {
    size_t *ends = NULL, n = 0;
    nuri_error err = {0};
    nuri_status st = nuri_pretokenize(kind, text, len, &ends, &n, &err);
    CHECK(st == NURI_OK, "%s: status %d (%s)", label, (int)st, err.message);
    if (st != NURI_OK) return;
    CHECK(covers_exactly(ends, n, len), "%s: pieces do not cover the text", label);
    size_t n_want = 0;
    while (want[n_want])
        n_want++;
    bool same = n == n_want;
    size_t start = 0;
    for (size_t i = 0; same && i < n; i++) {
        size_t piece_len = ends[i] - start;
        same = strlen(want[i]) == piece_len && memcmp(want[i], text + start, piece_len) == 0;
        start = ends[i];
    }
    if (!same) {
        fprintf(stderr, "  %s: got %zu pieces:", label, n);
        start = 0;
        for (size_t i = 0; i < n; i++) {
            fprintf(stderr, " [%.*s]", (int)(ends[i] - start), text + start);
            start = ends[i];
        }
        fprintf(stderr, "\n");
    }
    CHECK(same, "%s: wrong split (want %zu pieces)", label, n_want);
    free(ends);
}

#define SPLIT(kind, text, ...)                                                                     \
    do {                                                                                           \
        static const char *const want_[] = {__VA_ARGS__, NULL};                                    \
        check_split_n(NURI_PRETOK_##kind, text, sizeof(text) - 1, want_, #kind ": " #text);        \
    } while (0)

static void test_gpt2(void) {
    SPLIT(GPT2, "I'm here", "I", "'m", " here");
    SPLIT(GPT2, "they'll", "they", "'ll");
    SPLIT(GPT2, "DON'T", "DON", "'", "T"); /* GPT-2's contractions are lowercase only */
    SPLIT(GPT2, "a   b", "a", "  ", " b");
    SPLIT(GPT2, "hello   ", "hello", "   ");
    SPLIT(GPT2, "\n\n\n", "\n\n\n");
    SPLIT(GPT2, "\r\n", "\r\n");
    SPLIT(GPT2, "x  \ty", "x", "  ", "\t", "y");
    SPLIT(GPT2, "Hello, world!", "Hello", ",", " world", "!");
    SPLIT(GPT2, "1234567", "1234567");
    SPLIT(GPT2, "안녕하세요 세계", "안녕하세요", " 세계");
    SPLIT(GPT2, "🦙🦙 ok", "🦙🦙", " ok");
    SPLIT(GPT2, " this is 🦙.cpp", " this", " is", " 🦙.", "cpp");
    SPLIT(GPT2, "Führer naïve 世界ok", "Führer", " naïve", " 世界ok");
    /* Combining marks are not letters: they group with symbols. */
    SPLIT(GPT2, "e\xcc\x81t\xc3\xa9", "e", "\xcc\x81", "t\xc3\xa9");
    /* Invalid bytes are one character each, of no letter/number/space class. */
    SPLIT(GPT2, "a\xff\xfe b", "a", "\xff\xfe", " b");
    SPLIT(GPT2, "ab\xc3", "ab", "\xc3");
    SPLIT(GPT2, "\xe4\xb8 x", "\xe4\xb8", " x");
    /* NUL is an ordinary (control) character, not the end of the text. */
    size_t *ends = NULL, n = 0;
    nuri_error err;
    CHECK(nuri_pretokenize(NURI_PRETOK_GPT2, "a\0b", 3, &ends, &n, &err) == NURI_OK && n == 3 &&
              ends[0] == 1 && ends[1] == 2 && ends[2] == 3,
          "GPT2: a NUL b splits in three");
    free(ends);
}

static void test_llama3(void) {
    SPLIT(LLAMA3, "DON'T", "DON", "'T");
    SPLIT(LLAMA3, "I'm", "I", "'m");
    SPLIT(LLAMA3, "they'll", "they", "'ll");
    SPLIT(LLAMA3, "We'Ve a'lL", "We", "'Ve", " a", "'lL");
    SPLIT(LLAMA3, "it'\xc5\xbf", "it", "'\xc5\xbf"); /* LONG S folds to s under (?i) */
    SPLIT(LLAMA3, "1234567", "123", "456", "7");
    SPLIT(LLAMA3, "a   b", "a", "  ", " b");
    SPLIT(LLAMA3, "hello   ", "hello", "   ");
    SPLIT(LLAMA3, "\n\n\n", "\n\n\n");
    SPLIT(LLAMA3, "\r\n", "\r\n");
    SPLIT(LLAMA3, "hello\n\nworld", "hello", "\n\n", "world");
    SPLIT(LLAMA3, "  \n  x", "  \n", " ", " x");
    SPLIT(LLAMA3, "안녕하세요 세계", "안녕하세요", " 세계");
    SPLIT(LLAMA3, "...!!! ok", "...!!!", " ok");
    SPLIT(LLAMA3, "x=1;\n", "x", "=", "1", ";\n");
    SPLIT(LLAMA3, "🚀 (normal) \xf0\x9f\x98\xb6\xe2\x80\x8d\xf0\x9f\x8c\xab\xef\xb8\x8f", "🚀", " (",
          "normal", ")", " \xf0\x9f\x98\xb6\xe2\x80\x8d\xf0\x9f\x8c\xab\xef\xb8\x8f");
    SPLIT(LLAMA3, "Cửa Việt", "Cửa", " Việt");
    SPLIT(LLAMA3, "3.14 $5", "3", ".", "14", " $", "5");
    SPLIT(LLAMA3,
          "\xc2\xa0\xc2\xa0"
          "a",
          "\xc2\xa0",
          "\xc2\xa0"
          "a"); /* NBSP is \s */
    SPLIT(LLAMA3,
          "\xff"
          "abc",
          "\xff"
          "abc"); /* an invalid byte may lead a word */
}

static void test_deepseek(void) {
    SPLIT(DEEPSEEK_LLM, "Hello 世界123", "Hello", " ", "世界", "123");
    SPLIT(DEEPSEEK_LLM, "ab  ", "ab", "  ");
    SPLIT(DEEPSEEK_LLM, "a\n\nb", "a", "\n", "\n", "b");
    SPLIT(DEEPSEEK_LLM, "안녕하세요 세계", "안녕하세요", " ", "세계");
    SPLIT(DEEPSEEK_LLM, "I'm 12,345!", "I", "'", "m", " ", "12", ",", "345", "!");
    /* [:-~] also spans the ASCII letters, so they part from other letters. */
    SPLIT(DEEPSEEK_LLM, "Führer", "F", "ü", "hrer");
    SPLIT(DEEPSEEK_LLM, "ü ñ", "ü", " ñ");
    /* U+1F7D, U+1FBE, U+2126: letters whose normalized forms differ. */
    SPLIT(DEEPSEEK_LLM, "\xe1\xbd\xbd\xe1\xbe\xbe\xe2\x84\xa6x",
          "\xe1\xbd\xbd\xe1\xbe\xbe\xe2\x84\xa6", "x");
    SPLIT(DEEPSEEK_LLM, "x  \xe2\x82\xac", "x", "  ", "\xe2\x82\xac");
}

static void test_starcoder_falcon(void) {
    SPLIT(STARCODER, "abc 123", "abc", " ", "1", "2", "3");
    SPLIT(STARCODER, "I'm 42!", "I", "'m", " ", "4", "2", "!");
    SPLIT(STARCODER, "x  \n", "x", "  \n");
    SPLIT(FALCON, "Hello, world!!", "Hello", ",", " world", "!!");
    SPLIT(FALCON, "1234567", "123", "456", "7");
    SPLIT(FALCON, " 12", " 12");
    SPLIT(FALCON, "12345 ok", "123", "45", " ok");
    SPLIT(FALCON, "a+b=c", "a", "+", "b", "=", "c");
    SPLIT(FALCON, "¿Qué?", "¿", "Qué", "?");
    /* Qwen2: Llama 3's rules, but every digit on its own. */
    SPLIT(QWEN2, "abc 12345", "abc", " ", "1", "2", "3", "4", "5");
    SPLIT(QWEN2, "I'M here", "I", "'M", " here");
}

static void test_names_and_errors(void) {
    static const struct {
        const char *name;
        int kind;
    } names[] = {
        {"default", NURI_PRETOK_GPT2},
        {"gpt2", NURI_PRETOK_GPT2},
        {"gpt-2", NURI_PRETOK_GPT2},
        {"llama-bpe", NURI_PRETOK_LLAMA3},
        {"llama3", NURI_PRETOK_LLAMA3},
        {"deepseek-llm", NURI_PRETOK_DEEPSEEK_LLM},
        {"starcoder", NURI_PRETOK_STARCODER},
        {"falcon", NURI_PRETOK_FALCON},
        {"qwen2", NURI_PRETOK_QWEN2},
        {"llama", -1},
        {"", -1},
        {"LLAMA-BPE", -1},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        CHECK(nuri_pretok_kind_from_name(names[i].name, strlen(names[i].name)) == names[i].kind,
              "kind of name \"%s\"", names[i].name);
    CHECK(nuri_pretok_kind_from_name("llama-bpe-extra", 9) == NURI_PRETOK_LLAMA3,
          "the name is len bytes, not NUL-terminated");
    CHECK(nuri_pretok_kind_from_name("falcon", 5) == -1, "a prefix is not a name");

    size_t *ends = (size_t *)1, n = 7;
    nuri_error err = {0};
    CHECK(nuri_pretokenize(NURI_PRETOK_LLAMA3, "", 0, &ends, &n, &err) == NURI_OK && ends == NULL &&
              n == 0,
          "empty text gives no words");
    CHECK(nuri_pretokenize(NURI_PRETOK_GPT2, NULL, 0, &ends, &n, &err) == NURI_OK && n == 0,
          "NULL text of length 0 is empty text");
    CHECK(nuri_pretokenize(NURI_PRETOK_GPT2, NULL, 3, &ends, &n, &err) == NURI_ERR_INVALID_ARG,
          "NULL text with a length is refused");
    CHECK(nuri_pretokenize(NURI_PRETOK_GPT2, "x", 1, NULL, &n, &err) == NURI_ERR_INVALID_ARG &&
              err.message[0] != '\0',
          "NULL output is refused with a message");
    CHECK(nuri_pretokenize((nuri_pretok_kind)99, "x", 1, &ends, &n, &err) == NURI_ERR_INVALID_ARG,
          "an unknown kind is refused");
}

/* ---- Coverage over arbitrary bytes ---- */

static uint32_t rng_state = 12345;
static uint32_t rng_next(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}

/* Random texts mixing ASCII, whitespace, multi-byte characters and bytes
 * that are not UTF-8: every kind must cover them exactly, and never cut a
 * valid character in two. */
static void test_coverage(void) {
    static const char *const atoms[] = {"a",
                                        "Z",
                                        " ",
                                        "  ",
                                        "\t",
                                        "\n",
                                        "\r\n",
                                        "'",
                                        "'s",
                                        "'LL",
                                        "7",
                                        "123",
                                        ".",
                                        "!?",
                                        "$",
                                        "\xc2\xa0",
                                        "\xe3\x80\x80",
                                        "한",
                                        "世",
                                        "é",
                                        "\xcc\x81",
                                        "🦙",
                                        "\xe2\x80\x8d",
                                        "\xff",
                                        "\xc3",
                                        "\xe4\xb8",
                                        "\x80",
                                        "\xed\xa0\x80",
                                        "\0",
                                        "\xd9\xa3",
                                        "€",
                                        "£"};
    const size_t n_atoms = sizeof atoms / sizeof atoms[0];
    char text[256];
    int bad_cover = 0, bad_cut = 0;
    for (int iter = 0; iter < 2000; iter++) {
        size_t len = 0, n_pick = rng_next() % 24;
        for (size_t i = 0; i < n_pick; i++) {
            const char *a = atoms[rng_next() % n_atoms];
            size_t alen = a[0] ? strlen(a) : 1;
            memcpy(text + len, a, alen);
            len += alen;
        }
        /* The character boundaries, as a decoder walking the text sees them. */
        bool boundary[257] = {false};
        for (size_t pos = 0; pos < len;) {
            boundary[pos] = true;
            size_t adv;
            nuri_utf8_decode(text + pos, len - pos, &adv);
            pos += adv;
        }
        boundary[len] = true;
        for (int kind = NURI_PRETOK_GPT2; kind <= NURI_PRETOK_QWEN2; kind++) {
            size_t *ends = NULL, n = 0;
            nuri_error err;
            if (nuri_pretokenize((nuri_pretok_kind)kind, text, len, &ends, &n, &err) != NURI_OK ||
                !covers_exactly(ends, n, len)) {
                bad_cover++;
            } else {
                for (size_t i = 0; i < n; i++)
                    if (!boundary[ends[i]]) bad_cut++;
            }
            free(ends);
        }
    }
    CHECK(bad_cover == 0, "%d random texts were not covered exactly", bad_cover);
    CHECK(bad_cut == 0, "%d pieces cut a character in two", bad_cut);
}

/* ---- Long inputs ---- */

/* A megabyte of one repeated pattern must split in linear time (a naive
 * backtracking matcher is quadratic on several of these) and give the
 * expected number of pieces. */
static void check_long(nuri_pretok_kind kind, const char *unit, const char *tail,
                       size_t want_pieces, const char *label) {
    const size_t total = 1u << 20;
    size_t unit_len = strlen(unit), tail_len = strlen(tail);
    char *text = malloc(total + tail_len);
    CHECK(text != NULL, "%s: allocation", label);
    if (!text) return;
    CHECK(total % unit_len == 0, "%s: the unit must divide 2^20", label);
    for (size_t i = 0; i + unit_len <= total; i += unit_len)
        memcpy(text + i, unit, unit_len);
    memcpy(text + total, tail, tail_len);
    size_t len = total + tail_len, *ends = NULL, n = 0;
    nuri_error err;
    double t0 = nuri_time_sec();
    nuri_status st = nuri_pretokenize(kind, text, len, &ends, &n, &err);
    double dt = nuri_time_sec() - t0;
    CHECK(st == NURI_OK && covers_exactly(ends, n, len), "%s: split failed", label);
    CHECK(n == want_pieces, "%s: %zu pieces, want %zu", label, n, want_pieces);
    /* Linear work takes well under a second, even under the sanitizers;
     * quadratic work on 2^20 characters would take hours. */
    CHECK(dt < 5.0, "%s: took %.2f s", label, dt);
    free(ends);
    free(text);
}

static void test_long_inputs(void) {
    const size_t mb = 1u << 20;
    for (int kind = NURI_PRETOK_GPT2; kind <= NURI_PRETOK_QWEN2; kind++) {
        check_long((nuri_pretok_kind)kind, " ", "", 1, "1 MB of spaces");
        check_long((nuri_pretok_kind)kind, "a", "", 1, "1 MB of one letter");
    }
    check_long(NURI_PRETOK_GPT2, " ", "x", 2, "GPT2: spaces then a letter");
    check_long(NURI_PRETOK_LLAMA3, "\t", "x", 2, "LLAMA3: tabs then a letter");
    check_long(NURI_PRETOK_LLAMA3, "\n", "", 1, "LLAMA3: newlines");
    check_long(NURI_PRETOK_LLAMA3, " ", "\xe2\x82\xac", 2, "LLAMA3: spaces then a symbol");
    check_long(NURI_PRETOK_DEEPSEEK_LLM, " ", "\xe2\x82\xac", 2,
               "DEEPSEEK_LLM: spaces then a symbol");
    check_long(NURI_PRETOK_DEEPSEEK_LLM, "\n", "", mb, "DEEPSEEK_LLM: newlines");
    check_long(NURI_PRETOK_LLAMA3, "7", "", (mb + 2) / 3, "LLAMA3: digits");
    check_long(NURI_PRETOK_STARCODER, "7", "", mb, "STARCODER: digits");
    check_long(NURI_PRETOK_FALCON, "7", "", (mb + 2) / 3, "FALCON: digits");
    check_long(NURI_PRETOK_GPT2, " abc", "", mb / 4, "GPT2: words");
    check_long(NURI_PRETOK_LLAMA3, "\xff", "", 1, "LLAMA3: invalid bytes");
    check_long(NURI_PRETOK_GPT2, "\xc3\xa9", "", 1, "GPT2: a two-byte letter");
    check_long(NURI_PRETOK_GPT2, "🦙", "", 1, "GPT2: emoji");
}

/* ---- First use from several threads ---- */

/* The patterns compile on first use; threads racing to be first must all
 * get correct splits. This runs before any other split in the process. */
static void *split_in_thread(void *arg) {
    int kind = *(const int *)arg;
    size_t *ends = NULL, n = 0;
    nuri_error err;
    bool ok = nuri_pretokenize((nuri_pretok_kind)kind, "I'm 1234 ok", 11, &ends, &n, &err) ==
                  NURI_OK &&
              covers_exactly(ends, n, 11) && n >= 4;
    free(ends);
    return ok ? arg : NULL;
}

static void test_first_use_from_threads(void) {
    enum { N_THREADS = 8 };
    pthread_t threads[N_THREADS];
    int kinds[N_THREADS];
    bool started[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        kinds[i] = i % (NURI_PRETOK_QWEN2 + 1);
        started[i] = pthread_create(&threads[i], NULL, split_in_thread, &kinds[i]) == 0;
    }
    for (int i = 0; i < N_THREADS; i++) {
        void *result = NULL;
        if (started[i]) pthread_join(threads[i], &result);
        CHECK(started[i] && result == &kinds[i], "thread %d split correctly on first use", i);
    }
}

int main(void) {
    test_first_use_from_threads();
    test_utf8();
    test_categories();
    test_gpt2();
    test_llama3();
    test_deepseek();
    test_starcoder_falcon();
    test_names_and_errors();
    test_coverage();
    test_long_inputs();
    return test_finish();
}
