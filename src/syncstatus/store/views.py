"""The connection view repository: one row per connection, with its accounts and credentials."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from syncstatus.statemachine.view import ConnectionView
from syncstatus.store.rows import (
    CHILD_COLUMNS,
    VIEW_COLUMNS,
    VIEW_PROJECTED,
    account_from_row,
    account_rows,
    binary_copy,
    credential_from_row,
    credential_rows,
    view_from_row,
    view_row,
)
from syncstatus.store.staging import stage, staging

_STAGED_VIEWS = staging("connection_view", VIEW_COLUMNS)
_PROJECTED = ", ".join(f"{c} = EXCLUDED.{c}" for c in VIEW_PROJECTED)
_ACCOUNT_COUNT = ("connection_id", "created_at", *VIEW_PROJECTED).index("account_count")
"""Where a view row says how many accounts it has: `save` writes it with the accounts, so a
row that has none is not looked up in `accounts`."""


class PostgresViews:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def load(self, connection_ids: Iterable[str]) -> dict[str, ConnectionView]:
        ids = sorted(set(connection_ids))
        if not ids:
            return {}
        rows = self._raw.execute(
            f"SELECT {VIEW_COLUMNS} FROM connection_view WHERE connection_id = ANY(%b)", (ids,)
        ).fetchall()
        views = {row[0]: view_from_row(row) for row in rows}
        listed = [row[0] for row in rows if row[_ACCOUNT_COUNT]]
        if listed:
            for connection_id, *account in self._raw.execute(
                f"SELECT {CHILD_COLUMNS['accounts']} FROM accounts "
                "WHERE connection_id = ANY(%b) ORDER BY account_id",
                (listed,),
            ):
                views[connection_id].accounts[account[0]] = account_from_row(account)
        for connection_id, *credential in self._raw.execute(
            f"SELECT {CHILD_COLUMNS['credentials']} FROM credentials "
            "WHERE connection_id = ANY(%b) ORDER BY added_at",
            (list(views),),
        ):
            views[connection_id].credentials.append(credential_from_row(credential))
        return views

    def save(self, views: Sequence[ConnectionView]) -> None:
        """The projected columns of every row in one statement; the children rewritten only
        where they changed."""
        if not views:
            return
        staged = stage(self._raw, _STAGED_VIEWS, (view_row(v) for v in views))
        self._raw.execute(
            f"INSERT INTO connection_view ({VIEW_COLUMNS}) SELECT {VIEW_COLUMNS} FROM {staged} "
            f"ON CONFLICT (connection_id) DO UPDATE SET {_PROJECTED}"
        )
        for table, changed, rows in (
            ("accounts", [v for v in views if v.accounts_changed], account_rows),
            ("credentials", [v for v in views if v.credentials_changed], credential_rows),
        ):
            if not changed:
                continue
            self._raw.execute(
                f"DELETE FROM {table} WHERE connection_id = ANY(%b)",
                ([v.connection_id for v in changed],),
            )
            copy_statement, types = binary_copy(f"{table} ({CHILD_COLUMNS[table]})")
            with self._raw.cursor().copy(copy_statement) as copy:
                copy.set_types(types)
                for view in changed:
                    for row in rows(view):
                        copy.write_row(row)
