"""psycopg 3 and compay.credit (docs/clients.md): a Loader and a Dumper in
text and binary (the binary form is credit_send/credit_recv's: a
big-endian signed 128-bit count of atomic units, 1e-12)."""
import decimal
import os
from decimal import Decimal

import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format
from psycopg.types import TypeInfo

from tap import Tap, run

tap = Tap()
NODE = "py3-%d" % os.getpid()     # one account per run
CTX = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])
UNIT = Decimal("1E-12")
TWO_100 = Decimal(2 ** 100).scaleb(-12, CTX)


class Credit(Decimal):
    """An amount sent as compay.credit."""


def atomic_units(value):
    """The exact count of atomic units of value; refuses more than 12 decimals."""
    units = Decimal(value).scaleb(12, CTX)
    if units != units.to_integral_value():
        raise psycopg.DataError("%s has more than 12 decimals" % value)
    return int(units)


class CreditTextLoader(Loader):
    def load(self, data):
        return Decimal(bytes(data).decode())


class CreditBinaryLoader(Loader):
    format = Format.BINARY

    def load(self, data):
        return Decimal(int.from_bytes(data, "big", signed=True)).scaleb(-12, CTX)


class CreditTextDumper(Dumper):
    def dump(self, obj):
        return format(Decimal(obj), "f").encode()


class CreditBinaryDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj):
        return atomic_units(obj).to_bytes(16, "big", signed=True)


class RawCredit(bytes):
    """16 bytes sent as they are, as a binary compay.credit (to test credit_recv)."""


class RawCreditDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj):
        return bytes(obj)


def register_credit(conn):
    info = TypeInfo.fetch(conn, "compay.credit")
    info.register(conn)                  # the array type too
    conn.adapters.register_loader(info.oid, CreditTextLoader)
    conn.adapters.register_loader(info.oid, CreditBinaryLoader)
    for dumper in (CreditTextDumper, CreditBinaryDumper):
        cls = type(dumper.__name__, (dumper,), {"oid": info.oid})
        conn.adapters.register_dumper(Credit, cls)
    conn.adapters.register_dumper(RawCredit, type("RawDumper", (RawCreditDumper,), {"oid": info.oid}))


def balance(cur):
    return cur.execute("SELECT balance FROM compay.accounts WHERE node_id = %s", (NODE,)).fetchone()[0]


