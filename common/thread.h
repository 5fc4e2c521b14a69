/*
 * thread.h -- threads the engine and the server start for themselves.
 */
#ifndef SPIKE_THREAD_H
#define SPIKE_THREAD_H

#include <pthread.h>

/* pthread_create for a thread that takes none of the process's signals:
 * it starts with every signal blocked. A thread inherits the mask in force
 * where it is made, and a signal sent to the process goes to any thread
 * that does not block it: a host that blocks SIGTERM in its own threads,
 * to read it from a signalfd or sigwait(), would otherwise have it
 * delivered to the library's thread, where its default action ends the
 * process (and a handler would run on a thread the host never sees). The
 * caller's mask is as it was on return. 0, or pthread_create's error. */
int thread_start(pthread_t *t, void *(*fn)(void *), void *arg);

#endif
