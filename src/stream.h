/*
 * stream.h - a layered byte stream under libev: socket -> TLS -> DEFLATE.
 *
 * The owner sees plaintext only: it reads decoded bytes from stream_input()
 * when told STREAM_EV_DATA, and writes with stream_write() / stream_flush().
 * TLS (implicit or STARTTLS, either role) and RFC 4978 compression can be
 * switched on mid-stream, at the exact byte where the protocol says so.
 *
 * Backpressure: stream_output_full() tells the owner to stop producing (in a
 * proxy: pause reading the peer); STREAM_EV_DRAINED says it may resume.
 * Hidden data: bytes already decrypted inside GnuTLS, or decoded but not
 * yet delivered, are delivered on the next loop iteration without waiting for
 * the socket to become readable again.
 *
 * Lifetime: stream_close() may be called from inside the stream's own
 * callback; the memory is released later from the loop (stream_reap()).
 */
#ifndef PIMAP_STREAM_H
#define PIMAP_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <netdb.h>

#include <ev.h>

#include "buf.h"
#include "tlsio.h"

/* How much one read takes from the socket or TLS layer. */
#define STREAM_READ_CHUNK 16384
/* Reads per readiness event, so one busy peer cannot starve the others. */
#define STREAM_MAX_READS_PER_EVENT 16

struct stream;

enum stream_event {
	STREAM_EV_CONNECTED, /* outbound TCP connection established */
	STREAM_EV_TLS_READY, /* TLS handshake completed (certificate verified for clients) */
	STREAM_EV_DATA,      /* new plaintext in stream_input() */
	STREAM_EV_DRAINED,   /* output fell below half its limit after having been full */
	STREAM_EV_EOF,       /* the peer closed its side */
	STREAM_EV_ERROR,     /* connect/TLS/IO/decompression failure or deadline; reason given */
};

typedef void (*stream_cb)(struct stream *stream, enum stream_event event, const char *reason, void *ctx);

/* Wrap an accepted, connected socket (made non-blocking here). out_limit bounds buffered output. */
struct stream *stream_new_fd(struct ev_loop *loop, int fd, const char *name, size_t out_limit,
                             stream_cb cb, void *ctx);

/* Same for a pair of pipes (--stdio): read from rfd, write to wfd. */
struct stream *stream_new_fds(struct ev_loop *loop, int rfd, int wfd, const char *name, size_t out_limit,
                              stream_cb cb, void *ctx);

/*
 * Start connecting to host:port (numeric or resolvable; each address is tried
 * in turn). Reports STREAM_EV_CONNECTED or STREAM_EV_ERROR. timeout > 0 arms
 * the deadline (see stream_set_deadline). Returns NULL with err on immediate failure.
 */
struct stream *stream_connect(struct ev_loop *loop, const char *host, const char *port, double timeout,
                              const char *name, size_t out_limit, stream_cb cb, void *ctx,
                              char *err, size_t errlen);

/*
 * The same with addresses already looked up (resolver.h), tried in order;
 * res is taken (freed with freeaddrinfo, also on failure). Callers that
 * filter a getaddrinfo() list may unlink entries: POSIX lets freeaddrinfo
 * free any sublist.
 */
struct stream *stream_connect_addrinfo(struct ev_loop *loop, struct addrinfo *res, double timeout,
                                       const char *name, size_t out_limit, stream_cb cb, void *ctx,
                                       char *err, size_t errlen);

/* Arm (seconds > 0) or disarm (0) a deadline; when it fires: STREAM_EV_ERROR "timed out". */
void stream_set_deadline(struct stream *s, double seconds);

/*
 * Begin TLS once all queued output has been written (so a plaintext "OK Begin
 * TLS" goes out first). Any plaintext input still buffered is discarded: bytes
 * a peer pipelined behind STARTTLS must never be executed (CVE-2011-0411 class).
 * Reports STREAM_EV_TLS_READY or STREAM_EV_ERROR. Returns 0 or -1 with err.
 */
int stream_start_tls_client(struct stream *s, struct tls_creds *creds, const char *server_name,
                            char *err, size_t errlen);
int stream_start_tls_server(struct stream *s, struct tls_creds *creds, char *err, size_t errlen);

/*
 * Turn on RFC 4978 DEFLATE in both directions from this point: output written
 * after this call is compressed; buffered input not yet consumed is treated as
 * compressed and decoded. level -1 = zlib default. Returns 0 or -1.
 */
int stream_enable_compress(struct stream *s, int level);
/* The same with a lean compressor (zio_new_lean): for a side that mostly receives. */
int stream_enable_compress_lean(struct stream *s, int level);

struct buf *stream_input(struct stream *s);
void stream_write(struct stream *s, const void *data, size_t len);
void stream_write_str(struct stream *s, const char *str);
void stream_printf(struct stream *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* End of a batch: compress-flush and start sending. */
void stream_flush(struct stream *s);

size_t stream_output_pending(const struct stream *s);
bool stream_output_full(const struct stream *s);

/* Stop or resume delivering input (backpressure from the other leg). */
void stream_pause_reading(struct stream *s, bool pause);

/* Close now. Safe inside callbacks: no callback fires after this; memory is freed by stream_reap(). */
void stream_close(struct stream *s);
/* Stop reading, write what is queued (bounded by the deadline if armed), then
 * close. From this call on the stream never calls its owner back. */
void stream_close_after_flush(struct stream *s);

bool stream_is_tls(const struct stream *s);
bool stream_is_compressed(const struct stream *s);
const char *stream_name(const struct stream *s);
/* Bytes on the socket (TLS records, compressed data): what the network carries. */
void stream_wire_counts(const struct stream *s, uint64_t *in, uint64_t *out);

/*
 * Run fn(arg) from the loop after the current callback chain has returned
 * (for owners that close themselves from inside their own callbacks).
 */
void loop_defer_free(void (*fn)(void *arg), void *arg);

/* Free closed streams; called from an ev_check watcher (installed by stream_lib_init). */
void stream_lib_init(struct ev_loop *loop);
void stream_lib_shutdown(struct ev_loop *loop);

#endif
