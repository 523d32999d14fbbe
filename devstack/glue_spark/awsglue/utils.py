"""``awsglue.utils``: job arguments, parsed as AWS Glue parses them.

``getResolvedOptions(args, options)`` follows AWS's implementation: an ``argparse`` parser that
raises ``GlueArgumentError`` instead of exiting, where

- each name in ``options`` is a required ``--name value`` (``--name=value`` works too, as with
  any argparse option; an unambiguous prefix of a name is accepted, as argparse allows);
- the reserved arguments are optional and always parsed: ``--job-bookmark-option``
  (``job-bookmark-enable``, ``job-bookmark-pause`` or ``job-bookmark-disable``; its key in the
  result is ``job_bookmark_option``, ``job-bookmark-disable`` when absent),
  ``--continuation-option`` (the old name of the bookmark option, translated to it),
  ``--job-bookmark-from`` and ``--job-bookmark-to`` (both or neither, and only with
  ``job-bookmark-pause``), ``--JOB_ID``, ``--JOB_RUN_ID``, ``--SECURITY_CONFIGURATION``,
  ``--encryption-type`` (``sse-s3``), ``--TempDir`` and ``--RedshiftTempDir`` (either one sets
  both);
- asking for a reserved name (``job-bookmark-option``, ``continuation-option``,
  ``job-bookmark-from``/``-to``, ``JOB_ID``, ``JOB_RUN_ID``, ``SECURITY_CONFIGURATION``,
  ``encryption-type``) raises ``RuntimeError("Using reserved arguments ...")``; ``JOB_NAME``,
  ``TempDir`` and ``RedshiftTempDir`` may be asked for;
- ``args[0]`` (the script's name in ``sys.argv``) is skipped and unknown arguments are ignored.
"""

from __future__ import annotations

import argparse
import traceback
from collections.abc import Sequence
from typing import Any

from awsglue.job import Job

# every argument resolved so far in this process, as AWS keeps them
_global_args: dict[str, Any] = {}


class GlueArgumentError(Exception):
    """A required job argument is missing or an argument has an invalid value."""


class GlueArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises ``GlueArgumentError`` rather than exiting."""

    def error(self, message: str):  # type: ignore[override]
        raise GlueArgumentError(message)


def strip_option_prefix(option: str) -> str:
    return option.lstrip("-")


def callsite() -> str:
    """The Python stack of the caller, as AWS passes it along with its calls."""
    return "".join(traceback.format_list(traceback.extract_stack()[:-2]))


def getResolvedOptions(args: Sequence[str], options: Sequence[str]) -> dict[str, Any]:
    """The job's arguments named in ``options`` (each required), plus the reserved ones."""
    parser = GlueArgumentParser()
    bookmark, continuation = Job.job_bookmark_options(), Job.continuation_options()
    for reserved in (continuation[0], bookmark[0]):
        if reserved[2:] in options:
            raise RuntimeError("Using reserved arguments " + reserved[2:])
    parser.add_argument(bookmark[0], choices=bookmark[1:], required=False)
    parser.add_argument(continuation[0], choices=continuation[1:], required=False)
    for option in Job.job_bookmark_range_options():
        if option[2:] in options:
            raise RuntimeError("Using reserved arguments " + option)
        parser.add_argument(option, required=False)
    for option in Job.id_params()[1:]:
        if strip_option_prefix(option) in options:
            raise RuntimeError("Using reserved arguments " + option)
        parser.add_argument(option, required=False)
    encryption = Job.encryption_type_options()
    if strip_option_prefix(encryption[0]) in options:
        raise RuntimeError("Using reserved arguments " + encryption[0])
    parser.add_argument(encryption[0], choices=encryption[1:])

    options = [option for option in options if option not in {"RedshiftTempDir", "TempDir"}]
    parser.add_argument("--RedshiftTempDir", required=False)
    parser.add_argument("--TempDir", required=False)
    for option in options:
        parser.add_argument("--" + option, required=True)

    parsed, _extra = parser.parse_known_args(list(args[1:]))
    parsed_dict = vars(parsed)

    if parsed_dict.get("TempDir") is not None:
        parsed_dict["RedshiftTempDir"] = parsed_dict["TempDir"]
    elif parsed_dict.get("RedshiftTempDir") is not None:
        parsed_dict["TempDir"] = parsed_dict["RedshiftTempDir"]

    # --job-bookmark-option wins; else the old --continuation-option, translated; else disabled
    continuation_value = parsed_dict.pop("continuation_option", None)
    if parsed_dict.get("job_bookmark_option") is None:
        if continuation_value is None:
            parsed_dict["job_bookmark_option"] = bookmark[3]
        else:
            parsed_dict["job_bookmark_option"] = bookmark[continuation.index(continuation_value)]

    absent_range = [
        option for option in Job.job_bookmark_range_options() if parsed_dict.get(option[2:].replace("-", "_")) is None
    ]
    if parsed_dict["job_bookmark_option"] == "job-bookmark-pause":
        if len(absent_range) == 1:
            raise RuntimeError("Missing option or value for " + absent_range[0])
    elif not absent_range:
        raise RuntimeError("Invalid option(s)" + " ".join(Job.job_bookmark_range_options()))

    _global_args.update(parsed_dict)
    return parsed_dict
