/* jinja_builtins.c — the filters, tests, methods and global functions a
 * template may call. This table is the whole sandbox: a name not listed
 * here does not exist for templates.
 *
 * Behaviour follows jinja2 3.1 and CPython's str/dict methods, including
 * their quirks that chat templates depend on (map/select/... return
 * one-pass generators, which are always true and have no length; `default`
 * replaces only undefined unless boolean=true; round() rounds half to even). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/jinja.h"
#include "core/util.h"
#include "tokenizer/unicode.h"

static bool nomem(jstate *st) {
    return jinja_fail(st, NURI_ERR_NOMEM, "out of memory rendering a template");
}

static bool is_none(const jv *v) { return v && v->kind == JV_DATA && json_is_null(v->j); }

/* ---- Argument binding ----------------------------------------------------------- */

#define MAX_PARAMS 8

/* Binds positional and keyword arguments to the parameter names of fname
 * (NULL-terminated list); out[i] is NULL for parameters not given. */
static bool bind(jstate *st, const char *fname, const char *const *params, const jv *args, size_t n_args,
                 const char *const *kw_names, const jv *kw_vals, size_t n_kw, const jv **out) {
    size_t n_params = 0;
    while (params[n_params]) n_params++;
    for (size_t i = 0; i < MAX_PARAMS; i++) out[i] = NULL;
    if (n_args > n_params)
        return jinja_fail(st, NURI_ERR_FORMAT, "%s() takes at most %zu argument(s) (%zu given)", fname,
                          n_params, n_args);
    for (size_t i = 0; i < n_args; i++) out[i] = &args[i];
    for (size_t k = 0; k < n_kw; k++) {
        size_t i;
        for (i = 0; i < n_params; i++)
            if (!strcmp(params[i], kw_names[k])) break;
        if (i == n_params)
            return jinja_fail(st, NURI_ERR_FORMAT, "%s() got an unexpected keyword argument '%s'", fname,
                              kw_names[k]);
        if (out[i])
            return jinja_fail(st, NURI_ERR_FORMAT, "%s() got multiple values for argument '%s'", fname,
                              kw_names[k]);
        out[i] = &kw_vals[k];
    }
    return true;
}

static bool arg_int(jstate *st, const char *fname, const jv *v, int64_t def, int64_t *out) {
    if (!v || is_none(v)) {
        *out = def;
        return true;
    }
    if (!jv_is_int(v))
        return jinja_fail(st, NURI_ERR_FORMAT, "%s() expects an integer, got '%s'", fname, jv_type_name(v));
    *out = jv_int(v);
    return true;
}

static bool arg_str(jstate *st, const char *fname, const jv *v, const char **s, size_t *n) {
    if (!jv_is_str(v))
        return jinja_fail(st, NURI_ERR_FORMAT, "%s() expects a string, got '%s'", fname,
                          v ? jv_type_name(v) : "nothing");
    *s = jv_str(v);
    *n = jv_strlen(v);
    return true;
}

/* ---- Iteration ------------------------------------------------------------------ */

bool jinja_iterate(jstate *st, const jv *v, json_t **out) {
    *out = NULL;
    if (v->kind == JV_UNDEF) {
        *out = json_array();
        return *out ? true : nomem(st);
    }
    if (v->kind != JV_DATA)
        return jinja_fail(st, NURI_ERR_FORMAT, "'%s' object is not iterable", jv_type_name(v));
    json_t *j = v->j;
    if (json_is_array(j)) {
        *out = json_incref(j);
        return true;
    }
    json_t *arr = json_array();
    if (!arr) return nomem(st);
    if (json_is_object(j)) {
        const char *k;
        size_t klen;
        json_t *val;
        json_object_keylen_foreach(j, k, klen, val) {
            if (!jinja_charge(st, klen + 24) || json_array_append_new(arr, json_stringn_nocheck(k, klen))) {
                json_decref(arr);
                return nomem(st);
            }
        }
    } else if (json_is_string(j)) {
        const char *s = json_string_value(j);
        size_t n = json_string_length(j), pos = 0;
        while (pos < n) {
            size_t start = pos;
            utf8_next(s, n, &pos);
            if (!jinja_charge(st, 24) || json_array_append_new(arr, json_stringn_nocheck(s + start, pos - start))) {
                json_decref(arr);
                return nomem(st);
            }
        }
    } else {
        json_decref(arr);
        return jinja_fail(st, NURI_ERR_FORMAT, "'%s' object is not iterable", json_type_name(j));
    }
    if (!jinja_track(st, arr)) {
        json_decref(arr);
        return false;
    }
    *out = arr;
    return true;
}

/* A new list value from arr (taking its reference), recorded for depth. */
static bool make_list(jstate *st, json_t *arr, uint8_t flags, jv *out) {
    if (!jinja_track(st, arr)) {
        json_decref(arr);
        return false;
    }
    *out = jv_data(arr);
    out->flags = flags;
    return true;
}

static bool append(jstate *st, json_t *arr, const jv *v) {
    json_t *j = jv_to_json(st, v);
    if (!j) return false;
    if (!jinja_charge(st, JINJA_ELEM_COST)) {
        json_decref(j);
        return false;
    }
    return json_array_append_new(arr, j) == 0 || nomem(st);
}

/* Python's str.lower() applied when comparing case-insensitively. */
static bool lower_str(jstate *st, const char *s, size_t n, jv *out) {
    jbuf b = {0};
    size_t pos = 0;
    bool ok = true;
    while (ok && pos < n) {
        uint32_t cp = py_lower(utf8_next(s, n, &pos));
        char enc[4];
        ok = jbuf_put(st, &b, enc, nuri_utf8_encode(cp, enc));
    }
    if (ok) ok = jv_make_str(st, b.data, b.len, out);
    jbuf_free(&b);
    return ok;
}

/* Item attribute lookup as jinja2's make_attrgetter: "a.b.0" walks items. */
static bool attr_path(jstate *st, const jv *item, const char *path, size_t len, jv *out) {
    jv cur = jv_dup(item);
    size_t start = 0;
    while (start <= len) {
        size_t end = start;
        while (end < len && path[end] != '.') end++;
        bool digits = end > start;
        for (size_t i = start; i < end; i++)
            if (path[i] < '0' || path[i] > '9') digits = false;
        jv key, next;
        bool ok;
        if (digits && end - start < 18) {
            int64_t idx = 0;
            for (size_t i = start; i < end; i++) idx = idx * 10 + (path[i] - '0');
            ok = jv_make_int(st, idx, &key);
        } else {
            ok = jv_make_str(st, path + start, end - start, &key);
        }
        if (ok) ok = jinja_getitem(st, &cur, &key, &next);
        jv_drop(&key);
        jv_drop(&cur);
        if (!ok) return false;
        cur = next;
        start = end + 1;
    }
    *out = cur;
    return true;
}

/* Sort key: the item, or its attribute, lowercased for case-insensitive
 * string comparison. */
static bool sort_key(jstate *st, const jv *item, const jv *attribute, bool case_sensitive, jv *out) {
    *out = jv_undef();
    jv v;
    if (attribute && !is_none(attribute)) {
        if (jv_is_str(attribute)) {
            if (!attr_path(st, item, jv_str(attribute), jv_strlen(attribute), &v)) return false;
        } else if (!jinja_getitem(st, item, attribute, &v)) {
            return false;
        }
    } else {
        v = jv_dup(item);
    }
    if (!case_sensitive && jv_is_str(&v)) {
        bool ok = lower_str(st, jv_str(&v), jv_strlen(&v), out);
        jv_drop(&v);
        return ok;
    }
    *out = v;
    return true;
}

/* Compares two sort keys of n_parts values each, as Python compares the
 * lists jinja2 sorts by: the first unequal part decides with `<`, so equal
 * parts (two undefined values among them) never reach `<`. */
static bool key_less(jstate *st, const jv *a, const jv *b, size_t n_parts, int *cmp) {
    *cmp = 0;
    for (size_t p = 0; p < n_parts; p++) {
        if (jv_equal(st, &a[p], &b[p])) continue;
        return jv_compare(st, &a[p], &b[p], "<", cmp);
    }
    return true;
}

/* Stable merge sort of idx[] by keys[] (Python's sorted is stable). */
static bool merge_sort(jstate *st, size_t *idx, size_t *tmp, size_t n, const jv *keys, size_t n_parts,
                       bool reverse) {
    if (n < 2) return true;
    size_t h = n / 2;
    if (!merge_sort(st, idx, tmp, h, keys, n_parts, reverse) ||
        !merge_sort(st, idx + h, tmp, n - h, keys, n_parts, reverse))
        return false;
    if (!jinja_steps(st, n)) return false;
    size_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        int c;
        if (!key_less(st, &keys[idx[j] * n_parts], &keys[idx[i] * n_parts], n_parts, &c)) return false;
        /* Take from the right only when strictly before (keeps stability). */
        bool right_first = reverse ? c > 0 : c < 0;
        tmp[k++] = right_first ? idx[j++] : idx[i++];
    }
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
    return true;
}

/* Sorts items (array) by key; returns a new array in *out. attribute may
 * name several attributes separated by commas (sort(attribute="a,b")). */
static bool sorted(jstate *st, json_t *items, const jv *attribute, bool case_sensitive, bool reverse,
                   bool by_pair_index, size_t pair_index, json_t **out) {
    size_t n = json_array_size(items), n_parts = 1;
    jv parts[16];
    const jv *attrs[16] = {attribute};
    if (attribute && jv_is_str(attribute) && memchr(jv_str(attribute), ',', jv_strlen(attribute))) {
        const char *s = jv_str(attribute);
        size_t len = jv_strlen(attribute), start = 0;
        n_parts = 0;
        while (start <= len) {
            size_t end = start;
            while (end < len && s[end] != ',') end++;
            if (n_parts == 16) {
                for (size_t p = 0; p < n_parts; p++) jv_drop(&parts[p]);
                return jinja_fail(st, NURI_ERR_UNSUPPORTED, "sort by at most 16 attributes");
            }
            if (!jv_make_str(st, s + start, end - start, &parts[n_parts])) {
                for (size_t p = 0; p < n_parts; p++) jv_drop(&parts[p]);
                return false;
            }
            attrs[n_parts] = &parts[n_parts];
            n_parts++;
            start = end + 1;
        }
    } else {
        n_parts = 1;
        parts[0] = jv_undef();
    }
    jv *keys = nuri_calloc_array(n * n_parts + 1, sizeof *keys);
    size_t *idx = nuri_malloc_array(n + 1, sizeof *idx), *tmp = nuri_malloc_array(n + 1, sizeof *tmp);
    bool ok = keys && idx && tmp;
    if (!ok) nomem(st);
    for (size_t i = 0; ok && i < n; i++) {
        idx[i] = i;
        jv item = jv_from_elem(st, json_array_get(items, i));
        if (by_pair_index) {
            jv sub = jv_from_elem(st, json_array_get(item.j, pair_index));
            jv_drop(&item);
            item = sub;
        }
        for (size_t p = 0; ok && p < n_parts; p++) ok = sort_key(st, &item, attrs[p], case_sensitive, &keys[i * n_parts + p]);
        jv_drop(&item);
    }
    if (ok) ok = merge_sort(st, idx, tmp, n, keys, n_parts, reverse);
    json_t *arr = ok ? json_array() : NULL;
    if (ok && !arr) ok = nomem(st);
    for (size_t i = 0; ok && i < n; i++)
        if (json_array_append(arr, json_array_get(items, idx[i]))) ok = nomem(st);
    if (keys)
        for (size_t i = 0; i < n * n_parts; i++) jv_drop(&keys[i]);
    for (size_t p = 0; p < n_parts; p++) jv_drop(&parts[p]);
    free(keys);
    free(idx);
    free(tmp);
    if (!ok) {
        json_decref(arr);
        return false;
    }
    *out = arr;
    return true;
}

/* ---- String helpers -------------------------------------------------------------- */

