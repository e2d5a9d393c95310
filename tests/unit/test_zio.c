/*
 * test_zio.c - RFC 4978 deflate framing: round trips, flush behaviour, peers
 * using every zlib flush mode, byte-at-a-time input, corrupt streams, and a
 * vector produced by another encoder (Python's zlib module).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "buf.h"
#include "suites.h"
#include "zio.h"

/* Deterministic filler: xorshift, so failures reproduce. */
static void fill_random(uint8_t *p, size_t len, uint32_t seed)
{
	uint32_t x = seed ? seed : 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* IMAP-like text that compresses the way real sessions do. */
static uint8_t *make_text(size_t len)
{
	static const char *const lines[] = {
		"* 1 FETCH (FLAGS (\\Seen) UID 4711 RFC822.SIZE 2048)\r\n",
		"a17 OK [READ-WRITE] SELECT completed\r\n",
		"* 23 EXISTS\r\n",
		"Subject: quarterly numbers, draft 3\r\n",
		"* LIST (\\HasNoChildren) \"/\" \"INBOX/Archive 2026\"\r\n",
	};
	uint8_t *p = malloc(len);
	size_t n = 0;
	for (unsigned k = 0; n < len; k = k * 7 + 3) {
		const char *l = lines[k % 5];
		size_t ll = strlen(l);
		if (ll > len - n)
			ll = len - n;
		memcpy(p + n, l, ll);
		n += ll;
	}
	return p;
}

static void assert_buf_eq(const struct buf *b, const uint8_t *want, size_t len)
{
	CU_ASSERT_EQUAL_FATAL(buf_len(b), len);
	CU_ASSERT(len == 0 || memcmp(buf_head(b), want, len) == 0);
}

/* Compress with one zio, decompress with another, compare. */
static void round_trip(int level, const uint8_t *data, size_t len, size_t piece)
{
	struct zio *tx = zio_new(level), *rx = zio_new(level);
	struct buf wire, plain;
	buf_init(&wire, 0);
	buf_init(&plain, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(tx);
	CU_ASSERT_PTR_NOT_NULL_FATAL(rx);

	for (size_t off = 0; off < len; off += piece) {
		size_t n = len - off < piece ? len - off : piece;
		CU_ASSERT_EQUAL(zio_deflate(tx, data + off, n, off + n == len, &wire), 0);
	}
	if (len == 0)
		CU_ASSERT_EQUAL(zio_deflate(tx, NULL, 0, true, &wire), 0);
	CU_ASSERT_EQUAL(zio_inflate(rx, buf_head(&wire), buf_len(&wire), &plain), 0);
	assert_buf_eq(&plain, data, len);

	uint64_t pin, dout, din, pout;
	zio_counts(tx, &pin, &dout, &din, &pout);
	CU_ASSERT_EQUAL(pin, len);
	CU_ASSERT_EQUAL(dout, buf_len(&wire));
	CU_ASSERT_EQUAL(din, 0);
	CU_ASSERT_EQUAL(pout, 0);
	zio_counts(rx, &pin, &dout, &din, &pout);
	CU_ASSERT_EQUAL(pin, 0);
	CU_ASSERT_EQUAL(dout, 0);
	CU_ASSERT_EQUAL(din, buf_len(&wire));
	CU_ASSERT_EQUAL(pout, len);

	buf_free(&wire);
	buf_free(&plain);
	zio_free(tx);
	zio_free(rx);
}

static void test_round_trip_small(void)
{
	static const char msg[] = "a1 NOOP\r\n";
	round_trip(-1, (const uint8_t *)msg, strlen(msg), 64);
	round_trip(-1, (const uint8_t *)"x", 1, 1);
	round_trip(-1, NULL, 0, 1);
}

static void test_round_trip_large(void)
{
	size_t len = 3 * 1024 * 1024 + 17;
	uint8_t *text = make_text(len);
	round_trip(-1, text, len, len);       /* one call */
	round_trip(-1, text, len, 1000);      /* many small writes, one flush */
	free(text);
}

static void test_round_trip_random(void)
{
	size_t len = 300 * 1024;
	uint8_t *data = malloc(len);
	fill_random(data, len, 42);
	round_trip(-1, data, len, 8191);
	round_trip(1, data, len, len);
	free(data);
}

static void test_levels(void)
{
	size_t len = 64 * 1024;
	uint8_t *text = make_text(len);
	size_t out_len[2];
	const int levels[2] = { 0, 9 };

	for (int k = 0; k < 2; k++) {
		struct zio *z = zio_new(levels[k]);
		struct buf wire;
		buf_init(&wire, 0);
		CU_ASSERT_PTR_NOT_NULL_FATAL(z);
		CU_ASSERT_EQUAL(zio_deflate(z, text, len, true, &wire), 0);
		out_len[k] = buf_len(&wire);
		buf_free(&wire);
		zio_free(z);
		round_trip(levels[k], text, len, 4096);
	}
	/* Level 0 stores (a little overhead per block); 9 really compresses. */
	CU_ASSERT(out_len[0] > len);
	CU_ASSERT(out_len[1] < len / 10);
	/* zlib rejects levels outside -1..9. */
	CU_ASSERT_PTR_NULL(zio_new(10));
	CU_ASSERT_PTR_NULL(zio_new(-2));
	free(text);
}

/* After each flush=true batch, an independent inflater must see every byte so far. */
static void test_flush_makes_decodable(void)
{
	static const char *const batches[] = {
		"* OK ready\r\n",
		"a1 CAPABILITY\r\n",
		"* CAPABILITY IMAP4rev1 IDLE\r\na1 OK done\r\n",
		"a2 IDLE\r\n",
	};
	struct zio *tx = zio_new(6), *rx = zio_new(6);
	struct buf wire, plain, sent;
	buf_init(&wire, 0);
	buf_init(&plain, 0);
	buf_init(&sent, 0);

	for (int k = 0; k < 4; k++) {
		/* Write a batch in two pieces: the first without flush, like a coalesced batch. */
		const uint8_t *b = (const uint8_t *)batches[k];
		size_t half = strlen(batches[k]) / 2;
		CU_ASSERT_EQUAL(zio_deflate(tx, b, half, false, &wire), 0);
		CU_ASSERT_EQUAL(zio_deflate(tx, b + half, strlen(batches[k]) - half, true, &wire), 0);
		buf_append_str(&sent, batches[k]);

		/* Ends on the sync-flush marker: empty stored block 00 00 ff ff. */
		CU_ASSERT_FATAL(buf_len(&wire) >= 4);
		CU_ASSERT(memcmp(buf_head(&wire) + buf_len(&wire) - 4, "\x00\x00\xff\xff", 4) == 0);

		CU_ASSERT_EQUAL(zio_inflate(rx, buf_head(&wire), buf_len(&wire), &plain), 0);
		buf_consume(&wire, buf_len(&wire));
		assert_buf_eq(&plain, buf_head(&sent), buf_len(&sent));
	}

	/* A second flush with nothing new is zlib's Z_BUF_ERROR case: fine, and silent. */
	CU_ASSERT_EQUAL(zio_deflate(tx, NULL, 0, true, &wire), 0);
	CU_ASSERT_EQUAL(zio_deflate(tx, NULL, 0, false, &wire), 0);
	CU_ASSERT_EQUAL(zio_inflate(rx, buf_head(&wire), buf_len(&wire), &plain), 0);
	assert_buf_eq(&plain, buf_head(&sent), buf_len(&sent));

	buf_free(&wire);
	buf_free(&plain);
	buf_free(&sent);
	zio_free(tx);
	zio_free(rx);
}

/*
 * A flush with nothing written since the previous one (or since the start)
 * sends nothing: an empty stored block alone in a packet inflates to zero
 * bytes, and Thunderbird's decompressing stream treats that as a failed read
 * and drops the connection (seen right after COMPRESS DEFLATE's OK).
 */
static void test_empty_flush_sends_nothing(void)
{
	struct zio *tx = zio_new(-1), *rx = zio_new(-1);
	struct buf wire, plain;
	buf_init(&wire, 0);
	buf_init(&plain, 0);

	CU_ASSERT_EQUAL(zio_deflate(tx, NULL, 0, true, &wire), 0);
	CU_ASSERT_EQUAL(buf_len(&wire), 0);

	CU_ASSERT_EQUAL(zio_deflate(tx, (const uint8_t *)"a1 OK\r\n", 7, true, &wire), 0);
	size_t after_first = buf_len(&wire);
	CU_ASSERT(after_first > 0);
	CU_ASSERT_EQUAL(zio_deflate(tx, NULL, 0, true, &wire), 0);
	CU_ASSERT_EQUAL(buf_len(&wire), after_first);

	/* Written without a flush, then flushed empty: that flush is needed. */
	CU_ASSERT_EQUAL(zio_deflate(tx, (const uint8_t *)"a2 OK\r\n", 7, false, &wire), 0);
	CU_ASSERT_EQUAL(zio_deflate(tx, NULL, 0, true, &wire), 0);
	CU_ASSERT(buf_len(&wire) > after_first);
	CU_ASSERT_EQUAL(zio_inflate(rx, buf_head(&wire), buf_len(&wire), &plain), 0);
	assert_buf_eq(&plain, (const uint8_t *)"a1 OK\r\na2 OK\r\n", 14);

	buf_free(&wire);
	buf_free(&plain);
	zio_free(tx);
	zio_free(rx);
}

/* Output goes after what the buffer already holds, also when its head was consumed. */
static void test_appends_to_existing(void)
{
	struct zio *tx = zio_new(-1), *rx = zio_new(-1);
	struct buf wire, plain;
	buf_init(&wire, 0);
	buf_init(&plain, 0);

	buf_append_str(&plain, "junkKEEP");
	buf_consume(&plain, 4);
	CU_ASSERT_EQUAL(zio_deflate(tx, (const uint8_t *)"payload", 7, true, &wire), 0);
	CU_ASSERT_EQUAL(zio_inflate(rx, buf_head(&wire), buf_len(&wire), &plain), 0);
	assert_buf_eq(&plain, (const uint8_t *)"KEEPpayload", 11);

	buf_free(&wire);
	buf_free(&plain);
	zio_free(tx);
	zio_free(rx);
}

/* A peer compressing with plain zlib and its own choice of flush modes. */
struct peer {
	z_stream s;
	struct buf out;
};

static void peer_init(struct peer *p)
{
	memset(&p->s, 0, sizeof(p->s));
	CU_ASSERT_EQUAL_FATAL(deflateInit2(&p->s, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	buf_init(&p->out, 0);
}

static void peer_write(struct peer *p, const void *data, size_t len, int flush)
{
	uint8_t tmp[512]; /* small on purpose: exercises zlib's "call again" path */
	p->s.next_in = (Bytef *)(uintptr_t)data;
	p->s.avail_in = (uInt)len;
	do {
		p->s.next_out = tmp;
		p->s.avail_out = sizeof(tmp);
		int rc = deflate(&p->s, flush);
		CU_ASSERT(rc == Z_OK || rc == Z_BUF_ERROR || rc == Z_STREAM_END);
		buf_append(&p->out, tmp, sizeof(tmp) - p->s.avail_out);
	} while (p->s.avail_out == 0);
}

static void peer_free(struct peer *p)
{
	deflateEnd(&p->s);
	buf_free(&p->out);
}

static void test_peer_flush_modes(void)
{
	static const struct {
		int flush;
		const char *text;
	} steps[] = {
		{ Z_PARTIAL_FLUSH, "* 1 FETCH (UID 1 FLAGS ())\r\n" },
		{ Z_FULL_FLUSH, "* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n" },
		{ Z_NO_FLUSH, "* 3 FETCH (UID 3 FLAGS (\\Seen \\Answered))\r\n" },
		{ Z_NO_FLUSH, "* 4 FETCH (UID 4 FLAGS ())\r\n" },
		{ Z_SYNC_FLUSH, "a5 OK FETCH completed\r\n" },
		{ Z_FULL_FLUSH, "" },
		{ Z_PARTIAL_FLUSH, "* 5 EXISTS\r\n" },
		{ Z_SYNC_FLUSH, "" },
	};
	struct peer peer;
	struct zio *rx = zio_new(-1);
	struct buf plain, sent;
	peer_init(&peer);
	buf_init(&plain, 0);
	buf_init(&sent, 0);

	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		peer_write(&peer, steps[k].text, strlen(steps[k].text), steps[k].flush);
		buf_append_str(&sent, steps[k].text);
		CU_ASSERT_EQUAL(zio_inflate(rx, buf_head(&peer.out), buf_len(&peer.out), &plain), 0);
		buf_consume(&peer.out, buf_len(&peer.out));
		if (steps[k].flush == Z_NO_FLUSH) {
			/* Nothing promised yet, but never more than was sent. */
			CU_ASSERT(buf_len(&plain) <= buf_len(&sent));
			CU_ASSERT(memcmp(buf_head(&plain), buf_head(&sent), buf_len(&plain)) == 0);
		} else {
			/* Partial, sync and full flush all make everything so far decodable. */
			assert_buf_eq(&plain, buf_head(&sent), buf_len(&sent));
		}
	}

	peer_free(&peer);
	buf_free(&plain);
	buf_free(&sent);
	zio_free(rx);
}

/* Any chunking of the input gives the same output, down to single bytes. */
static void test_byte_at_a_time(void)
{
	size_t len = 40000;
	uint8_t *text = make_text(len);
	struct zio *tx = zio_new(-1), *rx = zio_new(-1), *rx2 = zio_new(-1);
	struct buf wire, plain, plain2;
	buf_init(&wire, 0);
	buf_init(&plain, 0);
	buf_init(&plain2, 0);

	/* Several batches so the stream holds sync markers mid-way. */
	CU_ASSERT_EQUAL(zio_deflate(tx, text, 10000, true, &wire), 0);
	CU_ASSERT_EQUAL(zio_deflate(tx, text + 10000, 5, true, &wire), 0);
	CU_ASSERT_EQUAL(zio_deflate(tx, text + 10005, len - 10005, true, &wire), 0);

	for (size_t i = 0; i < buf_len(&wire); i++)
		CU_ASSERT_EQUAL_FATAL(zio_inflate(rx, buf_head(&wire) + i, 1, &plain), 0);
	assert_buf_eq(&plain, text, len);

	/* Uneven chunks (1, 2, 3, ... bytes) too. */
	size_t i = 0;
	for (size_t step = 1; i < buf_len(&wire); step = step % 97 + 1) {
		size_t n = buf_len(&wire) - i < step ? buf_len(&wire) - i : step;
		CU_ASSERT_EQUAL_FATAL(zio_inflate(rx2, buf_head(&wire) + i, n, &plain2), 0);
		i += n;
	}
	assert_buf_eq(&plain2, text, len);

	free(text);
	buf_free(&wire);
	buf_free(&plain);
	buf_free(&plain2);
	zio_free(tx);
	zio_free(rx);
	zio_free(rx2);
}

/*
 * Nothing may be held back: after every input byte, zio must have produced
 * exactly what stock zlib with unlimited output space produces from the same
 * prefix. One byte can release kilobytes (many long matches packed in 8
 * bits), so this checks the "output slice full, input used up" case, where
 * zlib still holds output in its window. The peer may send nothing more
 * until we answer.
 */
static void test_no_output_held_back(void)
{
	size_t len = 256 * 1024, batches = 4;
	uint8_t *zeros = calloc(1, len);
	uint8_t *ref_out = malloc(len * batches);
	struct peer peer;
	struct zio *rx = zio_new(-1);
	struct buf plain;
	z_stream ref;
	size_t mismatches = 0;
	peer_init(&peer);
	buf_init(&plain, 0);
	memset(&ref, 0, sizeof(ref));
	CU_ASSERT_EQUAL_FATAL(inflateInit2(&ref, -15), Z_OK);
	ref.next_out = ref_out;
	ref.avail_out = (uInt)(len * batches);

	for (size_t batch = 1; batch <= batches; batch++) {
		/* Partial flush is not byte-aligned: the batch's last byte may carry matches too. */
		peer_write(&peer, zeros, len, batch % 2 ? Z_PARTIAL_FLUSH : Z_SYNC_FLUSH);
		for (size_t i = 0; i < buf_len(&peer.out); i++) {
			CU_ASSERT_EQUAL_FATAL(zio_inflate(rx, buf_head(&peer.out) + i, 1, &plain), 0);
			ref.next_in = (Bytef *)(uintptr_t)(buf_head(&peer.out) + i);
			ref.avail_in = 1;
			int rc = inflate(&ref, Z_SYNC_FLUSH);
			CU_ASSERT_FATAL(rc == Z_OK || rc == Z_BUF_ERROR);
			mismatches += buf_len(&plain) != ref.total_out;
		}
		buf_consume(&peer.out, buf_len(&peer.out));
		CU_ASSERT_EQUAL(buf_len(&plain), batch * len);
	}
	CU_ASSERT_EQUAL(mismatches, 0);
	CU_ASSERT(memcmp(buf_head(&plain), zeros, len) == 0);

	inflateEnd(&ref);
	free(zeros);
	free(ref_out);
	peer_free(&peer);
	buf_free(&plain);
	zio_free(rx);
}

/* 16 MiB of zeros compress ~1000:1; inflating must loop until all output is out. */
static void test_large_expansion(void)
{
	size_t len = 16 * 1024 * 1024;
	uint8_t *zeros = calloc(1, len);
	struct zio *tx = zio_new(9), *rx = zio_new(-1), *rx2 = zio_new(-1);
	struct buf wire, plain;
	buf_init(&wire, 0);
	buf_init(&plain, 0);

	CU_ASSERT_EQUAL(zio_deflate(tx, zeros, len, true, &wire), 0);
	CU_ASSERT(buf_len(&wire) < len / 500);
	CU_ASSERT_EQUAL(zio_inflate(rx, buf_head(&wire), buf_len(&wire), &plain), 0);
	assert_buf_eq(&plain, zeros, len);

	/* One byte of input can release kilobytes of output. */
	buf_clear(&plain);
	for (size_t i = 0; i < buf_len(&wire); i++)
		CU_ASSERT_EQUAL_FATAL(zio_inflate(rx2, buf_head(&wire) + i, 1, &plain), 0);
	assert_buf_eq(&plain, zeros, len);

	free(zeros);
	buf_free(&wire);
	buf_free(&plain);
	zio_free(tx);
	zio_free(rx);
	zio_free(rx2);
}

static void test_corrupt_input(void)
{
	/* First byte 0x06: BFINAL=0, BTYPE=11, a reserved block type. */
	static const uint8_t bad_type[] = { 0x06, 0x00, 0x00 };
	/* Stored block whose LEN and NLEN do not complement each other. */
	static const uint8_t bad_stored[] = { 0x00, 0x05, 0x00, 0x00, 0x00, 'h', 'e', 'l', 'l', 'o' };
	struct zio *z = zio_new(-1);
	struct buf plain;
	buf_init(&plain, 0);

	CU_ASSERT_STRING_EQUAL(zio_error(z), "no error");
	CU_ASSERT_EQUAL(zio_inflate(z, bad_type, sizeof(bad_type), &plain), -1);
	CU_ASSERT_STRING_EQUAL(zio_error(z), "invalid block type");
	/* The stream cannot recover: later input fails too, even if valid. */
	CU_ASSERT_EQUAL(zio_inflate(z, (const uint8_t *)"\x00\x00\x00\xff\xff", 5, &plain), -1);
	zio_free(z);

	z = zio_new(-1);
	CU_ASSERT_EQUAL(zio_inflate(z, bad_stored, sizeof(bad_stored), &plain), -1);
	CU_ASSERT_STRING_EQUAL(zio_error(z), "invalid stored block lengths");
	zio_free(z);

	/* Garbage fed byte by byte is still caught. */
	z = zio_new(-1);
	int rc = 0;
	for (size_t i = 0; i < sizeof(bad_type) && rc == 0; i++)
		rc = zio_inflate(z, bad_type + i, 1, &plain);
	CU_ASSERT_EQUAL(rc, -1);
	zio_free(z);

	CU_ASSERT_EQUAL(buf_len(&plain), 0);
	buf_free(&plain);
}

/* A final block (BFINAL, as Z_FINISH writes) ends the stream: Dovecot sends one
 * before closing after LOGOUT. It is accepted; any byte after it is an error. */
static void test_stream_end_is_error(void)
{
	struct peer peer;
	struct zio *z = zio_new(-1);
	struct buf plain;
	peer_init(&peer);
	buf_init(&plain, 0);

	peer_write(&peer, "a1 LOGOUT\r\n", 11, Z_SYNC_FLUSH);
	CU_ASSERT_EQUAL(zio_inflate(z, buf_head(&peer.out), buf_len(&peer.out), &plain), 0);
	assert_buf_eq(&plain, (const uint8_t *)"a1 LOGOUT\r\n", 11);
	buf_consume(&peer.out, buf_len(&peer.out));

	peer_write(&peer, "* BYE bye\r\n", 11, Z_FINISH);
	CU_ASSERT_EQUAL(zio_inflate(z, buf_head(&peer.out), buf_len(&peer.out), &plain), 0);
	assert_buf_eq(&plain, (const uint8_t *)"a1 LOGOUT\r\n* BYE bye\r\n", 22);
	CU_ASSERT_EQUAL(zio_inflate(z, (const uint8_t *)"x", 1, &plain), -1);
	CU_ASSERT_STRING_EQUAL(zio_error(z), "data after the end of the compressed stream");
	zio_free(z);

	/* The shortest complete raw stream, followed by junk in the same chunk. */
	z = zio_new(-1);
	CU_ASSERT_EQUAL(zio_inflate(z, (const uint8_t *)"\x03\x00junk", 6, &plain), -1);
	CU_ASSERT_STRING_EQUAL(zio_error(z), "data after the end of the compressed stream");
	zio_free(z);

	peer_free(&peer);
	buf_free(&plain);
}

/*
 * Produced by CPython's zlib, not by us:
 *   c = zlib.compressobj(6, zlib.DEFLATED, -15)
 *   c.compress(P1) + c.flush(zlib.Z_SYNC_FLUSH) + c.compress(P2) + c.flush(zlib.Z_SYNC_FLUSH)
 * The first 64 bytes are the first batch.
 */
static const uint8_t python_vector[] = {
	0xd2, 0x52, 0xf0, 0xf7, 0x56, 0x88, 0x76, 0x76, 0x0c, 0x70, 0x74, 0xf2, 0xf4, 0xf1, 0x0c, 0x89,
	0x54, 0xf0, 0xf4, 0x75, 0x0c, 0x30, 0x29, 0x4a, 0x2d, 0x33, 0x54, 0x70, 0xf6, 0xf7, 0x0d, 0x08,
	0x72, 0x0d, 0x0e, 0xb6, 0x75, 0x71, 0x75, 0xf3, 0x71, 0x0c, 0x71, 0x8d, 0x55, 0x28, 0xc8, 0xcc,
	0x4d, 0x2c, 0x50, 0x28, 0x4a, 0x4d, 0x4c, 0xa9, 0xe4, 0xe5, 0x02, 0x00, 0x00, 0x00, 0xff, 0xff,
	0xd2, 0x52, 0x30, 0x56, 0x70, 0x73, 0x0d, 0x71, 0xf6, 0x50, 0xd0, 0x00, 0x4a, 0xbb, 0x07, 0x2b,
	0x68, 0xc4, 0x04, 0xa7, 0xa6, 0xe6, 0x69, 0x2a, 0x84, 0x7a, 0xba, 0x28, 0x98, 0x18, 0x69, 0x12,
	0xa3, 0x22, 0xd1, 0x10, 0x64, 0x7d, 0x4a, 0x7e, 0x5e, 0x2a, 0x2f, 0x17, 0x00, 0x00, 0x00, 0xff,
	0xff,
};
#define PY_P1 "* OK [CAPABILITY IMAP4rev1 COMPRESS=DEFLATE] pimap ready\r\n"
#define PY_P2 "* 3 FETCH (FLAGS (\\Seen) UID 42)\r\n* 3 FETCH (FLAGS (\\Seen) UID 42)\r\na1 OK done\r\n"

static void test_python_interop(void)
{
	struct zio *z = zio_new(-1);
	struct buf plain;
	buf_init(&plain, 0);

	/* Batch by batch: each sync flush releases exactly its batch. */
	CU_ASSERT_EQUAL(zio_inflate(z, python_vector, 64, &plain), 0);
	assert_buf_eq(&plain, (const uint8_t *)PY_P1, strlen(PY_P1));
	CU_ASSERT_EQUAL(zio_inflate(z, python_vector + 64, sizeof(python_vector) - 64, &plain), 0);
	assert_buf_eq(&plain, (const uint8_t *)PY_P1 PY_P2, strlen(PY_P1 PY_P2));
	zio_free(z);

	/* And byte by byte. */
	z = zio_new(-1);
	buf_clear(&plain);
	for (size_t i = 0; i < sizeof(python_vector); i++)
		CU_ASSERT_EQUAL_FATAL(zio_inflate(z, python_vector + i, 1, &plain), 0);
	assert_buf_eq(&plain, (const uint8_t *)PY_P1 PY_P2, strlen(PY_P1 PY_P2));
	zio_free(z);

	buf_free(&plain);
}

/* Our output decoded by stock zlib with the RFC 4978 settings, independently of zio_inflate. */
static void test_decodable_by_zlib(void)
{
	static const char msg[] = "a3 UID FETCH 1:* (FLAGS)\r\n";
	struct zio *tx = zio_new(-1);
	struct buf wire;
	buf_init(&wire, 0);
	CU_ASSERT_EQUAL(zio_deflate(tx, (const uint8_t *)msg, strlen(msg), true, &wire), 0);

	z_stream s;
	uint8_t out[128];
	memset(&s, 0, sizeof(s));
	CU_ASSERT_EQUAL_FATAL(inflateInit2(&s, -15), Z_OK);
	s.next_in = (Bytef *)(uintptr_t)buf_head(&wire);
	s.avail_in = (uInt)buf_len(&wire);
	s.next_out = out;
	s.avail_out = sizeof(out);
	CU_ASSERT_EQUAL(inflate(&s, Z_SYNC_FLUSH), Z_OK);
	CU_ASSERT_EQUAL(s.avail_in, 0);
	CU_ASSERT_EQUAL(sizeof(out) - s.avail_out, strlen(msg));
	CU_ASSERT(memcmp(out, msg, strlen(msg)) == 0);
	inflateEnd(&s);

	buf_free(&wire);
	zio_free(tx);
}

/* The lean compressor (small window) is plain RFC 1951: a standard 32 KiB inflater reads it. */
static void test_lean_compressor(void)
{
	size_t len = 200 * 1024;
	uint8_t *text = make_text(len);
	struct zio *tx = zio_new_lean(-1), *rx = zio_new(-1);
	struct buf wire, plain;
	buf_init(&wire, 0);
	buf_init(&plain, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(tx);
	for (size_t off = 0; off < len; off += 4000) {
		size_t n = len - off < 4000 ? len - off : 4000;
		CU_ASSERT_EQUAL(zio_deflate(tx, text + off, n, true, &wire), 0);
	}
	CU_ASSERT(buf_len(&wire) < len); /* it still compresses */
	CU_ASSERT_EQUAL(zio_inflate(rx, buf_head(&wire), buf_len(&wire), &plain), 0);
	assert_buf_eq(&plain, text, len);
	/* and the lean side decodes a full-window peer */
	buf_clear(&wire);
	buf_clear(&plain);
	CU_ASSERT_EQUAL(zio_deflate(rx, text, len, true, &wire), 0);
	CU_ASSERT_EQUAL(zio_inflate(tx, buf_head(&wire), buf_len(&wire), &plain), 0);
	assert_buf_eq(&plain, text, len);
	buf_free(&wire);
	buf_free(&plain);
	zio_free(tx);
	zio_free(rx);
	free(text);
}

/* zio_deflate_complete makes one finished raw stream (the XZIP payload). */
static void test_deflate_complete(void)
{
	size_t len = 100 * 1024;
	uint8_t *text = make_text(len);
	struct buf wire;
	buf_init(&wire, 0);
	CU_ASSERT_EQUAL(zio_deflate_complete(text, len, -1, &wire), 0);
	uint8_t *out = malloc(len + 16);
	z_stream s;
	memset(&s, 0, sizeof(s));
	CU_ASSERT_EQUAL_FATAL(inflateInit2(&s, -15), Z_OK);
	s.next_in = (Bytef *)(uintptr_t)buf_head(&wire);
	s.avail_in = (uInt)buf_len(&wire);
	s.next_out = out;
	s.avail_out = (uInt)(len + 16);
	CU_ASSERT_EQUAL(inflate(&s, Z_FINISH), Z_STREAM_END); /* a final block ends it */
	CU_ASSERT_EQUAL(s.total_out, len);
	CU_ASSERT(memcmp(out, text, len) == 0);
	inflateEnd(&s);
	buf_clear(&wire);
	CU_ASSERT_EQUAL(zio_deflate_complete(NULL, 0, -1, &wire), 0);
	CU_ASSERT(buf_len(&wire) > 0);
	free(out);
	buf_free(&wire);
	free(text);
}

void suite_zio(void)
{
	ADD_SUITE("zio",
	          { "round trip small", test_round_trip_small },
	          { "round trip large", test_round_trip_large },
	          { "round trip random", test_round_trip_random },
	          { "levels 0 and 9", test_levels },
	          { "flush makes decodable", test_flush_makes_decodable },
	          { "empty flush sends nothing", test_empty_flush_sends_nothing },
	          { "appends to existing buffer", test_appends_to_existing },
	          { "peer flush modes", test_peer_flush_modes },
	          { "byte at a time", test_byte_at_a_time },
	          { "no output held back", test_no_output_held_back },
	          { "large expansion", test_large_expansion },
	          { "corrupt input", test_corrupt_input },
	          { "stream end accepted, data after it is not", test_stream_end_is_error },
	          { "python interop", test_python_interop },
	          { "decodable by zlib", test_decodable_by_zlib },
	          { "lean compressor", test_lean_compressor },
	          { "complete stream (XZIP)", test_deflate_complete });
}
