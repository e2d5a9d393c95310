/*
 * buf.c - growable byte buffers and no-fail allocation wrappers.
 */
#include "config.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Out of memory is not something a mail daemon can recover from mid-stream. */
static void oom(void)
{
	fputs("pimap: out of memory\n", stderr);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom();
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom();
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom();
	return q;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		oom();
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void set_errmsg(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void buf_init(struct buf *b, size_t limit)
{
	memset(b, 0, sizeof(*b));
	b->limit = limit;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->start = b->end = b->cap = 0;
}

size_t buf_room(const struct buf *b)
{
	if (!b->limit)
		return SIZE_MAX;
	return buf_len(b) >= b->limit ? 0 : b->limit - buf_len(b);
}

uint8_t *buf_reserve(struct buf *b, size_t want)
{
	/* An unused buffer allocates even for want == 0: NULL + 0 is undefined. */
	if (b->data && b->cap - b->end >= want)
		return b->data + b->end;
	/* Reclaim consumed space first when that alone makes room. */
	size_t len = buf_len(b);
	if (b->start && b->cap - len >= want) {
		memmove(b->data, b->data + b->start, len);
		b->start = 0;
		b->end = len;
		return b->data + b->end;
	}
	size_t need = len + want;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need) {
		if (cap > SIZE_MAX / 2)
			oom();
		cap *= 2;
	}
	uint8_t *data = xmalloc(cap);
	if (len)
		memcpy(data, b->data + b->start, len);
	free(b->data);
	b->data = data;
	b->start = 0;
	b->end = len;
	b->cap = cap;
	return b->data + b->end;
}

void buf_commit(struct buf *b, size_t len)
{
	b->end += len;
}

void buf_append(struct buf *b, const void *data, size_t len)
{
	if (!len)
		return;
	memcpy(buf_reserve(b, len), data, len);
	b->end += len;
}

void buf_append_str(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s));
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list again;
	char small[256];

	va_copy(again, ap);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	if (n < 0 || (size_t)n < sizeof(small)) {
		if (n > 0)
			buf_append(b, small, (size_t)n);
		va_end(again);
		return;
	}
	char *dst = (char *)buf_reserve(b, (size_t)n + 1);
	vsnprintf(dst, (size_t)n + 1, fmt, again);
	va_end(again);
	b->end += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void buf_consume(struct buf *b, size_t len)
{
	if (len >= buf_len(b)) {
		b->start = b->end = 0;
		return;
	}
	b->start += len;
}

void buf_clear(struct buf *b)
{
	b->start = b->end = 0;
}

long buf_find_lf(const struct buf *b, size_t from)
{
	size_t len = buf_len(b);
	if (from >= len)
		return -1;
	const uint8_t *p = memchr(buf_head(b) + from, '\n', len - from);
	return p ? (long)(p - buf_head(b)) : -1;
}

void buf_free_secret(struct buf *b)
{
	volatile uint8_t *p = b->data;
	for (size_t i = 0; p && i < b->cap; i++)
		p[i] = 0;
	buf_free(b);
}

void secret_free(char **s)
{
	if (!*s)
		return;
	volatile char *p = *s;
	while (*p)
		*p++ = '\0';
	free(*s);
	*s = NULL;
}
