/*
 * mime_attach.h - re-attaching an original message's attachments to a reply
 * or forward (XDELIVER R/F with Y): which parts of the original are its
 * attachments, and the message that carries them.
 *
 * The attachments of a message are the parts after the first of a
 * top-level multipart/mixed (the first part is the body, be it text or a
 * multipart/alternative). A message that is not multipart/mixed has none.
 * The new message is a multipart/mixed whose first part is the client's
 * message (its Content-* fields moved into the part) followed by the
 * attachments byte for byte as the store holds them (BODY[n.MIME] and
 * BODY[n]), so no transfer encoding is ever redone.
 * Pure functions over parsed arguments and byte buffers.
 */
#ifndef PIMAP_MIME_ATTACH_H
#define PIMAP_MIME_ATTACH_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "imap_parse.h"

/* Attachments re-attached from one original, at most. */
#define MIME_MAX_ATTACHMENTS 64

/*
 * The part numbers (2, 3, ...) of the attachments described by a
 * BODYSTRUCTURE value (the list after the BODYSTRUCTURE item of a FETCH).
 * Returns how many (0 for a message that has none), or -1 if the value
 * is not a BODYSTRUCTURE.
 */
int mime_attachment_parts(const struct imap_arg *bodystructure, unsigned *parts, size_t max);

struct mime_part {
	const uint8_t *header;  /* BODY[n.MIME]: the part's MIME header with its blank line */
	size_t         header_len;
	const uint8_t *body;    /* BODY[n] */
	size_t         body_len;
};

/*
 * msg followed by parts, as one multipart/mixed message, appended to out.
 * boundary_seed (hex) makes the boundary unique; the function checks that
 * it appears in none of the inputs and varies it when it does.
 */
void mime_add_parts(const uint8_t *msg, size_t len, const struct mime_part *parts, size_t nparts,
                    const char *boundary_seed, struct buf *out);

#endif
