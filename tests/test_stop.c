/* test_stop.c — the streaming stop-string matcher (src/chat/stop.h).
 *
 * The reference is the definition itself: scan the whole text byte by byte,
 * stop at the first position where some stop string ends (the longer one on
 * a tie). Every random chunking of the text must give exactly that. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/stop.h"
#include "support/test.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rng_next(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}
static size_t rng_below(size_t n) { return n ? rng_next() % n : 0; }

/* Expected result: how many bytes are emitted and which stop matched (-1). */
static size_t reference(const char *text, size_t len, const char *const *stops, size_t n,
                        long *which) {
    for (size_t end = 1; end <= len; end++) {
        long best = -1;
        size_t best_len = 0;
        for (size_t i = 0; i < n; i++) {
            size_t l = strlen(stops[i]);
            if (l == 0 || l > end || l <= best_len) continue;
            if (memcmp(text + end - l, stops[i], l) == 0) {
                best = (long)i;
                best_len = l;
            }
        }
        if (best >= 0) {
            *which = best;
            return end - best_len;
        }
    }
    *which = -1;
    return len;
}

typedef struct {
    char *data;
    size_t len;
    bool matched;
    long which;
    bool ok;
    size_t max_held;
} stream_result;

/* Feeds text in pieces whose lengths come from cut (cut(i) > 0 bytes), then
 * flushes unless a stop matched. */
static stream_result run_stream(const char *text, size_t len, const char *const *stops, size_t n,
                                size_t (*cut)(const char *rest, size_t rest_len)) {
    stream_result r = {malloc(len + 1), 0, false, -1, true, 0};
    nuri_stop *s = nuri_stop_create(stops, NULL, n);
    if (!s || !r.data) {
        r.ok = false;
        nuri_stop_free(s);
        return r;
    }
    size_t pos = 0;
    while (pos < len && !r.matched) {
        size_t piece = cut(text + pos, len - pos);
        if (piece > len - pos) piece = len - pos;
        const char *out;
        size_t out_len;
        bool matched;
        if (!nuri_stop_feed(s, text + pos, piece, &out, &out_len, &matched)) r.ok = false;
        if (r.len + out_len > len) {
            r.ok = false;
            break;
        }
        memcpy(r.data + r.len, out, out_len);
        r.len += out_len;
        r.matched = matched;
        if (nuri_stop_held(s) > r.max_held) r.max_held = nuri_stop_held(s);
        pos += piece;
    }
    const char *out;
    size_t out_len = nuri_stop_flush(s, &out);
    if (r.matched && out_len != 0) r.ok = false;
    if (r.len + out_len <= len) {
        memcpy(r.data + r.len, out, out_len);
        r.len += out_len;
    } else {
        r.ok = false;
    }
    r.which = nuri_stop_which(s);
    nuri_stop_free(s);
    return r;
}

static size_t cut_random(const char *rest, size_t rest_len) { return 1 + rng_below(rest_len < 7 ? rest_len : 7); }
static size_t cut_bytes(const char *rest, size_t rest_len) { return 1; }
static size_t cut_whole(const char *rest, size_t rest_len) { return rest_len; }

/* Cuts only at UTF-8 character boundaries, one to three characters at a time
 * (how the detokenizer delivers text). */
static size_t cut_chars(const char *rest, size_t rest_len) {
    size_t chars = 1 + rng_below(3), pos = 0;
    while (chars-- > 0 && pos < rest_len) {
        pos++;
        while (pos < rest_len && ((unsigned char)rest[pos] & 0xC0) == 0x80) pos++;
    }
    return pos;
}

/* True when text does not end inside a UTF-8 character. */
static bool ends_on_char_boundary(const char *text, size_t len) {
    size_t i = len, cont = 0;
    while (i > 0 && ((unsigned char)text[i - 1] & 0xC0) == 0x80 && cont < 4) {
        i--;
        cont++;
    }
    if (i == 0) return cont == 0;
    unsigned char lead = (unsigned char)text[i - 1];
    size_t need = lead < 0x80 ? 0 : lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
    return cont == need;
}

