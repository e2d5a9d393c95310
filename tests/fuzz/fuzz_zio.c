/*
 * fuzz_zio.c - libFuzzer target for DEFLATE input (zio.c): what a peer that
 * negotiated COMPRESS=DEFLATE, or a store, may send.
 *
 * The first byte picks the case and seeds the chunking:
 *  - inflate: the rest is compressed input from a peer, fed in chunks of at
 *    most INFLATE_SLICE (1 KiB, what stream.c hands zio_inflate at a time).
 *    Checks: output is bounded by DEFLATE's maximum expansion (1032:1, plus
 *    a block's worth) per byte fed, so a "bomb" costs the stream at most
 *    about a megabyte per slice; a failure is sticky (the stream is dead and
 *    every later call fails), and an error always has a message.
 *  - round trip: the rest is plaintext, compressed with flushes at points
 *    the input chooses and decompressed in other chunks: the output equals
 *    the input, whatever the flush pattern and chunking.
 *  - XZIP: the rest is plaintext made into one complete raw DEFLATE stream
 *    (zio_deflate_complete, the XZIP payload); an RFC 4978 inflater takes
 *    it whole and refuses anything after its end.
 *
 * Corpus: tests/fuzz/corpus/zio.
 */
#include "config.h"

#include "fuzz.h"
#include "zio.h"

/* stream.c's slice; stream.c keeps its own constant private. */
#define INFLATE_SLICE 1024
/* DEFLATE's worst case: one 258-byte match per 2 bits, i.e. 1032 bytes per input byte. */
#define MAX_EXPANSION 1032u

static void fuzz_inflate(uint32_t seed, const uint8_t *p, size_t n)
{
	struct zio *z = zio_new_lean(-1);
	FUZZ_CHECK(z != NULL);
	struct buf out;
	buf_init(&out, 0);
	size_t pos = 0, fed = 0;
	bool failed = false;
	while (pos < n) {
		size_t chunk = fuzz_rand(&seed) % INFLATE_SLICE + 1;
		if (chunk > n - pos)
			chunk = n - pos;
		size_t before = buf_len(&out);
		int rc = zio_inflate(z, p + pos, chunk, &out);
		fed += chunk;
		if (rc < 0) {
			FUZZ_CHECK(zio_error(z) != NULL && zio_error(z)[0] != '\0');
			failed = true;
			pos += chunk;
			break;
		}
		/* Bounded: what one slice can cost the stream (plus bits a previous slice left pending). */
		FUZZ_CHECK(buf_len(&out) - before <= (chunk + 8) * MAX_EXPANSION);
		FUZZ_CHECK(buf_len(&out) <= (fed + 8) * MAX_EXPANSION);
		pos += chunk;
		/* The stream layer drops what the owner consumed: keep memory flat. */
		buf_clear(&out);
	}
	if (failed) {
		/* Sticky: a broken stream cannot be resynchronised. */
		const uint8_t more[] = {0x03, 0x00};
		FUZZ_CHECK(zio_inflate(z, more, sizeof(more), &out) < 0);
	}
	buf_free(&out);
	zio_free(z);
}

static void fuzz_round_trip(uint32_t seed, const uint8_t *p, size_t n)
{
	struct zio *tx = zio_new((int)(seed % 10));
	struct zio *rx = zio_new_lean(-1);
	FUZZ_CHECK(tx && rx);
	struct buf wire, plain;
	buf_init(&wire, 0);
	buf_init(&plain, 0);
	size_t pos = 0;
	while (pos < n) {
		size_t chunk = fuzz_rand(&seed) % 700 + 1;
		if (chunk > n - pos)
			chunk = n - pos;
		bool flush = fuzz_rand(&seed) % 3 == 0;
		FUZZ_CHECK(zio_deflate(tx, p + pos, chunk, flush, &wire) == 0);
		pos += chunk;
		/* A flush can be repeated with nothing new (an empty batch). */
		if (flush && fuzz_rand(&seed) % 4 == 0)
			FUZZ_CHECK(zio_deflate(tx, NULL, 0, true, &wire) == 0);
	}
	FUZZ_CHECK(zio_deflate(tx, NULL, 0, true, &wire) == 0);
	/* Decode in other pieces, down to single bytes. */
	size_t off = 0;
	while (off < buf_len(&wire)) {
		size_t chunk = fuzz_rand(&seed) % 64 + 1;
		if (chunk > buf_len(&wire) - off)
			chunk = buf_len(&wire) - off;
		FUZZ_CHECK(zio_inflate(rx, buf_head(&wire) + off, chunk, &plain) == 0);
		off += chunk;
	}
	FUZZ_CHECK(buf_len(&plain) == n);
	FUZZ_CHECK(n == 0 || memcmp(buf_head(&plain), p, n) == 0);
	buf_free(&wire);
	buf_free(&plain);
	zio_free(tx);
	zio_free(rx);
}

static void fuzz_complete(uint32_t seed, const uint8_t *p, size_t n)
{
	struct buf wire, plain;
	buf_init(&wire, 0);
	buf_init(&plain, 0);
	FUZZ_CHECK(zio_deflate_complete(p, n, (int)(seed % 10), &wire) == 0);
	struct zio *rx = zio_new_lean(-1);
	FUZZ_CHECK(rx != NULL);
	FUZZ_CHECK(zio_inflate(rx, buf_head(&wire), buf_len(&wire), &plain) == 0);
	FUZZ_CHECK(buf_len(&plain) == n && (n == 0 || memcmp(buf_head(&plain), p, n) == 0));
	/* Nothing may follow the final block. */
	const uint8_t extra = 0;
	FUZZ_CHECK(zio_inflate(rx, &extra, 1, &plain) < 0);
	zio_free(rx);
	buf_free(&wire);
	buf_free(&plain);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t seed = data[0] >> 2 | 0x100;
	switch (data[0] % 3) {
	case 0:
		fuzz_inflate(seed, data + 1, size - 1);
		break;
	case 1:
		fuzz_round_trip(seed, data + 1, size - 1);
		break;
	default:
		fuzz_complete(seed, data + 1, size - 1);
		break;
	}
	return 0;
}
