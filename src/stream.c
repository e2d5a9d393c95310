/*
 * stream.c - socket -> TLS -> DEFLATE stream under libev (see stream.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include "log.h"
#include "stream.h"
#include "zio.h"

#define STREAM_MAGIC 0x5354524du /* "STRM" */
/* Compressed input is inflated this much at a time, and only while the
 * decoded buffer has room: DEFLATE expands up to ~1000x, so a peer's small
 * "bomb" may cost at most about a megabyte over the buffer limit. */
#define INFLATE_SLICE 1024
/* Stop reading the socket while this much compressed input waits. */
#define ZRAW_MAX (64 * 1024)

enum stream_state {
	ST_CONNECTING,   /* non-blocking connect() in progress */
	ST_OPEN,         /* plaintext or established TLS */
	ST_TLS_PENDING,  /* TLS requested; waiting for queued plaintext output to drain */
	ST_HANDSHAKING,  /* gnutls_handshake() in progress */
	ST_CLOSED,       /* closed; waiting for the reaper */
};

struct stream {
	unsigned          magic;
	enum stream_state state;
	struct ev_loop   *loop;
	int               fd;           /* read side (and write side for sockets) */
	int               wfd;          /* write side: differs only for --stdio pipes */
	bool              is_socket;    /* false for pipes/ttys: use read(2)/write(2) */
	char              name[128];
	stream_cb         cb;
	void             *ctx;          /* borrowed: the owner */

	ev_io             rio, wio;     /* read / write readiness on fd */
	ev_timer          deadline;     /* connect/handshake/drain deadline */
	ev_idle           kick;         /* deliver hidden data without fd readiness */
	ev_timer          report;       /* a failure met inside an owner's call, told from the loop */
	enum stream_event report_ev;
	char              report_reason[256];
	bool              broken;       /* failed; waiting for the report: no more I/O */
	unsigned          owner_calls;  /* >0 while the owner is inside one of our calls */
	bool              rio_on, wio_on;

	struct buf        in;           /* decoded plaintext not yet consumed by the owner */
	struct buf        out;          /* wire-ready bytes (compressed, not yet encrypted) */
	size_t            out_limit;
	bool              out_was_full; /* for STREAM_EV_DRAINED */
	size_t            tls_retry_len;/* gnutls_record_send must be retried with the same length */

	gnutls_session_t  tls;
	bool              tls_server;
	struct tls_creds *creds;        /* ref held while TLS is on */
	struct zio       *zin, *zout;   /* RFC 4978 when compressing: one object, both directions */
	struct buf        zraw;         /* compressed input not yet inflated (bounded) */

	bool              paused;       /* owner asked us not to deliver input */
	bool              close_after_flush;

	struct addrinfo  *addrs, *next_addr; /* outbound connect candidates */
	char              connect_err[160];

	uint64_t          wire_in, wire_out;
	struct stream    *reap_next;
};

static struct stream *reap_list;

/* Objects of other modules whose free must wait until the call stack unwinds. */
struct deferred {
	void (*fn)(void *arg);
	void *arg;
	struct deferred *next;
};
static struct deferred *deferred_list;
static ev_check reap_watcher;
static bool reap_watcher_on;

static void stream_update_watchers(struct stream *s);
static void stream_do_read(struct stream *s);
static void stream_do_write(struct stream *s);
static void stream_do_handshake(struct stream *s);
static void try_next_address(struct stream *s);
static int inflate_some(struct stream *s);

/*
 * Report an event to the owner. Returns false if the owner closed the stream
 * meanwhile. A stream closing after a flush has been let go by its owner
 * (which may be freed already): it reports nothing more.
 */
static bool emit(struct stream *s, enum stream_event ev, const char *reason)
{
	if (!s->close_after_flush)
		s->cb(s, ev, reason, s->ctx);
	return s->state != ST_CLOSED;
}

/*
 * A failure met while the owner is inside stream_write/flush/start_tls (a
 * write that finds the peer gone) is told from the loop, never from inside
 * that call: an owner that writes in the middle of changing its own state
 * (handing a connection over, say) must not have its callback run and free
 * things under it. Until then the stream does no more I/O.
 */
