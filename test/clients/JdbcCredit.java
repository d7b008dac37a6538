// pgJDBC and compay.credit (docs/clients.md): getBigDecimal reads credit
// exactly; setBigDecimal, setLong and setInt send numeric and integer
// parameters, read by the numeric twins of the money functions;
// setObject(i, text, Types.OTHER) sends an untyped literal, read by
// credit_in.  Run by run.sh with java's source launcher against Debian's
// libpostgresql-jdbc-java.
import java.math.BigDecimal;
import java.math.BigInteger;
import java.sql.*;

public class JdbcCredit {
    static int n = 0, failed = 0;

    static void ok(boolean cond, String name, String diag) {
        n++;
        if (!cond) failed++;
        System.out.println((cond ? "ok " : "not ok ") + n + " - " + name);
        if (!cond && diag != null) System.out.println("# " + diag.replace("\n", "\n# "));
    }

    static void is(Object got, Object want, String name) {
        ok(want.equals(got), name, "got:  " + got + "\nwant: " + want);
    }

    interface Call { void run() throws SQLException; }

    static void raises(Call c, String state, String name) {
        try {
            c.run();
            ok(false, name, "no error");
        } catch (SQLException e) {
            ok(state.equals(e.getSQLState()), name + " (" + e.getSQLState() + ")", e.getMessage());
        }
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + System.getenv("PGHOST") + ":" + System.getenv("PGPORT")
            + "/" + System.getenv("PGDATABASE");
        String node = "jdbc-" + ProcessHandle.current().pid();
        BigDecimal two100 = new BigDecimal(BigInteger.TWO.pow(100), 12);
        try (Connection db = DriverManager.getConnection(url, System.getenv("PGUSER"), null)) {
            try (Statement st = db.createStatement();
                 ResultSet rs = st.executeQuery("SELECT '1267650600228229401.496703205376'::compay.credit,"
                                                + " '0.000000000001'::compay.credit")) {
                rs.next();
                is(rs.getBigDecimal(1), two100, "getBigDecimal reads 2^100 atomic units exactly");
                is(rs.getBigDecimal(2), new BigDecimal("1E-12"), "getBigDecimal reads one atomic unit");
            }
            try (PreparedStatement ps = db.prepareStatement("SELECT compay.deposit(?, ?)")) {
                ps.setString(1, node);
                ps.setBigDecimal(2, two100);
                ps.executeQuery().close();
                ps.setBigDecimal(2, new BigDecimal("1E-12"));
                ps.executeQuery().close();
                ps.setLong(2, 5L);
                ps.executeQuery().close();
                ps.setInt(2, 1);
                ps.executeQuery().close();
                ps.setObject(2, "1", Types.OTHER);
                ps.executeQuery().close();
                ps.setBigDecimal(2, new BigDecimal("1.0000000000001"));
                raises(() -> ps.executeQuery().close(), "22023", "setBigDecimal with 13 decimals is refused, not rounded");
                ps.setObject(2, "1.0000000000001", Types.OTHER);
                raises(() -> ps.executeQuery().close(), "22P02", "13 decimals as text are refused, not rounded");
                ps.setDouble(2, 2.5);
                raises(() -> ps.executeQuery().close(), "42883", "a double amount is refused");
            }
            try (PreparedStatement ps = db.prepareStatement("SELECT balance FROM compay.accounts WHERE node_id = ?")) {
                ps.setString(1, node);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    is(rs.getBigDecimal(1), two100.add(new BigDecimal("7.000000000001")),
                       "setBigDecimal, setLong, setInt and Types.OTHER text: balance exact, refused calls wrote nothing");
                }
            }
        } catch (SQLException e) {
            ok(false, "the test ran to its end", e.toString());
        }
        System.out.println("1.." + n);
        System.exit(failed == 0 ? 0 : 1);
    }
}
