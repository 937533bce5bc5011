/* threadpool.c — fork-join workers that spin briefly, then sleep.
 *
 * A job is published by bumping `generation`; workers spin on it for a short
 * while (the next op of a forward pass usually follows within microseconds,
 * and waking a sleeping thread costs far more), then block on a condition
 * variable. The caller runs its share and spins until every worker has
 * counted itself done. */
#include "core/threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define CPU_RELAX() __asm__ __volatile__("yield")
#else
#define CPU_RELAX() ((void)0)
#endif

/* About 50-100 us of spinning before a worker goes to sleep. */
#define SPIN_ROUNDS 20000

struct nuri_pool {
    int n_threads;
    int spin_rounds; /* 0 when threads outnumber CPUs: spinning would starve them */
    pthread_t *threads;
    _Atomic unsigned generation;
    _Atomic int n_done;
    _Atomic int n_sleeping;
    _Atomic int stop;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    nuri_pool_fn fn;
    void *arg;
};

typedef struct {
    nuri_pool *pool;
    int ith;
} worker_arg;

static worker_arg *worker_args_of(nuri_pool *p) { return (worker_arg *)(p->threads + p->n_threads); }

/* Waits until the generation differs from seen (or stop); returns it. */
static unsigned wait_for_job(nuri_pool *p, unsigned seen) {
    for (int i = 0; i < p->spin_rounds; i++) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) return g;
        CPU_RELAX();
        /* When other processes want this core, let them run now and then
         * instead of burning the whole time slice. */
        if ((i & 255) == 255) sched_yield();
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->n_sleeping, 1);
    unsigned g;
    while ((g = atomic_load(&p->generation)) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *raw) {
    worker_arg *wa = raw;
    nuri_pool *p = wa->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load(&p->stop)) break;
        p->fn(p->arg, wa->ith, p->n_threads);
        atomic_fetch_add_explicit(&p->n_done, 1, memory_order_release);
    }
    return NULL;
}

nuri_pool *nuri_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    nuri_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    p->spin_rounds = online > 0 && n_threads > online ? 0 : SPIN_ROUNDS;
    /* one block: thread handles, then worker arguments */
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t) + sizeof(worker_arg));
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = &worker_args_of(p)[i];
        wa->pool = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            p->n_threads = i; /* run with the workers we got */
            break;
        }
    }
    return p;
}

void nuri_pool_free(nuri_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p);
}

int nuri_pool_size(const nuri_pool *p) { return p->n_threads; }

void nuri_pool_run(nuri_pool *p, nuri_pool_fn fn, void *arg) {
    if (p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    atomic_fetch_add(&p->generation, 1); /* seq_cst: ordered before the n_sleeping load */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n_threads);
    for (unsigned spins = 0; atomic_load_explicit(&p->n_done, memory_order_acquire) < p->n_threads - 1;
         spins++) {
        CPU_RELAX();
        /* a worker may be waiting for this core: let it run */
        if ((spins & 255) == 255 || spins > (unsigned)p->spin_rounds) sched_yield();
    }
}

/* Counts distinct (physical id, core id) pairs in /proc/cpuinfo. */
int nuri_physical_cores(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    int n = 0;
    if (f) {
        char line[256];
        int phys = -1;
        long seen[1024];
        int n_seen = 0;
        while (fgets(line, sizeof line, f)) {
            int v;
            if (sscanf(line, "physical id : %d", &v) == 1) phys = v;
            if (sscanf(line, "core id : %d", &v) == 1 && n_seen < 1024) {
                long key = (long)phys * 100000 + v;
                int dup = 0;
                for (int i = 0; i < n_seen; i++) dup |= seen[i] == key;
                if (!dup) seen[n_seen++] = key;
            }
        }
        fclose(f);
        n = n_seen;
    }
    if (n < 1) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 ? (int)online : 1;
    }
    return n;
}
