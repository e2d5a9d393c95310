/*
 * Unit tests for stream.c (with tlsio.c and zio.c underneath): two streams
 * on a socketpair under a real libev loop, plaintext, DEFLATE, TLS with
 * verification, both stacked, a verification failure and backpressure.
 * Every loop run is bounded by a timer, so a broken stream fails, not hangs.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <ev.h>

#include "buf.h"
#include "stream.h"
#include "suites.h"
#include "tlsio.h"

#define TEST_DEADLINE 10.0 /* seconds for any one exchange */

struct end {
	struct stream *s;
	struct buf     got;       /* everything read */
	bool           tls_ready;
	bool           error;
	bool           drained;
	bool           eof;
	bool           closed;    /* the stream closed itself after an error */
	size_t         max_in;    /* largest decoded input handed over at once */
	char           reason[512];
};

struct pair {
	struct ev_loop *loop;
	struct end      a, b;
	size_t          want_b;   /* stop when b has this many bytes */
	size_t          want_a;
	bool            want_tls;
	bool            want_error;
	bool            want_drained;
	bool            want_end;   /* a's EOF or error */
	ev_timer        timeout;
	bool            timed_out;
};

static struct pair *current;

static bool done(const struct pair *p)
{
	if (p->want_error)
		return p->a.error || p->b.error;
	if (p->want_end)
		return p->a.error || p->a.eof;
	if (p->want_tls && !(p->a.tls_ready && p->b.tls_ready))
		return false;
	if (p->want_drained && !p->a.drained)
		return false;
	return buf_len(&p->b.got) >= p->want_b && buf_len(&p->a.got) >= p->want_a;
}

static void on_event(struct stream *s, enum stream_event ev, const char *reason, void *ctx)
{
	struct end *e = ctx;
	switch (ev) {
	case STREAM_EV_DATA: {
		struct buf *in = stream_input(s);
		if (buf_len(in) > e->max_in)
			e->max_in = buf_len(in);
		buf_append(&e->got, buf_head(in), buf_len(in));
		buf_consume(in, buf_len(in));
		break;
	}
	case STREAM_EV_TLS_READY:
		e->tls_ready = true;
		break;
	case STREAM_EV_ERROR:
		e->error = true;
		e->closed = true; /* stream.c closes a stream whose owner ignores the error */
		snprintf(e->reason, sizeof(e->reason), "%s", reason ? reason : "");
		break;
	case STREAM_EV_DRAINED:
		e->drained = true;
		break;
	case STREAM_EV_EOF:
		e->eof = true;
		break;
	default:
		break;
	}
	if (done(current))
		ev_break(current->loop, EVBREAK_ONE);
}

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	current->timed_out = true;
	ev_break(loop, EVBREAK_ONE);
}

static void pair_open(struct pair *p, size_t out_limit)
{
	int sv[2];
	memset(p, 0, sizeof(*p));
	current = p;
	p->loop = ev_loop_new(EVFLAG_AUTO);
	stream_lib_init(p->loop);
	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	buf_init(&p->a.got, 0);
	buf_init(&p->b.got, 0);
	p->a.s = stream_new_fd(p->loop, sv[0], "a", out_limit, on_event, &p->a);
	p->b.s = stream_new_fd(p->loop, sv[1], "b", out_limit, on_event, &p->b);
	ev_timer_init(&p->timeout, on_timeout, TEST_DEADLINE, 0.);
}

/* Run the loop until done() or the deadline. Returns false on timeout. */
static bool pair_run(struct pair *p)
{
	if (done(p))
		return true;
	ev_timer_set(&p->timeout, TEST_DEADLINE, 0.);
	ev_timer_start(p->loop, &p->timeout);
	ev_run(p->loop, 0);
	ev_timer_stop(p->loop, &p->timeout);
	return !p->timed_out;
}

static void pair_close(struct pair *p)
{
	if (!p->a.closed)
		stream_close(p->a.s);
	if (!p->b.closed)
		stream_close(p->b.s);
	stream_lib_shutdown(p->loop);
	buf_free(&p->a.got);
	buf_free(&p->b.got);
	ev_loop_destroy(p->loop);
	current = NULL;
}

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *d = xmalloc(n);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		/* half text-like, half noise: compressible but not trivially */
		d[i] = (i / 64) % 2 ? (uint8_t)(seed >> 16) : (uint8_t)('a' + i % 26);
	}
	return d;
}

