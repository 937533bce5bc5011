/* stop.c — the streaming stop-string matcher (see stop.h).
 *
 * The matcher keeps one buffer: the held-back tail of the text so far, to
 * which each feed appends its piece. No stop string can have completed inside
 * the held tail (it would have matched when its last byte arrived), and no
 * stop string can start before the tail (the tail is the longest suffix that
 * is a proper prefix of a stop string), so searching the buffer alone finds
 * exactly the matches that end in the new piece. */
#include "chat/stop.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct nuri_stop {
    size_t n_stops;
    char **stops;       /* non-empty stop strings, copied */
    size_t *lens;
    long *index;        /* each one's index in the caller's array */
    size_t max_len;

    char *buf;          /* held tail, then the piece being fed */
    size_t cap;
    size_t held_start;  /* the held tail is buf[held_start, held_start + held_len) */
    size_t held_len;
    long matched;       /* caller's index of the stop string that completed, or -1 */
};

nuri_stop *nuri_stop_create(const char *const *stops, const size_t *lens, size_t n) {
    nuri_stop *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->matched = -1;
    if (n > 0) {
        s->stops = calloc(n, sizeof *s->stops);
        s->lens = calloc(n, sizeof *s->lens);
        s->index = calloc(n, sizeof *s->index);
        if (!s->stops || !s->lens || !s->index) goto oom;
    }
    for (size_t i = 0; i < n; i++) {
        if (!stops || !stops[i]) continue;
        size_t len = lens ? lens[i] : strlen(stops[i]);
        if (len == 0) continue;
        char *copy = malloc(len);
        if (!copy) goto oom;
        memcpy(copy, stops[i], len);
        s->stops[s->n_stops] = copy;
        s->lens[s->n_stops] = len;
        s->index[s->n_stops] = (long)i;
        s->n_stops++;
        if (len > s->max_len) s->max_len = len;
    }
    /* Room for the longest possible held tail plus a typical token's text,
     * so that ordinary feeds never allocate. */
    s->cap = s->max_len + 64;
    s->buf = malloc(s->cap);
    if (!s->buf) goto oom;
    return s;
oom:
    nuri_stop_free(s);
    return NULL;
}

void nuri_stop_free(nuri_stop *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_stops; i++) free(s->stops[i]);
    free(s->stops);
    free(s->lens);
    free(s->index);
    free(s->buf);
    free(s);
}

/* Length of the longest suffix of text[0, len) that is a proper prefix of
 * some stop string: the bytes that must wait for more text. */
static size_t longest_pending_prefix(const nuri_stop *s, const char *text, size_t len) {
    size_t k = s->max_len > 0 ? s->max_len - 1 : 0;
    if (k > len) k = len;
    for (; k > 0; k--) {
        const char *tail = text + len - k;
        for (size_t i = 0; i < s->n_stops; i++)
            if (s->lens[i] > k && memcmp(tail, s->stops[i], k) == 0) return k;
    }
    return 0;
}

bool nuri_stop_feed(nuri_stop *s, const char *text, size_t len, const char **out,
                    size_t *out_len, bool *matched) {
    *out = s->buf;
    *out_len = 0;
    *matched = s->matched >= 0;
    if (s->matched >= 0) return true;

    memmove(s->buf, s->buf + s->held_start, s->held_len);
    s->held_start = 0;
    if (len > SIZE_MAX - s->held_len) return false;
    size_t total = s->held_len + len;
    if (total > s->cap) {
        size_t cap = total > SIZE_MAX / 2 ? total : total * 2;
        char *grown = realloc(s->buf, cap);
        if (!grown) return false;
        s->buf = grown;
        s->cap = cap;
        *out = s->buf;
    }
    if (len > 0) memcpy(s->buf + s->held_len, text, len);

    /* The stop string whose first occurrence ends earliest completed first. */
    size_t best_end = SIZE_MAX, best_start = 0;
    long best = -1;
    for (size_t i = 0; i < s->n_stops; i++) {
        const char *hit = memmem(s->buf, total, s->stops[i], s->lens[i]);
        if (!hit) continue;
        size_t start = (size_t)(hit - s->buf), end = start + s->lens[i];
        if (end < best_end || (end == best_end && start < best_start)) {
            best_end = end;
            best_start = start;
            best = s->index[i];
        }
    }
    if (best >= 0) {
        s->matched = best;
        s->held_len = 0;
        *out_len = best_start;
        *matched = true;
        return true;
    }

    size_t hold = longest_pending_prefix(s, s->buf, total);
    *out_len = total - hold;
    s->held_start = total - hold;
    s->held_len = hold;
    return true;
}

size_t nuri_stop_flush(nuri_stop *s, const char **out) {
    *out = s->buf + s->held_start;
    size_t n = s->matched >= 0 ? 0 : s->held_len;
    s->held_start += s->held_len;
    s->held_len = 0;
    return n;
}

long nuri_stop_which(const nuri_stop *s) { return s->matched; }

size_t nuri_stop_held(const nuri_stop *s) { return s->held_len; }

void nuri_stop_reset(nuri_stop *s) {
    s->held_start = 0;
    s->held_len = 0;
    s->matched = -1;
}
