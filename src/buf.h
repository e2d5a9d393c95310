/*
 * buf.h - growable byte buffers.
 *
 * struct buf is a contiguous byte queue: append at the tail, consume from the
 * head. Consumed space is reclaimed lazily (memmove when it pays), so the
 * common "read, parse a prefix, keep the rest" cycle costs no allocation.
 * Every buffer has a limit: buf_room() is what may still be appended before
 * the owner should stop reading its peer (backpressure). Appending past the
 * limit is allowed (the caller decides); buf_full() reports it.
 * Allocation failure aborts (project-wide choice: xmalloc in buf.c).
 */
#ifndef PIMAP_BUF_H
#define PIMAP_BUF_H

#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;  /* allocation, NULL until first append */
	size_t   start; /* first unconsumed byte */
	size_t   end;   /* one past the last byte */
	size_t   cap;   /* bytes allocated */
	size_t   limit; /* soft limit on buf_len() for backpressure; 0 = unlimited */
};

void buf_init(struct buf *b, size_t limit);
void buf_free(struct buf *b);
/* buf_free for a buffer that held a secret: the whole allocation is zeroed first. */
void buf_free_secret(struct buf *b);

static inline size_t buf_len(const struct buf *b) { return b->end - b->start; }
/* Never NULL: an unused buffer's head is an empty string, because NULL + 0
 * is undefined behaviour and memcpy(dst, NULL, 0) too (clang's UBSan reports
 * both; the fuzzers found callers that take the head of an empty buffer). */
static inline const uint8_t *buf_head(const struct buf *b) { return b->data ? b->data + b->start : (const uint8_t *)""; }
static inline bool buf_full(const struct buf *b) { return b->limit && buf_len(b) >= b->limit; }
/* Bytes that may be appended before reaching the limit (SIZE_MAX if unlimited). */
size_t buf_room(const struct buf *b);

void buf_append(struct buf *b, const void *data, size_t len);
void buf_append_str(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Make at least `want` bytes writable at the tail and return a pointer to them; then buf_commit(). */
uint8_t *buf_reserve(struct buf *b, size_t want);
void buf_commit(struct buf *b, size_t len);

void buf_consume(struct buf *b, size_t len);
void buf_clear(struct buf *b);

/* Index of the first LF in the buffer at or after offset `from`, or -1. */
long buf_find_lf(const struct buf *b, size_t from);

/* Allocation wrappers that abort on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* The first n bytes of s as a string (s need not be NUL-terminated). */
char *xstrndup(const char *s, size_t n);
/* Overwrite a NUL-terminated secret (a password) with zeros, free it and set *s to NULL; NULL is fine. */
void secret_free(char **s);

/* An error message into err[errlen]; nothing when err is NULL or errlen 0 (the caller does not want it). */
void set_errmsg(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
