/* threadpool.c — fork-join workers on a mutex and two condition variables.
 * Workers wait for a new generation number, run the job, and the last one
 * to finish wakes the caller. */
#include "core/threadpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct nuri_pool {
    int n_threads;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t work_ready, work_done;
    unsigned long generation;
    int n_running;
    int stop;
    nuri_pool_fn fn;
    void *arg;
};

typedef struct {
    nuri_pool *pool;
    int ith;
} worker_arg;

static worker_arg *worker_args_of(nuri_pool *p) { return (worker_arg *)(p->threads + p->n_threads); }

static void *worker_main(void *raw) {
    worker_arg *wa = raw;
    nuri_pool *p = wa->pool;
    unsigned long seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->work_ready, &p->mu);
        if (p->stop) break;
        seen = p->generation;
        nuri_pool_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, wa->ith, p->n_threads);
        pthread_mutex_lock(&p->mu);
        if (--p->n_running == 0) pthread_cond_signal(&p->work_done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

nuri_pool *nuri_pool_create(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    nuri_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n_threads = n_threads;
    /* one block: thread handles, then worker arguments */
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t) + sizeof(worker_arg));
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work_ready, NULL);
    pthread_cond_init(&p->work_done, NULL);
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
    p->stop = 1;
    pthread_cond_broadcast(&p->work_ready);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work_ready);
    pthread_cond_destroy(&p->work_done);
    free(p->threads);
    free(p);
}

int nuri_pool_size(const nuri_pool *p) { return p->n_threads; }

void nuri_pool_run(nuri_pool *p, nuri_pool_fn fn, void *arg) {
    if (p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n_running = p->n_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->work_ready);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n_threads);
    pthread_mutex_lock(&p->mu);
    while (p->n_running > 0) pthread_cond_wait(&p->work_done, &p->mu);
    pthread_mutex_unlock(&p->mu);
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
