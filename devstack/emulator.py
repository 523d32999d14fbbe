"""The AWS emulator: moto in server mode, with what moto lacks for this project.

moto serves S3, Glue, Athena, SNS, SQS, EventBridge, Secrets Manager, CloudWatch Logs, IAM and
STS. What moto only pretends to do is patched in as the server starts (``glue_jobs``: job runs
execute their scripts; ``crawler``: crawlers catalog their S3 targets; ``athena``: queries run on
DuckDB over the Glue Data Catalog and S3; ``eventbridge``: S3's events reach EventBridge rules as
AWS sends them). Everything reaches the emulator through its endpoint URL only, exactly as it
would reach AWS.
"""

from __future__ import annotations

import logging

from moto.server import ThreadedMotoServer

from devstack import athena, crawler, eventbridge, glue_jobs


class Emulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 5555):
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._host = host

    def start(self) -> str:
        # One access-log line per request drowns everything else the stack prints.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server.start()
        _, port = self._server.get_host_and_port()
        # Glue scripts run on this machine: they call back on loopback whatever the bind address.
        self.endpoint_url = f"http://127.0.0.1:{port}"
        glue_jobs.install(self.endpoint_url)
        crawler.install()
        athena.install()
        eventbridge.install()
        return self.endpoint_url

    def stop(self) -> None:
        self._server.stop()
