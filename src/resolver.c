/*
 * resolver.c - host name lookups on helper threads (see resolver.h).
 *
 * Who owns a query: the loop side from resolver_lookup() until it is
 * queued; then, under the mutex, it moves TODO -> RUNNING -> DONE. A
 * query the loop gives up on (deadline, cancel, resolver_free) while it is
 * RUNNING is marked abandoned and the worker frees it when its lookup
 * returns; in any other state the loop side frees it at once. The shared
 * part (struct resolver) is reference-counted: the loop holds one
 * reference, each thread one, and the last to let go frees it, so
 * resolver_free() never waits for a lookup that hangs.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "log.h"
#include "resolver.h"

enum query_state { Q_TODO, Q_RUNNING, Q_DONE };

struct resolver_query {
	/* under the mutex */
	struct resolver_query *next; /* in todo or done */
	enum query_state state;
	bool abandoned;
	struct addrinfo *res;
	int rc;
	/* set before queueing, read by the worker */
	char *host, *port;
	struct addrinfo hints;
	/* the loop's */
	struct resolver *r;
	struct resolver_query *live_prev, *live_next;
	ev_timer deadline;
	double timeout;
	resolver_cb cb;
	void *ctx;
};

struct resolver {
	pthread_mutex_t mu;
	pthread_cond_t work;
	struct resolver_query *todo, *todo_tail, *done;
	unsigned nthreads, nidle, refs;
	bool closed;
	resolver_lookup_fn lookup;
	struct ev_loop *loop;
	ev_async wake;
	/* the loop's */
	struct resolver_query *live; /* every query whose callback is still due */
	bool *freed;                 /* set while a callback runs: tells us it freed the resolver */
};

static void query_free(struct resolver_query *q)
{
	if (q->res)
		freeaddrinfo(q->res);
	free(q->host);
	free(q->port);
	free(q);
}

/* Drop a reference with the mutex held; unlocks. The last one frees. */
static void unref_unlock(struct resolver *r)
{
	bool last = --r->refs == 0;
	pthread_mutex_unlock(&r->mu);
	if (last) {
		pthread_cond_destroy(&r->work);
		pthread_mutex_destroy(&r->mu);
		free(r);
	}
}

static void *worker(void *arg)
{
	struct resolver *r = arg;
	pthread_mutex_lock(&r->mu);
	for (;;) {
		while (!r->closed && !r->todo) {
			r->nidle++;
			pthread_cond_wait(&r->work, &r->mu);
			r->nidle--;
		}
		if (r->closed)
			break;
		struct resolver_query *q = r->todo;
		r->todo = q->next;
		if (!r->todo)
			r->todo_tail = NULL;
		q->next = NULL;
		q->state = Q_RUNNING;
		resolver_lookup_fn lookup = r->lookup;
		pthread_mutex_unlock(&r->mu);

		struct addrinfo *res = NULL;
		int rc = lookup(q->host, q->port, &q->hints, &res);

		pthread_mutex_lock(&r->mu);
		if (q->abandoned) {
			q->res = rc == 0 ? res : NULL;
			query_free(q);
			continue;
		}
		q->res = rc == 0 ? res : NULL;
		q->rc = rc;
		q->state = Q_DONE;
		q->next = r->done;
		r->done = q;
		if (!r->closed)
			ev_async_send(r->loop, &r->wake);
	}
	r->nthreads--;
	unref_unlock(r);
	return NULL;
}

/* With the mutex held: a thread for the queue if none is waiting for work. */
static void start_worker(struct resolver *r)
{
	if (r->nidle > 0 || r->nthreads >= RESOLVER_MAX_THREADS) {
		pthread_cond_signal(&r->work);
		return;
	}
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* Signals are the loop's business (libev's watchers): the helper takes none. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_t t;
	int rc = pthread_create(&t, &attr, worker, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		/* The queue waits for a thread that exists; with none, the deadline answers. */
		log_warn("resolver: cannot start a thread: %s", strerror(rc));
		pthread_cond_signal(&r->work);
		return;
	}
	r->nthreads++;
	r->refs++;
}

static void live_unlink(struct resolver_query *q)
{
	struct resolver *r = q->r;
	if (q->live_prev)
		q->live_prev->live_next = q->live_next;
	else
		r->live = q->live_next;
	if (q->live_next)
		q->live_next->live_prev = q->live_prev;
	q->live_prev = q->live_next = NULL;
}

