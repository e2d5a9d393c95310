/*
 * zio.h - RFC 4978 COMPRESS=DEFLATE framing: raw deflate (no zlib header,
 * windowBits -15) in each direction of a stream.
 *
 * Pure buffer-to-buffer transforms, no sockets. The compressor uses
 * Z_NO_FLUSH while a batch is being written and Z_SYNC_FLUSH at the batch end
 * (zio_deflate(..., true)), so the peer can decode everything written so far.
 * The decompressor accepts any flush pattern the peer uses (none, partial,
 * sync, full) and any chunking of the input, down to one byte at a time.
 */
#ifndef PIMAP_ZIO_H
#define PIMAP_ZIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct zio;

/* level: 0..9 (zlib), or -1 for the default (6). Returns NULL on allocation failure. */
struct zio *zio_new(int level);
/* The same with a compressor sized for little outgoing data (a few KiB of state, not ~256 KiB). */
struct zio *zio_new_lean(int level);
void zio_free(struct zio *z);

/*
 * Compress len bytes from data and append the output to out. With flush=true
 * the output ends on a byte boundary with a sync-flush marker, and everything
 * given so far is decodable by the peer; a flush with nothing given since the
 * previous one appends nothing. Returns 0, or -1 on a zlib error.
 */
int zio_deflate(struct zio *z, const uint8_t *data, size_t len, bool flush, struct buf *out);

/*
 * Decompress len bytes from data and append the output to out. Consumes all
 * input. Returns 0, or -1 on corrupt input (zio_error() tells why). A stream
 * end marker (BFINAL) is an error for RFC 4978, which has no end of stream.
 */
int zio_inflate(struct zio *z, const uint8_t *data, size_t len, struct buf *out);

/*
 * One complete raw DEFLATE stream (RFC 1951, final block included) of
 * data[0..len), appended to out: the XZIP payload. len must fit in 32 bits.
 * Returns 0, or -1 on a zlib error.
 */
int zio_deflate_complete(const uint8_t *data, size_t len, int level, struct buf *out);

/* Totals for statistics: bytes before compression / after, per direction. */
void zio_counts(const struct zio *z, uint64_t *plain_in, uint64_t *deflated_out,
                uint64_t *deflated_in, uint64_t *plain_out);

/* Last error message, static string. */
const char *zio_error(const struct zio *z);

#endif
