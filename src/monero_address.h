/*-------------------------------------------------------------------------
 *
 * monero_address.h
 *	  Local validation of Monero addresses: Monero's base58, Keccak-256 and
 *	  the address layout.  No I/O, no ereport: callers decide what a bad
 *	  address means.
 *
 *-------------------------------------------------------------------------
 */
#ifndef MONERO_ADDRESS_H
#define MONERO_ADDRESS_H

/* Text lengths: standard addresses and subaddresses, integrated addresses. */
#define MONERO_ADDRESS_LEN 95
#define MONERO_INTEGRATED_ADDRESS_LEN 106

#define MONERO_KEY_LEN 32
#define MONERO_PAYMENT_ID_LEN 8
#define MONERO_CHECKSUM_LEN 4
#define KECCAK256_LEN 32

typedef enum MoneroNetwork
{
	MONERO_MAINNET,
	MONERO_TESTNET,
	MONERO_STAGENET
} MoneroNetwork;

typedef enum MoneroAddressKind
{
	MONERO_STANDARD,
	MONERO_SUBADDRESS,
	MONERO_INTEGRATED
} MoneroAddressKind;

typedef struct MoneroAddress
{
	MoneroNetwork network;
	MoneroAddressKind kind;
	uint64		prefix;			/* the network byte, a varint */
	uint8		spend_key[MONERO_KEY_LEN];
	uint8		view_key[MONERO_KEY_LEN];
	uint8		payment_id[MONERO_PAYMENT_ID_LEN];	/* integrated only, else 0 */
} MoneroAddress;

/*
 * Parses text as a Monero address.  On success fills *out and returns true;
 * otherwise sets *reason to a full sentence saying why (a static string).
 */
extern bool MoneroAddressParse(const char *text, MoneroAddress *out,
							   const char **reason);

/*
 * Decodes len characters of Monero base58 into out (out_max bytes).
 * Returns the decoded length, or -1 for a bad character, a bad length of
 * the last block, a block that overflows or an out buffer too small.
 */
extern int	MoneroBase58Decode(const char *text, Size len, uint8 *out,
							   Size out_max);

/* The original Keccak-256 (padding 0x01), as Monero uses it. */
extern void MoneroKeccak256(const uint8 *data, Size len, uint8 *hash);

extern const char *MoneroNetworkName(MoneroNetwork network);
extern const char *MoneroAddressKindName(MoneroAddressKind kind);
extern bool MoneroNetworkFromName(const char *name, MoneroNetwork *network);

#endif							/* MONERO_ADDRESS_H */
