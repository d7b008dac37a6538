/*-------------------------------------------------------------------------
 *
 * compay.c
 *	  Module magic and _PG_init, the table of contents of the library:
 *	  one XxxInit() per concern, each defining that concern's settings
 *	  (GUCs), hooks and workers in its own file.  Shared helpers are in
 *	  compay_util.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "events.h"
#include "jobs.h"
#include "ledger.h"
#include "payout.h"
#include "payout_run.h"
#include "pricing.h"
#include "wallet_rpc.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	LedgerInit();				/* ledger.c: accounts, credit limits */
	LedgerChainHeadsInit();		/* ledger_chain_heads.c: heads in shared memory */
	LedgerStripesInit();		/* ledger_stripes.c: striped system accounts */
	PricingInit();				/* pricing_config.c: market factors, discounts */
	JobsInit();					/* jobs.c: stakes, verification, disputes */
	WorkerInit();				/* worker.c: the background worker, settlement */
	PayoutInit();				/* payout.c: Monero network, payouts, deposits */
	PayoutReconcileInit();		/* payout_reconcile.c: notes, adoption from the wallet */
	PayoutRunInit();			/* payout_run.c: how payouts and deposits run, health */
	WalletRpcInit();			/* wallet_rpc.c: the wallet and daemon RPC */
	EventsInit();				/* events.c: payment events, their retention */

	MarkGUCPrefixReserved("compay");
}
