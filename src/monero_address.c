/*-------------------------------------------------------------------------
 *
 * monero_address.c
 *	  Local validation of Monero addresses, before compay ever pays one:
 *	  Monero's base58, the original Keccak-256, the address layout, and the
 *	  SQL functions compay.monero_address_info() and
 *	  compay.check_monero_address().
 *
 * An address is base58 of: the network byte (a varint), the public spend
 * key, the public view key, for an integrated address an 8-byte payment
 * id, and a checksum, the first 4 bytes of the Keccak-256 of the rest.
 * MoneroAddressParse() does the whole check and never ereports, so that it
 * can be tested alone and reused; the SQL functions below it only decide
 * what a bad address means for their caller.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"

#include "compay.h"
#include "monero_address.h"

PG_FUNCTION_INFO_V1(compay_monero_address_info);
PG_FUNCTION_INFO_V1(compay_check_monero_address);

/* The longest decoded address: network byte, keys, payment id, checksum. */
#define MONERO_DECODED_LEN_MAX \
	(1 + 2 * MONERO_KEY_LEN + MONERO_PAYMENT_ID_LEN + MONERO_CHECKSUM_LEN)

/* Base58 works on blocks of 8 bytes, 11 characters each. */
#define BASE58_BLOCK_BYTES 8
#define BASE58_BLOCK_CHARS 11

/* Keccak-256: 1600-bit state, 136-byte rate, 24 rounds. */
#define KECCAK_RATE 136
#define KECCAK_ROUNDS 24

static const char base58_alphabet[] =
"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/* Bytes held by a block of 0..11 characters; -1 where no block has that size. */
static const int8 base58_block_bytes[BASE58_BLOCK_CHARS + 1] = {
	0, -1, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8
};

static const char *const reason_empty = "The address is empty.";
static const char *const reason_character =
"The address contains a character outside Monero's base58 alphabet: digits and letters, without 0, O, I and l.";
static const char *const reason_length =
"A Monero address has 95 characters, or 106 for an integrated address.";
static const char *const reason_base58 =
"The address is not valid base58: a block of characters encodes a value too large for its bytes.";
static const char *const reason_checksum =
"The checksum does not match: a character is wrong, missing or extra.";
static const char *const reason_network =
"The network byte is not that of a Monero mainnet, testnet or stagenet address.";
static const char *const reason_integrated_length =
"The network byte is that of an integrated address, which has 106 characters.";
static const char *const reason_plain_length =
"The network byte is that of a standard address or subaddress, which has 95 characters.";

/* Network bytes, from Monero's cryptonote_config.h. */
static const struct
{
	uint64		prefix;
	MoneroNetwork network;
	MoneroAddressKind kind;
}			monero_prefixes[] = {
	{18, MONERO_MAINNET, MONERO_STANDARD},
	{19, MONERO_MAINNET, MONERO_INTEGRATED},
	{42, MONERO_MAINNET, MONERO_SUBADDRESS},
	{53, MONERO_TESTNET, MONERO_STANDARD},
	{54, MONERO_TESTNET, MONERO_INTEGRATED},
	{63, MONERO_TESTNET, MONERO_SUBADDRESS},
	{24, MONERO_STAGENET, MONERO_STANDARD},
	{25, MONERO_STAGENET, MONERO_INTEGRATED},
	{36, MONERO_STAGENET, MONERO_SUBADDRESS},
};

static const char *const network_names[] = {
	[MONERO_MAINNET] = "mainnet",
	[MONERO_TESTNET] = "testnet",
	[MONERO_STAGENET] = "stagenet",
};

static const char *const kind_names[] = {
	[MONERO_STANDARD] = "standard",
	[MONERO_SUBADDRESS] = "subaddress",
	[MONERO_INTEGRATED] = "integrated",
};

static const uint64 keccak_round_constants[KECCAK_ROUNDS] = {
	UINT64CONST(0x0000000000000001), UINT64CONST(0x0000000000008082),
	UINT64CONST(0x800000000000808A), UINT64CONST(0x8000000080008000),
	UINT64CONST(0x000000000000808B), UINT64CONST(0x0000000080000001),
	UINT64CONST(0x8000000080008081), UINT64CONST(0x8000000000008009),
	UINT64CONST(0x000000000000008A), UINT64CONST(0x0000000000000088),
	UINT64CONST(0x0000000080008009), UINT64CONST(0x000000008000000A),
	UINT64CONST(0x000000008000808B), UINT64CONST(0x800000000000008B),
	UINT64CONST(0x8000000000008089), UINT64CONST(0x8000000000008003),
	UINT64CONST(0x8000000000008002), UINT64CONST(0x8000000000000080),
	UINT64CONST(0x000000000000800A), UINT64CONST(0x800000008000000A),
	UINT64CONST(0x8000000080008081), UINT64CONST(0x8000000000008080),
	UINT64CONST(0x0000000080000001), UINT64CONST(0x8000000080008008)
};

