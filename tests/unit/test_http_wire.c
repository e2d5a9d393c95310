/*
 * test_http_wire.c - the HTTPS binding's framing: requests and responses
 * fed whole, byte by byte and in random splits (same events, same body),
 * pipelined requests, every limit (head bytes, header count, body), bad
 * chunking and smuggling attempts, header values (cookies, media types,
 * Accept-Encoding), chunk writing and Content-Encoding round trips.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "http_wire.h"
#include "suites.h"

static const struct http_limits LIM = {.max_header_bytes = 8192, .max_headers = 64, .max_body = 1 << 20,
                                       .chunked_unlimited = true};

/* What a reader made of an input: the events in order, the body, the last head. */
struct outcome {
	char events[64];   /* H = head, D = done, E = error */
	size_t nevents;
	struct buf body;
	struct http_head head;
	unsigned error_status;
	size_t consumed;
};

static uint32_t rng = 12345;
static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/*
 * Feed data in pieces: split 0 = whole, 1 = byte by byte, 2 = random. After
 * DONE the next message is read (pipelining). Stops at the first error.
 */
static void run(enum http_reader_kind kind, const struct http_limits *lim, const char *data, size_t len, int split,
                struct outcome *o)
{
	memset(o, 0, sizeof(*o));
	buf_init(&o->body, 0);
	struct http_reader *r = http_reader_new(kind, lim);
	size_t off = 0;
	struct buf pending;
	buf_init(&pending, 0);
	while (off < len || buf_len(&pending)) {
		if (off < len) {
			size_t n = split == 0 ? len - off : split == 1 ? 1 : 1 + next_rand() % 17;
			if (n > len - off)
				n = len - off;
			buf_append(&pending, data + off, n);
			off += n;
		}
		for (;;) {
			size_t used = 0;
			enum http_read_result res = http_reader_feed(r, buf_head(&pending), buf_len(&pending), &used, &o->body);
			buf_consume(&pending, used);
			o->consumed += used;
			if (res == HTTP_READ_HEAD) {
				o->events[o->nevents++] = 'H';
				o->head = *http_reader_head(r);
				continue;
			}
			if (res == HTTP_READ_DONE) {
				o->events[o->nevents++] = 'D';
				http_reader_next(r);
				continue;
			}
			if (res == HTTP_READ_ERROR) {
				/* An error in the same input as the head ends the message before HEAD is
				 * reported; the caller answers the error either way. Compare without it. */
				if (o->nevents && o->events[o->nevents - 1] == 'H')
					o->nevents--;
				o->events[o->nevents++] = 'E';
				o->error_status = http_reader_error_status(r);
				http_reader_free(r);
				buf_free(&pending);
				return;
			}
			break;
		}
		if (off == len && buf_len(&pending))
			break; /* no progress possible on what is left */
	}
	if (kind == HTTP_READER_RESPONSE && http_reader_eof(r, &o->body) == HTTP_READ_DONE)
		o->events[o->nevents++] = 'D';
	buf_free(&pending);
	http_reader_free(r);
}

/* Every split gives the same events and body. */
static void expect(enum http_reader_kind kind, const struct http_limits *lim, const char *data, const char *events,
                   const char *body, unsigned error_status)
{
	for (int split = 0; split < 3; split++) {
		for (int round = 0; round < (split == 2 ? 20 : 1); round++) {
			struct outcome o;
			run(kind, lim, data, strlen(data), split, &o);
			CU_ASSERT_STRING_EQUAL(o.events, events);
			if (strcmp(o.events, events) != 0)
				fprintf(stderr, "\n  split %d: events %s, want %s (input %.40s...)\n", split, o.events, events,
				        data);
			if (body) {
				char *got = buf_str(&o.body);
				CU_ASSERT_STRING_EQUAL(got, body);
				if (strcmp(got, body) != 0)
					fprintf(stderr, "\n  split %d: body [%s], want [%s]\n", split, got, body);
				free(got);
			}
			if (error_status)
				CU_ASSERT_EQUAL(o.error_status, error_status);
			buf_free(&o.body);
		}
	}
}

