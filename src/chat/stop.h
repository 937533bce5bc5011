/* stop.h — stop strings over a stream of generated text.
 *
 * Generated text arrives in pieces (one token's text at a time), and a stop
 * string may span several pieces or split a UTF-8 character between them.
 * The matcher holds back the end of the text that could still be the start
 * of a stop string and releases it once it no longer can:
 *
 *     const char *stops[] = {"\nUser:", "</s>"};
 *     nuri_stop *s = nuri_stop_create(stops, NULL, 2);
 *     for each generated piece:
 *         const char *out; size_t n; bool matched;
 *         if (!nuri_stop_feed(s, piece, piece_len, &out, &n, &matched)) -> out of memory
 *         emit(out, n);
 *         if (matched) break;          // the stop string itself is never emitted
 *     at the end of the stream (no match):
 *         n = nuri_stop_flush(s, &out); emit(out, n);
 *     nuri_stop_free(s);
 *
 * The result does not depend on how the text is cut into pieces: it is as if
 * the text were fed one byte at a time, so the stop string that completes
 * first wins (on a tie, the longer one). Text before the stop string is
 * emitted; the stop string and everything after it are not.
 *
 * When the text and the stop strings are valid UTF-8, every emitted piece
 * ends on a character boundary (held-back text always starts where a stop
 * string starts). A matcher is not thread-safe; use one per stream. */
#ifndef NURI_CHAT_STOP_H
#define NURI_CHAT_STOP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct nuri_stop nuri_stop;

/* Copies n stop strings. lens gives their byte lengths (they may contain
 * NULs); lens NULL means each is a NUL-terminated string. Empty strings (and
 * NULL entries) are ignored, so a matcher with none passes everything
 * through. Returns NULL only when out of memory. */
nuri_stop *nuri_stop_create(const char *const *stops, const size_t *lens, size_t n);

void nuri_stop_free(nuri_stop *s);

/* Feeds len bytes of generated text. On return *out / *out_len are the bytes
 * safe to emit now (pointing into the matcher, valid until its next call)
 * and *matched tells whether a stop string has completed: then *out is the
 * rest of the text before it, and later feeds and flushes emit nothing.
 * Returns false only when out of memory (the matcher is unchanged and
 * *out_len is 0). */
bool nuri_stop_feed(nuri_stop *s, const char *text, size_t len, const char **out,
                    size_t *out_len, bool *matched);

/* At the end of the stream: returns the number of held-back bytes and points
 * *out at them (0 after a match). The matcher then holds nothing. */
size_t nuri_stop_flush(nuri_stop *s, const char **out);

/* Index (in the array given to create) of the stop string that matched, or
 * -1 while none has. */
long nuri_stop_which(const nuri_stop *s);

/* Number of bytes currently held back (not yet emitted). */
size_t nuri_stop_held(const nuri_stop *s);

/* Forgets the stream (held text and any match) to start a new one with the
 * same stop strings. */
void nuri_stop_reset(nuri_stop *s);

#endif
