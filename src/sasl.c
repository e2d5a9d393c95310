/*
 * sasl.c - SASL PLAIN encoding and decoding (see sasl.h).
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "sasl.h"

long sasl_base64_decode(const char *in, size_t len, uint8_t *out, size_t outcap)
{
	gnutls_datum_t src = {(unsigned char *)(uintptr_t)in, (unsigned)len};
	gnutls_datum_t dst = {NULL, 0};
	if (len == 0)
		return 0;
	if (gnutls_base64_decode2(&src, &dst) < 0)
		return -1;
	if (dst.size > outcap) {
		gnutls_memset(dst.data, 0, dst.size);
		gnutls_free(dst.data);
		return -1;
	}
	memcpy(out, dst.data, dst.size);
	long n = (long)dst.size;
	gnutls_memset(dst.data, 0, dst.size);
	gnutls_free(dst.data);
	return n;
}

enum sasl_plain_result sasl_plain_decode(const char *b64, size_t len, uint8_t raw[SASL_PLAIN_MAX + 1],
                                         struct sasl_plain *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 1 && b64[0] == '*')
		return SASL_PLAIN_CANCELLED;
	long n = sasl_base64_decode(b64, len, raw, SASL_PLAIN_MAX);
	if (n < 0)
		return SASL_PLAIN_BAD_BASE64;
	raw[n] = '\0';
	/* authzid NUL authcid NUL password */
	uint8_t *z1 = memchr(raw, '\0', (size_t)n);
	uint8_t *z2 = z1 ? memchr(z1 + 1, '\0', (size_t)(raw + n - z1 - 1)) : NULL;
	if (!z1 || !z2)
		return SASL_PLAIN_MALFORMED;
	size_t authz_len = (size_t)(z1 - raw);
	out->user = (const char *)z1 + 1;
	out->user_len = (size_t)(z2 - z1 - 1);
	out->password = (const char *)z2 + 1;
	out->password_len = (size_t)(raw + n - z2 - 1);
	if (authz_len && (authz_len != out->user_len || memcmp(raw, out->user, out->user_len) != 0))
		return SASL_PLAIN_AUTHZID;
	return SASL_PLAIN_OK;
}

void sasl_plain_peek(const char *b64, size_t len, void (*fn)(void *ctx, const struct sasl_plain *plain), void *ctx)
{
	uint8_t raw[SASL_PLAIN_MAX + 1];
	struct sasl_plain plain;
	if (sasl_plain_decode(b64, len, raw, &plain) == SASL_PLAIN_OK)
		fn(ctx, &plain);
	gnutls_memset(raw, 0, sizeof(raw));
}

const char *sasl_plain_refusal(enum sasl_plain_result r)
{
	switch (r) {
	case SASL_PLAIN_CANCELLED:
		return "BAD AUTHENTICATE cancelled";
	case SASL_PLAIN_BAD_BASE64:
		return "BAD Invalid base64 in AUTHENTICATE";
	case SASL_PLAIN_MALFORMED:
		return "BAD Malformed PLAIN response";
	case SASL_PLAIN_AUTHZID:
		return "NO [AUTHORIZATIONFAILED] Proxy authorization is not supported";
	case SASL_PLAIN_OK:
		break;
	}
	return "BAD Authentication failed";
}

void sasl_base64_encode(const void *data, size_t len, struct buf *out)
{
	gnutls_datum_t src = {(unsigned char *)(uintptr_t)data, (unsigned)len};
	gnutls_datum_t dst = {NULL, 0};
	if (len && gnutls_base64_encode2(&src, &dst) == 0) {
		buf_append(out, dst.data, dst.size);
		gnutls_memset(dst.data, 0, dst.size);
		gnutls_free(dst.data);
	}
}

void sasl_plain_encode(const char *user, size_t user_len, const char *password, size_t password_len,
                       struct buf *out)
{
	size_t n = 2 + user_len + password_len;
	uint8_t *raw = xmalloc(n);
	raw[0] = '\0';
	memcpy(raw + 1, user, user_len);
	raw[1 + user_len] = '\0';
	memcpy(raw + 2 + user_len, password, password_len);
	sasl_base64_encode(raw, n, out);
	gnutls_memset(raw, 0, n);
	free(raw);
}

void sasl_cred_hash(const uint8_t key[SASL_CRED_KEY_LEN], const char *user, const char *password,
                    uint8_t out[SASL_CRED_HASH_LEN])
{
	struct buf b;
	buf_init(&b, 0);
	buf_append(&b, user, strlen(user) + 1);
	buf_append(&b, password, strlen(password));
	gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, SASL_CRED_KEY_LEN, buf_head(&b), buf_len(&b), out);
	gnutls_memset(b.data, 0, b.cap);
	buf_free(&b);
}

bool sasl_cred_equal(const uint8_t a[SASL_CRED_HASH_LEN], const uint8_t b[SASL_CRED_HASH_LEN])
{
	uint8_t d = 0;
	for (size_t i = 0; i < SASL_CRED_HASH_LEN; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}
