/*
 * tlsio.c - GnuTLS credentials and sessions (see tlsio.h).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/x509.h>

#include "buf.h"
#include "tlsio.h"
#include "url.h"

#define TLS_CREDS_MAGIC 0x544c5343u /* "TLSC" */
#define SELF_SIGNED_VALIDITY_SECONDS (10L * 365 * 24 * 3600)

struct tls_creds {
	unsigned magic;
	int refs;
	bool server;
	gnutls_certificate_credentials_t cred;
};

int tlsio_global_init(void)
{
	return gnutls_global_init() < 0 ? -1 : 0;
}

void tlsio_global_deinit(void)
{
	gnutls_global_deinit();
}

static struct tls_creds *creds_alloc(bool server, char *err, size_t errlen)
{
	struct tls_creds *c = xcalloc(1, sizeof(*c));
	c->magic = TLS_CREDS_MAGIC;
	c->refs = 1;
	c->server = server;
	int ret = gnutls_certificate_allocate_credentials(&c->cred);
	if (ret < 0) {
		snprintf(err, errlen, "TLS credentials: %s", gnutls_strerror(ret));
		free(c);
		return NULL;
	}
	return c;
}

struct tls_creds *tlsio_client_creds_new(const char *ca_file, char *err, size_t errlen)
{
	struct tls_creds *c = creds_alloc(false, err, errlen);
	if (!c)
		return NULL;
	int ret;
	if (ca_file && *ca_file) {
		ret = gnutls_certificate_set_x509_trust_file(c->cred, ca_file, GNUTLS_X509_FMT_PEM);
		if (ret == 0)
			ret = GNUTLS_E_NO_CERTIFICATE_FOUND;
		if (ret < 0) {
			snprintf(err, errlen, "CA file %s: %s", ca_file, gnutls_strerror(ret));
			tlsio_creds_unref(c);
			return NULL;
		}
	} else {
		ret = gnutls_certificate_set_x509_system_trust(c->cred);
		if (ret < 0) {
			snprintf(err, errlen, "system trust store: %s", gnutls_strerror(ret));
			tlsio_creds_unref(c);
			return NULL;
		}
	}
	return c;
}

struct tls_creds *tlsio_server_creds_new(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	struct tls_creds *c = creds_alloc(true, err, errlen);
	if (!c)
		return NULL;
	int ret = gnutls_certificate_set_x509_key_file(c->cred, cert_file, key_file, GNUTLS_X509_FMT_PEM);
	if (ret < 0) {
		snprintf(err, errlen, "certificate %s / key %s: %s", cert_file, key_file, gnutls_strerror(ret));
		tlsio_creds_unref(c);
		return NULL;
	}
	return c;
}

struct tls_creds *tlsio_creds_ref(struct tls_creds *creds)
{
	creds->refs++;
	return creds;
}

void tlsio_creds_unref(struct tls_creds *creds)
{
	if (!creds || --creds->refs > 0)
		return;
	gnutls_certificate_free_credentials(creds->cred);
	creds->magic = 0;
	free(creds);
}