static bool in_charset(uint32_t cp, const char *chars, size_t n) {
    if (!chars) return py_isspace(cp);
    size_t pos = 0;
    while (pos < n)
        if (utf8_next(chars, n, &pos) == cp) return true;
    return false;
}

/* Python's str.strip/lstrip/rstrip with an optional character set. */
static void strip_bounds(const char *s, size_t n, const char *chars, size_t nc, bool left, bool right,
                         size_t *a, size_t *b) {
    size_t start = 0, end = n;
    if (left) {
        while (start < end) {
            size_t pos = start;
            uint32_t cp = utf8_next(s, n, &pos);
            if (!in_charset(cp, chars, nc)) break;
            start = pos;
        }
    }
    if (right) {
        while (end > start) {
            size_t cstart = end - 1;
            while (cstart > start && ((unsigned char)s[cstart] & 0xC0) == 0x80) cstart--;
            size_t pos = cstart;
            uint32_t cp = utf8_next(s, n, &pos);
            if (!in_charset(cp, chars, nc)) break;
            end = cstart;
        }
    }
    *a = start;
    *b = end;
}

static bool map_chars(jstate *st, const char *s, size_t n, int mode, jv *out) {
    /* mode 0 upper, 1 lower, 2 str.title, 3 capitalize, 4 jinja2's title filter */
    jbuf b = {0};
    size_t pos = 0;
    bool ok = true, prev_cased = false, first = true;
    while (ok && pos < n) {
        uint32_t cp = utf8_next(s, n, &pos), r = cp;
        bool cased = py_upper(cp) != cp || py_lower(cp) != cp;
        switch (mode) {
        case 0: r = py_upper(cp); break;
        case 1: r = py_lower(cp); break;
        case 2: r = prev_cased ? py_lower(cp) : py_upper(cp); break;
        case 3: r = first ? py_upper(cp) : py_lower(cp); break;
        default: {
            bool sep = py_isspace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
            r = sep ? cp : first ? py_upper(cp) : py_lower(cp);
            first = sep;
            prev_cased = cased;
            char enc4[4];
            ok = jbuf_put(st, &b, enc4, nuri_utf8_encode(r, enc4));
            continue;
        }
        }
        prev_cased = cased;
        first = false;
        char enc[4];
        ok = jbuf_put(st, &b, enc, nuri_utf8_encode(r, enc));
    }
    if (ok) ok = jv_make_str(st, b.data, b.len, out);
    jbuf_free(&b);
    return ok;
}

/* Substring search in linear time (glibc's memmem), so that hostile
 * strings cannot make a search quadratic. */
static const char *find_bytes(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn == 0) return h;
    return memmem(h, hn, nd, nn);
}

/* The last occurrence: a forward search of both strings reversed. */
static const char *rfind_bytes(const char *h, size_t hn, const char *nd, size_t nn) {
    if (nn > hn) return NULL;
    if (nn == 0) return h + hn;
    if (hn <= 256) {
        for (size_t i = hn - nn + 1; i-- > 0;)
            if (!memcmp(h + i, nd, nn)) return h + i;
        return NULL;
    }
    char *rh = malloc(hn), *rn = malloc(nn);
    const char *hit = NULL;
    if (rh && rn) {
        for (size_t i = 0; i < hn; i++) rh[i] = h[hn - 1 - i];
        for (size_t i = 0; i < nn; i++) rn[i] = nd[nn - 1 - i];
        const char *r = memmem(rh, hn, rn, nn);
        if (r) hit = h + (hn - (size_t)(r - rh) - nn);
    } else {
        /* Out of memory: fall back to the quadratic scan (still correct). */
        for (size_t i = hn - nn + 1; i-- > 0 && !hit;)
            if (!memcmp(h + i, nd, nn)) hit = h + i;
    }
    free(rh);
    free(rn);
    return hit;
}

static bool str_replace(jstate *st, const char *s, size_t n, const char *old, size_t on, const char *nw,
                        size_t nn, int64_t count, jv *out) {
    jbuf b = {0};
    bool ok = true;
    size_t pos = 0;
    int64_t done = 0;
    if (on == 0) {
        /* Python inserts `new` before every character and at the end. */
        while (ok && (count < 0 || done < count)) {
            ok = jbuf_put(st, &b, nw, nn);
            done++;
            if (pos >= n) break;
            size_t start = pos;
            utf8_next(s, n, &pos);
            if (ok) ok = jbuf_put(st, &b, s + start, pos - start);
        }
        if (ok) ok = jbuf_put(st, &b, s + pos, n - pos);
    } else {
        while (ok && (count < 0 || done < count)) {
            const char *hit = find_bytes(s + pos, n - pos, old, on);
            if (!hit) break;
            size_t at = (size_t)(hit - s);
            ok = jbuf_put(st, &b, s + pos, at - pos) && jbuf_put(st, &b, nw, nn);
            pos = at + on;
            done++;
        }
        if (ok) ok = jbuf_put(st, &b, s + pos, n - pos);
    }
    if (ok) ok = jv_make_str(st, b.data, b.len, out);
    jbuf_free(&b);
    return ok;
}

/* str.split / str.rsplit (sep NULL: runs of whitespace). */
static bool str_split(jstate *st, const char *s, size_t n, const char *sep, size_t sn, int64_t maxsplit,
                      bool from_right, jv *out) {
    json_t *arr = json_array();
    if (!arr) return nomem(st);
    bool ok = true;
    if (sep && sn == 0) {
        json_decref(arr);
        return jinja_fail(st, NURI_ERR_FORMAT, "empty separator");
    }
    /* Collect [start,end) pieces, then build (reversed for rsplit). */
    size_t cap = 16, np = 0;
    size_t (*pieces)[2] = malloc(cap * sizeof *pieces);
    if (!pieces) {
        json_decref(arr);
        return nomem(st);
    }
#define ADD_PIECE(a, b)                                                    \
    do {                                                                   \
        if (np == cap) {                                                   \
            size_t(*np2)[2] = realloc(pieces, cap * 2 * sizeof *pieces);   \
            if (!np2) { ok = nomem(st); break; }                           \
            pieces = np2;                                                  \
            cap *= 2;                                                      \
        }                                                                  \
        pieces[np][0] = (a);                                               \
        pieces[np][1] = (b);                                               \
        np++;                                                              \
    } while (0)
    int64_t splits = 0;
    if (!sep) {
        if (!from_right) {
            size_t pos = 0;
            while (ok && pos < n) {
                size_t a, q = pos;
                while (q < n) { /* skip whitespace */
                    size_t r = q;
                    if (!py_isspace(utf8_next(s, n, &r))) break;
                    q = r;
                }
                if (q >= n) break;
                a = q;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    /* The rest, without trailing whitespace. */
                    size_t x, y;
                    strip_bounds(s + a, n - a, NULL, 0, false, true, &x, &y);
                    ADD_PIECE(a, a + y);
                    break;
                }
                while (q < n) {
                    size_t r = q;
                    if (py_isspace(utf8_next(s, n, &r))) break;
                    q = r;
                }
                ADD_PIECE(a, q);
                splits++;
                pos = q;
            }
        } else {
            size_t end = n;
            while (ok && end > 0) {
                size_t x, y;
                strip_bounds(s, end, NULL, 0, false, true, &x, &y);
                end = y;
                if (end == 0) break;
                if (maxsplit >= 0 && splits >= maxsplit) {
                    size_t a, b2;
                    strip_bounds(s, end, NULL, 0, true, false, &a, &b2);
                    ADD_PIECE(a, end);
                    break;
                }
                size_t a = end;
                while (a > 0) {
                    size_t c = a - 1;
                    while (c > 0 && ((unsigned char)s[c] & 0xC0) == 0x80) c--;
                    size_t r = c;
                    if (py_isspace(utf8_next(s, n, &r))) break;
                    a = c;
                }
                ADD_PIECE(a, end);
                splits++;
                end = a;
            }
        }
    } else if (!from_right) {
        size_t pos = 0;
        while (ok) {
            const char *hit = (maxsplit < 0 || splits < maxsplit) ? find_bytes(s + pos, n - pos, sep, sn) : NULL;
            if (!hit) {
                ADD_PIECE(pos, n);
                break;
            }
            ADD_PIECE(pos, (size_t)(hit - s));
            pos = (size_t)(hit - s) + sn;
            splits++;
        }
    } else {
        size_t end = n;
        while (ok) {
            const char *hit = (maxsplit < 0 || splits < maxsplit) ? rfind_bytes(s, end, sep, sn) : NULL;
            if (!hit) {
                ADD_PIECE(0, end);
                break;
            }
            ADD_PIECE((size_t)(hit - s) + sn, end);
            end = (size_t)(hit - s);
            splits++;
        }
    }
#undef ADD_PIECE
    for (size_t k = 0; ok && k < np; k++) {
        size_t i = from_right ? np - 1 - k : k;
        jv piece;
        ok = jv_make_str(st, s + pieces[i][0], pieces[i][1] - pieces[i][0], &piece) && append(st, arr, &piece);
        if (ok) jv_drop(&piece);
    }
    free(pieces);
    if (!ok) {
        json_decref(arr);
        return false;
    }
    return make_list(st, arr, 0, out);
}

/* Python's str.splitlines() boundaries. */
static size_t line_break_len(const char *s, size_t n, size_t pos) {
    unsigned char c = (unsigned char)s[pos];
    if (c == '\r') return (pos + 1 < n && s[pos + 1] == '\n') ? 2 : 1;
    if (c == '\n' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E) return 1;
    if (c == 0xC2 && pos + 1 < n && (unsigned char)s[pos + 1] == 0x85) return 2;
    if (c == 0xE2 && pos + 2 < n && (unsigned char)s[pos + 1] == 0x80 &&
        ((unsigned char)s[pos + 2] == 0xA8 || (unsigned char)s[pos + 2] == 0xA9))
        return 3;
    return 0;
}

static bool str_splitlines(jstate *st, const char *s, size_t n, bool keepends, json_t **out) {
    json_t *arr = json_array();
    if (!arr) return nomem(st);
    size_t start = 0, pos = 0;
    bool ok = true;
    while (ok && pos < n) {
        size_t bl = line_break_len(s, n, pos);
        if (!bl) {
            pos++;
            continue;
        }
        jv line;
        ok = jv_make_str(st, s + start, (keepends ? pos + bl : pos) - start, &line) && append(st, arr, &line);
        if (ok) jv_drop(&line);
        pos += bl;
        start = pos;
    }
    if (ok && start < n) {
        jv line;
        ok = jv_make_str(st, s + start, n - start, &line) && append(st, arr, &line);
        if (ok) jv_drop(&line);
    }
    if (!ok) {
        json_decref(arr);
        return false;
    }
    *out = arr;
    return true;
}

/* ---- Tests ------------------------------------------------------------------------ */

typedef enum {
    T_DEFINED, T_UNDEFINED, T_NONE, T_BOOLEAN, T_FALSE, T_TRUE, T_INTEGER, T_FLOAT, T_NUMBER, T_STRING,
    T_MAPPING, T_ITERABLE, T_SEQUENCE, T_CALLABLE, T_ODD, T_EVEN, T_DIVISIBLEBY, T_EQ, T_NE, T_LT, T_LE,
    T_GT, T_GE, T_IN, T_LOWER, T_UPPER, T_SAMEAS, T_ESCAPED,
} test_id;

static const struct {
    const char *name;
    test_id id;
} tests[] = {
    {"defined", T_DEFINED}, {"undefined", T_UNDEFINED}, {"none", T_NONE}, {"boolean", T_BOOLEAN},
    {"false", T_FALSE}, {"true", T_TRUE}, {"integer", T_INTEGER}, {"float", T_FLOAT},
    {"number", T_NUMBER}, {"string", T_STRING}, {"mapping", T_MAPPING}, {"iterable", T_ITERABLE},
    {"sequence", T_SEQUENCE}, {"callable", T_CALLABLE}, {"odd", T_ODD}, {"even", T_EVEN},
    {"divisibleby", T_DIVISIBLEBY}, {"eq", T_EQ}, {"equalto", T_EQ}, {"==", T_EQ}, {"ne", T_NE},
    {"!=", T_NE}, {"lt", T_LT}, {"lessthan", T_LT}, {"<", T_LT}, {"le", T_LE}, {"<=", T_LE},
    {"gt", T_GT}, {"greaterthan", T_GT}, {">", T_GT}, {"ge", T_GE}, {">=", T_GE}, {"in", T_IN},
    {"lower", T_LOWER}, {"upper", T_UPPER}, {"sameas", T_SAMEAS}, {"escaped", T_ESCAPED},
};

