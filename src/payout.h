/*-------------------------------------------------------------------------
 *
 * payout.h
 *	  The payout state machine (src/payout.c), driven by the worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_PAYOUT_H
#define COMPAY_PAYOUT_H

extern PGDLLIMPORT int deposit_rescan_blocks;

extern int64 PayoutRound(void);

#endif							/* COMPAY_PAYOUT_H */