/* Write data to path atomically (temp file + rename) with the given mode. */
static int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode,
                             char *err, size_t errlen)
{
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
			close(fd);
			unlink(tmp);
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

int tlsio_ensure_self_signed(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
	bool have_cert = access(cert_file, R_OK) == 0;
	bool have_key = access(key_file, R_OK) == 0;
	if (have_cert && have_key)
		return 0;
	if (have_cert != have_key) {
		snprintf(err, errlen, "only one of %s and %s exists; remove it or provide both",
		         cert_file, key_file);
		return -1;
	}

	gnutls_x509_privkey_t key = NULL;
	gnutls_x509_crt_t crt = NULL;
	gnutls_datum_t key_pem = {NULL, 0}, crt_pem = {NULL, 0};
	int ret, rc = -1;
	unsigned char serial[16];
	const unsigned char ip4[4] = {127, 0, 0, 1};
	const unsigned char ip6[16] = {[15] = 1};
	time_t now = time(NULL);

	if ((ret = gnutls_x509_privkey_init(&key)) < 0 ||
	    (ret = gnutls_x509_privkey_generate(key, GNUTLS_PK_ECDSA,
	                                        GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0)) < 0 ||
	    (ret = gnutls_x509_crt_init(&crt)) < 0 ||
	    (ret = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
	    (ret = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial))) < 0)
		goto fail;
	serial[0] &= 0x7f; /* a positive serial number */
	if ((ret = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
	    (ret = gnutls_x509_crt_set_activation_time(crt, now - 3600)) < 0 ||
	    (ret = gnutls_x509_crt_set_expiration_time(crt, now + SELF_SIGNED_VALIDITY_SECONDS)) < 0 ||
	    (ret = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, "localhost",
	                                         (unsigned)strlen("localhost"))) < 0 ||
	    (ret = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost",
	                                                (unsigned)strlen("localhost"), GNUTLS_FSAN_APPEND)) < 0 ||
	    (ret = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip4, sizeof(ip4),
	                                                GNUTLS_FSAN_APPEND)) < 0 ||
	    (ret = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip6, sizeof(ip6),
	                                                GNUTLS_FSAN_APPEND)) < 0 ||
	    (ret = gnutls_x509_crt_set_key(crt, key)) < 0 ||
	    (ret = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
	    (ret = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
	    (ret = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
	    (ret = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0 ||
	    (ret = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &key_pem)) < 0 ||
	    (ret = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &crt_pem)) < 0)
		goto fail;

	if (write_file_atomic(key_file, key_pem.data, key_pem.size, 0600, err, errlen) < 0 ||
	    write_file_atomic(cert_file, crt_pem.data, crt_pem.size, 0644, err, errlen) < 0)
		goto out;
	rc = 0;
	goto out;
fail:
	snprintf(err, errlen, "generating a self-signed certificate: %s", gnutls_strerror(ret));
out:
	gnutls_free(key_pem.data);
	gnutls_free(crt_pem.data);
	if (crt)
		gnutls_x509_crt_deinit(crt);
	if (key)
		gnutls_x509_privkey_deinit(key);
	return rc;
}

/* A non-blocking session with the system's default priorities and our certificates. */
static gnutls_session_t new_session(unsigned flags, struct tls_creds *creds, char *err, size_t errlen)
{
	gnutls_session_t s;
	int ret = gnutls_init(&s, flags | GNUTLS_NONBLOCK);
	if (ret < 0) {
		snprintf(err, errlen, "TLS session: %s", gnutls_strerror(ret));
		return NULL;
	}
	if ((ret = gnutls_set_default_priority(s)) < 0 ||
	    (ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, creds->cred)) < 0) {
		snprintf(err, errlen, "TLS session: %s", gnutls_strerror(ret));
		gnutls_deinit(s);
		return NULL;
	}
	return s;
}

gnutls_session_t tlsio_client_session(struct tls_creds *creds, const char *server_name,
                                      char *err, size_t errlen)
{
	gnutls_session_t s = new_session(GNUTLS_CLIENT, creds, err, errlen);
	if (!s)
		return NULL;
	/* SNI carries DNS names only (RFC 6066); an IP literal is still verified against the SAN. */
	if (!host_is_ip_literal(server_name)) {
		int ret = gnutls_server_name_set(s, GNUTLS_NAME_DNS, server_name, strlen(server_name));
		if (ret < 0) {
			snprintf(err, errlen, "TLS session: %s", gnutls_strerror(ret));
			gnutls_deinit(s);
			return NULL;
		}
	}
	gnutls_session_set_verify_cert(s, server_name, 0);
	return s;
}

gnutls_session_t tlsio_server_session(struct tls_creds *creds, char *err, size_t errlen)
{
	gnutls_session_t s = new_session(GNUTLS_SERVER, creds, err, errlen);
	if (s)
		gnutls_certificate_server_set_request(s, GNUTLS_CERT_IGNORE);
	return s;
}

void tlsio_describe_failure(gnutls_session_t session, int ret, char *buf, size_t len)
{
	if (ret == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
		unsigned status = gnutls_session_get_verify_cert_status(session);
		gnutls_datum_t out = {NULL, 0};
		gnutls_certificate_type_t type = gnutls_certificate_type_get(session);
		if (gnutls_certificate_verification_status_print(status, type, &out, 0) >= 0) {
			snprintf(buf, len, "certificate verification failed: %s", (const char *)out.data);
			gnutls_free(out.data);
			/* GnuTLS ends its sentences with a space; a BYE line should not. */
			for (size_t n = strlen(buf); n > 0 && buf[n - 1] == ' '; n--)
				buf[n - 1] = '\0';
			return;
		}
		snprintf(buf, len, "certificate verification failed");
		return;
	}
	snprintf(buf, len, "TLS handshake failed: %s", gnutls_strerror(ret));
}
