"""psycopg2 and compay.credit (docs/clients.md): exact reads through a
type caster to Decimal; Decimal and int amounts (numeric and integer
literals, read by the numeric twins of the money functions), str amounts
(untyped literals) and a Credit adapter ('...'::compay.credit)."""
import decimal
import os
from decimal import Decimal

import psycopg2
import psycopg2.extensions as ext

from tap import Tap, run

tap = Tap()
NODE = "py2-%d" % os.getpid()     # one account per run

# credit has up to 39 significant digits (27 whole + 12 decimal): Python's
# default context (28 digits) would round when arithmetic is done on them.
CTX = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])
TWO_100 = Decimal(2 ** 100).scaleb(-12, CTX)    # 2^100 atomic units (default context: rounded)


class Credit(Decimal):
    """An amount sent as compay.credit: '<digits>'::compay.credit."""


def adapt_credit(value):
    # format(v, "f"): str() would write 1E-12, which credit does not read.
    return ext.AsIs("%s::compay.credit" % ext.adapt(format(value, "f")).getquoted().decode())


def main():
    conn = psycopg2.connect("")
    conn.autocommit = True
    cur = conn.cursor()
    cur.execute("SELECT 'compay.credit'::regtype::oid, 'compay.credit[]'::regtype::oid")
    oid, array_oid = cur.fetchone()
    # The reader: the text form is exact, Decimal(str) keeps every digit.
    credit_type = ext.new_type((oid,), "CREDIT",
                               lambda s, cur: None if s is None else Decimal(s))
    ext.register_type(credit_type, conn)
    ext.register_type(ext.new_array_type((array_oid,), "CREDIT[]", credit_type), conn)
    ext.register_adapter(Credit, adapt_credit)

    cur.execute("SELECT '1267650600228229401.496703205376'::compay.credit, '0.000000000001'::compay.credit")
    big, tiny = cur.fetchone()
    tap.is_(big, TWO_100, "reads 2^100 atomic units exactly as Decimal")
    tap.is_(tiny, Decimal("1E-12"), "reads one atomic unit exactly")
    tap.is_(CTX.add(big, tiny), Decimal("1267650600228229401.496703205377"),
            "sum of the two in a 60-digit context is exact (the default 28 would round)")
    cur.execute("SELECT ARRAY['1.5', '-0.000000000001']::compay.credit[]")
    tap.is_(cur.fetchone()[0], [Decimal("1.5"), Decimal("-1E-12")], "reads credit[] as a list of Decimal")

    cur.execute("SELECT compay.deposit(%s, %s)", (NODE, TWO_100))
    cur.execute("SELECT compay.deposit(%s, %s)", (NODE, 7))
    cur.execute("SELECT compay.deposit(%s, %s)", (NODE, Decimal("1E-12")))
    cur.execute("SELECT compay.deposit(%s, %s)", (NODE, 2 ** 70 // 10 ** 12))
    cur.execute("SELECT balance FROM compay.accounts WHERE node_id = %s", (NODE,))
    want = CTX.add(CTX.add(TWO_100, 7 + 2 ** 70 // 10 ** 12), Decimal("1E-12"))
    tap.is_(cur.fetchone()[0], want,
            "deposits Decimal (2^100 atomic units, 1E-12) and int (small, > 2^32): balance exact")
    cur.execute("SELECT compay.deposit(%s, %s)", (NODE, "2.5"))
    cur.execute("SELECT compay.deposit(%s, %s)", (NODE, Credit("0.5")))
    cur.execute("SELECT balance FROM compay.accounts WHERE node_id = %s", (NODE,))
    before = CTX.add(want, 3)
    tap.is_(cur.fetchone()[0], before,
            "a str amount (untyped literal) and a Credit ('...'::compay.credit) work too")

    tap.raises(lambda: cur.execute("SELECT compay.deposit(%s, %s)", (NODE, Decimal("1.0000000000001"))),
               {"22023"}, "a Decimal with 13 decimals is refused, not rounded")
    tap.raises(lambda: cur.execute("SELECT compay.deposit(%s, %s)", (NODE, Decimal("NaN"))),
               {"22023"}, "a Decimal NaN is refused")
    tap.raises(lambda: cur.execute("SELECT compay.deposit(%s, %s)", (NODE, "1.0000000000001")),
               {"22P02"}, "a str with 13 decimals is refused, not rounded")
    # psycopg2 writes a float as its shortest repr, a numeric literal: 0.1 +
    # 0.2 is 0.30000000000000004 and refused; a float that prints with 12
    # decimals or fewer would pass as those digits.  docs/clients.md's
    # adapter types floats float8, which no money function takes.
    tap.raises(lambda: cur.execute("SELECT compay.deposit(%s, %s)", (NODE, 0.1 + 0.2)),
               {"22023"}, "a float with binary noise (0.1 + 0.2) is refused, not rounded")
    ext.register_adapter(float, lambda f: ext.AsIs("%r::float8" % f))
    tap.raises(lambda: cur.execute("SELECT compay.deposit(%s, %s)", (NODE, 2.5)),
               {"42883"}, "with the float8 adapter, a float amount is refused")
    cur.execute("SELECT balance FROM compay.accounts WHERE node_id = %s", (NODE,))
    tap.is_(cur.fetchone()[0], before, "the refused calls wrote nothing")


run(tap, main)