static void test_requests(void)
{
	/* in-response: Content-Length */
	expect(HTTP_READER_REQUEST, &LIM,
	       "POST /pimap HTTP/1.1\r\nHost: gw\r\nContent-Type: application/vnd.pimap\r\nContent-Length: 13\r\n\r\n"
	       "a LOGIN b c\r\n",
	       "HD", "a LOGIN b c\r\n", 0);
	/* persistent: chunked, chunks not aligned with lines */
	expect(HTTP_READER_REQUEST, &LIM,
	       "POST /pimap HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\na NOO\r\n3\r\nP\r\n\r\n0\r\n\r\n", "HD",
	       "a NOOP\r\n", 0);
	/* chunk extensions and trailers are legal and ignored */
	expect(HTTP_READER_REQUEST, &LIM,
	       "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nab\r\n\r\n0\r\nX-T: 1\r\n\r\n", "HD",
	       "ab\r\n", 0);
	/* a GET has a head and no body */
	expect(HTTP_READER_REQUEST, &LIM, "GET /pimap HTTP/1.1\r\nHost: x\r\n\r\n", "HD", "", 0);
	/* pipelined: two requests, bodies concatenated in order */
	expect(HTTP_READER_REQUEST, &LIM,
	       "POST /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST /p HTTP/1.1\r\nContent-Length: 2\r\n\r\nde", "HDHD",
	       "abcde", 0);
	/* an incomplete request: head only */
	expect(HTTP_READER_REQUEST, &LIM, "POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", "H", "abc", 0);
}

static void test_head_fields(void)
{
	const char *req = "POST /pimap HTTP/1.1\r\nContent-Type: application/vnd.lemonade; charset=x\r\n"
	                  "Cookie: a=1; PIMAPSESSION=abcdef\r\ncookie: z=9\r\nAccept-Encoding: deflate;q=0.5, gzip\r\n"
	                  "Expect: 100-continue\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
	struct outcome o;
	run(HTTP_READER_REQUEST, &LIM, req, strlen(req), 1, &o);
	CU_ASSERT_STRING_EQUAL(o.events, "HD");
	CU_ASSERT_STRING_EQUAL(o.head.method, "POST");
	CU_ASSERT_STRING_EQUAL(o.head.target, "/pimap");
	CU_ASSERT_TRUE(http_media_type_is(o.head.content_type, "application/vnd.lemonade"));
	CU_ASSERT_FALSE(http_media_type_is(o.head.content_type, "application/vnd.pimap"));
	CU_ASSERT_STRING_EQUAL(o.head.cookie, "a=1; PIMAPSESSION=abcdef; z=9");
	CU_ASSERT_TRUE(o.head.expect_continue);
	CU_ASSERT_FALSE(o.head.keep_alive);
	CU_ASSERT_TRUE(o.head.has_length);
	CU_ASSERT_EQUAL(http_accept_choose(o.head.accept_encoding), HTTP_CODING_GZIP);
	buf_free(&o.body);

	const char *resp = "HTTP/1.1 200 OK\r\nSet-Cookie: PIMAPSESSION=0123; Path=/pimap; HttpOnly\r\n"
	                   "Set-Cookie: other=1\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nok";
	run(HTTP_READER_RESPONSE, &LIM, resp, strlen(resp), 2, &o);
	CU_ASSERT_STRING_EQUAL(o.events, "HD");
	CU_ASSERT_EQUAL(o.head.status, 200);
	CU_ASSERT_STRING_EQUAL(o.head.set_cookie, "PIMAPSESSION=0123; Path=/pimap; HttpOnly");
	CU_ASSERT_EQUAL(http_coding_parse(o.head.content_encoding), HTTP_CODING_GZIP);
	buf_free(&o.body);
}

