/* jinja_eval.c — runs a parsed template.
 *
 * Scoping follows jinja2: the top level and `if` blocks share one scope;
 * each for-loop iteration, macro call and block body gets a fresh child
 * scope, so a `set` inside them is not seen outside (namespaces are the way
 * out, as in jinja2). A macro's scope hangs off the scope it was defined in
 * and sees that scope's current values when called.
 *
 * Every statement and expression counts against a step budget, loops
 * against an iteration budget, strings and lists against an allocation
 * budget, and macro calls against a depth limit; exceeding any of them ends
 * the render with an error, never a crash. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/jinja.h"
#include "core/util.h"

/* Keeps a function's locals out of its callers' frames (see eval_node). */
#define NOINLINE __attribute__((noinline))

/* ---- State ---------------------------------------------------------------- */

typedef struct jscope jscope;
struct jscope {
    jscope *parent;
    int *keys; /* symbol ids; -1 marks a free slot */
    jv *vals;
    size_t cap, n;
};

/* Nesting depth of every container the template built (see jinja_track).
 * Keys are not referenced: every container that can become an element of a
 * new one is either the caller's data (alive for the whole render) or was
 * recorded when built, so a reused address is always re-recorded first. */
typedef struct {
    const json_t **keys;
    uint16_t *depth;
    size_t cap, n;
} depth_map;

typedef struct {
    json_t *items;
    size_t index, length;
} loop_state;

struct jstate {
    const jtemplate *t;
    nuri_error *err;
    nuri_status status;
    bool failed, raised;
    jbuf *out;
    uint64_t steps, max_steps, loop_steps, alloc_bytes;
    int call_depth, eval_depth;
    json_t *undef_marker;
    struct tm now;
    jv placeholder;
    depth_map depths;
};

bool jinja_fail(jstate *st, nuri_status status, const char *fmt, ...) {
    if (st->failed) return false;
    st->failed = true;
    st->status = status;
    if (st->err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->err->message, sizeof st->err->message, fmt, ap);
        va_end(ap);
        st->err->status = status;
    }
    return false;
}

bool jinja_charge(jstate *st, uint64_t bytes) {
    st->alloc_bytes += bytes;
    if (st->alloc_bytes > JINJA_MAX_ALLOC_BYTES)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED,
                          "template built more than %u MiB of strings and lists",
                          JINJA_MAX_ALLOC_BYTES >> 20);
    return true;
}

json_t *jinja_undef_marker(jstate *st) { return st->undef_marker; }
const struct tm *jinja_now(jstate *st) { return &st->now; }

bool jinja_steps(jstate *st, uint64_t n) {
    st->steps += n;
    if (st->steps > st->max_steps)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "template ran more than %llu steps",
                          (unsigned long long)st->max_steps);
    return true;
}

static bool nomem(jstate *st) {
    return jinja_fail(st, NURI_ERR_NOMEM, "out of memory rendering a template");
}

static bool step(jstate *st) { return jinja_steps(st, 1); }

/* ---- Depth tracking -------------------------------------------------------- */

static size_t ptr_hash(const void *p, size_t cap) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x & (cap - 1);
}

static int depth_lookup(const depth_map *m, const json_t *j) {
    if (!m->cap) return -1;
    for (size_t i = ptr_hash(j, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (!m->keys[i]) return -1;
        if (m->keys[i] == j) return m->depth[i];
    }
}

static bool depth_store(jstate *st, const json_t *j, int depth) {
    depth_map *m = &st->depths;
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        const json_t **keys = calloc(cap, sizeof *keys);
        uint16_t *dep = calloc(cap, sizeof *dep);
        if (!keys || !dep) {
            free(keys);
            free(dep);
            return nomem(st);
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i]) continue;
            size_t k = ptr_hash(m->keys[i], cap);
            while (keys[k]) k = (k + 1) & (cap - 1);
            keys[k] = m->keys[i];
            dep[k] = m->depth[i];
        }
        free(m->keys);
        free(m->depth);
        m->keys = keys;
        m->depth = dep;
        m->cap = cap;
    }
    size_t i = ptr_hash(j, m->cap);
    while (m->keys[i] && m->keys[i] != j) i = (i + 1) & (m->cap - 1);
    if (!m->keys[i]) m->n++;
    m->keys[i] = j;
    m->depth[i] = (uint16_t)depth;
    return true;
}

/* Depth of j (0 for scalars), or -1 after failing. */
static int depth_of(jstate *st, const json_t *j, int walk) {
    if (!json_is_array(j) && !json_is_object(j)) return 0;
    if (j == st->undef_marker) return 0;
    int known = depth_lookup(&st->depths, j);
    if (known >= 0) return known;
    if (walk > JINJA_MAX_DEPTH) {
        jinja_fail(st, NURI_ERR_UNSUPPORTED, "values nested more than %d deep", JINJA_MAX_DEPTH);
        return -1;
    }
    int deepest = 0;
    if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            int d = depth_of(st, json_array_get(j, i), walk + 1);
            if (d < 0) return -1;
            if (d > deepest) deepest = d;
        }
    } else {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            int d = depth_of(st, v, walk + 1);
            if (d < 0) return -1;
            if (d > deepest) deepest = d;
        }
    }
    if (deepest + 1 > JINJA_MAX_DEPTH) {
        jinja_fail(st, NURI_ERR_UNSUPPORTED, "values nested more than %d deep", JINJA_MAX_DEPTH);
        return -1;
    }
    if (!depth_store(st, j, deepest + 1)) return -1;
    return deepest + 1;
}

bool jinja_track(jstate *st, json_t *container) {
    /* Computed from the children, never looked up: an entry under this
     * address may belong to a container that has since been freed. */
    int deepest = 0;
    if (json_is_array(container)) {
        for (size_t k = 0; k < json_array_size(container); k++) {
            int d = depth_of(st, json_array_get(container, k), 1);
            if (d < 0) return false;
            if (d > deepest) deepest = d;
        }
    } else if (json_is_object(container)) {
        const char *key;
        json_t *v;
        json_object_foreach(container, key, v) {
            int d = depth_of(st, v, 1);
            if (d < 0) return false;
            if (d > deepest) deepest = d;
        }
    } else {
        return true;
    }
    if (deepest + 1 > JINJA_MAX_DEPTH)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "values nested more than %d deep", JINJA_MAX_DEPTH);
    return depth_store(st, container, deepest + 1);
}

/* ---- Scopes ---------------------------------------------------------------- */

static jv *scope_find_local(jscope *sc, int sym) {
    if (!sc->cap) return NULL;
    for (size_t i = (size_t)sym * 2654435761u & (sc->cap - 1);; i = (i + 1) & (sc->cap - 1)) {
        if (sc->keys[i] == sym) return &sc->vals[i];
        if (sc->keys[i] < 0) return NULL;
    }
}

static jv *scope_lookup(jscope *sc, int sym) {
    for (; sc; sc = sc->parent) {
        jv *v = scope_find_local(sc, sym);
        if (v) return v;
    }
    return NULL;
}

/* Binds sym to v in sc (taking v's reference). */
static bool scope_set(jstate *st, jscope *sc, int sym, jv v) {
    jv *slot = scope_find_local(sc, sym);
    if (slot) {
        jv_drop(slot);
        *slot = v;
        return true;
    }
    if ((sc->n + 1) * 2 > sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 8;
        int *keys = malloc(cap * sizeof *keys);
        jv *vals = malloc(cap * sizeof *vals);
        if (!keys || !vals) {
            free(keys);
            free(vals);
            jv_drop(&v);
            return nomem(st);
        }
        for (size_t i = 0; i < cap; i++) keys[i] = -1;
        for (size_t i = 0; i < sc->cap; i++) {
            if (sc->keys[i] < 0) continue;
            size_t k = (size_t)sc->keys[i] * 2654435761u & (cap - 1);
            while (keys[k] >= 0) k = (k + 1) & (cap - 1);
            keys[k] = sc->keys[i];
            vals[k] = sc->vals[i];
        }
        free(sc->keys);
        free(sc->vals);
        sc->keys = keys;
        sc->vals = vals;
        sc->cap = cap;
    }
    size_t i = (size_t)sym * 2654435761u & (sc->cap - 1);
    while (sc->keys[i] >= 0) i = (i + 1) & (sc->cap - 1);
    sc->keys[i] = sym;
    sc->vals[i] = v;
    sc->n++;
    return true;
}

