/*
 * Unit tests for resolver.c under a real libev loop: answers come back to
 * the loop, a lookup that hangs neither stalls the loop nor other lookups
 * and ends at its deadline, cancelled lookups stay silent, and the
 * resolver may be freed from inside its own callback or with a lookup
 * still hanging. The hanging lookup is a stand-in for getaddrinfo that
 * waits until the test lets it go (no network: numeric names only).
 * Every loop run is bounded by a guard timer.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <CUnit/CUnit.h>
#include <ev.h>

#include "resolver.h"
#include "suites.h"

#define GUARD 5.0 /* seconds: no loop run in these tests may take longer */
#define SLOW_HOST "slow.test"
#define MISSING_HOST "missing.test"

static pthread_mutex_t hang_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hang_cv = PTHREAD_COND_INITIALIZER;
static bool hang_released;
static int hang_entered, hang_left;

/* getaddrinfo, except that SLOW_HOST waits for release_hangs() and MISSING_HOST does not exist. */
static int test_lookup(const char *host, const char *port, const struct addrinfo *hints, struct addrinfo **res)
{
	if (strcmp(host, MISSING_HOST) == 0)
		return EAI_NONAME;
	if (strcmp(host, SLOW_HOST) == 0) {
		pthread_mutex_lock(&hang_mu);
		hang_entered++;
		while (!hang_released)
			pthread_cond_wait(&hang_cv, &hang_mu);
		hang_left++;
		pthread_mutex_unlock(&hang_mu);
		host = "127.0.0.1";
	}
	struct addrinfo h = *hints;
	h.ai_flags |= AI_NUMERICHOST; /* never the network */
	return getaddrinfo(host, port, &h, res);
}

static void hangs_reset(void)
{
	pthread_mutex_lock(&hang_mu);
	hang_released = false;
	hang_entered = hang_left = 0;
	pthread_mutex_unlock(&hang_mu);
}

static void release_hangs(void)
{
	pthread_mutex_lock(&hang_mu);
	hang_released = true;
	pthread_cond_broadcast(&hang_cv);
	pthread_mutex_unlock(&hang_mu);
}

struct answer {
	bool called;
	bool ok;
	char error[128];
	char addr[64];
	int family;
	unsigned port;
	double at; /* ev_now when it came */
	struct ev_loop *loop;
	struct resolver **free_me; /* free the resolver from the callback */
	int *calls;                /* shared count of callbacks */
	int stop_after;            /* break the loop when *calls reaches this */
};

static void on_answer(struct addrinfo *res, const char *error, void *ctx)
{
	struct answer *a = ctx;
	CU_ASSERT_FALSE(a->called); /* once */
	a->called = true;
	a->at = ev_now(a->loop);
	if (res) {
		a->ok = true;
		a->family = res->ai_family;
		if (res->ai_family == AF_INET) {
			const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)res->ai_addr;
			inet_ntop(AF_INET, &in->sin_addr, a->addr, sizeof(a->addr));
			a->port = ntohs(in->sin_port);
		} else if (res->ai_family == AF_INET6) {
			const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)res->ai_addr;
			inet_ntop(AF_INET6, &in6->sin6_addr, a->addr, sizeof(a->addr));
			a->port = ntohs(in6->sin6_port);
		}
		freeaddrinfo(res);
	} else {
		snprintf(a->error, sizeof(a->error), "%s", error ? error : "(null)");
	}
	if (a->free_me) {
		resolver_free(*a->free_me);
		*a->free_me = NULL;
	}
	if (a->calls && ++*a->calls >= a->stop_after)
		ev_break(a->loop, EVBREAK_ALL);
}

static bool guard_fired;
static void on_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)w;
	(void)revents;
	guard_fired = true;
	ev_break(loop, EVBREAK_ALL);
}

/* Run the loop until something breaks it or for at most seconds. */
static void run_for(struct ev_loop *loop, double seconds)
{
	ev_timer guard;
	ev_timer_init(&guard, on_guard, seconds, 0.);
	guard_fired = false;
	ev_timer_start(loop, &guard);
	ev_run(loop, 0);
	ev_timer_stop(loop, &guard);
}

static int ticks;
static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	ticks++;
}

static void test_answers(void)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct resolver *r = resolver_new(loop);
	int calls = 0;
	resolver_set_lookup(r, test_lookup);
	struct answer v4 = {.loop = loop, .calls = &calls, .stop_after = 3};
	struct answer v6 = v4, missing = v4;
	resolver_lookup(r, "127.0.0.1", "443", SOCK_STREAM, GUARD, on_answer, &v4);
	resolver_lookup(r, "::1", "8443", SOCK_STREAM, GUARD, on_answer, &v6);
	resolver_lookup(r, MISSING_HOST, "443", SOCK_STREAM, GUARD, on_answer, &missing);
	CU_ASSERT_FALSE(v4.called); /* never from inside resolver_lookup */
	run_for(loop, GUARD);
	CU_ASSERT_FALSE(guard_fired);
	CU_ASSERT_TRUE(v4.ok);
	CU_ASSERT_EQUAL(v4.family, AF_INET);
	CU_ASSERT_STRING_EQUAL(v4.addr, "127.0.0.1");
	CU_ASSERT_EQUAL(v4.port, 443);
	CU_ASSERT_TRUE(v6.ok);
	CU_ASSERT_EQUAL(v6.family, AF_INET6);
	CU_ASSERT_STRING_EQUAL(v6.addr, "::1");
	CU_ASSERT_EQUAL(v6.port, 8443);
	CU_ASSERT_TRUE(missing.called);
	CU_ASSERT_FALSE(missing.ok);
	CU_ASSERT_STRING_EQUAL(missing.error, gai_strerror(EAI_NONAME));
	resolver_free(r);
	/* nothing left that keeps the loop alive: the helper threads do not */
	CU_ASSERT_EQUAL(ev_run(loop, EVRUN_NOWAIT), 0);
	ev_loop_destroy(loop);
}

