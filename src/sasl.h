/*
 * sasl.h - the SASL PLAIN mechanism (RFC 4616) as IMAP carries it (base64).
 *
 * Shared by the gateway (which receives AUTHENTICATE PLAIN) and the proxy
 * (which receives it from clients and sends it upstream). Pure: no I/O.
 * Decoded secrets live in a caller-provided buffer that the caller wipes.
 */
#ifndef PIMAP_SASL_H
#define PIMAP_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Largest decoded PLAIN message accepted (authzid + authcid + password). */
#define SASL_PLAIN_MAX 1024

enum sasl_plain_result {
	SASL_PLAIN_OK,
	SASL_PLAIN_CANCELLED, /* the client sent "*" */
	SASL_PLAIN_BAD_BASE64,
	SASL_PLAIN_MALFORMED, /* not authzid NUL authcid NUL password */
	SASL_PLAIN_AUTHZID,   /* an authzid other than the authcid: proxy authorisation */
};

/* Points into the caller's raw buffer (SASL_PLAIN_MAX + 1 bytes). */
struct sasl_plain {
	const char *user;
	size_t user_len;
	const char *password;
	size_t password_len;
};

/* Decode one base64 AUTHENTICATE PLAIN response into raw; wipe raw after use. */
enum sasl_plain_result sasl_plain_decode(const char *b64, size_t len, uint8_t raw[SASL_PLAIN_MAX + 1],
                                         struct sasl_plain *out);

/* Decode one AUTHENTICATE PLAIN response and, if it decodes cleanly, hand the credentials to fn;
 * what was decoded is wiped before this returns (for callers that only note them). */
void sasl_plain_peek(const char *b64, size_t len, void (*fn)(void *ctx, const struct sasl_plain *plain), void *ctx);

/* The tagged answer (after the tag) to a decode that failed: "BAD ..." or "NO [...] ...". */
const char *sasl_plain_refusal(enum sasl_plain_result r);

/* Plain base64 (RFC 4648), for SASL LOGIN's steps. Decode: the byte count, or -1 on
 * bad input or more than outcap bytes (the caller wipes out). Encode appends to out. */
long sasl_base64_decode(const char *in, size_t len, uint8_t *out, size_t outcap);
void sasl_base64_encode(const void *data, size_t len, struct buf *out);

/*
 * Credentials kept to be recognised later, never stored: an HMAC-SHA256 of
 * user NUL password under a random per-process key (SASL_CRED_KEY_LEN
 * bytes). The comparison takes the same time whatever differs.
 */
#define SASL_CRED_KEY_LEN 32
#define SASL_CRED_HASH_LEN 32
void sasl_cred_hash(const uint8_t key[SASL_CRED_KEY_LEN], const char *user, const char *password,
                    uint8_t out[SASL_CRED_HASH_LEN]);
bool sasl_cred_equal(const uint8_t a[SASL_CRED_HASH_LEN], const uint8_t b[SASL_CRED_HASH_LEN]);

/* Append base64("" NUL user NUL password) to out (an initial response). */
void sasl_plain_encode(const char *user, size_t user_len, const char *password, size_t password_len,
                       struct buf *out);

#endif