int jinja_test_find(const char *name, size_t n) {
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++)
        if (strlen(tests[i].name) == n && !memcmp(tests[i].name, name, n)) return (int)i;
    return -1;
}

static bool need_args(jstate *st, const char *name, size_t n_args, size_t want) {
    if (n_args != want)
        return jinja_fail(st, NURI_ERR_FORMAT, "test '%s' takes %zu argument(s), got %zu", name, want, n_args);
    return true;
}

static bool contains_value(jstate *st, const jv *needle, const jv *hay, bool *out) {
    /* Same rules as the `in` operator (kept in jinja_eval.c's contains). */
    *out = false;
    if (hay->kind == JV_UNDEF) return true;
    if (jv_is_str(hay)) {
        if (!jv_is_str(needle))
            return jinja_fail(st, NURI_ERR_FORMAT, "'in <string>' requires string as left operand, not %s",
                              jv_type_name(needle));
        *out = find_bytes(jv_str(hay), jv_strlen(hay), jv_str(needle), jv_strlen(needle)) != NULL;
        return true;
    }
    if (jv_is_list(hay)) {
        if (!jinja_steps(st, json_array_size(hay->j))) return false;
        for (size_t i = 0; i < json_array_size(hay->j); i++) {
            jv item = jv_from_elem(st, json_array_get(hay->j, i));
            bool eq = jv_equal(st, &item, needle);
            jv_drop(&item);
            if (eq) return *out = true, true;
        }
        return true;
    }
    if (jv_is_dict(hay)) {
        if (jv_is_str(needle)) *out = json_object_getn(hay->j, jv_str(needle), jv_strlen(needle)) != NULL;
        return true;
    }
    return jinja_fail(st, NURI_ERR_FORMAT, "argument of type '%s' is not iterable", jv_type_name(hay));
}

static bool str_is_cased(const char *s, size_t n, bool want_lower) {
    bool any = false;
    size_t pos = 0;
    while (pos < n) {
        uint32_t cp = utf8_next(s, n, &pos);
        bool is_up = py_lower(cp) != cp, is_low = py_upper(cp) != cp;
        if (want_lower ? is_up : is_low) return false;
        if (want_lower ? is_low : is_up) any = true;
    }
    return any;
}

bool jinja_apply_test(jstate *st, int fn, const jv *v, const jv *args, size_t n_args, bool *out) {
    test_id id = tests[fn].id;
    const char *name = tests[fn].name;
    if (id < T_DIVISIBLEBY && n_args != 0)
        return jinja_fail(st, NURI_ERR_FORMAT, "test_%s() takes 1 positional argument but %zu were given", name,
                          n_args + 1);
    bool data = v->kind == JV_DATA && !(v->flags & JV_GEN);
    const json_t *j = v->j;
    *out = false;
    switch (id) {
    case T_DEFINED: *out = v->kind != JV_UNDEF; return true;
    case T_UNDEFINED: *out = v->kind == JV_UNDEF; return true;
    case T_NONE: *out = data && json_is_null(j); return true;
    case T_BOOLEAN: *out = data && json_is_boolean(j); return true;
    case T_FALSE: *out = data && json_is_false(j); return true;
    case T_TRUE: *out = data && json_is_true(j); return true;
    case T_INTEGER: *out = data && json_is_integer(j); return true;
    case T_FLOAT: *out = data && json_is_real(j); return true;
    case T_NUMBER: *out = data && (json_is_number(j) || json_is_boolean(j)); return true;
    case T_STRING: *out = data && json_is_string(j); return true;
    case T_MAPPING: *out = data && json_is_object(j); return true;
    case T_ITERABLE:
        *out = v->kind == JV_UNDEF ||
               (v->kind == JV_DATA && (json_is_string(j) || json_is_array(j) || json_is_object(j)));
        return true;
    case T_SEQUENCE:
        *out = v->kind == JV_UNDEF || (data && (json_is_string(j) || json_is_array(j) || json_is_object(j)));
        return true;
    case T_CALLABLE:
        *out = v->kind == JV_MACRO || v->kind == JV_FUNC || (v->kind == JV_METHOD && v->id) ||
               (v->kind == JV_LOOP && v->id);
        return true;
    case T_ESCAPED: *out = jv_is_str(v) && (v->flags & JV_SAFE); return true;
    case T_LOWER:
    case T_UPPER: {
        jv s;
        if (!jv_to_str(st, v, &s)) return false;
        *out = str_is_cased(jv_str(&s), jv_strlen(&s), id == T_LOWER);
        jv_drop(&s);
        return true;
    }
    case T_ODD:
    case T_EVEN:
        if (!need_args(st, name, n_args, 0)) return false;
        if (!jv_is_int(v)) return jinja_fail(st, NURI_ERR_FORMAT, "test '%s' needs an integer", name);
        *out = (jv_int(v) % 2 != 0) == (id == T_ODD);
        return true;
    case T_DIVISIBLEBY:
        if (!need_args(st, name, n_args, 1)) return false;
        if (!jv_is_int(v) || !jv_is_int(&args[0]))
            return jinja_fail(st, NURI_ERR_FORMAT, "test 'divisibleby' needs integers");
        if (jv_int(&args[0]) == 0) return jinja_fail(st, NURI_ERR_FORMAT, "integer division or modulo by zero");
        *out = jv_int(&args[0]) == -1 || jv_int(v) % jv_int(&args[0]) == 0;
        return true;
    case T_EQ:
    case T_NE:
        if (!need_args(st, name, n_args, 1)) return false;
        *out = jv_equal(st, v, &args[0]) == (id == T_EQ);
        return true;
    case T_LT:
    case T_LE:
    case T_GT:
    case T_GE: {
        if (!need_args(st, name, n_args, 1)) return false;
        int c;
        static const char *const ops[] = {"<", "<=", ">", ">="};
        if (!jv_compare(st, v, &args[0], ops[id - T_LT], &c)) return false;
        *out = id == T_LT ? c < 0 : id == T_LE ? c <= 0 : id == T_GT ? c > 0 : c >= 0;
        return true;
    }
    case T_IN:
        if (!need_args(st, name, n_args, 1)) return false;
        return contains_value(st, v, &args[0], out);
    case T_SAMEAS:
        if (!need_args(st, name, n_args, 1)) return false;
        *out = v->kind == args[0].kind && v->j == args[0].j && v->p == args[0].p;
        return true;
    }
    return false;
}

/* Applies the test named by a string value (for select/reject). */
static bool test_by_name(jstate *st, const jv *name, const jv *item, const jv *args, size_t n_args, bool *out) {
    if (!jv_is_str(name)) return jinja_fail(st, NURI_ERR_FORMAT, "test name must be a string");
    int fn = jinja_test_find(jv_str(name), jv_strlen(name));
    if (fn < 0) return jinja_fail(st, NURI_ERR_FORMAT, "No test named '%s'.", jv_str(name));
    return jinja_apply_test(st, fn, item, args, n_args, out);
}

static bool pad_str(jstate *st, const char *s, size_t n, int64_t width, const jv *fill, int mode, jv *out);

/* ---- Filters ---------------------------------------------------------------------- */

typedef enum {
    F_ABS, F_ATTR, F_BATCH, F_CAPITALIZE, F_CENTER, F_COUNT, F_DEFAULT, F_DICTSORT, F_ESCAPE, F_FIRST,
    F_FLOAT, F_FORCEESCAPE, F_INDENT, F_INT, F_ITEMS, F_JOIN, F_LAST, F_LIST, F_LOWER, F_MAP, F_MAX,
    F_MIN, F_REJECT, F_REJECTATTR, F_REPLACE, F_REVERSE, F_ROUND, F_SAFE, F_SELECT, F_SELECTATTR, F_SORT,
    F_STRING, F_SUM, F_TITLE, F_TOJSON, F_TRIM, F_TRUNCATE, F_UNIQUE, F_UPPER, F_WORDCOUNT,
} filter_id;

static const struct {
    const char *name;
    filter_id id;
} filters[] = {
    {"abs", F_ABS}, {"attr", F_ATTR}, {"batch", F_BATCH}, {"capitalize", F_CAPITALIZE},
    {"center", F_CENTER}, {"count", F_COUNT}, {"length", F_COUNT}, {"d", F_DEFAULT},
    {"default", F_DEFAULT}, {"dictsort", F_DICTSORT}, {"e", F_ESCAPE}, {"escape", F_ESCAPE},
    {"first", F_FIRST}, {"float", F_FLOAT}, {"forceescape", F_FORCEESCAPE}, {"indent", F_INDENT},
    {"int", F_INT}, {"items", F_ITEMS}, {"join", F_JOIN}, {"last", F_LAST}, {"list", F_LIST},
    {"lower", F_LOWER}, {"map", F_MAP}, {"max", F_MAX}, {"min", F_MIN}, {"reject", F_REJECT},
    {"rejectattr", F_REJECTATTR}, {"replace", F_REPLACE}, {"reverse", F_REVERSE}, {"round", F_ROUND},
    {"safe", F_SAFE}, {"select", F_SELECT}, {"selectattr", F_SELECTATTR}, {"sort", F_SORT},
    {"string", F_STRING}, {"sum", F_SUM}, {"title", F_TITLE}, {"tojson", F_TOJSON}, {"trim", F_TRIM},
    {"truncate", F_TRUNCATE}, {"unique", F_UNIQUE}, {"upper", F_UPPER}, {"wordcount", F_WORDCOUNT},
};

int jinja_filter_find(const char *name, size_t n) {
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++)
        if (strlen(filters[i].name) == n && !memcmp(filters[i].name, name, n)) return (int)i;
    return -1;
}

static bool html_escape_str(jstate *st, const jv *v, jv *out) {
    jv s;
    if (!jv_to_str(st, v, &s)) return false;
    jbuf b = {0};
    const char *p = jv_str(&s);
    size_t n = jv_strlen(&s), run = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < n; i++) {
        const char *rep = NULL;
        switch (p[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '\'': rep = "&#39;"; break;
        case '"': rep = "&#34;"; break;
        default: run++; continue;
        }
        ok = jbuf_put(st, &b, p + i - run, run) && jbuf_puts(st, &b, rep);
        run = 0;
    }
    if (ok) ok = jbuf_put(st, &b, p + n - run, run) && jv_make_str(st, b.data, b.len, out);
    jbuf_free(&b);
    jv_drop(&s);
    if (ok) out->flags |= JV_SAFE;
    return ok;
}

/* Python's int(str, base) accepting surrounding whitespace, a sign, '_'
 * between digits and the 0x/0o/0b prefix that matches the base (any with
 * base 0). */