static void report_later(struct stream *s, enum stream_event ev, const char *reason)
{
	if (s->broken)
		return; /* the first failure is the one told */
	s->broken = true;
	s->report_ev = ev;
	snprintf(s->report_reason, sizeof(s->report_reason), "%s", reason ? reason : "");
	stream_update_watchers(s);
	ev_timer_set(&s->report, 0., 0.);
	ev_timer_start(s->loop, &s->report);
}

static void fail(struct stream *s, const char *reason)
{
	if (s->state == ST_CLOSED)
		return;
	if (s->owner_calls) {
		report_later(s, STREAM_EV_ERROR, reason);
		return;
	}
	emit(s, STREAM_EV_ERROR, reason);
	/* An owner that ignores errors would leave a dead socket watched forever. */
	if (s->state != ST_CLOSED)
		stream_close(s);
}

/* The peer went away (EOF-like errors): the owner decides what follows. */
static void lost(struct stream *s)
{
	if (s->owner_calls)
		report_later(s, STREAM_EV_EOF, NULL);
	else
		emit(s, STREAM_EV_EOF, NULL);
}

static void on_report(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stream *s = w->data;
	(void)loop;
	(void)revents;
	if (s->state == ST_CLOSED)
		return;
	if (s->report_ev == STREAM_EV_EOF)
		emit(s, STREAM_EV_EOF, NULL);
	else
		fail(s, s->report_reason);
}

/* --- GnuTLS transport: plain send/recv that count wire bytes ----------------- */

static ssize_t tls_push(gnutls_transport_ptr_t ptr, const void *data, size_t len)
{
	struct stream *s = ptr;
	ssize_t n = send(s->wfd, data, len, MSG_NOSIGNAL);
	if (n > 0)
		s->wire_out += (uint64_t)n;
	else if (n < 0)
		gnutls_transport_set_errno(s->tls, errno);
	return n;
}

static ssize_t tls_pull(gnutls_transport_ptr_t ptr, void *data, size_t len)
{
	struct stream *s = ptr;
	ssize_t n = recv(s->fd, data, len, 0);
	if (n > 0)
		s->wire_in += (uint64_t)n;
	else if (n < 0)
		gnutls_transport_set_errno(s->tls, errno);
	return n;
}

/* --- watchers --------------------------------------------------------------- */

/* The single place where the interest set is computed (backpressure lives here). */
static void stream_update_watchers(struct stream *s)
{
	bool want_read = false, want_write = false;

	switch (s->broken ? ST_CLOSED : s->state) {
	case ST_CONNECTING:
		want_write = true;
		break;
	case ST_HANDSHAKING:
		if (gnutls_record_get_direction(s->tls))
			want_write = true;
		else
			want_read = true;
		break;
	case ST_TLS_PENDING:
		want_write = buf_len(&s->out) > 0;
		break;
	case ST_OPEN:
		want_read = !s->paused && !s->close_after_flush && !buf_full(&s->in) &&
		            buf_len(&s->zraw) < ZRAW_MAX;
		want_write = buf_len(&s->out) > 0 || s->tls_retry_len > 0;
		break;
	case ST_CLOSED:
		break;
	}
	if (want_read != s->rio_on) {
		if (want_read)
			ev_io_start(s->loop, &s->rio);
		else
			ev_io_stop(s->loop, &s->rio);
		s->rio_on = want_read;
	}
	if (want_write != s->wio_on) {
		if (want_write)
			ev_io_start(s->loop, &s->wio);
		else
			ev_io_stop(s->loop, &s->wio);
		s->wio_on = want_write;
	}
}

static void schedule_kick(struct stream *s)
{
	if (!ev_is_active(&s->kick))
		ev_idle_start(s->loop, &s->kick);
}

static void on_kick(struct ev_loop *loop, ev_idle *w, int revents)
{
	struct stream *s = w->data;
	ev_idle_stop(loop, w);
	if (s->state != ST_OPEN || s->paused)
		return;
	if (s->zin && inflate_some(s) < 0)
		return;
	if (buf_len(&s->in) > 0 && !emit(s, STREAM_EV_DATA, NULL))
		return;
	stream_do_read(s);
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct stream *s = w->data;
	if (s->state == ST_HANDSHAKING)
		stream_do_handshake(s);
	else if (s->state == ST_OPEN)
		stream_do_read(s);
}

