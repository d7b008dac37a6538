"""A minimal TAP writer for the client tests: one "ok N - name" line per check."""
import sys
import traceback


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, diag=None):
        self.n += 1
        if not cond:
            self.failed += 1
        print(("ok" if cond else "not ok"), self.n, "-", name, flush=True)
        if not cond and diag is not None:
            for line in str(diag).splitlines():
                print("#", line)

    def is_(self, got, want, name):
        self.ok(got == want, name, f"got:  {got!r}\nwant: {want!r}")

    def raises(self, fn, sqlstates, name):
        """fn() must fail with an error whose sqlstate is in sqlstates."""
        try:
            fn()
        except Exception as e:  # driver errors carry .pgcode / .sqlstate
            state = getattr(e, "sqlstate", None) or getattr(e, "pgcode", None)
            self.ok(state in sqlstates, f"{name} ({state})",
                    f"{type(e).__name__}: {e}")
            return e
        self.ok(False, name, "no error")
        return None

    def done(self):
        print(f"1..{self.n}")
        sys.exit(1 if self.failed else 0)


def run(tap, main):
    try:
        main()
    except Exception:
        tap.ok(False, "the test ran to its end", traceback.format_exc())
    tap.done()
