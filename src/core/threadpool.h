/* threadpool.h — a fixed set of worker threads that run one function on
 * every thread and wait for all of them (a fork-join "parallel for"). */
#ifndef NURI_THREADPOOL_H
#define NURI_THREADPOOL_H

/* fn runs once on each of nth threads with ith = 0..nth-1. */
typedef void (*nuri_pool_fn)(void *arg, int ith, int nth);

typedef struct nuri_pool nuri_pool;

/* Starts n_threads - 1 workers (the caller is thread 0). NULL on failure. */
nuri_pool *nuri_pool_create(int n_threads);
void nuri_pool_free(nuri_pool *pool);
int nuri_pool_size(const nuri_pool *pool);
/* Runs fn on all threads; returns when every thread has finished. */
void nuri_pool_run(nuri_pool *pool, nuri_pool_fn fn, void *arg);

/* The number of physical cores (falls back to online CPUs), at least 1. */
int nuri_physical_cores(void);

#endif