/* The loop gives q up (its callback will not run from the thread's answer). Frees it or leaves it to the worker. */
static void abandon(struct resolver_query *q)
{
	struct resolver *r = q->r;
	ev_timer_stop(r->loop, &q->deadline);
	live_unlink(q);
	pthread_mutex_lock(&r->mu);
	struct resolver_query **list = q->state == Q_TODO ? &r->todo : q->state == Q_DONE ? &r->done : NULL;
	if (!list) {
		q->abandoned = true; /* the worker frees it */
		pthread_mutex_unlock(&r->mu);
		return;
	}
	struct resolver_query *prev = NULL;
	for (struct resolver_query **pp = list; *pp; prev = *pp, pp = &(*pp)->next) {
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	}
	if (list == &r->todo && r->todo_tail == q)
		r->todo_tail = prev;
	pthread_mutex_unlock(&r->mu);
	query_free(q);
}

/* Run q's callback (q is off every list) and free q. False if the callback freed the resolver. */
static bool deliver(struct resolver_query *q, struct addrinfo *res, const char *error)
{
	struct resolver *r = q->r;
	resolver_cb cb = q->cb;
	void *ctx = q->ctx;
	q->res = NULL;
	query_free(q);
	bool freed = false;
	r->freed = &freed;
	cb(res, error, ctx);
	if (freed)
		return false;
	r->freed = NULL;
	return true;
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct resolver_query *q = w->data;
	(void)loop;
	(void)revents;
	char why[64];
	snprintf(why, sizeof(why), "timed out after %.1f s", q->timeout);
	resolver_cb cb = q->cb;
	void *ctx = q->ctx;
	struct resolver *r = q->r;
	abandon(q);
	bool freed = false;
	r->freed = &freed;
	cb(NULL, why, ctx);
	if (!freed)
		r->freed = NULL;
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
	struct resolver *r = w->data;
	(void)loop;
	(void)revents;
	for (;;) {
		pthread_mutex_lock(&r->mu);
		struct resolver_query *q = r->done;
		if (q) {
			r->done = q->next;
			q->next = NULL;
		}
		pthread_mutex_unlock(&r->mu);
		if (!q)
			return;
		ev_timer_stop(r->loop, &q->deadline);
		live_unlink(q);
		int rc = q->rc;
		if (!deliver(q, rc == 0 ? q->res : NULL, rc == 0 ? NULL : gai_strerror(rc)))
			return;
	}
}

struct resolver *resolver_new(struct ev_loop *loop)
{
	struct resolver *r = xcalloc(1, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->work, NULL);
	r->refs = 1;
	r->lookup = getaddrinfo;
	r->loop = loop;
	ev_async_init(&r->wake, on_wake);
	r->wake.data = r;
	ev_async_start(loop, &r->wake);
	/* A helper's pending answer alone must not keep the loop running (shutdown does not wait for DNS). */
	ev_unref(loop);
	return r;
}

void resolver_set_lookup(struct resolver *r, resolver_lookup_fn fn)
{
	pthread_mutex_lock(&r->mu);
	r->lookup = fn;
	pthread_mutex_unlock(&r->mu);
}

struct resolver_query *resolver_lookup(struct resolver *r, const char *host, const char *port, int socktype,
                                       double timeout, resolver_cb cb, void *ctx)
{
	struct resolver_query *q = xcalloc(1, sizeof(*q));
	q->r = r;
	q->host = xstrdup(host);
	q->port = xstrdup(port);
	q->hints.ai_family = AF_UNSPEC;
	q->hints.ai_socktype = socktype;
	q->cb = cb;
	q->ctx = ctx;
	q->timeout = timeout;
	ev_timer_init(&q->deadline, on_deadline, timeout, 0.);
	q->deadline.data = q;
	ev_timer_start(r->loop, &q->deadline);
	q->live_next = r->live;
	if (r->live)
		r->live->live_prev = q;
	r->live = q;
	pthread_mutex_lock(&r->mu);
	q->state = Q_TODO;
	if (r->todo_tail)
		r->todo_tail->next = q;
	else
		r->todo = q;
	r->todo_tail = q;
	start_worker(r);
	pthread_mutex_unlock(&r->mu);
	return q;
}

void resolver_cancel(struct resolver_query *q)
{
	if (q)
		abandon(q);
}

void resolver_free(struct resolver *r)
{
	if (!r)
		return;
	while (r->live)
		abandon(r->live);
	if (r->freed)
		*r->freed = true;
	pthread_mutex_lock(&r->mu);
	r->closed = true; /* from here on no thread touches the loop */
	pthread_cond_broadcast(&r->work);
	ev_ref(r->loop);
	ev_async_stop(r->loop, &r->wake);
	unref_unlock(r);
}