static void on_connected(struct stream *s)
{
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err) {
		snprintf(s->connect_err, sizeof(s->connect_err), "%s", strerror(err));
		ev_io_stop(s->loop, &s->rio);
		ev_io_stop(s->loop, &s->wio);
		s->rio_on = s->wio_on = false;
		close(s->fd);
		s->fd = s->wfd = -1;
		try_next_address(s);
		return;
	}
	freeaddrinfo(s->addrs);
	s->addrs = s->next_addr = NULL;
	s->state = ST_OPEN;
	stream_update_watchers(s);
	emit(s, STREAM_EV_CONNECTED, NULL);
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
	struct stream *s = w->data;
	switch (s->state) {
	case ST_CONNECTING:
		on_connected(s);
		break;
	case ST_HANDSHAKING:
		stream_do_handshake(s);
		break;
	case ST_OPEN:
	case ST_TLS_PENDING:
		stream_do_write(s);
		break;
	case ST_CLOSED:
		break;
	}
}

static void on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct stream *s = w->data;
	if (s->close_after_flush) {
		stream_close(s);
		return;
	}
	if (s->state == ST_CONNECTING && s->connect_err[0] == '\0')
		fail(s, "connection timed out");
	else
		fail(s, "timed out");
}

/* --- construction --------------------------------------------------------- */

static struct stream *stream_alloc(struct ev_loop *loop, const char *name, size_t out_limit,
                                   stream_cb cb, void *ctx)
{
	struct stream *s = xcalloc(1, sizeof(*s));
	s->magic = STREAM_MAGIC;
	s->loop = loop;
	s->fd = -1;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->cb = cb;
	s->ctx = ctx;
	s->out_limit = out_limit;
	/* The decoded-input buffer is drained by the owner after every event; its
	 * limit only stops reading when the owner cannot keep up. */
	buf_init(&s->in, out_limit);
	buf_init(&s->out, 0);
	buf_init(&s->zraw, 0);
	ev_init(&s->rio, on_readable);
	ev_init(&s->wio, on_writable);
	s->rio.data = s->wio.data = s;
	ev_init(&s->deadline, on_deadline);
	s->deadline.data = s;
	ev_idle_init(&s->kick, on_kick);
	s->kick.data = s;
	ev_init(&s->report, on_report);
	s->report.data = s;
	return s;
}

static void stream_set_fds(struct stream *s, int rfd, int wfd)
{
	int type;
	socklen_t len = sizeof(type);
	s->fd = rfd;
	s->wfd = wfd;
	s->is_socket = getsockopt(rfd, SOL_SOCKET, SO_TYPE, &type, &len) == 0;
	ev_io_set(&s->rio, rfd, EV_READ);
	ev_io_set(&s->wio, wfd, EV_WRITE);
}

static void stream_set_fd(struct stream *s, int fd)
{
	stream_set_fds(s, fd, fd);
}

static int set_nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return 0;
}

struct stream *stream_new_fds(struct ev_loop *loop, int rfd, int wfd, const char *name, size_t out_limit,
                              stream_cb cb, void *ctx)
{
	struct stream *s = stream_alloc(loop, name, out_limit, cb, ctx);
	set_nonblocking(rfd);
	set_nonblocking(wfd);
	stream_set_fds(s, rfd, wfd);
	if (s->is_socket) {
		int one = 1;
		setsockopt(rfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	s->state = ST_OPEN;
	stream_update_watchers(s);
	return s;
}

struct stream *stream_new_fd(struct ev_loop *loop, int fd, const char *name, size_t out_limit,
                             stream_cb cb, void *ctx)
{
	return stream_new_fds(loop, fd, fd, name, out_limit, cb, ctx);
}

/*
 * Start a non-blocking connect to the next resolved address that accepts one.
 * Returns 0 when a connect is in progress, -1 when the candidates ran out
 * (s->connect_err holds the last error).
 */
static int start_next_connect(struct stream *s)
{
	while (s->next_addr) {
		struct addrinfo *ai = s->next_addr;
		s->next_addr = ai->ai_next;
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			snprintf(s->connect_err, sizeof(s->connect_err), "%s", strerror(errno));
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
			snprintf(s->connect_err, sizeof(s->connect_err), "%s", strerror(errno));
			close(fd);
			continue;
		}
		stream_set_fd(s, fd);
		s->state = ST_CONNECTING;
		stream_update_watchers(s);
		return 0;
	}
	return -1;
}

/* After a failed attempt: try the next address, or report the last error. */
static void try_next_address(struct stream *s)
{
	if (start_next_connect(s) == 0)
		return;
	char reason[sizeof(s->name) + sizeof(s->connect_err) + 16];
	snprintf(reason, sizeof(reason), "connect: %s",
	         s->connect_err[0] ? s->connect_err : "no address");
	fail(s, reason);
}

struct stream *stream_connect(struct ev_loop *loop, const char *host, const char *port, double timeout,
                              const char *name, size_t out_limit, stream_cb cb, void *ctx,
                              char *err, size_t errlen)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	/* Name resolution blocks the loop; upstreams are configured hosts, usually
	 * cached by the resolver. Lookups a client can cause go through resolver.h
	 * and stream_connect_addrinfo instead. */
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "resolve %s: %s", host, gai_strerror(rc));
		return NULL;
	}
	return stream_connect_addrinfo(loop, res, timeout, name, out_limit, cb, ctx, err, errlen);
}