/* Rho rotations and the pi lane order, in the order pi visits the lanes. */
static const int keccak_rotations[24] = {
	1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14,
	27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44
};
static const int keccak_pi_lanes[24] = {
	10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4,
	15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1
};

static inline uint64
RotateLeft64(uint64 x, int n)
{
	Assert(n > 0 && n < 64);
	return (x << n) | (x >> (64 - n));
}

/* The Keccak-f[1600] permutation. */
static void
KeccakPermute(uint64 *state)
{
	uint64		c[5];

	for (int round = 0; round < KECCAK_ROUNDS; round++)
	{
		uint64		t;

		/* theta */
		for (int x = 0; x < 5; x++)
			c[x] = state[x] ^ state[x + 5] ^ state[x + 10] ^ state[x + 15] ^
				state[x + 20];
		for (int x = 0; x < 5; x++)
		{
			t = c[(x + 4) % 5] ^ RotateLeft64(c[(x + 1) % 5], 1);
			for (int y = 0; y < 25; y += 5)
				state[y + x] ^= t;
		}
		/* rho and pi */
		t = state[1];
		for (int i = 0; i < 24; i++)
		{
			int			lane = keccak_pi_lanes[i];
			uint64		next = state[lane];

			state[lane] = RotateLeft64(t, keccak_rotations[i]);
			t = next;
		}
		/* chi */
		for (int y = 0; y < 25; y += 5)
		{
			for (int x = 0; x < 5; x++)
				c[x] = state[y + x];
			for (int x = 0; x < 5; x++)
				state[y + x] ^= ~c[(x + 1) % 5] & c[(x + 2) % 5];
		}
		/* iota */
		state[0] ^= keccak_round_constants[round];
	}
}

/* XORs byte b into the state at byte offset pos: lanes are little-endian. */
static inline void
KeccakXorByte(uint64 *state, int pos, uint8 b)
{
	state[pos / 8] ^= (uint64) b << (8 * (pos % 8));
}

/*
 * Keccak-256 as submitted to the SHA-3 contest: padding 0x01 ... 0x80.
 * SHA3-256 pads with 0x06 and gives other hashes; Monero uses this one.
 */
void
MoneroKeccak256(const uint8 *data, Size len, uint8 *hash)
{
	uint64		state[25] = {0};

	for (; len >= KECCAK_RATE; data += KECCAK_RATE, len -= KECCAK_RATE)
	{
		for (int i = 0; i < KECCAK_RATE; i++)
			KeccakXorByte(state, i, data[i]);
		KeccakPermute(state);
	}
	for (Size i = 0; i < len; i++)
		KeccakXorByte(state, (int) i, data[i]);
	KeccakXorByte(state, (int) len, 0x01);
	KeccakXorByte(state, KECCAK_RATE - 1, 0x80);
	KeccakPermute(state);

	for (int i = 0; i < KECCAK256_LEN; i++)
		hash[i] = (uint8) (state[i / 8] >> (8 * (i % 8)));
}

/* The value of a base58 character, or -1. */
static int
Base58Digit(char c)
{
	const char *p = c == '\0' ? NULL : strchr(base58_alphabet, c);

	return p == NULL ? -1 : (int) (p - base58_alphabet);
}

/*
 * Decodes one block of nchars characters into its bytes, big-endian.
 * Fails on a bad character or a value too large for the block.
 */
