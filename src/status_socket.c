/*
 * status_socket.c - the status report on a local Unix socket (see status_socket.h).
 *
 * Each reader is a tiny connection: the report is built whole when it
 * connects (so it is one consistent picture), then written as the socket
 * takes it, under a deadline. Nothing a reader sends is read.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "status_socket.h"

struct section {
	int        rank;
	status_fn  fn;
	void      *data;
};

struct reader {
	struct status_server *st;
	struct reader        *next;
	int                   fd;
	ev_io                 w;
	ev_timer              deadline;
	struct buf            out;
};

struct status_server {
	struct ev_loop *loop;
	int             fd;
	ev_io           accept_w;
	char            path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct section *sections;
	size_t          nsections;
	struct reader  *readers;
	unsigned        nreaders;
	bool            weak;       /* the accept watcher is unref'd */
};

static int fill_addr(struct sockaddr_un *sa, const char *path, char *err, size_t errlen)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sa->sun_path)) {
		snprintf(err, errlen, "status socket path too long (at most %zu bytes): %s",
		         sizeof(sa->sun_path) - 1, path);
		return -1;
	}
	memcpy(sa->sun_path, path, strlen(path) + 1);
	return 0;
}

static void reader_free(struct reader *r)
{
	struct status_server *st = r->st;

	for (struct reader **p = &st->readers; *p; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			break;
		}
	st->nreaders--;
	ev_io_stop(st->loop, &r->w);
	ev_timer_stop(st->loop, &r->deadline);
	close(r->fd);
	buf_free(&r->out);
	free(r);
}

static void reader_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct reader *r = w->data;

	while (buf_len(&r->out) > 0) {
		ssize_t n = send(r->fd, buf_head(&r->out), buf_len(&r->out), MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				ev_io_start(loop, &r->w);
				return;
			}
			break; /* the reader went away: nothing to report to */
		}
		buf_consume(&r->out, (size_t)n);
	}
	reader_free(r);
}

static void reader_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	reader_free(w->data);
}

/* Only the daemon's own user (or root) may read its status. */
static bool peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == getuid() || cred.uid == 0;
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct status_server *st = w->data;

	for (int i = 0; i < STATUS_MAX_CLIENTS; i++) {
		int fd = accept4(st->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
				log_warn("status socket %s: accept: %s", st->path, strerror(errno));
			return;
		}
		if (st->nreaders >= STATUS_MAX_CLIENTS || !peer_allowed(fd)) {
			close(fd);
			continue;
		}
		struct reader *r = xcalloc(1, sizeof(*r));
		r->st = st;
		r->fd = fd;
		buf_init(&r->out, 0);
		status_report(st, &r->out);
		ev_io_init(&r->w, reader_write, fd, EV_WRITE);
		r->w.data = r;
		ev_timer_init(&r->deadline, reader_timeout, STATUS_WRITE_TIMEOUT, 0.);
		r->deadline.data = r;
		ev_timer_start(loop, &r->deadline);
		r->next = st->readers;
		st->readers = r;
		st->nreaders++;
		reader_write(loop, &r->w, EV_WRITE);
	}
}

/* Something listens on path: a running daemon (connect works) or a leftover. */
static bool socket_answers(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;
	close(fd);
	return ok;
}

struct status_server *status_server_new(struct ev_loop *loop, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	int fd;

	if (fill_addr(&sa, path, err, errlen) < 0)
		return NULL;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "status socket: %s", strerror(errno));
		return NULL;
	}
	/* Created 0600 from the start: no moment where another user could connect. */
	mode_t old = umask(0177);
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (rc < 0 && errno == EADDRINUSE) {
		if (socket_answers(&sa)) {
			umask(old);
			close(fd);
			snprintf(err, errlen, "status socket %s: another daemon answers there", path);
			return NULL;
		}
		unlink(path);
		rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	umask(old);
	if (rc < 0 || listen(fd, STATUS_MAX_CLIENTS) < 0) {
		snprintf(err, errlen, "status socket %s: %s", path, strerror(errno));
		close(fd);
		return NULL;
	}
	struct status_server *st = xcalloc(1, sizeof(*st));
	st->loop = loop;
	st->fd = fd;
	memcpy(st->path, sa.sun_path, sizeof(st->path));
	ev_io_init(&st->accept_w, on_accept, fd, EV_READ);
	st->accept_w.data = st;
	ev_io_start(loop, &st->accept_w);
	return st;
}