def main():
    conn = psycopg.connect("", autocommit=True)
    register_credit(conn)
    cur = conn.cursor()
    bcur = conn.cursor(binary=True)

    for c, mode in ((cur, "text"), (bcur, "binary")):
        big, tiny, neg = c.execute("SELECT '1267650600228229401.496703205376'::compay.credit,"
                                   " '0.000000000001'::compay.credit, '-2.5'::compay.credit").fetchone()
        tap.is_((big, tiny, neg), (TWO_100, UNIT, Decimal("-2.5")),
                f"{mode} cursor reads 2^100 atomic units, one unit and a negative exactly")
    tap.is_(bcur.execute("SELECT ARRAY['1.5', '-0.000000000001']::compay.credit[]").fetchone()[0],
            [Decimal("1.5"), -UNIT], "binary cursor reads credit[]")

    # Binary parameters (%b) go through credit_recv, binary results through credit_send.
    got = bcur.execute("SELECT %b, %b::text", (Credit(TWO_100), Credit(TWO_100))).fetchone()
    tap.is_(got, (TWO_100, "1267650600228229401.496703205376"),
            "2^100 atomic units round-trip through credit_recv and credit_send")
    got = bcur.execute("SELECT %b::text", (Credit(-UNIT),)).fetchone()[0]
    tap.is_(got, "-0.000000000001", "minus one atomic unit through credit_recv")

    # Plain Decimal and int: numeric (and int2/int4/int8) parameters, read
    # by the numeric twins of the money functions.
    big = NODE + "-big"
    bcur.execute("SELECT compay.deposit(%b, %b)", (big, TWO_100))
    cur.execute("SELECT compay.deposit(%t, %t)", (big, UNIT))
    bcur.execute("SELECT compay.deposit(%b, %b)", (big, 3))
    cur.execute("SELECT compay.deposit(%t, %t)", (big, 2 ** 40))
    got = bcur.execute("SELECT balance FROM compay.accounts WHERE node_id = %b", (big,)).fetchone()[0]
    tap.is_(got, CTX.add(TWO_100, CTX.add(UNIT, 3 + 2 ** 40)),
            "deposits Decimal and int in binary and text exactly")
    bcur.execute("SELECT compay.deposit(%b, %b)", (NODE, Credit("0.000000000001")))
    bcur.execute("SELECT compay.deposit(%b, %b)", (NODE, Credit(7)))
    cur.execute("SELECT compay.deposit(%t, %t)", (NODE, Credit("1.25")))
    cur.execute("SELECT compay.deposit(%t, %t)", (NODE, "0.75"))
    want = Decimal("9.000000000001")
    tap.is_(balance(cur), want, "deposits Credit (binary and text) and a text str exactly")

    try:
        bcur.execute("SELECT compay.deposit(%b, %b)", (NODE, Credit("1.0000000000001")))
        tap.ok(False, "13 decimals refused by the binary dumper")
    except psycopg.DataError as e:
        tap.ok("more than 12 decimals" in str(e), "13 decimals refused by the binary dumper, not rounded")
    tap.raises(lambda: cur.execute("SELECT compay.deposit(%t, %t)", (NODE, Credit("1.0000000000001"))),
               {"22P02"}, "13 decimals refused by the server in text")
    tap.raises(lambda: bcur.execute("SELECT compay.deposit(%b, %b)", (NODE, Decimal("1.0000000000001"))),
               {"22023"}, "a binary numeric with 13 decimals is refused, not rounded")
    tap.raises(lambda: cur.execute("SELECT compay.deposit(%s, %s)", (NODE, 2.5)),
               {"42883"}, "a float amount is refused")
    tap.raises(lambda: bcur.execute("SELECT compay.deposit(%b, %b)", (NODE, RawCredit(b"\x80" + bytes(15)))),
               {"22003"}, "credit_recv refuses the one 16-byte pattern that is no credit (-2^127)")
    tap.is_(balance(cur), want, "the refused calls wrote nothing")

    # Operators from a role's default search_path: the database setting that
    # README gives (run.sh: ALTER DATABASE ... SET search_path = "$user", public, compay).
    tap.is_(cur.execute("SHOW search_path").fetchone()[0], '"$user", public, compay',
            "the database's search_path has compay last")
    q = """SELECT balance + reserved, balance = '9.000000000001', balance IN ('1', '9.000000000001'),
                  balance BETWEEN '0' AND '10', balance * 2, -balance, balance - '1'
           FROM compay.accounts WHERE node_id = %s"""
    tap.is_(cur.execute(q, (NODE,)).fetchone(),
            (want, True, True, True, Decimal("18.000000000002"), -want, Decimal("8.000000000001")),
            "+, =, IN, BETWEEN, *, unary and binary - resolve without OPERATOR(compay.x)")
    q = """SELECT sum(a.balance), max(a.balance), count(*) FROM compay.accounts a
           JOIN compay.accounts b USING (balance) WHERE a.node_id = %s AND b.node_id = %s"""
    tap.is_(cur.execute(q, (NODE, NODE)).fetchone(), (want, want, 1),
            "sum, max and JOIN ... USING (balance) resolve")
    q = "SELECT pg_typeof(2.5::numeric * 2)::text, pg_typeof('1'::compay.credit + '1')::text"
    tap.is_(cur.execute(q).fetchone(), ("numeric", "credit"),
            "numeric * integer stays numeric; credit + '1' is credit")


run(tap, main)
