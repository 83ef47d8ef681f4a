"""Development secrets: processes that start at once on one data directory agree on one."""

from __future__ import annotations

from pathlib import Path

from infra.dev_secrets import load_or_create


def test_a_secret_made_meanwhile_by_another_process_wins(tmp_path: Path) -> None:
    target = tmp_path / "secrets" / "key.pem"

    def generate() -> str:
        # another process links its value into place while this one generates its own
        target.write_text("theirs")
        return "ours"

    assert load_or_create(tmp_path, "key.pem", generate) == "theirs"
    assert load_or_create(tmp_path, "key.pem", lambda: "again") == "theirs"
    assert sorted(p.name for p in target.parent.iterdir()) == ["key.pem"]  # no drafts left


def test_the_first_value_is_kept_private(tmp_path: Path) -> None:
    assert load_or_create(tmp_path, "token", lambda: "first") == "first"
    path = tmp_path / "secrets" / "token"
    assert path.read_text() == "first" and path.stat().st_mode & 0o777 == 0o600
    assert load_or_create(tmp_path, "token", lambda: "second") == "first"