/* Checks one text against every chunking strategy and the reference. */
static void check_text(const char *label, const char *text, const char *const *stops, size_t n) {
    size_t len = strlen(text);
    long want_which;
    size_t want_len = reference(text, len, stops, n, &want_which);
    size_t max_stop = 0;
    for (size_t i = 0; i < n; i++)
        if (strlen(stops[i]) > max_stop) max_stop = strlen(stops[i]);
    size_t (*cuts[])(const char *, size_t) = {cut_whole, cut_bytes, cut_random, cut_random,
                                              cut_random, cut_chars};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        stream_result r = run_stream(text, len, stops, n, cuts[c]);
        CHECK(r.ok, "%s (chunking %zu): feed failed or emitted too much", label, c);
        CHECK(r.len == want_len && memcmp(r.data, text, want_len) == 0,
              "%s (chunking %zu): emitted %zu bytes '%.*s', want %zu '%.*s'", label, c, r.len,
              (int)r.len, r.data, want_len, (int)want_len, text);
        CHECK(r.matched == (want_which >= 0) && r.which == want_which,
              "%s (chunking %zu): matched stop %ld, want %ld", label, c, r.which, want_which);
        CHECK(r.max_held < (max_stop ? max_stop : 1),
              "%s (chunking %zu): held %zu bytes, stops are at most %zu long", label, c,
              r.max_held, max_stop);
        free(r.data);
    }
}

/* ---- Fixed cases --------------------------------------------------------- */

static void test_fixed(void) {
    const char *user[] = {"\nUser:"};
    check_text("stop spanning pieces", "Hello there.\nUser: more", user, 1);
    check_text("no stop present", "Hello there.\nUse the force", user, 1);
    check_text("stop at the very start", "\nUser: hi", user, 1);
    check_text("text ends inside a stop prefix", "Hello\nUs", user, 1);
    check_text("no stops", "anything at all", NULL, 0);

    const char *empty[] = {"", ""};
    check_text("only empty stops", "anything", empty, 2);

    /* The stop that completes first wins, even if another started earlier. */
    const char *overlap[] = {"abcd", "bc"};
    check_text("overlap: shorter completes first", "xxabcdyy", overlap, 2);
    const char *nested[] = {"bc", "abc"};
    check_text("overlap: same end, longer wins", "xabcx", nested, 2);
    const char *self[] = {"aab"};
    check_text("self-overlapping stop", "aaaaab tail", self, 1);
    const char *repeat[] = {"abab"};
    check_text("periodic stop", "abababX", repeat, 1);

    const char *utf8[] = {"안녕히", "。\n"};
    check_text("UTF-8 stop", "안녕하세요 안녕 안녕히 가세요", utf8, 2);
    check_text("UTF-8 stop 2", "終わり。\n次", utf8, 2);
    check_text("UTF-8 no match", "안녕하세요。 안녕하", utf8, 2);

    const char *eot[] = {"<|eot_id|>", "<|im_end|>"};
    check_text("end-of-turn text", "The answer is 4.<|eot_id|><|start_header_id|>", eot, 2);

    /* Text that cannot begin a stop string is released at once. */
    nuri_stop *s = nuri_stop_create(user, NULL, 1);
    CHECK(s != NULL, "create failed");
    if (s) {
        const char *out;
        size_t n;
        bool matched;
        CHECK(nuri_stop_feed(s, "hello ", 6, &out, &n, &matched) && n == 6 &&
                  memcmp(out, "hello ", 6) == 0 && !matched,
              "plain text should pass through immediately, got %zu bytes", n);
        CHECK(nuri_stop_feed(s, "x\nUs", 4, &out, &n, &matched) && n == 1 && out[0] == 'x' &&
                  nuri_stop_held(s) == 3,
              "a possible stop prefix should be held: emitted %zu, held %zu", n, nuri_stop_held(s));
        CHECK(nuri_stop_feed(s, "ed", 2, &out, &n, &matched) && n == 5 &&
                  memcmp(out, "\nUsed", 5) == 0 && nuri_stop_held(s) == 0,
              "a prefix that stops matching is released: emitted %zu", n);
        CHECK(nuri_stop_feed(s, "\nUser:", 6, &out, &n, &matched) && n == 0 && matched &&
                  nuri_stop_which(s) == 0,
              "a whole stop string in one piece matches");
        CHECK(nuri_stop_feed(s, "more", 4, &out, &n, &matched) && n == 0 && matched,
              "after a match nothing more is emitted");
        CHECK(nuri_stop_flush(s, &out) == 0, "flush after a match emits nothing");

        nuri_stop_reset(s);
        CHECK(nuri_stop_which(s) == -1, "reset forgets the match");
        CHECK(nuri_stop_feed(s, "ok\nUse", 6, &out, &n, &matched) && n == 2 && !matched,
              "after reset the matcher works again");
        CHECK(nuri_stop_flush(s, &out) == 4 && memcmp(out, "\nUse", 4) == 0,
              "flush releases the held text");
        CHECK(nuri_stop_flush(s, &out) == 0, "a second flush has nothing left");
        nuri_stop_free(s);
    }

    /* Stop strings with explicit lengths may contain NUL bytes. */
    const char nul_stop[] = {'a', '\0', 'b'};
    const char *nul_stops[] = {nul_stop};
    size_t nul_len[] = {3};
    s = nuri_stop_create(nul_stops, nul_len, 1);
    if (s) {
        const char text[] = {'x', 'a', '\0', 'b', 'y'};
        const char *out;
        size_t n;
        bool matched;
        CHECK(nuri_stop_feed(s, text, 2, &out, &n, &matched) && n == 1 && !matched,
              "NUL stop: first piece emits 'x'");
        CHECK(nuri_stop_feed(s, text + 2, 3, &out, &n, &matched) && n == 0 && matched,
              "NUL stop: matched across pieces");
        nuri_stop_free(s);
    }
    s = nuri_stop_create(NULL, NULL, 0);
    CHECK(s != NULL && nuri_stop_which(s) == -1, "create with no stops");
    nuri_stop_free(s);
}