static void scope_clear(jscope *sc) {
    for (size_t i = 0; i < sc->cap; i++) {
        if (sc->keys[i] >= 0) {
            jv_drop(&sc->vals[i]);
            sc->keys[i] = -1;
        }
    }
    sc->n = 0;
}

static void scope_free(jscope *sc) {
    scope_clear(sc);
    free(sc->keys);
    free(sc->vals);
    sc->keys = NULL;
    sc->vals = NULL;
    sc->cap = 0;
}

/* ---- Expressions ------------------------------------------------------------ */

static bool eval(jstate *st, jscope *sc, const jexpr *e, jv *out);

static bool fail_undefined(jstate *st, const jv *v) {
    char msg[400];
    jv_undef_message(v, msg, sizeof msg);
    return jinja_fail(st, NURI_ERR_FORMAT, "%s", msg);
}

/* jinja2's object_type_repr: "dict object", "None", ... */
static const char *object_desc(const jv *v) {
    if (v->kind == JV_DATA && json_is_null(v->j)) return "None";
    if (v->kind == JV_DATA && (v->flags & JV_GEN)) return "generator object";
    if (v->kind == JV_DATA) {
        switch (json_typeof(v->j)) {
        case JSON_OBJECT: return "dict object";
        case JSON_ARRAY: return "list object";
        case JSON_STRING: return "str object";
        case JSON_INTEGER: return "int object";
        case JSON_REAL: return "float object";
        default: return "bool object";
        }
    }
    if (v->kind == JV_NS) return "jinja2.utils.Namespace object";
    if (v->kind == JV_MACRO) return "jinja2.runtime.Macro object";
    if (v->kind == JV_LOOP) return "jinja2.runtime.LoopContext object";
    return "builtin_function_or_method object";
}

/* Special attributes every Python object has (and the sandbox refuses). */
static bool is_special_attr(const char *name) {
    static const char *const names[] = {
        "__class__", "__doc__", "__init__", "__new__", "__repr__", "__str__", "__hash__", "__eq__",
        "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__getattribute__", "__setattr__",
        "__delattr__", "__dir__", "__format__", "__reduce__", "__reduce_ex__", "__sizeof__",
        "__subclasshook__", "__init_subclass__", "__getstate__", "__len__", "__getitem__",
        "__contains__", "__iter__", "__dict__", "__module__",
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(names[i], name)) return true;
    return false;
}

static bool loop_attr(jstate *st, const jv *obj, const char *name, jv *out) {
    const loop_state *ls = obj->p;
    size_t i = ls->index, n = ls->length;
    if (!strcmp(name, "index")) return jv_make_int(st, (int64_t)i + 1, out);
    if (!strcmp(name, "index0")) return jv_make_int(st, (int64_t)i, out);
    if (!strcmp(name, "revindex")) return jv_make_int(st, (int64_t)(n - i), out);
    if (!strcmp(name, "revindex0")) return jv_make_int(st, (int64_t)(n - i - 1), out);
    if (!strcmp(name, "first")) return *out = jv_bool(i == 0), true;
    if (!strcmp(name, "last")) return *out = jv_bool(i + 1 == n), true;
    if (!strcmp(name, "length")) return jv_make_int(st, (int64_t)n, out);
    if (!strcmp(name, "depth")) return jv_make_int(st, 1, out);
    if (!strcmp(name, "depth0")) return jv_make_int(st, 0, out);
    if (!strcmp(name, "previtem")) {
        if (i == 0) return jv_undef_msg(st, out, "there is no previous item");
        *out = jv_from_elem(st, json_array_get(ls->items, i - 1));
        return true;
    }
    if (!strcmp(name, "nextitem")) {
        if (i + 1 >= n) return jv_undef_msg(st, out, "there is no next item");
        *out = jv_from_elem(st, json_array_get(ls->items, i + 1));
        return true;
    }
    if (!strcmp(name, "cycle")) {
        *out = *obj;
        out->kind = JV_LOOP;
        out->id = 1; /* marks the bound loop.cycle method */
        return true;
    }
    return jv_undef_msg(st, out, "'%s' has no attribute '%s'", object_desc(obj), name);
}

/* obj.name with jinja2's sandboxed lookup order: a real attribute (for data
 * that means a method of str/dict/list), else the item, else undefined. */
bool jinja_getattr(jstate *st, const jv *obj, const char *name, size_t name_len, jv *out) {
    *out = jv_undef();
    switch ((jv_kind)obj->kind) {
    case JV_UNDEF:
        /* Python's special attributes of jinja2's Undefined object exist and
         * the sandbox hides them; anything else fails. */
        if (!(obj->flags & JV_UNSAFE) && is_special_attr(name)) {
            if (!jv_undef_msg(st, out, "access to attribute '%s' of 'Undefined' object is unsafe.", name))
                return false;
            out->flags |= JV_UNSAFE;
            return true;
        }
        return fail_undefined(st, obj);
    case JV_LOOP:
        if (obj->id) break;
        return loop_attr(st, obj, name, out);
    case JV_NS: {
        json_t *v = json_object_getn(obj->j, name, name_len);
        if (v) {
            *out = jv_from_elem(st, v);
            return true;
        }
        break;
    }
    case JV_DATA: {
        if (obj->flags & JV_GEN) break;
        bool unsafe = false;
        int m = (name[0] == '_') ? 0 : jinja_method_find(obj->j, name, &unsafe);
        if (unsafe) {
            /* A method that would modify data: the immutable sandbox hides it. */
            if (!jv_undef_msg(st, out, "access to attribute '%s' of '%s' object is unsafe.", name,
                              json_type_name(obj->j)))
                return false;
            out->flags |= JV_UNSAFE;
            return true;
        }
        if (m > 0) {
            *out = jv_undef();
            out->kind = JV_METHOD;
            out->id = (uint16_t)m;
            out->flags = obj->flags & JV_SAFE;
            out->j = json_incref(obj->j);
            return true;
        }
        if (json_is_object(obj->j)) {
            json_t *v = json_object_getn(obj->j, name, name_len);
            if (v) {
                *out = jv_from_elem(st, v);
                return true;
            }
        }
        if (is_special_attr(name)) {
            /* Python's special attributes exist but the sandbox hides them:
             * an undefined that refuses any further use. */
            if (!jv_undef_msg(st, out, "access to attribute '%s' of '%s' object is unsafe.", name,
                              json_type_name(obj->j)))
                return false;
            out->flags |= JV_UNSAFE;
            return true;
        }
        break;
    }
    default: break;
    }
    return jv_undef_msg(st, out, "'%s' has no attribute '%s'", object_desc(obj), name);
}

static bool normalize_index(int64_t idx, size_t n, size_t *out) {
    if (idx < 0) idx += (int64_t)n;
    if (idx < 0 || (uint64_t)idx >= n) return false;
    *out = (size_t)idx;
    return true;
}