void status_server_weak(struct status_server *st)
{
	if (!st->weak) {
		ev_unref(st->loop);
		st->weak = true;
	}
}

void status_server_free(struct status_server *st)
{
	if (!st)
		return;
	while (st->readers)
		reader_free(st->readers);
	if (st->weak)
		ev_ref(st->loop);
	ev_io_stop(st->loop, &st->accept_w);
	close(st->fd);
	unlink(st->path);
	free(st->sections);
	free(st);
}

void status_add(struct status_server *st, int rank, status_fn fn, void *data)
{
	size_t i;

	st->sections = xrealloc(st->sections, (st->nsections + 1) * sizeof(*st->sections));
	for (i = st->nsections; i > 0 && st->sections[i - 1].rank > rank; i--)
		st->sections[i] = st->sections[i - 1];
	st->sections[i] = (struct section){ .rank = rank, .fn = fn, .data = data };
	st->nsections++;
}

void status_report(const struct status_server *st, struct buf *out)
{
	size_t start = buf_len(out);

	for (size_t i = 0; i < st->nsections; i++)
		st->sections[i].fn(st->sections[i].data, out);
	if (buf_len(out) - start > STATUS_REPORT_MAX) {
		/* Cut at a line end, and say so. */
		const uint8_t *h = buf_head(out) + start;
		size_t keep = STATUS_REPORT_MAX;
		while (keep > 0 && h[keep - 1] != '\n')
			keep--;
		struct buf cut;
		buf_init(&cut, 0);
		buf_append(&cut, buf_head(out), start + keep);
		buf_clear(out);
		buf_append(out, buf_head(&cut), buf_len(&cut));
		buf_free(&cut);
		buf_printf(out, "truncated: the report is longer than %d bytes\n", STATUS_REPORT_MAX);
	}
}

int status_fetch(const char *path, double timeout, struct buf *out, char *err, size_t errlen)
{
	struct sockaddr_un sa;
	struct timeval tv = { .tv_sec = (time_t)timeout, .tv_usec = (long)((timeout - (double)(time_t)timeout) * 1e6) };
	int fd;

	if (fill_addr(&sa, path, err, errlen) < 0)
		return -1;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "no daemon answers on %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	for (;;) {
		uint8_t *p = buf_reserve(out, 16384);
		ssize_t n = recv(fd, p, 16384, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "reading %s: %s", path,
			         errno == EAGAIN ? "no complete report in time" : strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		buf_commit(out, (size_t)n);
		if (buf_len(out) > STATUS_REPORT_MAX + 4096) {
			snprintf(err, errlen, "reading %s: the report is larger than %d bytes", path, STATUS_REPORT_MAX);
			close(fd);
			return -1;
		}
	}
	close(fd);
	return 0;
}

void status_duration(double seconds, char *out, size_t outlen)
{
	unsigned long s = seconds > 0 ? (unsigned long)seconds : 0;

	if (s < 60)
		snprintf(out, outlen, "%lus", s);
	else if (s < 3600)
		snprintf(out, outlen, "%lum%02lus", s / 60, s % 60);
	else if (s < 86400)
		snprintf(out, outlen, "%luh%02lum", s / 3600, s / 60 % 60);
	else
		snprintf(out, outlen, "%lud%02luh", s / 86400, s / 3600 % 24);
}