/* ---- Random texts over a small alphabet (many overlaps) ------------------ */

static void test_random(void) {
    char text[200], stop_buf[4][6];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = rng_below(sizeof text - 1);
        for (size_t i = 0; i < len; i++) text[i] = (char)('a' + rng_below(3));
        text[len] = '\0';
        size_t n = rng_below(5);
        const char *stops[4];
        for (size_t k = 0; k < n; k++) {
            size_t l = rng_below(5); /* 0: an empty stop, ignored */
            for (size_t i = 0; i < l; i++) stop_buf[k][i] = (char)('a' + rng_below(3));
            stop_buf[k][l] = '\0';
            stops[k] = stop_buf[k];
        }
        char label[64];
        snprintf(label, sizeof label, "random case %d", iter);
        int failed_before = test_failed;
        check_text(label, text, stops, n);
        if (test_failed != failed_before) {
            fprintf(stderr, "  text '%s', stops:", text);
            for (size_t k = 0; k < n; k++) fprintf(stderr, " '%s'", stops[k]);
            fputc('\n', stderr);
            break;
        }
    }
}

/* ---- UTF-8: pieces emitted from whole-character input end on characters -- */

static void test_utf8_boundaries(void) {
    const char *text = "한국어 텍스트입니다. 안녕하세요, 안녕히 계세요. 終わり。では。\n끝";
    const char *stops[] = {"안녕히 가", "では。\n", "끝!"};
    for (int iter = 0; iter < 200; iter++) {
        nuri_stop *s = nuri_stop_create(stops, NULL, 3);
        if (!s) break;
        size_t pos = 0, len = strlen(text);
        bool matched = false, boundary_ok = true;
        while (pos < len && !matched) {
            size_t piece = cut_chars(text + pos, len - pos);
            const char *out;
            size_t n;
            nuri_stop_feed(s, text + pos, piece, &out, &n, &matched);
            if (!ends_on_char_boundary(out, n)) boundary_ok = false;
            pos += piece;
        }
        CHECK(boundary_ok, "an emitted piece ended inside a UTF-8 character");
        CHECK(matched && nuri_stop_which(s) == 1, "the Japanese stop should match");
        nuri_stop_free(s);
        if (!boundary_ok) break;
    }
}

/* ---- Long texts ----------------------------------------------------------- */

static void test_long(void) {
    size_t len = 200000;
    char *text = malloc(len + 1);
    if (!text) return;
    for (size_t i = 0; i < len; i++) text[i] = (char)('a' + rng_below(20));
    text[len] = '\0';
    const char *absent[] = {"zzzzzzzz", "abcdefgh"};
    check_text("long text, no match", text, absent, 2);
    memcpy(text + len - 1000, "STOP here", 9);
    const char *present[] = {"STOP here", "zzzzzzzz"};
    check_text("long text, match near the end", text, present, 2);

    /* One piece much longer than the internal buffer. */
    nuri_stop *s = nuri_stop_create(present, NULL, 2);
    if (s) {
        const char *out;
        size_t n;
        bool matched;
        CHECK(nuri_stop_feed(s, text, len, &out, &n, &matched) && matched && n == len - 1000,
              "a single huge piece: emitted %zu, want %zu", n, len - 1000);
        nuri_stop_free(s);
    }
    free(text);
}

int main(void) {
    test_fixed();
    test_random();
    test_utf8_boundaries();
    test_long();
    return test_finish();
}
