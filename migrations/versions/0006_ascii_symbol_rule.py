"""The database's symbol rule becomes ASCII-only, like Python's, and refuses punctuation alone.

Revision 0003's `symbol_onboarding_check_symbol` upper-cased with `upper()`, which follows the
database's locale: under C.UTF-8 or en_US.UTF-8 it turns `'\u0131BM'` (dotless i) into `IBM` and
`'\u017fPY'` (long s) into `SPY`, so SQL callers could enqueue what the Python helpers refuse. Now only
the ASCII letters a-z are upper-cased (`translate`), every other character is left as it is and
then fails the pattern. A symbol must also hold at least one letter or digit: `..`, `/` or `^`
alone name nothing. worker/core/symbols.py applies the same rule; a property test checks they agree.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHECK_SYMBOL = r"""
-- The one symbol rule in the database: trimmed, ASCII letters upper-cased, 1-20 of
-- A-Z 0-9 . - ^ = / with at least one letter or digit.
-- worker/core/symbols.py mirrors it so Python callers fail before touching their transaction.
CREATE OR REPLACE FUNCTION symbol_onboarding_check_symbol(p_symbol text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    -- translate(), not upper(): upper() follows the locale and maps non-ASCII letters to ASCII.
    v_symbol text := translate(btrim(p_symbol, E' \t\r\n\f' || chr(11)),
                               'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ');
BEGIN
    IF v_symbol IS NULL OR v_symbol !~ '^[A-Z0-9.^=/-]{1,20}$' OR v_symbol !~ '[A-Z0-9]' THEN
        RAISE EXCEPTION 'invalid symbol %: expected 1-20 letters, digits or . - ^ = /, '
                        'with at least one letter or digit',
            coalesce(quote_literal(p_symbol), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v_symbol;
END $$;
"""

# Revision 0003's function, restored by the downgrade.
CHECK_SYMBOL_0003 = r"""
CREATE OR REPLACE FUNCTION symbol_onboarding_check_symbol(p_symbol text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_symbol text := upper(btrim(p_symbol, E' \t\r\n\f' || chr(11)));
BEGIN
    IF v_symbol IS NULL OR v_symbol !~ '^[A-Z0-9.^=/-]{1,20}$' THEN
        RAISE EXCEPTION 'invalid symbol %: expected 1-20 letters, digits or . - ^ = /',
            coalesce(quote_literal(p_symbol), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN v_symbol;
END $$;
"""


def upgrade() -> None:
    op.execute(CHECK_SYMBOL)


def downgrade() -> None:
    op.execute(CHECK_SYMBOL_0003)