bool jinja_getitem(jstate *st, const jv *obj, const jv *key, jv *out) {
    *out = jv_undef();
    if (obj->kind == JV_UNDEF) return fail_undefined(st, obj);
    if (key->kind == JV_UNDEF) /* jinja2 looks the Undefined object up, in vain */
        return jv_undef_msg(st, out, "%s has no element Undefined", object_desc(obj));
    if (jv_is_str(key)) {
        if (obj->kind == JV_DATA && json_is_object(obj->j) && !(obj->flags & JV_GEN)) {
            json_t *v = json_object_getn(obj->j, jv_str(key), jv_strlen(key));
            if (v) {
                *out = jv_from_elem(st, v);
                return true;
            }
        }
        /* obj['name'] falls back to obj.name, as in jinja2. */
        if (strlen(jv_str(key)) == jv_strlen(key)) return jinja_getattr(st, obj, jv_str(key), jv_strlen(key), out);
        return jv_undef_msg(st, out, "'%s' has no attribute", object_desc(obj));
    }
    if (obj->kind == JV_DATA && !(obj->flags & JV_GEN) && jv_is_int(key)) {
        size_t i;
        if (json_is_array(obj->j)) {
            if (normalize_index(jv_int(key), json_array_size(obj->j), &i)) {
                *out = jv_from_elem(st, json_array_get(obj->j, i));
                return true;
            }
        } else if (json_is_string(obj->j)) {
            const char *s = json_string_value(obj->j);
            size_t n = json_string_length(obj->j);
            if (!jinja_steps(st, n / 32)) return false;
            if (normalize_index(jv_int(key), utf8_count(s, n), &i)) {
                size_t a = utf8_offset(s, n, i), b = utf8_offset(s, n, i + 1);
                return jv_make_str(st, s + a, b - a, out);
            }
        }
    }
    if (obj->kind == JV_DATA && (obj->flags & JV_GEN))
        return jinja_fail(st, NURI_ERR_FORMAT, "'generator' object is not subscriptable");
    jbuf kb = {0};
    bool ok = jv_repr(st, key, &kb);
    if (ok) ok = jv_undef_msg(st, out, "%s has no element %s", object_desc(obj), kb.data ? kb.data : "");
    jbuf_free(&kb);
    return ok;
}

/* Hands a freshly built container to *out once its depth is recorded;
 * frees it (leaving *out undefined) when that fails. */
static bool adopt(jstate *st, json_t *container, jv *out) {
    if (!jinja_track(st, container)) {
        json_decref(container);
        return false;
    }
    *out = jv_data(container);
    return true;
}

/* Python's slice.indices(): clamps start/stop for step. */
static bool slice_bounds(jstate *st, const jv *start, const jv *stop, const jv *stepv, size_t n,
                         int64_t *a, int64_t *b, int64_t *s) {
    int64_t len = (int64_t)n;
    *s = 1;
    if (stepv && !(stepv->kind == JV_DATA && json_is_null(stepv->j))) {
        if (!jv_is_int(stepv)) return jinja_fail(st, NURI_ERR_FORMAT, "slice indices must be integers or None");
        *s = jv_int(stepv);
        if (*s == 0) return jinja_fail(st, NURI_ERR_FORMAT, "slice step cannot be zero");
    }
    const jv *bounds[2] = {start, stop};
    int64_t *outs[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        const jv *v = bounds[k];
        if (!v || (v->kind == JV_DATA && json_is_null(v->j))) {
            if (k == 0) *outs[k] = *s > 0 ? 0 : len - 1;
            else *outs[k] = *s > 0 ? len : -1;
            continue;
        }
        if (!jv_is_int(v)) return jinja_fail(st, NURI_ERR_FORMAT, "slice indices must be integers or None");
        int64_t x = jv_int(v);
        if (x < 0) {
            x += len;
            if (x < 0) x = *s > 0 ? 0 : -1;
        } else if (x >= len) {
            x = *s > 0 ? len : len - 1;
        }
        *outs[k] = x;
    }
    return true;
}

static NOINLINE bool do_slice(jstate *st, const jv *obj, const jv *start, const jv *stop, const jv *stepv, jv *out) {
    *out = jv_undef();
    if (obj->kind == JV_UNDEF) return fail_undefined(st, obj);
    bool is_str = jv_is_str(obj);
    if (!(is_str || (jv_is_list(obj) && !(obj->flags & JV_GEN))))
        /* jinja2's sandboxed getitem turns the TypeError into undefined. */
        return jv_undef_msg(st, out, "%s has no element slice", object_desc(obj));
    const char *s = is_str ? jv_str(obj) : NULL;
    size_t slen = is_str ? jv_strlen(obj) : 0;
    if (!jinja_steps(st, slen / 32 + (is_str ? 0 : json_array_size(obj->j)))) return false;
    size_t n = is_str ? utf8_count(s, slen) : json_array_size(obj->j);
    int64_t a, b, stp;
    if (!slice_bounds(st, start, stop, stepv, n, &a, &b, &stp)) return false;
    if (is_str) {
        jbuf buf = {0};
        bool ok = true;
        if (stp == 1) {
            if (a < b) {
                size_t x = utf8_offset(s, slen, (size_t)a), y = utf8_offset(s, slen, (size_t)b);
                ok = jv_make_str(st, s + x, y - x, out);
            } else {
                ok = jv_make_str(st, "", 0, out);
            }
            return ok;
        }
        /* General step: collect code point offsets first. */
        size_t *offs = nuri_malloc_array(n + 1, sizeof *offs);
        if (!offs) return nomem(st);
        size_t pos = 0;
        for (size_t i = 0; i < n; i++) {
            offs[i] = pos;
            utf8_next(s, slen, &pos);
        }
        offs[n] = slen;
        for (int64_t i = a; ok && (stp > 0 ? i < b : i > b); i += stp)
            ok = jbuf_put(st, &buf, s + offs[i], offs[i + 1] - offs[i]);
        free(offs);
        if (ok) ok = jv_make_str(st, buf.data, buf.len, out);
        jbuf_free(&buf);
        return ok;
    }
    json_t *arr = json_array();
    if (!arr) return nomem(st);
    for (int64_t i = a; stp > 0 ? i < b : i > b; i += stp) {
        if (!jinja_charge(st, JINJA_ELEM_COST) || json_array_append(arr, json_array_get(obj->j, (size_t)i))) {
            json_decref(arr);
            return nomem(st);
        }
    }
    return adopt(st, arr, out);
}

/* Builds a list/tuple/dict literal. */
static NOINLINE bool eval_container(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    bool is_dict = e->kind == EX_DICT;
    json_t *c = is_dict ? json_object() : json_array();
    if (!c) return nomem(st);
    for (size_t i = 0; i < e->n_items; i += is_dict ? 2 : 1) {
        jv v, k = jv_undef();
        if (is_dict) {
            if (!eval(st, sc, e->items[i], &k)) goto fail;
            if (!jv_is_str(&k)) {
                jv_drop(&k);
                jinja_fail(st, NURI_ERR_UNSUPPORTED, "dict keys must be strings");
                goto fail;
            }
        }
        if (!eval(st, sc, e->items[i + (is_dict ? 1 : 0)], &v)) {
            jv_drop(&k);
            goto fail;
        }
        json_t *j = jv_to_json(st, &v);
        jv_drop(&v);
        if (!j || !jinja_charge(st, 16)) {
            json_decref(j);
            jv_drop(&k);
            goto fail;
        }
        int rc = is_dict ? json_object_setn_new_nocheck(c, jv_str(&k), jv_strlen(&k), j)
                         : json_array_append_new(c, j);
        jv_drop(&k);
        if (rc) {
            nomem(st);
            goto fail;
        }
    }
    return adopt(st, c, out);
fail:
    json_decref(c);
    return false;
}