static void exchange(struct pair *p, size_t n)
{
	uint8_t *x = pattern(n, 1), *y = pattern(n / 2, 2);
	stream_write(p->a.s, x, n);
	stream_flush(p->a.s);
	stream_write(p->b.s, y, n / 2);
	stream_flush(p->b.s);
	p->want_b = n;
	p->want_a = n / 2;
	CU_ASSERT_TRUE(pair_run(p));
	CU_ASSERT_EQUAL(buf_len(&p->b.got), n);
	CU_ASSERT_EQUAL(buf_len(&p->a.got), n / 2);
	if (buf_len(&p->b.got) == n)
		CU_ASSERT_EQUAL(memcmp(buf_head(&p->b.got), x, n), 0);
	if (buf_len(&p->a.got) == n / 2)
		CU_ASSERT_EQUAL(memcmp(buf_head(&p->a.got), y, n / 2), 0);
	free(x);
	free(y);
}

static void test_plain(void)
{
	struct pair p;
	pair_open(&p, 0);
	exchange(&p, 1 << 20);
	pair_close(&p);
}

static void test_compressed(void)
{
	struct pair p;
	pair_open(&p, 0);
	CU_ASSERT_EQUAL(stream_enable_compress(p.a.s, -1), 0);
	CU_ASSERT_EQUAL(stream_enable_compress(p.b.s, 9), 0);
	exchange(&p, 300000);
	uint64_t in, out;
	stream_wire_counts(p.a.s, &in, &out);
	CU_ASSERT_TRUE(out < 300000); /* it really went compressed */
	pair_close(&p);
}

/* A self-signed certificate for "localhost" in a temp dir; the client trusts it directly. */
static char cert_path[320], key_path[320], tmpdir[256];

static void make_cert(void)
{
	char err[256];
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pimap-unit-XXXXXX");
	CU_ASSERT_FATAL(mkdtemp(tmpdir) != NULL);
	snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmpdir);
	snprintf(key_path, sizeof(key_path), "%s/key.pem", tmpdir);
	CU_ASSERT_EQUAL_FATAL(tlsio_ensure_self_signed(cert_path, key_path, err, sizeof(err)), 0);
	/* A second call keeps the existing pair. */
	CU_ASSERT_EQUAL(tlsio_ensure_self_signed(cert_path, key_path, err, sizeof(err)), 0);
}

static void drop_cert(void)
{
	unlink(cert_path);
	unlink(key_path);
	rmdir(tmpdir);
}

static void start_tls(struct pair *p, const char *name)
{
	char err[256];
	struct tls_creds *server = tlsio_server_creds_new(cert_path, key_path, err, sizeof(err));
	struct tls_creds *client = tlsio_client_creds_new(cert_path, err, sizeof(err));
	CU_ASSERT_PTR_NOT_NULL_FATAL(server);
	CU_ASSERT_PTR_NOT_NULL_FATAL(client);
	CU_ASSERT_EQUAL(stream_start_tls_server(p->a.s, server, err, sizeof(err)), 0);
	CU_ASSERT_EQUAL(stream_start_tls_client(p->b.s, client, name, err, sizeof(err)), 0);
	/* The streams hold their own references. */
	tlsio_creds_unref(server);
	tlsio_creds_unref(client);
}

static void test_tls_and_deflate(void)
{
	struct pair p;
	make_cert();
	pair_open(&p, 0);
	start_tls(&p, "localhost");
	p.want_tls = true;
	CU_ASSERT_TRUE(pair_run(&p));
	CU_ASSERT_TRUE(stream_is_tls(p.a.s) && stream_is_tls(p.b.s));
	exchange(&p, 200000);
	/* COMPRESS on top of TLS, as after an IMAP COMPRESS exchange. */
	CU_ASSERT_EQUAL(stream_enable_compress(p.a.s, -1), 0);
	CU_ASSERT_EQUAL(stream_enable_compress(p.b.s, -1), 0);
	buf_clear(&p.a.got);
	buf_clear(&p.b.got);
	exchange(&p, 500000);
	pair_close(&p);
	drop_cert();
}

