/* pretokenize.c — the pre-tokenizers of byte-level BPE vocabularies.
 *
 * Each model's reference tokenizer (Hugging Face tokenizers) splits text
 * with one or more regular expressions before BPE. A pre-tokenizer here is
 * a list of such patterns applied one after another: each pattern splits
 * every piece the previous one produced, and both its matches and the
 * unmatched gaps between them become pieces ("Isolated" splitting).
 *
 * The patterns are run by a small regex engine over code points that knows
 * exactly the constructs they use: literals and escapes, classes with
 * ranges, \s (White_Space), \p{..} general categories, alternation, groups,
 * (?i:..) on literals, greedy ? * + {n,m}, $ (the end, or before a '\n', as
 * in Oniguruma, the reference's engine) and a one-character negative
 * lookahead (?!..). Empty matches are never pieces. Matching is a Pike VM
 * (a Thompson NFA simulation that keeps threads in priority order), so it
 * gives the leftmost-first matches of a backtracking engine while doing work
 * linear in the text scanned. */
#include "tokenizer/pretokenize.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "tokenizer/unicode.h"

/* ---- Pre-tokenizer definitions ---- */

#define MAX_STAGES 6
#define N_KINDS 6

/* The GPT-2 pattern; the trailing "|\s+" only catches whitespace that the
 * gap between matches would hold anyway, so it changes no split. */
#define GPT2_PATTERN \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

typedef struct {
    const char *names[8]; /* tokenizer.ggml.pre values; NULL-terminated */
    const char *patterns[MAX_STAGES];
} pretok_def;

/* Indexed by nuri_pretok_kind. The DeepSeek classes are written with \x{..}
 * escapes because several of their code points (U+1F7D, U+1FBE, U+1FD3,
 * U+1FDB, U+2126, U+212A) change under Unicode normalization, which editors
 * and copy-paste apply silently; escapes keep them exact. */