static void test_hanging_lookup(void)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct resolver *r = resolver_new(loop);
	int calls = 0;
	hangs_reset();
	resolver_set_lookup(r, test_lookup);
	ev_timer tick;
	ev_timer_init(&tick, on_tick, 0.02, 0.02);
	ev_timer_start(loop, &tick);
	ticks = 0;

	struct answer slow = {.loop = loop, .calls = &calls, .stop_after = 2};
	struct answer fast = slow;
	double t0 = ev_now(loop);
	resolver_lookup(r, SLOW_HOST, "443", SOCK_STREAM, 0.3, on_answer, &slow);
	resolver_lookup(r, "127.0.0.1", "443", SOCK_STREAM, GUARD, on_answer, &fast);
	run_for(loop, GUARD);
	CU_ASSERT_FALSE(guard_fired);

	/* the other lookup was answered while the first one hung */
	CU_ASSERT_TRUE(fast.ok);
	CU_ASSERT_TRUE(fast.at - t0 < 0.3);
	/* the hanging one ended at its deadline, and the loop ran all along */
	CU_ASSERT_TRUE(slow.called);
	CU_ASSERT_FALSE(slow.ok);
	CU_ASSERT_STRING_EQUAL(slow.error, "timed out after 0.3 s");
	CU_ASSERT_TRUE(slow.at - t0 >= 0.29);
	CU_ASSERT_TRUE(slow.at - t0 < 1.0);
	CU_ASSERT_TRUE(ticks >= 10);
	pthread_mutex_lock(&hang_mu);
	CU_ASSERT_EQUAL(hang_entered, 1);
	CU_ASSERT_EQUAL(hang_left, 0); /* still hanging when it was given up */
	pthread_mutex_unlock(&hang_mu);

	/* its late answer is thrown away: no second callback */
	release_hangs();
	run_for(loop, 0.2);
	CU_ASSERT_TRUE(guard_fired);
	CU_ASSERT_EQUAL(calls, 2);
	ev_timer_stop(loop, &tick);
	resolver_free(r);
	ev_loop_destroy(loop);
}

static void test_cancel_and_free(void)
{
	struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
	struct resolver *r = resolver_new(loop);
	int calls = 0;
	hangs_reset();
	resolver_set_lookup(r, test_lookup);

	/* cancelled: queued, running or answered, the callback never comes */
	struct answer a = {.loop = loop, .calls = &calls, .stop_after = 1};
	struct answer b = a, c = a, d = a;
	resolver_cancel(resolver_lookup(r, "127.0.0.1", "1", SOCK_STREAM, GUARD, on_answer, &a));
	struct resolver_query *hung = resolver_lookup(r, SLOW_HOST, "1", SOCK_STREAM, GUARD, on_answer, &b);
	run_for(loop, 0.2);
	CU_ASSERT_TRUE(guard_fired);
	resolver_cancel(hung);
	CU_ASSERT_EQUAL(calls, 0);

	/* freed with lookups pending, one of them hanging on a helper thread: no callbacks, no wait */
	resolver_lookup(r, SLOW_HOST, "2", SOCK_STREAM, GUARD, on_answer, &c);
	resolver_lookup(r, "127.0.0.1", "2", SOCK_STREAM, GUARD, on_answer, &d);
	resolver_free(r);
	run_for(loop, 0.2);
	CU_ASSERT_EQUAL(calls, 0);
	release_hangs();

	/* freed from inside its own callback: the other answer is never delivered */
	r = resolver_new(loop);
	resolver_set_lookup(r, test_lookup);
	struct answer e = {.loop = loop, .calls = &calls, .stop_after = 1, .free_me = &r};
	struct answer f = e;
	resolver_lookup(r, "127.0.0.1", "3", SOCK_STREAM, GUARD, on_answer, &e);
	resolver_lookup(r, "127.0.0.1", "4", SOCK_STREAM, GUARD, on_answer, &f);
	run_for(loop, GUARD);
	CU_ASSERT_FALSE(guard_fired);
	CU_ASSERT_EQUAL(calls, 1);
	CU_ASSERT_PTR_NULL(r);
	run_for(loop, 0.2);
	CU_ASSERT_EQUAL(calls, 1);
	CU_ASSERT_FALSE(a.called || b.called || c.called || d.called);
	CU_ASSERT_TRUE(e.called != f.called);
	ev_loop_destroy(loop);
}

void suite_resolver(void)
{
	ADD_SUITE("resolver",
	          {"answers come back to the loop", test_answers},
	          {"a hanging lookup blocks nothing and times out", test_hanging_lookup},
	          {"cancel, and free with lookups pending", test_cancel_and_free});
}