/* HTML escaping of Markup's `+` (markupsafe.escape). */
static bool html_escape(jstate *st, const char *s, size_t n, jbuf *out) {
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '\'': rep = "&#39;"; break;
        case '"': rep = "&#34;"; break;
        default: run++; continue;
        }
        if (!jbuf_put(st, out, s + i - run, run) || !jbuf_puts(st, out, rep)) return false;
        run = 0;
    }
    return jbuf_put(st, out, s + n - run, run);
}

static bool int_result(jstate *st, bool ok, int64_t v, jv *out) {
    if (!ok) return jinja_fail(st, NURI_ERR_UNSUPPORTED, "integer overflow (nuri's integers are 64-bit)");
    return jv_make_int(st, v, out);
}

static bool py_floordiv(jstate *st, int64_t a, int64_t b, int64_t *q) {
    if (b == 0) return jinja_fail(st, NURI_ERR_FORMAT, "integer division or modulo by zero");
    if (a == INT64_MIN && b == -1) return jinja_fail(st, NURI_ERR_UNSUPPORTED, "integer overflow");
    int64_t d = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) d--;
    *q = d;
    return true;
}

static bool repeat_value(jstate *st, const jv *seq, int64_t times, jv *out) {
    if (times < 0) times = 0;
    if (jv_is_str(seq)) {
        size_t n = jv_strlen(seq);
        if (n && (uint64_t)times > JINJA_MAX_OUTPUT / n)
            return jinja_fail(st, NURI_ERR_UNSUPPORTED, "string repetition too large");
        jbuf b = {0};
        bool ok = true;
        for (int64_t i = 0; ok && i < times; i++) ok = jbuf_put(st, &b, jv_str(seq), n);
        if (ok) ok = jv_make_str(st, b.data, b.len, out);
        jbuf_free(&b);
        return ok;
    }
    size_t n = json_array_size(seq->j);
    if (n && (uint64_t)times > (JINJA_MAX_ALLOC_BYTES / JINJA_ELEM_COST) / n)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "list repetition too large");
    json_t *arr = json_array();
    if (!arr) return nomem(st);
    for (int64_t i = 0; i < times; i++) {
        if (!jinja_charge(st, JINJA_ELEM_COST * n) || json_array_extend(arr, seq->j)) {
            json_decref(arr);
            return nomem(st);
        }
    }
    return adopt(st, arr, out);
}

static NOINLINE bool arith(jstate *st, jop op, const jv *a, const jv *b, jv *out) {
    static const char *const names[] = {[OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/",
                                        [OP_FLOORDIV] = "//", [OP_MOD] = "%", [OP_POW] = "** or pow()"};
    *out = jv_undef();
    if (op == OP_TILDE) {
        jbuf buf = {0};
        bool ok = jv_print(st, a, &buf) && jv_print(st, b, &buf) && jv_make_str(st, buf.data, buf.len, out);
        jbuf_free(&buf);
        return ok;
    }
    if (a->kind == JV_UNDEF) return fail_undefined(st, a);
    if (b->kind == JV_UNDEF) return fail_undefined(st, b);
    bool gen = (a->flags | b->flags) & JV_GEN;
    if (!gen && jv_is_num(a) && jv_is_num(b)) {
        bool ints = jv_is_int(a) && jv_is_int(b);
        if (ints) {
            int64_t x = jv_int(a), y = jv_int(b), r = 0;
            switch (op) {
            case OP_ADD: {
                bool fits = !__builtin_add_overflow(x, y, &r);
                return int_result(st, fits, r, out);
            }
            case OP_SUB: {
                bool fits = !__builtin_sub_overflow(x, y, &r);
                return int_result(st, fits, r, out);
            }
            case OP_MUL: {
                bool fits = !__builtin_mul_overflow(x, y, &r);
                return int_result(st, fits, r, out);
            }
            case OP_DIV:
                if (y == 0) return jinja_fail(st, NURI_ERR_FORMAT, "division by zero");
                return jv_make_real(st, (double)x / (double)y, out);
            case OP_FLOORDIV: return py_floordiv(st, x, y, &r) && jv_make_int(st, r, out);
            case OP_MOD: {
                if (!py_floordiv(st, x, y, &r)) return false;
                return jv_make_int(st, x - r * y, out);
            }
            case OP_POW: {
                if (y < 0) return jv_make_real(st, pow((double)x, (double)y), out);
                int64_t acc = 1, base = x;
                bool ok = true;
                for (int64_t e = y; e > 0 && ok; e >>= 1) {
                    if (e & 1) ok = !__builtin_mul_overflow(acc, base, &acc);
                    if (ok && e > 1) ok = !__builtin_mul_overflow(base, base, &base);
                    if (!ok && (x == 0 || x == 1 || x == -1)) ok = true; /* cannot overflow */
                }
                return int_result(st, ok, acc, out);
            }
            default: break;
            }
        } else {
            double x = jv_num(a), y = jv_num(b);
            switch (op) {
            case OP_ADD: return jv_make_real(st, x + y, out);
            case OP_SUB: return jv_make_real(st, x - y, out);
            case OP_MUL: return jv_make_real(st, x * y, out);
            case OP_DIV:
                if (y == 0) return jinja_fail(st, NURI_ERR_FORMAT, "float division by zero");
                return jv_make_real(st, x / y, out);
            case OP_FLOORDIV:
                if (y == 0) return jinja_fail(st, NURI_ERR_FORMAT, "float floor division by zero");
                return jv_make_real(st, floor(x / y), out);
            case OP_MOD: {
                if (y == 0) return jinja_fail(st, NURI_ERR_FORMAT, "float modulo");
                double r = fmod(x, y);
                if (r != 0 && ((r < 0) != (y < 0))) r += y;
                return jv_make_real(st, r, out);
            }
            case OP_POW:
                if (x == 0 && y < 0)
                    return jinja_fail(st, NURI_ERR_FORMAT, "0.0 cannot be raised to a negative power");
                return jv_make_real(st, pow(x, y), out);
            default: break;
            }
        }
    }
    if (!gen && op == OP_ADD && jv_is_str(a) && jv_is_str(b)) {
        bool safe = (a->flags | b->flags) & JV_SAFE;
        jbuf buf = {0};
        bool ok;
        if (safe) {
            /* Markup + str escapes the plain side (markupsafe semantics). */
            ok = ((a->flags & JV_SAFE) ? jbuf_put(st, &buf, jv_str(a), jv_strlen(a))
                                        : html_escape(st, jv_str(a), jv_strlen(a), &buf)) &&
                 ((b->flags & JV_SAFE) ? jbuf_put(st, &buf, jv_str(b), jv_strlen(b))
                                        : html_escape(st, jv_str(b), jv_strlen(b), &buf));
        } else {
            ok = jbuf_put(st, &buf, jv_str(a), jv_strlen(a)) && jbuf_put(st, &buf, jv_str(b), jv_strlen(b));
        }
        if (ok) ok = jv_make_str(st, buf.data ? buf.data : "", buf.len, out);
        jbuf_free(&buf);
        if (ok && safe) out->flags |= JV_SAFE;
        return ok;
    }
    if (!gen && op == OP_ADD && jv_is_list(a) && jv_is_list(b)) {
        json_t *arr = json_array();
        if (!arr) return nomem(st);
        if (!jinja_charge(st, JINJA_ELEM_COST * (json_array_size(a->j) + json_array_size(b->j))) ||
            json_array_extend(arr, a->j) || json_array_extend(arr, b->j)) {
            json_decref(arr);
            return nomem(st);
        }
        return adopt(st, arr, out);
    }
    if (!gen && op == OP_MUL) {
        if ((jv_is_str(a) || jv_is_list(a)) && jv_is_int(b)) return repeat_value(st, a, jv_int(b), out);
        if ((jv_is_str(b) || jv_is_list(b)) && jv_is_int(a)) return repeat_value(st, b, jv_int(a), out);
    }
    if (op == OP_ADD && !gen && (jv_is_str(a) || jv_is_list(a)))
        return jinja_fail(st, NURI_ERR_FORMAT, "can only concatenate %s (not \"%s\") to %s",
                          jv_type_name(a), jv_type_name(b), jv_type_name(a));
    if (op == OP_MOD && jv_is_str(a))
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "string formatting with %% is not supported");
    return jinja_fail(st, NURI_ERR_FORMAT, "unsupported operand type(s) for %s: '%s' and '%s'", names[op],
                      jv_type_name(a), jv_type_name(b));
}