static bool parse_int_str(const char *s, size_t n, int base, int64_t *out) {
    size_t a, b;
    strip_bounds(s, n, NULL, 0, true, true, &a, &b);
    if (a == b) return false;
    bool neg = false;
    if (s[a] == '+' || s[a] == '-') {
        neg = s[a] == '-';
        a++;
    }
    if (b - a >= 2 && s[a] == '0') {
        char p = (char)(s[a + 1] | 0x20);
        int pb = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
        if (pb && (base == 0 || base == pb)) {
            base = pb;
            a += 2;
            if (a < b && s[a] == '_') a++;
        }
    }
    if (base == 0) base = 10;
    if (a == b) return false;
    uint64_t v = 0;
    bool prev_us = true;
    for (size_t i = a; i < b; i++) {
        char c = s[i];
        if (c == '_') {
            if (prev_us) return false;
            prev_us = true;
            continue;
        }
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'z') ? c - 'a' + 10
                                                : (c >= 'A' && c <= 'Z') ? c - 'A' + 10 : 99;
        if (d >= base) return false;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_us = false;
    }
    if (prev_us) return false;
    if (v > (uint64_t)INT64_MAX + (neg ? 1 : 0)) return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool parse_float_str(const char *s, size_t n, double *out) {
    size_t a, b;
    strip_bounds(s, n, NULL, 0, true, true, &a, &b);
    if (a == b || b - a > 100) return false;
    char buf[128];
    size_t k = 0;
    for (size_t i = a; i < b; i++) {
        char c = s[i];
        if (c == 'x' || c == 'X' || c == 'p' || c == 'P') return false; /* no hex floats */
        if (c != '_') buf[k++] = c;
    }
    buf[k] = 0;
    char *end;
    double d = strtod(buf, &end);
    if (end == buf || *end) return false;
    *out = d;
    return true;
}

/* Applies `fn` (a filter name as a string) to one item, for map(). */
static bool filter_by_name(jstate *st, const jv *name, const jv *item, const jv *args, size_t n_args,
                           const char *const *kw_names, const jv *kw_vals, size_t n_kw, jv *out) {
    if (!jv_is_str(name)) return jinja_fail(st, NURI_ERR_FORMAT, "filter name must be a string");
    int fn = jinja_filter_find(jv_str(name), jv_strlen(name));
    if (fn < 0) return jinja_fail(st, NURI_ERR_FORMAT, "No filter named '%s'.", jv_str(name));
    return jinja_apply_filter(st, fn, item, args, n_args, kw_names, kw_vals, n_kw, out);
}

/* select / reject / selectattr / rejectattr. */
static bool filter_select(jstate *st, filter_id id, const jv *v, const jv *args, size_t n_args, jv *out) {
    bool by_attr = id == F_SELECTATTR || id == F_REJECTATTR;
    bool keep_true = id == F_SELECT || id == F_SELECTATTR;
    if (by_attr && (n_args < 1 || !jv_is_str(&args[0])))
        return jinja_fail(st, NURI_ERR_FORMAT, "%s needs an attribute name", by_attr && keep_true ? "selectattr" : "rejectattr");
    const jv *test = n_args > (by_attr ? 1u : 0u) ? &args[by_attr ? 1 : 0] : NULL;
    const jv *targs = test ? test + 1 : NULL;
    size_t n_targs = test ? n_args - (size_t)(targs - args) : 0;
    /* jinja2 iterates only a true value: select over none yields nothing. */
    json_t *items = NULL;
    if (!jv_truthy(v)) items = json_array();
    else if (!jinja_iterate(st, v, &items)) return false;
    if (!items) return nomem(st);
    json_t *arr = json_array();
    bool ok = arr != NULL;
    if (!ok) nomem(st);
    for (size_t i = 0; ok && i < json_array_size(items); i++) {
        jv item = jv_from_elem(st, json_array_get(items, i)), subject;
        ok = jinja_steps(st, 1);
        if (ok) {
            if (by_attr) ok = attr_path(st, &item, jv_str(&args[0]), jv_strlen(&args[0]), &subject);
            else subject = jv_dup(&item);
        }
        bool pass = false;
        if (ok) {
            if (test) ok = test_by_name(st, test, &subject, targs, n_targs, &pass);
            else pass = jv_truthy(&subject);
            jv_drop(&subject);
        }
        if (ok && pass == keep_true) ok = append(st, arr, &item);
        jv_drop(&item);
    }
    json_decref(items);
    if (!ok) {
        json_decref(arr);
        return false;
    }
    return make_list(st, arr, JV_GEN, out);
}

static bool filter_map(jstate *st, const jv *v, const jv *args, size_t n_args, const char *const *kw_names,
                       const jv *kw_vals, size_t n_kw, jv *out) {
    const jv *attribute = NULL, *def = NULL;
    for (size_t k = 0; k < n_kw; k++) {
        if (!strcmp(kw_names[k], "attribute")) attribute = &kw_vals[k];
        else if (!strcmp(kw_names[k], "default")) def = &kw_vals[k];
    }
    if (!attribute && n_args == 0) return jinja_fail(st, NURI_ERR_FORMAT, "map() needs a filter name or attribute=");
    if (attribute && (n_args > 0 || !jv_is_str(attribute) || n_kw > (def ? 2u : 1u)))
        return jinja_fail(st, NURI_ERR_FORMAT, "map(attribute=...) takes only attribute and default");
    json_t *items = NULL; /* as select: a false value maps to nothing */
    if (!jv_truthy(v)) items = json_array();
    else if (!jinja_iterate(st, v, &items)) return false;
    if (!items) return nomem(st);
    json_t *arr = json_array();
    bool ok = arr != NULL;
    if (!ok) nomem(st);
    for (size_t i = 0; ok && i < json_array_size(items); i++) {
        jv item = jv_from_elem(st, json_array_get(items, i)), r;
        ok = jinja_steps(st, 1);
        if (ok) {
            if (attribute) {
                ok = attr_path(st, &item, jv_str(attribute), jv_strlen(attribute), &r);
                if (ok && def && r.kind == JV_UNDEF) {
                    jv_drop(&r);
                    r = jv_dup(def);
                }
            } else {
                ok = filter_by_name(st, &args[0], &item, args + 1, n_args - 1, kw_names, kw_vals, n_kw, &r);
            }
        }
        if (ok) {
            ok = append(st, arr, &r);
            jv_drop(&r);
        }
        jv_drop(&item);
    }
    json_decref(items);
    if (!ok) {
        json_decref(arr);
        return false;
    }
    return make_list(st, arr, JV_GEN, out);
}

static bool filter_minmax(jstate *st, bool is_max, const jv *v, const jv **a, jv *out) {
    bool cs = a[0] && jv_truthy(a[0]);
    json_t *items;
    if (!jinja_iterate(st, v, &items)) return false;
    size_t n = json_array_size(items);
    if (n == 0) {
        json_decref(items);
        return jv_undef_msg(st, out, "No aggregated item, sequence was empty.");
    }
    json_t *sorted_items;
    bool ok = sorted(st, items, a[1], cs, false, false, 0, &sorted_items);
    json_decref(items);
    if (!ok) return false;
    /* Python's min/max keep the first of equal items: the first of the
     * stable sort for min; for max, the first item equal to the last. */
    size_t pick = is_max ? n - 1 : 0;
    if (is_max) {
        jv last = jv_from_elem(st, json_array_get(sorted_items, n - 1)), lk = jv_undef();
        ok = sort_key(st, &last, a[1], cs, &lk);
        jv_drop(&last);
        while (ok && pick > 0) {
            jv prev = jv_from_elem(st, json_array_get(sorted_items, pick - 1)), pk;
            ok = sort_key(st, &prev, a[1], cs, &pk);
            jv_drop(&prev);
            if (!ok) break;
            bool eq = jv_equal(st, &pk, &lk);
            jv_drop(&pk);
            if (!eq) break;
            pick--;
        }
        jv_drop(&lk);
    }
    if (ok) *out = jv_from_elem(st, json_array_get(sorted_items, pick));
    json_decref(sorted_items);
    return ok;
}

static bool filter_unique(jstate *st, const jv *v, const jv **a, jv *out) {
    bool cs = a[0] && jv_truthy(a[0]);
    json_t *items;
    if (!jinja_iterate(st, v, &items)) return false;
    size_t n = json_array_size(items);
    json_t *arr = json_array(), *seen = json_array();
    bool ok = arr && seen;
    if (!ok) nomem(st);
    for (size_t i = 0; ok && i < n; i++) {
        jv item = jv_from_elem(st, json_array_get(items, i)), key;
        ok = sort_key(st, &item, a[1], cs, &key);
        if (ok) {
            if (key.kind == JV_DATA && (json_is_array(key.j) || json_is_object(key.j)))
                ok = jinja_fail(st, NURI_ERR_FORMAT, "unhashable type: '%s'", jv_type_name(&key));
            bool dup = false;
            for (size_t k = 0; ok && !dup && k < json_array_size(seen); k++) {
                jv s = jv_from_elem(st, json_array_get(seen, k));
                dup = jv_equal(st, &s, &key);
                jv_drop(&s);
            }
            if (ok) ok = jinja_steps(st, json_array_size(seen) + 1);
            if (ok && !dup) ok = append(st, seen, &key) && append(st, arr, &item);
            jv_drop(&key);
        }
        jv_drop(&item);
    }
    json_decref(items);
    json_decref(seen);
    if (!ok) {
        json_decref(arr);
        return false;
    }
    return make_list(st, arr, JV_GEN, out);
}

static bool filter_indent(jstate *st, const jv *v, const jv **a, jv *out) {
    jv s;
    if (!jv_is_str(v)) /* jinja2 appends "\n" to the value itself */
        return jinja_fail(st, NURI_ERR_FORMAT, "unsupported operand type(s) for +=: '%s' and 'str'", jv_type_name(v));
    if (!jv_to_str(st, v, &s)) return false;
    char spaces[256];
    const char *ind = spaces;
    size_t ind_len;
    if (a[0] && jv_is_str(a[0])) {
        ind = jv_str(a[0]);
        ind_len = jv_strlen(a[0]);
    } else {
        int64_t w;
        if (!arg_int(st, "indent", a[0], 4, &w)) {
            jv_drop(&s);
            return false;
        }
        if (w < 0) w = 0;
        if (w > (int64_t)sizeof spaces) {
            jv_drop(&s);
            return jinja_fail(st, NURI_ERR_UNSUPPORTED, "indent width %lld too large", (long long)w);
        }
        memset(spaces, ' ', (size_t)w);
        ind_len = (size_t)w;
    }
    bool first = a[1] && jv_truthy(a[1]), blank = a[2] && jv_truthy(a[2]);
    /* jinja2 appends "\n" and splits with str.splitlines(). */
    jbuf text = {0}, b = {0};
    json_t *lines = NULL;
    bool ok = jbuf_put(st, &text, jv_str(&s), jv_strlen(&s)) && jbuf_put(st, &text, "\n", 1) &&
              str_splitlines(st, text.data, text.len, false, &lines);
    if (ok && first) ok = jbuf_put(st, &b, ind, ind_len);
    for (size_t i = 0; ok && i < json_array_size(lines); i++) {
        json_t *line = json_array_get(lines, i);
        if (i > 0) {
            ok = jbuf_put(st, &b, "\n", 1);
            if (ok && (blank || json_string_length(line) > 0)) ok = jbuf_put(st, &b, ind, ind_len);
        }
        if (ok) ok = jbuf_put(st, &b, json_string_value(line), json_string_length(line));
    }
    if (ok) ok = jv_make_str(st, b.data, b.len, out);
    json_decref(lines);
    jbuf_free(&text);
    jbuf_free(&b);
    jv_drop(&s);
    return ok;
}

static bool filter_join(jstate *st, const jv *v, const jv **a, jv *out) {
    json_t *items;
    if (!jinja_iterate(st, v, &items)) return false;
    const char *sep = "";
    size_t sep_len = 0;
    bool ok = true;
    if (a[0] && !is_none(a[0])) ok = arg_str(st, "join", a[0], &sep, &sep_len);
    jbuf b = {0};
    for (size_t i = 0; ok && i < json_array_size(items); i++) {
        jv item = jv_from_elem(st, json_array_get(items, i));
        if (a[1] && !is_none(a[1])) {
            jv sub;
            ok = jv_is_str(a[1]) ? attr_path(st, &item, jv_str(a[1]), jv_strlen(a[1]), &sub)
                                 : jinja_getitem(st, &item, a[1], &sub);
            jv_drop(&item);
            if (!ok) break;
            item = sub;
        }
        if (i) ok = jbuf_put(st, &b, sep, sep_len);
        if (ok) ok = jv_print(st, &item, &b);
        jv_drop(&item);
    }
    json_decref(items);
    if (ok) ok = jv_make_str(st, b.data, b.len, out);
    jbuf_free(&b);
    return ok;
}

