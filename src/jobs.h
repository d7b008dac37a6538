/*-------------------------------------------------------------------------
 *
 * jobs.h
 *	  Settings of the job, escrow and dispute functions.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_JOBS_H
#define COMPAY_JOBS_H

extern void JobsInit(void);

#endif							/* COMPAY_JOBS_H */
