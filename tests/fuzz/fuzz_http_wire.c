/*
 * fuzz_http_wire.c - libFuzzer harness for http_wire.c (the HTTPS binding's
 * request and response reader) and outband_msg.c's datagram opener.
 *
 * The input after the first byte is read as a stream of HTTP messages, the
 * way a connection would (http_reader_next after DONE, stop at ERROR), once
 * in one piece and once in pieces whose sizes come from a generator seeded
 * by the first byte: both must give the same events, the same body bytes and
 * the same stopping point, or the harness traps. Bit 0 of the first byte
 * picks requests or responses, bit 1 small limits, bit 3 head-only responses
 * (answers to CONNECT, http_tunnel.c). The same bytes are also
 * given to outband_extended_decode, which must refuse them without a crash
 * (the chance of forging an AES-GCM tag is nil).
 *
 * Built by `./configure --enable-fuzzing` (tests/fuzz/README.md); corpus in
 * tests/fuzz/corpus/http_wire, dictionary tests/fuzz/http_wire.dict.
 */
#include "config.h"

#include "fuzz.h"
#include "http_wire.h"
#include "outband_msg.h"

#define CHECK FUZZ_CHECK

struct run {
	char events[4096];
	size_t nevents;
	struct buf body;
	size_t consumed;
};

static void run(const uint8_t *data, size_t size, uint8_t ctl, bool split, struct run *o)
{
	struct http_limits lim = {.max_header_bytes = (ctl & 2) ? 64 : 8192, .max_headers = (ctl & 2) ? 4 : 64,
	                          .max_body = (ctl & 2) ? 16 : 1 << 20, .chunked_unlimited = (ctl & 4) != 0,
	                          .head_only = (ctl & 8) != 0};
	struct http_reader *r = http_reader_new((ctl & 1) ? HTTP_READER_RESPONSE : HTTP_READER_REQUEST, &lim);
	uint32_t x = ctl | 1u;
	size_t off = 0;
	memset(o->events, 0, sizeof(o->events));
	o->nevents = 0;
	o->consumed = 0;
	buf_init(&o->body, 0);
	struct buf pending;
	buf_init(&pending, 0);
	bool dead = false;
	while (!dead && (off < size || buf_len(&pending))) {
		size_t n = size - off;
		if (split && n) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			n = 1 + x % (n < 23 ? n : 23);
		}
		buf_append(&pending, data + off, n);
		off += n;
		for (;;) {
			size_t used = 0;
			enum http_read_result res = http_reader_feed(r, buf_head(&pending), buf_len(&pending), &used, &o->body);
			CHECK(used <= buf_len(&pending));
			buf_consume(&pending, used);
			o->consumed += used;
			char ev = res == HTTP_READ_HEAD ? 'H' : res == HTTP_READ_DONE ? 'D' : res == HTTP_READ_ERROR ? 'E' : 0;
			if (res == HTTP_READ_ERROR && o->nevents && o->events[o->nevents - 1] == 'H')
				o->nevents--; /* an error in the same input as the head may hide the head */
			if (ev && o->nevents < sizeof(o->events) - 1)
				o->events[o->nevents++] = ev;
			if (res == HTTP_READ_HEAD) {
				const struct http_head *h = http_reader_head(r);
				CHECK(strlen(h->target) <= HTTP_MAX_TARGET && strlen(h->cookie) <= HTTP_MAX_KEPT_VALUE);
				continue;
			}
			if (res == HTTP_READ_DONE) {
				http_reader_next(r);
				continue;
			}
			if (res == HTTP_READ_ERROR) {
				unsigned st = http_reader_error_status(r);
				CHECK(st >= 400 && st < 600 && http_reader_error(r) != NULL);
				dead = true;
			}
			break;
		}
		if (off == size)
			break;
	}
	buf_free(&pending);
	http_reader_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint8_t ctl = data[0];
	struct run a, b;
	run(data + 1, size - 1, ctl, false, &a);
	run(data + 1, size - 1, ctl, true, &b);
	CHECK(strcmp(a.events, b.events) == 0);
	CHECK(buf_len(&a.body) == buf_len(&b.body));
	CHECK(buf_len(&a.body) == 0 || memcmp(buf_head(&a.body), buf_head(&b.body), buf_len(&a.body)) == 0);
	buf_free(&a.body);
	buf_free(&b.body);

	static const uint8_t key[OUTBAND_KEY_LEN] = {7};
	struct outband_notice n;
	const char *why = NULL;
	CHECK(outband_extended_decode(key, data, size, &n, &why) == -1 && why != NULL);
	return 0;
}
