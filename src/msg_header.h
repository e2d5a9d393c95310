/*
 * msg_header.h - reading the header of an RFC 5322 message: one field's
 * unfolded value, the addresses of an address list, the Message-ID.
 *
 * Used where a message is sent (the gateway's XDELIVER, the proxy's SMTP
 * listener and outbox) to find the envelope sender, to recognise a message
 * sent twice, and to give a message its Message-ID. Pure functions over
 * byte buffers; lenient where real clients are sloppy (LF line ends, a
 * missing blank line), strict where a wrong answer would send mail to the
 * wrong place (an address must have a local part and a domain).
 */
#ifndef PIMAP_MSG_HEADER_H
#define PIMAP_MSG_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Longest Message-ID kept (with its angle brackets). RFC 5322 allows up to a
 * whole 998-byte line; a longer one is treated as unusable, never cut. */
#define MSG_ID_MAX 250
/* Longest address accepted (RFC 5321 4.5.3.1.3: a path is at most 256 octets). */
#define MSG_ADDR_MAX 256

/*
 * Bytes of the header section, including the blank line that ends it (CRLF
 * CRLF or LF LF). A message without a blank line is all header: len.
 */
size_t msg_header_size(const uint8_t *msg, size_t len);

/* One header field: [start, end) is the name, the colon at colon, the value and its continuation lines. */
struct msg_field {
	size_t start, colon, end;
};

/* The next field at or after *pos in the header's first hlen bytes (msg_header_size); false at the end. */
bool msg_header_next_field(const uint8_t *msg, size_t hlen, size_t *pos, struct msg_field *f);
/* The field's name is name (case-insensitive). */
bool msg_field_named(const uint8_t *msg, const struct msg_field *f, const char *name);

/*
 * The first field called name (case-insensitive) in the header: its value
 * unfolded (each line break of a folded field dropped, the whitespace kept),
 * with leading and trailing whitespace removed, appended to out. True if the
 * field exists (its value may be empty).
 */
bool msg_header_get(const uint8_t *msg, size_t len, const char *name, struct buf *out);

/* Whether the header has a field called name. */
bool msg_header_has(const uint8_t *msg, size_t len, const char *name);

/*
 * The addresses of an RFC 5322 address list (a From, To or Cc value):
 * display names, comments and group syntax removed, each "local@domain"
 * passed to cb in order. Returns the number of addresses found, or -1 if
 * the list is malformed (unbalanced quotes, brackets or comments; an
 * element without "@"; an address over MSG_ADDR_MAX).
 */
typedef void (*msg_addr_cb)(const char *addr, size_t len, void *ctx);
int msg_address_list(const char *value, size_t len, msg_addr_cb cb, void *ctx);

/* Is s[0..n) "local@domain" (the local part may be quoted) with both parts present and no
 * byte an SMTP path cannot carry (controls, unquoted SP, < or >)? */
bool msg_addr_valid(const char *s, size_t n);

/* The first address of a list into out (NUL-terminated, at most cap-1 bytes). False if none. */
bool msg_first_address(const char *value, size_t len, char *out, size_t cap);

/*
 * The message's Message-ID, "<...>" with the brackets, into out (cap >=
 * MSG_ID_MAX + 1). False if there is no Message-ID field or its value is
 * not one msg-id of at most MSG_ID_MAX bytes without whitespace.
 */
bool msg_message_id(const uint8_t *msg, size_t len, char *out, size_t cap);

/* nbytes random bytes as 2*nbytes lowercase hex digits, NUL-terminated, into out. */
void msg_random_hex(char *out, size_t nbytes);

/* A new, globally unique Message-ID "<time.random@host>" into out (cap >= MSG_ID_MAX + 1). */
void msg_new_message_id(const char *host, char *out, size_t cap);

/* Any byte with the high bit set (the message needs BODY=8BITMIME). */
bool msg_has_8bit(const uint8_t *msg, size_t len);

/*
 * Append msg to out as SMTP DATA content: every line ending made CRLF (a
 * bare LF or a bare CR becomes CRLF), every line that starts with "." given
 * a second ".", and a final CRLF added when the message does not end with
 * one. The terminating ".\r\n" is not written.
 */
void msg_to_smtp_data(const uint8_t *msg, size_t len, struct buf *out);

#endif
