/*
 * dsn.h - a delivery status notification (RFC 3464) for a message the
 * proxy accepted and queued, and that then could not be sent: a
 * multipart/report the proxy appends to the user's INBOX.
 *
 * Parts: a human-readable explanation, the message/delivery-status
 * (Reporting-MTA, Arrival-Date, and per recipient Final-Recipient,
 * Action: failed, Status, Diagnostic-Code with the server's reply), and
 * the returned message's header (text/rfc822-headers). Pure.
 */
#ifndef PIMAP_DSN_H
#define PIMAP_DSN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"
#include "xdeliver.h"

struct dsn_info {
	const char              *reporting_host;  /* Reporting-MTA and the From: of the report */
	const char              *notify;          /* the address the report is for (To:) */
	const char              *message_id;      /* the report's own Message-ID */
	time_t                   arrival;         /* when the proxy accepted the message */
	time_t                   now;             /* Date: of the report */
	const char *const       *rcpts;           /* the message's recipients */
	size_t                   nrcpts;
	const struct smtp_outcome *reply;         /* why: the reply that failed the message */
	const char              *remote;          /* the server that gave it ("" when the proxy gave up itself) */
	const uint8_t           *original;        /* the message; its header is returned */
	size_t                   original_len;
	const char              *boundary_seed;   /* random hex, for the multipart boundary */
};

/* Append the whole report (an RFC 5322 message, CRLF lines) to out. */
void dsn_build(const struct dsn_info *info, struct buf *out);

#endif