struct stream *stream_connect_addrinfo(struct ev_loop *loop, struct addrinfo *res, double timeout,
                                       const char *name, size_t out_limit, stream_cb cb, void *ctx,
                                       char *err, size_t errlen)
{
	struct stream *s = stream_alloc(loop, name, out_limit, cb, ctx);
	s->addrs = s->next_addr = res;
	/* Immediate failures are returned, never called back: the owner does not
	 * have the stream pointer yet. */
	if (start_next_connect(s) < 0) {
		snprintf(err, errlen, "connect: %s", s->connect_err[0] ? s->connect_err : "no address");
		if (res)
			freeaddrinfo(res);
		buf_free(&s->in);
		buf_free(&s->out);
		s->magic = 0;
		free(s);
		return NULL;
	}
	if (timeout > 0)
		stream_set_deadline(s, timeout);
	return s;
}

void stream_set_deadline(struct stream *s, double seconds)
{
	ev_timer_stop(s->loop, &s->deadline);
	if (seconds > 0 && s->state != ST_CLOSED) {
		ev_timer_set(&s->deadline, seconds, 0.);
		ev_timer_start(s->loop, &s->deadline);
	}
}

/* --- TLS ------------------------------------------------------------------ */

static int tls_attach(struct stream *s, gnutls_session_t session, struct tls_creds *creds, bool server)
{
	s->tls = session;
	s->tls_server = server;
	s->creds = tlsio_creds_ref(creds);
	gnutls_transport_set_ptr(session, s);
	gnutls_transport_set_push_function(session, tls_push);
	gnutls_transport_set_pull_function(session, tls_pull);
	/* Bytes received before the switch are plaintext the peer pipelined: drop them. */
	buf_clear(&s->in);
	s->state = ST_TLS_PENDING;
	if (buf_len(&s->out) == 0) {
		s->state = ST_HANDSHAKING;
		s->owner_calls++;
		stream_do_handshake(s);
		s->owner_calls--;
	} else {
		stream_update_watchers(s);
	}
	return 0;
}

int stream_start_tls_client(struct stream *s, struct tls_creds *creds, const char *server_name,
                            char *err, size_t errlen)
{
	gnutls_session_t session = s->tls ? NULL : tlsio_client_session(creds, server_name, err, errlen);
	if (!session) {
		if (s->tls)
			snprintf(err, errlen, "TLS already active");
		return -1;
	}
	return tls_attach(s, session, creds, false);
}

int stream_start_tls_server(struct stream *s, struct tls_creds *creds, char *err, size_t errlen)
{
	gnutls_session_t session = s->tls ? NULL : tlsio_server_session(creds, err, errlen);
	if (!session) {
		if (s->tls)
			snprintf(err, errlen, "TLS already active");
		return -1;
	}
	return tls_attach(s, session, creds, true);
}