static bool contains(jstate *st, const jv *needle, const jv *hay, bool *out) {
    *out = false;
    if (hay->kind == JV_UNDEF) return true; /* iterating undefined yields nothing */
    if (hay->kind != JV_DATA)
        return jinja_fail(st, NURI_ERR_FORMAT, "argument of type '%s' is not iterable", jv_type_name(hay));
    if (json_is_string(hay->j)) {
        if (!jv_is_str(needle))
            return jinja_fail(st, NURI_ERR_FORMAT, "'in <string>' requires string as left operand, not %s",
                              jv_type_name(needle));
        size_t hn = jv_strlen(hay), nn = jv_strlen(needle);
        if (!jinja_steps(st, hn / 32)) return false;
        *out = nn == 0 || memmem(jv_str(hay), hn, jv_str(needle), nn) != NULL;
        return true;
    }
    if (json_is_array(hay->j)) {
        if (!jinja_steps(st, json_array_size(hay->j))) return false;
        for (size_t i = 0; i < json_array_size(hay->j); i++) {
            jv item = jv_from_elem(st, json_array_get(hay->j, i));
            bool eq = jv_equal(st, &item, needle);
            jv_drop(&item);
            if (eq) return *out = true, true;
        }
        return true;
    }
    if (json_is_object(hay->j)) {
        if (jv_is_str(needle)) *out = json_object_getn(hay->j, jv_str(needle), jv_strlen(needle)) != NULL;
        return true;
    }
    return jinja_fail(st, NURI_ERR_FORMAT, "argument of type '%s' is not iterable", jv_type_name(hay));
}

static const char *cmp_name(jop op) {
    switch (op) {
    case OP_LT: return "<";
    case OP_LE: return "<=";
    case OP_GT: return ">";
    default: return ">=";
    }
}

static NOINLINE bool compare_op(jstate *st, jop op, const jv *a, const jv *b, bool *res) {
    switch (op) {
    case OP_EQ: *res = jv_equal(st, a, b); return true;
    case OP_NE: *res = !jv_equal(st, a, b); return true;
    case OP_IN: return contains(st, a, b, res);
    case OP_NOTIN:
        if (!contains(st, a, b, res)) return false;
        *res = !*res;
        return true;
    default: {
        int c;
        if (!jv_compare(st, a, b, cmp_name(op), &c)) return false;
        *res = op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
        return true;
    }
    }
}

/* Evaluated call arguments. */
typedef struct {
    jv *pos;
    size_t n_pos;
    const char **kw_names;
    jv *kw_vals;
    size_t n_kw;
} call_args;

static void args_free(call_args *a) {
    for (size_t i = 0; i < a->n_pos; i++) jv_drop(&a->pos[i]);
    for (size_t i = 0; i < a->n_kw; i++) jv_drop(&a->kw_vals[i]);
    free(a->pos);
    free(a->kw_vals);
    free(a->kw_names);
    memset(a, 0, sizeof *a);
}

/* Evaluates args, leaving room for `extra_kw` more keyword arguments. */
static bool eval_args(jstate *st, jscope *sc, const jargs *in, size_t extra_kw, call_args *out) {
    memset(out, 0, sizeof *out);
    out->pos = calloc(in->n_pos + 1, sizeof *out->pos);
    out->kw_vals = calloc(in->n_kw + extra_kw + 1, sizeof *out->kw_vals);
    out->kw_names = calloc(in->n_kw + extra_kw + 1, sizeof *out->kw_names);
    if (!out->pos || !out->kw_vals || !out->kw_names) {
        args_free(out);
        return nomem(st);
    }
    for (size_t i = 0; i < in->n_pos; i++) {
        if (!eval(st, sc, in->pos[i], &out->pos[i])) {
            args_free(out);
            return false;
        }
        out->n_pos++;
    }
    for (size_t i = 0; i < in->n_kw; i++) {
        if (!eval(st, sc, in->kw_vals[i], &out->kw_vals[i])) {
            args_free(out);
            return false;
        }
        out->kw_names[i] = in->kw_names[i];
        out->n_kw++;
    }
    return true;
}

static NOINLINE bool eval_call(jstate *st, jscope *sc, const jexpr *e, const jv *caller, jv *out) {
    jv fn;
    if (!eval(st, sc, e->a, &fn)) return false;
    call_args a;
    if (!eval_args(st, sc, &e->args, caller ? 1 : 0, &a)) {
        jv_drop(&fn);
        return false;
    }
    if (caller) {
        a.kw_names[a.n_kw] = "caller";
        a.kw_vals[a.n_kw++] = jv_dup(caller);
    }
    bool ok = jinja_call(st, &fn, a.pos, a.n_pos, a.kw_names, a.kw_vals, a.n_kw, out);
    args_free(&a);
    jv_drop(&fn);
    return ok;
}

static bool eval_node(jstate *st, jscope *sc, const jexpr *e, jv *out);

/* Every recursion of the evaluator passes here or through exec_stmt, so
 * that macro recursion times expression nesting stays within the stack. */
static bool eval(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    *out = jv_undef();
    if (!step(st)) return false;
    if (++st->eval_depth > JINJA_MAX_EVAL_DEPTH) {
        st->eval_depth--;
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "template nests expressions and calls more than %d deep",
                          JINJA_MAX_EVAL_DEPTH);
    }
    bool ok = eval_node(st, sc, e, out);
    st->eval_depth--;
    return ok;
}

/* Each kind of expression has its own function, kept out of line so that
 * the recursion through eval() carries only the frame of the kind at hand
 * (a single big switch would put every case's locals in every frame). */
static NOINLINE bool eval_name(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    jv *v = scope_lookup(sc, e->sym);
    if (v) {
        *out = jv_dup(v);
        return true;
    }
    int g = jinja_global_find(e->name);
    if (g) {
        out->kind = JV_FUNC;
        out->id = (uint16_t)(g - 1);
        return true;
    }
    out->p = e->name; /* undefined: "'name' is undefined" */
    return true;
}

static NOINLINE bool eval_attr(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    jv obj;
    if (!eval(st, sc, e->a, &obj)) return false;
    bool ok = jinja_getattr(st, &obj, e->name, strlen(e->name), out);
    jv_drop(&obj);
    return ok;
}

static NOINLINE bool eval_item(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    jv obj, key;
    if (!eval(st, sc, e->a, &obj)) return false;
    if (!eval(st, sc, e->b, &key)) {
        jv_drop(&obj);
        return false;
    }
    bool ok = jinja_getitem(st, &obj, &key, out);
    jv_drop(&obj);
    jv_drop(&key);
    return ok;
}

static NOINLINE bool eval_slice(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    jv parts[4] = {jv_undef(), jv_undef(), jv_undef(), jv_undef()};
    const jexpr *exprs[4] = {e->a, e->b, e->c, e->d};
    bool ok = true;
    for (int i = 0; i < 4 && ok; i++)
        if (exprs[i]) ok = eval(st, sc, exprs[i], &parts[i]);
    if (ok) ok = do_slice(st, &parts[0], e->b ? &parts[1] : NULL, e->c ? &parts[2] : NULL,
                          e->d ? &parts[3] : NULL, out);
    for (int i = 0; i < 4; i++) jv_drop(&parts[i]);
    return ok;
}

