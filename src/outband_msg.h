/*
 * outband_msg.h - the payloads of out-band notifications, as pure functions.
 *
 * EMN: the OMA e-mail notification the draft names as default, a plain XML
 * wake-up ("new mail for this account") with no secret in it.
 *
 * EXTENDED: the draft's "<marker> <seq> <account> <event> [...]" with
 * everything after the marker sealed under the device's key. The draft
 * leaves the cipher open; this profile (docs/PROTOCOL.md section 6):
 *
 *   datagram  = "_%$P-IMAP$%_" SP base64(blob)
 *   blob      = version(1 octet, 1) seq(8 octets, big-endian) salt(4 octets)
 *               ciphertext tag(16 octets)
 *   AEAD      = AES-256-GCM, key = the device key (32 octets, XPROVISION)
 *   nonce     = seq || salt (12 octets)
 *   AD        = the marker || version || seq
 *   plaintext = seq-decimal SP account SP event [SP mailbox]
 *
 * seq grows strictly per gateway (microseconds since the epoch, or one more
 * than the last one sent), so a receiver that keeps the highest seq it has
 * accepted refuses replays, and one that also bounds the age refuses old
 * datagrams after its own restart.
 */
#ifndef PIMAP_OUTBAND_MSG_H
#define PIMAP_OUTBAND_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "buf.h"

#define OUTBAND_MARKER "_%$P-IMAP$%_"
#define OUTBAND_VERSION 1
#define OUTBAND_KEY_LEN 32         /* AES-256 */
#define OUTBAND_SALT_LEN 4
#define OUTBAND_TAG_LEN 16
/* A datagram above this could be fragmented on the way; EXTENDED stays far below. */
#define OUTBAND_MAX_DATAGRAM 1200
#define OUTBAND_MAX_ACCOUNT 320
#define OUTBAND_MAX_MAILBOX 256

enum outband_event {
	OB_NEW_MESSAGE,
	OB_DELETED_MESSAGE,
	OB_CHANGED_MESSAGE,
	OB_SYNC,
	OB_FULL_SYNC,
	OB_EVENT_COUNT
};

const char *outband_event_name(enum outband_event ev);

/*
 * Seal an EXTENDED notification. mailbox may be NULL or "". Appends the
 * datagram (text, no line end) to out. Returns 0, or -1 if the fields do
 * not fit or the cipher failed.
 */
int outband_extended_encode(const uint8_t key[OUTBAND_KEY_LEN], uint64_t seq, const uint8_t salt[OUTBAND_SALT_LEN],
                            const char *account, enum outband_event ev, const char *mailbox, struct buf *out);

struct outband_notice {
	uint64_t seq;
	char account[OUTBAND_MAX_ACCOUNT + 1];
	enum outband_event event;
	char mailbox[OUTBAND_MAX_MAILBOX + 1];
};

/*
 * Open an EXTENDED datagram. Returns 0 with *out filled, or -1 with a static
 * reason (not ours, malformed, forged or corrupted, sequence mismatch).
 * Replay and age checks are the caller's (outband_seq_acceptable).
 */
int outband_extended_decode(const uint8_t key[OUTBAND_KEY_LEN], const uint8_t *dgram, size_t len,
                            struct outband_notice *out, const char **why);

/*
 * A receiver's replay rule: seq must be above the highest accepted one, and
 * (max_age_us > 0) not older than max_age_us, nor more than max_age_us in
 * the future, by the receiver's clock now_us. seq is microseconds since the
 * epoch when the sender's clock is sane.
 */
bool outband_seq_acceptable(uint64_t last_seq, uint64_t seq, uint64_t now_us, uint64_t max_age_us,
                            const char **why);

/* EMN (OMA Email Notification 1.0): <emn mailbox="mailat:ACCOUNT" timestamp="..."/>, ACCOUNT XML-escaped. */
void outband_emn_format(const char *account, time_t when, struct buf *out);

#endif
