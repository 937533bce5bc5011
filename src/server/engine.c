/* engine.c — continuous batching: one thread, one context, n slots.
 *
 * Ownership: the engine thread alone touches the context, the slots and the
 * jobs' generation state (sampler, detokenizer, stop matcher). The queue,
 * the `stopping` flag and the published slot snapshot are guarded by
 * engine->mu. A job's output (text, done, usage) is guarded by job->mu; the
 * engine appends, the connection thread takes. Cancellation is an atomic
 * flag on the job, checked by the engine before every step. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chat/stop.h"
#include "core/util.h"
#include "server/engine.h"

/* ---- Jobs ------------------------------------------------------------------- */

struct srv_job {
    /* Set at creation; read-only afterwards. */
    nuri_token *prompt;
    size_t n_prompt;
    int32_t max_tokens;
    bool ignore_eos;
    nuri_sampler_params sampling;
    nuri_stop *stop; /* used by the engine thread only */

    atomic_int refs;
    atomic_bool cancelled;
    srv_job *next; /* queue link, under engine->mu */

    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu. */
    char *text;
    size_t text_len, text_cap;
    bool done;
    srv_finish finish;
    int error_status;
    char error[256];
    int32_t n_cached, n_gen;
};

srv_job *srv_job_create(const srv_job_spec *spec) {
    if (spec->n_prompt == 0) return NULL;
    srv_job *job = calloc(1, sizeof *job);
    if (!job) return NULL;
    job->prompt = nuri_malloc_array(spec->n_prompt, sizeof *job->prompt);
    if (!job->prompt) {
        free(job);
        return NULL;
    }
    memcpy(job->prompt, spec->prompt, spec->n_prompt * sizeof *job->prompt);
    job->n_prompt = spec->n_prompt;
    job->max_tokens = spec->max_tokens;
    job->ignore_eos = spec->ignore_eos;
    job->sampling = spec->sampling;
    job->stop = nuri_stop_create(spec->stops, spec->stop_lens, spec->n_stops);
    atomic_init(&job->refs, 1);
    atomic_init(&job->cancelled, false);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    bool ok = pthread_mutex_init(&job->mu, NULL) == 0;
    if (ok && pthread_cond_init(&job->cv, &ca) != 0) {
        pthread_mutex_destroy(&job->mu);
        ok = false;
    }
    pthread_condattr_destroy(&ca);
    if (!ok || !job->stop) {
        if (ok) {
            pthread_cond_destroy(&job->cv);
            pthread_mutex_destroy(&job->mu);
        }
        nuri_stop_free(job->stop);
        free(job->prompt);
        free(job);
        return NULL;
    }
    return job;
}

static void job_retain(srv_job *job) { atomic_fetch_add(&job->refs, 1); }

void srv_job_release(srv_job *job) {
    if (!job || atomic_fetch_sub(&job->refs, 1) != 1) return;
    pthread_cond_destroy(&job->cv);
    pthread_mutex_destroy(&job->mu);
    nuri_stop_free(job->stop);
    free(job->prompt);
    free(job->text);
    free(job);
}

/* Appends generated text for the connection; false when out of memory. */
static bool job_append(srv_job *job, const char *text, size_t n) {
    if (n == 0) return true;
    pthread_mutex_lock(&job->mu);
    bool ok = true;
    if (job->text_len + n > job->text_cap) {
        size_t cap = job->text_cap ? job->text_cap : 256;
        while (cap < job->text_len + n) cap *= 2;
        char *nt = realloc(job->text, cap);
        if (nt) {
            job->text = nt;
            job->text_cap = cap;
        } else {
            ok = false;
        }
    }
    if (ok) {
        memcpy(job->text + job->text_len, text, n);
        job->text_len += n;
        pthread_cond_broadcast(&job->cv);
    }
    pthread_mutex_unlock(&job->mu);
    return ok;
}

