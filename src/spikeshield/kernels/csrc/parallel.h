/*
 * Threads for the CPU kernels (neurons.c, pool.c): POSIX threads started for one call and joined
 * before it returns — no pool, so nothing waits or spins between calls, and no second OpenMP
 * runtime next to PyTorch's. The count comes from the caller (torch.get_num_threads(), see
 * spikeshield.runtime).
 */
#ifndef SPK_PARALLEL_H
#define SPK_PARALLEL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define SPK_MAX_THREADS 64

/* Threads for `work` items, at least `per_thread` items each: 1..min(requested, 64). */
static inline int spk_thread_count(int requested, int64_t work, int64_t per_thread) {
    int nt = requested < 1 ? 1 : (requested > SPK_MAX_THREADS ? SPK_MAX_THREADS : requested);
    if ((int64_t)nt * per_thread > work) nt = (int)(work / per_thread);
    return nt < 1 ? 1 : nt;
}

/* [*a, *b): the i-th of nt ranges of [0, total), inner boundaries rounded down to a multiple of
 * `align` (a power of two; 1 for none). */
static inline void spk_range(int64_t total, int i, int nt, int64_t align, int64_t *a, int64_t *b) {
    *a = i == 0 ? 0 : (total * i / nt) & ~(align - 1);
    *b = i == nt - 1 ? total : (total * (i + 1) / nt) & ~(align - 1);
}

/* fn on each of nt tasks (task i at base + i·size): tasks 1..nt−1 in new threads, task 0 here;
 * a task whose thread cannot start runs here as well. */
static inline void spk_run_tasks(void *(*fn)(void *), void *base, size_t size, int nt) {
    pthread_t threads[SPK_MAX_THREADS];
    int started[SPK_MAX_THREADS] = {0};
    for (int i = 1; i < nt; i++) started[i] = pthread_create(&threads[i], NULL, fn, (char *)base + i * size) == 0;
    fn(base);
    for (int i = 1; i < nt; i++) {
        if (started[i])
            pthread_join(threads[i], NULL);
        else
            fn((char *)base + i * size);
    }
}

#endif
