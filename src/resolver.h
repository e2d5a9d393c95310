/*
 * resolver.h - host name lookups that do not block the event loop.
 *
 * getaddrinfo() can take seconds (a slow or unreachable DNS server, its
 * retries); on the loop that would stall every session. Lookups run on a
 * few helper threads (started when needed, at most RESOLVER_MAX_THREADS)
 * and the answers come back to the loop through an ev_async. Each lookup
 * has a deadline: when it passes, the caller is told "timed out" at once
 * and the thread's late answer is thrown away.
 *
 * Callbacks run on the loop, never from inside resolver_lookup(). Only the
 * loop's thread calls these functions.
 */
#ifndef PIMAP_RESOLVER_H
#define PIMAP_RESOLVER_H

#include <netdb.h>

#include <ev.h>

/* Helper threads at most; more lookups at once wait their turn (their deadline runs meanwhile). */
#define RESOLVER_MAX_THREADS 4

struct resolver;
struct resolver_query;

/*
 * The answer: res (the callee owns it: freeaddrinfo; POSIX lets it free any
 * sublist, so entries may be unlinked and freed one by one), or NULL with
 * error ("timed out after 5.0 s", or gai_strerror's text). The query is
 * over when this is called.
 */
typedef void (*resolver_cb)(struct addrinfo *res, const char *error, void *ctx);

/* What runs on the helper thread; getaddrinfo unless a test puts in its own. */
typedef int (*resolver_lookup_fn)(const char *host, const char *port, const struct addrinfo *hints,
                                  struct addrinfo **res);

struct resolver *resolver_new(struct ev_loop *loop);
/* For tests: the lookup function (before the first lookup). */
void resolver_set_lookup(struct resolver *r, resolver_lookup_fn fn);

/* Look up host:port (any family, this socktype) within timeout seconds (> 0). */
struct resolver_query *resolver_lookup(struct resolver *r, const char *host, const char *port, int socktype,
                                       double timeout, resolver_cb cb, void *ctx);
/* Forget a query whose callback has not run: it never will. */
void resolver_cancel(struct resolver_query *q);

/* Cancels every query (no callbacks). Threads still inside a lookup finish it and exit on their own. */
void resolver_free(struct resolver *r);

#endif