/* Marks the job done (with an HTTP error status when error_status != 0). */
static void job_finish(srv_job *job, srv_finish finish, int error_status, const char *error,
                       int32_t n_cached, int32_t n_gen) {
    pthread_mutex_lock(&job->mu);
    if (!job->done) {
        job->done = true;
        job->finish = finish;
        job->error_status = error_status;
        snprintf(job->error, sizeof job->error, "%s", error ? error : "");
        job->n_cached = n_cached;
        job->n_gen = n_gen;
        pthread_cond_broadcast(&job->cv);
    }
    pthread_mutex_unlock(&job->mu);
}

bool srv_job_wait(srv_job *job, int timeout_ms, srv_job_update *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&job->mu);
    if (job->text_len == 0 && !job->done && timeout_ms > 0) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (job->text_len == 0 && !job->done)
            if (pthread_cond_timedwait(&job->cv, &job->mu, &until) == ETIMEDOUT) break;
    }
    if (job->text_len) {
        out->text = job->text;
        out->text_len = job->text_len;
        job->text = NULL;
        job->text_len = job->text_cap = 0;
    }
    if (job->done) {
        out->done = true;
        out->finish = job->finish;
        out->error_status = job->error_status;
        snprintf(out->error, sizeof out->error, "%s", job->error);
        out->n_prompt = (int32_t)job->n_prompt;
        out->n_cached = job->n_cached;
        out->n_gen = job->n_gen;
    }
    pthread_mutex_unlock(&job->mu);
    return out->text || out->done;
}

/* ---- Slots and the engine --------------------------------------------------- */

typedef enum { SLOT_IDLE, SLOT_PREFILL, SLOT_GENERATE } slot_state;

typedef struct {
    int32_t id;
    slot_state state;
    srv_job *job; /* NULL when idle */
    /* The tokens in this slot's KV-cache sequence (n_ctx capacity); kept when
     * the slot goes idle, for prefix reuse. */
    nuri_token *cache;
    int32_t n_cache;
    size_t n_prefilled; /* prompt tokens in the cache */
    int32_t n_reused;   /* prompt tokens found in the cache at admission */
    nuri_token last;    /* sampled token to feed next */
    int32_t batch_index;
    int32_t n_batch_tokens; /* entries this step added */
    nuri_sampler *sampler;
    nuri_detokenizer detok;
    int32_t n_gen;
    uint64_t order; /* admission order: prompts are prefilled first come first served */
} srv_slot;

/* What GET /slots shows of a slot (copied under mu after every step). */
typedef struct {
    slot_state state;
    int32_t n_cache, n_prompt, n_gen;
} slot_view;

typedef struct {
    uint64_t steps, requests_done, requests_cancelled, tokens_generated, tokens_prefilled;
    uint64_t tokens_reused, mixed_steps;
    int32_t max_batch_sequences;
} engine_counters;

struct srv_engine {
    const nuri_model *model;
    nuri_context *ctx;
    int32_t n_slots, n_ctx, n_batch, n_vocab, queue_max;
    srv_slot *slots;
    bool *is_eog;    /* per token */
    float *logits;   /* scratch for ignore_eos */
    char *piece;     /* detokenizer output */
    size_t piece_cap;
    nuri_token *b_tokens;
    int32_t *b_seqs;
    bool *b_logits;
    uint64_t next_order;

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Under mu. */
    srv_job *queue_head, *queue_tail;
    int32_t queue_len;
    bool stopping, stopped;
    slot_view *views;
    engine_counters counters;
};

static void *engine_main(void *arg);

int32_t srv_engine_n_ctx(const srv_engine *e) { return e->n_ctx; }
int32_t srv_engine_n_slots(const srv_engine *e) { return e->n_slots; }