static NOINLINE bool eval_filter(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    if (e->fn < 0) return jinja_fail(st, NURI_ERR_FORMAT, "No filter named '%s'.", e->name);
    jv v;
    if (e->a) {
        if (!eval(st, sc, e->a, &v)) return false;
    } else {
        v = jv_dup(&st->placeholder);
    }
    call_args a;
    if (!eval_args(st, sc, &e->args, 0, &a)) {
        jv_drop(&v);
        return false;
    }
    bool ok = jinja_apply_filter(st, e->fn, &v, a.pos, a.n_pos, a.kw_names, a.kw_vals, a.n_kw, out);
    args_free(&a);
    jv_drop(&v);
    return ok;
}

static NOINLINE bool eval_test(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    if (e->fn < 0) return jinja_fail(st, NURI_ERR_FORMAT, "No test named '%s'.", e->name);
    jv v;
    if (!eval(st, sc, e->a, &v)) return false;
    call_args a;
    if (!eval_args(st, sc, &e->args, 0, &a)) {
        jv_drop(&v);
        return false;
    }
    bool res = false;
    bool ok = a.n_kw == 0 ? jinja_apply_test(st, e->fn, &v, a.pos, a.n_pos, &res)
                          : jinja_fail(st, NURI_ERR_UNSUPPORTED, "tests take no keyword arguments");
    args_free(&a);
    jv_drop(&v);
    if (ok) *out = jv_bool(e->negated ? !res : res);
    return ok;
}

static NOINLINE bool eval_unary(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    jv v;
    if (!eval(st, sc, e->a, &v)) return false;
    bool ok;
    if (e->kind == EX_NOT) {
        *out = jv_bool(!jv_truthy(&v));
        ok = true;
    } else if (v.kind == JV_UNDEF) {
        ok = fail_undefined(st, &v);
    } else if (jv_is_int(&v)) {
        int64_t x = jv_int(&v);
        ok = e->kind == EX_POS ? jv_make_int(st, x, out) : int_result(st, x != INT64_MIN, -x, out);
    } else if (jv_is_num(&v)) {
        ok = jv_make_real(st, e->kind == EX_NEG ? -jv_num(&v) : jv_num(&v), out);
    } else {
        ok = jinja_fail(st, NURI_ERR_FORMAT, "bad operand type for unary %c: '%s'", e->kind == EX_NEG ? '-' : '+',
                        jv_type_name(&v));
    }
    jv_drop(&v);
    return ok;
}

static NOINLINE bool eval_binary(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    jv a, b;
    if (!eval(st, sc, e->a, &a)) return false;
    if (!eval(st, sc, e->b, &b)) {
        jv_drop(&a);
        return false;
    }
    bool ok = arith(st, e->op, &a, &b, out);
    jv_drop(&a);
    jv_drop(&b);
    return ok;
}

/* `and` / `or` return an operand, as in Python. */
static NOINLINE bool eval_logic(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    jv a;
    if (!eval(st, sc, e->a, &a)) return false;
    if (jv_truthy(&a) == (e->kind == EX_OR)) {
        *out = a;
        return true;
    }
    jv_drop(&a);
    return eval(st, sc, e->b, out);
}

/* a < b < c: each operand evaluated once, stopping at the first false. */
static NOINLINE bool eval_compare(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    jv left;
    if (!eval(st, sc, e->a, &left)) return false;
    bool res = true;
    for (size_t i = 0; i < e->n_items && res; i++) {
        jv right;
        if (!eval(st, sc, e->items[i], &right)) {
            jv_drop(&left);
            return false;
        }
        bool ok = compare_op(st, e->ops[i], &left, &right, &res);
        jv_drop(&left);
        left = right;
        if (!ok) {
            jv_drop(&left);
            return false;
        }
    }
    jv_drop(&left);
    *out = jv_bool(res);
    return true;
}

static NOINLINE bool eval_cond(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    jv c;
    if (!eval(st, sc, e->a, &c)) return false;
    bool t = jv_truthy(&c);
    jv_drop(&c);
    if (t) return eval(st, sc, e->b, out);
    if (e->c) return eval(st, sc, e->c, out);
    return true; /* no else: undefined */
}

static bool eval_node(jstate *st, jscope *sc, const jexpr *e, jv *out) {
    switch (e->kind) {
    case EX_LITERAL: *out = jv_data(json_incref(e->lit)); return true;
    case EX_NAME: return eval_name(st, sc, e, out);
    case EX_LIST:
    case EX_TUPLE:
    case EX_DICT: return eval_container(st, sc, e, out);
    case EX_ATTR: return eval_attr(st, sc, e, out);
    case EX_ITEM: return eval_item(st, sc, e, out);
    case EX_SLICE: return eval_slice(st, sc, e, out);
    case EX_CALL: return eval_call(st, sc, e, NULL, out);
    case EX_FILTER: return eval_filter(st, sc, e, out);
    case EX_TEST: return eval_test(st, sc, e, out);
    case EX_NOT:
    case EX_NEG:
    case EX_POS: return eval_unary(st, sc, e, out);
    case EX_BINARY: return eval_binary(st, sc, e, out);
    case EX_AND:
    case EX_OR: return eval_logic(st, sc, e, out);
    case EX_COMPARE: return eval_compare(st, sc, e, out);
    case EX_COND: return eval_cond(st, sc, e, out);
    case EX_PLACEHOLDER: *out = jv_dup(&st->placeholder); return true;
    }
    return jinja_fail(st, NURI_ERR_FORMAT, "unknown expression");
}

/* ---- Statements ---------------------------------------------------------------- */

typedef enum { FLOW_NEXT, FLOW_BREAK, FLOW_CONTINUE, FLOW_ERROR } flow;

static flow exec_body(jstate *st, jscope *sc, const jbody *b);

/* Runs body in a child scope, capturing its output as a string. */
static bool capture(jstate *st, jscope *parent, const jbody *body, jv *out) {
    jbuf buf = {0};
    jbuf *saved = st->out;
    jscope child = {parent, NULL, NULL, 0, 0};
    st->out = &buf;
    flow f = exec_body(st, &child, body);
    st->out = saved;
    scope_free(&child);
    bool ok = f != FLOW_ERROR && jv_make_str(st, buf.data, buf.len, out);
    jbuf_free(&buf);
    return ok;
}

/* Unpacks value into targets (for `for a, b in ...` and `set a, b = ...`). */
static bool bind_target(jstate *st, jscope *sc, const jtarget *tg, const jv *value) {
    if (!tg->tuple) return scope_set(st, sc, tg->syms[0], jv_dup(value));
    json_t *items;
    if (!jinja_iterate(st, value, &items)) return false;
    size_t n = json_array_size(items);
    bool ok = true;
    if (n != tg->n_syms) {
        ok = n > tg->n_syms
                 ? jinja_fail(st, NURI_ERR_FORMAT, "too many values to unpack (expected %zu)", tg->n_syms)
                 : jinja_fail(st, NURI_ERR_FORMAT, "not enough values to unpack (expected %zu, got %zu)",
                              tg->n_syms, n);
    }
    for (size_t i = 0; ok && i < n; i++) ok = scope_set(st, sc, tg->syms[i], jv_from_elem(st, json_array_get(items, i)));
    json_decref(items);
    return ok;
}

