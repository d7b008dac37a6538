/*-------------------------------------------------------------------------
 *
 * compay.h
 *	  Limits, SQLSTATEs of our own and declarations shared by every part of
 *	  compay.
 *
 * Domain outcomes (insufficient funds, a hold that is not pending, an
 * idempotency conflict, ...) have SQLSTATEs of their own in class PY, a class
 * PostgreSQL does not use.  Each one is listed in docs/reference.md.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_H
#define COMPAY_H

#include "utils/numeric.h"

/* Longest piece of user input echoed back in an error message. */
#define COMPAY_ECHO_LEN_MAX 64

/* Returns a palloc'd copy of input, cut to COMPAY_ECHO_LEN_MAX characters. */
extern char *CompayEchoInput(const char *input);

/* numeric from and to text, and compared (compay.c). */
extern Numeric CompayNumeric(const char *text);
extern char *CompayNumericText(Numeric n);
extern int	CompayNumericCmp(Numeric a, Numeric b);

#endif							/* COMPAY_H */