static void test_responses(void)
{
	/* chunked response, as the gateway's persistent mode sends */
	expect(HTTP_READER_RESPONSE, &LIM,
	       "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n* OK \r\n4\r\nhi\r\n\r\n0\r\n\r\n", "HD",
	       "* OK hi\r\n", 0);
	/* a body until the connection closes */
	expect(HTTP_READER_RESPONSE, &LIM, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof", "HD", "until eof",
	       0);
	/* interim 100 Continue before the final answer */
	expect(HTTP_READER_RESPONSE, &LIM, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", "HDHD", "",
	       0);
}

static void test_limits(void)
{
	struct http_limits small = LIM;
	small.max_header_bytes = 200;
	small.max_headers = 4;
	small.max_body = 10;
	struct buf big;
	buf_init(&big, 0);
	/* head over the byte limit: 431, however it is split */
	buf_append_str(&big, "POST /p HTTP/1.1\r\nX-Long: ");
	for (int i = 0; i < 300; i++)
		buf_append_str(&big, "a");
	buf_append_str(&big, "\r\n\r\n");
	char *s = buf_str(&big);
	expect(HTTP_READER_REQUEST, &small, s, "E", NULL, 431);
	free(s);
	/* whitespace and empty lines the parser skips count too */
	buf_clear(&big);
	for (int i = 0; i < 300; i++)
		buf_append_str(&big, "\r\n");
	s = buf_str(&big);
	expect(HTTP_READER_REQUEST, &small, s, "E", NULL, 0);
	free(s);
	/* too many header lines */
	expect(HTTP_READER_REQUEST, &small, "POST /p HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n", "E", NULL,
	       431);
	/* a Content-Length over the limit is refused before its body comes */
	expect(HTTP_READER_REQUEST, &small, "POST /p HTTP/1.1\r\nContent-Length: 11\r\n\r\n", "E", NULL, 413);
	/* chunked bodies are streams (no limit) when chunked_unlimited */
	expect(HTTP_READER_REQUEST, &small,
	       "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n0123456789ab\r\n0\r\n\r\n", "HD",
	       "0123456789ab", 0);
	small.chunked_unlimited = false;
	expect(HTTP_READER_REQUEST, &small,
	       "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nc\r\n0123456789ab\r\n0\r\n\r\n", "E",
	       "0123456789", 413); /* what fits is delivered, however the input is split */
	/* a request target over HTTP_MAX_TARGET */
	buf_clear(&big);
	buf_append_str(&big, "GET /");
	for (int i = 0; i < HTTP_MAX_TARGET + 10; i++)
		buf_append_str(&big, "x");
	buf_append_str(&big, " HTTP/1.1\r\n\r\n");
	s = buf_str(&big);
	expect(HTTP_READER_REQUEST, &LIM, s, "E", NULL, 414);
	free(s);
	buf_free(&big);
}

static void test_bad_input(void)
{
	/* malformed chunk sizes */
	expect(HTTP_READER_REQUEST, &LIM, "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n", "E", NULL,
	       400);
	expect(HTTP_READER_REQUEST, &LIM,
	       "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", "E", NULL, 400);
	/* chunk data longer than announced */
	expect(HTTP_READER_REQUEST, &LIM, "POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "E", NULL,
	       400);
	/* smuggling: both lengths, two different Content-Lengths */
	expect(HTTP_READER_REQUEST, &LIM,
	       "POST /p HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "E",
	       NULL, 400);
	expect(HTTP_READER_REQUEST, &LIM, "POST /p HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "E",
	       NULL, 400);
	/* not HTTP at all, and HTTP/2 preface */
	expect(HTTP_READER_REQUEST, &LIM, "a LOGIN bob secret\r\n", "E", NULL, 400);
	expect(HTTP_READER_REQUEST, &LIM, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "E", NULL, 0);
	/* a control character in a header name */
	expect(HTTP_READER_REQUEST, &LIM, "POST /p HTTP/1.1\r\nBad\001Header: x\r\n\r\n", "E", NULL, 400);
	/* a control character in a header value (http-parser itself lets NUL through) */
	expect(HTTP_READER_REQUEST, &LIM, "POST /p HTTP/1.1\r\nX-A: a\001b\r\nContent-Length: 0\r\n\r\n", "E", NULL,
	       400);
	/* two Content-Types */
	expect(HTTP_READER_REQUEST, &LIM,
	       "POST /p HTTP/1.1\r\nContent-Type: a/b\r\nContent-Type: c/d\r\nContent-Length: 0\r\n\r\n", "E", NULL, 400);
	/* a response cut short */
	expect(HTTP_READER_RESPONSE, &LIM, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "H", "abc", 0);
}

