/*
 * zio.c - RFC 4978 COMPRESS=DEFLATE: one raw deflate stream per direction.
 *
 * Each struct zio owns a compressor (what we send) and a decompressor (what
 * the peer sends). Both are plain buffer-to-buffer transforms appending to a
 * struct buf; the caller owns the buffers and the socket.
 */
#include "config.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "zio.h"

/*
 * RFC 4978 mandates raw deflate: negative windowBits means "no zlib header or
 * trailer". 15 = 32 KiB window, the largest, so any peer window is accepted.
 */
#define ZIO_WINDOW_BITS (-15)

/*
 * memLevel 8 (zlib's default): the compressor needs 128 KiB for the window
 * plus 128 KiB of hash tables; 9 adds another 128 KiB per connection and buys
 * almost nothing on short IMAP lines. That matters with thousands of idle
 * connections. The decompressor needs the 32 KiB window and ~7 KiB of state.
 */
#define ZIO_MEM_LEVEL 8

/*
 * A lean compressor for a direction that carries little (the gateway's
 * commands to its store): a 512-byte window and the smallest hash tables,
 * a few KiB instead of ~256 KiB per connection. A raw DEFLATE stream made
 * with a small window is valid for any decompressor, so the peer needs no
 * agreement; our decompressor keeps the 32 KiB window (the peer's choice).
 */
#define ZIO_LEAN_WINDOW_BITS (-9)
#define ZIO_LEAN_MEM_LEVEL 1

/*
 * Output is produced in slices of at most this size. A small first slice
 * keeps the output buffer small for the common case (one short command),
 * and a cap keeps one huge expansion from reserving the whole result at once.
 */
#define ZIO_SLICE_MIN 256
#define ZIO_SLICE_MAX (64 * 1024)

/* z_stream counts input in uInt; longer inputs are fed in pieces of this size. */
#define ZIO_IN_MAX ((size_t)UINT_MAX)

struct zio {
	z_stream    def;          /* our compressor: plain -> deflated, sent to the peer */
	z_stream    inf;          /* peer's stream: deflated -> plain */
	bool        def_broken;   /* deflate failed; the stream can no longer be trusted */
	bool        inf_broken;   /* inflate failed; every later call fails with the same error */
	bool        inf_ended;    /* the peer finished its stream (Z_FINISH before closing) */
	const char *error;        /* static string: last failure, "no error" until then */
	uint64_t    plain_in;     /* bytes given to zio_deflate() */
	uint64_t    plain_flushed; /* plain_in at the last sync flush */
	uint64_t    deflated_out; /* bytes zio_deflate() produced */
	uint64_t    deflated_in;  /* bytes given to zio_inflate() */
	uint64_t    plain_out;    /* bytes zio_inflate() produced */
};

static size_t clamp_slice(size_t want)
{
	if (want < ZIO_SLICE_MIN)
		return ZIO_SLICE_MIN;
	if (want > ZIO_SLICE_MAX)
		return ZIO_SLICE_MAX;
	return want;
}

/*
 * Create a compressor/decompressor pair. level is 0..9 or -1 (zlib default).
 * Returns NULL if memory is short or level is out of range (deflateInit2 says
 * Z_STREAM_ERROR). The caller frees with zio_free().
 */
