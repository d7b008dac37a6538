/*-------------------------------------------------------------------------
 *
 * ledger_stripes.c
 *	  System accounts striped over several rows, so that no money-moving
 *	  path takes a lock every caller shares.
 *
 * A system account ('$external', '$rewards', '$fees', '$clawbacks', ...)
 * is the set of rows named '$name' (stripe 0) and '$name#1' up to
 * '$name#63'.  Each row is an ordinary system-flagged account row with
 * its own balance, journal hash chain and row lock; the account's balance
 * is the exact sum of its rows (compay.system_balances).  A flow locks
 * stripe 0 unless another transaction holds it (SKIP LOCKED), else the
 * stripe its backend id selects, and waits only when that one is held
 * too; so concurrent callers lock different rows, and the ledger's
 * invariants (balances sum to zero, each row's balance is its journal's
 * sum, each chain intact) hold row by row as before.  Stripe 0 is the row
 * a 0.1 ledger already has, and a ledger without concurrent flows never
 * opens another.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/backendid.h"
#include "utils/guc.h"

#include "compay.h"
#include "ledger.h"

static int	system_account_stripes = 16;

void
LedgerStripesInit(void)
{
	DefineCustomIntVariable("compay.system_account_stripes",
							"Rows each system account ($external, $rewards, $fees, ...) is striped over.",
							"A backend posts to one of them, chosen by its backend id; 1 puts every flow on one row.",
							&system_account_stripes, 16, 1, LEDGER_STRIPES_MAX,
							PGC_SUSET, 0, NULL, NULL, NULL);
}

/*
 * This backend's own stripe row of the system account node_id,
 * '<node_id>#<n>' with n from 1 to stripes - 1; node_id itself for an
 * ordinary node or when the account has one row only.  A flow takes
 * stripe 0 ('<node_id>') when no other transaction holds it, so a ledger
 * without concurrent flows keeps one row per system account.
 */
const char *
LedgerStripeNode(const char *node_id)
{
	int			stripe;

	if (node_id[0] != '$' || system_account_stripes <= 1)
		return node_id;
	Assert(MyBackendId != InvalidBackendId);
	stripe = 1 + MyBackendId % (system_account_stripes - 1);
	return psprintf("%s#%d", node_id, stripe);
}

/*
 * The account name of a row: a stripe's row name without its '#<n>'.
 * Changes the string in place; ordinary node ids never start with '$'.
 */
void
LedgerStripeBase(char *row_node_id)
{
	char	   *hash;

	if (row_node_id[0] != '$')
		return;
	hash = strchr(row_node_id, '#');
	if (hash != NULL)
		*hash = '\0';
}