static void stream_do_handshake(struct stream *s)
{
	int ret = gnutls_handshake(s->tls);
	if (ret == GNUTLS_E_SUCCESS) {
		s->state = ST_OPEN;
		stream_update_watchers(s);
		if (!emit(s, STREAM_EV_TLS_READY, NULL))
			return;
		/* Application data may already sit decrypted inside GnuTLS. */
		if (gnutls_record_check_pending(s->tls) > 0)
			schedule_kick(s);
		if (buf_len(&s->out) > 0)
			stream_do_write(s);
		return;
	}
	if (!gnutls_error_is_fatal(ret)) {
		stream_update_watchers(s);
		return;
	}
	char reason[512];
	tlsio_describe_failure(s->tls, ret, reason, sizeof(reason));
	fail(s, reason);
}

/* --- compression ---------------------------------------------------------- */

/* Inflate pending compressed input while the decoded buffer has room. Returns 0, or -1 after fail(). */
static int inflate_some(struct stream *s)
{
	while (buf_len(&s->zraw) > 0 && !buf_full(&s->in)) {
		size_t n = buf_len(&s->zraw) < INFLATE_SLICE ? buf_len(&s->zraw) : INFLATE_SLICE;
		if (zio_inflate(s->zin, buf_head(&s->zraw), n, &s->in) < 0) {
			char reason[256];
			snprintf(reason, sizeof(reason), "decompression: %s", zio_error(s->zin));
			fail(s, reason);
			return -1;
		}
		buf_consume(&s->zraw, n);
	}
	return 0;
}

static int enable_compress(struct stream *s, struct zio *z)
{
	if (s->zin || !z) {
		zio_free(z);
		return -1;
	}
	/* One zio holds both the compressor and the decompressor: a second one
	 * would carry an unused deflate state (a few hundred KiB) per connection. */
	s->zin = z;
	s->zout = s->zin;
	/* Whatever the owner has not consumed arrived after the COMPRESS exchange:
	 * it is compressed. It is decoded from the loop (never inside the owner's
	 * call), a slice at a time. */
	if (buf_len(&s->in) > 0) {
		buf_append(&s->zraw, buf_head(&s->in), buf_len(&s->in));
		buf_clear(&s->in);
		schedule_kick(s);
	}
	return 0;
}

int stream_enable_compress(struct stream *s, int level)
{
	return enable_compress(s, zio_new(level));
}

int stream_enable_compress_lean(struct stream *s, int level)
{
	return enable_compress(s, zio_new_lean(level));
}

/* --- reading -------------------------------------------------------------- */

/* The peer's side ended (reason NULL) or failed: deliver what was read first. */
static void read_ended(struct stream *s, bool got, const char *reason)
{
	if (got && !emit(s, STREAM_EV_DATA, NULL))
		return;
	if (reason)
		fail(s, reason);
	else
		emit(s, STREAM_EV_EOF, NULL);
}

static void stream_do_read(struct stream *s)
{
	uint8_t chunk[STREAM_READ_CHUNK];
	bool got = false;

	for (int round = 0; round < STREAM_MAX_READS_PER_EVENT; round++) {
		if (s->paused || s->close_after_flush || buf_full(&s->in) || buf_len(&s->zraw) >= ZRAW_MAX)
			break;
		ssize_t n;
		if (s->tls) {
			n = gnutls_record_recv(s->tls, chunk, sizeof(chunk));
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
				break;
			if (n == GNUTLS_E_REHANDSHAKE)
				continue; /* refuse renegotiation silently; TLS 1.3 has none */
			if (n == GNUTLS_E_PREMATURE_TERMINATION || n == 0) {
				read_ended(s, got, NULL);
				return;
			}
			if (n < 0) {
				char reason[256];
				snprintf(reason, sizeof(reason), "TLS read: %s", gnutls_strerror((int)n));
				read_ended(s, got, reason);
				return;
			}
		} else {
			if (s->is_socket)
				n = recv(s->fd, chunk, sizeof(chunk), 0);
			else
				n = read(s->fd, chunk, sizeof(chunk));
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				break;
			if (n == 0 || (n < 0 && log_errno_is_peer_event(errno))) {
				read_ended(s, got, NULL);
				return;
			}
			if (n < 0) {
				char reason[256];
				snprintf(reason, sizeof(reason), "read: %s", strerror(errno));
				read_ended(s, got, reason);
				return;
			}
			s->wire_in += (uint64_t)n;
		}
		if (s->zin) {
			buf_append(&s->zraw, chunk, (size_t)n);
			if (inflate_some(s) < 0)
				return;
		} else {
			buf_append(&s->in, chunk, (size_t)n);
		}
		got = true;
	}
	/* Stopped early with decrypted records still inside GnuTLS: no fd event
	 * will announce them, so come back from the loop. */
	if (s->tls && gnutls_record_check_pending(s->tls) > 0 && !s->paused)
		schedule_kick(s);
	/* Likewise compressed input left undecoded because the buffer was full. */
	if (buf_len(&s->zraw) > 0 && !s->paused && !buf_full(&s->in))
		schedule_kick(s);
	stream_update_watchers(s);
	if (got && buf_len(&s->in) > 0) {
		if (!emit(s, STREAM_EV_DATA, NULL))
			return;
		/* The owner consumed input: a full buffer may have room again, and
		 * compressed input may still wait to be decoded. */
		stream_update_watchers(s);
		if (buf_len(&s->zraw) > 0 && !s->paused)
			schedule_kick(s);
	}
}

