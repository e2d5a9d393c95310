/*
 * tlsio.h - GnuTLS credentials and sessions for both legs.
 *
 * Client side: certificate verification is always on; trust anchors come from
 * the system store or a configured CA file; the server name is verified
 * against the certificate (DNS name or IP address) and sent as SNI when it is
 * a DNS name. Server side: a certificate/key pair from files, or one this
 * module generates on first start (self-signed, for loopback listeners).
 * The sessions are driven non-blocking by stream.c; this module owns no fds.
 */
#ifndef PIMAP_TLSIO_H
#define PIMAP_TLSIO_H

#include <stdbool.h>
#include <stddef.h>

#include <gnutls/gnutls.h>

/* Refcounted so connections keep the credentials they started with across a reload. */
struct tls_creds;

int  tlsio_global_init(void);
void tlsio_global_deinit(void);

/* Client credentials: ca_file NULL or "" uses the system trust store. Returns NULL with err filled. */
struct tls_creds *tlsio_client_creds_new(const char *ca_file, char *err, size_t errlen);
/* Server credentials from PEM files. Returns NULL with err filled. */
struct tls_creds *tlsio_server_creds_new(const char *cert_file, const char *key_file, char *err, size_t errlen);
struct tls_creds *tlsio_creds_ref(struct tls_creds *creds);
void tlsio_creds_unref(struct tls_creds *creds);

/*
 * Make sure cert_file/key_file exist: if both are missing, generate an ECDSA
 * P-256 key and a self-signed certificate for "localhost", 127.0.0.1 and ::1
 * valid for ten years, written with mode 0600/0644. Returns 0, or -1 with err.
 */
int tlsio_ensure_self_signed(const char *cert_file, const char *key_file, char *err, size_t errlen);

/* New client session verifying `server_name` (name or IP literal). Returns NULL with err. */
gnutls_session_t tlsio_client_session(struct tls_creds *creds, const char *server_name,
                                      char *err, size_t errlen);
/* New server session. Returns NULL with err. */
gnutls_session_t tlsio_server_session(struct tls_creds *creds, char *err, size_t errlen);

/*
 * Human-readable reason for a failed handshake: for verification failures the
 * certificate status ("certificate verification failed: The certificate is NOT
 * trusted. ..."), else gnutls_strerror(ret). Writes into buf.
 */
void tlsio_describe_failure(gnutls_session_t session, int ret, char *buf, size_t len);

#endif
