/*-------------------------------------------------------------------------
 *
 * payout.h
 *	  The payout state machine and the deposit poll (src/payout.c), run
 *	  by the worker or the procedures of src/payout_run.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_PAYOUT_H
#define COMPAY_PAYOUT_H

extern void PayoutInit(void);
extern int64 PayoutRound(void);
extern int64 PollDeposits(void);
extern void PayoutReconcileDue(void);

/* src/payout_reconcile.c */
extern void PayoutReconcileInit(void);
extern bool PayoutSetWalletNote(const char *tx_hash, const char *note);
extern char *PayoutNoteTransfer(const char *id, bool payees_pay_fee, const char *tx_hash,
								const char *reply);
extern bool PayoutReconcileWallet(void);

#endif							/* COMPAY_PAYOUT_H */
