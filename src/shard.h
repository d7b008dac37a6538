/*-------------------------------------------------------------------------
 *
 * shard.h
 *	  Which shard owns a node, and the clearing of cross-shard payments.
 *
 *-------------------------------------------------------------------------
 */
#ifndef COMPAY_SHARD_H
#define COMPAY_SHARD_H

#include "credit.h"

/* The account of the money in flight with shard N: '$clearing:N'. */
#define SHARD_CLEARING_PREFIX "$clearing:"
/* Longest clearing account name, '$clearing:<shard>'. */
#define SHARD_CLEARING_NAME_MAX 32

extern int	ShardOf(const char *node_id);
extern const char *ShardPayee(const char *node_id, int *remote_shard);
extern void ShardRequireLocal(const char *node_id, const char *role);
extern void ShardCheckId(int64 id, const char *sequence);
extern char *ShardClearingAccount(int shard);
extern void ShardRefuseRefund(int64 transfer_id, const char *payer, const char *payee);
extern void ShardQueueCredit(int remote_shard, int64 transfer_id, const char *payee,
							 Credit amount, const char *currency, const char *reference);

#endif							/* COMPAY_SHARD_H */
