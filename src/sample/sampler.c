/* sampler.c — turns a row of logits into the next token.
 *
 * The order follows the chain llama.cpp users know:
 *
 *     penalties -> top-k -> top-p -> min-p -> temperature -> softmax -> draw
 *
 * with temperature <= 0 short-circuiting everything after the penalties into
 * an argmax. Every step orders tokens by (logit descending, id ascending), so
 * the same seed and the same logits give the same tokens on every machine.
 *
 * Logits are never modified: each call copies them into a buffer the sampler
 * owns. NaN logits count as -inf and +inf as the largest float, so no input
 * can make the arithmetic produce NaN or pick an id outside [0, n_vocab). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "nuri.h"

/* A window longer than any context a model can hold buys nothing; capping it
 * keeps a hostile penalty_last_n from turning create into a huge allocation. */
#define NURI_PENALTY_WINDOW_MAX (1 << 20)

/* ---- Random numbers: xoshiro256** seeded through splitmix64 ---------------- */

typedef struct {
    uint64_t s[4];
} nuri_rng;

static uint64_t splitmix64_next(uint64_t *state) {
    uint64_t z = (*state += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* splitmix64 spreads any seed, 0 included, over all four words, so the
 * xoshiro state is never the all-zero state it cannot leave. */
static void rng_seed(nuri_rng *rng, uint64_t seed) {
    uint64_t sm = seed;
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64_next(&sm);
}

static inline uint64_t rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(nuri_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

/* A uniform double in [0, 1): the top 53 bits, each value equally likely. */
static double rng_uniform(nuri_rng *rng) {
    return (double)(rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- The sampler ------------------------------------------------------------ */

typedef struct {
    float logit;
    int32_t id;
    double weight; /* scratch for softmax-like passes */
} nuri_candidate;

struct nuri_sampler {
    nuri_sampler_params params;
    nuri_rng rng;

    /* Ring buffer of the last `window_cap` accepted tokens. */
    nuri_token *window;
    int32_t window_cap;
    int32_t window_len;
    int32_t window_head; /* where the next token goes */

    /* Per-call buffers, sized for the largest n_vocab seen so far. */
    int32_t buf_cap;
    float *logits;             /* penalised copy of the caller's row */
    int32_t *counts;           /* occurrences per token in the window; kept all-zero between calls */
    nuri_candidate *cands;
};

nuri_sampler_params nuri_sampler_default_params(void) {
    nuri_sampler_params p;
    memset(&p, 0, sizeof p);
    p.temperature = 0.0f;
    /* The filters only act once a caller turns the temperature up; they then
     * match llama.cpp's defaults, which is what most users expect. */
    p.top_k = 40;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.penalty_last_n = 64;
    p.seed = 0;
    return p;
}

/* Returns a sampler configured by params (NULL: the defaults, i.e. greedy),
 * or NULL when memory runs out. A negative penalty_last_n counts as 0. */
nuri_sampler *nuri_sampler_create(const nuri_sampler_params *params) {
    nuri_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->params = params ? *params : nuri_sampler_default_params();
    int32_t n = s->params.penalty_last_n;
    if (n < 0) n = 0;
    if (n > NURI_PENALTY_WINDOW_MAX) n = NURI_PENALTY_WINDOW_MAX;
    s->window_cap = n;
    if (n > 0) {
        s->window = nuri_malloc_array((size_t)n, sizeof *s->window);
        if (!s->window) {
            free(s);
            return NULL;
        }
    }
    rng_seed(&s->rng, s->params.seed);
    return s;
}

void nuri_sampler_free(nuri_sampler *sampler) {
    if (!sampler) return;
    free(sampler->window);
    free(sampler->logits);
    free(sampler->counts);
    free(sampler->cands);
    free(sampler);
}

void nuri_sampler_accept(nuri_sampler *sampler, nuri_token token) {
    if (!sampler || sampler->window_cap == 0) return;
    sampler->window[sampler->window_head] = token;
    sampler->window_head = (sampler->window_head + 1) % sampler->window_cap;
    if (sampler->window_len < sampler->window_cap) sampler->window_len++;
}

/* Forgets the penalty window and reseeds the generator, so a reset sampler
 * behaves exactly like a freshly created one. */
void nuri_sampler_reset(nuri_sampler *sampler) {
    if (!sampler) return;
    sampler->window_len = 0;
    sampler->window_head = 0;
    rng_seed(&sampler->rng, sampler->params.seed);
}

/* Makes sure the per-call buffers hold n_vocab entries. Returns false, with
 * the sampler still usable (and empty buffers), when memory runs out. */
static bool ensure_buffers(nuri_sampler *s, int32_t n_vocab) {
    if (n_vocab <= s->buf_cap) return true;
    free(s->logits);
    free(s->counts);
    free(s->cands);
    s->logits = nuri_malloc_array((size_t)n_vocab, sizeof *s->logits);
    s->counts = nuri_calloc_array((size_t)n_vocab, sizeof *s->counts);
    s->cands = nuri_malloc_array((size_t)n_vocab, sizeof *s->cands);
    if (!s->logits || !s->counts || !s->cands) {
        free(s->logits);
        free(s->counts);
        free(s->cands);
        s->logits = NULL;
        s->counts = NULL;
        s->cands = NULL;
        s->buf_cap = 0;
        return false;
    }
    s->buf_cap = n_vocab;
    return true;
}

/* NaN means "no information": it must never win, and must never poison a
 * softmax. +inf is clamped so that differences between logits stay finite. */
static inline float sanitize_logit(float x) {
    if (isnan(x)) return -INFINITY;
    if (x > FLT_MAX) return FLT_MAX;
    return x;
}

/* ---- Penalties -------------------------------------------------------------- */

/* Applies repeat, frequency and presence penalties to logits, once per
 * distinct token of the window; tokens outside [0, n_vocab) are ignored
 * (n_vocab may change between calls). counts is all-zero on entry and exit. */
static void apply_penalties(nuri_sampler *s, float *logits, int32_t n_vocab) {
    const nuri_sampler_params *p = &s->params;
    float repeat = p->repeat_penalty;
    /* A non-positive (or NaN) repeat penalty has no meaning; treat it as off. */
    if (!(repeat > 0.0f)) repeat = 1.0f;
    float freq = isnan(p->frequency_penalty) ? 0.0f : p->frequency_penalty;
    float presence = isnan(p->presence_penalty) ? 0.0f : p->presence_penalty;
    if (s->window_len == 0 || (repeat == 1.0f && freq == 0.0f && presence == 0.0f)) return;

    for (int32_t i = 0; i < s->window_len; i++) {
        nuri_token t = s->window[i];
        if (t >= 0 && t < n_vocab) s->counts[t]++;
    }
    for (int32_t i = 0; i < s->window_len; i++) {
        nuri_token t = s->window[i];
        if (t < 0 || t >= n_vocab || s->counts[t] == 0) continue;
        int32_t count = s->counts[t];
        s->counts[t] = 0; /* marks the token done, and restores the all-zero invariant */
        float x = logits[t];
        if (repeat != 1.0f) x = x > 0.0f ? x / repeat : x * repeat;
        x -= (float)count * freq + presence;
        logits[t] = sanitize_logit(x);
    }
}

/* ---- Candidate selection ---------------------------------------------------- */

/* The one order every step uses: a ranks before b when its logit is higher,
 * or equal with a lower id. Logits here are never NaN, so this is total. */
static inline bool ranks_before(const nuri_candidate *a, const nuri_candidate *b) {
    if (a->logit != b->logit) return a->logit > b->logit;
    return a->id < b->id;
}

static int compare_candidates(const void *pa, const void *pb) {
    const nuri_candidate *a = pa, *b = pb;
    if (ranks_before(a, b)) return -1;
    if (ranks_before(b, a)) return 1;
    return 0;
}

static inline void swap_candidates(nuri_candidate *a, nuri_candidate *b) {
    nuri_candidate t = *a;
    *a = *b;
    *b = t;
}

/* Restores the heap property below index i of a heap whose root is its
 * lowest-ranked element. */
static void sift_down_worst_first(nuri_candidate *heap, int32_t n, int32_t i) {
    for (;;) {
        int32_t worst = i;
        int32_t left = 2 * i + 1, right = left + 1;
        if (left < n && ranks_before(&heap[worst], &heap[left])) worst = left;
        if (right < n && ranks_before(&heap[worst], &heap[right])) worst = right;
        if (worst == i) return;
        swap_candidates(&heap[i], &heap[worst]);
        i = worst;
    }
}

/* Moves the k best of cands[0..n) to cands[0..k), best first, in
 * O(n log k) time (0 < k < n). A heap whose root is the worst kept
 * candidate means each newcomer is compared against one element. */
static void select_top_k(nuri_candidate *cands, int32_t n, int32_t k) {
    for (int32_t i = k / 2 - 1; i >= 0; i--) sift_down_worst_first(cands, k, i);
    for (int32_t i = k; i < n; i++) {
        if (ranks_before(&cands[i], &cands[0])) {
            cands[0] = cands[i];
            sift_down_worst_first(cands, k, 0);
        }
    }
    /* Heap sort: the worst goes to the end each round, leaving best first. */
    for (int32_t end = k - 1; end > 0; end--) {
        swap_candidates(&cands[0], &cands[end]);
        sift_down_worst_first(cands, end, 0);
    }
}

/* Index of the best-ranked candidate of cands[0..n), n > 0. */
static int32_t best_index(const nuri_candidate *cands, int32_t n) {
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (ranks_before(&cands[i], &cands[best])) best = i;
    return best;
}

/* Keeps the smallest best-first prefix of sorted candidates whose
 * probabilities (softmax at temperature 1) sum to at least top_p; always at
 * least one. Returns the new count. */
static int32_t filter_top_p(nuri_candidate *cands, int32_t n, float top_p) {
    double max_logit = cands[0].logit;
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cands[i].weight = exp((double)cands[i].logit - max_logit);
        total += cands[i].weight;
    }
    double needed = (double)top_p * total;
    double cumulative = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cumulative += cands[i].weight;
        if (cumulative >= needed) return i + 1;
    }
    return n;
}

/* Keeps candidates whose probability is at least min_p times the largest,
 * preserving their order; always at least the best one. Returns the count. */
static int32_t filter_min_p(nuri_candidate *cands, int32_t n, float min_p) {
    int32_t best = best_index(cands, n);
    double max_logit = cands[best].logit;
    int32_t kept = 0;
    for (int32_t i = 0; i < n; i++) {
        if (exp((double)cands[i].logit - max_logit) >= (double)min_p) cands[kept++] = cands[i];
    }
    if (kept == 0) { /* min_p > 1 */
        cands[0] = cands[best];
        kept = 1;
    }
    return kept;
}

/* Draws one candidate with probability softmax(logit / temperature). */
static nuri_token draw(nuri_sampler *s, nuri_candidate *cands, int32_t n, float temperature) {
    if (n == 1) return cands[0].id;
    double inv_temp = 1.0 / (double)temperature;
    double max_scaled = (double)cands[best_index(cands, n)].logit * inv_temp;
    double total = 0.0;
    for (int32_t i = 0; i < n; i++) {
        cands[i].weight = exp((double)cands[i].logit * inv_temp - max_scaled);
        total += cands[i].weight;
    }
    double target = rng_uniform(&s->rng) * total;
    double cumulative = 0.0;
    int32_t last_positive = 0;
    for (int32_t i = 0; i < n; i++) {
        if (cands[i].weight <= 0.0) continue;
        cumulative += cands[i].weight;
        last_positive = i;
        if (target < cumulative) return cands[i].id;
    }
    /* Rounding left target at or above the final sum. */
    return cands[last_positive].id;
}

/* ---- Sampling --------------------------------------------------------------- */

/* Argmax of logits with NaN as -inf, lowest id on ties; 0 when all are -inf. */
static nuri_token argmax(const float *logits, int32_t n_vocab) {
    int32_t best = 0;
    float best_logit = sanitize_logit(logits[0]);
    for (int32_t i = 1; i < n_vocab; i++) {
        float x = sanitize_logit(logits[i]);
        if (x > best_logit) {
            best_logit = x;
            best = i;
        }
    }
    return best;
}

/* The sampling chain proper; see the top of the file. */
static nuri_token sample_chain(nuri_sampler *s, const float *logits, int32_t n_vocab) {
    const nuri_sampler_params *p = &s->params;
    if (!ensure_buffers(s, n_vocab)) {
        /* Out of memory: the best answer that needs no memory. */
        return argmax(logits, n_vocab);
    }
    float *work = s->logits;
    for (int32_t i = 0; i < n_vocab; i++) work[i] = sanitize_logit(logits[i]);
    apply_penalties(s, work, n_vocab);

    if (!(p->temperature > 0.0f)) return argmax(work, n_vocab);

    /* -inf tokens can never be drawn; leaving them out keeps them out of
     * every later step, and keeps all remaining logits finite. */
    nuri_candidate *cands = s->cands;
    int32_t n = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        if (work[i] == -INFINITY) continue;
        cands[n].logit = work[i];
        cands[n].id = i;
        cands[n].weight = 0.0;
        n++;
    }
    if (n == 0) return 0;

    bool sorted = false;
    if (p->top_k > 0 && p->top_k < n) {
        select_top_k(cands, n, p->top_k);
        n = p->top_k;
        sorted = true;
    }
    if (p->top_p < 1.0f) { /* NaN compares false: off */
        if (!sorted) qsort(cands, (size_t)n, sizeof *cands, compare_candidates);
        n = filter_top_p(cands, n, p->top_p);
    }
    if (p->min_p > 0.0f) n = filter_min_p(cands, n, p->min_p);
    return draw(s, cands, n, p->temperature);
}

/* Picks a token from logits[0..n_vocab) (not modified) and adds it to the
 * penalty window. Returns -1, and remembers nothing, when sampler or logits
 * is NULL or n_vocab <= 0: there is no valid id to return. */
nuri_token nuri_sampler_sample(nuri_sampler *sampler, const float *logits, int32_t n_vocab) {
    if (!sampler || !logits || n_vocab <= 0) return -1;
    nuri_token token = sample_chain(sampler, logits, n_vocab);
    nuri_sampler_accept(sampler, token);
    return token;
}
