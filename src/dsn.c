/*
 * dsn.c - building an RFC 3464 delivery status notification (see dsn.h).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "dsn.h"
#include "msg_header.h"

static void rfc5322_date(time_t t, char *out, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%a, %d %b %Y %H:%M:%S +0000", &tm);
}

/* RFC 3464 2.3.4 wants a status code; a reply without one gets the class's generic code. */
static void status_of(const struct smtp_outcome *o, char *out, size_t len)
{
	if (*o->enhanced)
		snprintf(out, len, "%s", o->enhanced);
	else
		snprintf(out, len, "%d.0.0", o->code / 100 >= 4 && o->code / 100 <= 5 ? o->code / 100 : 5);
}

/* A header value from the peer, made safe for one header line. */
static void header_text(struct buf *out, const char *s, size_t max)
{
	for (size_t i = 0; s[i] && i < max; i++) {
		unsigned char c = (unsigned char)s[i];
		buf_append(out, c < 0x20 || c >= 0x7f ? "?" : &s[i], 1);
	}
}

void dsn_build(const struct dsn_info *in, struct buf *out)
{
	char date[64], arrival[64], status[32], boundary[80];
	rfc5322_date(in->now, date, sizeof(date));
	rfc5322_date(in->arrival, arrival, sizeof(arrival));
	status_of(in->reply, status, sizeof(status));
	snprintf(boundary, sizeof(boundary), "=_pimap_dsn_%.40s", in->boundary_seed);
	struct buf subject;
	buf_init(&subject, 0);
	msg_header_get(in->original, in->original_len, "Subject", &subject);
	buf_append(&subject, "", 1);

	buf_printf(out, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", in->reporting_host);
	buf_append_str(out, "To: ");
	header_text(out, in->notify && *in->notify ? in->notify : "postmaster", 256);
	buf_append_str(out, "\r\nSubject: Undelivered Mail Returned to Sender");
	if (buf_len(&subject) > 1) {
		buf_append_str(out, ": ");
		header_text(out, (const char *)buf_head(&subject), 200);
	}
	buf_printf(out, "\r\nDate: %s\r\nMessage-ID: %s\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
	                "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n",
	           date, in->message_id, boundary);

	/* 1. for the person */
	buf_printf(out, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary);
	buf_append_str(out, "pimap-proxy accepted this message for sending and kept it in its outbox,\r\n"
	                    "but it could not be sent. It was sent to none of its recipients:\r\n\r\n");
	for (size_t i = 0; i < in->nrcpts; i++) {
		buf_append_str(out, "    <");
		header_text(out, in->rcpts[i], 300);
		buf_append_str(out, ">\r\n");
	}
	buf_append_str(out, "\r\nThe reason:\r\n\r\n    ");
	if (in->remote && *in->remote) {
		header_text(out, in->remote, 200);
		buf_append_str(out, " said: ");
	}
	buf_printf(out, "%d %s%s", in->reply->code, in->reply->enhanced, *in->reply->enhanced ? " " : "");
	header_text(out, in->reply->text, XDELIVER_MAX_TEXT);
	buf_append_str(out, "\r\n\r\nThe header of the message follows.\r\n\r\n");

	/* 2. for programs */
	buf_printf(out, "--%s\r\nContent-Type: message/delivery-status\r\n\r\n", boundary);
	buf_printf(out, "Reporting-MTA: dns; %s\r\nArrival-Date: %s\r\n", in->reporting_host, arrival);
	for (size_t i = 0; i < in->nrcpts; i++) {
		buf_append_str(out, "\r\nFinal-Recipient: rfc822; ");
		header_text(out, in->rcpts[i], 300);
		buf_printf(out, "\r\nAction: failed\r\nStatus: %s\r\n", status);
		if (in->remote && *in->remote) {
			buf_append_str(out, "Remote-MTA: dns; ");
			header_text(out, in->remote, 200);
			buf_append_str(out, "\r\n");
		}
		buf_printf(out, "Diagnostic-Code: smtp; %d %s%s", in->reply->code, in->reply->enhanced,
		           *in->reply->enhanced ? " " : "");
		header_text(out, in->reply->text, XDELIVER_MAX_TEXT);
		buf_append_str(out, "\r\n");
	}

	/* 3. the returned header */
	buf_printf(out, "\r\n--%s\r\nContent-Type: text/rfc822-headers\r\n\r\n", boundary);
	size_t hlen = msg_header_size(in->original, in->original_len);
	struct buf h;
	buf_init(&h, 0);
	msg_to_smtp_data(in->original, hlen, &h); /* CRLF lines; the dot stuffing is harmless in a header */
	buf_append(out, buf_head(&h), buf_len(&h));
	buf_free(&h);
	buf_printf(out, "\r\n--%s--\r\n", boundary);
	buf_free(&subject);
}
