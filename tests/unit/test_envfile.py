import subprocess
from pathlib import Path

import pytest

from shared.envfile import read_env_file, write_env_file

pytestmark = pytest.mark.unit

VALUES = {
    "SAGAKIT_KAFKA_BOOTSTRAP": "127.0.0.1:9092,127.0.0.1:9094",
    "SAGAKIT_TOKEN": "a b&c$d",
    "SAGAKIT_EMPTY": "",
    "SAGAKIT_URL": "postgresql+asyncpg://u:p@127.0.0.1:5432/db?ssl=disable",
}


def test_what_is_written_is_read_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "stack.env"
    write_env_file(path, VALUES, header="# a header")

    assert read_env_file(path) == VALUES
    assert path.read_text().startswith("# a header\n")


def test_a_shell_sourcing_the_file_sees_the_same_values(tmp_path: Path) -> None:
    path = tmp_path / "stack.env"
    write_env_file(path, VALUES)
    script = f"set -a; . {path}; " + "; ".join(f'printf "%s\\0" "${key}"' for key in VALUES)

    out = subprocess.run(["bash", "-c", script], capture_output=True, check=True).stdout
    assert out.decode().split("\0")[:-1] == list(VALUES.values())


def test_a_hand_written_file_with_comments_quotes_and_blank_lines_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("# comment\n\nA=1\nB='two words'\nC=\"three\"\n")

    assert read_env_file(path) == {"A": "1", "B": "two words", "C": "three"}


def test_a_value_no_quoting_reads_the_same_in_both_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="SAGAKIT_X"):
        write_env_file(tmp_path / "x.env", {"SAGAKIT_X": "it's"})
