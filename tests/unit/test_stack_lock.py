"""One local stack per state folder: a second one is refused before it touches the first one's
PostgreSQL (which it would take for a server left behind by a killed stack and stop)."""

import os

import pytest

from devstack.stack import LocalStack, StackOptions


def test_a_second_stack_on_the_same_state_folder_is_refused_naming_the_first(tmp_path):
    first = LocalStack(StackOptions(state_dir=tmp_path))
    first._lock_state_dir()
    try:
        with pytest.raises(RuntimeError, match=rf"another stack \(pid {os.getpid()}\) is running with"):
            LocalStack(StackOptions(state_dir=tmp_path))._lock_state_dir()
    finally:
        first.stop()

    second = LocalStack(StackOptions(state_dir=tmp_path))  # the folder is free once the first has stopped
    second._lock_state_dir()
    second.stop()