static bool filter_tojson(jstate *st, const jv *v, const jv **a, jv *out) {
    /* Hugging Face's tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False). */
    int64_t indent = -1;
    if (a[1] && !is_none(a[1]) && !arg_int(st, "tojson", a[1], -1, &indent)) return false;
    bool compact = false;
    if (a[2] && !is_none(a[2])) {
        json_t *items;
        if (!jinja_iterate(st, a[2], &items)) return false;
        const char *item_sep = json_string_value(json_array_get(items, 0));
        const char *key_sep = json_string_value(json_array_get(items, 1));
        bool ok = json_array_size(items) == 2 && item_sep && key_sep;
        if (ok && !strcmp(item_sep, ",") && !strcmp(key_sep, ":")) compact = true;
        else if (!ok || !(!strcmp(item_sep, indent >= 0 ? "," : ", ") && !strcmp(key_sep, ": "))) ok = false;
        json_decref(items);
        if (!ok)
            return jinja_fail(st, NURI_ERR_UNSUPPORTED,
                              "tojson supports separators (', ', ': ') and (',', ':') only");
    }
    jbuf b = {0};
    bool ok = jinja_tojson(st, v, (int)(indent > 1000 ? 1000 : indent), a[0] && jv_truthy(a[0]), compact,
                           a[3] && jv_truthy(a[3]), &b) &&
              jv_make_str(st, b.data, b.len, out);
    jbuf_free(&b);
    return ok;
}

static bool filter_round(jstate *st, const jv *v, const jv **a, jv *out) {
    int64_t prec;
    if (!arg_int(st, "round", a[0], 0, &prec)) return false;
    const char *method = "common";
    size_t ml;
    if (a[1] && !arg_str(st, "round", a[1], &method, &ml)) return false;
    if (!jv_is_num(v)) return jinja_fail(st, NURI_ERR_FORMAT, "round() needs a number, got '%s'", jv_type_name(v));
    if (prec < -300 || prec > 300) return jinja_fail(st, NURI_ERR_UNSUPPORTED, "round() precision out of range");
    double x = jv_num(v), scale = pow(10.0, (double)prec);
    if (!strcmp(method, "common")) {
        if (jv_is_int(v)) return jv_make_int(st, jv_int(v), out); /* round(int) stays int */
        return jv_make_real(st, nearbyint(x * scale) / scale, out);
    }
    if (!strcmp(method, "ceil")) return jv_make_real(st, ceil(x * scale) / scale, out);
    if (!strcmp(method, "floor")) return jv_make_real(st, floor(x * scale) / scale, out);
    return jinja_fail(st, NURI_ERR_FORMAT, "method must be common, ceil or floor");
}

static bool filter_truncate(jstate *st, const jv *v, const jv **a, jv *out) {
    jv s;
    if (!jv_to_str(st, v, &s)) return false;
    int64_t length, leeway;
    const char *end = "...";
    size_t end_len = 3;
    bool ok = arg_int(st, "truncate", a[0], 255, &length) && arg_int(st, "truncate", a[3], 5, &leeway);
    if (ok && a[2]) ok = arg_str(st, "truncate", a[2], &end, &end_len);
    const char *p = jv_str(&s);
    size_t n = jv_strlen(&s), chars = utf8_count(p, n), end_chars = utf8_count(end, end_len);
    if (ok && (length < (int64_t)end_chars || leeway < 0))
        ok = jinja_fail(st, NURI_ERR_FORMAT, "truncate: length must be at least the length of end");
    if (!ok) {
        jv_drop(&s);
        return false;
    }
    if ((int64_t)chars <= length + leeway) {
        *out = s;
        return true;
    }
    size_t cut = utf8_offset(p, n, (size_t)length - end_chars);
    if (!(a[1] && jv_truthy(a[1]))) {
        const char *sp = rfind_bytes(p, cut, " ", 1);
        if (sp) cut = (size_t)(sp - p);
    }
    jbuf b = {0};
    ok = jbuf_put(st, &b, p, cut) && jbuf_put(st, &b, end, end_len) && jv_make_str(st, b.data, b.len, out);
    jbuf_free(&b);
    jv_drop(&s);
    return ok;
}

