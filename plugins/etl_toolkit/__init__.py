"""The shared toolkit behind every pipeline DAG.

One job per module:

- ``config``     connection ids, resource names and the DAG defaults every pipeline shares
- ``paths``      finds ``include/`` in the repository and in the MWAA bundle
- ``batches``    completion markers: sense, parse, validate and claim a batch
- ``glue``       Glue job and crawler operators with the project's defaults
- ``audit``      row counts taken from the data itself (parquet footers, ``count(*)``)
- ``reconcile``  compares the counts of every layer and records them in ``audit``
- ``quality``    Great Expectations schema checks
- ``notify``     SNS success summaries and failure notifications
- ``warehouse``  runs the Jinja-templated SQL files under ``include/sql/``

Modules import Airflow lazily where they can and never import pandas, pyarrow or
Great Expectations at module level, so DAG files stay cheap to parse.
"""