static void test_values(void)
{
	char v[64];
	CU_ASSERT_TRUE(http_cookie_get("PIMAPSESSION=abc", "PIMAPSESSION", v, sizeof(v)));
	CU_ASSERT_STRING_EQUAL(v, "abc");
	CU_ASSERT_TRUE(http_cookie_get("x=1;PIMAPSESSION=def ; y=2", "PIMAPSESSION", v, sizeof(v)));
	CU_ASSERT_STRING_EQUAL(v, "def");
	CU_ASSERT_FALSE(http_cookie_get("XPIMAPSESSION=abc", "PIMAPSESSION", v, sizeof(v)));
	CU_ASSERT_FALSE(http_cookie_get("", "PIMAPSESSION", v, sizeof(v)));
	CU_ASSERT_FALSE(http_cookie_get("PIMAPSESSION=0123456789", "PIMAPSESSION", v, 5)); /* does not fit */

	CU_ASSERT_TRUE(http_media_type_is("Application/VND.Pimap", "application/vnd.pimap"));
	CU_ASSERT_TRUE(http_media_type_is(" application/vnd.pimap ; q=1", "application/vnd.pimap"));
	CU_ASSERT_FALSE(http_media_type_is("application/vnd.pimapx", "application/vnd.pimap"));
	CU_ASSERT_FALSE(http_media_type_is("", "application/vnd.pimap"));

	CU_ASSERT_EQUAL(http_accept_choose(""), HTTP_CODING_IDENTITY);
	CU_ASSERT_EQUAL(http_accept_choose("deflate"), HTTP_CODING_DEFLATE);
	CU_ASSERT_EQUAL(http_accept_choose("gzip;q=0, deflate"), HTTP_CODING_DEFLATE);
	CU_ASSERT_EQUAL(http_accept_choose("gzip;q=0.2, deflate;q=0.9"), HTTP_CODING_DEFLATE);
	CU_ASSERT_EQUAL(http_accept_choose("*"), HTTP_CODING_GZIP);
	CU_ASSERT_EQUAL(http_accept_choose("br, identity"), HTTP_CODING_IDENTITY);
	CU_ASSERT_EQUAL(http_coding_parse(""), HTTP_CODING_IDENTITY);
	CU_ASSERT_EQUAL(http_coding_parse(" gzip "), HTTP_CODING_GZIP);
	CU_ASSERT_EQUAL(http_coding_parse("gzip, deflate"), -1);
	CU_ASSERT_EQUAL(http_coding_parse("br"), -1);
}