static const pretok_def PRETOK_DEFS[N_KINDS] = {
    [NURI_PRETOK_GPT2] = {
        {"default", "gpt2", "gpt-2", "mpt", "olmo", "jais", NULL},
        {GPT2_PATTERN},
    },
    [NURI_PRETOK_LLAMA3] = {
        {"llama-bpe", "llama3", "dbrx", "smaug-bpe", NULL},
        {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
         "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    },
    [NURI_PRETOK_DEEPSEEK_LLM] = {
        {"deepseek-llm", NULL},
        {
            "[\\r\\n]",
            /* Cased letters (Lu, Ll, Lt) of the Latin, Greek, Cyrillic,
             * Armenian, Georgian, Cherokee, Glagolitic, Coptic, Deseret, Osage,
             * Old Hungarian, Warang Citi and Adlam scripts. */
            "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}"
            "\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}"
            "\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}"
            "\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}"
            "\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"
            "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}"
            "\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}"
            "\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}"
            "\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}"
            "\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"
            "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}"
            "\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}"
            "\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}"
            "\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}"
            "\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}"
            "\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"
            "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}"
            "\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
            /* ASCII punctuation, fullwidth forms, curly quotes and the
             * ideographic space, comma and full stop. [:-~] spans the ASCII
             * letters too, so they part from other letters in a word:
             * "Führer" -> "F", "ü", "hrer", as the reference does. */
            "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}"
            "\\x{3000}-\\x{3002}]+",
            "\\s+$",
            "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
            "\\p{N}+",
        },
    },
    [NURI_PRETOK_STARCODER] = {
        {"starcoder", "refact", "command-r", "smollm", "codeshell", "exaone", NULL},
        {"\\p{N}", GPT2_PATTERN},
    },
    [NURI_PRETOK_FALCON] = {
        {"falcon", NULL},
        /* Punctuation as tokenizers' Punctuation pre-tokenizer sees it: the
         * P categories plus ASCII punctuation that Unicode calls symbols. */
        {"[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_PATTERN, "[0-9][0-9][0-9]"},
    },
    [NURI_PRETOK_QWEN2] = {
        {"qwen2", "deepseek-r1-qwen", NULL},
        {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
         "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    },
};

/* ---- Regex: syntax tree ---- */

typedef struct {
    uint32_t lo, hi;
} cp_range;

/* A set of code points: the listed ranges, plus every code point having a
 * flag in any_flags (\s, \p{L}), plus every one lacking a flag in
 * absent_flags (\S), all complemented when negated. Invalid bytes have no
 * flags, so only negated sets and \S-like items take them. */
typedef struct {
    cp_range *ranges; /* sorted by lo after parsing */
    size_t n_ranges, cap_ranges;
    unsigned any_flags, absent_flags;
    bool negated;
    uint64_t ascii[2]; /* membership of U+0000..007F, precomputed */
} char_class;

enum {
    NODE_CHAR,      /* value: code point (case-folded when folded) */
    NODE_CLASS,     /* value: class index */
    NODE_CAT,       /* children in sequence (none: the empty pattern) */
    NODE_ALT,       /* children in priority order */
    NODE_REPEAT,    /* first: the repeated node; min..max, max < 0: unbounded */
    NODE_LINE_END,  /* $ */
    NODE_NOT_AHEAD, /* (?!c): value: class index of the one character c */
};

typedef struct {
    uint8_t kind;
    bool folded;
    int32_t first, next; /* first child, next sibling; -1 when none */
    uint32_t value;
    int32_t min, max;
} node;

#define MAX_REPEAT 64 /* {n,m} bounds; the patterns need 3 */

/* ---- Regex: program ---- */

enum {
    OP_CHAR,        /* consume arg */
    OP_CHAR_FOLDED, /* consume a code point whose case folding is arg */
    OP_CLASS,       /* consume a member of class arg */
    OP_SPLIT,       /* continue at x, and with lower priority at y */
    OP_JMP,         /* continue at x */
    OP_LINE_END,    /* assert end of text or a '\n' next */
    OP_NOT_AHEAD,   /* assert the next code point is not in class arg */
    OP_MATCH,
};

typedef struct {
    uint8_t op;
    uint32_t arg, x, y;
} inst;

typedef struct {
    inst *code;
    size_t n_code, cap_code;
    char_class *classes;
    size_t n_classes, cap_classes;
    /* The ASCII characters a match can begin with (all, when that is not
     * known): a search skips the others while no attempt is under way. */
    uint64_t start_ascii[2];
} program;

static void program_free(program *prog) {
    for (size_t i = 0; i < prog->n_classes; i++) free(prog->classes[i].ranges);
    free(prog->classes);
    free(prog->code);
    memset(prog, 0, sizeof *prog);
}

/* Returns items (an array of *cap elements of size bytes) grown to hold at
 * least need elements, updating *cap; NULL when out of memory or on
 * overflow, with items still valid. */
static void *grow_array(void *items, size_t *cap, size_t need, size_t size) {
    if (need <= *cap) return items;
    size_t new_cap = *cap ? *cap : 8;
    while (new_cap < need) {
        if (new_cap > SIZE_MAX / 2) return NULL;
        new_cap *= 2;
    }
    uint64_t bytes;
    if (!nuri_mul_u64(new_cap, size, &bytes) || bytes > SIZE_MAX) return NULL;
    void *grown = realloc(items, (size_t)bytes);
    if (grown) *cap = new_cap;
    return grown;
}

static bool class_contains(const char_class *c, uint32_t cp, unsigned flags) {
    bool in = (flags & c->any_flags) != 0 || (~flags & c->absent_flags) != 0;
    if (!in) {
        size_t lo = 0, hi = c->n_ranges; /* first range with hi >= cp */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (c->ranges[mid].hi < cp)
                lo = mid + 1;
            else
                hi = mid;
        }
        in = lo < c->n_ranges && c->ranges[lo].lo <= cp;
    }
    return in != c->negated;
}

static inline bool class_matches(const char_class *c, uint32_t cp, unsigned flags) {
    if (cp < 128) return (c->ascii[cp >> 6] >> (cp & 63)) & 1;
    return class_contains(c, cp, flags);
}

static int compare_ranges(const void *a, const void *b) {
    const cp_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorts and merges the ranges (binary search needs them disjoint) and
 * fills the ASCII bitmap. */
static void class_finish(char_class *c) {
    if (c->n_ranges > 1) {
        qsort(c->ranges, c->n_ranges, sizeof *c->ranges, compare_ranges);
        size_t n = 1;
        for (size_t i = 1; i < c->n_ranges; i++) {
            cp_range *last = &c->ranges[n - 1];
            if (c->ranges[i].lo <= last->hi + 1) {
                if (c->ranges[i].hi > last->hi) last->hi = c->ranges[i].hi;
            } else {
                c->ranges[n++] = c->ranges[i];
            }
        }
        c->n_ranges = n;
    }
    c->ascii[0] = c->ascii[1] = 0;
    for (uint32_t cp = 0; cp < 128; cp++)
        if (class_contains(c, cp, nuri_unicode_flags(cp))) c->ascii[cp >> 6] |= 1ull << (cp & 63);
}

/* ---- Regex: parser ---- */

typedef struct {
    const char *pat;
    size_t len, pos;
    node *nodes;
    size_t n_nodes, cap_nodes;
    program *prog; /* receives the classes */
    const char *error; /* static text; NULL while all is well */
    bool out_of_memory;
} parser;

static int32_t parse_alt(parser *p, bool icase);

static int32_t parse_fail(parser *p, const char *msg) {
    if (!p->error) p->error = msg;
    return -1;
}

static int32_t new_node(parser *p, uint8_t kind) {
    node *grown = p->n_nodes < INT32_MAX
                      ? grow_array(p->nodes, &p->cap_nodes, p->n_nodes + 1, sizeof *p->nodes)
                      : NULL;
    if (!grown) {
        p->out_of_memory = true;
        return parse_fail(p, "out of memory");
    }
    p->nodes = grown;
    node *n = &p->nodes[p->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->first = n->next = -1;
    return (int32_t)p->n_nodes++;
}

/* Appends child to parent's children (kept in order by walking to the end;
 * the patterns are short). */
static void add_child(parser *p, int32_t parent, int32_t child) {
    int32_t *link = &p->nodes[parent].first;
    while (*link >= 0) link = &p->nodes[*link].next;
    *link = child;
}

static int32_t new_class(parser *p) {
    program *prog = p->prog;
    char_class *grown = prog->n_classes < INT32_MAX
                            ? grow_array(prog->classes, &prog->cap_classes, prog->n_classes + 1,
                                         sizeof *prog->classes)
                            : NULL;
    if (!grown) {
        p->out_of_memory = true;
        return parse_fail(p, "out of memory");
    }
    prog->classes = grown;
    memset(&prog->classes[prog->n_classes], 0, sizeof prog->classes[0]);
    return (int32_t)prog->n_classes++;
}

static bool class_add_range(parser *p, int32_t cls, uint32_t lo, uint32_t hi) {
    char_class *c = &p->prog->classes[cls];
    cp_range *grown = grow_array(c->ranges, &c->cap_ranges, c->n_ranges + 1, sizeof *c->ranges);
    if (!grown) {
        p->out_of_memory = true;
        parse_fail(p, "out of memory");
        return false;
    }
    c->ranges = grown;
    c->ranges[c->n_ranges++] = (cp_range){lo, hi};
    return true;
}

static bool at_end(const parser *p) { return p->pos >= p->len; }
static char peek(const parser *p) { return at_end(p) ? '\0' : p->pat[p->pos]; }

static bool eat(parser *p, const char *s) {
    size_t n = strlen(s);
    if (p->len - p->pos < n || memcmp(p->pat + p->pos, s, n) != 0) return false;
    p->pos += n;
    return true;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* What one escape denotes: a single code point, or a set given by flags. */
typedef struct {
    bool is_set;
    uint32_t cp;
    unsigned any_flags, absent_flags;
} escape;

/* Parses the escape after a backslash (p->pos is past the backslash). */
static bool parse_escape(parser *p, escape *e) {
    memset(e, 0, sizeof *e);
    if (at_end(p)) return parse_fail(p, "pattern ends in a backslash"), false;
    char c = p->pat[p->pos++];
    switch (c) {
    case 'r': e->cp = '\r'; return true;
    case 'n': e->cp = '\n'; return true;
    case 't': e->cp = '\t'; return true;
    case 'f': e->cp = '\f'; return true;
    case 'v': e->cp = '\v'; return true;
    case 's': e->is_set = true; e->any_flags = NURI_UCAT_WHITE_SPACE; return true;
    case 'S': e->is_set = true; e->absent_flags = NURI_UCAT_WHITE_SPACE; return true;
    case 'p':
    case 'P': {
        static const struct { char name; unsigned flags; } categories[] = {
            {'L', NURI_UCAT_LETTER},      {'N', NURI_UCAT_NUMBER}, {'P', NURI_UCAT_PUNCTUATION},
            {'S', NURI_UCAT_SYMBOL},      {'M', NURI_UCAT_MARK},   {'Z', NURI_UCAT_SEPARATOR},
            {'C', NURI_UCAT_OTHER},
        };
        if (p->len - p->pos < 3 || p->pat[p->pos] != '{' || p->pat[p->pos + 2] != '}')
            return parse_fail(p, "expected a one-letter category as in \\p{L}"), false;
        char name = p->pat[p->pos + 1];
        p->pos += 3;
        for (size_t i = 0; i < sizeof categories / sizeof categories[0]; i++) {
            if (categories[i].name == name) {
                e->is_set = true;
                if (c == 'p')
                    e->any_flags = categories[i].flags;
                else
                    e->absent_flags = categories[i].flags;
                return true;
            }
        }
        return parse_fail(p, "unknown category in \\p{..}"), false;
    }
    case 'x': {
        uint32_t v = 0;
        int digits = 0;
        if (eat(p, "{")) {
            while (!at_end(p) && peek(p) != '}') {
                int h = hex_value(p->pat[p->pos++]);
                if (h < 0 || ++digits > 6) return parse_fail(p, "bad \\x{..} escape"), false;
                v = v * 16 + (uint32_t)h;
            }
            if (!eat(p, "}") || digits == 0) return parse_fail(p, "bad \\x{..} escape"), false;
        } else {
            for (; digits < 2; digits++) {
                int h = hex_value(peek(p));
                if (h < 0) return parse_fail(p, "bad \\xHH escape"), false;
                p->pos++;
                v = v * 16 + (uint32_t)h;
            }
        }
        if (v > 0x10FFFF) return parse_fail(p, "\\x escape beyond U+10FFFF"), false;
        e->cp = v;
        return true;
    }
    default:
        /* Escaped ASCII punctuation stands for itself; other escapes are
         * not needed by the patterns, so they are refused, not guessed. */
        if ((unsigned char)c < 128 && c > ' ' && !(c >= '0' && c <= '9') &&
            !(c >= 'A' && c <= 'Z') && !(c >= 'a' && c <= 'z')) {
            e->cp = (uint32_t)(unsigned char)c;
            return true;
        }
        return parse_fail(p, "unsupported escape"), false;
    }
}

/* Reads one literal code point of the (UTF-8) pattern. */
static bool parse_literal(parser *p, uint32_t *cp) {
    size_t adv;
    *cp = nuri_utf8_decode(p->pat + p->pos, p->len - p->pos, &adv);
    if (*cp == NURI_UTF8_INVALID) return parse_fail(p, "invalid UTF-8 in pattern"), false;
    p->pos += adv;
    return true;
}

/* Parses a bracket class; p->pos is past the '['. */
static int32_t parse_class(parser *p, bool icase) {
    if (icase) return parse_fail(p, "classes inside (?i:..) are not supported");
    int32_t cls = new_class(p);
    if (cls < 0) return -1;
    if (eat(p, "^")) p->prog->classes[cls].negated = true;
    bool first = true;
    while (!at_end(p) && (peek(p) != ']' || first)) {
        first = false;
        escape lo = {0};
        if (peek(p) == '[') return parse_fail(p, "nested classes are not supported");
        if (eat(p, "\\")) {
            if (!parse_escape(p, &lo)) return -1;
        } else if (!parse_literal(p, &lo.cp)) {
            return -1;
        }
        if (lo.is_set) {
            p->prog->classes[cls].any_flags |= lo.any_flags;
            p->prog->classes[cls].absent_flags |= lo.absent_flags;
            continue;
        }
        uint32_t hi = lo.cp;
        if (p->len - p->pos >= 2 && p->pat[p->pos] == '-' && p->pat[p->pos + 1] != ']') {
            p->pos++;
            escape e = {0};
            if (eat(p, "\\")) {
                if (!parse_escape(p, &e)) return -1;
            } else if (!parse_literal(p, &e.cp)) {
                return -1;
            }
            if (e.is_set) return parse_fail(p, "a set cannot end a range");
            hi = e.cp;
            if (hi < lo.cp) return parse_fail(p, "range out of order");
        }
        if (!class_add_range(p, cls, lo.cp, hi)) return -1;
    }
    if (!eat(p, "]")) return parse_fail(p, "unterminated class");
    int32_t n = new_node(p, NODE_CLASS);
    if (n < 0) return -1;
    p->nodes[n].value = (uint32_t)cls;
    return n;
}

/* A class node holding the single set or code point an escape denotes. */
static int32_t class_node_from_escape(parser *p, const escape *e) {
    int32_t cls = new_class(p);
    if (cls < 0) return -1;
    p->prog->classes[cls].any_flags = e->any_flags;
    p->prog->classes[cls].absent_flags = e->absent_flags;
    if (!e->is_set && !class_add_range(p, cls, e->cp, e->cp)) return -1;
    int32_t n = new_node(p, NODE_CLASS);
    if (n < 0) return -1;
    p->nodes[n].value = (uint32_t)cls;
    return n;
}

static int32_t char_node(parser *p, uint32_t cp, bool icase) {
    int32_t n = new_node(p, NODE_CHAR);
    if (n < 0) return -1;
    p->nodes[n].folded = icase;
    p->nodes[n].value = icase ? nuri_unicode_casefold(cp) : cp;
    return n;
}

/* Parses a group after its '('. */
static int32_t parse_group(parser *p, bool icase) {
    bool lookahead = false;
    if (eat(p, "?:")) {
    } else if (eat(p, "?i:")) {
        icase = true;
    } else if (eat(p, "?!")) {
        lookahead = true;
    } else if (peek(p) == '?') {
        return parse_fail(p, "unsupported group kind");
    }
    int32_t inner = parse_alt(p, icase);
    if (inner < 0) return -1;
    if (!eat(p, ")")) return parse_fail(p, "missing )");
    if (!lookahead) return inner;

    /* Only a one-character lookahead is supported: it is all the patterns
     * use, and it keeps the matcher a pure left-to-right automaton. */
    node *body = &p->nodes[inner];
    uint32_t cls;
    if (body->kind == NODE_CLASS) {
        cls = body->value;
    } else if (body->kind == NODE_CHAR && !body->folded) {
        escape e = {.cp = body->value};
        int32_t c = class_node_from_escape(p, &e);
        if (c < 0) return -1;
        cls = p->nodes[c].value;
    } else {
        return parse_fail(p, "(?!..) must hold a single character or class");
    }
    int32_t n = new_node(p, NODE_NOT_AHEAD);
    if (n < 0) return -1;
    p->nodes[n].value = cls;
    return n;
}

static int32_t parse_atom(parser *p, bool icase) {
    char c = peek(p);
    if (eat(p, "(")) return parse_group(p, icase);
    if (eat(p, "[")) return parse_class(p, icase);
    if (eat(p, "$")) return new_node(p, NODE_LINE_END);
    if (c == '*' || c == '+' || c == '?' || c == '{') return parse_fail(p, "nothing to repeat");
    if (c == '^' || c == '.') return parse_fail(p, "unsupported operator");
    if (eat(p, "\\")) {
        escape e;
        if (!parse_escape(p, &e)) return -1;
        if (e.is_set) {
            if (icase) return parse_fail(p, "classes inside (?i:..) are not supported");
            return class_node_from_escape(p, &e);
        }
        return char_node(p, e.cp, icase);
    }
    uint32_t cp;
    if (!parse_literal(p, &cp)) return -1;
    return char_node(p, cp, icase);
}

/* Parses a decimal bound of {n,m}; false when there is none. */
static bool parse_bound(parser *p, int32_t *out) {
    int32_t v = 0;
    size_t start = p->pos;
    while (!at_end(p) && peek(p) >= '0' && peek(p) <= '9') {
        v = v * 10 + (peek(p) - '0');
        p->pos++;
        if (v > MAX_REPEAT) return false;
    }
    *out = v;
    return p->pos > start;
}

static int32_t parse_repeat(parser *p, bool icase) {
    int32_t atom = parse_atom(p, icase);
    while (atom >= 0 && !at_end(p)) {
        int32_t min, max;
        if (eat(p, "?")) {
            min = 0, max = 1;
        } else if (eat(p, "*")) {
            min = 0, max = -1;
        } else if (eat(p, "+")) {
            min = 1, max = -1;
        } else if (eat(p, "{")) {
            if (!parse_bound(p, &min)) return parse_fail(p, "bad {n,m}");
            max = min;
            if (eat(p, ",")) {
                if (peek(p) == '}')
                    max = -1;
                else if (!parse_bound(p, &max) || max < min)
                    return parse_fail(p, "bad {n,m}");
            }
            if (!eat(p, "}")) return parse_fail(p, "bad {n,m}");
        } else {
            break;
        }
        char after = peek(p);
        if (after == '?' || after == '+')
            return parse_fail(p, "lazy and possessive quantifiers are not supported");
        uint8_t kind = p->nodes[atom].kind;
        if (kind == NODE_LINE_END || kind == NODE_NOT_AHEAD)
            return parse_fail(p, "an assertion cannot be repeated");
        int32_t r = new_node(p, NODE_REPEAT);
        if (r < 0) return -1;
        p->nodes[r].first = atom;
        p->nodes[r].min = min;
        p->nodes[r].max = max;
        atom = r;
    }
    return atom;
}

static int32_t parse_cat(parser *p, bool icase) {
    int32_t cat = new_node(p, NODE_CAT);
    if (cat < 0) return -1;
    while (!at_end(p) && peek(p) != '|' && peek(p) != ')') {
        int32_t item = parse_repeat(p, icase);
        if (item < 0) return -1;
        add_child(p, cat, item);
    }
    /* A lone item stands for itself, so (?!\S) sees its class. */
    int32_t only = p->nodes[cat].first;
    if (only >= 0 && p->nodes[only].next < 0) return only;
    return cat;
}

static int32_t parse_alt(parser *p, bool icase) {
    int32_t first = parse_cat(p, icase);
    if (first < 0 || peek(p) != '|') return first;
    int32_t alt = new_node(p, NODE_ALT);
    if (alt < 0) return -1;
    add_child(p, alt, first);
    while (eat(p, "|")) {
        int32_t next = parse_cat(p, icase);
        if (next < 0) return -1;
        add_child(p, alt, next);
    }
    return alt;
}

/* ---- Regex: code generation ---- */

static bool emit(program *prog, uint8_t op, uint32_t arg, uint32_t x, uint32_t y) {
    if (prog->n_code >= UINT32_MAX / 2) return false;
    inst *grown = grow_array(prog->code, &prog->cap_code, prog->n_code + 1, sizeof *prog->code);
    if (!grown) return false;
    prog->code = grown;
    prog->code[prog->n_code++] = (inst){op, arg, x, y};
    return true;
}

static uint32_t here(const program *prog) { return (uint32_t)prog->n_code; }

/* Appends the code for node n. SPLIT's first branch is the preferred one,
 * which makes alternation ordered and quantifiers greedy. */
static bool gen(program *prog, const node *nodes, int32_t n) {
    const node *nd = &nodes[n];
    switch (nd->kind) {
    case NODE_CHAR: return emit(prog, nd->folded ? OP_CHAR_FOLDED : OP_CHAR, nd->value, 0, 0);
    case NODE_CLASS: return emit(prog, OP_CLASS, nd->value, 0, 0);
    case NODE_LINE_END: return emit(prog, OP_LINE_END, 0, 0, 0);
    case NODE_NOT_AHEAD: return emit(prog, OP_NOT_AHEAD, nd->value, 0, 0);
    case NODE_CAT:
        for (int32_t c = nd->first; c >= 0; c = nodes[c].next)
            if (!gen(prog, nodes, c)) return false;
        return true;
    case NODE_ALT: {
        /* Each JMP to the end is chained through its x until patched. */
        uint32_t pending = UINT32_MAX;
        for (int32_t c = nd->first; c >= 0; c = nodes[c].next) {
            uint32_t split = here(prog);
            bool last = nodes[c].next < 0;
            if (!last && !emit(prog, OP_SPLIT, 0, split + 1, 0)) return false;
            if (!gen(prog, nodes, c)) return false;
            if (!last) {
                if (!emit(prog, OP_JMP, 0, pending, 0)) return false;
                pending = here(prog) - 1;
                prog->code[split].y = here(prog);
            }
        }
        while (pending != UINT32_MAX) {
            uint32_t next = prog->code[pending].x;
            prog->code[pending].x = here(prog);
            pending = next;
        }
        return true;
    }
    case NODE_REPEAT: {
        for (int32_t i = 0; i < nd->min; i++)
            if (!gen(prog, nodes, nd->first)) return false;
        if (nd->max < 0) {
            uint32_t loop = here(prog);
            if (!emit(prog, OP_SPLIT, 0, loop + 1, 0)) return false;
            if (!gen(prog, nodes, nd->first)) return false;
            if (!emit(prog, OP_JMP, 0, loop, 0)) return false;
            prog->code[loop].y = here(prog);
            return true;
        }
        /* x{0,k} as nested optionals (x(x(x)?)?)?: every SPLIT exits to
         * the end. The exits are chained through y until patched. */
        uint32_t pending = UINT32_MAX;
        for (int32_t i = nd->min; i < nd->max; i++) {
            uint32_t split = here(prog);
            if (!emit(prog, OP_SPLIT, 0, split + 1, pending)) return false;
            pending = split;
            if (!gen(prog, nodes, nd->first)) return false;
        }
        while (pending != UINT32_MAX) {
            uint32_t next = prog->code[pending].y;
            prog->code[pending].y = here(prog);
            pending = next;
        }
        return true;
    }
    }
    return false;
}

/* Fills prog->start_ascii from the instructions reachable from the start
 * without consuming anything. An assertion or a MATCH there could let a
 * match begin anywhere, so then every character is allowed. */
static bool find_start_chars(program *prog) {
    uint32_t *stack = nuri_malloc_array(2 * prog->n_code + 1, sizeof *stack);
    bool *seen = nuri_calloc_array(prog->n_code, sizeof *seen);
    bool ok = stack && seen;
    uint64_t bits[2] = {0, 0};
    size_t sp = 0;
    if (ok) stack[sp++] = 0;
    while (ok && sp > 0) {
        uint32_t pc = stack[--sp];
        if (seen[pc]) continue;
        seen[pc] = true;
        const inst *in = &prog->code[pc];
        switch (in->op) {
        case OP_JMP: stack[sp++] = in->x; break;
        case OP_SPLIT:
            stack[sp++] = in->y;
            stack[sp++] = in->x;
            break;
        case OP_CHAR:
            if (in->arg < 128) bits[in->arg >> 6] |= 1ull << (in->arg & 63);
            break;
        case OP_CHAR_FOLDED:
            for (uint32_t c = 0; c < 128; c++)
                if (nuri_unicode_casefold(c) == in->arg) bits[c >> 6] |= 1ull << (c & 63);
            break;
        case OP_CLASS:
            bits[0] |= prog->classes[in->arg].ascii[0];
            bits[1] |= prog->classes[in->arg].ascii[1];
            break;
        default: /* assertions, MATCH */
            bits[0] = bits[1] = ~0ull;
            break;
        }
    }
    prog->start_ascii[0] = bits[0];
    prog->start_ascii[1] = bits[1];
    free(stack);
    free(seen);
    return ok;
}

/* Compiles pattern into prog. On failure fills err, naming the pattern. */
static nuri_status compile_pattern(const char *pattern, program *prog, nuri_error *err) {
    memset(prog, 0, sizeof *prog);
    parser p = {.pat = pattern, .len = strlen(pattern), .prog = prog};
    int32_t root = parse_alt(&p, false);
    if (root >= 0 && !at_end(&p)) root = parse_fail(&p, "unbalanced )");
    bool ok = root >= 0 && gen(prog, p.nodes, root) && emit(prog, OP_MATCH, 0, 0, 0);
    if (root >= 0 && !ok) p.out_of_memory = true;
    free(p.nodes);
    if (!ok) {
        nuri_status st = p.out_of_memory ? NURI_ERR_NOMEM : NURI_ERR_UNSUPPORTED;
        nuri_fail(err, st, "pre-tokenizer pattern \"%.60s\": %s at offset %zu", pattern,
                  p.error ? p.error : "out of memory", p.pos);
        program_free(prog);
        return st;
    }
    for (size_t i = 0; i < prog->n_classes; i++) class_finish(&prog->classes[i]);
    if (!find_start_chars(prog)) {
        program_free(prog);
        return nuri_fail(err, NURI_ERR_NOMEM, "pre-tokenizer pattern: out of memory");
    }
    return NURI_OK;
}

/* ---- Regex: matching ---- */

/* One decoded character of the text; at the end of the text, len == 0. */
typedef struct {
    uint32_t cp;
    unsigned flags; /* left 0 for ASCII, which classes test by bitmap */
    size_t len;
} text_char;

static text_char char_at(const char *text, size_t pos, size_t end) {
    text_char c = {NURI_UTF8_INVALID, 0, 0};
    if (pos >= end) return c;
    unsigned char b = (unsigned char)text[pos];
    if (b < 0x80) { /* most text is ASCII: no decoding, no table lookup */
        c.cp = b;
        c.len = 1;
        return c;
    }
    c.cp = nuri_utf8_decode(text + pos, end - pos, &c.len);
    c.flags = nuri_unicode_flags(c.cp);
    return c;
}

typedef struct {
    uint32_t pc;
    size_t start; /* where this thread's match began */
} thread;

typedef struct {
    thread *threads;
    size_t n;
} thread_list;

/* Scratch space for one search, sized by the program: each program counter
 * is in a list at most once per step (marks[pc] == the list's generation). */
typedef struct {
    thread_list lists[2];
    uint32_t *marks;
    uint32_t *stack;
    uint32_t generation;
} vm;

static void vm_free(vm *m) {
    free(m->lists[0].threads);
    free(m->lists[1].threads);
    free(m->marks);
    free(m->stack);
    memset(m, 0, sizeof *m);
}

static bool vm_init(vm *m, size_t n_code) {
    memset(m, 0, sizeof *m);
    m->lists[0].threads = nuri_malloc_array(n_code, sizeof(thread));
    m->lists[1].threads = nuri_malloc_array(n_code, sizeof(thread));
    m->marks = nuri_calloc_array(n_code, sizeof(uint32_t));
    m->stack = nuri_malloc_array(2 * n_code + 1, sizeof(uint32_t));
    if (!m->lists[0].threads || !m->lists[1].threads || !m->marks || !m->stack) {
        vm_free(m);
        return false;
    }
    return true;
}

static void vm_new_generation(vm *m, size_t n_code) {
    if (++m->generation == 0) { /* wrapped: old marks could collide */
        memset(m->marks, 0, n_code * sizeof *m->marks);
        m->generation = 1;
    }
}

/* Adds the thread at pc to list, following jumps, splits (first branch
 * first, so list order stays priority order) and assertions, which are
 * checked at pos, where next is the character that follows. Only
 * consuming instructions and MATCH enter the list. */
static void add_thread(vm *m, const program *prog, thread_list *list, uint32_t pc, size_t start,
                       size_t pos, size_t end, const char *text, const text_char *next) {
    size_t sp = 0;
    m->stack[sp++] = pc;
    while (sp > 0) {
        pc = m->stack[--sp];
        if (m->marks[pc] == m->generation) continue;
        m->marks[pc] = m->generation;
        const inst *in = &prog->code[pc];
        switch (in->op) {
        case OP_JMP:
            m->stack[sp++] = in->x;
            break;
        case OP_SPLIT:
            /* Pushed in reverse so x is explored first. Entries are pushed
             * only by an instruction just marked, at most two each, so the
             * stack holds at most 2 * n_code + 1. */
            m->stack[sp++] = in->y;
            m->stack[sp++] = in->x;
            break;
        case OP_LINE_END:
            if (pos >= end || text[pos] == '\n') m->stack[sp++] = pc + 1;
            break;
        case OP_NOT_AHEAD:
            if (next->len == 0 || !class_matches(&prog->classes[in->arg], next->cp, next->flags))
                m->stack[sp++] = pc + 1;
            break;
        default:
            list->threads[list->n++] = (thread){pc, start};
            break;
        }
    }
}

/* Whether text[pos] is an ASCII character no match of prog begins with. */
static inline bool cannot_start(const program *prog, const char *text, size_t pos, size_t end) {
    if (pos >= end) return false;
    unsigned char b = (unsigned char)text[pos];
    return b < 0x80 && !((prog->start_ascii[b >> 6] >> (b & 63)) & 1);
}

/* Finds the leftmost-first non-empty match of prog in text[pos, end), as a
 * backtracking engine would report it, treating end as the end of the text.
 * Returns false when there is none. All start positions run at once, each
 * program counter at most once per character, so the work is
 * O(characters scanned * program size). */
static bool vm_search(vm *m, const program *prog, const char *text, size_t pos, size_t end,
                      size_t *match_start, size_t *match_end) {
    thread_list *cur = &m->lists[0], *nxt = &m->lists[1];
    cur->n = 0;
    vm_new_generation(m, prog->n_code);
    bool matched = false;
    text_char c = char_at(text, pos, end);
    for (;;) {
        if (!matched && cur->n == 0 && cannot_start(prog, text, pos, end)) {
            /* Nothing under way and no match can begin here: skip ahead. */
            do {
                pos++;
            } while (cannot_start(prog, text, pos, end));
            c = char_at(text, pos, end);
        }
        /* A new attempt starting here ranks below every older one. */
        if (!matched) add_thread(m, prog, cur, 0, pos, pos, end, text, &c);
        if (cur->n == 0) break;

        size_t next_pos = pos + c.len;
        text_char next = char_at(text, next_pos, end);
        nxt->n = 0;
        vm_new_generation(m, prog->n_code);
        for (size_t i = 0; i < cur->n; i++) {
            const thread *t = &cur->threads[i];
            const inst *in = &prog->code[t->pc];
            bool consumed = false;
            switch (in->op) {
            case OP_MATCH:
                if (t->start == pos) break; /* empty matches do not split */
                matched = true;
                *match_start = t->start;
                *match_end = pos;
                i = cur->n; /* threads of lower priority lose to this match */
                break;
            case OP_CHAR:
                consumed = c.len > 0 && c.cp == in->arg;
                break;
            case OP_CHAR_FOLDED:
                consumed = c.len > 0 && nuri_unicode_casefold(c.cp) == in->arg;
                break;
            case OP_CLASS:
                consumed = c.len > 0 && class_matches(&prog->classes[in->arg], c.cp, c.flags);
                break;
            }
            if (consumed)
                add_thread(m, prog, nxt, t->pc + 1, t->start, next_pos, end, text, &next);
        }
        if (c.len == 0) break; /* the end of the text was just examined */
        thread_list *swap = cur;
        cur = nxt;
        nxt = swap;
        pos = next_pos;
        c = next;
    }
    return matched;
}

/* ---- Splitting ---- */

typedef struct {
    size_t *ends;
    size_t n, cap;
} piece_list;

static bool push_end(piece_list *l, size_t end) {
    size_t *grown = grow_array(l->ends, &l->cap, l->n + 1, sizeof *l->ends);
    if (!grown) return false;
    l->ends = grown;
    l->ends[l->n++] = end;
    return true;
}

/* Splits each piece of in by prog into out: the matches and the gaps
 * between them, in order. */
static bool split_pieces(vm *m, const program *prog, const char *text, const piece_list *in,
                         piece_list *out) {
    out->n = 0;
    size_t piece_start = 0;
    for (size_t i = 0; i < in->n; i++) {
        size_t piece_end = in->ends[i], pos = piece_start;
        while (pos < piece_end) {
            size_t ms = 0, me = 0;
            if (!vm_search(m, prog, text, pos, piece_end, &ms, &me)) break;
            if (ms > pos && !push_end(out, ms)) return false;
            if (!push_end(out, me)) return false;
            pos = me;
        }
        if (pos < piece_end && !push_end(out, piece_end)) return false;
        piece_start = piece_end;
    }
    return true;
}

/* ---- Compiled pre-tokenizers ---- */

static program g_programs[N_KINDS][MAX_STAGES];
static size_t g_n_stages[N_KINDS];
static nuri_error g_compile_error;
static pthread_once_t g_compile_once = PTHREAD_ONCE_INIT;

/* Compiles every pattern once per process. The patterns are constants, so
 * a failure (a bug, or no memory) is kept and reported by every call. */
static void compile_all(void) {
    g_compile_error.status = NURI_OK;
    for (int k = 0; k < N_KINDS; k++) {
        for (size_t s = 0; s < MAX_STAGES && PRETOK_DEFS[k].patterns[s]; s++) {
            if (compile_pattern(PRETOK_DEFS[k].patterns[s], &g_programs[k][s], &g_compile_error) !=
                NURI_OK)
                return;
            g_n_stages[k] = s + 1;
        }
    }
}

/* ---- Public API ---- */

int nuri_pretok_kind_from_name(const char *name, size_t len) {
    if (!name) return -1;
    for (int k = 0; k < N_KINDS; k++) {
        for (const char *const *n = PRETOK_DEFS[k].names; *n; n++)
            if (strlen(*n) == len && memcmp(*n, name, len) == 0) return k;
    }
    return -1;
}

nuri_status nuri_pretokenize(nuri_pretok_kind kind, const char *text, size_t len,
                             size_t **word_ends, size_t *n_words, nuri_error *err) {
    if (!word_ends || !n_words || (!text && len > 0))
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_pretokenize: NULL argument");
    *word_ends = NULL;
    *n_words = 0;
    if ((int)kind < 0 || (int)kind >= N_KINDS)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "nuri_pretokenize: unknown kind %d", (int)kind);
    if (pthread_once(&g_compile_once, compile_all) != 0)
        return nuri_fail(err, NURI_ERR_NOMEM, "nuri_pretokenize: could not compile the patterns");
    if (g_compile_error.status != NURI_OK) {
        if (err) *err = g_compile_error;
        return g_compile_error.status;
    }
    if (len == 0) return NURI_OK;

    size_t max_code = 0;
    for (size_t s = 0; s < g_n_stages[kind]; s++)
        if (g_programs[kind][s].n_code > max_code) max_code = g_programs[kind][s].n_code;
    vm m;
    if (!vm_init(&m, max_code))
        return nuri_fail(err, NURI_ERR_NOMEM, "nuri_pretokenize: out of memory");

    piece_list a = {0}, b = {0};
    bool ok = push_end(&a, len);
    for (size_t s = 0; ok && s < g_n_stages[kind]; s++) {
        ok = split_pieces(&m, &g_programs[kind][s], text, &a, &b);
        piece_list swap = a;
        a = b;
        b = swap;
    }
    vm_free(&m);
    free(b.ends);
    if (!ok) {
        free(a.ends);
        return nuri_fail(err, NURI_ERR_NOMEM, "nuri_pretokenize: out of memory splitting %zu bytes",
                         len);
    }
    *word_ends = a.ends;
    *n_words = a.n;
    return NURI_OK;
}