static void test_tls_wrong_name(void)
{
	struct pair p;
	make_cert();
	pair_open(&p, 0);
	start_tls(&p, "imap.example.org");
	p.want_error = true;
	CU_ASSERT_TRUE(pair_run(&p));
	CU_ASSERT_TRUE(p.b.error);
	CU_ASSERT_PTR_NOT_NULL(strstr(p.b.reason, "certificate verification failed"));
	pair_close(&p);
	drop_cert();
}

static void test_backpressure(void)
{
	struct pair p;
	size_t n = 4u << 20;
	pair_open(&p, 64 * 1024);
	uint8_t *x = pattern(n, 3);
	stream_pause_reading(p.b.s, true);
	stream_write(p.a.s, x, n);
	stream_flush(p.a.s);
	/* The kernel takes some; the rest waits in a's queue over its limit. */
	CU_ASSERT_TRUE(stream_output_full(p.a.s));
	stream_pause_reading(p.b.s, false);
	p.want_b = n;
	p.want_drained = true;
	CU_ASSERT_TRUE(pair_run(&p));
	CU_ASSERT_TRUE(p.a.drained);
	CU_ASSERT_EQUAL(buf_len(&p.b.got), n);
	CU_ASSERT_FALSE(stream_output_full(p.a.s));
	free(x);
	pair_close(&p);
}

/* 32 MiB of zeros deflate to ~32 KiB: the receiver decodes them a slice at a
 * time as its buffer drains, never all at once. */
static void test_inflate_bounded(void)
{
	struct pair p;
	size_t n = 32u << 20, limit = 64 * 1024;
	pair_open(&p, limit);
	CU_ASSERT_EQUAL(stream_enable_compress(p.a.s, 9), 0);
	CU_ASSERT_EQUAL(stream_enable_compress(p.b.s, 9), 0);
	uint8_t *zeros = xcalloc(1, n);
	for (size_t off = 0; off < n; off += 1 << 20)
		stream_write(p.a.s, zeros + off, 1 << 20);
	stream_flush(p.a.s);
	p.want_b = n;
	CU_ASSERT_TRUE(pair_run(&p));
	CU_ASSERT_EQUAL(buf_len(&p.b.got), n);
	/* one slice of compressed input (1 KiB) expands to at most ~1 MiB */
	CU_ASSERT_TRUE(p.b.max_in <= limit + (1100u << 10));
	uint64_t in, out;
	stream_wire_counts(p.b.s, &in, &out);
	CU_ASSERT_TRUE(in < n / 100);
	free(zeros);
	pair_close(&p);
}

/*
 * A write that finds the peer gone is told from the loop, not from inside
 * stream_flush: the gateway once wrote on a store connection while handing
 * it over, the failure callback freed the session, and the caller used it.
 */
static void test_write_failure_told_later(void)
{
	struct pair p;
	pair_open(&p, 0);
	stream_close(p.b.s);
	p.b.closed = true;
	stream_write_str(p.a.s, "a1 IDLE\r\n");
	stream_flush(p.a.s);
	CU_ASSERT_FALSE(p.a.eof || p.a.error); /* nothing ran inside the call */
	stream_write_str(p.a.s, "DONE\r\n");  /* later writes are dropped, not fatal */
	stream_flush(p.a.s);
	p.want_end = true;
	CU_ASSERT_TRUE(pair_run(&p));
	CU_ASSERT_TRUE(p.a.eof || p.a.error);
	if (p.a.eof && !p.a.error) {
		stream_close(p.a.s);
		p.a.closed = true;
	}
	pair_close(&p);
}

void suite_stream(void)
{
	tlsio_global_init();
	ADD_SUITE("stream",
	          {"plaintext both ways", test_plain},
	          {"DEFLATE both ways", test_compressed},
	          {"TLS with verification, then DEFLATE on top", test_tls_and_deflate},
	          {"TLS name mismatch fails verification", test_tls_wrong_name},
	          {"backpressure and DRAINED", test_backpressure},
	          {"inflating is bounded by the input buffer", test_inflate_bounded},
	          {"a write failure is told from the loop, not inside the call", test_write_failure_told_later});
}