static struct zio *zio_new_with(int level, int window_bits, int mem_level)
{
	struct zio *z = calloc(1, sizeof(*z));
	if (!z)
		return NULL;
	/* zalloc/zfree/opaque are Z_NULL from calloc: zlib's own malloc. */
	if (deflateInit2(&z->def, level, Z_DEFLATED, window_bits, mem_level, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(z);
		return NULL;
	}
	if (inflateInit2(&z->inf, ZIO_WINDOW_BITS) != Z_OK) {
		deflateEnd(&z->def);
		free(z);
		return NULL;
	}
	z->error = "no error";
	return z;
}

struct zio *zio_new(int level)
{
	return zio_new_with(level, ZIO_WINDOW_BITS, ZIO_MEM_LEVEL);
}

struct zio *zio_new_lean(int level)
{
	return zio_new_with(level, ZIO_LEAN_WINDOW_BITS, ZIO_LEAN_MEM_LEVEL);
}

void zio_free(struct zio *z)
{
	if (!z)
		return;
	deflateEnd(&z->def);
	inflateEnd(&z->inf);
	free(z);
}

/*
 * Compress and append to out. Returns 0, or -1 if zlib reports a stream error
 * (only possible through misuse or memory corruption; the stream is then dead).
 */
int zio_deflate(struct zio *z, const uint8_t *data, size_t len, bool flush, struct buf *out)
{
	if (z->def_broken)
		return -1;
	/*
	 * A flush with nothing new since the last one would still make zlib emit
	 * an empty stored block (00 00 ff ff) the first time. A peer that reads
	 * it alone inflates zero bytes, and Thunderbird takes that as a read
	 * that failed (its nsMsgCompressIStream::Read then reads the socket again
	 * and gets "would block"): it drops the connection. So send nothing.
	 */
	if (flush && len == 0 && z->plain_in == z->plain_flushed)
		return 0;

	size_t done = 0;
	do {
		size_t piece = len - done > ZIO_IN_MAX ? ZIO_IN_MAX : len - done;
		bool last = done + piece == len;
		/* Only flush once the final piece has been given. */
		int mode = flush && last ? Z_SYNC_FLUSH : Z_NO_FLUSH;
		/* Most output fits one slice; the bound leaves room for the sync marker. */
		size_t slice = clamp_slice(deflateBound(&z->def, (uLong)piece) + 16);

		z->def.next_in = (Bytef *)(uintptr_t)(data ? data + done : NULL);
		z->def.avail_in = (uInt)piece;
		do {
			uint8_t *dst = buf_reserve(out, slice);
			z->def.next_out = dst;
			z->def.avail_out = (uInt)slice;
			int rc = deflate(&z->def, mode);
			size_t produced = slice - z->def.avail_out;
			buf_commit(out, produced);
			z->deflated_out += produced;
			/*
			 * Z_BUF_ERROR is not an error: it means "no progress possible",
			 * e.g. a second Z_SYNC_FLUSH with no new input (zlib refuses to
			 * emit another empty block). Nothing is lost, we are done.
			 */
			if (rc == Z_BUF_ERROR)
				break;
			if (rc != Z_OK) {
				z->def_broken = true;
				z->error = z->def.msg ? z->def.msg : "deflate stream error";
				return -1;
			}
			/*
			 * A full output slice means zlib may still hold pending bytes
			 * (notably the rest of a sync flush): call again with the same
			 * flush mode. With room left over, all input was consumed and
			 * everything flushable has been flushed.
			 */
		} while (z->def.avail_out == 0);
		/* deflate stops early only when out of output room, so all input is taken. */
		size_t used = piece - z->def.avail_in;
		z->plain_in += used;
		done += used;
		z->def.next_in = NULL;
		z->def.avail_in = 0;
		if (used < piece) {
			z->def_broken = true;
			z->error = "deflate made no progress";
			return -1;
		}
	} while (done < len);
	if (flush)
		z->plain_flushed = z->plain_in;
	return 0;
}

/*
 * Decompress and append to out, consuming all of data. Returns 0, or -1 on
 * corrupt input or data after a stream end (z->error says which); after a failure every
 * later call fails too, because the peer's stream cannot be resynchronised.
 * Output appended before the failure stays in out; the caller drops the
 * connection anyway.
 */
int zio_inflate(struct zio *z, const uint8_t *data, size_t len, struct buf *out)
{
	if (z->inf_broken)
		return -1;
	if (z->inf_ended && len > 0) {
		z->inf_broken = true;
		z->error = "data after the end of the compressed stream";
		return -1;
	}

	size_t done = 0;
	while (done < len) {
		size_t piece = len - done > ZIO_IN_MAX ? ZIO_IN_MAX : len - done;
		/* Text typically expands 3-5x; start near that and grow if the peer compresses better. */
		size_t slice = clamp_slice(piece * 4);

		z->inf.next_in = (Bytef *)(uintptr_t)(data + done);
		z->inf.avail_in = (uInt)piece;
		for (;;) {
			uint8_t *dst = buf_reserve(out, slice);
			z->inf.next_out = dst;
			z->inf.avail_out = (uInt)slice;
			/* Z_SYNC_FLUSH: hand over all output we can, never hold it back. */
			int rc = inflate(&z->inf, Z_SYNC_FLUSH);
			size_t produced = slice - z->inf.avail_out;
			buf_commit(out, produced);
			z->plain_out += produced;

			if (rc == Z_STREAM_END) {
				/* BFINAL: RFC 4978 streams have no end, but servers (Dovecot)
				 * finish theirs right before closing after LOGOUT. Accept
				 * the end; anything after it is corrupt. */
				z->inf_ended = true;
				if (z->inf.avail_in > 0 || done + piece < len) {
					z->inf_broken = true;
					z->error = "data after the end of the compressed stream";
					return -1;
				}
				return 0;
			}
			if (rc == Z_DATA_ERROR || rc == Z_NEED_DICT) {
				/* Raw streams carry no dictionary id, so NEED_DICT means garbage too. */
				z->inf_broken = true;
				z->error = z->inf.msg ? z->inf.msg : "corrupt compressed data";
				return -1;
			}
			if (rc == Z_MEM_ERROR) {
				z->inf_broken = true;
				z->error = "out of memory in inflate";
				return -1;
			}
			if (rc == Z_STREAM_ERROR) {
				z->inf_broken = true;
				z->error = "inflate stream error";
				return -1;
			}
			/*
			 * Z_OK or Z_BUF_ERROR. Z_BUF_ERROR is "no progress possible":
			 * all input taken and the block is incomplete (peer data is
			 * still in flight, e.g. one byte at a time) - not an error.
			 * A full slice may hide more output still in the window, so
			 * go round again, with a bigger slice for big expansions.
			 */
			if (z->inf.avail_out == 0) {
				slice = clamp_slice(slice * 2);
				continue;
			}
			if (z->inf.avail_in == 0 || rc == Z_BUF_ERROR)
				break;
		}
		size_t used = piece - z->inf.avail_in;
		z->deflated_in += used;
		done += used;
		z->inf.next_in = NULL;
		z->inf.avail_in = 0;
		/* inflate keeps going while input and output room remain, so this cannot stall. */
		if (used < piece) {
			z->inf_broken = true;
			z->error = "inflate made no progress";
			return -1;
		}
	}
	return 0;
}

void zio_counts(const struct zio *z, uint64_t *plain_in, uint64_t *deflated_out,
                uint64_t *deflated_in, uint64_t *plain_out)
{
	if (plain_in)
		*plain_in = z->plain_in;
	if (deflated_out)
		*deflated_out = z->deflated_out;
	if (deflated_in)
		*deflated_in = z->deflated_in;
	if (plain_out)
		*plain_out = z->plain_out;
}

const char *zio_error(const struct zio *z)
{
	return z->error;
}

int zio_deflate_complete(const uint8_t *data, size_t len, int level, struct buf *out)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	if (deflateInit2(&zs, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		return -1;
	zs.next_in = (Bytef *)(uintptr_t)data;
	zs.avail_in = (uInt)len;
	int rc;
	do {
		uint8_t *dst = buf_reserve(out, 16384);
		zs.next_out = dst;
		zs.avail_out = 16384;
		rc = deflate(&zs, Z_FINISH);
		buf_commit(out, 16384 - zs.avail_out);
	} while (rc == Z_OK || (rc == Z_BUF_ERROR && zs.avail_out == 0));
	deflateEnd(&zs);
	return rc == Z_STREAM_END ? 0 : -1;
}
