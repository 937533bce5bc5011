/* cmd_info.c — `nuri info`: prints a GGUF file's header, metadata and
 * tensor table.
 *
 * Metadata comes from untrusted files, so everything printed is escaped:
 * control characters, invalid UTF-8 and the Unicode controls that reorder
 * or break lines in a terminal never reach it raw, and each key stays on
 * one line. Long strings and arrays are abbreviated. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "gguf/gguf.h"
#include "quant/quant.h"

static const char *info_usage =
    "usage: nuri info [--help] MODEL.gguf\n"
    "\n"
    "Prints the GGUF version, every metadata key (long strings and arrays\n"
    "abbreviated) and a table of the tensors with their types, shapes and sizes.\n";

/* How much of long values is shown. */
#define MAX_STRING_SHOWN 160     /* bytes of a string value */
#define MAX_ELEMENT_STRING_SHOWN 40 /* bytes of each string in an array */
#define MAX_NAME_SHOWN 96        /* bytes of a tensor name */
#define MAX_SCALARS_SHOWN 8
#define MAX_STRINGS_SHOWN 4
#define MAX_ARRAYS_SHOWN 4

/* ---- Escaping ------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s[0..n), with its code point in *cp;
 * 0 when the bytes there are not valid UTF-8 (overlong forms and surrogates
 * included). */
static size_t utf8_sequence(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char c = s[0];
    size_t len;
    uint32_t min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
        *cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
        *cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
        *cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        *cp = (*cp << 6) | (s[i] & 0x3f);
    }
    if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff)) return 0;
    return len;
}

/* Code points that are invisible yet change how a terminal lays text out:
 * C1 controls, line and paragraph separators, bidirectional controls. */
static bool is_unsafe_code_point(uint32_t cp) {
    return (cp >= 0x80 && cp <= 0x9f) || cp == 0x200e || cp == 0x200f ||
           (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

/* Writes an escaped rendering of at most max_in bytes of s into buf, which
 * must hold 4 * max_in + 1 bytes (no input byte expands to more than four).
 * Returns the number of input bytes rendered; a UTF-8 character is never
 * split. */
static size_t escape(const char *str, uint64_t len, size_t max_in, char *buf) {
    const unsigned char *s = (const unsigned char *)str;
    size_t limit = len < max_in ? (size_t)len : max_in;
    size_t i = 0, o = 0;
    while (i < limit) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x7f) {
            if (c == '"' || c == '\\') buf[o++] = '\\';
            buf[o++] = (char)c;
            i++;
            continue;
        }
        const char *short_escape = c == '\n' ? "\\n" : c == '\t' ? "\\t" : c == '\r' ? "\\r" : NULL;
        if (short_escape) {
            memcpy(buf + o, short_escape, 2);
            o += 2;
            i++;
            continue;
        }
        uint32_t cp = 0;
        size_t n = c >= 0x80 ? utf8_sequence(s + i, (size_t)len - i, &cp) : 0;
        if (n == 0) {
            o += (size_t)sprintf(buf + o, "\\x%02x", c);
            i++;
        } else if (i + n > limit) {
            break; /* the character continues past what is shown */
        } else if (is_unsafe_code_point(cp)) {
            o += (size_t)sprintf(buf + o, "\\u%04" PRIx32, cp);
            i += n;
        } else {
            memcpy(buf + o, s + i, n);
            o += n;
            i += n;
        }
    }
    buf[o] = 0;
    return i;
}

/* Escapes a key or tensor name into buf (4 * MAX_NAME_SHOWN + 4 bytes),
 * marking an abbreviated one with "...". */
static const char *escape_name(gguf_str s, char *buf) {
    size_t shown = escape(s.data, s.len, MAX_NAME_SHOWN, buf);
    if (shown < s.len) strcat(buf, "...");
    return buf;
}

/* Prints s quoted and escaped, abbreviated to max_in bytes with its full
 * length noted. */
