/*
 * listener.c - listening sockets (see listener.h).
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "buf.h"
#include "listener.h"
#include "log.h"
#include "url.h"

struct listener {
	struct ev_loop *loop;
	int             fd;
	ev_io           io;
	ev_timer        backoff;     /* EMFILE pause */
	bool            paused;      /* by the owner */
	bool            implicit_tls;
	char            address[300];
	listener_cb     cb;
	void           *ctx;         /* borrowed */
};

void sockaddr_format(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
		snprintf(out, outlen, "%s:%u", host, port);
	} else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
		snprintf(out, outlen, "[%s]:%u", host, port);
	} else {
		snprintf(out, outlen, "local");
	}
}

static void update(struct listener *l)
{
	bool want = !l->paused && !ev_is_active(&l->backoff);
	if (want && !ev_is_active(&l->io))
		ev_io_start(l->loop, &l->io);
	else if (!want && ev_is_active(&l->io))
		ev_io_stop(l->loop, &l->io);
}

static void on_backoff(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct listener *l = w->data;
	ev_timer_stop(loop, w);
	update(l);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct listener *l = w->data;
	/* A bounded batch per event keeps one flood from starving established connections. */
	for (int i = 0; i < 32 && !l->paused; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				log_warn("listener %s: %s; pausing accepts for %.0f s", l->address,
				         strerror(errno), LISTENER_EMFILE_BACKOFF);
				ev_timer_set(&l->backoff, LISTENER_EMFILE_BACKOFF, 0.);
				ev_timer_start(loop, &l->backoff);
				update(l);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
			           errno != ECONNABORTED) {
				log_err("listener %s: accept: %s", l->address, strerror(errno));
			}
			return;
		}
		char peer[128];
		sockaddr_format((struct sockaddr *)&ss, len, peer, sizeof(peer));
		l->cb(l, fd, peer, l->ctx);
	}
}

struct listener *listener_new(struct ev_loop *loop, const char *address, bool implicit_tls,
                              listener_cb cb, void *ctx, char *err, size_t errlen)
{
	char host[256], port[16], perr[200];
	if (listen_addr_parse(address, host, sizeof(host), port, sizeof(port), perr, sizeof(perr)) < 0) {
		snprintf(err, errlen, "listen address '%s': %s", address, perr);
		return NULL;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen address '%s': %s", address, gai_strerror(rc));
		return NULL;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "listen %s: socket: %s", address, strerror(errno));
		freeaddrinfo(res);
		return NULL;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (res->ai_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, LISTENER_BACKLOG) < 0) {
		snprintf(err, errlen, "listen %s: %s", address, strerror(errno));
		close(fd);
		freeaddrinfo(res);
		return NULL;
	}
	freeaddrinfo(res);

	struct listener *l = xcalloc(1, sizeof(*l));
	l->loop = loop;
	l->fd = fd;
	l->implicit_tls = implicit_tls;
	l->cb = cb;
	l->ctx = ctx;
	snprintf(l->address, sizeof(l->address), "%s", address);
	ev_io_init(&l->io, on_accept, fd, EV_READ);
	l->io.data = l;
	ev_init(&l->backoff, on_backoff);
	l->backoff.data = l;
	update(l);
	return l;
}

void listener_free(struct listener *l)
{
	if (!l)
		return;
	ev_io_stop(l->loop, &l->io);
	ev_timer_stop(l->loop, &l->backoff);
	close(l->fd);
	free(l);
}

void listener_pause(struct listener *l, bool pause)
{
	l->paused = pause;
	update(l);
}

bool listener_implicit_tls(const struct listener *l) { return l->implicit_tls; }
const char *listener_address(const struct listener *l) { return l->address; }

bool listener_peer_is_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return false;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}
