/*
 * store_conn.h - one IMAP client connection from the gateway to the store,
 * logged in with a user's own credentials.
 *
 * It does the setup itself (connect, implicit TLS or STARTTLS with
 * certificate verification, greeting, CAPABILITY, LOGIN, COMPRESS, ENABLE
 * CONDSTORE) and then carries tagged commands for its owner: each command
 * gets the connection's own tag ("G<n>") and a completion callback; untagged
 * responses and continuations go to the owner, who knows which command or
 * IDLE they belong to. The owner can change (a client connection hands its
 * store connection to the session when it is parked, and takes it back on
 * resume).
 */
#ifndef PIMAP_STORE_CONN_H
#define PIMAP_STORE_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "buf.h"
#include "imap_parse.h"
#include "tlsio.h"

struct store_conn;

/* Where the store is and how to reach it; borrowed, must outlive the connections. */
struct store_target {
	char host[256];
	char port[8];
	bool implicit_tls;
	bool allow_plaintext;     /* imap:// without STARTTLS */
	const char *server_name;  /* to verify; host when NULL/"" */
	struct tls_creds *creds;  /* client credentials (CA) */
	bool compress;            /* COMPRESS=DEFLATE when offered */
	bool enable_condstore;    /* ENABLE CONDSTORE when offered (P-IMAP sessions) */
	double connect_timeout;   /* whole setup including LOGIN */
	size_t out_limit;         /* output backpressure threshold */
	struct imap_limits limits;
	/*
	 * Optional: connections come from open() instead of host:port, already
	 * secured by whoever made them (pimap-proxy's HTTPS binding, whose TLS to
	 * the gateway is verified there): no TLS or STARTTLS here. Returns a
	 * connected socket, or -1 with err.
	 */
	int (*open)(void *open_arg, const char *log_prefix, char *err, size_t errlen);
	void *open_arg;
};

enum store_login_result {
	STORE_LOGIN_OK,
	STORE_LOGIN_REFUSED,  /* the store said NO to the credentials: text says why */
	STORE_LOGIN_FAILED,   /* connection, TLS or protocol failure: text says why */
};

struct store_conn_ops {
	/* Setup finished (once). After anything but OK the connection is closed and freed. */
	void (*login_done)(struct store_conn *sc, enum store_login_result result, const char *text, void *ctx);
	/* An untagged response after login. */
	void (*untagged)(struct store_conn *sc, const struct imap_msg *m, void *ctx);
	/* A "+" continuation after login (IDLE accepted, AUTHENTICATE never used). */
	void (*continuation)(struct store_conn *sc, const struct imap_msg *m, void *ctx);
	/* The connection broke or the store said BYE after login; sc is freed after this returns. */
	void (*closed)(struct store_conn *sc, const char *reason, void *ctx);
	/* Output fell below the threshold again (for owners that paused their own input). */
	void (*drained)(struct store_conn *sc, void *ctx);
};

/* Completion of one command: m is the tagged response. When the connection dies first,
 * no command completes: the owner's closed (or login_done) callback is the one place
 * to clean up what it had in flight. */
typedef void (*store_done_cb)(struct store_conn *sc, const struct imap_msg *m, void *cmd_ctx);

/* Start connecting and logging in as user/password (copied; the password is wiped after LOGIN).
 * NULL (and no callback) when the connection cannot even be started. */
struct store_conn *store_conn_open(struct ev_loop *loop, const struct store_target *target, const char *user,
                                   const char *password, const char *log_prefix,
                                   const struct store_conn_ops *ops, void *ctx);

void store_conn_set_owner(struct store_conn *sc, const struct store_conn_ops *ops, void *ctx);
/* Change the log prefix (e.g. when parked). */
void store_conn_set_prefix(struct store_conn *sc, const char *log_prefix);

/*
 * Send a command: text is everything after the tag (arguments, literals as
 * LITERAL+, and the final CRLF). Returns the tag used (valid until done runs).
 * secret: trace it with arguments elided (credentials).
 */
const char *store_conn_send(struct store_conn *sc, const void *text, size_t len, bool secret, store_done_cb done,
                            void *cmd_ctx);
const char *store_conn_sendf(struct store_conn *sc, store_done_cb done, void *cmd_ctx, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* The next tag store_conn_send will use (so a caller can build a re-tagged command in place). */
const char *store_conn_next_tag(struct store_conn *sc);
/* A LOGOUT is on its way: pass the store's "* BYE" to the owner instead of failing. */
void store_conn_expect_bye(struct store_conn *sc);
/* Send raw bytes with no tag (IDLE's "DONE\r\n"). */
void store_conn_send_raw(struct store_conn *sc, const void *data, size_t len);
/* Forget the callback of every command still in flight (their responses are dropped); used at handoff. */
void store_conn_orphan_commands(struct store_conn *sc);

unsigned store_conn_in_flight(const struct store_conn *sc);
bool store_conn_has_cap(const struct store_conn *sc, const char *cap);
/*
 * Can a command with these arguments go to the store with its literals
 * non-synchronising (as imap_write_retagged writes them)? Yes without
 * literals; with them only if the store has LITERAL+, or LITERAL- and no
 * literal is over 4096 bytes (RFC 7888). A store without either refuses
 * the command line and reads the literal's bytes as commands.
 */
bool store_conn_takes_literals(const struct store_conn *sc, const struct imap_arg *args, size_t nargs);
const char *store_conn_caps(const struct store_conn *sc); /* space-separated, after login */
bool store_conn_output_full(const struct store_conn *sc);
void store_conn_pause_reading(struct store_conn *sc, bool pause);

/* Close now; no callback fires after this. */
void store_conn_close(struct store_conn *sc);

#endif