bool jinja_apply_filter(jstate *st, int fn, const jv *v, const jv *args, size_t n_args,
                        const char *const *kw_names, const jv *kw_vals, size_t n_kw, jv *out) {
    filter_id id = filters[fn].id;
    const char *name = filters[fn].name;
    const jv *a[MAX_PARAMS];
    *out = jv_undef();
#define BIND(...)                                                                        \
    do {                                                                                 \
        static const char *const params_[] = {__VA_ARGS__, NULL};                        \
        if (!bind(st, name, params_, args, n_args, kw_names, kw_vals, n_kw, a)) return false; \
    } while (0)
#define BIND_NONE()                                                                      \
    do {                                                                                 \
        static const char *const params_[] = {NULL};                                     \
        if (!bind(st, name, params_, args, n_args, kw_names, kw_vals, n_kw, a)) return false; \
    } while (0)
    /* Filters walk their input: charge its size against the step budget. */
    uint64_t work = 1;
    if (v->kind == JV_DATA) {
        if (json_is_string(v->j)) work += json_string_length(v->j) / 32;
        else if (json_is_array(v->j)) work += json_array_size(v->j);
        else if (json_is_object(v->j)) work += json_object_size(v->j);
    }
    if (!jinja_steps(st, work)) return false;
    switch (id) {
    case F_ABS:
        BIND_NONE();
        if (jv_is_int(v)) {
            int64_t x = jv_int(v);
            if (x == INT64_MIN) return jinja_fail(st, NURI_ERR_UNSUPPORTED, "integer overflow");
            return jv_make_int(st, x < 0 ? -x : x, out);
        }
        if (jv_is_num(v)) return jv_make_real(st, fabs(jv_num(v)), out);
        return jinja_fail(st, NURI_ERR_FORMAT, "bad operand type for abs(): '%s'", jv_type_name(v));
    case F_ATTR:
        BIND("name");
        if (!a[0] || !jv_is_str(a[0])) return jinja_fail(st, NURI_ERR_FORMAT, "attr() needs a name");
        return jinja_getattr(st, v, jv_str(a[0]), jv_strlen(a[0]), out);
    case F_BATCH: {
        /* jinja2's algorithm, quirks included (a size <= 0 never fills a row). */
        BIND("linecount", "fill_with");
        int64_t size;
        if (!a[0]) return jinja_fail(st, NURI_ERR_FORMAT, "do_batch() missing 1 required positional argument: 'linecount'");
        if (!arg_int(st, name, a[0], 1, &size)) return false;
        json_t *items;
        if (!jinja_iterate(st, v, &items)) return false;
        json_t *arr = json_array(), *row = json_array();
        bool ok = arr && row;
        if (!ok) nomem(st);
        for (size_t i = 0; ok && i <= json_array_size(items); i++) {
            bool last = i == json_array_size(items);
            if (last ? json_array_size(row) > 0 : (int64_t)json_array_size(row) == size) {
                while (ok && last && a[1] && !is_none(a[1]) && (int64_t)json_array_size(row) < size)
                    ok = append(st, row, a[1]);
                if (ok) ok = jinja_track(st, row);
                if (ok) {
                    json_t *full = row; /* appending takes the reference, even on failure */
                    row = NULL;
                    if (json_array_append_new(arr, full)) ok = nomem(st);
                }
                if (ok && !last && !(row = json_array())) ok = nomem(st);
            }
            if (ok && !last)
                ok = jinja_charge(st, JINJA_ELEM_COST) && (json_array_append(row, json_array_get(items, i)) == 0 || nomem(st));
        }
        json_decref(row);
        json_decref(items);
        if (!ok) {
            json_decref(arr);
            return false;
        }
        return make_list(st, arr, JV_GEN, out);
    }
    case F_CAPITALIZE:
    case F_LOWER:
    case F_UPPER:
    case F_TITLE: {
        BIND_NONE();
        jv s;
        if (!jv_to_str(st, v, &s)) return false;
        /* jinja2's title filter is not str.title(): words begin only after
         * whitespace, '-', '(', '{', '[' or '<'. */
        int mode = id == F_UPPER ? 0 : id == F_LOWER ? 1 : id == F_TITLE ? 4 : 3;
        bool ok = map_chars(st, jv_str(&s), jv_strlen(&s), mode, out);
        jv_drop(&s);
        return ok;
    }
    case F_CENTER: {
        BIND("width");
        int64_t width;
        if (!arg_int(st, name, a[0], 80, &width)) return false;
        jv s;
        if (!jv_to_str(st, v, &s)) return false;
        bool ok = pad_str(st, jv_str(&s), jv_strlen(&s), width, NULL, 0, out);
        jv_drop(&s);
        return ok;
    }
    case F_COUNT:
        BIND_NONE();
        if (v->kind == JV_UNDEF) return jv_make_int(st, 0, out);
        if (v->kind == JV_DATA && !(v->flags & JV_GEN)) {
            if (json_is_string(v->j))
                return jv_make_int(st, (int64_t)utf8_count(json_string_value(v->j), json_string_length(v->j)), out);
            if (json_is_array(v->j)) return jv_make_int(st, (int64_t)json_array_size(v->j), out);
            if (json_is_object(v->j)) return jv_make_int(st, (int64_t)json_object_size(v->j), out);
        }
        return jinja_fail(st, NURI_ERR_FORMAT, "object of type '%s' has no len()", jv_type_name(v));
    case F_DEFAULT:
        BIND("default_value", "boolean");
        if (v->kind == JV_UNDEF || (a[1] && jv_truthy(a[1]) && !jv_truthy(v))) {
            if (a[0]) *out = jv_dup(a[0]);
            else return jv_make_str(st, "", 0, out);
            return true;
        }
        *out = jv_dup(v);
        return true;
    case F_DICTSORT: {
        BIND("case_sensitive", "by", "reverse");
        if (!jv_is_dict(v)) return jinja_fail(st, NURI_ERR_FORMAT, "dictsort needs a dict, got '%s'", jv_type_name(v));
        size_t pos = 0;
        if (a[1]) {
            const char *by;
            size_t bl;
            if (!arg_str(st, name, a[1], &by, &bl)) return false;
            if (!strcmp(by, "value")) pos = 1;
            else if (strcmp(by, "key")) return jinja_fail(st, NURI_ERR_FORMAT, "You can only sort by either \"key\" or \"value\"");
        }
        json_t *pairs = json_array();
        bool ok = pairs != NULL;
        const char *k;
        size_t klen;
        json_t *val;
        json_object_keylen_foreach(v->j, k, klen, val) {
            if (!ok) break;
            json_t *pair = json_array();
            ok = pair && !json_array_append_new(pair, json_stringn_nocheck(k, klen)) &&
                 !json_array_append(pair, val) && jinja_track(st, pair) && jinja_charge(st, 48);
            if (ok) ok = json_array_append_new(pairs, pair) == 0;
            else json_decref(pair);
        }
        json_t *res = NULL;
        if (ok) ok = sorted(st, pairs, NULL, a[0] && jv_truthy(a[0]), a[2] && jv_truthy(a[2]), true, pos, &res);
        json_decref(pairs);
        if (!ok) return nomem(st);
        return make_list(st, res, 0, out);
    }
    case F_ESCAPE:
        BIND_NONE();
        if (jv_is_str(v) && (v->flags & JV_SAFE)) {
            *out = jv_dup(v);
            return true;
        }
        return html_escape_str(st, v, out);
    case F_FORCEESCAPE: BIND_NONE(); return html_escape_str(st, v, out);
    case F_FIRST: {
        BIND_NONE();
        json_t *items;
        if (!jinja_iterate(st, v, &items)) return false;
        if (json_array_size(items)) *out = jv_from_elem(st, json_array_get(items, 0));
        json_decref(items);
        if (out->kind == JV_UNDEF) return jv_undef_msg(st, out, "No first item, sequence was empty.");
        return true;
    }
    case F_LAST: {
        BIND_NONE();
        if (v->kind == JV_DATA && (v->flags & JV_GEN))
            return jinja_fail(st, NURI_ERR_FORMAT, "'generator' object is not reversible");
        json_t *items;
        if (!jinja_iterate(st, v, &items)) return false;
        size_t n = json_array_size(items);
        if (n) *out = jv_from_elem(st, json_array_get(items, n - 1));
        json_decref(items);
        if (out->kind == JV_UNDEF) return jv_undef_msg(st, out, "No last item, sequence was empty.");
        return true;
    }
    case F_FLOAT: {
        BIND("default");
        if (v->kind == JV_UNDEF) { /* int(Undefined) raises in jinja2 */
            char msg[300];
            jv_undef_message(v, msg, sizeof msg);
            return jinja_fail(st, NURI_ERR_FORMAT, "%s", msg);
        }
        double d;
        if (jv_is_num(v)) return jv_make_real(st, jv_num(v), out);
        if (jv_is_str(v) && parse_float_str(jv_str(v), jv_strlen(v), &d)) return jv_make_real(st, d, out);
        if (a[0]) {
            *out = jv_dup(a[0]);
            return true;
        }
        return jv_make_real(st, 0.0, out);
    }
    case F_INT: {
        BIND("default", "base");
        if (v->kind == JV_UNDEF) { /* int(Undefined) raises in jinja2 */
            char msg[300];
            jv_undef_message(v, msg, sizeof msg);
            return jinja_fail(st, NURI_ERR_FORMAT, "%s", msg);
        }
        int64_t base, r;
        if (!arg_int(st, name, a[1], 10, &base)) return false;
        if (base != 0 && (base < 2 || base > 36)) return jinja_fail(st, NURI_ERR_FORMAT, "int() base must be >= 2 and <= 36, or 0");
        if (jv_is_int(v)) return jv_make_int(st, jv_int(v), out);
        if (jv_is_num(v)) {
            double d = trunc(jv_num(v));
            if (d >= -9.2e18 && d <= 9.2e18) return jv_make_int(st, (int64_t)d, out);
        } else if (jv_is_str(v)) {
            double d;
            if (parse_int_str(jv_str(v), jv_strlen(v), (int)base, &r)) return jv_make_int(st, r, out);
            if (parse_float_str(jv_str(v), jv_strlen(v), &d) && isfinite(d) && trunc(d) >= -9.2e18 &&
                trunc(d) <= 9.2e18)
                return jv_make_int(st, (int64_t)trunc(d), out);
        }
        if (a[0]) {
            *out = jv_dup(a[0]);
            return true;
        }
        return jv_make_int(st, 0, out);
    }
    case F_INDENT: BIND("width", "first", "blank"); return filter_indent(st, v, a, out);
    case F_ITEMS: {
        BIND_NONE();
        json_t *arr = json_array();
        if (!arr) return nomem(st);
        if (v->kind == JV_UNDEF) return make_list(st, arr, JV_GEN, out);
        if (!jv_is_dict(v)) {
            json_decref(arr);
            return jinja_fail(st, NURI_ERR_FORMAT, "Can only get item pairs from a mapping.");
        }
        const char *k;
        size_t klen;
        json_t *val;
        bool ok = true;
        json_object_keylen_foreach(v->j, k, klen, val) {
            json_t *pair = json_array();
            ok = pair && !json_array_append_new(pair, json_stringn_nocheck(k, klen)) &&
                 !json_array_append(pair, val) && jinja_track(st, pair) && jinja_charge(st, 48);
            if (ok) ok = json_array_append_new(arr, pair) == 0;
            else json_decref(pair);
            if (!ok) break;
        }
        if (!ok) {
            json_decref(arr);
            return nomem(st);
        }
        return make_list(st, arr, JV_GEN, out);
    }
    case F_JOIN: BIND("d", "attribute"); return filter_join(st, v, a, out);
    case F_LIST: {
        BIND_NONE();
        json_t *items;
        if (!jinja_iterate(st, v, &items)) return false;
        *out = jv_data(items);
        return true;
    }
    case F_MAP: return filter_map(st, v, args, n_args, kw_names, kw_vals, n_kw, out);
    case F_MAX:
    case F_MIN: BIND("case_sensitive", "attribute"); return filter_minmax(st, id == F_MAX, v, a, out);
    case F_REJECT:
    case F_REJECTATTR:
    case F_SELECT:
    case F_SELECTATTR:
        if (n_kw) return jinja_fail(st, NURI_ERR_FORMAT, "%s() takes no keyword arguments", name);
        return filter_select(st, id, v, args, n_args, out);
    case F_REPLACE: {
        BIND("old", "new", "count");
        jv s, o, nw;
        int64_t count;
        if (!a[0] || !a[1]) return jinja_fail(st, NURI_ERR_FORMAT, "replace() needs old and new");
        if (!arg_int(st, name, a[2], -1, &count) || !jv_to_str(st, v, &s)) return false;
        bool ok = jv_to_str(st, a[0], &o);
        if (ok) {
            ok = jv_to_str(st, a[1], &nw);
            if (ok) {
                ok = str_replace(st, jv_str(&s), jv_strlen(&s), jv_str(&o), jv_strlen(&o), jv_str(&nw),
                                 jv_strlen(&nw), count, out);
                jv_drop(&nw);
            }
            jv_drop(&o);
        }
        jv_drop(&s);
        return ok;
    }
    case F_REVERSE: {
        BIND_NONE();
        if (jv_is_str(v)) {
            const char *s = jv_str(v);
            size_t n = jv_strlen(v);
            char *buf = malloc(n + 1);
            if (!buf) return nomem(st);
            size_t pos = 0;
            while (pos < n) {
                size_t start = pos;
                utf8_next(s, n, &pos);
                memcpy(buf + n - pos, s + start, pos - start);
            }
            bool ok = jv_make_str(st, buf, n, out);
            free(buf);
            return ok;
        }
        json_t *items;
        if (!jinja_iterate(st, v, &items)) return false;
        json_t *arr = json_array();
        bool ok = arr != NULL;
        for (size_t i = json_array_size(items); ok && i-- > 0;)
            ok = json_array_append(arr, json_array_get(items, i)) == 0 && jinja_charge(st, JINJA_ELEM_COST);
        json_decref(items);
        if (!ok) {
            json_decref(arr);
            return nomem(st);
        }
        return make_list(st, arr, JV_GEN, out);
    }
    case F_ROUND: BIND("precision", "method"); return filter_round(st, v, a, out);
    case F_SAFE: {
        BIND_NONE();
        if (!jv_to_str(st, v, out)) return false;
        out->flags |= JV_SAFE;
        return true;
    }
    case F_SORT: {
        BIND("reverse", "case_sensitive", "attribute");
        json_t *items, *res;
        if (!jinja_iterate(st, v, &items)) return false;
        bool ok = sorted(st, items, a[2], a[1] && jv_truthy(a[1]), a[0] && jv_truthy(a[0]), false, 0, &res);
        json_decref(items);
        return ok && make_list(st, res, 0, out);
    }
    case F_STRING: BIND_NONE(); return jv_to_str(st, v, out);
    case F_SUM: {
        BIND("attribute", "start");
        json_t *items;
        if (!jinja_iterate(st, v, &items)) return false;
        jv acc;
        bool ok = true;
        if (a[1]) acc = jv_dup(a[1]);
        else ok = jv_make_int(st, 0, &acc);
        for (size_t i = 0; ok && i < json_array_size(items); i++) {
            jv item = jv_from_elem(st, json_array_get(items, i)), x;
            if (a[0] && !is_none(a[0])) {
                ok = jv_is_str(a[0]) ? attr_path(st, &item, jv_str(a[0]), jv_strlen(a[0]), &x)
                                     : jinja_getitem(st, &item, a[0], &x);
            } else {
                x = jv_dup(&item);
            }
            jv_drop(&item);
            if (!ok) break;
            if (!jv_is_num(&acc) || !jv_is_num(&x)) {
                ok = x.kind == JV_UNDEF
                         ? jinja_fail(st, NURI_ERR_FORMAT, "unsupported operand type(s) for +: '%s' and 'Undefined'",
                                      jv_type_name(&acc))
                         : jinja_fail(st, NURI_ERR_FORMAT, "unsupported operand type(s) for +: '%s' and '%s'",
                                      jv_type_name(&acc), jv_type_name(&x));
            } else if (jv_is_int(&acc) && jv_is_int(&x)) {
                int64_t r;
                if (__builtin_add_overflow(jv_int(&acc), jv_int(&x), &r))
                    ok = jinja_fail(st, NURI_ERR_UNSUPPORTED, "integer overflow");
                else {
                    jv_drop(&acc);
                    ok = jv_make_int(st, r, &acc);
                }
            } else {
                double r = jv_num(&acc) + jv_num(&x);
                jv_drop(&acc);
                ok = jv_make_real(st, r, &acc);
            }
            jv_drop(&x);
        }
        json_decref(items);
        if (!ok) {
            jv_drop(&acc);
            return false;
        }
        *out = acc;
        return true;
    }
    case F_TOJSON: BIND("ensure_ascii", "indent", "separators", "sort_keys"); return filter_tojson(st, v, a, out);
    case F_TRIM: {
        BIND("chars");
        jv s;
        if (!jv_to_str(st, v, &s)) return false;
        const char *chars = NULL;
        size_t nc = 0;
        if (a[0] && !is_none(a[0]) && !arg_str(st, name, a[0], &chars, &nc)) {
            jv_drop(&s);
            return false;
        }
        size_t x, y;
        strip_bounds(jv_str(&s), jv_strlen(&s), chars, nc, true, true, &x, &y);
        bool ok = jv_make_str(st, jv_str(&s) + x, y - x, out);
        if (ok) out->flags = s.flags & JV_SAFE;
        jv_drop(&s);
        return ok;
    }
    case F_TRUNCATE: BIND("length", "killwords", "end", "leeway"); return filter_truncate(st, v, a, out);
    case F_UNIQUE: BIND("case_sensitive", "attribute"); return filter_unique(st, v, a, out);
    case F_WORDCOUNT: {
        BIND_NONE();
        jv s;
        if (!jv_to_str(st, v, &s)) return false;
        const char *p = jv_str(&s);
        size_t n = jv_strlen(&s), pos = 0;
        int64_t words = 0;
        bool in_word = false;
        while (pos < n) {
            uint32_t cp = utf8_next(p, n, &pos);
            unsigned f = nuri_unicode_flags(cp);
            bool w = cp == '_' || (f & (NURI_UCAT_LETTER | NURI_UCAT_NUMBER | NURI_UCAT_MARK));
            if (w && !in_word) words++;
            in_word = w;
        }
        jv_drop(&s);
        return jv_make_int(st, words, out);
    }
    }
#undef BIND
#undef BIND_NONE
    return jinja_fail(st, NURI_ERR_FORMAT, "filter '%s' is not implemented", name);
}

/* ---- Methods of str, dict and list ------------------------------------------------- */

typedef enum {
    M_NONE,
    /* str */
    M_STRIP, M_LSTRIP, M_RSTRIP, M_SPLIT, M_RSPLIT, M_SPLITLINES, M_STARTSWITH, M_ENDSWITH, M_UPPER,
    M_LOWER, M_TITLE, M_CAPITALIZE, M_REPLACE, M_FIND, M_RFIND, M_INDEX, M_RINDEX, M_COUNT, M_JOIN,
    M_ISDIGIT, M_ISALPHA, M_ISALNUM, M_ISSPACE, M_ISLOWER, M_ISUPPER, M_CENTER, M_LJUST, M_RJUST,
    /* dict */
    M_GET, M_ITEMS, M_KEYS, M_VALUES,
    /* list */
    M_LIST_INDEX, M_LIST_COUNT,
} method_id;