static void print_string(FILE *out, gguf_str s, size_t max_in) {
    char *buf = malloc(4 * max_in + 1);
    if (!buf) {
        fputs("\"?\"", out);
        return;
    }
    size_t shown = escape(s.data, s.len, max_in, buf);
    if (shown < s.len)
        fprintf(out, "\"%s\"... (%" PRIu64 " bytes)", buf, s.len);
    else
        fprintf(out, "\"%s\"", buf);
    free(buf);
}

/* ---- Values -------------------------------------------------------------- */

/* The shortest %g rendering that reads back as the same float (or double). */
static void format_float(char *buf, size_t cap, double d, bool single) {
    for (int precision = single ? 6 : 15; precision <= 17; precision++) {
        snprintf(buf, cap, "%.*g", precision, d);
        if (single ? strtof(buf, NULL) == (float)d : strtod(buf, NULL) == d) return;
    }
}

static void print_scalar_element(FILE *out, const gguf_value *arr, uint64_t i) {
    gguf_type t = arr->v.arr.elem_type;
    char buf[64];
    if (t == GGUF_TYPE_FLOAT32 || t == GGUF_TYPE_FLOAT64) {
        format_float(buf, sizeof buf, gguf_arr_float(arr, i), t == GGUF_TYPE_FLOAT32);
        fputs(buf, out);
    } else if (t == GGUF_TYPE_BOOL) {
        fputs(gguf_arr_int(arr, i) ? "true" : "false", out);
    } else if (t == GGUF_TYPE_UINT64) {
        fprintf(out, "%" PRIu64, (uint64_t)gguf_arr_int(arr, i));
    } else {
        fprintf(out, "%" PRId64, gguf_arr_int(arr, i));
    }
}

static void print_value(FILE *out, const gguf_value *v);

static void print_array(FILE *out, const gguf_value *v) {
    gguf_type et = v->v.arr.elem_type;
    uint64_t n = v->v.arr.n;
    uint64_t limit = et == GGUF_TYPE_STRING  ? MAX_STRINGS_SHOWN
                     : et == GGUF_TYPE_ARRAY ? MAX_ARRAYS_SHOWN
                                             : MAX_SCALARS_SHOWN;
    if (n <= limit) {
        fputc('[', out);
    } else {
        const char *what = et == GGUF_TYPE_STRING  ? "strings"
                           : et == GGUF_TYPE_ARRAY ? "arrays"
                                                   : gguf_type_name(et);
        fprintf(out, "[%" PRIu64 " %s: ", n, what);
    }
    uint64_t shown = n < limit ? n : limit;
    for (uint64_t i = 0; i < shown; i++) {
        if (i) fputs(", ", out);
        if (et == GGUF_TYPE_STRING)
            print_string(out, v->v.arr.strs[i], MAX_ELEMENT_STRING_SHOWN);
        else if (et == GGUF_TYPE_ARRAY)
            print_value(out, &v->v.arr.items[i]);
        else
            print_scalar_element(out, v, i);
    }
    fputs(n > limit ? ", ... ]" : "]", out);
}

static void print_value(FILE *out, const gguf_value *v) {
    char buf[64];
    switch (v->type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_UINT64: fprintf(out, "%" PRIu64, v->v.u64); break;
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_INT16:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_INT64: fprintf(out, "%" PRId64, v->v.i64); break;
    case GGUF_TYPE_FLOAT32:
    case GGUF_TYPE_FLOAT64:
        format_float(buf, sizeof buf, v->v.f64, v->type == GGUF_TYPE_FLOAT32);
        fputs(buf, out);
        break;
    case GGUF_TYPE_BOOL: fputs(v->v.u64 ? "true" : "false", out); break;
    case GGUF_TYPE_STRING: print_string(out, v->v.str, MAX_STRING_SHOWN); break;
    case GGUF_TYPE_ARRAY: print_array(out, v); break;
    default: fputs("?", out); break;
    }
}

/* ---- Tensor table -------------------------------------------------------- */

