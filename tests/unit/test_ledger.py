"""The claim's decision, from the batch's audit row (pure: the database part runs in tests/e2e)."""

from __future__ import annotations

import pytest

from etl_toolkit.contract import ClaimRefused, HolderUnknown
from etl_toolkit.ledger import BatchRow, decide


def row(status: str, holder: str = "run-old", attempts: int = 1, version: str = "v1", rerun: bool = False):
    return BatchRow(status, holder, attempts, version, rerun)


def claim(batch_row, *, alive=False, version="v1", requested=False, reprocess=False, max_attempts=3):
    def holder_alive(holder: str) -> bool:
        if isinstance(alive, Exception):
            raise alive
        return alive

    return decide(batch_row, run_id="run-new", marker_version=version, requested=requested, reprocess=reprocess,
                  holder_alive=holder_alive, max_attempts=max_attempts)  # fmt: skip


def test_a_batch_never_claimed_is_claimed_as_its_first_attempt():
    assert (claim(None).action, claim(None).attempts) == ("claim", 1)


def test_a_batch_held_by_a_live_run_is_left_to_it():
    with pytest.raises(ClaimRefused, match="run-old holds the batch and is still running"):
        claim(row("RUNNING"), alive=True)


def test_a_holder_whose_liveness_cannot_be_told_is_never_read_as_dead():
    with pytest.raises(HolderUnknown):
        claim(row("RUNNING"), alive=HolderUnknown("the API did not answer"))


def test_a_batch_whose_holder_died_is_taken_over_as_the_next_attempt():
    decision = claim(row("RUNNING", attempts=2))
    assert (decision.action, decision.attempts) == ("claim", 3)
    assert "run-old died holding it" in decision.reason


def test_after_max_attempts_the_batch_is_given_up_on():
    decision = claim(row("RUNNING", attempts=3))
    assert decision.action == "give-up" and "gave up after 3 attempts" in decision.reason


def test_a_person_asking_for_the_batch_starts_its_attempts_afresh():
    assert (claim(row("RUNNING", attempts=3), requested=True).action, claim(row("FAILED", attempts=3),
            requested=True).attempts) == ("claim", 1)  # fmt: skip


def test_a_loaded_batch_is_a_no_op_unless_reprocessed_or_its_marker_was_written_again_mid_run():
    assert claim(row("SUCCESS")).action == "no-op"
    assert claim(row("SUCCESS"), reprocess=True).action == "claim"
    rewritten = claim(row("SUCCESS", rerun=True))
    assert rewritten.action == "claim" and "written again while it loaded" in rewritten.reason


def test_a_failed_batch_with_a_new_marker_starts_afresh_and_with_the_same_marker_counts_an_attempt():
    assert claim(row("FAILED", attempts=2), version="v2").attempts == 1
    same = claim(row("FAILED", attempts=2), version="v1")
    assert same.attempts == 3 and "not set aside" in same.reason
    assert claim(row("FAILED", attempts=3), version="v1").action == "give-up"


def test_the_run_that_holds_the_batch_may_claim_it_again():
    assert claim(BatchRow("RUNNING", "run-new", 2, "v1", False)).attempts == 2