static NOINLINE flow exec_for(jstate *st, jscope *sc, const jstmt *s) {
    jv iterable;
    if (!eval(st, sc, s->expr, &iterable)) return FLOW_ERROR;
    json_t *items;
    bool ok = jinja_iterate(st, &iterable, &items);
    jv_drop(&iterable);
    if (!ok) return FLOW_ERROR;
    jscope iter = {sc, NULL, NULL, 0, 0};
    if (s->cond) {
        /* `for x in xs if cond`: filter first, so loop.length counts the kept items. */
        json_t *kept = json_array();
        if (!kept) {
            json_decref(items);
            return nomem(st), FLOW_ERROR;
        }
        for (size_t i = 0; ok && i < json_array_size(items); i++) {
            jv item = jv_from_elem(st, json_array_get(items, i)), c;
            ok = bind_target(st, &iter, &s->target, &item) && eval(st, &iter, s->cond, &c);
            if (ok && jv_truthy(&c) && json_array_append(kept, json_array_get(items, i))) ok = nomem(st);
            if (ok) jv_drop(&c);
            jv_drop(&item);
            scope_clear(&iter);
        }
        json_decref(items);
        items = kept;
        if (!ok) {
            json_decref(items);
            scope_free(&iter);
            return FLOW_ERROR;
        }
    }
    size_t n = json_array_size(items);
    loop_state ls = {items, 0, n};
    flow result = FLOW_NEXT;
    int loop_sym = jsym_find(&st->t->syms, "loop");
    for (size_t i = 0; i < n; i++) {
        if (++st->loop_steps > JINJA_MAX_LOOP_STEPS) {
            jinja_fail(st, NURI_ERR_UNSUPPORTED, "template ran more than %u loop iterations",
                       JINJA_MAX_LOOP_STEPS);
            result = FLOW_ERROR;
            break;
        }
        ls.index = i;
        jv item = jv_from_elem(st, json_array_get(items, i));
        ok = bind_target(st, &iter, &s->target, &item);
        jv_drop(&item);
        if (ok && loop_sym >= 0) {
            jv lv = jv_undef();
            lv.kind = JV_LOOP;
            lv.p = &ls;
            ok = scope_set(st, &iter, loop_sym, lv);
        }
        flow f = ok ? exec_body(st, &iter, &s->body) : FLOW_ERROR;
        scope_clear(&iter);
        if (f == FLOW_ERROR) {
            result = FLOW_ERROR;
            break;
        }
        if (f == FLOW_BREAK) break;
    }
    if (result != FLOW_ERROR && n == 0 && s->else_body.n) {
        result = exec_body(st, &iter, &s->else_body);
        if (result != FLOW_ERROR) result = FLOW_NEXT;
    }
    scope_free(&iter);
    json_decref(items);
    return result;
}

static NOINLINE flow exec_set(jstate *st, jscope *sc, const jstmt *s) {
    jv v;
    if (s->kind == ST_SET) {
        if (!eval(st, sc, s->expr, &v)) return FLOW_ERROR;
    } else {
        if (!capture(st, sc, &s->body, &v)) return FLOW_ERROR;
        if (s->expr) {
            jv saved = st->placeholder, filtered;
            st->placeholder = v;
            bool ok = eval(st, sc, s->expr, &filtered);
            st->placeholder = saved;
            jv_drop(&v);
            if (!ok) return FLOW_ERROR;
            v = filtered;
        }
    }
    bool ok;
    if (s->target.attr) {
        jv *owner = scope_lookup(sc, s->target.syms[0]);
        if (!owner || owner->kind != JV_NS) {
            ok = jinja_fail(st, NURI_ERR_FORMAT, "cannot assign attribute on non-namespace object");
        } else {
            json_t *j = jv_to_json(st, &v);
            ok = j && json_object_set_new(owner->j, s->target.attr, j) == 0;
            if (j && !ok) nomem(st);
        }
    } else {
        ok = bind_target(st, sc, &s->target, &v);
    }
    jv_drop(&v);
    return ok ? FLOW_NEXT : FLOW_ERROR;
}

static flow exec_stmt_node(jstate *st, jscope *sc, const jstmt *s);

static flow exec_stmt(jstate *st, jscope *sc, const jstmt *s) {
    if (!step(st)) return FLOW_ERROR;
    if (++st->eval_depth > JINJA_MAX_EVAL_DEPTH) {
        st->eval_depth--;
        jinja_fail(st, NURI_ERR_UNSUPPORTED, "template nests blocks and calls more than %d deep",
                   JINJA_MAX_EVAL_DEPTH);
        return FLOW_ERROR;
    }
    flow f = exec_stmt_node(st, sc, s);
    st->eval_depth--;
    return f;
}

/* As for expressions: one out-of-line function per kind keeps the frames
 * on the recursion small. */
static NOINLINE flow exec_output(jstate *st, jscope *sc, const jstmt *s) {
    jv v;
    if (!eval(st, sc, s->expr, &v)) return FLOW_ERROR;
    bool ok = jv_print(st, &v, st->out);
    jv_drop(&v);
    return ok ? FLOW_NEXT : FLOW_ERROR;
}

static NOINLINE flow exec_if(jstate *st, jscope *sc, const jstmt *s) {
    jv c;
    if (!eval(st, sc, s->expr, &c)) return FLOW_ERROR;
    bool t = jv_truthy(&c);
    jv_drop(&c);
    return exec_body(st, sc, t ? &s->body : &s->else_body);
}

static NOINLINE flow exec_macro_def(jstate *st, jscope *sc, const jstmt *s) {
    jv m = jv_undef();
    m.kind = JV_MACRO;
    m.p = s->macro;
    m.q = sc;
    return scope_set(st, sc, s->macro->sym, m) ? FLOW_NEXT : FLOW_ERROR;
}

static NOINLINE flow exec_call_block(jstate *st, jscope *sc, const jstmt *s) {
    jv caller = jv_undef(), v;
    caller.kind = JV_MACRO;
    caller.p = s->macro;
    caller.q = sc;
    if (!eval_call(st, sc, s->expr, &caller, &v)) return FLOW_ERROR;
    bool ok = jv_print(st, &v, st->out);
    jv_drop(&v);
    return ok ? FLOW_NEXT : FLOW_ERROR;
}

static NOINLINE flow exec_filter_block(jstate *st, jscope *sc, const jstmt *s) {
    jv body, v;
    if (!capture(st, sc, &s->body, &body)) return FLOW_ERROR;
    jv saved = st->placeholder;
    st->placeholder = body;
    bool ok = eval(st, sc, s->expr, &v);
    st->placeholder = saved;
    jv_drop(&body);
    if (!ok) return FLOW_ERROR;
    ok = jv_print(st, &v, st->out);
    jv_drop(&v);
    return ok ? FLOW_NEXT : FLOW_ERROR;
}

static NOINLINE flow exec_scope(jstate *st, jscope *sc, const jstmt *s) {
    jscope child = {sc, NULL, NULL, 0, 0};
    flow f = exec_body(st, &child, &s->body);
    scope_free(&child);
    return f;
}

static flow exec_stmt_node(jstate *st, jscope *sc, const jstmt *s) {
    switch (s->kind) {
    case ST_TEXT: return jbuf_put(st, st->out, s->text, s->text_len) ? FLOW_NEXT : FLOW_ERROR;
    case ST_OUTPUT: return exec_output(st, sc, s);
    case ST_IF: return exec_if(st, sc, s);
    case ST_FOR: return exec_for(st, sc, s);
    case ST_SET:
    case ST_SET_BLOCK: return exec_set(st, sc, s);
    case ST_MACRO: return exec_macro_def(st, sc, s);
    case ST_CALL_BLOCK: return exec_call_block(st, sc, s);
    case ST_FILTER_BLOCK: return exec_filter_block(st, sc, s);
    case ST_SCOPE: return exec_scope(st, sc, s);
    case ST_BREAK: return FLOW_BREAK;
    case ST_CONTINUE: return FLOW_CONTINUE;
    }
    return FLOW_ERROR;
}

static flow exec_body(jstate *st, jscope *sc, const jbody *b) {
    for (size_t i = 0; i < b->n; i++) {
        flow f = exec_stmt(st, sc, b->v[i]);
        if (f != FLOW_NEXT) return f;
    }
    return FLOW_NEXT;
}