/* --- writing -------------------------------------------------------------- */

void stream_write(struct stream *s, const void *data, size_t len)
{
	if (s->state == ST_CLOSED || s->broken || len == 0)
		return;
	if (s->zout) {
		if (zio_deflate(s->zout, data, len, false, &s->out) < 0) {
			s->owner_calls++;
			fail(s, "compression failed");
			s->owner_calls--;
		}
		return;
	}
	buf_append(&s->out, data, len);
}

void stream_write_str(struct stream *s, const char *str)
{
	stream_write(s, str, strlen(str));
}

void stream_printf(struct stream *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	stream_write(s, line, (size_t)n);
}

void stream_flush(struct stream *s)
{
	if (s->state == ST_CLOSED || s->broken)
		return;
	s->owner_calls++;
	if (s->zout && zio_deflate(s->zout, NULL, 0, true, &s->out) < 0) {
		fail(s, "compression failed");
	} else {
		if (buf_full(&s->out) || (s->out_limit && buf_len(&s->out) >= s->out_limit))
			s->out_was_full = true;
		if (s->state == ST_OPEN || s->state == ST_TLS_PENDING)
			stream_do_write(s);
	}
	/* s stays allocated until the reaper runs, even if it closed meanwhile */
	s->owner_calls--;
}

static void stream_do_write(struct stream *s)
{
	while (buf_len(&s->out) > 0) {
		ssize_t n;
		if (s->tls && s->state == ST_OPEN) {
			size_t len = s->tls_retry_len;
			if (!len)
				len = buf_len(&s->out) < STREAM_READ_CHUNK ? buf_len(&s->out) : STREAM_READ_CHUNK;
			n = gnutls_record_send(s->tls, buf_head(&s->out), len);
			if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
				s->tls_retry_len = len;
				break;
			}
			s->tls_retry_len = 0;
			if (n < 0) {
				char reason[256];
				snprintf(reason, sizeof(reason), "TLS write: %s", gnutls_strerror((int)n));
				fail(s, reason);
				return;
			}
		} else {
			if (s->is_socket)
				n = send(s->wfd, buf_head(&s->out), buf_len(&s->out), MSG_NOSIGNAL);
			else
				n = write(s->wfd, buf_head(&s->out), buf_len(&s->out));
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
				break;
			if (n < 0) {
				char reason[256];
				snprintf(reason, sizeof(reason), "write: %s", strerror(errno));
				if (log_errno_is_peer_event(errno) && !s->close_after_flush) {
					lost(s);
					return;
				}
				fail(s, reason);
				return;
			}
			s->wire_out += (uint64_t)n;
		}
		buf_consume(&s->out, (size_t)n);
	}

	if (buf_len(&s->out) == 0) {
		if (s->state == ST_TLS_PENDING) {
			s->state = ST_HANDSHAKING;
			stream_do_handshake(s);
			return;
		}
		if (s->close_after_flush) {
			stream_close(s);
			return;
		}
	}
	stream_update_watchers(s);
	if (s->out_was_full && buf_len(&s->out) <= s->out_limit / 2) {
		s->out_was_full = false;
		emit(s, STREAM_EV_DRAINED, NULL);
	}
}