nuri_status srv_engine_create(const nuri_model *model, const srv_engine_params *params,
                              srv_engine **out, nuri_error *err) {
    *out = NULL;
    if (params->n_slots < 1 || params->queue_max < 0)
        return nuri_fail(err, NURI_ERR_INVALID_ARG, "the server needs at least one slot");
    srv_engine *e = calloc(1, sizeof *e);
    if (!e) return nuri_fail(err, NURI_ERR_NOMEM, "out of memory");
    e->model = model;
    e->n_slots = params->n_slots;
    e->queue_max = params->queue_max;
    e->n_vocab = nuri_model_n_vocab(model);
    e->next_order = 1; /* slots never used (order 0) are taken before used ones */

    nuri_context_params cp = nuri_context_default_params();
    cp.n_ctx = params->n_ctx;
    cp.n_batch = params->n_batch;
    cp.n_threads = params->n_threads;
    cp.n_seq = params->n_slots;
    cp.kv_type = params->kv_type;
    nuri_status st = nuri_context_create(model, &cp, &e->ctx, err);
    if (st != NURI_OK) {
        free(e);
        return st;
    }
    e->n_ctx = nuri_context_n_ctx(e->ctx);
    /* Every generating slot needs one entry per step. */
    e->n_batch = params->n_batch > 0 ? params->n_batch : 512;
    if (e->n_batch < e->n_slots) e->n_batch = e->n_slots;

    size_t longest = 0;
    char tmp[8];
    e->is_eog = calloc((size_t)e->n_vocab, sizeof *e->is_eog);
    for (int32_t t = 0; e->is_eog && t < e->n_vocab; t++) {
        e->is_eog[t] = nuri_token_is_eog(model, t);
        size_t len = nuri_token_to_piece(model, t, false, tmp, sizeof tmp);
        if (len > longest) longest = len;
    }
    e->piece_cap = longest + 64;
    e->piece = malloc(e->piece_cap);
    e->logits = nuri_malloc_array((size_t)e->n_vocab, sizeof *e->logits);
    e->slots = calloc((size_t)e->n_slots, sizeof *e->slots);
    e->views = calloc((size_t)e->n_slots, sizeof *e->views);
    e->b_tokens = nuri_malloc_array((size_t)e->n_batch, sizeof *e->b_tokens);
    e->b_seqs = nuri_malloc_array((size_t)e->n_batch, sizeof *e->b_seqs);
    e->b_logits = nuri_malloc_array((size_t)e->n_batch, sizeof *e->b_logits);
    bool ok = e->is_eog && e->piece && e->logits && e->slots && e->views && e->b_tokens &&
              e->b_seqs && e->b_logits;
    for (int32_t i = 0; ok && i < e->n_slots; i++) {
        e->slots[i].id = i;
        e->slots[i].cache = nuri_malloc_array((size_t)e->n_ctx, sizeof(nuri_token));
        ok = e->slots[i].cache != NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    bool sync_ok = ok && pthread_mutex_init(&e->mu, NULL) == 0;
    if (sync_ok && pthread_cond_init(&e->cv, &ca) != 0) {
        pthread_mutex_destroy(&e->mu);
        sync_ok = false;
    }
    pthread_condattr_destroy(&ca);
    if (!sync_ok) {
        for (int32_t i = 0; e->slots && i < e->n_slots; i++) free(e->slots[i].cache);
        free(e->slots);
        free(e->views);
        free(e->is_eog);
        free(e->piece);
        free(e->logits);
        free(e->b_tokens);
        free(e->b_seqs);
        free(e->b_logits);
        nuri_context_free(e->ctx);
        free(e);
        return nuri_fail(err, NURI_ERR_NOMEM, "out of memory for the server's slots");
    }
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        e->stopped = true;
        srv_engine_free(e);
        return nuri_fail(err, NURI_ERR_NOMEM, "cannot start the engine thread");
    }
    e->thread_started = true;
    *out = e;
    return NURI_OK;
}

void srv_engine_stop(srv_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stopping = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started) {
        pthread_join(e->thread, NULL);
        e->thread_started = false;
    }
}

