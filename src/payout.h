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

#endif							/* COMPAY_PAYOUT_H */