static const struct {
    const char *name;
    json_type type;
    method_id id; /* M_NONE: exists but modifies the receiver (refused) */
} methods[] = {
    {"strip", JSON_STRING, M_STRIP}, {"lstrip", JSON_STRING, M_LSTRIP}, {"rstrip", JSON_STRING, M_RSTRIP},
    {"split", JSON_STRING, M_SPLIT}, {"rsplit", JSON_STRING, M_RSPLIT},
    {"splitlines", JSON_STRING, M_SPLITLINES}, {"startswith", JSON_STRING, M_STARTSWITH},
    {"endswith", JSON_STRING, M_ENDSWITH}, {"upper", JSON_STRING, M_UPPER}, {"lower", JSON_STRING, M_LOWER},
    {"title", JSON_STRING, M_TITLE}, {"capitalize", JSON_STRING, M_CAPITALIZE},
    {"replace", JSON_STRING, M_REPLACE}, {"find", JSON_STRING, M_FIND}, {"rfind", JSON_STRING, M_RFIND},
    {"index", JSON_STRING, M_INDEX}, {"rindex", JSON_STRING, M_RINDEX}, {"count", JSON_STRING, M_COUNT},
    {"join", JSON_STRING, M_JOIN}, {"isdigit", JSON_STRING, M_ISDIGIT}, {"isalpha", JSON_STRING, M_ISALPHA},
    {"isalnum", JSON_STRING, M_ISALNUM}, {"isspace", JSON_STRING, M_ISSPACE},
    {"islower", JSON_STRING, M_ISLOWER}, {"isupper", JSON_STRING, M_ISUPPER},
    {"center", JSON_STRING, M_CENTER}, {"ljust", JSON_STRING, M_LJUST}, {"rjust", JSON_STRING, M_RJUST},
    {"get", JSON_OBJECT, M_GET}, {"items", JSON_OBJECT, M_ITEMS}, {"keys", JSON_OBJECT, M_KEYS},
    {"values", JSON_OBJECT, M_VALUES}, {"index", JSON_ARRAY, M_LIST_INDEX}, {"count", JSON_ARRAY, M_LIST_COUNT},
    {"update", JSON_OBJECT, M_NONE}, {"pop", JSON_OBJECT, M_NONE}, {"popitem", JSON_OBJECT, M_NONE},
    {"setdefault", JSON_OBJECT, M_NONE}, {"clear", JSON_OBJECT, M_NONE}, {"append", JSON_ARRAY, M_NONE},
    {"extend", JSON_ARRAY, M_NONE}, {"insert", JSON_ARRAY, M_NONE}, {"pop", JSON_ARRAY, M_NONE},
    {"remove", JSON_ARRAY, M_NONE}, {"reverse", JSON_ARRAY, M_NONE}, {"sort", JSON_ARRAY, M_NONE},
    {"clear", JSON_ARRAY, M_NONE},
};

int jinja_method_find(const json_t *receiver, const char *name, bool *unsafe) {
    *unsafe = false;
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (methods[i].type != json_typeof(receiver) || strcmp(methods[i].name, name)) continue;
        if (methods[i].id == M_NONE) {
            *unsafe = true;
            return 0;
        }
        return (int)i + 1;
    }
    return 0;
}

const char *jinja_method_name(int id) {
    if (id <= 0 || (size_t)id > sizeof methods / sizeof methods[0]) return "?";
    return methods[id - 1].name;
}

/* Index of substring as a code point offset (-1 when absent). */
static int64_t cp_index(const char *s, size_t n, const char *hit) {
    return hit ? (int64_t)utf8_count(s, (size_t)(hit - s)) : -1;
}

static bool affix_match(jstate *st, const char *s, size_t n, const jv *affix, bool at_end, bool *out) {
    *out = false;
    json_t *cands;
    if (jv_is_str(affix)) {
        cands = json_array();
        if (!cands || json_array_append(cands, affix->j)) {
            json_decref(cands);
            return nomem(st);
        }
    } else if (jv_is_list(affix)) {
        cands = json_incref(affix->j);
    } else {
        return jinja_fail(st, NURI_ERR_FORMAT, "%s first arg must be str or a tuple of str, not %s",
                          at_end ? "endswith" : "startswith", jv_type_name(affix));
    }
    bool ok = true;
    for (size_t i = 0; ok && i < json_array_size(cands) && !*out; i++) {
        json_t *c = json_array_get(cands, i);
        if (!json_is_string(c)) {
            ok = jinja_fail(st, NURI_ERR_FORMAT, "tuple for %s must only contain str",
                            at_end ? "endswith" : "startswith");
            break;
        }
        size_t cn = json_string_length(c);
        if (cn <= n && !memcmp(at_end ? s + n - cn : s, json_string_value(c), cn)) *out = true;
    }
    json_decref(cands);
    return ok;
}

static bool str_class(const char *s, size_t n, method_id id) {
    if (n == 0) return false;
    if (id == M_ISLOWER || id == M_ISUPPER) return str_is_cased(s, n, id == M_ISLOWER);
    size_t pos = 0;
    while (pos < n) {
        uint32_t cp = utf8_next(s, n, &pos);
        unsigned f = nuri_unicode_flags(cp);
        bool ok;
        switch (id) {
        case M_ISDIGIT: ok = f & NURI_UCAT_NUMBER; break;
        case M_ISALPHA: ok = f & NURI_UCAT_LETTER; break;
        case M_ISALNUM: ok = f & (NURI_UCAT_LETTER | NURI_UCAT_NUMBER); break;
        default: ok = py_isspace(cp); break;
        }
        if (!ok) return false;
    }
    return true;
}

static bool pad_str(jstate *st, const char *s, size_t n, int64_t width, const jv *fill, int mode, jv *out) {
    /* mode 0 center, 1 ljust, 2 rjust */
    const char *f = " ";
    size_t fl = 1;
    if (fill) {
        if (!jv_is_str(fill) || utf8_count(jv_str(fill), jv_strlen(fill)) != 1)
            return jinja_fail(st, NURI_ERR_FORMAT, "The fill character must be exactly one character long");
        f = jv_str(fill);
        fl = jv_strlen(fill);
    }
    int64_t len = (int64_t)utf8_count(s, n);
    if (width > (int64_t)JINJA_MAX_OUTPUT) return jinja_fail(st, NURI_ERR_UNSUPPORTED, "padding too wide");
    int64_t marg = width - len, left = 0;
    if (marg <= 0) return jv_make_str(st, s, n, out);
    if (mode == 0) left = marg / 2 + (marg & width & 1);
    else if (mode == 2) left = marg;
    jbuf b = {0};
    bool ok = true;
    for (int64_t i = 0; ok && i < left; i++) ok = jbuf_put(st, &b, f, fl);
    if (ok) ok = jbuf_put(st, &b, s, n);
    for (int64_t i = left; ok && i < marg; i++) ok = jbuf_put(st, &b, f, fl);
    if (ok) ok = jv_make_str(st, b.data, b.len, out);
    jbuf_free(&b);
    return ok;
}

bool jinja_call_method(jstate *st, int mid, json_t *receiver, uint8_t flags, const jv *args, size_t n_args,
                       const char *const *kw_names, const jv *kw_vals, size_t n_kw, jv *out) {
    method_id id = methods[mid - 1].id;
    const char *name = methods[mid - 1].name;
    const jv *a[MAX_PARAMS];
    *out = jv_undef();
#define BIND(...)                                                                        \
    do {                                                                                 \
        static const char *const params_[] = {__VA_ARGS__, NULL};                        \
        if (!bind(st, name, params_, args, n_args, kw_names, kw_vals, n_kw, a)) return false; \
    } while (0)
#define BIND_NONE()                                                                      \
    do {                                                                                 \
        static const char *const params_[] = {NULL};                                     \
        if (!bind(st, name, params_, args, n_args, kw_names, kw_vals, n_kw, a)) return false; \
    } while (0)
    const char *s = json_is_string(receiver) ? json_string_value(receiver) : NULL;
    size_t n = s ? json_string_length(receiver) : 0;
    uint64_t work = 1 + n / 32 + (json_is_array(receiver) ? json_array_size(receiver) : 0);
    if (!jinja_steps(st, work)) return false;
    switch (id) {
    case M_STRIP:
    case M_LSTRIP:
    case M_RSTRIP: {
        BIND("chars");
        const char *chars = NULL;
        size_t nc = 0;
        if (a[0] && !is_none(a[0]) && !arg_str(st, name, a[0], &chars, &nc)) return false;
        size_t x, y;
        strip_bounds(s, n, chars, nc, id != M_RSTRIP, id != M_LSTRIP, &x, &y);
        if (!jv_make_str(st, s + x, y - x, out)) return false;
        out->flags = flags & JV_SAFE;
        return true;
    }
    case M_SPLIT:
    case M_RSPLIT: {
        BIND("sep", "maxsplit");
        const char *sep = NULL;
        size_t sn = 0;
        int64_t maxsplit;
        if (a[0] && !is_none(a[0]) && !arg_str(st, name, a[0], &sep, &sn)) return false;
        if (!arg_int(st, name, a[1], -1, &maxsplit)) return false;
        return str_split(st, s, n, sep, sn, maxsplit, id == M_RSPLIT, out);
    }
    case M_SPLITLINES: {
        BIND("keepends");
        json_t *lines;
        if (!str_splitlines(st, s, n, a[0] && jv_truthy(a[0]), &lines)) return false;
        return make_list(st, lines, 0, out);
    }
    case M_STARTSWITH:
    case M_ENDSWITH: {
        BIND("prefix");
        if (!a[0]) return jinja_fail(st, NURI_ERR_FORMAT, "%s() takes at least 1 argument (0 given)", name);
        bool r;
        if (!affix_match(st, s, n, a[0], id == M_ENDSWITH, &r)) return false;
        *out = jv_bool(r);
        return true;
    }
    case M_UPPER:
    case M_LOWER:
    case M_TITLE:
    case M_CAPITALIZE: {
        BIND_NONE();
        int mode = id == M_UPPER ? 0 : id == M_LOWER ? 1 : id == M_TITLE ? 2 : 3;
        if (!map_chars(st, s, n, mode, out)) return false;
        out->flags = flags & JV_SAFE;
        return true;
    }
    case M_REPLACE: {
        BIND("old", "new", "count");
        const char *o, *nw;
        size_t on, nn;
        int64_t count;
        if (!a[0] || !a[1]) return jinja_fail(st, NURI_ERR_FORMAT, "replace() takes at least 2 arguments");
        if (!arg_str(st, name, a[0], &o, &on) || !arg_str(st, name, a[1], &nw, &nn) ||
            !arg_int(st, name, a[2], -1, &count))
            return false;
        return str_replace(st, s, n, o, on, nw, nn, count, out);
    }
    case M_FIND:
    case M_RFIND:
    case M_INDEX:
    case M_RINDEX:
    case M_COUNT: {
        BIND("sub");
        const char *sub;
        size_t sn;
        if (!a[0]) return jinja_fail(st, NURI_ERR_FORMAT, "%s() takes at least 1 argument (0 given)", name);
        if (!arg_str(st, name, a[0], &sub, &sn)) return false;
        if (id == M_COUNT) {
            int64_t c = 0;
            if (sn == 0) return jv_make_int(st, (int64_t)utf8_count(s, n) + 1, out);
            for (const char *p = s; (p = find_bytes(p, n - (size_t)(p - s), sub, sn)); p += sn) c++;
            return jv_make_int(st, c, out);
        }
        bool from_right = id == M_RFIND || id == M_RINDEX;
        const char *hit = from_right ? rfind_bytes(s, n, sub, sn) : find_bytes(s, n, sub, sn);
        if (!hit && (id == M_INDEX || id == M_RINDEX)) return jinja_fail(st, NURI_ERR_FORMAT, "substring not found");
        return jv_make_int(st, cp_index(s, n, hit), out);
    }
    case M_JOIN: {
        BIND("iterable");
        if (!a[0]) return jinja_fail(st, NURI_ERR_FORMAT, "join() takes exactly one argument (0 given)");
        json_t *items;
        if (!jinja_iterate(st, a[0], &items)) return false;
        jbuf b = {0};
        bool ok = true;
        for (size_t i = 0; ok && i < json_array_size(items); i++) {
            json_t *it = json_array_get(items, i);
            if (!json_is_string(it)) {
                ok = jinja_fail(st, NURI_ERR_FORMAT, "sequence item %zu: expected str instance, %s found", i,
                                it == jinja_undef_marker(st) ? "Undefined" : json_type_name(it));
                break;
            }
            if (i) ok = jbuf_put(st, &b, s, n);
            if (ok) ok = jbuf_put(st, &b, json_string_value(it), json_string_length(it));
        }
        json_decref(items);
        if (ok) ok = jv_make_str(st, b.data, b.len, out);
        jbuf_free(&b);
        return ok;
    }
    case M_ISDIGIT:
    case M_ISALPHA:
    case M_ISALNUM:
    case M_ISSPACE:
    case M_ISLOWER:
    case M_ISUPPER: BIND_NONE(); *out = jv_bool(str_class(s, n, id)); return true;
    case M_CENTER:
    case M_LJUST:
    case M_RJUST: {
        BIND("width", "fillchar");
        int64_t width;
        if (!a[0]) return jinja_fail(st, NURI_ERR_FORMAT, "%s() takes at least 1 argument (0 given)", name);
        if (!arg_int(st, name, a[0], 0, &width)) return false;
        return pad_str(st, s, n, width, a[1], id == M_CENTER ? 0 : id == M_LJUST ? 1 : 2, out);
    }
    case M_GET: {
        BIND("key", "default");
        if (!a[0]) return jinja_fail(st, NURI_ERR_FORMAT, "get expected at least 1 argument, got 0");
        json_t *v = jv_is_str(a[0]) ? json_object_getn(receiver, jv_str(a[0]), jv_strlen(a[0])) : NULL;
        if (v) *out = jv_from_elem(st, v);
        else if (a[1]) *out = jv_dup(a[1]);
        else *out = jv_none();
        return true;
    }
    case M_ITEMS:
    case M_KEYS:
    case M_VALUES: {
        BIND_NONE();
        json_t *arr = json_array();
        if (!arr) return nomem(st);
        const char *k;
        size_t klen;
        json_t *val;
        bool ok = true;
        json_object_keylen_foreach(receiver, k, klen, val) {
            json_t *item;
            if (id == M_KEYS) item = json_stringn_nocheck(k, klen);
            else if (id == M_VALUES) item = json_incref(val);
            else {
                item = json_array();
                ok = item && !json_array_append_new(item, json_stringn_nocheck(k, klen)) &&
                     !json_array_append(item, val) && jinja_track(st, item);
            }
            ok = ok && item && jinja_charge(st, 32) && json_array_append_new(arr, item) == 0;
            if (!ok) break;
        }
        if (!ok) {
            json_decref(arr);
            return nomem(st);
        }
        return make_list(st, arr, 0, out);
    }
    case M_LIST_INDEX:
    case M_LIST_COUNT: {
        BIND("value");
        if (!a[0]) return jinja_fail(st, NURI_ERR_FORMAT, "%s() takes exactly one argument (0 given)", name);
        int64_t count = 0;
        for (size_t i = 0; i < json_array_size(receiver); i++) {
            jv item = jv_from_elem(st, json_array_get(receiver, i));
            bool eq = jv_equal(st, &item, a[0]);
            jv_drop(&item);
            if (eq && id == M_LIST_INDEX) return jv_make_int(st, (int64_t)i, out);
            count += eq;
        }
        if (id == M_LIST_INDEX) return jinja_fail(st, NURI_ERR_FORMAT, "value is not in list");
        return jv_make_int(st, count, out);
    }
    case M_NONE: break;
    }
#undef BIND
#undef BIND_NONE
    return jinja_fail(st, NURI_ERR_FORMAT, "method '%s' is not implemented", name);
}