static bool
Base58DecodeBlock(const char *block, int nchars, uint8 *out)
{
	int			nbytes = base58_block_bytes[nchars];
	uint64		value = 0;
	uint64		order = 1;

	Assert(nchars > 0 && nchars <= BASE58_BLOCK_CHARS && nbytes > 0);
	for (int i = nchars - 1; i >= 0; i--)
	{
		int			digit = Base58Digit(block[i]);
		uint64		term;

		if (digit < 0)
			return false;
		/* A full block can exceed 2^64: 58^11 > 2^64. */
		if (__builtin_mul_overflow(order, (uint64) digit, &term) ||
			__builtin_add_overflow(value, term, &value))
			return false;
		if (i > 0)
			order *= 58;
	}
	/* A partial block must fit its bytes: "zz" is 3363, more than a byte. */
	if (nbytes < BASE58_BLOCK_BYTES && (value >> (8 * nbytes)) != 0)
		return false;

	for (int i = nbytes - 1; i >= 0; i--, value >>= 8)
		out[i] = (uint8) value;
	Assert(value == 0);
	return true;
}

int
MoneroBase58Decode(const char *text, Size len, uint8 *out, Size out_max)
{
	Size		nfull = len / BASE58_BLOCK_CHARS;
	int			last_chars = (int) (len % BASE58_BLOCK_CHARS);
	int			last_bytes = base58_block_bytes[last_chars];
	Size		total;

	if (last_bytes < 0)
		return -1;
	total = nfull * BASE58_BLOCK_BYTES + last_bytes;
	if (total > out_max || total > (Size) PG_INT32_MAX)
		return -1;

	for (Size b = 0; b < nfull; b++)
		if (!Base58DecodeBlock(text + b * BASE58_BLOCK_CHARS, BASE58_BLOCK_CHARS,
							   out + b * BASE58_BLOCK_BYTES))
			return -1;
	if (last_chars > 0 &&
		!Base58DecodeBlock(text + nfull * BASE58_BLOCK_CHARS, last_chars,
						   out + nfull * BASE58_BLOCK_BYTES))
		return -1;
	return (int) total;
}

/*
 * Reads a varint (7 bits a byte, low first, high bit set on all but the
 * last byte).  Returns the bytes read, or 0 when it runs past len, past 64
 * bits, or ends in a needless zero byte (Monero rejects those too).
 */
static int
ReadVarint(const uint8 *data, int len, uint64 *value)
{
	uint64		v = 0;

	for (int i = 0; i < len && i * 7 < 64; i++)
	{
		uint64		bits = data[i] & 0x7f;

		if (i * 7 == 63 && bits > 1)
			return 0;
		if (i > 0 && data[i] == 0)
			return 0;
		v |= bits << (i * 7);
		if ((data[i] & 0x80) == 0)
		{
			*value = v;
			return i + 1;
		}
	}
	return 0;
}

/* The checks on the text itself; a reason, or NULL when it may decode. */
static const char *
CheckAddressText(const char *text, Size len)
{
	if (len == 0)
		return reason_empty;
	for (Size i = 0; i < len; i++)
		if (Base58Digit(text[i]) < 0)
			return reason_character;
	if (len != MONERO_ADDRESS_LEN && len != MONERO_INTEGRATED_ADDRESS_LEN)
		return reason_length;
	return NULL;
}

/* Sets network and kind from the network byte; false if it is unknown. */
static bool
LookUpPrefix(MoneroAddress *addr)
{
	for (int i = 0; i < (int) lengthof(monero_prefixes); i++)
	{
		if (monero_prefixes[i].prefix == addr->prefix)
		{
			addr->network = monero_prefixes[i].network;
			addr->kind = monero_prefixes[i].kind;
			return true;
		}
	}
	return false;
}

/*
 * The checksum comes first, as in Monero: only an address that is intact
 * gets a verdict on its network byte or its length, so that a typo is not
 * reported as an unknown network.
 */
