/*
 * gw_deliver.h - the gateway's XDELIVER: relaying a message to the
 * submission server with the user's credentials, re-attaching an
 * original's attachments from the store (R/F ... Y), saving the sent copy
 * (SAVETO), and answering a retry of a message already sent from the
 * memory of recent deliveries (gw_sent.h) instead of sending it again.
 *
 * A delivery is a job owned by this module, not by the client connection:
 * when the client goes away in the middle (a link that broke), the job
 * still finishes and records its outcome, so that the client's retry
 * after reconnecting gets that outcome. A retry that arrives while the
 * first attempt still runs waits for it.
 */
#ifndef PIMAP_GW_DELIVER_H
#define PIMAP_GW_DELIVER_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "gateway_config.h"
#include "store_conn.h"
#include "xdeliver.h"

struct gw_deliver;
struct deliver_job;

/* The tagged result without the tag ("OK [...] ...", "NO [...] ..."). The job is gone after this returns. */
typedef void (*gw_deliver_cb)(const char *result, void *ctx);

/*
 * NULL without error (*err = '\0') when cfg has no submission.url: XDELIVER
 * is then not offered. store is the plain-session store target (borrowed).
 * NULL with err when the configuration cannot be used.
 */
struct gw_deliver *gw_deliver_new(struct ev_loop *loop, const struct gateway_config *cfg,
                                  const struct store_target *store, const char *state_dir, char *err,
                                  size_t errlen);
void gw_deliver_reconfigure(struct gw_deliver *d, const struct gateway_config *cfg);
/* Jobs still running are cut (a SENDING record stays: their retries are answered DELIVERYUNKNOWN). */
void gw_deliver_free(struct gw_deliver *d);

/*
 * Run one XDELIVER for user (password: the user's, copied and wiped when
 * the job ends). cmd is taken over (its message is copied: the parsed
 * command may go). cb runs exactly once, possibly before this returns,
 * unless the job is detached first.
 */
struct deliver_job *gw_deliver_start(struct gw_deliver *d, const char *user, const char *password,
                                     struct xdeliver_cmd *cmd, const char *log_prefix, gw_deliver_cb cb,
                                     void *ctx);
/* The owner is going away: the job goes on, its result is only recorded. */
void gw_deliver_detach(struct deliver_job *job);

#endif