static void test_chunks(void)
{
	struct buf b;
	buf_init(&b, 0);
	http_chunk_append(&b, "* 1 EXISTS\r\n", 12);
	http_chunk_append(&b, "", 0);
	http_chunk_last(&b);
	char *s = buf_str(&b);
	CU_ASSERT_STRING_EQUAL(s, "c\r\n* 1 EXISTS\r\n\r\n0\r\n\r\n");
	free(s);
	/* what we write, our reader reads */
	buf_clear(&b);
	buf_append_str(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (int i = 0; i < 50; i++)
		http_chunk_append(&b, "0123456789abcdefghij", (size_t)(i % 20) + 1);
	http_chunk_last(&b);
	struct outcome o;
	run(HTTP_READER_RESPONSE, &LIM, (const char *)buf_head(&b), buf_len(&b), 2, &o);
	CU_ASSERT_STRING_EQUAL(o.events, "HD");
	size_t want = 0;
	for (int i = 0; i < 50; i++)
		want += (size_t)(i % 20) + 1;
	CU_ASSERT_EQUAL(buf_len(&o.body), want);
	buf_free(&o.body);
	buf_free(&b);
}

/* A persistent response: flushed pieces decode as they come; the decoder takes any split. */
static void test_coding(void)
{
	for (int coding = HTTP_CODING_DEFLATE; coding <= HTTP_CODING_GZIP; coding++) {
		struct http_zenc *z = http_zenc_new((enum http_coding)coding);
		CU_ASSERT_PTR_NOT_NULL_FATAL(z);
		struct http_zdec *d = http_zdec_new((enum http_coding)coding);
		CU_ASSERT_PTR_NOT_NULL_FATAL(d);
		struct buf wire, plain, want;
		buf_init(&wire, 0);
		buf_init(&plain, 0);
		buf_init(&want, 0);
		for (int i = 0; i < 30; i++) {
			char line[64];
			int n = snprintf(line, sizeof(line), "* %d EXISTS\r\n", i + 1);
			buf_append(&want, line, (size_t)n);
			size_t before = buf_len(&wire);
			CU_ASSERT_EQUAL(http_zenc_write(z, line, (size_t)n, true, &wire), 0);
			/* each flushed piece decodes to everything so far, fed byte by byte */
			for (size_t k = before; k < buf_len(&wire); k++)
				CU_ASSERT_EQUAL(http_zdec_write(d, buf_head(&wire) + k, 1, &plain, 0), 0);
			CU_ASSERT_EQUAL(buf_len(&plain), buf_len(&want));
		}
		size_t before = buf_len(&wire);
		CU_ASSERT_EQUAL(http_zenc_finish(z, &wire), 0);
		CU_ASSERT_EQUAL(http_zdec_write(d, buf_head(&wire) + before, buf_len(&wire) - before, &plain, 0), 0);
		CU_ASSERT_EQUAL(buf_len(&plain), buf_len(&want));
		CU_ASSERT_EQUAL(memcmp(buf_head(&plain), buf_head(&want), buf_len(&want)), 0);
		/* bytes after the end, and garbage, are errors */
		CU_ASSERT_EQUAL(http_zdec_write(d, "x", 1, &plain, 0), -1);
		http_zdec_free(d);
		d = http_zdec_new((enum http_coding)coding);
		CU_ASSERT_EQUAL(http_zdec_write(d, "not compressed at all", 21, &plain, 0), -1);
		http_zdec_free(d);
		http_zenc_free(z);
		buf_free(&wire);
		buf_free(&plain);
		buf_free(&want);
	}
	CU_ASSERT_PTR_NULL(http_zenc_new(HTTP_CODING_IDENTITY));
	/* the output limit stops a compression bomb */
	struct http_zenc *z = http_zenc_new(HTTP_CODING_GZIP);
	struct buf wire, plain;
	buf_init(&wire, 0);
	buf_init(&plain, 0);
	char *zeros = calloc(1, 1 << 20);
	http_zenc_write(z, zeros, 1 << 20, false, &wire);
	http_zenc_finish(z, &wire);
	struct http_zdec *d = http_zdec_new(HTTP_CODING_GZIP);
	CU_ASSERT_EQUAL(http_zdec_write(d, buf_head(&wire), buf_len(&wire), &plain, 65536), -1);
	http_zdec_free(d);
	http_zenc_free(z);
	free(zeros);
	buf_free(&wire);
	buf_free(&plain);
}

void suite_http_wire(void)
{
	ADD_SUITE("http_wire", {"requests, any split", test_requests}, {"head fields", test_head_fields},
	          {"responses", test_responses}, {"limits", test_limits}, {"bad input", test_bad_input},
	          {"header values", test_values}, {"chunk writer", test_chunks}, {"content coding", test_coding});
}