bool
MoneroAddressParse(const char *text, MoneroAddress *out, const char **reason)
{
	uint8		data[MONERO_DECODED_LEN_MAX];
	uint8		hash[KECCAK256_LEN];
	Size		len = strnlen(text, MONERO_INTEGRATED_ADDRESS_LEN + 1);
	int			ndata;
	int			nprefix;
	int			nexpected;
	const uint8 *keys;

	memset(out, 0, sizeof(*out));
	*reason = CheckAddressText(text, len);
	if (*reason != NULL)
		return false;

	ndata = MoneroBase58Decode(text, len, data, sizeof(data));
	if (ndata < 0)
	{
		*reason = reason_base58;
		return false;
	}
	Assert(ndata > MONERO_CHECKSUM_LEN);
	MoneroKeccak256(data, ndata - MONERO_CHECKSUM_LEN, hash);
	if (memcmp(hash, data + ndata - MONERO_CHECKSUM_LEN, MONERO_CHECKSUM_LEN) != 0)
	{
		*reason = reason_checksum;
		return false;
	}

	nprefix = ReadVarint(data, ndata, &out->prefix);
	if (nprefix == 0 || !LookUpPrefix(out))
	{
		*reason = reason_network;
		return false;
	}
	nexpected = nprefix + 2 * MONERO_KEY_LEN + MONERO_CHECKSUM_LEN +
		(out->kind == MONERO_INTEGRATED ? MONERO_PAYMENT_ID_LEN : 0);
	if (ndata != nexpected)
	{
		*reason = out->kind == MONERO_INTEGRATED ?
			reason_integrated_length : reason_plain_length;
		return false;
	}

	keys = data + nprefix;
	memcpy(out->spend_key, keys, MONERO_KEY_LEN);
	memcpy(out->view_key, keys + MONERO_KEY_LEN, MONERO_KEY_LEN);
	if (out->kind == MONERO_INTEGRATED)
		memcpy(out->payment_id, keys + 2 * MONERO_KEY_LEN, MONERO_PAYMENT_ID_LEN);
	*reason = NULL;
	return true;
}

const char *
MoneroNetworkName(MoneroNetwork network)
{
	Assert(network >= 0 && network < (int) lengthof(network_names));
	return network_names[network];
}

const char *
MoneroAddressKindName(MoneroAddressKind kind)
{
	Assert(kind >= 0 && kind < (int) lengthof(kind_names));
	return kind_names[kind];
}

/* Exact, lower-case names only, like the rounding modes. */
bool
MoneroNetworkFromName(const char *name, MoneroNetwork *network)
{
	for (int i = 0; i < (int) lengthof(network_names); i++)
	{
		if (strcmp(name, network_names[i]) == 0)
		{
			*network = (MoneroNetwork) i;
			return true;
		}
	}
	return false;
}

/*
 * The address argument as a C string, cut after one character more than
 * the longest address: a longer text is rejected for its length anyway.
 */
static char *
AddressArgument(FunctionCallInfo fcinfo, int argno)
{
	text	   *t = PG_GETARG_TEXT_PP(argno);
	Size		len = VARSIZE_ANY_EXHDR(t);

	return pnstrdup(VARDATA_ANY(t),
					Min(len, (Size) MONERO_INTEGRATED_ADDRESS_LEN + 1));
}

/*
 * compay.monero_address_info(address): one row (valid, network, kind,
 * reason).  Never raises an error for a bad address: network and kind are
 * then NULL and reason says what is wrong.
 */
Datum
compay_monero_address_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *address = AddressArgument(fcinfo, 0);
	MoneroAddress addr;
	const char *reason;
	bool		valid = MoneroAddressParse(address, &addr, &reason);
	Datum		values[4] = {0};
	bool		nulls[4] = {false, !valid, !valid, valid};

	InitMaterializedSRF(fcinfo, 0);
	values[0] = BoolGetDatum(valid);
	if (valid)
	{
		values[1] = CStringGetTextDatum(MoneroNetworkName(addr.network));
		values[2] = CStringGetTextDatum(MoneroAddressKindName(addr.kind));
	}
	else
		values[3] = CStringGetTextDatum(reason);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/*
 * compay.check_monero_address(address, network): the kind of the address,
 * or 22023 when it is not a valid address of that network.
 */
Datum
compay_check_monero_address(PG_FUNCTION_ARGS)
{
	char	   *address = AddressArgument(fcinfo, 0);
	char	   *network_name = text_to_cstring(PG_GETARG_TEXT_PP(1));
	MoneroNetwork network;
	MoneroAddress addr;
	const char *reason;

	if (!MoneroNetworkFromName(network_name, &network))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown Monero network \"%s\"",
						CompayEchoInput(network_name)),
				 errhint("Use mainnet, testnet or stagenet; a regtest wallet uses mainnet addresses.")));
	if (!MoneroAddressParse(address, &addr, &reason))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Monero address"),
				 errdetail_internal("%s", reason)));
	if (addr.network != network)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid Monero address"),
				 errdetail("This is a %s address, not a %s one.",
						   MoneroNetworkName(addr.network),
						   MoneroNetworkName(network))));
	PG_RETURN_TEXT_P(cstring_to_text(MoneroAddressKindName(addr.kind)));
}
