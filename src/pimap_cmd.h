/*
 * pimap_cmd.h - the P-IMAP grammar the gateway implements, as pure
 * functions: the login name that carries a device id, the preferences of
 * XSETPIMAPPREF / XGETPIMAPPREF(S), and the XPROVISION listing.
 * No I/O; the gateway calls these with parsed arguments (imap_parse.h).
 * docs/PROTOCOL.md describes the same profile in prose.
 */
#ifndef PIMAP_PIMAP_CMD_H
#define PIMAP_PIMAP_CMD_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "imap_parse.h"

/* ---- login name: user#P<device-id>[@domain] ------------------------------ */

#define PIMAP_MAX_DEVICE_ID 64   /* bytes of a device id */
#define PIMAP_MAX_USER_NAME 256  /* bytes of the whole login name */

struct pimap_login {
	char *store_user; /* the name the store knows: user or user@domain */
	char *device_id;  /* NULL: a plain IMAP session (no "#P") */
};

/*
 * Split a login name. "joe#P6505551234@example.org" gives store_user
 * "joe@example.org", device "6505551234"; "joe" gives store_user "joe", no
 * device. The separator is the last "#P" of the local part. A device id is
 * 1..PIMAP_MAX_DEVICE_ID bytes of [A-Za-z0-9._-]. Returns 0, or -1 with err
 * (empty user, bad device id, name too long). Free with pimap_login_free.
 */
int pimap_login_parse(const char *name, size_t len, struct pimap_login *out, char *err, size_t errlen);
void pimap_login_free(struct pimap_login *login);

/* ---- preferences ---------------------------------------------------------- */

enum pimap_pref_id {
	PIMAP_PREF_OUTBAND_ADDRESS,   /* free text (astring), "" by default */
	PIMAP_PREF_OUTBAND_CHANNEL,   /* one of pimap_outband_channels; NONE */
	PIMAP_PREF_OUTBAND_FORMAT,    /* EMN | EXTENDED; EMN */
	PIMAP_PREF_INBAND_NEW_FORMAT, /* NONE or a FETCH attribute list; NONE */
	PIMAP_PREF_INBAND_PUSH,       /* ON | OFF; OFF */
	PIMAP_PREF_EVENT_FILTER,      /* ALL | NEW | NONE; ALL */
	PIMAP_PREF_FOLDER_STATUS,     /* ON | OFF; OFF (pimap's extension: STATUS of the other folders pushed) */
	PIMAP_PREF_COUNT
};

#define PIMAP_MAX_PREF_VALUE 1024 /* bytes of one canonical value */

/*
 * Out-band channels this build can deliver on. Only what is implemented is
 * listed; "NONE" is always there. The server's configuration may offer
 * fewer (struct pimap_pref_policy).
 */
extern const char *const pimap_outband_channels[];

/*
 * What the server allows beyond the grammar, for XSETPIMAPPREF:
 * channels     the out-band channels offered now (NULL: pimap_outband_channels);
 *              a known channel not among them gets "not offered"
 * check_address  called with a PIMAP_OUTBAND_ADDRESS value that passed the
 *              grammar (NULL: none); returns 0, or -1 with err for the NO.
 *              ctx and peer (the client's address, "addr:port") are passed on.
 */
struct pimap_pref_policy {
	const char *const *channels;
	int (*check_address)(const char *address, const void *ctx, const char *peer, char *err, size_t errlen);
	const void *ctx;
	const char *peer;
};

struct pimap_prefs {
	char *value[PIMAP_PREF_COUNT]; /* canonical text, never NULL after pimap_prefs_init */
};

void pimap_prefs_init(struct pimap_prefs *prefs);   /* all defaults */
void pimap_prefs_free(struct pimap_prefs *prefs);
void pimap_prefs_copy(struct pimap_prefs *dst, const struct pimap_prefs *src);

const char *pimap_pref_name(enum pimap_pref_id id);
/* Case-insensitive lookup of "PIMAP_..." (also the draft's "PIMAP_IN-BAND_NEW_FORMAT"); -1 if unknown. */
int pimap_pref_lookup(const char *name, size_t len);