void srv_engine_free(srv_engine *e) {
    if (!e) return;
    srv_engine_stop(e);
    for (int32_t i = 0; i < e->n_slots; i++) {
        free(e->slots[i].cache);
        nuri_sampler_free(e->slots[i].sampler);
        srv_job_release(e->slots[i].job);
    }
    for (srv_job *j = e->queue_head; j;) {
        srv_job *next = j->next;
        srv_job_release(j);
        j = next;
    }
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    free(e->slots);
    free(e->views);
    free(e->is_eog);
    free(e->piece);
    free(e->logits);
    free(e->b_tokens);
    free(e->b_seqs);
    free(e->b_logits);
    nuri_context_free(e->ctx);
    free(e);
}

srv_submit_result srv_engine_submit(srv_engine *e, srv_job *job) {
    pthread_mutex_lock(&e->mu);
    srv_submit_result r = SRV_SUBMIT_OK;
    int32_t busy = 0;
    for (int32_t i = 0; i < e->n_slots; i++) busy += e->views[i].state != SLOT_IDLE;
    if (e->stopping) {
        r = SRV_SUBMIT_STOPPING;
    } else if (e->queue_len >= e->queue_max + (e->n_slots - busy)) {
        /* Idle slots take queued jobs at the next step, so they count as room. */
        r = SRV_SUBMIT_BUSY;
    } else {
        job_retain(job);
        job->next = NULL;
        if (e->queue_tail) e->queue_tail->next = job;
        else e->queue_head = job;
        e->queue_tail = job;
        e->queue_len++;
        pthread_cond_broadcast(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return r;
}

void srv_engine_cancel(srv_engine *e, srv_job *job) {
    atomic_store(&job->cancelled, true);
    pthread_mutex_lock(&e->mu);
    /* A queued job leaves the queue now, so it stops holding a place. */
    srv_job *prev = NULL, *removed = NULL;
    for (srv_job *j = e->queue_head; j; prev = j, j = j->next) {
        if (j != job) continue;
        if (prev) prev->next = j->next;
        else e->queue_head = j->next;
        if (e->queue_tail == j) e->queue_tail = prev;
        e->queue_len--;
        e->counters.requests_cancelled++;
        removed = j;
        break;
    }
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (removed) {
        job_finish(removed, SRV_FINISH_NONE, 499, "the client closed the connection", 0, 0);
        srv_job_release(removed);
    }
}

static const char *state_name(slot_state s) {
    return s == SLOT_IDLE ? "idle" : s == SLOT_PREFILL ? "prompt" : "generating";
}

json_t *srv_engine_status_json(srv_engine *e) {
    json_t *slots = json_array();
    pthread_mutex_lock(&e->mu);
    int32_t idle = 0;
    for (int32_t i = 0; i < e->n_slots; i++) {
        const slot_view *v = &e->views[i];
        idle += v->state == SLOT_IDLE;
        json_array_append_new(slots, json_pack("{s:i, s:s, s:i, s:i, s:i, s:i}", "id", (int)i,
                                               "state", state_name(v->state), "n_ctx", (int)e->n_ctx,
                                               "n_cached", (int)v->n_cache, "n_prompt",
                                               (int)v->n_prompt, "n_generated", (int)v->n_gen));
    }
    const engine_counters *c = &e->counters;
    json_t *r = json_pack("{s:o, s:i, s:i, s:i, s:i, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:i}}",
                          "slots", slots, "slots_idle", (int)idle, "slots_processing",
                          (int)(e->n_slots - idle), "queued", (int)e->queue_len, "queue_max",
                          (int)e->queue_max, "counters", "steps", (json_int_t)c->steps,
                          "requests_done", (json_int_t)c->requests_done, "requests_cancelled",
                          (json_int_t)c->requests_cancelled, "tokens_generated",
                          (json_int_t)c->tokens_generated, "tokens_prefilled",
                          (json_int_t)c->tokens_prefilled, "tokens_reused",
                          (json_int_t)c->tokens_reused, "mixed_steps", (json_int_t)c->mixed_steps,
                          "max_batch_sequences", (int)c->max_batch_sequences);
    pthread_mutex_unlock(&e->mu);
    return r;
}

/* ---- The engine thread ------------------------------------------------------ */

/* Frees a slot: its job is done (or cancelled), its cache stays. */
static void slot_release(srv_slot *s) {
    nuri_sampler_free(s->sampler);
    s->sampler = NULL;
    srv_job_release(s->job);
    s->job = NULL;
    s->state = SLOT_IDLE;
}

/* Ends the slot's job normally: flushes held-back text, reports usage. */
static void slot_finish(srv_engine *e, srv_slot *s, srv_finish finish) {
    srv_job *job = s->job;
    size_t n = nuri_detokenize_flush(&s->detok, e->piece, e->piece_cap);
    const char *out;
    size_t out_len;
    bool matched = nuri_stop_which(job->stop) >= 0;
    if (!matched && n && nuri_stop_feed(job->stop, e->piece, n, &out, &out_len, &matched))
        job_append(job, out, out_len);
    if (!matched) {
        out_len = nuri_stop_flush(job->stop, &out);
        job_append(job, out, out_len);
    }
    job_finish(job, finish, 0, NULL, s->n_reused, s->n_gen);
    slot_release(s);
    pthread_mutex_lock(&e->mu);
    e->counters.requests_done++;
    pthread_mutex_unlock(&e->mu);
}

/* Ends the slot's job with an error status (the engine is stopping, or the
 * forward pass failed). */
static void slot_fail(srv_engine *e, srv_slot *s, int status, const char *message) {
    job_finish(s->job, SRV_FINISH_NONE, status, message, s->n_reused, s->n_gen);
    slot_release(s);
}

/* Length of the common prefix of two token arrays. */
static size_t common_prefix(const nuri_token *a, size_t na, const nuri_token *b, size_t nb) {
    size_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Moves queued jobs into idle slots (under e->mu). Each job goes to the idle
 * slot whose cache shares the longest prefix with its prompt; among equals,
 * the least recently used, so recent caches stay for the next turn. */
static void admit_jobs(srv_engine *e) {
    while (e->queue_head) {
        srv_job *job = e->queue_head;
        srv_slot *best = NULL;
        size_t best_prefix = 0;
        for (int32_t i = 0; i < e->n_slots; i++) {
            srv_slot *s = &e->slots[i];
            if (s->state != SLOT_IDLE) continue;
            size_t p = common_prefix(s->cache, (size_t)s->n_cache, job->prompt, job->n_prompt);
            if (!best || p > best_prefix || (p == best_prefix && s->order < best->order)) {
                best = s;
                best_prefix = p;
            }
        }
        if (!best) return;
        e->queue_head = job->next;
        if (!e->queue_head) e->queue_tail = NULL;
        e->queue_len--;
        job->next = NULL;

        /* The last prompt token is always evaluated again: its logits give the
         * first generated token. */
        size_t keep = best_prefix < job->n_prompt ? best_prefix : job->n_prompt - 1;
        nuri_context_seq_truncate(e->ctx, best->id, (int32_t)keep);
        best->n_cache = (int32_t)keep;
        best->n_prefilled = keep;
        best->n_reused = (int32_t)keep;
        best->n_gen = 0;
        best->detok = (nuri_detokenizer){{0}, 0};
        best->job = job; /* the queue's reference moves to the slot */
        best->order = e->next_order++;
        best->sampler = nuri_sampler_create(&job->sampling);
        e->counters.tokens_reused += keep;
        if (!best->sampler) {
            best->state = SLOT_PREFILL;
            pthread_mutex_unlock(&e->mu);
            slot_fail(e, best, 500, "out of memory for a sampler");
            pthread_mutex_lock(&e->mu);
            continue;
        }
        for (size_t i = 0; i < job->n_prompt; i++) nuri_sampler_accept(best->sampler, job->prompt[i]);
        best->state = SLOT_PREFILL;
        e->views[best->id].state = SLOT_PREFILL;
    }
}

/* Samples the slot's next token from batch entry idx and streams its text.
 * Returns with the slot either generating (its token to be fed next step)
 * or finished. */
static void slot_sample(srv_engine *e, srv_slot *s, int32_t idx) {
    srv_job *job = s->job;
    const float *logits = nuri_logits_ith(e->ctx, (size_t)idx);
    if (!logits) {
        slot_fail(e, s, 500, "internal error: no logits for a slot");
        return;
    }
    if (job->ignore_eos) {
        memcpy(e->logits, logits, sizeof *e->logits * (size_t)e->n_vocab);
        for (int32_t t = 0; t < e->n_vocab; t++)
            if (e->is_eog[t]) e->logits[t] = -INFINITY;
        logits = e->logits;
    }
    nuri_token tok = nuri_sampler_sample(s->sampler, logits, e->n_vocab);
    if (tok < 0 || e->is_eog[tok]) {
        slot_finish(e, s, SRV_FINISH_STOP);
        return;
    }
    s->n_gen++;
    size_t n = nuri_detokenize_push(e->model, &s->detok, tok, e->piece, e->piece_cap);
    const char *out;
    size_t out_len;
    bool matched = false;
    if (!nuri_stop_feed(job->stop, e->piece, n, &out, &out_len, &matched) ||
        !job_append(job, out, out_len)) {
        slot_fail(e, s, 500, "out of memory while streaming");
        return;
    }
    if (matched) slot_finish(e, s, SRV_FINISH_STOP);
    else if (s->n_gen >= job->max_tokens || s->n_cache >= e->n_ctx)
        slot_finish(e, s, SRV_FINISH_LENGTH);
    else {
        s->last = tok;
        s->state = SLOT_GENERATE;
    }
}

/* One step: frees cancelled slots, evaluates one batch, samples. */
static void engine_step(srv_engine *e) {
    for (int32_t i = 0; i < e->n_slots; i++) {
        srv_slot *s = &e->slots[i];
        if (s->job && atomic_load(&s->job->cancelled)) {
            slot_fail(e, s, 499, "the client closed the connection");
            pthread_mutex_lock(&e->mu);
            e->counters.requests_cancelled++;
            pthread_mutex_unlock(&e->mu);
        }
    }

    /* The batch: one entry per generating slot, then prompt tokens of
     * prefilling slots in admission order while there is room. */
    int32_t n = 0, n_gen_slots = 0, n_prefill_slots = 0;
    for (int32_t i = 0; i < e->n_slots; i++) {
        srv_slot *s = &e->slots[i];
        s->batch_index = -1;
        s->n_batch_tokens = 0;
        if (s->state != SLOT_GENERATE) continue;
        e->b_tokens[n] = s->last;
        e->b_seqs[n] = s->id;
        e->b_logits[n] = true;
        s->batch_index = n++;
        s->n_batch_tokens = 1;
        n_gen_slots++;
    }
    for (;;) {
        srv_slot *next = NULL;
        for (int32_t i = 0; i < e->n_slots; i++) {
            srv_slot *s = &e->slots[i];
            if (s->state == SLOT_PREFILL && s->n_batch_tokens == 0 && (!next || s->order < next->order))
                next = s;
        }
        if (!next || n >= e->n_batch) break;
        size_t left = next->job->n_prompt - next->n_prefilled;
        size_t take = left < (size_t)(e->n_batch - n) ? left : (size_t)(e->n_batch - n);
        for (size_t k = 0; k < take; k++) {
            e->b_tokens[n] = next->job->prompt[next->n_prefilled + k];
            e->b_seqs[n] = next->id;
            e->b_logits[n] = false;
            n++;
        }
        next->n_batch_tokens = (int32_t)take;
        if (take == left) {
            e->b_logits[n - 1] = true;
            next->batch_index = n - 1;
        }
        n_prefill_slots++;
    }
    if (n == 0) return;

    nuri_error err;
    nuri_batch batch = {(size_t)n, e->b_tokens, e->b_seqs, NULL, e->b_logits};
    if (nuri_decode(e->ctx, &batch, &err) != NURI_OK) {
        for (int32_t i = 0; i < e->n_slots; i++) {
            srv_slot *s = &e->slots[i];
            if (!s->n_batch_tokens) continue;
            /* Whatever the failed call left in the cache is unknown: drop it. */
            nuri_context_seq_truncate(e->ctx, s->id, 0);
            s->n_cache = 0;
            char msg[sizeof err.message + 32];
            snprintf(msg, sizeof msg, "evaluation failed: %s", err.message);
            slot_fail(e, s, 500, msg);
        }
        return;
    }

    /* Record what the cache now holds, then sample. */
    uint64_t prefilled = 0;
    for (int32_t i = 0; i < e->n_slots; i++) {
        srv_slot *s = &e->slots[i];
        if (!s->n_batch_tokens) continue;
        if (s->state == SLOT_GENERATE) {
            s->cache[s->n_cache++] = s->last;
        } else {
            memcpy(s->cache + s->n_cache, s->job->prompt + s->n_prefilled,
                   sizeof(nuri_token) * (size_t)s->n_batch_tokens);
            s->n_cache += s->n_batch_tokens;
            s->n_prefilled += (size_t)s->n_batch_tokens;
            prefilled += (uint64_t)s->n_batch_tokens;
        }
        if (s->batch_index >= 0) slot_sample(e, s, s->batch_index);
    }

    pthread_mutex_lock(&e->mu);
    engine_counters *c = &e->counters;
    c->steps++;
    c->tokens_generated += (uint64_t)n_gen_slots;
    c->tokens_prefilled += prefilled;
    if (n_gen_slots && n_prefill_slots) c->mixed_steps++;
    if (n_gen_slots + n_prefill_slots > c->max_batch_sequences)
        c->max_batch_sequences = n_gen_slots + n_prefill_slots;
    pthread_mutex_unlock(&e->mu);
}

/* Publishes the slots' state for GET /slots (under e->mu). */
static void publish_views(srv_engine *e) {
    for (int32_t i = 0; i < e->n_slots; i++) {
        const srv_slot *s = &e->slots[i];
        e->views[i] = (slot_view){s->state, s->n_cache, s->job ? (int32_t)s->job->n_prompt : 0,
                                  s->n_gen};
    }
}

static void *engine_main(void *arg) {
    srv_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        admit_jobs(e);
        publish_views(e);
        bool active = false;
        for (int32_t i = 0; i < e->n_slots; i++) active |= e->slots[i].state != SLOT_IDLE;
        if (e->stopping) break;
        if (!active) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        pthread_mutex_unlock(&e->mu);
        engine_step(e);
        pthread_mutex_lock(&e->mu);
    }
    /* Stopping: everything still waiting or running ends with 503. */
    srv_job *queued = e->queue_head;
    e->queue_head = e->queue_tail = NULL;
    e->queue_len = 0;
    e->stopped = true;
    pthread_mutex_unlock(&e->mu);
    for (int32_t i = 0; i < e->n_slots; i++)
        if (e->slots[i].job) slot_fail(e, &e->slots[i], 503, "the server is shutting down");
    while (queued) {
        srv_job *next = queued->next;
        job_finish(queued, SRV_FINISH_NONE, 503, "the server is shutting down", 0, 0);
        srv_job_release(queued);
        queued = next;
    }
    pthread_mutex_lock(&e->mu);
    publish_views(e);
    pthread_mutex_unlock(&e->mu);
    return NULL;
}
