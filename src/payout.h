/*-------------------------------------------------------------------------
 *
 * payout.h
 *	  The payout state machine (src/payout.c), driven by the worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_PAYOUT_H
#define COMPAY_PAYOUT_H

extern void PayoutInit(void);
extern int64 PayoutRound(void);

#endif							/* COMPAY_PAYOUT_H */