/* ---- Calls ---------------------------------------------------------------------- */

static NOINLINE bool call_macro(jstate *st, const jv *fn, const jv *args, size_t n_args, const char *const *kw_names,
                       const jv *kw_vals, size_t n_kw, jv *out) {
    const jmacro *m = fn->p;
    if (st->call_depth >= JINJA_MAX_CALL_DEPTH)
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "macro calls nested more than %d deep (recursion?)",
                          JINJA_MAX_CALL_DEPTH);
    if (n_args > m->n_params && !m->uses_varargs)
        return jinja_fail(st, NURI_ERR_FORMAT, "macro '%s' takes not more than %zu argument(s)", m->name,
                          m->n_params);
    jscope sc = {(jscope *)fn->q, NULL, NULL, 0, 0};
    bool ok = true;
    bool *given = calloc(m->n_params + 1, sizeof *given);
    json_t *kwargs = json_object(), *varargs = json_array();
    if (!given || !kwargs || !varargs) ok = nomem(st);
    for (size_t i = 0; ok && i < n_args; i++) {
        if (i < m->n_params) {
            ok = scope_set(st, &sc, m->param_syms[i], jv_dup(&args[i]));
            given[i] = true;
        } else {
            json_t *j = jv_to_json(st, &args[i]);
            ok = j && json_array_append_new(varargs, j) == 0;
        }
    }
    for (size_t k = 0; ok && k < n_kw; k++) {
        size_t i;
        for (i = 0; i < m->n_params; i++)
            if (!strcmp(m->param_names[i], kw_names[k])) break;
        if (i < m->n_params) {
            if (given[i]) {
                ok = jinja_fail(st, NURI_ERR_FORMAT, "macro '%s' got multiple values for argument '%s'",
                                m->name, kw_names[k]);
                break;
            }
            ok = scope_set(st, &sc, m->param_syms[i], jv_dup(&kw_vals[k]));
            given[i] = true;
        } else if (!strcmp(kw_names[k], "caller") && kw_vals[k].kind == JV_MACRO) {
            if (!m->uses_caller) {
                ok = jinja_fail(st, NURI_ERR_FORMAT,
                                "macro '%s' was invoked with two values for the special caller argument. "
                                "This is most likely a bug.", m->name);
                break;
            }
            int sym = jsym_find(&st->t->syms, "caller");
            if (sym >= 0) ok = scope_set(st, &sc, sym, jv_dup(&kw_vals[k]));
        } else if (m->uses_kwargs) {
            json_t *j = jv_to_json(st, &kw_vals[k]);
            ok = j && json_object_set_new(kwargs, kw_names[k], j) == 0;
        } else {
            ok = jinja_fail(st, NURI_ERR_FORMAT, "macro '%s' takes no keyword argument '%s'", m->name,
                            kw_names[k]);
        }
    }
    st->call_depth++;
    /* Defaults are evaluated in the macro's scope, after the given arguments. */
    for (size_t i = 0; ok && i < m->n_params; i++) {
        if (given[i]) continue;
        jv v = jv_undef();
        if (m->defaults && m->defaults[i]) ok = eval(st, &sc, m->defaults[i], &v);
        else v.p = m->param_names[i];
        if (ok) ok = scope_set(st, &sc, m->param_syms[i], v);
    }
    if (ok) {
        int sym = jsym_find(&st->t->syms, "varargs");
        if (sym >= 0) ok = jinja_track(st, varargs) && scope_set(st, &sc, sym, jv_data(json_incref(varargs)));
        sym = jsym_find(&st->t->syms, "kwargs");
        if (ok && sym >= 0) ok = jinja_track(st, kwargs) && scope_set(st, &sc, sym, jv_data(json_incref(kwargs)));
    }
    jbuf buf = {0};
    if (ok) {
        jbuf *saved = st->out;
        st->out = &buf;
        ok = exec_body(st, &sc, &m->body) != FLOW_ERROR;
        st->out = saved;
    }
    st->call_depth--;
    if (ok) ok = jv_make_str(st, buf.data, buf.len, out);
    jbuf_free(&buf);
    scope_free(&sc);
    free(given);
    json_decref(kwargs);
    json_decref(varargs);
    return ok;
}

bool jinja_call(jstate *st, const jv *fn, const jv *args, size_t n_args, const char *const *kw_names,
                const jv *kw_vals, size_t n_kw, jv *out) {
    *out = jv_undef();
    switch ((jv_kind)fn->kind) {
    case JV_MACRO: return call_macro(st, fn, args, n_args, kw_names, kw_vals, n_kw, out);
    case JV_FUNC: {
        bool ok = jinja_call_global(st, fn->id, args, n_args, kw_names, kw_vals, n_kw, out);
        return ok;
    }
    case JV_METHOD:
        return jinja_call_method(st, fn->id, fn->j, fn->flags, args, n_args, kw_names, kw_vals, n_kw, out);
    case JV_LOOP:
        if (fn->id == 1) {
            /* loop.cycle(a, b, ...) */
            if (n_args == 0) return jinja_fail(st, NURI_ERR_FORMAT, "no items for cycling given");
            const loop_state *ls = fn->p;
            *out = jv_dup(&args[ls->index % n_args]);
            return true;
        }
        return jinja_fail(st, NURI_ERR_UNSUPPORTED, "recursive loops are not supported");
    case JV_UNDEF: return fail_undefined(st, fn);
    default: return jinja_fail(st, NURI_ERR_FORMAT, "'%s' object is not callable", jv_type_name(fn));
    }
}

void jinja_mark_raised(jstate *st) { st->raised = true; }

/* ---- Render --------------------------------------------------------------------- */

nuri_status jinja_render(const jtemplate *t, const jrender_params *p, char **out, size_t *out_len,
                         bool *raised, nuri_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    if (raised) *raised = false;
    jstate st;
    memset(&st, 0, sizeof st);
    st.t = t;
    st.err = err;
    st.max_steps = p->max_steps ? p->max_steps : JINJA_MAX_STEPS;
    st.undef_marker = json_object();
    if (!st.undef_marker) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory rendering a template");
    if (p->now) {
        /* Normalize the caller's fields (and fill weekday and day of year)
         * by a round trip through UTC, which keeps the wall-clock values. */
        struct tm wall = *p->now;
        time_t x = timegm(&wall);
        if (x == (time_t)-1 || !gmtime_r(&x, &st.now)) st.now = *p->now;
    } else {
        time_t now = time(NULL);
        localtime_r(&now, &st.now);
    }
    jbuf buf = {0};
    st.out = &buf;
    jscope root = {NULL, NULL, NULL, 0, 0};
    bool ok = true;
    if (p->vars) {
        const char *k;
        json_t *v;
        json_object_foreach(p->vars, k, v) {
            int sym = jsym_find(&t->syms, k);
            if (sym >= 0 && !scope_set(&st, &root, sym, jv_data(json_incref(v)))) {
                ok = false;
                break;
            }
        }
    }
    if (ok) ok = exec_body(&st, &root, &t->body) != FLOW_ERROR;
    if (st.failed) ok = false; /* a budget ran out where a value was still returned */
    scope_free(&root);
    jv_drop(&st.placeholder);
    free(st.depths.keys);
    free(st.depths.depth);
    json_decref(st.undef_marker);
    if (raised) *raised = st.raised;
    if (!ok) {
        jbuf_free(&buf);
        return st.status != NURI_OK ? st.status : NURI_ERR_FORMAT;
    }
    if (!buf.data) {
        buf.data = calloc(1, 1);
        if (!buf.data) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory rendering a template");
    }
    *out = buf.data;
    if (out_len) *out_len = buf.len;
    return NURI_OK;
}
