/*
 * login_throttle.c - failed logins per client address (see login_throttle.h).
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "login_throttle.h"

#define KEY_MAX 64 /* an IPv6 address in text is at most 45 bytes */

struct login_throttle_slot {
	char      key[KEY_MAX];
	double    window_start;
	long long failures;
	long long in_flight; /* store logins under way: parallel guesses count before they fail */
};

struct login_throttle {
	double       window;
	size_t       max;
	struct login_throttle_slot *slots;
	size_t       n;
	struct login_throttle_slot overflow; /* shared by the addresses that find no slot */
};

struct login_throttle *login_throttle_new(double window, size_t max_addresses)
{
	struct login_throttle *t = xcalloc(1, sizeof(*t));
	t->window = window;
	t->max = max_addresses ? max_addresses : 1;
	snprintf(t->overflow.key, sizeof(t->overflow.key), "*");
	return t;
}

void login_throttle_free(struct login_throttle *t)
{
	if (!t)
		return;
	free(t->slots);
	free(t);
}

void login_throttle_key(const char *peer, char *key, size_t keylen)
{
	char addr[KEY_MAX + 8];
	const char *p = peer;
	size_t len;
	if (*p == '[') {
		/* "[v6]:port" or "[v6]" */
		const char *close = strchr(p, ']');
		p++;
		len = close ? (size_t)(close - p) : strlen(p);
	} else {
		/* "v4:port" has one colon; a bare IPv6 address has several. */
		const char *colon = strchr(p, ':');
		len = colon && !strchr(colon + 1, ':') ? (size_t)(colon - p) : strlen(p);
	}
	if (len >= sizeof(addr))
		len = sizeof(addr) - 1;
	memcpy(addr, p, len);
	addr[len] = '\0';

	struct in6_addr a6;
	struct in_addr a4;
	if (inet_pton(AF_INET6, addr, &a6) == 1) {
		static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
		if (memcmp(a6.s6_addr, mapped, sizeof(mapped)) == 0) {
			memcpy(&a4, a6.s6_addr + 12, 4);
			inet_ntop(AF_INET, &a4, addr, sizeof(addr));
		} else {
			/* One client, one /64: a host given a prefix picks any address in it. */
			memset(a6.s6_addr + 8, 0, 8);
			inet_ntop(AF_INET6, &a6, addr, sizeof(addr));
		}
	} else if (inet_pton(AF_INET, addr, &a4) == 1) {
		inet_ntop(AF_INET, &a4, addr, sizeof(addr));
	}
	snprintf(key, keylen, "%s", addr);
}

/* A new window when the old one is over. */
static void roll(const struct login_throttle *t, struct login_throttle_slot *s, double now)
{
	if (now - s->window_start > t->window) {
		s->window_start = now;
		s->failures = 0;
	}
}

/* The slot of peer; with create, a new or stale one (or the overflow slot when full). */
static struct login_throttle_slot *find(struct login_throttle *t, const char *peer, double now, bool create)
{
	char key[KEY_MAX];
	login_throttle_key(peer, key, sizeof(key));
	struct login_throttle_slot *stale = NULL;
	for (size_t i = 0; i < t->n; i++) {
		struct login_throttle_slot *s = &t->slots[i];
		bool expired = now - s->window_start > t->window;
		if (strcmp(s->key, key) == 0) {
			roll(t, s, now);
			return s;
		}
		if (expired && s->in_flight == 0 && !stale)
			stale = s;
	}
	if (t->n == t->max) {
		/* Every slot busy: this address shares the overflow slot, which is
		 * checked as well as counted, so filling the table from many
		 * addresses does not switch the throttle off for the next ones. */
		roll(t, &t->overflow, now);
		if (!stale)
			return &t->overflow;
	}
	if (!create)
		return NULL;
	struct login_throttle_slot *s = stale;
	if (!s) {
		if (!t->slots)
			t->slots = xcalloc(t->max, sizeof(*t->slots));
		s = &t->slots[t->n++];
	}
	snprintf(s->key, sizeof(s->key), "%s", key);
	s->window_start = now;
	s->failures = 0;
	s->in_flight = 0;
	return s;
}

bool login_throttle_refuses(struct login_throttle *t, const char *peer, double now, long long limit)
{
	struct login_throttle_slot *s = find(t, peer, now, false);
	return s && s->failures + s->in_flight >= limit;
}

struct login_throttle_slot *login_throttle_begin(struct login_throttle *t, const char *peer, double now)
{
	struct login_throttle_slot *s = find(t, peer, now, true);
	s->in_flight++;
	return s;
}

void login_throttle_end(struct login_throttle *t, struct login_throttle_slot *s, double now, bool failed)
{
	if (!s)
		return;
	if (s->in_flight > 0)
		s->in_flight--;
	roll(t, s, now);
	if (failed)
		s->failures++;
}
