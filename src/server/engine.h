/* engine.h — the server's generation engine: continuous batching over slots.
 *
 * One engine thread owns the context. The context has one KV-cache sequence
 * per slot (n_ctx positions each). A request becomes a job; jobs wait in a
 * bounded FIFO queue until a slot is idle. At every step the engine builds
 * one batch holding the next token of every generating slot plus prompt
 * tokens of slots still prefilling (up to n_batch entries in all), runs it
 * through nuri_decode once, samples each slot's next token with that slot's
 * own sampler, detokenizes it, applies the stop strings and appends the text
 * to the job, where the connection thread picks it up.
 *
 * A slot keeps the tokens of its last job in its cache when it goes idle; a
 * new job goes to the idle slot whose cache shares the longest prefix with
 * its prompt, and only the rest of the prompt is evaluated.
 *
 * Threads: srv_engine_* and srv_job_* may be called from any thread. */
#ifndef NURI_SERVER_ENGINE_H
#define NURI_SERVER_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nuri.h"

typedef struct srv_engine srv_engine;
typedef struct srv_job srv_job;

typedef struct {
    int32_t n_slots;   /* parallel sequences */
    int32_t n_ctx;     /* KV positions per slot; 0: min(model's context, 4096) */
    int32_t n_batch;   /* batch entries per step; 0: 512 */
    int32_t n_threads; /* 0: physical cores */
    int32_t queue_max; /* jobs that may wait for a slot */
    nuri_kv_type kv_type;
} srv_engine_params;

/* Creates the context and starts the engine thread. */
nuri_status srv_engine_create(const nuri_model *model, const srv_engine_params *params,
                              srv_engine **out, nuri_error *err);

/* Stops the engine: queued and running jobs end with status 503 ("the
 * server is shutting down"), the thread is joined. Idempotent. */
void srv_engine_stop(srv_engine *e);

/* Stops the engine if needed and frees it. Jobs still referenced by
 * connections stay valid until released. */
void srv_engine_free(srv_engine *e);

int32_t srv_engine_n_ctx(const srv_engine *e);
int32_t srv_engine_n_slots(const srv_engine *e);

/* A snapshot for GET /slots and /health: {"slots": [...], "queued": n, ...}. */
json_t *srv_engine_status_json(srv_engine *e);

/* ---- Jobs ------------------------------------------------------------------ */

typedef enum { SRV_FINISH_NONE, SRV_FINISH_STOP, SRV_FINISH_LENGTH } srv_finish;

typedef struct {
    const nuri_token *prompt; /* copied; may not be empty */
    size_t n_prompt;
    int32_t max_tokens; /* >= 1; n_prompt + max_tokens <= n_ctx is the caller's check */
    bool ignore_eos;    /* never sample end-of-generation tokens */
    nuri_sampler_params sampling;
    const char *const *stops; /* copied; may be NULL when n_stops is 0 */
    const size_t *stop_lens;
    size_t n_stops;
} srv_job_spec;

/* A new job holding one reference for the caller; NULL when out of memory. */
srv_job *srv_job_create(const srv_job_spec *spec);
void srv_job_release(srv_job *job);

typedef enum { SRV_SUBMIT_OK, SRV_SUBMIT_BUSY, SRV_SUBMIT_STOPPING } srv_submit_result;

/* Queues a job (the engine takes its own reference). BUSY when the queue is
 * full, STOPPING after srv_engine_stop: the job is then not queued. */
srv_submit_result srv_engine_submit(srv_engine *e, srv_job *job);

/* The client is gone: the job's slot (or queue place) is freed at once. */
void srv_engine_cancel(srv_engine *e, srv_job *job);

/* What a connection learns from srv_job_wait. */
typedef struct {
    char *text; /* new text since the last wait (malloc'ed) or NULL */
    size_t text_len;
    bool done;
    srv_finish finish;   /* when done without error */
    int error_status;    /* when done with an error: an HTTP status, else 0 */
    char error[256];
    int32_t n_prompt, n_cached, n_gen; /* usage, valid when done */
} srv_job_update;

/* Waits up to timeout_ms for new text or the end of the job, and takes
 * whatever text has been produced. Returns false on timeout with nothing
 * new (out->text NULL, out->done false). */
bool srv_job_wait(srv_job *job, int timeout_ms, srv_job_update *out);

#endif