size_t stream_output_pending(const struct stream *s)
{
	return buf_len(&s->out);
}

bool stream_output_full(const struct stream *s)
{
	return s->out_limit && buf_len(&s->out) >= s->out_limit;
}

void stream_pause_reading(struct stream *s, bool pause)
{
	if (s->state == ST_CLOSED || s->paused == pause)
		return;
	s->paused = pause;
	if (pause) {
		ev_idle_stop(s->loop, &s->kick);
	} else {
		/* Input may be waiting in our buffer or inside GnuTLS. */
		schedule_kick(s);
		if (stream_output_full(s))
			s->out_was_full = true;
	}
	stream_update_watchers(s);
}

/* --- closing -------------------------------------------------------------- */

void stream_close(struct stream *s)
{
	if (!s || s->state == ST_CLOSED)
		return;
	s->state = ST_CLOSED;
	ev_io_stop(s->loop, &s->rio);
	ev_io_stop(s->loop, &s->wio);
	s->rio_on = s->wio_on = false;
	ev_timer_stop(s->loop, &s->deadline);
	ev_idle_stop(s->loop, &s->kick);
	ev_timer_stop(s->loop, &s->report);
	if (s->tls) {
		/* Best effort close_notify; never wait for the peer's. */
		gnutls_bye(s->tls, GNUTLS_SHUT_WR);
		gnutls_deinit(s->tls);
		s->tls = NULL;
	}
	tlsio_creds_unref(s->creds);
	s->creds = NULL;
	if (s->wfd >= 0 && s->wfd != s->fd)
		close(s->wfd);
	if (s->fd >= 0)
		close(s->fd);
	s->fd = s->wfd = -1;
	zio_free(s->zin);
	s->zin = s->zout = NULL;
	if (s->addrs)
		freeaddrinfo(s->addrs);
	s->addrs = s->next_addr = NULL;
	buf_free(&s->in);
	buf_free(&s->out);
	buf_free(&s->zraw);
	s->reap_next = reap_list;
	reap_list = s;
}

void stream_close_after_flush(struct stream *s)
{
	if (s->state == ST_CLOSED)
		return;
	s->close_after_flush = true;
	if (s->broken || s->state == ST_CONNECTING || s->state == ST_HANDSHAKING ||
	    (s->state == ST_OPEN && buf_len(&s->out) == 0 && !s->zout)) {
		stream_close(s);
		return;
	}
	stream_flush(s);
}

/* --- accessors ------------------------------------------------------------ */

struct buf *stream_input(struct stream *s) { return &s->in; }
bool stream_is_tls(const struct stream *s) { return s->tls != NULL; }
bool stream_is_compressed(const struct stream *s) { return s->zout != NULL; }
const char *stream_name(const struct stream *s) { return s->name; }

void stream_wire_counts(const struct stream *s, uint64_t *in, uint64_t *out)
{
	*in = s->wire_in;
	*out = s->wire_out;
}

/* --- reaper --------------------------------------------------------------- */

void loop_defer_free(void (*fn)(void *arg), void *arg)
{
	struct deferred *d = xmalloc(sizeof(*d));
	d->fn = fn;
	d->arg = arg;
	d->next = deferred_list;
	deferred_list = d;
}

static void reap(void)
{
	while (deferred_list) {
		struct deferred *d = deferred_list;
		deferred_list = d->next;
		d->fn(d->arg);
		free(d);
	}
	while (reap_list) {
		struct stream *s = reap_list;
		reap_list = s->reap_next;
		s->magic = 0;
		free(s);
	}
}

static void on_reap(struct ev_loop *loop, ev_check *w, int revents)
{
	reap();
}

void stream_lib_init(struct ev_loop *loop)
{
	if (reap_watcher_on)
		return;
	ev_check_init(&reap_watcher, on_reap);
	ev_check_start(loop, &reap_watcher);
	/* The reaper alone must not keep the loop alive. */
	ev_unref(loop);
	reap_watcher_on = true;
}

void stream_lib_shutdown(struct ev_loop *loop)
{
	if (reap_watcher_on) {
		ev_ref(loop);
		ev_check_stop(loop, &reap_watcher);
		reap_watcher_on = false;
	}
	reap();
}