/* ---- Global functions --------------------------------------------------------------- */

typedef enum { G_RANGE, G_NAMESPACE, G_DICT, G_RAISE, G_STRFTIME } global_id;

static const char *const global_names[] = {"range", "namespace", "dict", "raise_exception", "strftime_now"};

int jinja_global_find(const char *name) {
    for (size_t i = 0; i < sizeof global_names / sizeof global_names[0]; i++)
        if (!strcmp(global_names[i], name)) return (int)i + 1;
    return 0;
}

const char *jinja_global_name(int id) {
    if (id < 0 || (size_t)id >= sizeof global_names / sizeof global_names[0]) return "?";
    return global_names[id];
}

/* strftime with the C locale's English names, independent of the process
 * locale. Unknown conversions are copied as written (as glibc does). */
static bool format_time(jstate *st, const char *fmt, size_t n, const struct tm *tm, jbuf *out) {
    static const char *const days[] = {"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"};
    static const char *const months[] = {"January", "February", "March", "April", "May", "June", "July",
                                         "August", "September", "October", "November", "December"};
    int wday = tm->tm_wday >= 0 && tm->tm_wday < 7 ? tm->tm_wday : 0;
    int mon = tm->tm_mon >= 0 && tm->tm_mon < 12 ? tm->tm_mon : 0;
    int hour12 = tm->tm_hour % 12 == 0 ? 12 : tm->tm_hour % 12;
    for (size_t i = 0; i < n; i++) {
        if (fmt[i] != '%' || i + 1 >= n) {
            if (!jbuf_put(st, out, fmt + i, 1)) return false;
            continue;
        }
        size_t spec_start = i;
        bool no_pad = false;
        if (fmt[i + 1] == '-' && i + 2 < n) {
            no_pad = true;
            i++;
        }
        char c = fmt[++i], buf[64];
        const char *lit = NULL;
        int num = -1, width = 2;
        switch (c) {
        case 'a': snprintf(buf, sizeof buf, "%.3s", days[wday]); lit = buf; break;
        case 'A': lit = days[wday]; break;
        case 'b': case 'h': snprintf(buf, sizeof buf, "%.3s", months[mon]); lit = buf; break;
        case 'B': lit = months[mon]; break;
        case 'd': num = tm->tm_mday; break;
        case 'e': snprintf(buf, sizeof buf, no_pad ? "%d" : "%2d", tm->tm_mday); lit = buf; break;
        case 'H': num = tm->tm_hour; break;
        case 'I': num = hour12; break;
        case 'j': num = tm->tm_yday + 1; width = 3; break;
        case 'm': num = tm->tm_mon + 1; break;
        case 'M': num = tm->tm_min; break;
        case 'S': num = tm->tm_sec; break;
        case 'y': num = (tm->tm_year + 1900) % 100; break;
        case 'Y': snprintf(buf, sizeof buf, "%d", tm->tm_year + 1900); lit = buf; break;
        case 'p': lit = tm->tm_hour < 12 ? "AM" : "PM"; break;
        case 'w': snprintf(buf, sizeof buf, "%d", wday); lit = buf; break;
        case 'u': snprintf(buf, sizeof buf, "%d", wday == 0 ? 7 : wday); lit = buf; break;
        case 'D':
            snprintf(buf, sizeof buf, "%02d/%02d/%02d", tm->tm_mon + 1, tm->tm_mday, (tm->tm_year + 1900) % 100);
            lit = buf;
            break;
        case 'F': snprintf(buf, sizeof buf, "%d-%02d-%02d", tm->tm_year + 1900, tm->tm_mon + 1, tm->tm_mday); lit = buf; break;
        case 'T': snprintf(buf, sizeof buf, "%02d:%02d:%02d", tm->tm_hour, tm->tm_min, tm->tm_sec); lit = buf; break;
        case 'R': snprintf(buf, sizeof buf, "%02d:%02d", tm->tm_hour, tm->tm_min); lit = buf; break;
        case 'n': lit = "\n"; break;
        case 't': lit = "\t"; break;
        case '%': lit = "%"; break;
        default: break;
        }
        if (num >= 0) {
            snprintf(buf, sizeof buf, no_pad ? "%d" : "%0*d", no_pad ? num : width, num);
            if (no_pad) snprintf(buf, sizeof buf, "%d", num);
            lit = buf;
        }
        if (!lit) {
            if (!jbuf_put(st, out, fmt + spec_start, i - spec_start + 1)) return false;
            continue;
        }
        if (!jbuf_puts(st, out, lit)) return false;
    }
    return true;
}

bool jinja_call_global(jstate *st, int id, const jv *args, size_t n_args, const char *const *kw_names,
                       const jv *kw_vals, size_t n_kw, jv *out) {
    *out = jv_undef();
    if (!jinja_steps(st, 1)) return false;
    switch ((global_id)id) {
    case G_RANGE: {
        if (n_kw || n_args < 1 || n_args > 3)
            return jinja_fail(st, NURI_ERR_FORMAT, "range expected 1 to 3 integer arguments");
        int64_t v[3] = {0, 0, 1};
        for (size_t i = 0; i < n_args; i++) {
            if (!jv_is_int(&args[i]))
                return jinja_fail(st, NURI_ERR_FORMAT, "'%s' object cannot be interpreted as an integer",
                                  jv_type_name(&args[i]));
        }
        if (n_args == 1) v[1] = jv_int(&args[0]);
        else {
            v[0] = jv_int(&args[0]);
            v[1] = jv_int(&args[1]);
            if (n_args == 3) v[2] = jv_int(&args[2]);
        }
        if (v[2] == 0) return jinja_fail(st, NURI_ERR_FORMAT, "range() arg 3 must not be zero");
        /* Size without overflow: count the steps in floating point first. */
        double count = ceil(((double)v[1] - (double)v[0]) / (double)v[2]);
        if (count < 0) count = 0;
        if (count > 100000)
            return jinja_fail(st, NURI_ERR_UNSUPPORTED,
                              "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        json_t *arr = json_array();
        if (!arr) return nomem(st);
        for (int64_t i = 0; i < (int64_t)count; i++) {
            if (!jinja_charge(st, 24) || json_array_append_new(arr, json_integer(v[0] + i * v[2]))) {
                json_decref(arr);
                return nomem(st);
            }
        }
        return make_list(st, arr, 0, out);
    }
    case G_NAMESPACE:
    case G_DICT: {
        if (n_args > 1 || (n_args == 1 && !jv_is_dict(&args[0])))
            return jinja_fail(st, NURI_ERR_FORMAT, "%s() takes an optional dict and keyword arguments",
                              global_names[id]);
        json_t *obj = n_args ? json_copy(args[0].j) : json_object();
        if (!obj) return nomem(st);
        for (size_t k = 0; k < n_kw; k++) {
            json_t *j = jv_to_json(st, &kw_vals[k]);
            if (!j || json_object_set_new(obj, kw_names[k], j)) {
                json_decref(obj);
                return nomem(st);
            }
        }
        if (id == G_DICT) return make_list(st, obj, 0, out);
        *out = jv_undef();
        out->kind = JV_NS;
        out->j = obj;
        return true;
    }
    case G_RAISE: {
        jv msg = jv_undef();
        if (n_args >= 1 && !jv_to_str(st, &args[0], &msg)) return false;
        jinja_fail(st, NURI_ERR_INVALID_ARG, "%s", msg.kind == JV_DATA ? jv_str(&msg) : "");
        jinja_mark_raised(st);
        jv_drop(&msg);
        return false;
    }
    case G_STRFTIME: {
        if (n_kw || n_args != 1 || !jv_is_str(&args[0]))
            return jinja_fail(st, NURI_ERR_FORMAT, "strftime_now() takes one format string");
        jbuf b = {0};
        bool ok = format_time(st, jv_str(&args[0]), jv_strlen(&args[0]), jinja_now(st), &b) &&
                  jv_make_str(st, b.data, b.len, out);
        jbuf_free(&b);
        return ok;
    }
    }
    return jinja_fail(st, NURI_ERR_FORMAT, "unknown global function");
}
