/*
 * mime_attach.c - re-attaching an original's attachments (see mime_attach.h).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "mime_attach.h"
#include "msg_header.h"

static bool arg_is_str(const struct imap_arg *a, const char *s)
{
	return (a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_LITERAL) &&
	       a->len == strlen(s) && strncasecmp(a->str, s, a->len) == 0;
}

int mime_attachment_parts(const struct imap_arg *bs, unsigned *parts, size_t max)
{
	if (!bs || bs->type != IMAP_ARG_LIST || bs->list_count == 0)
		return -1;
	/* A multipart body is a list of part lists followed by its subtype. */
	size_t nparts = 0;
	while (nparts < bs->list_count && bs->list[nparts].type == IMAP_ARG_LIST)
		nparts++;
	if (nparts == 0)
		return 0; /* a single-part message: no attachments */
	if (nparts == bs->list_count)
		return -1; /* no subtype */
	if (!arg_is_str(&bs->list[nparts], "MIXED"))
		return 0;
	int count = 0;
	for (size_t i = 1; i < nparts && (size_t)count < max; i++)
		parts[count++] = (unsigned)(i + 1);
	return count;
}

/* Does any input contain the delimiter "--b"? */
static bool boundary_used(const char *b, const uint8_t *msg, size_t len, const struct mime_part *parts,
                          size_t nparts)
{
	char delim[128];
	int n = snprintf(delim, sizeof(delim), "--%s", b);
	if (memmem(msg, len, delim, (size_t)n))
		return true;
	for (size_t i = 0; i < nparts; i++)
		if (memmem(parts[i].header, parts[i].header_len, delim, (size_t)n) ||
		    memmem(parts[i].body, parts[i].body_len, delim, (size_t)n))
			return true;
	return false;
}

static bool ends_with_newline(const uint8_t *p, size_t n)
{
	return n > 0 && p[n - 1] == '\n';
}

void mime_add_parts(const uint8_t *msg, size_t len, const struct mime_part *parts, size_t nparts,
                    const char *boundary_seed, struct buf *out)
{
	char b[96];
	for (unsigned k = 0;; k++) {
		snprintf(b, sizeof(b), "=_pimap_%.40s_%u", boundary_seed, k);
		if (!boundary_used(b, msg, len, parts, nparts))
			break;
	}
	size_t hlen = msg_header_size(msg, len), pos = 0;
	struct msg_field f;
	struct buf content;
	buf_init(&content, 0);
	bool mime_version = false;
	/* The header without its blank line: fields end where the blank line starts. */
	while (msg_header_next_field(msg, hlen, &pos, &f)) {
		const uint8_t *field = msg + f.start;
		size_t flen = f.end - f.start;
		bool content_field = f.colon - f.start >= 8 && strncasecmp((const char *)field, "Content-", 8) == 0;
		if (content_field) {
			buf_append(&content, field, flen);
			continue;
		}
		if (msg_field_named(msg, &f, "MIME-Version"))
			mime_version = true;
		buf_append(out, field, flen);
		if (!ends_with_newline(field, flen))
			buf_append(out, "\r\n", 2);
	}
	if (!mime_version)
		buf_append_str(out, "MIME-Version: 1.0\r\n");
	buf_printf(out, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", b);
	buf_printf(out, "--%s\r\n", b);
	if (buf_len(&content)) {
		buf_append(out, buf_head(&content), buf_len(&content));
		if (!ends_with_newline(buf_head(&content), buf_len(&content)))
			buf_append(out, "\r\n", 2);
	} else {
		buf_append_str(out, "Content-Type: text/plain; charset=us-ascii\r\n");
	}
	buf_append(out, "\r\n", 2);
	buf_free(&content);
	const uint8_t *body = msg + hlen;
	size_t blen = len - hlen;
	buf_append(out, body, blen);
	if (!ends_with_newline(body, blen))
		buf_append(out, "\r\n", 2);
	for (size_t i = 0; i < nparts; i++) {
		buf_printf(out, "--%s\r\n", b);
		buf_append(out, parts[i].header, parts[i].header_len);
		buf_append(out, parts[i].body, parts[i].body_len);
		buf_append(out, "\r\n", 2);
	}
	buf_printf(out, "--%s--\r\n", b);
}