static void format_shape(char *buf, size_t cap, const gguf_tensor *t) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (uint32_t d = 0; d < t->n_dims && o < cap; d++)
        o += (size_t)snprintf(buf + o, cap - o, d ? ", %" PRId64 : "%" PRId64, t->ne[d]);
    if (o < cap) snprintf(buf + o, cap - o, "]");
}

static void print_tensors(FILE *out, const gguf_file *f) {
    uint64_t n = gguf_n_tensors(f);
    char name[4 * MAX_NAME_SHOWN + 4], shape[128];
    int name_w = 4, type_w = 4, shape_w = 5;
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        escape_name(t->name, name);
        format_shape(shape, sizeof shape, t);
        int nl = (int)strlen(name), tl = (int)strlen(nuri_type_name(t->type));
        int sl = (int)strlen(shape);
        if (nl > name_w) name_w = nl;
        if (tl > type_w) type_w = tl;
        if (sl > shape_w) shape_w = sl;
    }
    if (n > 0)
        fprintf(out, "%-*s  %-*s  %-*s  %12s\n", name_w, "name", type_w, "type", shape_w,
                "shape", "bytes");
    uint64_t total_bytes = 0, total_elements = 0;
    for (uint64_t i = 0; i < n; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        escape_name(t->name, name);
        format_shape(shape, sizeof shape, t);
        fprintf(out, "%-*s  %-*s  %-*s  %12" PRIu64 "\n", name_w, name, type_w,
                nuri_type_name(t->type), shape_w, shape, t->nbytes);
        uint64_t elements = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) elements *= (uint64_t)t->ne[d]; /* validated */
        /* Tensors may not overlap and lie inside the file, so bytes cannot
         * overflow; elements are summed saturating for the same reason. */
        total_bytes += t->nbytes;
        total_elements = total_elements + elements < total_elements ? UINT64_MAX
                                                                    : total_elements + elements;
    }
    fprintf(out, "total: %" PRIu64 " tensors, %" PRIu64 " elements, %" PRIu64 " bytes (%.2f MiB)\n",
            n, total_elements, total_bytes, (double)total_bytes / (1024.0 * 1024.0));
}

/* ---- The command --------------------------------------------------------- */

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool options_done = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && (!strcmp(arg, "--help") || !strcmp(arg, "-h"))) {
            fputs(info_usage, stdout);
            return 0;
        }
        if (!options_done && !strcmp(arg, "--")) {
            options_done = true;
        } else if (!options_done && arg[0] == '-' && arg[1]) {
            return cli_error("info: unknown option '%s' (see nuri info --help)", arg);
        } else if (path) {
            return cli_error("info: expected one MODEL.gguf, got '%s' and '%s'", path, arg);
        } else {
            path = arg;
        }
    }
    if (!path) return cli_error("info: missing MODEL.gguf (see nuri info --help)");

    gguf_file *f;
    nuri_error err;
    if (gguf_open(path, &f, &err) != NURI_OK) return cli_error("%s: %s", path, err.message);

    FILE *out = stdout;
    fprintf(out, "GGUF version %" PRIu32 ", %" PRIu64 " bytes, %" PRIu64 " metadata keys, %" PRIu64
                 " tensors, alignment %" PRIu64 ", data at offset %" PRIu64 "\n",
            gguf_version(f), gguf_file_size(f), gguf_n_kv(f), gguf_n_tensors(f),
            gguf_alignment(f), gguf_data_offset(f));

    fputs("\nmetadata:\n", out);
    char key[4 * MAX_NAME_SHOWN + 4];
    for (uint64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        fprintf(out, "%s = ", escape_name(kv->key, key));
        print_value(out, &kv->value);
        fputc('\n', out);
    }

    fputs("\ntensors:\n", out);
    print_tensors(out, f);
    gguf_close(f);

    if (fflush(out) != 0 || ferror(out)) return cli_error("%s: cannot write the output", path);
    return 0;
}