/*
 * Set a preference from a stored canonical value (state database). Returns
 * 0, or -1 if the value is not valid for it (the caller keeps the default).
 */
int pimap_pref_set_value(struct pimap_prefs *prefs, enum pimap_pref_id id, const char *value);

/*
 * XSETPIMAPPREF: args are the command's arguments after the command name
 * (args[0] is the preference name). Validates and canonicalises the value:
 * ON/OFF/ALL/NEW/NONE/EMN/EXTENDED upper-cased; NEW_FORMAT accepts NONE, the
 * macros ALL/FAST/FULL, one fetch attribute or a parenthesised list (also
 * the -01 spelling "PIMAP_INBAND_NEW_FORMAT_(...)" split by the caller's
 * parser into name + list), stored as "(ATT ATT ...)" or "NONE".
 * Fetch attributes accepted: FLAGS UID INTERNALDATE RFC822.SIZE ENVELOPE
 * BODYSTRUCTURE BODY BODY[...]<...> BODY.PEEK[...]<...> BINARY.PEEK[...]
 * BINARY.SIZE[...] RFC822.HEADER. policy (may be NULL) narrows the out-band
 * channel and address. On success *id_out names the preference. Returns 0,
 * or -1 with a message for the client in err (prefs untouched).
 */
int pimap_pref_set_args(struct pimap_prefs *prefs, const struct imap_arg *args, size_t nargs,
                        const struct pimap_pref_policy *policy, enum pimap_pref_id *id_out, char *err,
                        size_t errlen);

/*
 * XGETPIMAPPREF(S): args after the command name: nothing (all), a list of
 * names, or names as separate atoms. Appends "* <verb> (NAME value NAME value)\r\n"
 * to out, verb being the command name as the client spelt it, upper-cased.
 * Values that are not atoms (empty address, text with spaces) are quoted.
 * Returns 0, or -1 with err naming the unknown preference.
 */
int pimap_prefs_format_get(const struct pimap_prefs *prefs, const char *verb, const struct imap_arg *args,
                           size_t nargs, struct buf *out, char *err, size_t errlen);

/*
 * The FETCH attribute list to ask the store for when pushing a new message
 * under PIMAP_INBAND_NEW_FORMAT: UID first, then the preference's items with
 * BODY[...] turned into BODY.PEEK[...] and RFC822.HEADER into
 * BODY.PEEK[HEADER] (a push must not set \Seen). Appends "(UID ...)" to out.
 * Returns false if the preference is NONE (push EXISTS).
 */
bool pimap_new_format_fetch_items(const struct pimap_prefs *prefs, struct buf *out);

/* ---- XZIP ------------------------------------------------------------------ */

/*
 * "tag XZIP inner-tag inner-command ...": parse the inner command (from its
 * tag to the end of the outer command's raw text) with limits, and check
 * it: an inner tag that is the outer argument as written and differs from
 * the outer tag, and a command that may be wrapped (not IDLE, STARTTLS,
 * COMPRESS, AUTHENTICATE, LOGOUT, XZIP or LOGIN). The checks are made on
 * the inner parse, which is what runs. Returns the parser holding the
 * inner command (imap_parser_msg; the caller frees it), or NULL with the
 * client's BAD text in err.
 */
struct imap_parser *pimap_xzip_parse_inner(const struct imap_msg *m, const struct imap_limits *limits, char *err,
                                           size_t errlen);

/* ---- XPROVISION ----------------------------------------------------------- */

/*
 * Append the untagged XPROVISION lines: for every preference, the allowed
 * values ("* XPROVISION XPIMAPPREF PIMAP_INBAND_PUSH (ON OFF)"; free-form
 * ones show their form, e.g. "(NONE fetch-att-list)"), then every limit in
 * limits[] as "* XPROVISION LIMIT <name> <value>" (names like
 * MAX_QUEUED_EVENTS). nlimits may be 0. channels: the out-band channels
 * offered (NULL: pimap_outband_channels).
 */
struct pimap_provision_limit {
	const char *name;
	unsigned long long value;
};
void pimap_provision_format(const struct pimap_provision_limit *limits, size_t nlimits,
                            const char *const *channels, struct buf *out);

#endif
